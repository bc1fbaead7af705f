//! Reading the journal back: recovery on open, read-only views, per-message history.
//!
//! The journal segments are replayed in order through [`State::apply`]. What was never
//! acknowledged is discarded and reported: a frame cut short at the end of a segment (a torn
//! write), a frame whose checksum or commit marker is wrong (the reader resynchronises on the
//! next valid frame), a second enqueue of an id already queued, files left in `tmp/`. The
//! owner also truncates torn tails so the next recovery starts clean.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ccgate_core::QueueId;

use crate::error::{IoContext, QueueError, Result};
use crate::record::{self, BodyRef, Frame, Record};
use crate::state::{Applied, LaneLimits, State};
use crate::store::Dirs;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Messages in the queue after recovery.
    pub messages: usize,
    /// Journal segments read.
    pub journal_segments: usize,
    /// Journal records applied.
    pub records: u64,
    /// Bytes discarded because they were torn or corrupt (never acknowledged).
    pub discarded: Vec<Discarded>,
    /// Journal bytes missing on disk after a crash (written, not yet synced) and restored
    /// from the journal copies in the newest data segment, which made them durable.
    pub restored_bytes: u64,
    /// Ids enqueued a second time (the second record was ignored).
    pub duplicates: Vec<QueueId>,
    /// Messages whose delivery attempt was in flight when the spool stopped: the attempt
    /// counts as a crash and the recipients are retried (at-least-once).
    pub interrupted: Vec<QueueId>,
    /// Messages set aside by recovery (body missing, or crash limit reached), with the reason.
    pub quarantined: Vec<(QueueId, String)>,
    /// Incomplete temporary files removed (segments or control requests never renamed).
    pub removed_tmp: Vec<PathBuf>,
    /// Data segments removed because no queued message uses them any more.
    pub removed_segments: Vec<PathBuf>,
    /// How long recovery took.
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// True when nothing was discarded, duplicated, interrupted or set aside.
    pub fn is_clean(&self) -> bool {
        self.discarded.is_empty()
            && self.restored_bytes == 0
            && self.duplicates.is_empty()
            && self.interrupted.is_empty()
            && self.quarantined.is_empty()
            && self.removed_tmp.is_empty()
    }

    /// One line per finding, for logs.
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.restored_bytes > 0 {
            out.push(format!(
                "{} bytes of journal records restored from the data segment's journal copies (written before the stop, not yet in the journal file)",
                self.restored_bytes
            ));
        }
        for d in &self.discarded {
            out.push(format!(
                "{}: discarded {} bytes at offset {}: {}",
                d.path.display(),
                d.len,
                d.offset,
                d.reason
            ));
        }
        for id in &self.duplicates {
            out.push(format!(
                "queue id {id}: enqueued twice; kept the first record"
            ));
        }
        for id in &self.interrupted {
            out.push(format!(
                "queue id {id}: delivery was in flight when the spool stopped; it will be retried (it may be delivered twice)"
            ));
        }
        for (id, reason) in &self.quarantined {
            out.push(format!("queue id {id}: quarantined: {reason}"));
        }
        for p in &self.removed_tmp {
            out.push(format!(
                "{}: incomplete temporary file removed",
                p.display()
            ));
        }
        out
    }
}

/// Bytes recovery threw away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    /// The journal segment.
    pub path: PathBuf,
    /// Where the bad bytes start.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
    /// Why.
    pub reason: String,
}

/// Who is replaying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The owner: truncates torn tails.
    Owner,
    /// A read-only view: changes nothing; tolerates segments appearing and vanishing.
    Reader,
}

/// Replays every journal segment into a fresh state.
pub(crate) fn replay(
    dirs: &Dirs,
    limits: LaneLimits,
    mode: Mode,
) -> Result<(State, RecoveryReport, u32)> {
    let mut state = State::new(limits);
    let mut report = RecoveryReport::default();
    let mut buf = Vec::new();
    // The segment read last and how far: a reader comes back to it for records appended
    // while it read later segments.
    let mut last: Option<(u32, u64)> = None;
    loop {
        let segments = dirs.journal_segments()?;
        let newest = segments.last().map(|(s, _)| *s);
        for (seq, path) in &segments {
            let start = match last {
                Some((s, _)) if *seq < s => continue,
                Some((s, off)) if *seq == s => off,
                _ => 0,
            };
            let Some(mut read) = read_from(path, start, &mut buf, mode)? else {
                continue; // Removed by compaction after we listed it: its records live on later.
            };
            if mode == Mode::Owner && start == 0 && Some(*seq) == newest {
                report.restored_bytes = restore_from_copies(dirs, *seq, path, &mut buf)?;
                read = buf.len();
            }
            if start == 0 {
                report.journal_segments += 1;
            }
            let end = if read == 0 {
                start
            } else {
                let is_last = Some(*seq) == newest;
                let at = SegmentAt {
                    path,
                    seq: *seq,
                    base: start,
                    is_last,
                    mode,
                };
                replay_segment(&mut state, &mut report, &at, &buf)?
            };
            state.journal_sizes.insert(*seq, end);
            last = Some((*seq, end));
        }
        if mode == Mode::Owner {
            break;
        }
        // A reader goes round again only if the writer moved on to a new segment meanwhile
        // (then it also picks up what was appended to the one it read last).
        let again = dirs.journal_segments()?;
        if again.last().map(|(s, _)| *s) <= last.map(|(s, _)| s) {
            break;
        }
    }
    let last_seq = last.map_or(0, |(s, _)| s);
    report.messages = state.messages.len();
    Ok((state, report, last_seq))
}

/// A writer pass's journal bytes, as copied into a data segment.
#[derive(Debug)]
struct JournalCopy {
    /// Where they go in their journal segment.
    offset: u64,
    bytes: Vec<u8>,
}

/// The journal copies for journal segment `journal_seq` in data segment `path`, in the
/// order they were written. Body frames are skipped by their (checked) headers; reading
/// stops at the first frame that does not check out (the torn end of the segment).
fn journal_copies(path: &Path, journal_seq: u32) -> Result<Vec<JournalCopy>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(path),
    };
    let size = file.metadata().at(path)?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    // `Ok(false)` at the end of the file.
    let read = |r: &mut BufReader<File>, buf: &mut [u8]| -> Result<bool> {
        match r.read_exact(buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e).at(path),
        }
    };
    loop {
        let mut magic = [0u8; 2];
        if !read(&mut r, &mut magic)? {
            break;
        }
        // The frame's header length and what follows it.
        let (header_len, rest_len) = if magic == record::BODY_MAGIC {
            let mut header = [0u8; record::BODY_HEADER_LEN];
            let (head, rest) = header.split_at_mut(2);
            head.copy_from_slice(&magic);
            if !read(&mut r, rest)? {
                break;
            }
            let Ok(len) = record::decode_body_header(&header) else {
                break;
            };
            (
                record::BODY_HEADER_LEN as u64,
                len.saturating_add(record::BODY_TRAILER_LEN as u64),
            )
        } else if magic == record::COPY_MAGIC {
            let mut header = [0u8; record::COPY_HEADER_LEN];
            let (head, rest) = header.split_at_mut(2);
            head.copy_from_slice(&magic);
            if !read(&mut r, rest)? {
                break;
            }
            let Ok((seq, offset, len)) = record::decode_copy_header(&header) else {
                break;
            };
            let rest_len = u64::from(len).saturating_add(record::COPY_TRAILER_LEN as u64);
            let end = pos
                .saturating_add(record::COPY_HEADER_LEN as u64)
                .saturating_add(rest_len);
            if end > size {
                break; // Cut short: a torn write.
            }
            if seq == journal_seq {
                let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
                let mut trailer = [0u8; record::COPY_TRAILER_LEN];
                if !read(&mut r, &mut bytes)? || !read(&mut r, &mut trailer)? {
                    break;
                }
                if record::check_copy_trailer(&bytes, &trailer).is_err() {
                    break;
                }
                out.push(JournalCopy { offset, bytes });
                pos = end;
                continue;
            }
            (record::COPY_HEADER_LEN as u64, rest_len)
        } else {
            break;
        };
        let end = pos.saturating_add(header_len).saturating_add(rest_len);
        let Ok(step) = i64::try_from(rest_len) else {
            break;
        };
        if end > size {
            break;
        }
        r.seek_relative(step).at(path)?;
        pos = end;
    }
    Ok(out)
}

/// The end of the leading run of frames that check out.
fn valid_prefix(buf: &[u8]) -> usize {
    let mut pos = 0;
    while let Frame::Complete { len, .. } = record::check_frame(buf.get(pos..).unwrap_or_default())
    {
        pos += len;
    }
    pos
}

/// Restores the tail of the newest journal segment (`buf`, read from `path`) from the
/// journal copies in the newest data segment: a writer pass's records are durable through
/// their copy (the data segment is what the pass fsyncs), while the journal file is synced
/// only when the writer leaves it, so after a crash it may lack some of them or hold
/// them torn. Each copy past the journal's valid start is laid over the bytes at its
/// offset, in the order written, and the result written back and synced. Returns the
/// number of bytes restored.
fn restore_from_copies(dirs: &Dirs, seq: u32, path: &Path, buf: &mut Vec<u8>) -> Result<u64> {
    let Some((_, data_path)) = dirs.data_segments()?.pop() else {
        return Ok(0);
    };
    let copies = journal_copies(&data_path, seq)?;
    if copies.is_empty() {
        return Ok(0);
    }
    let prefix = valid_prefix(buf);
    let mut changed: Option<(usize, usize)> = None;
    let mut restored = 0u64;
    for copy in copies {
        let Ok(from) = usize::try_from(copy.offset) else {
            break;
        };
        let to = from.saturating_add(copy.bytes.len());
        if to <= prefix {
            continue; // Already there, checked.
        }
        if from > buf.len() {
            break; // A pass whose copy is missing: no more can be placed.
        }
        if buf.get(from..to) == Some(copy.bytes.as_slice()) {
            continue;
        }
        if buf.len() < to {
            buf.resize(to, 0);
        }
        if let Some(dest) = buf.get_mut(from..to) {
            dest.copy_from_slice(&copy.bytes);
        }
        restored = restored.saturating_add(copy.bytes.len() as u64);
        changed = Some(changed.map_or((from, to), |(a, b)| (a.min(from), b.max(to))));
    }
    if let Some((from, to)) = changed {
        let f = OpenOptions::new().write(true).open(path).at(path)?;
        f.write_all_at(buf.get(from..to).unwrap_or_default(), from as u64)
            .at(path)?;
        f.sync_all().at(path)?;
    }
    Ok(restored)
}

/// Reads a segment from `start` into `buf`; `None` if it no longer exists.
fn read_from(path: &Path, start: u64, buf: &mut Vec<u8>, mode: Mode) -> Result<Option<usize>> {
    buf.clear();
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && mode == Mode::Reader => {
            return Ok(None);
        }
        Err(e) => return Err(e).at(path),
    };
    if start > 0 {
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).at(path)?;
    }
    let n = file.read_to_end(buf).at(path)?;
    Ok(Some(n))
}

/// Which segment a buffer was read from, and from where.
#[derive(Debug, Clone, Copy)]
struct SegmentAt<'a> {
    path: &'a Path,
    seq: u32,
    base: u64,
    /// The newest segment listed (a reader sees its tail being written).
    is_last: bool,
    mode: Mode,
}

/// Applies the frames of one segment (from byte `base`); returns the offset of the end of
/// the last good frame.
fn replay_segment(
    state: &mut State,
    report: &mut RecoveryReport,
    at: &SegmentAt<'_>,
    buf: &[u8],
) -> Result<u64> {
    let SegmentAt {
        path,
        seq,
        base,
        is_last,
        mode,
    } = *at;
    let mut pos = 0usize;
    let mut good_end = 0usize;
    while pos < buf.len() {
        let rest = buf.get(pos..).unwrap_or_default();
        match record::check_frame(rest) {
            Frame::Complete {
                type_code,
                payload,
                len,
            } => {
                match Record::decode_payload(type_code, payload) {
                    Ok(rec) => {
                        let rec_len = u32::try_from(len).unwrap_or(u32::MAX);
                        match state.apply(&rec, seq, rec_len) {
                            Applied::Duplicate => {
                                if let Some(id) = rec.queue_id() {
                                    report.duplicates.push(id);
                                }
                            }
                            Applied::Ok | Applied::Unknown => {}
                        }
                        report.records += 1;
                    }
                    Err(reason) => report.discarded.push(Discarded {
                        path: path.to_path_buf(),
                        offset: base + pos as u64,
                        len: len as u64,
                        reason: format!("record type {type_code} cannot be decoded: {reason}"),
                    }),
                }
                pos += len;
                good_end = pos;
            }
            Frame::Incomplete | Frame::Invalid(_) => {
                let reason = match record::check_frame(rest) {
                    Frame::Invalid(reason) => reason,
                    _ => "length runs past the end of the segment",
                };
                // A length field can be corrupted into a plausible value that runs past the
                // end: that is a torn tail only if no valid frame follows and this is the
                // segment that was being written. Anywhere else, resynchronise on the next
                // frame that checks out, so no acknowledged record after it is lost.
                let next = next_valid_frame(buf, pos + 1);
                match next {
                    None if is_last => {
                        if mode == Mode::Reader {
                            // Most likely being written right now.
                            return Ok(base + good_end as u64);
                        }
                        report.discarded.push(Discarded {
                            path: path.to_path_buf(),
                            offset: base + pos as u64,
                            len: (buf.len() - pos) as u64,
                            reason: format!(
                                "incomplete or corrupt record at the end ({reason}; a torn write, never acknowledged)"
                            ),
                        });
                        break;
                    }
                    _ => {
                        let stop = next.unwrap_or(buf.len());
                        report.discarded.push(Discarded {
                            path: path.to_path_buf(),
                            offset: base + pos as u64,
                            len: (stop - pos) as u64,
                            reason: format!("corrupt record ({reason}); skipped"),
                        });
                        pos = stop;
                        if next.is_some() {
                            good_end = pos;
                        }
                    }
                }
            }
        }
    }
    let good_end = base + good_end as u64;
    let total = base + buf.len() as u64;
    if mode == Mode::Owner && is_last && good_end < total {
        // Cut the torn tail of the newest segment (only there can a write have been torn) so
        // the next recovery starts clean. Older segments are never cut: their bad bytes are
        // skipped at every recovery and go when compaction removes the segment.
        let f = OpenOptions::new().write(true).open(path).at(path)?;
        f.set_len(good_end).at(path)?;
        f.sync_all().at(path)?;
    }
    Ok(good_end)
}

/// The offset of the first valid journal frame at or after `from`, if any.
fn next_valid_frame(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(rest) = buf.get(at..) {
        let skip = rest.windows(2).position(|w| w == record::JOURNAL_MAGIC)?;
        at += skip;
        if matches!(
            record::check_frame(buf.get(at..).unwrap_or_default()),
            Frame::Complete { .. }
        ) {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Removes every file in `tmp/` (writes that never reached their rename).
pub(crate) fn clean_tmp(dirs: &Dirs, report: &mut RecoveryReport) -> Result<()> {
    for dir in [&dirs.tmp, &dirs.control] {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at(dir),
        };
        for entry in entries {
            let entry = entry.at(dir)?;
            let path = entry.path();
            let is_tmp = dir == &dirs.tmp || path.extension().is_some_and(|e| e == "tmp");
            if is_tmp && path.is_file() {
                fs::remove_file(&path).at(&path)?;
                report.removed_tmp.push(path);
            }
        }
    }
    Ok(())
}

/// Reads and checks a message body.
pub(crate) fn read_body(dirs: &Dirs, id: QueueId, body: &BodyRef) -> Result<Vec<u8>> {
    let path = dirs.data_path(body.seg);
    let file = File::open(&path).at(&path)?;
    let len = usize::try_from(body.frame_end().saturating_sub(body.offset)).map_err(|_| {
        QueueError::CorruptBody {
            id,
            path: path.clone(),
            offset: body.offset,
            reason: "length out of range",
        }
    })?;
    let mut frame = vec![0; len];
    file.read_exact_at(&mut frame, body.offset)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => QueueError::CorruptBody {
                id,
                path: path.clone(),
                offset: body.offset,
                reason: "segment ends before the body does",
            },
            _ => QueueError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
    record::check_body_frame(&frame, id, body).map_err(|reason| QueueError::CorruptBody {
        id,
        path: path.clone(),
        offset: body.offset,
        reason,
    })?;
    frame.truncate(len.saturating_sub(record::BODY_TRAILER_LEN));
    frame.drain(..record::BODY_HEADER_LEN.min(frame.len()));
    Ok(frame)
}

/// Every journal record about one message, oldest first (for `queue show`).
pub(crate) fn history(dirs: &Dirs, id: QueueId) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for (_, path) in dirs.journal_segments()? {
        if read_from(&path, 0, &mut buf, Mode::Reader)?.is_none() {
            continue;
        }
        let mut pos = 0;
        while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
            match record::check_frame(rest) {
                Frame::Complete {
                    type_code,
                    payload,
                    len,
                } => {
                    if let Ok(rec) = Record::decode_payload(type_code, payload) {
                        let about = match &rec {
                            Record::Enqueue(m) | Record::Snapshot(m) => {
                                m.id == id || m.bounce_for.as_ref().is_some_and(|(of, _)| *of == id)
                            }
                            other => other.queue_id() == Some(id),
                        };
                        if about {
                            out.push(rec);
                        }
                    }
                    pos += len;
                }
                Frame::Incomplete => break,
                Frame::Invalid(_) => pos += 1,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::record::{MessageRec, RcptRec, RcptState};
    use crate::{Spool, SpoolOptions};

    /// A spool as written before journal copies: bodies alone in the data segment, every
    /// record in the journal (which the writer synced at every pass). Recovery finds no
    /// copies and reads it as before; the first writer pass of the new run adds them.
    #[test]
    fn a_spool_written_before_journal_copies_still_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs::new(dir.path());
        dirs.create().unwrap();
        let mut journal = Vec::new();
        Record::Header {
            seq: 1,
            created_ms: 1_750_000_000_000,
        }
        .encode_frame(&mut journal);
        let mut data = Vec::new();
        let mut ids = Vec::new();
        let now_ms = crate::schedule::to_ms(crate::clock::now());
        for n in 0..3u8 {
            let id = QueueId::generate();
            let body = format!("Subject: old {n}\r\n\r\nbody\r\n").into_bytes();
            let crc = crc32fast::hash(&body);
            let offset = data.len() as u64;
            record::encode_body_frame(id, &body, crc, &mut data);
            let rec = MessageRec {
                id,
                arrival_ms: now_ms,
                body: BodyRef {
                    seg: 1,
                    offset,
                    len: body.len() as u64,
                    crc,
                },
                sender: "a@example.com".into(),
                needs_routing: false,
                crashes: 0,
                quarantine: None,
                bounce_for: None,
                rcpts: vec![RcptRec {
                    addr: format!("user{n}@example.com"),
                    orig: None,
                    dest: "modern".into(),
                    state: RcptState::Pending,
                    attempts: 0,
                    next_ms: now_ms,
                    bounced: false,
                    lease: 0,
                    error: None,
                }],
                lifetime_from_ms: None,
                origins: Vec::new(),
            };
            record::encode_message_frame(&rec, false, &mut journal);
            ids.push((id, body));
        }
        fs::write(dirs.journal_path(1), &journal).unwrap();
        fs::write(dirs.data_path(1), &data).unwrap();

        let spool = Spool::open(
            dir.path(),
            SpoolOptions {
                min_free: 0,
                ..SpoolOptions::default()
            },
        )
        .unwrap();
        let report = spool.recovery_report().clone();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(spool.len(), 3, "{report:?}");
        let now = crate::clock::now();
        let leases = spool.lease("modern", 10, now).unwrap();
        assert_eq!(leases.len(), 3);
        for lease in &leases {
            let body = spool.lease_body(lease).unwrap();
            assert!(
                ids.iter()
                    .any(|(id, b)| *id == lease.queue_id && *b == body)
            );
        }
        spool.close().unwrap();
        // The old segments are read as they are: nothing cut, nothing added.
        assert_eq!(fs::read(dirs.journal_path(1)).unwrap(), journal);
    }
}
