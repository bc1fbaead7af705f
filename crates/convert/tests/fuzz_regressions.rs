//! Inputs found by the `convert_to_legacy` fuzz target, kept as stable tests (fuzz/README.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use ccgate_ccmail::ItemBody;
use common::to_legacy;

/// A multipart message whose nested `message/rfc822` parts lose their boundary trips a
/// `debug_assert!` inside mail-parser 0.11 ("Invalid part ID, could not find multipart"). A
/// build with debug assertions (tests, the fuzzer) panics there; the conversion must contain
/// it and still hand the legacy writer a message it accepts, with the original attached unchanged. (A
/// release build has no debug assertions: mail-parser goes on with the part cut short.)
#[test]
fn a_panic_inside_the_mime_parser_becomes_a_readable_fallback() {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz/to-legacy-001.eml"
    ))
    .unwrap();
    let conv = to_legacy(&raw);
    if cfg!(debug_assertions) {
        assert!(
            conv.notes.iter().any(|n| n.contains("MIME parser failed")),
            "{:?}",
            conv.notes
        );
        let original = conv
            .message
            .items
            .iter()
            .find(|i| i.title == "ORIGINAL.EML")
            .expect("the original attached");
        assert!(matches!(&original.body, ItemBody::Bytes(b) if *b == raw));
    } else {
        assert!(!conv.message.items.is_empty(), "{conv:#?}");
    }
}

/// The same input on the way to an SMTP next hop: fitting long lines parses it too.
#[test]
fn the_same_input_passes_the_line_fitter() {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz/to-legacy-001.eml"
    ))
    .unwrap();
    let fitted = ccgate_convert::fit_line_length(&raw, 78);
    assert!(fitted.split(|&b| b == b'\n').all(|l| l.len() <= 80));
}
