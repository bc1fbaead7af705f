//! One test per known Import 8.x reject (legacy-format.md §4): `check_import` finds it in a
//! message that was read, and the writer never produces it.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use ccgate_ccmail::{
    Dialect, Header, Item, ItemBody, ItemKind, Message, ParseErrorKind, ReadOptions, Reader,
    Reject, SliceReader, WriteError, WriteOptions, check_import, write_messages,
};

fn read_one(text: &str) -> ccgate_ccmail::ReadMessage {
    let mut results: Vec<_> = Reader::new(text.as_bytes(), ReadOptions::default()).collect();
    assert_eq!(results.len(), 1);
    results.remove(0).unwrap()
}

fn rejects(text: &str) -> Vec<Reject> {
    let read = read_one(text);
    check_import(&read.message, read.header_bytes, Dialect::Ie8)
}

fn text_item(body: &str) -> Item {
    Item {
        kind: ItemKind::Text,
        title: String::new(),
        stamp: None,
        body: ItemBody::Text(body.to_owned()),
    }
}

fn msg(headers: Vec<Header>) -> Message {
    Message {
        headers,
        items: vec![text_item("body")],
    }
}

fn write(m: &Message) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    write_messages(m, &WriteOptions::default(), &mut out).map(|_| out)
}

fn reread(bytes: &[u8]) -> Vec<Message> {
    SliceReader::new(bytes)
        .map(|r| r.unwrap().decode(&ReadOptions::default()).0)
        .collect()
}

#[test]
fn bracket_in_address_q232687() {
    let found =
        rejects("Message:\nFrom: ,User [SMTP:User@Domain.com] at EXSITE\nTo: B at HQ\nContents:\n");
    assert!(
        matches!(found.as_slice(), [Reject::BracketInAddress { .. }]),
        "{found:?}"
    );
    // The writer re-encodes the bracketed reply address instead of wedging the queue.
    let bytes = write(&msg(vec![
        Header::From(",User [SMTP:User@Domain.com] at EXSITE".into()),
        Header::To("[ccmail:Doe, Jane at HQ]".into()),
    ]))
    .unwrap();
    assert!(
        !bytes.contains(&b'[') && !bytes.contains(&b']'),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let back = reread(&bytes);
    let read = read_one(std::str::from_utf8(&bytes).unwrap());
    assert!(check_import(&back[0], read.header_bytes, Dialect::Ie8).is_empty());
    assert_eq!(back[0].from(), Some("User@Domain.com at SMTPGW"));
    assert_eq!(
        back[0].recipients().collect::<Vec<_>>(),
        ["Doe, Jane at HQ"]
    );
}

#[test]
fn subject_with_both_brackets_q234350() {
    let found =
        rejects("Message:\nFrom: A at HQ\nTo: B at HQ\nSubject: [EXT] news [1/2]\nContents:\n");
    assert!(
        matches!(found.as_slice(), [Reject::SubjectBrackets { .. }]),
        "{found:?}"
    );
    assert!(
        rejects("Message:\nFrom: A at HQ\nTo: B at HQ\nSubject: only one [ bracket\nContents:\n")
            .is_empty()
    );
    let bytes = write(&msg(vec![
        Header::From("A at HQ".into()),
        Header::To("B at HQ".into()),
        Header::Subject("[EXT] news [1/2]".into()),
    ]))
    .unwrap();
    assert_eq!(reread(&bytes)[0].subject(), Some("(EXT) news (1/2)"));
}

#[test]
fn header_buffer_full_q166499() {
    let mut text = String::from("Message:\nFrom: A at HQ\n");
    for i in 0..300 {
        text.push_str(&format!("To: Recipient Number {i} at HQ\n"));
    }
    text.push_str("Contents:\n");
    assert!(
        rejects(&text)
            .iter()
            .any(|r| matches!(r, Reject::HeaderBufferFull { .. }))
    );
    // The writer splits the recipients over several messages, each within 4,096 bytes.
    let mut headers = vec![
        Header::From("A at HQ".into()),
        Header::Subject("many".into()),
    ];
    headers.extend((0..300).map(|i| Header::To(format!("Recipient Number {i} at HQ"))));
    let bytes = write(&msg(headers)).unwrap();
    let copies = reread(&bytes);
    assert!(copies.len() > 1);
    let mut all = Vec::new();
    for (copy, read) in copies
        .iter()
        .zip(Reader::new(bytes.as_slice(), ReadOptions::default()))
    {
        let read = read.unwrap();
        assert!(read.header_bytes <= 4096, "{}", read.header_bytes);
        assert_eq!(copy.subject(), Some("many"));
        assert_eq!(copy.items, vec![text_item("body")]);
        all.extend(copy.recipients().map(str::to_owned));
    }
    let want: Vec<String> = (0..300)
        .map(|i| format!("Recipient Number {i} at HQ"))
        .collect();
    assert_eq!(all, want, "every recipient exactly once, in order");
    // When even one recipient does not fit, the writer says so.
    let huge = msg(vec![
        Header::From("A at HQ".into()),
        Header::To("B at HQ".into()),
        Header::Other {
            keyword: "X-Huge".into(),
            value: "x".repeat(5000),
        },
    ]);
    assert!(matches!(
        write(&huge),
        Err(WriteError::HeaderTooLarge { .. })
    ));
}

#[test]
fn text_item_over_20k_q156063() {
    let big: String = (0..1000)
        .map(|i| format!("line {i:04} of a long report\r\n"))
        .collect();
    assert!(big.len() > 20 * 1024);
    let text =
        format!("Message:\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\nText item:\r\n{big}\r\n");
    let found = rejects(&text);
    assert!(
        matches!(found.as_slice(), [Reject::LargeTextItem { .. }]),
        "{found:?}"
    );
    assert!(
        !found[0].is_rejected(),
        "Import converts, it does not reject"
    );
    let m = Message {
        headers: vec![Header::From("A at HQ".into()), Header::To("B at HQ".into())],
        items: vec![text_item(&big)],
    };
    let bytes = write(&m).unwrap();
    let back = reread(&bytes);
    let mut joined = String::new();
    for item in &back[0].items {
        let ItemBody::Text(t) = &item.body else {
            panic!()
        };
        assert!(t.len() <= 20 * 1024);
        joined.push_str(t);
    }
    assert!(back[0].items.len() > 1);
    assert_eq!(joined, big, "split at line ends, nothing lost");
}

#[test]
fn unknown_date_format_q180641() {
    let read = read_one("Message:\nFrom: A at HQ\nDate: Tue, 2 Jun 1998\nTo: B at HQ\nContents:\n");
    assert_eq!(
        read.diagnostics.len(),
        1,
        "the reader keeps the date as text and says why"
    );
    assert!(matches!(
        check_import(&read.message, read.header_bytes, Dialect::Ie8).as_slice(),
        [Reject::UnknownDateFormat { .. }]
    ));
    let m = msg(vec![
        Header::From("A at HQ".into()),
        Header::Other {
            keyword: "Date".into(),
            value: "Tue, 2 Jun 1998".into(),
        },
        Header::To("B at HQ".into()),
    ]);
    assert!(matches!(write(&m), Err(WriteError::BadDate { .. })));
}

#[test]
fn missing_contents_q234745() {
    let results: Vec<_> = Reader::new(
        &b"Message:\nFrom: A at HQ\nTo: B at HQ\nText item:\nx\n"[..],
        ReadOptions::default(),
    )
    .collect();
    match results.as_slice() {
        [Err(ccgate_ccmail::ReadError::Parse { error, .. })] => {
            assert!(
                matches!(error.kind, ParseErrorKind::MissingContents { .. }),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_from_q192594() {
    assert!(rejects("Message:\nFrom:\nTo: B at HQ\nContents:\n").contains(&Reject::EmptyFrom));
    assert!(rejects("Message:\nTo: B at HQ\nContents:\n").contains(&Reject::EmptyFrom));
    assert_eq!(
        write(&msg(vec![
            Header::From("  ".into()),
            Header::To("B at HQ".into())
        ])),
        Err(WriteError::EmptyFrom)
    );
    assert_eq!(
        write(&msg(vec![Header::To("B at HQ".into())])),
        Err(WriteError::EmptyFrom)
    );
}

#[test]
fn nameless_recipient_q249133() {
    let found = rejects("Message:\nFrom: A at HQ\nTo: at HQ\nContents:\n");
    assert!(
        matches!(found.as_slice(), [Reject::NamelessRecipient { .. }]),
        "{found:?}"
    );
    assert!(matches!(
        write(&msg(vec![
            Header::From("A at HQ".into()),
            Header::To("at HQ".into())
        ])),
        Err(WriteError::BadAddress { .. })
    ));
}

#[test]
fn no_recipient() {
    assert!(rejects("Message:\nFrom: A at HQ\nContents:\n").contains(&Reject::NoRecipients));
    assert_eq!(
        write(&msg(vec![Header::From("A at HQ".into())])),
        Err(WriteError::NoRecipients)
    );
}
