//! The writer on arbitrary messages: whatever it accepts, the reader reads, and writing what
//! was read gives the same bytes (the writer's output is a fixed point). In ie8 no address line
//! holds a bracket.
#![no_main]

use ccgate_ccmail::{Message, ReadOptions, SliceReader, WriteOptions, write_messages};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Message, bool)| {
    let (msg, ie5) = input;
    let opts = WriteOptions {
        dialect: if ie5 {
            ccgate_ccmail::Dialect::Ie5
        } else {
            ccgate_ccmail::Dialect::Ie8
        },
        ..WriteOptions::default()
    };
    let mut first = Vec::new();
    let Ok(report) = write_messages(&msg, &opts, &mut first) else {
        return;
    };
    let read: Vec<Message> = SliceReader::new(&first)
        .map(|r| {
            r.expect("the writer's output must parse")
                .decode(&ReadOptions::default())
                .0
        })
        .collect();
    assert_eq!(read.len(), report.messages);
    let mut second = Vec::new();
    for m in &read {
        write_messages(m, &opts, &mut second)
            .expect("what was written and read can be written again");
    }
    assert_eq!(first, second, "writer output is not a fixed point");
    if !ie5 {
        for raw in SliceReader::new(&first).flatten() {
            for h in &raw.headers {
                let is_address = [&b"From"[..], b"To", b"Cc", b"Bcc"]
                    .iter()
                    .any(|k| h.keyword.eq_ignore_ascii_case(k));
                assert!(
                    !(is_address && h.value.iter().any(|b| *b == b'[' || *b == b']')),
                    "bracket in {:?}",
                    String::from_utf8_lossy(h.value)
                );
            }
        }
    }
});
