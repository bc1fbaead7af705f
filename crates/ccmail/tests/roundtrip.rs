//! Properties of the reader and writer: `parse(write(m)) == m`, the streaming and slice
//! readers agree, and no input makes either panic or loop.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use ccgate_ccmail::{
    Codepage, DateOrder, Dialect, Header, Item, ItemBody, ItemKind, LegacyDateTime, LegacyTime,
    Message, ReadOptions, Reader, SliceReader, WriteOptions, write_messages,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    // Legacy names: `Last, First`, `First Last`, initials; PO names plain alphanumeric.
    (
        "[A-Z][a-z]{1,8}",
        prop::option::of("[A-Z][a-z]{1,8}"),
        "[A-Z][A-Z0-9]{1,7}",
    )
        .prop_map(|(last, first, po)| match first {
            Some(first) => format!("{last}, {first} at {po}"),
            None => format!("{last} at {po}"),
        })
}

fn foreign() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9]{0,5}(\\.[a-z0-9]{1,5})?",
        "[a-z]{2,8}\\.(com|org|test)",
    )
        .prop_map(|(user, domain)| format!("{user}@{domain} at SMTPGW"))
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![name(), foreign()]
}

fn date() -> impl Strategy<Value = LegacyDateTime> {
    (
        1970u16..=2069,
        1u8..=12,
        1u8..=28,
        prop::option::of((0u8..=23, 0u8..=59)),
    )
        .prop_map(|(year, month, day, time)| LegacyDateTime {
            year,
            month,
            day,
            time: time.map(|(hour, minute)| LegacyTime {
                hour,
                minute,
                second: None,
            }),
        })
}

/// Text the code page can hold, with CR LF line ends.
fn text(max_lines: usize) -> impl Strategy<Value = String> {
    prop::collection::vec("[ -~äöüéÇ£½]{0,60}", 0..max_lines).prop_map(|lines| lines.join("\r\n"))
}

fn subject() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][ -Z\\\\^-~]{0,40}".prop_filter("no trailing blank, not both brackets", |s| {
        !(s.ends_with(' ') || (s.contains('[') && s.contains(']')))
    })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        ("[A-Za-z0-9 ]{0,20}", text(20)).prop_map(|(title, t)| Item {
            kind: ItemKind::Text,
            title: title.trim().to_owned(),
            stamp: None,
            body: ItemBody::Text(t)
        }),
        (
            "[A-Za-z0-9_]{1,8}\\.[a-z]{1,3}",
            prop::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(title, bytes)| Item {
                kind: ItemKind::File,
                title,
                stamp: None,
                body: ItemBody::Bytes(bytes)
            }),
        ("[A-Za-z ]{0,12}", prop::collection::vec(any::<u8>(), 0..50)).prop_map(
            |(title, bytes)| Item {
                kind: ItemKind::Fax,
                title: title.trim().to_owned(),
                stamp: None,
                body: ItemBody::Bytes(bytes)
            }
        ),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        address(),
        prop::option::of(date()),
        prop::collection::vec((0u8..3, address()), 1..6),
        prop::option::of(subject()),
        prop::option::of(("X-[A-Za-z]{1,8}", "[ -~]{0,20}")),
        prop::collection::vec(item(), 0..4),
    )
        .prop_map(|(from, date, rcpts, subject, other, items)| {
            let mut headers = vec![Header::From(from)];
            headers.extend(date.map(Header::Date));
            for (kind, a) in rcpts {
                headers.push(match kind {
                    0 => Header::To(a),
                    1 => Header::Cc(a),
                    _ => Header::Bcc(a),
                });
            }
            if let Some((keyword, value)) = other {
                let value = value.trim_start().to_owned();
                headers.push(Header::Other { keyword, value });
            }
            headers.extend(subject.map(Header::Subject));
            Message { headers, items }
        })
}

fn read_all(bytes: &[u8], opts: &ReadOptions) -> Vec<Message> {
    SliceReader::new(bytes)
        .map(|r| r.expect("writer output parses").decode(opts).0)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_write_is_identity(msg in message(), order in prop_oneof![Just(DateOrder::Us), Just(DateOrder::Eu), Just(DateOrder::Jp)], cp in prop_oneof![Just(Codepage::Ibm437), Just(Codepage::Ibm850)]) {
        let wopts = WriteOptions { date_order: order, codepage: cp, ..WriteOptions::default() };
        let ropts = ReadOptions { date_order: order, codepage: cp, ..ReadOptions::default() };
        let mut bytes = Vec::new();
        let report = write_messages(&msg, &wopts, &mut bytes).unwrap();
        prop_assert_eq!(report.messages, 1);
        prop_assert_eq!(report.replaced_chars, 0);
        prop_assert!(report.changes.is_empty(), "{:?}", report.changes);
        let back = read_all(&bytes, &ropts);
        prop_assert_eq!(back, vec![msg.clone()]);
        // The streaming reader, fed a few bytes at a time, reads the same, with no warning.
        let streamed: Vec<_> = Reader::new(Trickle(&bytes, 3), ropts.clone()).map(|r| r.unwrap()).collect();
        prop_assert_eq!(streamed.len(), 1);
        prop_assert!(streamed[0].diagnostics.is_empty(), "{:?}", streamed[0].diagnostics);
        prop_assert_eq!(&streamed[0].message, &msg);
        // Deterministic.
        let mut again = Vec::new();
        write_messages(&msg, &wopts, &mut again).unwrap();
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn concatenated_messages_read_back_in_order(msgs in prop::collection::vec(message(), 1..5)) {
        let opts = WriteOptions::default();
        let mut bytes = Vec::new();
        for m in &msgs {
            write_messages(m, &opts, &mut bytes).unwrap();
        }
        prop_assert_eq!(read_all(&bytes, &ReadOptions::default()), msgs);
    }

    #[test]
    fn readers_agree_and_never_panic(bytes in prop::collection::vec(prop_oneof![
        Just(b"Message:\r\n".to_vec()), Just(b"Contents:\r\n".to_vec()), Just(b"Text item: t\r\n".to_vec()),
        Just(b"File item: a.txt 1/2/98\r\n".to_vec()), Just(b"From: A at HQ\r\n".to_vec()), Just(b"To: B at HQ\n".to_vec()),
        Just(b"Date: 1/2/98 3:04PM\r\n".to_vec()), Just(b"12\r\n".to_vec()), Just(b"0\r\n".to_vec()), Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()), Just(b"\r".to_vec()), prop::collection::vec(any::<u8>(), 0..12),
    ], 0..40), step in 1usize..16) {
        let bytes: Vec<u8> = bytes.concat();
        let slice: Vec<_> = SliceReader::new(&bytes).map(|r| r.map(|m| m.decode(&ReadOptions::default()).0).map_err(|e| e.position)).collect();
        let stream: Vec<_> = Reader::new(Trickle(&bytes, step), ReadOptions::default()).map(|r| match r {
            Ok(m) => Ok(m.message),
            Err(ccgate_ccmail::ReadError::Parse { error, .. }) => Err(error.position),
            Err(e) => panic!("{e}"),
        }).collect();
        prop_assert_eq!(slice, stream);
    }
}

/// Bytes in steps of a few.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn oversized_message_is_reported_and_skipped() {
    let mut bytes =
        b"Message:\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\nText item:\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 10_000));
    bytes.extend_from_slice(
        b"\r\nMessage:\r\nFrom: C at HQ\r\nTo: D at HQ\r\nContents:\r\nText item:\r\nsmall\r\n",
    );
    let opts = ReadOptions {
        max_message_size: 1_000,
        ..ReadOptions::default()
    };
    let results: Vec<_> = Reader::new(Trickle(&bytes, 100), opts).collect();
    assert_eq!(results.len(), 2, "{results:?}");
    match &results[0] {
        Err(ccgate_ccmail::ReadError::Parse { error, raw }) => {
            assert!(
                error.to_string().contains("larger than the limit"),
                "{error}"
            );
            assert!(raw.len() <= 1_000);
        }
        other => panic!("{other:?}"),
    }
    let second = results[1].as_ref().unwrap();
    assert_eq!(second.message.from(), Some("C at HQ"));
    assert_eq!(second.position.line, 7);
}

#[test]
fn dialect_ie5_keeps_brackets() {
    let msg = Message {
        headers: vec![
            Header::From("[SMTP:a@b.test]".into()),
            Header::To("B at HQ".into()),
            Header::Subject("[x] y [z]".into()),
        ],
        items: vec![],
    };
    let mut bytes = Vec::new();
    write_messages(
        &msg,
        &WriteOptions {
            dialect: Dialect::Ie5,
            ..WriteOptions::default()
        },
        &mut bytes,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("Subject: [x] y [z]"), "{text}");
}
