//! Segment files and the group-commit writer.
//!
//! One writer thread owns the open journal and data segments. Callers hand it requests and
//! (usually) wait for their ticket to become durable. Each pass of the writer takes *every*
//! request queued so far, so concurrent callers share one fsync:
//!
//! 1. append the bodies of all new messages to the data segment, followed by a *journal
//!    copy* frame holding the pass's journal records (enqueues, now pointing at their bodies,
//!    and state changes) and where they go in the journal;
//! 2. append the same records to the journal segment (not synced);
//! 3. `fdatasync` the data segment: bodies and records are durable together, in one file;
//! 4. apply the new messages to the in-memory state, then wake the waiters.
//!
//! The journal itself is synced only before the writer leaves it or the data segment holding
//! its copies (segment rotation) and at close, so the records the journal may lack after a
//! crash are always in the newest data segment, and recovery restores them from there
//! before replaying. New segment files are written under `tmp/`, synced, renamed into place
//! and their folder synced, so a segment either exists with a valid header or not at all.
//!
//! A failed write or fsync (a full disk, a quota, an I/O error) is rolled back, not guessed:
//! both segments are cut back to their length before the pass, so the bytes whose fate the
//! kernel no longer knows are gone, and what is retried is written again from memory. New
//! messages of the failed pass are refused (their callers answer `452 4.3.1`); state changes
//! (outcomes, attempts, admin actions, bounces) were already applied in memory, so they stay
//! queued and are retried, in order, with backoff. While the writer is stalled, new messages
//! are refused at once and no new attempts start; it resumes by itself once a write succeeds.
//! Only a failed rollback stops the spool for good (`Poisoned`): then nobody knows what is on
//! disk and the process must be restarted so recovery reads it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use ccgate_core::QueueId;

use crate::body::BodyPart;
use crate::error::{IoContext, QueueError, Result};
use crate::record::{self, BodyRef, MessageRec, Record};
use crate::state::State;

/// Prefix and suffix of journal segment names: `J00000001.log`.
const JOURNAL_PREFIX: &str = "J";
/// Body parts larger than this are written to the data segment from the caller's buffers
/// instead of being gathered with the rest of the pass first.
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
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .at(dir)?;
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
    let written = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(contents).at(&tmp)?;
        f.sync_all().at(&tmp)
    })();
    if let Err(e) = written {
        // A full disk leaves a partial file behind: it would only take more space.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, dest).at(dest)?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Creates (or truncates) a file readable and writable by the owner only (mode 0600): queued
/// mail is nobody else's business, whatever the process umask.
pub(crate) fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .at(path)
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
///
/// # Errors
/// [`QueueError::Io`] when the file system cannot be asked.
pub(crate) fn free_space(path: &Path) -> Result<u64> {
    space(path).map(|(free, _)| free)
}

/// Bytes free for an unprivileged writer, and the size of the file system holding `path`.
///
/// # Errors
/// [`QueueError::Io`] when the file system cannot be asked.
pub(crate) fn space(path: &Path) -> Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)
        .map_err(std::io::Error::from)
        .at(path)?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
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
    /// Length at the last sync (or creation): what lies beyond may not be on disk yet.
    pub synced: u64,
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
            synced: header.len() as u64,
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

    fn sync(&mut self) -> Result<()> {
        self.file.sync_data().at(&self.path)?;
        self.synced = self.len;
        Ok(())
    }

    /// Syncs the segment if anything was appended since the last sync.
    fn sync_if_dirty(&mut self) -> Result<()> {
        if self.len == self.synced {
            return Ok(());
        }
        self.sync()
    }

    /// Cuts the segment back to `len` after a failed write: what lay beyond is dropped from
    /// the file and from the page cache, so nothing half-written can reach the disk later.
    fn roll_back(&mut self, len: u64) -> Result<()> {
        self.file.set_len(len).at(&self.path)?;
        self.len = len;
        self.synced = self.synced.min(len);
        Ok(())
    }
}

/// A unit of work for the writer.
#[derive(Debug)]
pub(crate) enum Request {
    /// A new message: its body goes to the data segment, its record to the journal, and it
    /// is inserted into the state once both are durable.
    /// The body is a list of parts written one after the other (a `Received:` header, the
    /// message text spilled to a file as it arrived, the rest of it in memory), shared with
    /// the caller rather than copied; a spill file can be read again for a retried pass.
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

/// Why the writer is not taking new messages right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stall {
    /// The failed write, as the system said it.
    pub reason: String,
    /// ENOSPC or EDQUOT.
    pub disk_full: bool,
}

/// Wakes one waiter (per-caller wake-ups: a finished pass wakes only the callers whose
/// tickets it made durable, not everyone waiting on the spool).
#[derive(Debug, Default)]
struct Signal {
    fired: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn fire(&self) {
        *lock(&self.fired) = true;
        self.cv.notify_one();
    }

    fn wait(&self) {
        let mut fired = lock(&self.fired);
        while !*fired {
            fired = self.cv.wait(fired).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Called once with the fate of a ticket (on the writer thread, under the queue's lock: it
/// must only hand the result on, e.g. through a channel).
pub(crate) type Callback = Box<dyn FnOnce(Result<()>) + Send>;

/// Someone waiting for a ticket: a blocked thread, or a callback.
enum Waiter {
    Signal(Arc<Signal>),
    Callback(Callback),
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Signal(_) => "Signal",
            Self::Callback(_) => "Callback",
        })
    }
}

impl Request {
    /// A new message from outside (not a bounce): refused rather than retried when the disk
    /// is full, so the client is told `452` and nothing unacknowledged waits in memory.
    /// A bounce is retried instead: the message it reports on already counts it as queued.
    fn refusable(&self) -> bool {
        matches!(self, Self::Enqueue { rec, .. } if rec.bounce_for.is_none())
    }
}

#[derive(Debug, Default)]
struct Queue {
    requests: Vec<(u64, Request)>,
    next_ticket: u64,
    durable: u64,
    /// Tickets whose write was refused (a new message during a failed pass), with the error.
    failed: HashMap<u64, Stall>,
    /// Callers waiting, by ticket.
    waiters: BTreeMap<u64, Vec<Waiter>>,
    stalled: Option<Stall>,
    poisoned: Option<(String, bool)>,
    shutdown: bool,
    /// The writer thread has ended: nothing pushed now or still pending becomes durable.
    gone: bool,
}

impl Queue {
    fn poisoned_error(&self) -> Option<QueueError> {
        self.poisoned
            .as_ref()
            .map(|(reason, disk_full)| QueueError::Poisoned {
                reason: reason.clone(),
                disk_full: *disk_full,
            })
    }

    /// What became of `ticket`: `None` while it is still to be written.
    fn outcome(&mut self, ticket: u64) -> Option<Result<()>> {
        if let Some(stall) = self.failed.remove(&ticket) {
            return Some(Err(QueueError::NotAccepting {
                reason: stall.reason,
                disk_full: stall.disk_full,
            }));
        }
        if self.durable >= ticket {
            return Some(Ok(()));
        }
        if let Some(e) = self.poisoned_error() {
            return Some(Err(e));
        }
        if self.gone {
            return Some(Err(QueueError::NotAccepting {
                reason: "the spool closed before this write could be made".to_owned(),
                disk_full: self.stalled.as_ref().is_some_and(|s| s.disk_full),
            }));
        }
        None
    }

    /// Wakes the waiters of `tickets`: a thread checks its ticket itself; a callback is
    /// called with the ticket's fate, or kept if there is none yet.
    fn wake(&mut self, tickets: BTreeMap<u64, Vec<Waiter>>) {
        for (ticket, waiters) in tickets {
            for waiter in waiters {
                match waiter {
                    Waiter::Signal(signal) => signal.fire(),
                    Waiter::Callback(done) => match self.outcome(ticket) {
                        Some(result) => done(result),
                        None => self
                            .waiters
                            .entry(ticket)
                            .or_default()
                            .push(Waiter::Callback(done)),
                    },
                }
            }
        }
    }

    /// Wakes the waiters of every ticket up to `upto`.
    fn wake_upto(&mut self, upto: u64) {
        let later = self.waiters.split_off(&upto.saturating_add(1));
        let done = std::mem::replace(&mut self.waiters, later);
        self.wake(done);
    }

    fn wake_one(&mut self, ticket: u64) {
        if let Some(waiters) = self.waiters.remove(&ticket) {
            self.wake(BTreeMap::from([(ticket, waiters)]));
        }
    }

    fn wake_all(&mut self) {
        let all = std::mem::take(&mut self.waiters);
        self.wake(all);
    }
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
}

/// Locks a mutex, ignoring poisoning: the data behind these mutexes stays consistent because
/// nothing in this crate panics while holding them (and a panic would be a bug to fix, not a
/// reason to stop delivering mail).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// First pause before a stalled writer tries again; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between two tries of a stalled writer: space freed is noticed within it.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Free bytes a stalled writer waits for after a full disk before it tries to write again.
const RESUME_FREE: u64 = 1 << 20;

impl Shared {
    pub fn new(dirs: Dirs, state: State) -> Self {
        Self {
            dirs,
            state: Mutex::new(state),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
        }
    }

    /// Hands a request to the writer; returns its ticket. While the writer is stalled a new
    /// message is refused at once ([`QueueError::NotAccepting`]); state changes are queued.
    pub fn push(&self, request: Request) -> Result<u64> {
        let mut q = lock(&self.queue);
        if let Some(e) = q.poisoned_error() {
            return Err(e);
        }
        if q.gone {
            return Err(QueueError::NotAccepting {
                reason: "the spool is closed".to_owned(),
                disk_full: false,
            });
        }
        if let (Some(stall), true) = (&q.stalled, request.refusable()) {
            return Err(QueueError::NotAccepting {
                reason: stall.reason.clone(),
                disk_full: stall.disk_full,
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

    /// Waits until `ticket` is durable (or was refused).
    pub fn wait(&self, ticket: u64) -> Result<()> {
        loop {
            let signal = {
                let mut q = lock(&self.queue);
                if let Some(result) = q.outcome(ticket) {
                    return result;
                }
                let signal = Arc::new(Signal::default());
                q.waiters
                    .entry(ticket)
                    .or_default()
                    .push(Waiter::Signal(Arc::clone(&signal)));
                signal
            };
            signal.wait();
        }
    }

    /// Calls `done` with the fate of `ticket` once it is known: at once if it already is,
    /// else on the writer thread when the pass carrying it ends.
    pub fn on_durable(&self, ticket: u64, done: Callback) {
        let mut q = lock(&self.queue);
        match q.outcome(ticket) {
            Some(result) => {
                drop(q);
                done(result);
            }
            None => q
                .waiters
                .entry(ticket)
                .or_default()
                .push(Waiter::Callback(done)),
        }
    }

    /// Fails if the writer has stopped for good after an error it could not roll back.
    pub fn check(&self) -> Result<()> {
        match lock(&self.queue).poisoned_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Fails while the writer cannot write (stalled or stopped): no new work should start.
    pub fn check_writing(&self) -> Result<()> {
        let q = lock(&self.queue);
        if let Some(e) = q.poisoned_error() {
            return Err(e);
        }
        match &q.stalled {
            Some(stall) => Err(QueueError::NotAccepting {
                reason: stall.reason.clone(),
                disk_full: stall.disk_full,
            }),
            None => Ok(()),
        }
    }

    /// Why the writer is not writing, if it is not: `(stall, poisoned)`.
    pub fn writer_status(&self) -> (Option<Stall>, Option<String>) {
        let q = lock(&self.queue);
        (
            q.stalled.clone(),
            q.poisoned.as_ref().map(|(reason, _)| reason.clone()),
        )
    }

    /// Asks the writer to finish what is queued and stop.
    pub fn shutdown(&self) {
        let mut q = lock(&self.queue);
        q.shutdown = true;
        q.wake_all();
        drop(q);
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
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut batch = {
                let mut q = lock(&shared.queue);
                if q.stalled.is_some() {
                    // Pause before trying again; pushes meanwhile do not cut the pause short.
                    let until = std::time::Instant::now() + backoff;
                    while !q.shutdown {
                        let left = until.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        q = shared
                            .work
                            .wait_timeout(q, left)
                            .map_or_else(|e| e.into_inner().0, |(g, _)| g);
                    }
                    if q.shutdown && q.requests.is_empty() {
                        let _ = self.journal.sync_if_dirty();
                        q.gone = true;
                        q.wake_all();
                        return;
                    }
                    // Closing with records still unwritten: one last try below.
                } else {
                    while q.requests.is_empty() && !q.shutdown {
                        q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
                    }
                    if q.requests.is_empty() {
                        // Closing: leave the journal complete on disk, so the next open has
                        // nothing to restore from the data segment's copies.
                        let _ = self.journal.sync_if_dirty();
                        q.gone = true;
                        q.wake_all();
                        return;
                    }
                }
                let full = q.stalled.as_ref().is_some_and(|s| s.disk_full);
                if full
                    && !q.shutdown
                    && free_space(&shared.dirs.root).is_ok_and(|n| n < RESUME_FREE)
                {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                if q.requests.is_empty() {
                    // Stalled with nothing to retry: the next message will tell.
                    q.stalled = None;
                    backoff = MIN_BACKOFF;
                    continue;
                }
                std::mem::take(&mut q.requests)
            };
            let last = batch.last().map_or(0, |(t, _)| *t);
            match self.commit(&mut batch, shared) {
                Ok(effects) => {
                    self.apply(batch, effects, shared);
                    let mut q = lock(&shared.queue);
                    q.durable = last;
                    q.stalled = None;
                    q.wake_upto(last);
                    backoff = MIN_BACKOFF;
                }
                Err(PassError::Write(e)) => {
                    let stall = Stall {
                        reason: e.to_string(),
                        disk_full: e.is_disk_full(),
                    };
                    let (refused, retry): (Vec<_>, Vec<_>) =
                        batch.into_iter().partition(|(_, r)| r.refusable());
                    let mut q = lock(&shared.queue);
                    for (ticket, _) in refused {
                        q.failed.insert(ticket, stall.clone());
                        q.wake_one(ticket);
                    }
                    // New messages that came in meanwhile are refused too; the rest waits.
                    let newer = std::mem::take(&mut q.requests);
                    q.requests = retry;
                    for (ticket, request) in newer {
                        if request.refusable() {
                            q.failed.insert(ticket, stall.clone());
                            q.wake_one(ticket);
                        } else {
                            q.requests.push((ticket, request));
                        }
                    }
                    if q.stalled.is_some() {
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    q.stalled = Some(stall);
                    if q.shutdown {
                        // Closing and still unable to write: the waiters learn it; the records
                        // not written are lost as by a crash (recovery reads what is there).
                        q.requests.clear();
                        q.gone = true;
                        q.wake_all();
                        return;
                    }
                }
                Err(PassError::RollBack(e)) => {
                    let mut q = lock(&shared.queue);
                    q.poisoned = Some((e.to_string(), e.is_disk_full()));
                    q.requests.clear();
                    q.gone = true;
                    q.wake_all();
                    return;
                }
            }
        }
    }

    /// Writes one pass durably: bodies and a copy of the records to the data segment, the
    /// records to the journal, one fsync of the data segment. On failure both segments are
    /// cut back to where they were and the requests are left as they came, to be retried.
    fn commit(
        &mut self,
        batch: &mut [(u64, Request)],
        shared: &Shared,
    ) -> Result<Vec<(u32, u32)>, PassError> {
        // Rotate first, so a pass writes to one data and one journal segment and can be
        // rolled back whole.
        let data_total: u64 = batch
            .iter()
            .map(|(_, r)| match r {
                Request::Enqueue { body, .. } => {
                    (record::BODY_HEADER_LEN + record::BODY_TRAILER_LEN) as u64
                        + body.iter().map(BodyPart::len).sum::<u64>()
                }
                Request::Records { .. } => 0,
            })
            .sum();
        if data_total > 0
            && self.data.len > 0
            && self.data.len + data_total > self.limits.data_bytes
        {
            // The old data segment holds the only durable copy of the journal's unsynced
            // tail: sync the journal before moving on.
            self.sync_journal_for_rotation()?;
            self.rotate_data(shared).map_err(PassError::Write)?;
        }

        // 1. Bodies: where each goes (they are written below, from the callers' buffers and
        // spill files, never gathered whole).
        let mut offset = self.data.len;
        for (_, request) in batch.iter_mut() {
            if let Request::Enqueue { rec, body } = request {
                let len: u64 = body.iter().map(BodyPart::len).sum();
                rec.body = BodyRef {
                    seg: self.data.seq,
                    offset,
                    len,
                    crc: rec.body.crc,
                };
                offset += (record::BODY_HEADER_LEN + record::BODY_TRAILER_LEN) as u64 + len;
            }
        }

        // 2. Journal records, in request order.
        let mut jbuf = Vec::new();
        let mut lens = Vec::with_capacity(batch.len());
        for (_, request) in batch.iter() {
            let start = jbuf.len();
            match request {
                Request::Enqueue { rec, .. } => {
                    record::encode_message_frame(rec, false, &mut jbuf);
                }
                Request::Records { bytes, .. } => jbuf.extend_from_slice(bytes),
            }
            lens.push(u32::try_from(jbuf.len() - start).unwrap_or(u32::MAX));
        }
        if data_total == 0
            && self.data.len > 0
            && self.data.len + jbuf.len() as u64 > self.limits.data_bytes
        {
            // Only records (their copy) this pass: the data segment is full of copies.
            self.sync_journal_for_rotation()?;
            self.rotate_data(shared).map_err(PassError::Write)?;
        }
        if self.journal.len > self.journal.base
            && self.journal.len + jbuf.len() as u64 > self.limits.journal_bytes
        {
            self.note_journal_size(shared);
            // Leave the journal segment durable: later copies name only the new one.
            self.sync_journal_for_rotation()?;
            self.rotate_journal(shared).map_err(PassError::Write)?;
        }

        let (data_start, journal_start) = (self.data.len, self.journal.len);
        let written = (|| {
            // Bodies, then the journal copy, in the data segment; the records in the journal;
            // one fsync, of the data segment, makes the pass durable.
            let mut copy = Vec::new();
            if !jbuf.is_empty() {
                copy.reserve(jbuf.len() + record::COPY_HEADER_LEN + record::COPY_TRAILER_LEN);
                record::encode_copy_frame(self.journal.seq, journal_start, &jbuf, &mut copy);
            }
            self.write_bodies(batch, copy)?;
            // The journal only after the data segment is durable: the kernel may write journal
            // pages back at any time, and a record must never be on disk before its body.
            self.data.sync_if_dirty()?;
            self.journal.append(&jbuf)?;
            Ok::<(), QueueError>(())
        })();
        if let Err(e) = written {
            // Never retry an fsync on the same pages: cut them off and write them again.
            self.journal
                .roll_back(journal_start)
                .and_then(|()| self.data.roll_back(data_start))
                .map_err(PassError::RollBack)?;
            return Err(PassError::Write(e));
        }
        let seg = self.journal.seq;
        Ok(lens.into_iter().map(|len| (seg, len)).collect())
    }

    /// Syncs the journal before the writer leaves its segment or the data segment holding
    /// its copies. A failure here cannot be retried: after a failed fsync the kernel may have
    /// dropped the dirty pages and a second fsync would report success without them. The
    /// records are still safe in the data segment's copies, which stays: the spool stops
    /// (`Poisoned`), and recovery at the restart restores the journal from them.
    fn sync_journal_for_rotation(&mut self) -> Result<(), PassError> {
        self.journal.sync_if_dirty().map_err(PassError::RollBack)
    }

    /// Appends the body frames of a pass's enqueues, in order (small parts gathered, large
    /// ones written from their own buffers, spill files a chunk at a time), then `tail` (the
    /// pass's journal copy frame).
    fn write_bodies(&mut self, batch: &[(u64, Request)], tail: Vec<u8>) -> Result<()> {
        let mut buf = if batch
            .iter()
            .any(|(_, r)| matches!(r, Request::Enqueue { .. }))
        {
            Vec::new()
        } else {
            // Only records: the copy is all there is to write.
            return self.data.append(&tail);
        };
        let mut spill_buf = Vec::new();
        for (_, request) in batch {
            let Request::Enqueue { rec, body } = request else {
                continue;
            };
            record::encode_body_header(rec.id, rec.body.len, &mut buf);
            for part in body {
                match part {
                    BodyPart::Bytes(bytes) if bytes.len() as u64 <= DIRECT_WRITE => {
                        buf.extend_from_slice(bytes);
                    }
                    BodyPart::Bytes(bytes) => {
                        self.data.append(&buf)?;
                        buf.clear();
                        self.data.append(bytes)?;
                    }
                    BodyPart::File(spill) => {
                        self.data.append(&buf)?;
                        buf.clear();
                        spill.for_each_chunk(&mut spill_buf, |chunk| self.data.append(chunk))?;
                    }
                }
            }
            record::encode_body_trailer(rec.body.crc, &mut buf);
            if buf.len() as u64 >= DIRECT_WRITE {
                self.data.append(&buf)?;
                buf.clear();
            }
        }
        if buf.is_empty() {
            return self.data.append(&tail);
        }
        buf.extend_from_slice(&tail);
        self.data.append(&buf)
    }

    /// Applies a durable pass: new messages become visible only now.
    fn apply(&self, batch: Vec<(u64, Request)>, effects: Vec<(u32, u32)>, shared: &Shared) {
        let mut state = lock(&shared.state);
        state
            .journal_sizes
            .insert(self.journal.seq, self.journal.len);
        for ((_, request), (seg, len)) in batch.into_iter().zip(effects) {
            match request {
                Request::Enqueue { rec, .. } => {
                    state.apply(&Record::Enqueue(*rec), seg, len);
                }
                Request::Records { snapshots, .. } => {
                    for (id, len) in snapshots {
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

/// How a writer pass failed.
enum PassError {
    /// A write or fsync failed and was rolled back: retry later.
    Write(QueueError),
    /// The roll-back itself failed (or the journal could not be synced before a rotation):
    /// what is on disk is unknown, only a restart and recovery can tell.
    RollBack(QueueError),
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
