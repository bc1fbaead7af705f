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

/// The newest data segment.
fn newest_data(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.pop().unwrap()
}

/// (offset, length, is a journal copy) of each frame of a data segment. A body frame is
/// magic CC B0 (2), queue id (16), length (8), header crc (4), body, crc (4), commit (1); a
/// journal copy frame magic CC 5C (2), journal segment (4), journal offset (8), length (4),
/// header crc (4), the pass's journal bytes, crc (4), commit (1).
fn data_frames(bytes: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 2 <= bytes.len() {
        let (len, copy) = match &bytes[pos..pos + 2] {
            [0xCC, 0xB0] => (
                30 + u64::from_le_bytes(bytes[pos + 18..pos + 26].try_into().unwrap()) as usize + 5,
                false,
            ),
            [0xCC, 0x5C] => (
                22 + u32::from_le_bytes(bytes[pos + 14..pos + 18].try_into().unwrap()) as usize + 5,
                true,
            ),
            other => panic!("unknown data frame {other:?} at {pos}"),
        };
        out.push((pos, len, copy));
        pos += len;
    }
    out
}

/// Cuts the newest data segment before its last `n` writer passes (a pass is its bodies
/// followed by its journal copy), as if they never reached the disk.
fn drop_passes(dir: &Path, n: usize) {
    let path = newest_data(dir);
    let bytes = fs::read(&path).unwrap();
    let ends: Vec<usize> = data_frames(&bytes)
        .into_iter()
        .filter(|f| f.2)
        .map(|(pos, len, _)| pos + len)
        .collect();
    assert!(ends.len() >= n, "{} passes", ends.len());
    let keep = ends.len() - n;
    let cut = if keep == 0 { 0 } else { ends[keep - 1] };
    fs::write(&path, &bytes[..cut]).unwrap();
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
    // Neither did the pass reach the data segment: never acknowledged.
    drop_passes(dir.path(), 1);

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
    // Nor its journal copy in the data segment: the outcome was never durable.
    drop_passes(dir.path(), 1);

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
    // Another run: the segment with the records is now an older one (bit rot, not a crash:
    // nothing to restore it from).
    open(dir.path()).close().unwrap();
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

#[test]
fn journal_tail_lost_in_a_crash_is_restored_from_the_data_segment() {
    // The journal is synced only when the writer leaves it: after a power cut it may end
    // anywhere after its header, or hold zeros where pages never reached the disk.
    type Damage = fn(&[u8], &[(usize, usize, u8)]) -> Vec<u8>;
    let damages: [(&str, Damage); 3] = [
        ("cut to its header", |b, f| b[..f[0].1].to_vec()),
        ("cut inside the third record", |b, f| {
            b[..f[2].0 + 3].to_vec()
        }),
        ("a record read back as zeros", |b, f| {
            let mut b = b.to_vec();
            let (off, len, _) = f[1];
            b[off..off + len].fill(0);
            b
        }),
    ];
    for (case, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let ids = three_messages(dir.path());
        let path = busy_journal(dir.path());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, damage(&bytes, &frames(&bytes))).unwrap();

        let spool = open(dir.path());
        let report = spool.recovery_report().clone();
        assert!(report.restored_bytes > 0, "{case}: {report:?}");
        assert!(report.discarded.is_empty(), "{case}: {report:?}");
        assert_eq!(spool.len(), 3, "{case}");
        for id in &ids {
            spool.show(*id, t(1)).unwrap();
        }
        spool.close().unwrap();
        // Written back: the journal is whole again and the next recovery is clean.
        assert_eq!(fs::read(&path).unwrap(), bytes, "{case}");
        assert!(open(dir.path()).recovery_report().is_clean(), "{case}");
    }
}
