//! Minimized fuzz crashes, kept as stable tests (fuzz/README.md).

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use ccgate_ccmail::{
    Codepage, Header, Message, WriteError, WriteOptions, parse_directory, write_directory,
    write_messages,
};

/// ccmail_directory: values holding a bare CR sorted one way when read and another when
/// written (the CR became a space), so writing what was read changed the order.
#[test]
fn directory_write_is_a_fixed_point_with_bare_cr() {
    let input = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz/directory-001.bin"
    ))
    .unwrap();
    let (entries, _) = parse_directory(&input, Codepage::Ibm850);
    let (first, _) = write_directory(&entries, Codepage::Ibm850);
    let (again, errors) = parse_directory(&first, Codepage::Ibm850);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(write_directory(&again, Codepage::Ibm850).0, first);
}

/// ccmail_roundtrip: an address with a character IBM437 lacks was written with `?` in its
/// place, an address that reaches nobody and that the writer itself then refused.
#[test]
fn address_outside_the_code_page_is_refused_not_mangled() {
    let msg = Message {
        headers: vec![Header::Cc("Ř".into()), Header::From("tVo@Ř".into())],
        items: vec![],
    };
    let mut out = Vec::new();
    let err = write_messages(&msg, &WriteOptions::default(), &mut out).unwrap_err();
    assert!(
        matches!(&err, WriteError::BadAddress { reason, .. } if reason.contains("ibm437")),
        "{err}"
    );
    assert!(out.is_empty(), "nothing is written for a refused message");
}
