//! MIME fixtures (tests/data/*.eml) to legacy messages: each asserts what a legacy user gets,
//! and that the strict writer (ie8 defaults) accepts it.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use ccgate_ccmail::{ItemKind, LegacyDateTime, LegacyTime};
use ccgate_convert::ORIGINAL_NAME;
use common::{files, fixture, texts, to_legacy, values};

fn date(year: u16, month: u8, day: u8, hour: u8, minute: u8) -> String {
    format!(
        "{:?}",
        LegacyDateTime {
            year,
            month,
            day,
            time: Some(LegacyTime {
                hour,
                minute,
                second: None
            })
        }
    )
}

#[test]
fn every_fixture_converts_and_is_writable() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            let raw = std::fs::read(&path).unwrap();
            let conv = to_legacy(&raw);
            // LF-only copies convert too.
            let mut lf = Vec::with_capacity(raw.len());
            for (idx, b) in raw.iter().enumerate() {
                if !(*b == b'\r' && raw.get(idx + 1) == Some(&b'\n')) {
                    lf.push(*b);
                }
            }
            let conv_lf = to_legacy(&lf);
            assert_eq!(
                conv.message.headers,
                conv_lf.message.headers,
                "{}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 9, "found {n} fixtures");
}

#[test]
fn multipart_alternative_prefers_text_plain() {
    let conv = to_legacy(&fixture("alternative.eml"));
    let m = &conv.message;
    assert_eq!(values(m, "From"), ["john.smith@example.org at SMTPGW"]);
    assert_eq!(
        values(m, "To"),
        ["Doe, Jane at HQ", "bob@example.net at SMTPGW"]
    );
    assert_eq!(values(m, "Cc"), ["team@example.org at SMTPGW"]);
    assert_eq!(values(m, "Subject"), ["Lunch on Friday?"]);
    // 09:15 -0400 is 13:15 UTC, the default offset.
    assert_eq!(values(m, "Date"), [date(1998, 6, 5, 13, 15)]);
    assert_eq!(texts(m), ["Lunch on Friday at noon?\r\n-- John\r\n"]);
    assert!(files(m).is_empty());
    assert_eq!(conv.message_id.as_deref(), Some("<alt-1@example.org>"));
    assert_eq!(conv.identity(b"ignored"), "<alt-1@example.org>");
    assert!(conv.notes.is_empty(), "{:?}", conv.notes);
}

#[test]
fn html_only_becomes_readable_text() {
    let conv = to_legacy(&fixture("html-only.eml"));
    assert_eq!(
        texts(&conv.message),
        ["Big news\r\nFish & chips today.\r\n\r\n- one\r\n- two\r\nBye\r\nTeam\r\n"]
    );
    assert!(files(&conv.message).is_empty());
    // No Message-ID: the identity is a content hash.
    assert_eq!(conv.message_id, None);
    assert!(conv.identity(b"x").starts_with("sha256:"));
}

#[test]
fn iso_8859_1_is_decoded() {
    let conv = to_legacy(&fixture("latin1.eml"));
    let m = &conv.message;
    assert_eq!(values(m, "Subject"), ["Grüße aus Köln"]);
    assert_eq!(
        texts(m),
        ["Grüße aus Köln, à bientôt!\r\nPreis: 10 £ § 3\r\n"]
    );
    assert_eq!(values(m, "Date"), [date(1998, 6, 2, 6, 39)]);
    // The writer transliterates what IBM437 lacks (§) and counts it.
    let mut out = Vec::new();
    let report =
        ccgate_ccmail::write_messages(m, &ccgate_ccmail::WriteOptions::default(), &mut out)
            .unwrap();
    assert_eq!(report.replaced_chars, 1);
}

#[test]
fn quoted_printable_soft_breaks_are_joined() {
    let conv = to_legacy(&fixture("quoted-printable.eml"));
    assert_eq!(
        texts(&conv.message),
        [
            "Café crème – a very long line that was wrapped by the sender with a soft line break.\r\nSecond line = fine.\r\n"
        ]
    );
}

#[test]
fn base64_attachments_keep_names_and_bytes() {
    let conv = to_legacy(&fixture("base64-attachment.eml"));
    let m = &conv.message;
    assert_eq!(values(m, "To"), ["Doe, Jane at HQ"]);
    assert_eq!(texts(m), ["Report attached.\r\n"]);
    let files = files(m);
    let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    assert_eq!(
        files,
        [
            (ItemKind::File, "Quarterly Report.pdf".to_owned(), pdf),
            (
                ItemKind::File,
                "ATT00001.DAT".to_owned(),
                vec![0, 1, 2, 255]
            ),
            // A text attachment keeps its bytes: no charset conversion.
            (
                ItemKind::File,
                "dos.txt".to_owned(),
                b"line one\r\nline \x81\x82 two".to_vec()
            ),
        ]
    );
}

#[test]
fn nested_message_becomes_a_forwarded_item() {
    let conv = to_legacy(&fixture("nested.eml"));
    let m = &conv.message;
    assert_eq!(texts(m), ["See below.\r\n"]);
    let files = files(m);
    assert_eq!(files.len(), 2, "{files:?}");
    let (kind, title, bytes) = &files[0];
    assert_eq!(*kind, ItemKind::Message);
    assert_eq!(title, "Original subject that is rathe");
    assert_eq!(title.chars().count(), 30);
    assert_eq!(
        String::from_utf8_lossy(bytes),
        "From: Dave <dave@example.com>\r\nTo: carol@example.com\r\nDate: Wed, 3 Jun 1998 11:00:00 +0000\r\nSubject: Original subject that is rather long indeed\r\n\r\nThe original text.\r\n"
    );
    // The forwarded message's attachment follows it.
    assert_eq!(files[1].0, ItemKind::File);
    assert_eq!(files[1].1, "dot.png");
    assert_eq!(files[1].2, b"\x89PNG\r\n\x1a\n");
    assert!(
        conv.notes.iter().any(|n| n.contains("dot.png")),
        "{:?}",
        conv.notes
    );
}

#[test]
fn missing_boundary_keeps_the_text_and_attaches_the_original() {
    let raw = fixture("broken-boundary.eml");
    let conv = to_legacy(&raw);
    let m = &conv.message;
    assert_eq!(values(m, "From"), ["eve@example.com at SMTPGW"]);
    assert_eq!(values(m, "Subject"), ["Broken"]);
    let text = texts(m).concat();
    assert!(
        text.contains("Some text that is still worth reading."),
        "{text}"
    );
    let files = files(m);
    assert_eq!(files, [(ItemKind::File, ORIGINAL_NAME.to_owned(), raw)]);
    assert!(conv.notes.iter().any(|n| n.contains(ORIGINAL_NAME)));
}

#[test]
fn eight_bit_garbage_is_read_as_windows_1252() {
    let conv = to_legacy(&fixture("garbage-8bit.eml"));
    let m = &conv.message;
    assert_eq!(values(m, "From"), ["mallory@example.com at SMTPGW"]);
    assert_eq!(values(m, "Subject"), ["café “quoted”"]);
    assert!(values(m, "Date").is_empty());
    assert_eq!(texts(m), ["naïve résumé € 5\r\n    binary junk\r\n"]);
    for expected in ["Date:", "windows-1252", "control characters"] {
        assert!(
            conv.notes.iter().any(|n| n.contains(expected)),
            "{expected}: {:?}",
            conv.notes
        );
    }
}

#[test]
fn undisclosed_recipients_priority_receipt_and_far_dates() {
    let conv = to_legacy(&fixture("undisclosed.eml"));
    let m = &conv.message;
    assert_eq!(values(m, "To"), ["Doe, Jane at HQ"]);
    assert_eq!(values(m, "Priority"), ["Urgent"]);
    assert_eq!(values(m, "Receipt"), ["Yes"]);
    // 2099 cannot be written with two-digit years.
    assert!(values(m, "Date").is_empty());
    // Kept as is; the writer replaces the brackets for ie8.
    assert_eq!(values(m, "Subject"), ["[Announce] Release [1.0]"]);
}

#[test]
fn unreadable_input_gives_a_placeholder_message_with_the_original() {
    for raw in [&b""[..], b"\x00\x01\x02", b"\r\n\r\n", b"no headers at all"] {
        let conv = to_legacy(raw);
        let m = &conv.message;
        assert!(m.from().is_some());
        assert_eq!(m.recipients().count(), 1, "{raw:?}");
        let files = files(m);
        assert!(
            files.is_empty() || files[0].1 == ORIGINAL_NAME,
            "{raw:?}: {files:?}"
        );
    }
}

/// A message received by SMTP without `From:` takes its legacy sender from the envelope
/// (`MAIL FROM`) before `Reply-To:` or `Return-Path:`; the null sender adds nothing, and
/// `From:`, when there is one, wins.
#[test]
fn without_from_the_envelope_sender_is_the_legacy_sender() {
    use ccgate_convert::mime_to_legacy_from;
    let (opts, map) = common::setup();
    let sender: ccgate_core::EmailAddress = "env.sender@example.org".parse().unwrap();
    let no_from =
        b"To: bob@example.net\r\nReply-To: reply@example.org\r\nSubject: s\r\n\r\nbody\r\n";
    let conv = mime_to_legacy_from(no_from, Some(&sender), &opts, &map);
    common::assert_writable(&conv.message);
    assert_eq!(
        values(&conv.message, "From"),
        ["env.sender@example.org at SMTPGW"]
    );
    assert!(
        conv.notes
            .iter()
            .any(|n| n.contains("taken from the envelope (MAIL FROM:<env.sender@example.org>)")),
        "{:?}",
        conv.notes
    );
    // The null sender: Reply-To, as without an envelope; with nothing at all, a placeholder.
    let conv = mime_to_legacy_from(no_from, None, &opts, &map);
    assert_eq!(
        values(&conv.message, "From"),
        ["reply@example.org at SMTPGW"]
    );
    let bare = b"To: bob@example.net\r\nSubject: s\r\n\r\nbody\r\n";
    let conv = mime_to_legacy_from(bare, None, &opts, &map);
    assert_eq!(
        values(&conv.message, "From"),
        ["\"Unknown sender\" at SMTPGW"]
    );
    let with_from = b"From: author@example.org\r\nTo: bob@example.net\r\n\r\nbody\r\n";
    let conv = mime_to_legacy_from(with_from, Some(&sender), &opts, &map);
    assert_eq!(
        values(&conv.message, "From"),
        ["author@example.org at SMTPGW"]
    );
    // Even input that cannot be read as a message names the envelope sender.
    let conv = mime_to_legacy_from(b"", Some(&sender), &opts, &map);
    common::assert_writable(&conv.message);
    assert_eq!(
        values(&conv.message, "From"),
        ["env.sender@example.org at SMTPGW"]
    );
}
