//! The legacy address reader and writer on arbitrary text: `parse_address` never panics, and
//! whatever it reads renders for Import 8.x without `[`/`]`, reads back, and renders again to
//! the same text (`render(parse(render(a))) == render(a)`); the same for `ie5`, brackets allowed.
//!
//! Each input is tried as is (lossy UTF-8) and as an alphabet-mapped copy whose bytes pick address
//! tokens, so that brackets, quotes, `at` and one-off types are common.
#![no_main]

use ccgate_ccmail::{AddressError, Dialect, RenderOptions, parse_address};
use libfuzzer_sys::fuzz_target;

/// Tokens for the alphabet-mapped copy: one per byte value modulo the table's length.
const TOKENS: &[&str] = &[
    "[", "]", "<", ">", "\"", ",", "@", "#", "(", ")", " ", " at ", " AT ", "at", "SMTP:",
    "ccmail:", "X400:", "\\", ";", ":", ".", "-", "+", "Smith", "PO", "u@d", "John", "é",
];

fn check(text: &str) {
    let Ok(address) = parse_address(text) else {
        return;
    };
    for dialect in [Dialect::Ie8, Dialect::Ie5] {
        let opts = RenderOptions {
            dialect,
            gateway_po: "SMTPGW".to_owned(),
        };
        let rendered = match address.render(&opts) {
            Ok(rendered) => rendered,
            // A value read from a file must never render as something that reads differently.
            Err(AddressError::Ambiguous { rendered }) => {
                panic!("{text:?} ({address:?}) renders ambiguously as {rendered:?}")
            }
            // No form in this dialect (an X.400 one-off without a display name), or too long.
            Err(_) => continue,
        };
        if dialect == Dialect::Ie8 {
            assert!(
                !rendered.contains(['[', ']']),
                "{text:?} renders for ie8 with brackets: {rendered:?}"
            );
        }
        let again = match parse_address(&rendered) {
            Ok(again) => again,
            Err(e) => panic!("{text:?} renders as {rendered:?}, which does not parse: {e}"),
        };
        assert_eq!(
            again.render(&opts).as_deref(),
            Ok(rendered.as_str()),
            "{text:?} -> {rendered:?} -> {again:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check(&String::from_utf8_lossy(data));
    let mapped: String = data
        .iter()
        .map(|b| TOKENS[usize::from(*b) % TOKENS.len()])
        .collect();
    check(&mapped);
});
