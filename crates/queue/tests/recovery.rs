//! Recovery from hand-built crash states: torn record, missing commit marker, duplicate id,
//! state log cut mid-record, temporary files never renamed, a corrupt record mid-file, a
//! missing body. Each test builds a real spool, closes it, damages its files the way a crash
//! (or a bad disk) would, and checks what `Spool::open` decides.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::{QueueView, Route, Spool, SpoolOptions};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000 + secs)
}

fn open(dir: &Path) -> Spool {
    Spool::open(dir, SpoolOptions::default()).unwrap()
}

fn enqueue(spool: &Spool, n: usize) -> QueueId {
    let rcpt: EmailAddress = format!("user{n}@example.com").parse().unwrap();
    let envelope = Envelope {
        sender: "a@example.com".parse::<ReversePath>().unwrap(),
        recipients: vec![rcpt.clone()],
    };
    spool
        .enqueue(
            &envelope,
            &[Route::new(Lane::Modern, rcpt)],
            format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes(),
            ccgate_queue::now(),
        )
        .unwrap()
}

/// The journal segments, oldest first.
fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The journal segment holding records (not just a header).
fn busy_journal(dir: &Path) -> PathBuf {
    journals(dir)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
}

/// (offset, length, type) of each frame: magic(2) type(1) len(4) payload crc(4) commit(1).
fn frames(bytes: &[u8]) -> Vec<(usize, usize, u8)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 7 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 3..pos + 7].try_into().unwrap()) as usize;
        out.push((pos, len + 12, bytes[pos + 2]));
        pos += len + 12;
    }
    out
}

const ENQUEUE: u8 = 2;
const OUTCOME: u8 = 5;

/// A spool with three queued messages, closed.
fn three_messages(dir: &Path) -> Vec<QueueId> {
    let spool = open(dir);
    let ids = (0..3).map(|n| enqueue(&spool, n)).collect();
    spool.close().unwrap();
    ids
}

#[test]
fn torn_record_at_the_end_is_discarded_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_messages(dir.path());
    let path = busy_journal(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let good_len = bytes.len();
    let (off, len, kind) = *frames(&bytes).last().unwrap();
    assert_eq!(kind, ENQUEUE);
    // A fourth enqueue that was half written when the power went.
    let half: Vec<u8> = bytes[off..off + len / 2].to_vec();
    bytes.extend_from_slice(&half);
    fs::write(&path, &bytes).unwrap();

    let spool = open(dir.path());
    let report = spool.recovery_report();
    assert_eq!(report.discarded.len(), 1, "{report:?}");
    assert!(report.discarded[0].reason.contains("incomplete"));
    assert_eq!(report.discarded[0].offset, good_len as u64);
    assert_eq!(spool.len(), 3);
    for id in ids {
        spool.show(id, t(1)).unwrap();
    }
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        good_len as u64,
        "tail cut"
    );
    drop(spool);
    assert!(open(dir.path()).recovery_report().is_clean());
}

#[test]
fn record_without_commit_marker_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_messages(dir.path());
    let path = busy_journal(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let (off, len, _) = *frames(&bytes).last().unwrap();
    bytes[off + len - 1] = 0;
    fs::write(&path, &bytes).unwrap();

    let spool = open(dir.path());
    let report = spool.recovery_report();
    assert_eq!(report.discarded.len(), 1, "{report:?}");
    assert!(
        report.discarded[0].reason.contains("commit marker"),
        "{report:?}"
    );
    // The third message was never acknowledged: its record is gone, the others stay.
    assert_eq!(spool.len(), 2);
    assert!(spool.show(ids[2], t(1)).is_err());
    spool.show(ids[0], t(1)).unwrap();
}

#[test]
fn duplicate_id_keeps_the_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_messages(dir.path());
    let path = busy_journal(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let (off, len, kind) = frames(&bytes)[1];
    assert_eq!(kind, ENQUEUE);
    let copy = bytes[off..off + len].to_vec();
    bytes.extend_from_slice(&copy);
    fs::write(&path, &bytes).unwrap();

    let spool = open(dir.path());
    assert_eq!(spool.recovery_report().duplicates, [ids[0]]);
    assert_eq!(spool.len(), 3);
}

#[test]
fn state_log_cut_mid_record_keeps_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let spool = open(dir.path());
        let id = enqueue(&spool, 0);
        let now = ccgate_queue::now();
        let lease = spool.lease(Lane::Modern, 1, now).unwrap().remove(0);
        spool.complete(lease, &[Ok(())], now).unwrap();
        assert!(spool.is_empty());
        spool.close().unwrap();
        id
    };
    let path = busy_journal(dir.path());
    let bytes = fs::read(&path).unwrap();
    let (off, len, kind) = *frames(&bytes).last().unwrap();
    assert_eq!(kind, OUTCOME);
    fs::write(&path, &bytes[..off + len / 2]).unwrap();

    // The delivery's record never made it: the message is still queued and will be
    // delivered again (at-least-once); the attempt counts as interrupted.
    let spool = open(dir.path());
    let report = spool.recovery_report();
    assert_eq!(report.discarded.len(), 1, "{report:?}");
    assert_eq!(report.interrupted, [id]);
    assert_eq!(spool.len(), 1);
    // Recovery runs on the real clock: the retry is due within a day.
    let later = ccgate_queue::now() + Duration::from_secs(86_400);
    assert_eq!(spool.lease(Lane::Modern, 1, later).unwrap()[0].queue_id, id);
}

#[test]
fn temporary_files_never_renamed_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    three_messages(dir.path());
    let tmp_segment = dir.path().join("tmp/J00000099.log.tmp");
    let tmp_request = dir.path().join("control/0123.req.tmp");
    fs::write(&tmp_segment, b"\xCC\x51half a header").unwrap();
    fs::write(&tmp_request, b"{\"action\":").unwrap();

    let spool = open(dir.path());
    let report = spool.recovery_report();
    assert_eq!(report.removed_tmp.len(), 2, "{report:?}");
    assert!(!tmp_segment.exists() && !tmp_request.exists());
    assert!(!dir.path().join("journal/J00000099.log").exists());
    assert_eq!(spool.len(), 3);
}

#[test]
fn corrupt_record_mid_file_is_skipped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_messages(dir.path());
    let path = busy_journal(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let (off, len, _) = frames(&bytes)[2];
    bytes[off + len / 2] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let spool = open(dir.path());
    let report = spool.recovery_report();
    assert_eq!(report.discarded.len(), 1, "{report:?}");
    assert!(report.discarded[0].reason.contains("checksum"));
    assert_eq!(spool.len(), 2);
    spool.show(ids[0], t(1)).unwrap();
    spool.show(ids[2], t(1)).unwrap();
}

#[test]
fn missing_body_is_quarantined_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_messages(dir.path());
    for entry in fs::read_dir(dir.path().join("data")).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let spool = open(dir.path());
    let report = spool.recovery_report();
    assert_eq!(report.quarantined.len(), 3, "{report:?}");
    assert!(report.quarantined[0].1.contains("body missing"));
    assert_eq!(spool.len(), 3);
    assert!(
        spool
            .lease(Lane::Modern, 10, ccgate_queue::now())
            .unwrap()
            .is_empty()
    );
    let listed = spool.list(&ccgate_queue::Filter::default(), t(1));
    assert!(
        listed
            .iter()
            .all(|m| m.queue_name == ccgate_queue::QueueState::Quarantined)
    );
    assert_eq!(listed.len(), ids.len());
}

#[test]
fn a_view_reports_damage_without_repairing_it() {
    let dir = tempfile::tempdir().unwrap();
    three_messages(dir.path());
    // A newer segment with a torn tail, as a crashed owner leaves it.
    let path = busy_journal(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let (off, len, _) = *frames(&bytes).last().unwrap();
    let half = bytes[off..off + len / 2].to_vec();
    bytes.extend_from_slice(&half);
    fs::write(&path, &bytes).unwrap();
    let size = bytes.len() as u64;
    let view = QueueView::open(dir.path()).unwrap();
    assert_eq!(view.len(), 3);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        size,
        "a view changes nothing"
    );
}
