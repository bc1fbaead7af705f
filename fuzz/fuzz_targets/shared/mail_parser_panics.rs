//! Shared by the targets that reach mail-parser through ccgate-convert.

use std::sync::Once;

static HOOK: Once = Once::new();

/// ccgate-convert contains a panic inside mail-parser with `catch_unwind` (the input is then
/// treated as unreadable), but libFuzzer's panic hook aborts before any unwinding. Let
/// a panic raised in mail-parser's own source unwind to that `catch_unwind`, as it does in the
/// gateway; any other panic still goes to libFuzzer's hook and is a crash. (cargo fuzz builds
/// with debug assertions, and mail-parser 0.11 has a `debug_assert!(false, ..)` on a
/// malformed nesting: crates/convert/tests/fuzz_regressions.rs.)
pub fn contain_mail_parser_panics() {
    HOOK.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_mail_parser = info
                .location()
                .is_some_and(|l| l.file().contains("/mail-parser-"));
            if !in_mail_parser {
                fuzzer_hook(info);
            }
        }));
    });
}
