//! Properties: legacy → MIME → legacy keeps what a user notices (sender, recipients, subject,
//! date to the minute, body text, attachment names and bytes); conversions are deterministic;
//! whatever bytes come in, `mime_to_legacy` gives a message the writer accepts.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use ccgate_ccmail::{Header, Item, ItemBody, ItemKind, LegacyDateTime, LegacyTime, Message};
use ccgate_convert::{LegacyContext, legacy_to_mime, mime_to_legacy};
use common::{assert_writable, files, setup, texts, values};
use proptest::prelude::*;

fn person() -> impl Strategy<Value = String> {
    prop_oneof![
        ("[A-Z][a-z]{1,8}", "[A-Z][a-z]{1,8}").prop_map(|(l, f)| format!("{l}, {f} at HQ")),
        ("[A-Z][a-z]{1,8}", "[A-Z][a-z]{1,8}", "[A-Z]{2,5}[0-9]?")
            .prop_map(|(l, f, po)| format!("{l}, {f} at {po}")),
        ("[a-z]{1,8}", "[a-z]{1,8}", "(com|org|net)")
            .prop_map(|(u, d, t)| format!("{u}@{d}.{t} at SMTPGW")),
    ]
}

fn date() -> impl Strategy<Value = LegacyDateTime> {
    (1970u16..=2069, 1u8..=12, 1u8..=28, 0u8..=23, 0u8..=59).prop_map(
        |(year, month, day, hour, minute)| LegacyDateTime {
            year,
            month,
            day,
            time: Some(LegacyTime {
                hour,
                minute,
                second: None,
            }),
        },
    )
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec("[ -~äöüÄÖÜßé€£]{0,90}", 0..6)
        .prop_map(|lines| lines.iter().map(|l| format!("{l}\r\n")).collect::<String>())
}

fn item() -> impl Strategy<Value = Item> {
    let bytes = prop::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        text().prop_map(|t| Item {
            kind: ItemKind::Text,
            title: String::new(),
            stamp: None,
            body: ItemBody::Text(t),
        }),
        ("[A-Za-z0-9_-]{1,8}\\.[a-z0-9]{3}", bytes.clone()).prop_map(|(title, b)| Item {
            kind: ItemKind::File,
            title,
            stamp: None,
            body: ItemBody::Bytes(b),
        }),
        (
            prop_oneof![
                Just(ItemKind::Fax),
                Just(ItemKind::Graphics),
                Just(ItemKind::Sound)
            ],
            "[A-Za-z][A-Za-z0-9 ]{0,10}[A-Za-z0-9]",
            bytes
        )
            .prop_map(|(kind, title, b)| Item {
                kind,
                title,
                stamp: None,
                body: ItemBody::Bytes(b),
            }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        person(),
        prop::collection::vec(person(), 1..4),
        prop::collection::vec(person(), 0..3),
        date(),
        "[!-~äöüé€]([ -~äöüé€]{0,50}[!-~äöüé€])?",
        prop::collection::vec(item(), 0..5),
    )
        .prop_map(|(from, to, cc, date, subject, items)| {
            let mut headers = vec![Header::From(from), Header::Date(date)];
            let mut seen = Vec::new();
            for t in to {
                if !seen.contains(&t) {
                    seen.push(t.clone());
                    headers.push(Header::To(t));
                }
            }
            for c in cc {
                if !seen.contains(&c) {
                    seen.push(c.clone());
                    headers.push(Header::Cc(c));
                }
            }
            headers.push(Header::Subject(subject));
            Message { headers, items }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn legacy_mime_legacy_keeps_what_users_notice(msg in message()) {
        let (opts, map) = setup();
        let mime = legacy_to_mime(&msg, &LegacyContext::default(), &opts, &map).unwrap();
        let again = legacy_to_mime(&msg, &LegacyContext::default(), &opts, &map).unwrap();
        prop_assert_eq!(&mime.bytes, &again.bytes);
        prop_assert!(mime.notes.is_empty(), "{:?}", mime.notes);

        let back = mime_to_legacy(&mime.bytes, &opts, &map);
        assert_writable(&back.message);
        prop_assert_eq!(back.message_id.as_deref(), Some(mime.message_id.as_str()));
        for keyword in ["From", "To", "Cc", "Date", "Subject"] {
            prop_assert_eq!(values(&back.message, keyword), values(&msg, keyword), "{}", keyword);
        }
        prop_assert_eq!(texts(&back.message).concat(), texts(&msg).concat());
        prop_assert_eq!(files(&back.message), files(&msg));
        // A second trip changes nothing.
        let mime2 = legacy_to_mime(&back.message, &LegacyContext::default(), &opts, &map).unwrap();
        let back2 = mime_to_legacy(&mime2.bytes, &opts, &map);
        prop_assert_eq!(&back2.message, &back.message);
    }

    #[test]
    fn any_bytes_give_a_writable_message(raw in prop::collection::vec(any::<u8>(), 0..600)) {
        let (opts, map) = setup();
        let conv = mime_to_legacy(&raw, &opts, &map);
        assert_writable(&conv.message);
        prop_assert_eq!(mime_to_legacy(&raw, &opts, &map), conv);
    }

    #[test]
    fn damaged_fixtures_give_writable_messages(
        which in 0usize..9,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let names = [
            "alternative.eml", "html-only.eml", "latin1.eml", "quoted-printable.eml",
            "base64-attachment.eml", "nested.eml", "broken-boundary.eml", "garbage-8bit.eml",
            "undisclosed.eml",
        ];
        let mut raw = common::fixture(names[which]);
        for (at, byte) in flips {
            let idx = at.index(raw.len());
            raw[idx] = byte;
        }
        raw.truncate(cut.index(raw.len() + 1));
        let (opts, map) = setup();
        assert_writable(&mime_to_legacy(&raw, &opts, &map).message);
    }
}

#[test]
fn forwarded_items_survive_two_round_trips() {
    let (opts, map) = setup();
    let msg = Message {
        headers: vec![
            Header::From("Doe, Jane at HQ".into()),
            Header::To("Smith, John at HQ".into()),
        ],
        items: vec![Item {
            kind: ItemKind::Message,
            title: "Old note".into(),
            stamp: None,
            body: ItemBody::Bytes(
                b"From: Smith, John\r\nSubject: Old note\r\n\r\nold body\r\n".to_vec(),
            ),
        }],
    };
    let mime = legacy_to_mime(&msg, &LegacyContext::default(), &opts, &map).unwrap();
    let back = mime_to_legacy(&mime.bytes, &opts, &map);
    assert_eq!(files(&back.message), files(&msg));
    assert_writable(&back.message);
}
