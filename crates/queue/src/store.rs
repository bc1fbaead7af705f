//! Segment files and the group-commit writer.
//!
//! One writer thread owns the open journal and data segments. Callers hand it requests and
//! (usually) wait for their ticket to become durable. Each pass of the writer takes *every*
//! request queued so far, so concurrent callers share one pair of fsyncs:
//!
//! 1. append the bodies of all new messages to the data segment, `fdatasync` it;
//! 2. append all journal records (enqueues, now pointing at their bodies, and state changes)
//!    to the journal segment, `fdatasync` it;
//! 3. apply the new messages to the in-memory state, then wake the waiters.
//!
//! A journal record therefore never reaches the disk before the body it points to. New
//! segment files are written under `tmp/`, synced, renamed into place and their folder synced,
//! so a segment either exists with a valid header or not at all. A failed write or fsync
//! poisons the writer: the state of the disk is unknown, every later call fails until the
//! spool is reopened and recovery has read what is really there.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use ccgate_core::QueueId;

use crate::body::BodyPart;
use crate::error::{IoContext, QueueError, Result};
use crate::record::{self, BodyRef, MessageRec, Record};
use crate::state::State;

/// Prefix and suffix of journal segment names: `J00000001.log`.
const JOURNAL_PREFIX: &str = "J";
/// Bodies larger than this are written to the data segment from the caller's buffers
/// instead of being gathered with the rest of the batch first.
const DIRECT_WRITE: u64 = 256 * 1024;
const JOURNAL_SUFFIX: &str = ".log";
/// Prefix and suffix of data segment names: `D00000001.dat`.
const DATA_PREFIX: &str = "D";
const DATA_SUFFIX: &str = ".dat";

/// The folders of a spool.
#[derive(Debug, Clone)]
pub(crate) struct Dirs {
    pub root: PathBuf,
    pub journal: PathBuf,
    pub data: PathBuf,
    pub tmp: PathBuf,
    pub control: PathBuf,
    pub lock: PathBuf,
}

impl Dirs {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            journal: root.join("journal"),
            data: root.join("data"),
            tmp: root.join("tmp"),
            control: root.join("control"),
            lock: root.join("lock"),
        }
    }

    /// Creates the folders that are missing (and syncs their parents).
    pub fn create(&self) -> Result<()> {
        let mut created = false;
        for dir in [&self.journal, &self.data, &self.tmp, &self.control] {
            if !dir.is_dir() {
                fs::create_dir_all(dir).at(dir)?;
                created = true;
            }
        }
        if created {
            sync_dir(&self.root)?;
            if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    pub fn journal_path(&self, seq: u32) -> PathBuf {
        self.journal
            .join(format!("{JOURNAL_PREFIX}{seq:08}{JOURNAL_SUFFIX}"))
    }

    pub fn data_path(&self, seq: u32) -> PathBuf {
        self.data
            .join(format!("{DATA_PREFIX}{seq:08}{DATA_SUFFIX}"))
    }

    /// Journal segments, oldest first.
    pub fn journal_segments(&self) -> Result<Vec<(u32, PathBuf)>> {
        list_segments(&self.journal, JOURNAL_PREFIX, JOURNAL_SUFFIX)
    }

    /// Data segments, oldest first.
    pub fn data_segments(&self) -> Result<Vec<(u32, PathBuf)>> {
        list_segments(&self.data, DATA_PREFIX, DATA_SUFFIX)
    }
}

fn list_segments(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(dir),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(seq) = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(suffix))
            .filter(|n| n.len() == 8)
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Fsyncs a folder, so that renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `contents` to `tmp/name`, syncs it, renames it to `dest` and syncs `dest`'s folder.
pub(crate) fn write_durably(tmp_dir: &Path, dest: &Path, contents: &[u8]) -> Result<()> {
    let name = dest
        .file_name()
        .map(|n| format!("{}.tmp", n.to_string_lossy()))
        .unwrap_or_else(|| "file.tmp".to_owned());
    let tmp = tmp_dir.join(name);
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(contents).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, dest).at(dest)?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// An open segment being appended to.
#[derive(Debug)]
pub(crate) struct Segment {
    pub seq: u32,
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    /// Length of the header the segment was created with.
    pub base: u64,
}

impl Segment {
    /// Creates a new segment durably (via `tmp/`), starting with `header`.
    pub fn create(tmp_dir: &Path, path: PathBuf, seq: u32, header: &[u8]) -> Result<Self> {
        write_durably(tmp_dir, &path, header)?;
        let file = OpenOptions::new().append(true).open(&path).at(&path)?;
        Ok(Self {
            seq,
            path,
            file,
            len: header.len() as u64,
            base: header.len() as u64,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes).at(&self.path)?;
        self.len = self.len.saturating_add(bytes.len() as u64);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }
}

/// A unit of work for the writer.
#[derive(Debug)]
pub(crate) enum Request {
    /// A new message: its body goes to the data segment, its record to the journal, and it
    /// is inserted into the state once both are durable.
    /// The body is a list of parts written one after the other (a `Received:` header and
    /// the message as received, say), shared with the caller or in a spill file rather than
    /// copied.
    Enqueue {
        rec: Box<MessageRec>,
        body: Vec<BodyPart>,
    },
    /// Encoded journal frames; `snapshots` lists (id, frame length) of snapshot records among
    /// them, so the state learns which segment now holds those messages.
    Records {
        bytes: Vec<u8>,
        snapshots: Vec<(QueueId, u32)>,
    },
}

#[derive(Debug, Default)]
struct Queue {
    requests: Vec<(u64, Request)>,
    next_ticket: u64,
    durable: u64,
    poisoned: Option<(String, bool)>,
    shutdown: bool,
}

/// Sizes at which segments are rotated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentLimits {
    pub journal_bytes: u64,
    pub data_bytes: u64,
}

/// The state shared by the spool's callers and its writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dirs: Dirs,
    pub state: Mutex<State>,
    queue: Mutex<Queue>,
    work: Condvar,
    done: Condvar,
}

/// Locks a mutex, ignoring poisoning: the data behind these mutexes stays consistent because
/// nothing in this crate panics while holding them (and a panic would be a bug to fix, not a
/// reason to stop delivering mail).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(dirs: Dirs, state: State) -> Self {
        Self {
            dirs,
            state: Mutex::new(state),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        }
    }

    /// Hands a request to the writer; returns its ticket.
    pub fn push(&self, request: Request) -> Result<u64> {
        let mut q = lock(&self.queue);
        if let Some((reason, disk_full)) = &q.poisoned {
            return Err(QueueError::Poisoned {
                reason: reason.clone(),
                disk_full: *disk_full,
            });
        }
        q.next_ticket += 1;
        let ticket = q.next_ticket;
        q.requests.push((ticket, request));
        drop(q);
        self.work.notify_one();
        Ok(ticket)
    }

    /// The ticket of the last request pushed so far.
    pub fn last_ticket(&self) -> u64 {
        lock(&self.queue).next_ticket
    }

    /// Waits until `ticket` is durable.
    pub fn wait(&self, ticket: u64) -> Result<()> {
        let mut q = lock(&self.queue);
        loop {
            if q.durable >= ticket {
                return Ok(());
            }
            if let Some((reason, disk_full)) = &q.poisoned {
                return Err(QueueError::Poisoned {
                    reason: reason.clone(),
                    disk_full: *disk_full,
                });
            }
            q = self.done.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Fails if the writer has stopped after an error.
    pub fn check(&self) -> Result<()> {
        match &lock(&self.queue).poisoned {
            Some((reason, disk_full)) => Err(QueueError::Poisoned {
                reason: reason.clone(),
                disk_full: *disk_full,
            }),
            None => Ok(()),
        }
    }

    /// Asks the writer to finish what is queued and stop.
    pub fn shutdown(&self) {
        lock(&self.queue).shutdown = true;
        self.work.notify_all();
    }
}

/// The writer thread's own state.
#[derive(Debug)]
pub(crate) struct Writer {
    pub journal: Segment,
    pub data: Segment,
    pub limits: SegmentLimits,
}

impl Writer {
    /// Starts the writer thread.
    pub fn spawn(self, shared: Arc<Shared>) -> Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("ccgate-queue-writer".into())
            .spawn(move || self.run(&shared))
            .at(PathBuf::from("<writer thread>"))
    }

    fn run(mut self, shared: &Shared) {
        loop {
            let batch = {
                let mut q = lock(&shared.queue);
                while q.requests.is_empty() && !q.shutdown {
                    q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
                if q.requests.is_empty() {
                    return;
                }
                std::mem::take(&mut q.requests)
            };
            let last = batch.last().map_or(0, |(t, _)| *t);
            let result = self.commit(batch, shared);
            let mut q = lock(&shared.queue);
            match result {
                Ok(()) => q.durable = last,
                Err(e) => {
                    q.poisoned = Some((e.to_string(), e.is_disk_full()));
                    q.requests.clear();
                    drop(q);
                    shared.done.notify_all();
                    return;
                }
            }
            drop(q);
            shared.done.notify_all();
        }
    }

    fn commit(&mut self, batch: Vec<(u64, Request)>, shared: &Shared) -> Result<()> {
        // 1. Bodies.
        let mut data_buf = Vec::new();
        let mut spill_buf = Vec::new();
        let mut data_dirty = false;
        let mut pending = Vec::with_capacity(batch.len());
        for (_, request) in batch {
            match request {
                Request::Enqueue { mut rec, body } => {
                    let body_len: u64 = body.iter().map(BodyPart::len).sum();
                    let frame_len =
                        (record::BODY_HEADER_LEN + record::BODY_TRAILER_LEN) as u64 + body_len;
                    let used = self.data.len + data_buf.len() as u64;
                    if used > 0 && used + frame_len > self.limits.data_bytes {
                        self.data.append(&data_buf)?;
                        data_buf.clear();
                        self.data.sync()?;
                        self.rotate_data(shared)?;
                    }
                    let offset = self.data.len + data_buf.len() as u64;
                    record::encode_body_header(rec.id, body_len, &mut data_buf);
                    if body_len > DIRECT_WRITE {
                        // A large body goes to the file from the caller's buffers, not
                        // through a copy in `data_buf`.
                        self.data.append(&data_buf)?;
                        data_buf.clear();
                        for part in &body {
                            match part {
                                BodyPart::Bytes(bytes) => self.data.append(bytes)?,
                                BodyPart::File(spill) => spill
                                    .for_each_chunk(&mut spill_buf, |chunk| {
                                        self.data.append(chunk)
                                    })?,
                            }
                        }
                    } else {
                        for part in &body {
                            match part {
                                BodyPart::Bytes(bytes) => data_buf.extend_from_slice(bytes),
                                BodyPart::File(spill) => {
                                    spill.for_each_chunk(&mut spill_buf, |chunk| {
                                        data_buf.extend_from_slice(chunk);
                                        Ok(())
                                    })?;
                                }
                            }
                        }
                    }
                    drop(body);
                    record::encode_body_trailer(rec.body.crc, &mut data_buf);
                    rec.body = BodyRef {
                        seg: self.data.seq,
                        offset,
                        len: body_len,
                        crc: rec.body.crc,
                    };
                    data_dirty = true;
                    pending.push(Request::Enqueue {
                        rec,
                        body: Vec::new(),
                    });
                }
                other => pending.push(other),
            }
        }
        if data_dirty {
            self.data.append(&data_buf)?;
            self.data.sync()?;
        }
        drop(data_buf);

        // 2. Journal records, in request order.
        let mut jbuf = Vec::new();
        let mut effects: Vec<(u32, Effect)> = Vec::with_capacity(pending.len());
        for request in pending {
            let (frag, effect) = match request {
                Request::Enqueue { rec, .. } => {
                    let record = Record::Enqueue(*rec);
                    let mut frag = Vec::new();
                    record.encode_frame(&mut frag);
                    let len = u32::try_from(frag.len()).unwrap_or(u32::MAX);
                    (frag, Effect::Insert(record, len))
                }
                Request::Records { bytes, snapshots } => (bytes, Effect::Snapshots(snapshots)),
            };
            let used = self.journal.len + jbuf.len() as u64;
            if used > self.journal.base && used + frag.len() as u64 > self.limits.journal_bytes {
                self.journal.append(&jbuf)?;
                jbuf.clear();
                self.journal.sync()?;
                self.note_journal_size(shared);
                self.rotate_journal(shared)?;
            }
            jbuf.extend_from_slice(&frag);
            effects.push((self.journal.seq, effect));
        }
        if !jbuf.is_empty() {
            self.journal.append(&jbuf)?;
            self.journal.sync()?;
        }

        // 3. Apply: new messages become visible only now that they are durable.
        let mut state = lock(&shared.state);
        state
            .journal_sizes
            .insert(self.journal.seq, self.journal.len);
        for (seg, effect) in effects {
            match effect {
                Effect::Insert(record, len) => {
                    state.apply(&record, seg, len);
                }
                Effect::Snapshots(list) => {
                    for (id, len) in list {
                        if let Some(msg) = state.messages.get_mut(&id) {
                            let old = u64::from(msg.rec_len);
                            msg.first_seg = seg;
                            msg.rec_len = len;
                            state.live_record_bytes = state
                                .live_record_bytes
                                .saturating_sub(old)
                                .saturating_add(u64::from(len));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn note_journal_size(&self, shared: &Shared) {
        lock(&shared.state)
            .journal_sizes
            .insert(self.journal.seq, self.journal.len);
    }

    fn rotate_journal(&mut self, shared: &Shared) -> Result<()> {
        let seq = self.journal.seq.saturating_add(1);
        self.journal = new_journal_segment(&shared.dirs, seq)?;
        self.note_journal_size(shared);
        lock(&shared.state).active_journal = seq;
        Ok(())
    }

    fn rotate_data(&mut self, shared: &Shared) -> Result<()> {
        let seq = self.data.seq.saturating_add(1);
        self.data = new_data_segment(&shared.dirs, seq)?;
        let mut state = lock(&shared.state);
        state.data_live.entry(seq).or_default();
        state.active_data = seq;
        Ok(())
    }
}

enum Effect {
    Insert(Record, u32),
    Snapshots(Vec<(QueueId, u32)>),
}

/// Creates journal segment `seq` (with its header record).
pub(crate) fn new_journal_segment(dirs: &Dirs, seq: u32) -> Result<Segment> {
    let mut header = Vec::new();
    Record::Header {
        seq,
        created_ms: crate::schedule::to_ms(crate::clock::now()),
    }
    .encode_frame(&mut header);
    Segment::create(&dirs.tmp, dirs.journal_path(seq), seq, &header)
}

/// Creates data segment `seq` (empty).
pub(crate) fn new_data_segment(dirs: &Dirs, seq: u32) -> Result<Segment> {
    Segment::create(&dirs.tmp, dirs.data_path(seq), seq, &[])
}
