//! A full disk heals: the spool on a small real tmpfs is filled until writes fail with ENOSPC;
//! new mail is refused (disk full), deliveries recorded meanwhile are kept and retried, and
//! once space is freed the spool takes mail again by itself, without a reopen. Nothing
//! acknowledged is lost (checked by reopening). Needs root (mount); says SKIPPED otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::{Route, Spool, SpoolOptions, SpoolStatus};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(parent: &Path, size: &str) -> Option<Self> {
        let dir = parent.join("small");
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn enqueue(spool: &Spool, n: usize, size: usize) -> ccgate_queue::Result<QueueId> {
    let rcpt: EmailAddress = format!("user{n}@example.com").parse().unwrap();
    let envelope = Envelope {
        sender: "a@example.com".parse::<ReversePath>().unwrap(),
        recipients: vec![rcpt.clone()],
    };
    let mut body = format!("Subject: {n}\r\n\r\n").into_bytes();
    body.resize(size, b'x');
    spool.enqueue(
        &envelope,
        &[Route::new(Lane::Modern, rcpt)],
        &body,
        ccgate_queue::now(),
    )
}

#[test]
fn a_full_disk_refuses_new_mail_then_heals_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::new(tmp.path(), "8m") else {
        println!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    };
    let dir = mount.0.join("queue");
    let options = SpoolOptions {
        min_free: 0,
        journal_segment_bytes: 1 << 20,
        data_segment_bytes: 1 << 20,
        ..SpoolOptions::default()
    };
    let spool = Spool::open(&dir, options.clone()).unwrap();
    // A delivery in flight when the disk fills.
    enqueue(&spool, 0, 1000).unwrap();
    let lease = spool
        .lease(Lane::Modern, 1, ccgate_queue::now())
        .unwrap()
        .remove(0);

    let mut acked = vec![lease.queue_id];
    let mut refused = None;
    for n in 1..10_000 {
        match enqueue(&spool, n, 64 << 10) {
            Ok(id) => acked.push(id),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the 8 MiB file system never filled");
    assert!(refused.is_disk_full(), "{refused}");
    assert!(
        matches!(
            spool.status(),
            SpoolStatus::WriteFailing {
                disk_full: true,
                ..
            }
        ),
        "{}",
        spool.status()
    );
    assert!(spool.is_alive(), "a full disk must not need a restart");
    assert!(!spool.is_healthy());
    // Still refused while full.
    assert!(
        enqueue(&spool, 99_999, 64 << 10)
            .unwrap_err()
            .is_disk_full()
    );

    // The delivery finishes while the disk is full: its outcome waits for space.
    let spool = std::sync::Arc::new(spool);
    let completer = {
        let spool = std::sync::Arc::clone(&spool);
        std::thread::spawn(move || spool.complete(lease, &[Ok(())], ccgate_queue::now()))
    };

    // Free space (as an administrator would); the spool resumes by itself.
    let filler = mount.0.join("filler");
    let _ = std::fs::remove_file(&filler);
    // Nothing else on this file system to remove: drop the last data segment's worth by
    // remounting bigger, the way one grows a volume.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=32m"])
        .arg(&mount.0)
        .status()
        .unwrap();
    assert!(grown.success());
    let freed = Instant::now();
    let mut taken = None;
    while freed.elapsed() < Duration::from_secs(30) {
        match enqueue(&spool, 100_000, 1000) {
            Ok(id) => {
                taken = Some(id);
                break;
            }
            Err(e) => assert!(e.is_disk_full(), "{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let taken = taken.expect("the spool did not resume within 30 s of space returning");
    println!("accepting again {:?} after space returned", freed.elapsed());
    acked.push(taken);
    let done = completer.join().unwrap().unwrap();
    assert!(done.finished, "the delivery recorded during the stall");
    assert_eq!(spool.status(), SpoolStatus::Accepting);

    // Reopen: every acknowledged message but the delivered one is there.
    let spool = std::sync::Arc::into_inner(spool).unwrap();
    spool.close().unwrap();
    let spool = Spool::open(&dir, options).unwrap();
    let listed: std::collections::BTreeSet<String> = spool
        .list(&ccgate_queue::Filter::default(), ccgate_queue::now())
        .into_iter()
        .map(|m| m.queue_id)
        .collect();
    assert!(
        !listed.contains(&acked[0].to_string()),
        "delivered mail came back"
    );
    for id in &acked[1..] {
        assert!(listed.contains(&id.to_string()), "acknowledged {id} lost");
    }
    assert_eq!(listed.len(), acked.len() - 1);
    spool.close().unwrap();
}

#[test]
fn min_free_refuses_new_mail_before_the_disk_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::new(tmp.path(), "8m") else {
        println!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    };
    let options = SpoolOptions {
        min_free: 6 << 20,
        min_free_cap_percent: 0,
        ..SpoolOptions::default()
    };
    let spool = Spool::open(&mount.0.join("queue"), options).unwrap();
    let mut n = 0;
    let err = loop {
        n += 1;
        match enqueue(&spool, n, 64 << 10) {
            Ok(_) => assert!(n < 1000),
            Err(e) => break e,
        }
    };
    assert!(err.is_disk_full(), "{err}");
    assert!(err.to_string().contains("min_free"), "{err}");
    assert!(
        matches!(
            spool.status(),
            SpoolStatus::LowSpace { .. } | SpoolStatus::Accepting
        ),
        "{}",
        spool.status()
    );
    // The writer never failed: deliveries can still record their outcomes.
    let lease = spool
        .lease(Lane::Modern, 1, ccgate_queue::now())
        .unwrap()
        .remove(0);
    assert!(
        spool
            .complete(lease, &[Ok(())], ccgate_queue::now())
            .unwrap()
            .finished
    );
    spool.close().unwrap();
}
