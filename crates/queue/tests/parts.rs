//! `Spool::enqueue_parts`: bodies in shared buffers and spill files are stored byte for byte,
//! survive a reopen, and leave nothing in `tmp/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::{BodyPart, Route, Spool, SpoolOptions};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000 + secs)
}

fn envelope() -> (Envelope, Vec<Route>) {
    let rcpt: EmailAddress = "rcpt@example.com".parse().unwrap();
    let envelope = Envelope {
        sender: "a@example.org".parse::<ReversePath>().unwrap(),
        recipients: vec![rcpt.clone()],
    };
    (envelope, vec![Route::new(Lane::Modern, rcpt)])
}

#[test]
fn parts_and_spill_files_are_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let (envelope, routes) = envelope();
    let header = b"Received: from x\r\n".to_vec();
    // Sizes around the writer's 256 KiB direct-write threshold and its 1 MiB copy chunk.
    let mut expected = Vec::new();
    for (n, spilled) in [(0usize, 1_000usize), (1, 300_000), (2, 3_000_123)] {
        let text: Vec<u8> = (0..spilled).map(|i| b'a' + (i % 23) as u8).collect();
        let tail = format!("tail {n}\r\n").into_bytes();
        let mut spill = spool.spill_file().unwrap();
        for chunk in text.chunks(70_000) {
            spill.append(chunk).unwrap();
        }
        assert_eq!(spill.len(), spilled as u64);
        let parts = vec![
            BodyPart::Bytes(Bytes::from(header.clone())),
            BodyPart::File(spill),
            BodyPart::Bytes(Bytes::from(tail.clone())),
        ];
        let id = spool
            .enqueue_parts(QueueId::generate(), &envelope, &routes, parts, t(0))
            .unwrap();
        expected.push((id, [header.clone(), text, tail].concat()));
    }
    let tmp = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "spill files are unlinked");
    let check = |spool: &Spool| {
        let leases = spool.lease(Lane::Modern, 10, t(1)).unwrap();
        assert_eq!(leases.len(), expected.len());
        for lease in &leases {
            let (_, want) = expected
                .iter()
                .find(|(id, _)| *id == lease.queue_id)
                .unwrap();
            assert!(
                spool.lease_body(lease).unwrap() == *want,
                "{}",
                lease.queue_id
            );
        }
        for lease in leases {
            spool.abandon(lease).unwrap();
        }
    };
    check(&spool);
    spool.close().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    check(&spool);
}
