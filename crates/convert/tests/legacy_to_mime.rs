//! Legacy → MIME: table tests of each mapping, determinism, errors.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use ccgate_ccmail::{DateOrder, Header, ItemKind, Message, parse_date};
use ccgate_convert::{ConvertError, LegacyContext, MimeMessage, legacy_to_mime};
use common::{item, setup, text_item};

fn headers(extra: Vec<Header>) -> Vec<Header> {
    let mut headers = vec![
        Header::From("Doe, Jane at HQ".into()),
        Header::Date(parse_date("6/2/98 8:39", DateOrder::Us).unwrap()),
        Header::To("Smith, John at HQ".into()),
    ];
    headers.extend(extra);
    headers
}

fn convert(msg: &Message) -> MimeMessage {
    let (opts, map) = setup();
    legacy_to_mime(msg, &LegacyContext::default(), &opts, &map).unwrap()
}

fn text(mime: &MimeMessage) -> String {
    String::from_utf8(mime.bytes.clone()).unwrap()
}

/// The header block (up to the first blank line).
fn head(mime: &MimeMessage) -> String {
    let t = text(mime);
    t.split("\r\n\r\n").next().unwrap().to_owned()
}

#[test]
fn header_table() {
    let cases: Vec<(Vec<Header>, Vec<&str>, Vec<&str>)> = vec![
        (
            vec![],
            vec![
                "Date: Tue, 2 Jun 1998 08:39:00 +0000\r\n",
                "From: \"Doe, Jane\" <Doe_Jane@legacy.example.com>\r\n",
                "To: \"Smith, John\" <Smith_John@legacy.example.com>\r\n",
                "MIME-Version: 1.0\r\n",
                "Content-Type: text/plain; charset=\"utf-8\"\r\n",
            ],
            vec!["Subject:", "Importance:", "Bcc:", "Cc:"],
        ),
        (
            vec![
                Header::To("user@example.org at SMTPGW".into()),
                Header::Cc("Display [SMTP:d@example.org] at SITE".into()),
                Header::Bcc("Secret, Person at HQ".into()),
            ],
            vec![
                "To: \"Smith, John\" <Smith_John@legacy.example.com>, <user@example.org>\r\n",
                "Cc: \"Display\" <d@example.org>\r\n",
            ],
            vec!["Bcc:", "Secret"],
        ),
        (
            vec![Header::Subject("Übersicht [draft]".into())],
            vec!["Subject: =?utf-8?"],
            vec![],
        ),
        (
            vec![Header::Subject("Plain [draft]".into())],
            vec!["Subject: Plain [draft]\r\n"],
            vec![],
        ),
        (
            vec![Header::Other {
                keyword: "Priority".into(),
                value: "Urgent".into(),
            }],
            vec!["Importance: high\r\n", "X-Priority: 1 (Highest)\r\n"],
            vec![],
        ),
        (
            vec![Header::Other {
                keyword: "PRIORITY".into(),
                value: "high".into(),
            }],
            vec!["Importance: high\r\n", "X-Priority: 2 (High)\r\n"],
            vec![],
        ),
        (
            vec![Header::Other {
                keyword: "Priority".into(),
                value: "Low".into(),
            }],
            vec!["Importance: low\r\n", "X-Priority: 5 (Lowest)\r\n"],
            vec![],
        ),
        (
            vec![Header::Other {
                keyword: "Priority".into(),
                value: "Normal".into(),
            }],
            vec![],
            vec!["Importance:", "X-Priority:", "Priority"],
        ),
        (
            vec![Header::Other {
                keyword: "Priority".into(),
                value: "Soonish".into(),
            }],
            vec!["X-Legacy-Priority: Soonish\r\n"],
            vec!["Importance:"],
        ),
        (
            vec![Header::Other {
                keyword: "RRT".into(),
                value: "1".into(),
            }],
            vec!["Disposition-Notification-To: \"Doe, Jane\" <Doe_Jane@legacy.example.com>\r\n"],
            vec![],
        ),
        (
            vec![Header::Other {
                keyword: "Receipt".into(),
                value: "No".into(),
            }],
            vec![],
            vec!["Disposition-Notification-To:", "Receipt"],
        ),
        (
            vec![Header::Other {
                keyword: "Folder".into(),
                value: "Projects".into(),
            }],
            vec!["X-Legacy-Folder: Projects\r\n"],
            vec![],
        ),
        (
            vec![Header::Other {
                keyword: "Odd Key_word".into(),
                value: "v".into(),
            }],
            vec!["X-Legacy-Odd-Key-word: v\r\n"],
            vec![],
        ),
    ];
    for (extra, present, absent) in cases {
        let msg = Message {
            headers: headers(extra.clone()),
            items: vec![text_item("x\r\n")],
        };
        let head = head(&convert(&msg));
        for p in present {
            assert!(head.contains(p), "{extra:?}: {p:?} not in\n{head}");
        }
        for a in absent {
            assert!(!head.contains(a), "{extra:?}: {a:?} in\n{head}");
        }
    }
}

#[test]
fn message_id_is_deterministic_and_content_derived() {
    let msg = Message {
        headers: headers(vec![Header::Subject("Hi".into())]),
        items: vec![
            text_item("Hello\r\n"),
            item(ItemKind::File, "A.TXT", b"abc"),
        ],
    };
    let a = convert(&msg);
    let b = convert(&msg);
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.message_id, b.message_id);
    assert!(head(&a).contains(&format!("Message-ID: {}\r\n", a.message_id)));
    assert!(a.message_id.ends_with("@legacy.example.com>"));
    let mut other = msg.clone();
    other.items.pop();
    assert_ne!(convert(&other).message_id, a.message_id);
}

#[test]
fn items_table() {
    let stamp = parse_date("5/6/97 3:10PM", DateOrder::Us).ok();
    let mut wk4 = item(ItemKind::File, "BUDGET.WK4", &[0, 1, 2, 255]);
    wk4.stamp = stamp;
    let cases: Vec<(Vec<ccgate_ccmail::Item>, Vec<&str>)> = vec![
        (
            vec![text_item("one\r\n"), text_item("two\n")],
            // Consecutive text items are one part; a single part needs no multipart.
            vec!["Content-Type: text/plain; charset=\"utf-8\"", "\r\n\r\none\r\ntwo\r\n"],
        ),
        (
            vec![wk4],
            vec![
                "Content-Type: application/vnd.lotus-1-2-3; name=\"BUDGET.WK4\"",
                "Content-Disposition: attachment; filename=\"BUDGET.WK4\";\r\n modification-date=\"Tue, 6 May 1997 15:10:00 +0000\"",
                "Content-Transfer-Encoding: base64\r\n\r\nAAEC/w==",
            ],
        ),
        (
            vec![text_item("hi\r\n"), item(ItemKind::File, "", b"x")],
            vec!["multipart/mixed; boundary=\"=_ccgate_", "filename=\"ATT00002.DAT\""],
        ),
        (
            vec![item(ItemKind::Fax, "page 1", b"fax")],
            vec!["application/octet-stream; name=\"page 1\"", "X-Legacy-Item: Fax\r\n"],
        ),
        (
            vec![item(ItemKind::Other("Video".into()), "clip", b"v")],
            vec!["X-Legacy-Item: Video\r\n"],
        ),
        (
            vec![item(ItemKind::Message, "Old note", b"From: Smith, John\r\nSubject: Old note\r\n\r\nold body\r\n")],
            vec![
                "Content-Type: message/rfc822\r\nContent-Description: Old note\r\nContent-Transfer-Encoding: 7bit\r\n\r\nFrom: Smith, John\r\nSubject: Old note\r\nMIME-Version: 1.0\r\n",
                "old body",
            ],
        ),
        (
            vec![item(ItemKind::Message, "plain", b"caf\x82 text\r\n")],
            vec!["\r\n\r\nSubject: plain\r\nMIME-Version: 1.0\r\n", "caf=C3=A9 text"],
        ),
        (
            vec![item(
                ItemKind::Message,
                "inner",
                b"Message:\r\nFrom: Smith, John at HQ\r\nTo: Doe, Jane at HQ\r\nSubject: inner\r\nContents:\r\nText item:\r\ninner body\r\n",
            )],
            vec![
                "Content-Type: message/rfc822",
                "From: \"Smith, John\" <Smith_John@legacy.example.com>\r\nTo: \"Doe, Jane\" <Doe_Jane@legacy.example.com>\r\nSubject: inner\r\nMessage-ID: <",
                "inner body",
            ],
        ),
        (vec![], vec!["Content-Type: text/plain; charset=\"utf-8\""]),
    ];
    for (items, expected) in cases {
        let msg = Message {
            headers: headers(vec![]),
            items: items.clone(),
        };
        let out = text(&convert(&msg));
        for e in expected {
            assert!(out.contains(e), "{items:?}: {e:?} not in\n{out}");
        }
    }
}

#[test]
fn dates_use_the_configured_offset_and_fall_back_to_the_pickup_date() {
    let (mut opts, map) = setup();
    opts.utc_offset_minutes = -300;
    let msg = Message {
        headers: headers(vec![]),
        items: vec![],
    };
    let mime = legacy_to_mime(&msg, &LegacyContext::default(), &opts, &map).unwrap();
    assert!(head(&mime).contains("Date: Tue, 2 Jun 1998 08:39:00 -0500\r\n"));
    assert_eq!(mime.date, Some(896_776_740 + 5 * 3600));

    let undated = Message {
        headers: vec![
            Header::From("Doe, Jane at HQ".into()),
            Header::To("Smith, John at HQ".into()),
        ],
        items: vec![],
    };
    let ctx = LegacyContext {
        received: parse_date("1/2/03 4:05", DateOrder::Us).ok(),
    };
    let mime = legacy_to_mime(&undated, &ctx, &opts, &map).unwrap();
    assert!(head(&mime).contains("Date: Thu, 2 Jan 2003 04:05:00 -0500\r\n"));
    let mime = legacy_to_mime(&undated, &LegacyContext::default(), &opts, &map).unwrap();
    assert!(!head(&mime).contains("Date:"));
    assert!(mime.notes.iter().any(|n| n.contains("Date")));
    assert!(
        mime.mbox_from_line()
            .starts_with("From Doe_Jane@legacy.example.com Thu Jan  1 00:00:00 1970")
    );
}

#[test]
fn senders_and_recipients_that_cannot_be_mapped() {
    let (opts, map) = setup();
    let no_from = Message {
        headers: vec![Header::To("Smith, John at HQ".into())],
        items: vec![],
    };
    assert_eq!(
        legacy_to_mime(&no_from, &LegacyContext::default(), &opts, &map),
        Err(ConvertError::NoSender)
    );
    let bad_from = Message {
        headers: vec![Header::From("at HQ".into())],
        items: vec![],
    };
    assert!(matches!(
        legacy_to_mime(&bad_from, &LegacyContext::default(), &opts, &map),
        Err(ConvertError::BadSender { .. })
    ));
    let long = format!("{} at HQ", "x".repeat(80));
    let bad_rcpt = Message {
        headers: headers(vec![Header::To(long.clone()), Header::Cc("[".into())]),
        items: vec![],
    };
    let mime = legacy_to_mime(&bad_rcpt, &LegacyContext::default(), &opts, &map).unwrap();
    assert_eq!(mime.recipients.len(), 1);
    assert_eq!(mime.notes.len(), 2, "{:?}", mime.notes);
}
