//! A crash-state fuzz test over a real spool: build a spool with messages spread over several
//! journal segments (some delivered, some deferred), then damage a copy of it at many offsets
//! (flip a byte, or cut the file there, in every segment) and open it again. Whatever the
//! damage, every message whose own records are intact must survive, recovery must never cut
//! an older segment, and opening must never fail or panic.
//!
//! The journal is synced only when the writer leaves a segment: a writer pass makes its
//! records durable through their copy in the data segment. So a second test loses the newest
//! journal segment's tail (cut or zeroed at many offsets) and damages the newest data
//! segment (bytes flipped, cut at many offsets), alone and together: the state is restored
//! exactly while the copies are intact, and otherwise every message whose records are intact
//! in the journal or covered by an intact copy survives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::{DeliveryError, FailureScope, Route, Spool, SpoolOptions};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000 + secs)
}

fn options() -> SpoolOptions {
    SpoolOptions {
        // Small segments, so the spool has several and "only the newest" means something.
        journal_segment_bytes: 4096,
        min_free: 0,
        ..SpoolOptions::default()
    }
}

/// Journal frames of a segment: (offset, length, queue id if the payload starts with one).
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 7 <= bytes.len() {
        assert_eq!(&bytes[pos..pos + 2], &[0xCC, 0x51], "frame at {pos}");
        let len = u32::from_le_bytes(bytes[pos + 3..pos + 7].try_into().unwrap()) as usize;
        let total = len + 12;
        out.push((pos, total));
        pos += total;
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Builds the original spool; returns the ids still queued when it was closed.
fn build(dir: &Path) -> BTreeSet<QueueId> {
    let spool = Spool::open(dir, options()).unwrap();
    let mut queued = BTreeSet::new();
    for n in 0..60 {
        let rcpt: EmailAddress = format!("user{n}@example.com").parse().unwrap();
        let envelope = Envelope {
            sender: "a@example.com".parse::<ReversePath>().unwrap(),
            recipients: vec![rcpt.clone()],
        };
        let id = spool
            .enqueue(
                &envelope,
                &[Route::new(Lane::Modern, rcpt)],
                format!("Subject: {n}\r\n\r\nbody {n}\r\n").as_bytes(),
                t(n),
            )
            .unwrap();
        queued.insert(id);
        if n % 3 == 0 {
            // Deliver every third one, defer every third one, leave the rest pending.
            let lease = spool.lease(Lane::Modern, 10, t(100 + n)).unwrap();
            for lease in lease {
                let id = lease.queue_id;
                let delivered = spool.complete(lease, &[Ok(())], t(100 + n)).unwrap();
                if delivered.finished {
                    queued.remove(&id);
                }
            }
        } else if n % 3 == 1 {
            for lease in spool.lease(Lane::Modern, 10, t(100 + n)).unwrap() {
                let e = DeliveryError::transient(FailureScope::Recipient, "450 busy");
                spool.complete(lease, &[Err(e)], t(100 + n)).unwrap();
            }
        }
    }
    spool.close().unwrap();
    queued
}

/// For each queued message, the journal segments and byte ranges of its records: a damage
/// outside them must leave the message in the queue.
fn footprint(
    dir: &Path,
    ids: &BTreeSet<QueueId>,
) -> BTreeMap<QueueId, Vec<(PathBuf, usize, usize)>> {
    let mut out: BTreeMap<QueueId, Vec<(PathBuf, usize, usize)>> = BTreeMap::new();
    for path in journals(dir) {
        let bytes = fs::read(&path).unwrap();
        for (pos, len) in frames(&bytes) {
            let frame = &bytes[pos..pos + len];
            for id in ids {
                let raw = id.to_u128().to_le_bytes();
                if frame.windows(16).any(|w| w == raw) {
                    out.entry(*id).or_default().push((path.clone(), pos, len));
                }
            }
        }
    }
    out
}

#[test]
fn damage_at_many_offsets_never_loses_an_intact_message() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let queued = build(&original);
    assert!(queued.len() >= 10, "{} queued", queued.len());
    let segments = journals(&original);
    assert!(segments.len() >= 3, "{} journal segments", segments.len());
    let prints = footprint(&original, &queued);
    assert_eq!(prints.len(), queued.len());

    let mut cases = 0;
    let mut losses_allowed = 0;
    for segment in &segments {
        let name = segment.file_name().unwrap().to_owned();
        let len = fs::metadata(segment).unwrap().len() as usize;
        // Every 97th offset, and both ends: flip a byte there, or cut the file there.
        let offsets: Vec<usize> = (0..len).step_by(97).chain([len - 1]).collect();
        for offset in offsets {
            for cut in [false, true] {
                cases += 1;
                let copy = tmp.path().join(format!("case{cases}"));
                copy_dir(&original, &copy);
                let damaged = copy.join("journal").join(&name);
                let mut bytes = fs::read(&damaged).unwrap();
                if cut {
                    bytes.truncate(offset);
                } else {
                    bytes[offset] ^= 0x5A;
                }
                fs::write(&damaged, &bytes).unwrap();
                let mut older: Vec<(PathBuf, u64)> = journals(&copy)
                    .into_iter()
                    .map(|p| {
                        let n = fs::metadata(&p).unwrap().len();
                        (p, n)
                    })
                    .collect();
                older.pop(); // The newest segment may lose a torn tail.

                let spool = Spool::open(&copy, options()).unwrap_or_else(|e| {
                    panic!("case {cases} ({name:?} @{offset}, cut {cut}): {e}")
                });
                let survivors: BTreeSet<String> = spool
                    .list(&ccgate_queue::Filter::default(), t(10_000))
                    .into_iter()
                    .map(|m| m.queue_id)
                    .collect();
                for id in &queued {
                    // Intact: no record of the message touched by the damage.
                    let hit = prints[id].iter().any(|(p, pos, flen)| {
                        p.file_name() == Some(name.as_os_str())
                            && if cut {
                                offset < pos + flen
                            } else {
                                (*pos..pos + flen).contains(&offset)
                            }
                    });
                    if hit {
                        losses_allowed += 1;
                        continue;
                    }
                    assert!(
                        survivors.contains(&id.to_string()),
                        "case {cases}: {name:?} damaged at {offset} (cut {cut}): intact message {id} lost"
                    );
                }
                // Recovery never cuts a segment other than the newest.
                for (p, n) in &older {
                    let now_len = fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                    assert!(
                        now_len >= *n,
                        "case {cases}: {} was cut from {n} to {now_len}",
                        p.display()
                    );
                }
                spool.close().unwrap();
                fs::remove_dir_all(&copy).unwrap();
            }
        }
    }
    println!("{cases} damaged copies opened; {losses_allowed} message records hit by the damage");
    assert!(cases > 100);
}

fn data_segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The journal copy frames of a data segment: (end of the frame in the data segment,
/// journal segment, journal offset, length). Body frame: magic CC B0 (2), queue id (16),
/// length (8), header crc (4), body, crc (4), commit (1); journal copy frame: magic CC 5C (2),
/// journal segment (4), journal offset (8), length (4), header crc (4), bytes, crc (4),
/// commit (1).
fn copies(bytes: &[u8]) -> Vec<(usize, u32, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 2 <= bytes.len() {
        match &bytes[pos..pos + 2] {
            [0xCC, 0xB0] => {
                pos +=
                    35 + u64::from_le_bytes(bytes[pos + 18..pos + 26].try_into().unwrap()) as usize;
            }
            [0xCC, 0x5C] => {
                let seq = u32::from_le_bytes(bytes[pos + 2..pos + 6].try_into().unwrap());
                let off = u64::from_le_bytes(bytes[pos + 6..pos + 14].try_into().unwrap());
                let len = u32::from_le_bytes(bytes[pos + 14..pos + 18].try_into().unwrap());
                pos += 27 + len as usize;
                out.push((pos, seq, off as usize, len as usize));
            }
            other => panic!("unknown data frame {other:?} at {pos}"),
        }
    }
    out
}

fn seq_of(path: &Path) -> u32 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name[1..9].parse().unwrap()
}

#[test]
fn lost_journal_tail_and_damaged_data_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let queued = build(&original);
    let prints = footprint(&original, &queued);
    // The state the copies must restore exactly (read from a copy: opening adds segments).
    let reference = tmp.path().join("reference");
    copy_dir(&original, &reference);
    let spool = Spool::open(&reference, options()).unwrap();
    let whole = spool.list(&ccgate_queue::Filter::default(), t(10_000));
    spool.close().unwrap();
    fs::remove_dir_all(&reference).unwrap();
    assert_eq!(whole.len(), queued.len());

    let journal = journals(&original).pop().unwrap();
    let journal_seq = seq_of(&journal);
    let journal_bytes = fs::read(&journal).unwrap();
    let header_len = frames(&journal_bytes)[0].1;
    let data = data_segments(&original).pop().unwrap();
    let data_bytes = fs::read(&data).unwrap();
    let ours: Vec<(usize, usize, usize)> = copies(&data_bytes)
        .into_iter()
        .filter(|c| c.1 == journal_seq)
        .map(|(end, _, off, len)| (end, off, len))
        .collect();
    assert!(
        ours.len() >= 3 && ours[0].1 == header_len,
        "the newest journal segment's passes are all copied: {ours:?}"
    );
    let mut cases = 0;
    // (journal kept up to, zero the rest instead of cutting it, data kept up to)
    let mut plans = Vec::new();
    for keep in (header_len..=journal_bytes.len()).step_by(41) {
        plans.push((keep, keep % 2 == 0, data_bytes.len()));
    }
    for cut in (0..data_bytes.len()).step_by(53) {
        plans.push((journal_bytes.len(), false, cut));
        plans.push((header_len, false, cut));
    }
    for (keep, zero, data_keep) in plans {
        cases += 1;
        let copy = tmp.path().join(format!("case{cases}"));
        copy_dir(&original, &copy);
        let mut j = journal_bytes.clone();
        if zero {
            j[keep..].fill(0);
        } else {
            j.truncate(keep);
        }
        fs::write(copy.join("journal").join(journal.file_name().unwrap()), &j).unwrap();
        fs::write(
            copy.join("data").join(data.file_name().unwrap()),
            &data_bytes[..data_keep],
        )
        .unwrap();
        let spool = Spool::open(&copy, options())
            .unwrap_or_else(|e| panic!("case {cases} (journal {keep}, data {data_keep}): {e}"));
        let listed = spool.list(&ccgate_queue::Filter::default(), t(10_000));
        if data_keep == data_bytes.len() {
            // Every copy intact: the state is restored exactly.
            assert_eq!(
                listed, whole,
                "case {cases}: journal kept to {keep} (zeroed {zero})"
            );
        } else {
            // The journal is intact up to `keep`, then the copies that survived the cut
            // carry it on, pass by pass.
            let mut covered = keep;
            for (end, off, len) in &ours {
                if *end <= data_keep && *off <= covered {
                    covered = covered.max(off + len);
                }
            }
            let survivors: BTreeSet<String> = listed.into_iter().map(|m| m.queue_id).collect();
            for id in &queued {
                let intact = prints[id].iter().all(|(p, pos, len)| {
                    p.file_name() != journal.file_name() || pos + len <= covered
                });
                if intact {
                    assert!(
                        survivors.contains(&id.to_string()),
                        "case {cases}: journal {keep}, data cut at {data_keep}: {id} lost"
                    );
                }
            }
        }
        spool.close().unwrap();
        fs::remove_dir_all(&copy).unwrap();
    }
    println!("{cases} crash states of the newest journal and data segments opened");
    assert!(cases > 50);
}
