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

#[test]
fn enqueue_parts_then_answers_once_the_message_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        min_free: 0,
        ..SpoolOptions::default()
    };
    let spool = Spool::open(dir.path(), options.clone()).unwrap();
    let (envelope, routes) = envelope();
    // Many at once from several threads: every callback is called once, with its own id.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut sent = Vec::new();
    std::thread::scope(|s| {
        for n in 0..4 {
            let (spool, envelope, routes, tx) = (&spool, &envelope, &routes, tx.clone());
            s.spawn(move || {
                let mut ids = Vec::new();
                for m in 0..50 {
                    let id = QueueId::generate();
                    let body = format!("Subject: {n}.{m}\r\n\r\nhi\r\n").into_bytes();
                    let tx = tx.clone();
                    spool
                        .enqueue_parts_then(
                            id,
                            envelope,
                            routes,
                            vec![BodyPart::Bytes(Bytes::from(body))],
                            t(0),
                            move |result| tx.send((id, result)).unwrap(),
                        )
                        .unwrap();
                    ids.push(id);
                }
                ids
            });
        }
    });
    drop(tx);
    let mut answered: Vec<QueueId> = rx
        .iter()
        .map(|(id, result)| {
            assert_eq!(result.unwrap(), id);
            id
        })
        .collect();
    answered.sort();
    sent.extend(answered.iter().copied());
    answered.dedup();
    assert_eq!(answered.len(), 200, "each callback once");
    assert_eq!(spool.len(), 200);

    // Refused before the write (a route missing): an error now, the callback never called.
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&called);
    let refused = spool.enqueue_parts_then(
        QueueId::generate(),
        &envelope,
        &[],
        vec![BodyPart::Bytes(Bytes::from_static(b"x\r\n"))],
        t(0),
        move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst),
    );
    assert!(refused.is_err());
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));

    // Durable: all there after a reopen.
    spool.close().unwrap();
    let spool = Spool::open(dir.path(), options).unwrap();
    assert_eq!(spool.len(), 200);
    assert_eq!(sent.len(), 200);
}
