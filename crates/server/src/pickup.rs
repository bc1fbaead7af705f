//! Legacy pickup: export files written by the post office into the pickup folder.
//!
//! The pickup folder is often a share (SMB, NFS) on another filesystem than the data folder,
//! and two gateways may watch the same share. So:
//!
//! - Every `poll_interval` the folder is listed; only regular files are looked at (a symlink,
//!   a folder or a FIFO is named once in the log and left alone: never followed, never
//!   opened). A file is taken once its size and modification time have not changed since the
//!   previous listing (the post office has finished writing it).
//! - It is **claimed** by an atomic rename into this gateway's own folder beside the pickup
//!   folder (`.<pickup>.ccgate/<node>/`, or `.ccgate/<node>/` inside it when the pickup folder
//!   is the root of its mount: always on the same filesystem): of two gateways only one rename
//!   succeeds, and anything the post office writes under the same name afterwards is a new
//!   file. A file that vanished before the rename was taken by another gateway (or removed).
//! - The claimed file is read with the streaming reader; each good message is turned into an
//!   envelope and an RFC 5322 body by the [`PickupCodec`] (conversion and routing), checked
//!   against the [`Ledger`] by its Message-ID, and queued durably in batches (concurrent
//!   enqueues share their fsyncs), then recorded in the ledger. A broken or truncated message
//!   (or one that cannot be converted) is set aside in `quarantine/` with its raw bytes and the
//!   reason (`file:line:column: ...`); the other messages of the file go on.
//! - A file read through stays claimed until the next pass. If its size and modification time
//!   are still those it had when it was opened, it moves to `archive/` in the data folder: a
//!   rename where possible, else copy, fsync, then remove the claimed file (a share is another
//!   filesystem: EXDEV). If they changed, a writer that paused past the stability wait has
//!   appended to it (through the handle it still holds: the claimed file is the same inode):
//!   it is read again, and the ledger keeps what was queued from being queued twice. A
//!   message cut short by the end of the file is set aside only then, once the file is known
//!   to be finished (its writer may still have been writing the rest).
//! - A file that fails (cannot be read, cannot be archived) is tried again with a growing
//!   pause (per file: the others go on), and after [`MAX_FILE_FAILURES`] attempts it is
//!   quarantined whole with its last error. If the spool or the ledger fails, the pass stops
//!   and the file stays claimed: the next pass reads it again, and the ledger keeps that from
//!   queueing anything twice. A gateway restarted after a crash resumes its claimed files.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ccgate_ccmail::{Message, ParseErrorKind, ReadError, ReadMessage, ReadOptions, Reader};
use ccgate_core::{Envelope, QueueId};
use ccgate_queue::{Route, Spool};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ServerError;
use crate::ledger::Ledger;
use crate::metrics::{Event as MetricEvent, Metrics};
use crate::shutdown::stopped;

/// Attempts at one file before it is quarantined whole.
pub const MAX_FILE_FAILURES: u32 = 5;
/// Messages converted before they are queued together (their fsyncs shared).
const ENQUEUE_BATCH: usize = 128;
/// ... or fewer, once they hold this many bytes.
const MAX_PENDING_BYTES: u64 = 16 << 20;
/// Threads queueing one batch at once (the spool's group commit joins them).
const ENQUEUE_THREADS: usize = 32;
/// The longest pause between two attempts at a failing file.
const MAX_FILE_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// The claim folder's name: `.<pickup>.ccgate` beside the pickup folder, or `.ccgate` inside
/// it when the pickup folder is the root of its mount.
pub const CLAIM_DIR: &str = ".ccgate";

/// A legacy message made ready for the spool.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Rewritten sender and the recipients as received (SMTP forms).
    pub envelope: Envelope,
    /// One route per envelope recipient.
    pub routes: Vec<Route>,
    /// The RFC 5322 message.
    pub body: Vec<u8>,
    /// Its identity for the ledger (the deterministic Message-ID).
    pub message_id: String,
}

/// Conversion and routing of picked-up legacy messages.
pub trait PickupCodec: Send + Sync + 'static {
    /// The message ready for the spool, or why it cannot be taken (it is then quarantined).
    ///
    /// # Errors
    /// A sentence saying why.
    fn accept(&self, message: &Message, raw_len: u64) -> Result<Accepted, String>;
}

/// What one pass over the folder did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PickupReport {
    /// Files archived.
    pub files: usize,
    /// Messages queued.
    pub queued: usize,
    /// Messages already in the ledger (not queued again).
    pub duplicates: usize,
    /// Messages set aside.
    pub quarantined: usize,
    /// Attempts at a file that failed (it is tried again later).
    pub failed: usize,
    /// Files quarantined whole after repeated failures.
    pub files_quarantined: usize,
}

/// A file that failed: how often, and when to try again.
#[derive(Debug, Clone)]
struct Failing {
    count: u32,
    next_try: Instant,
    last_error: String,
}

/// What the agent remembers between passes.
#[derive(Debug, Default)]
struct State {
    /// Size and modification time at the previous listing, by name.
    seen: HashMap<OsString, (u64, SystemTime)>,
    /// Claimed files that failed, by claimed name.
    failing: HashMap<OsString, Failing>,
    /// Names already reported as not taken (symlinks, folders ...), so the log says it once.
    reported: HashSet<OsString>,
    /// Claimed files read through, waiting one poll to be archived, by claimed name.
    read: HashMap<OsString, ReadThrough>,
}

/// A claimed file read to its end: its size and modification time when it was opened, and
/// a message cut short at its end (held until the file is known to be finished: its writer
/// may still append the rest).
#[derive(Debug)]
struct ReadThrough {
    stamp: (u64, SystemTime),
    truncated: Option<Held>,
    /// Lines of the messages set aside already: a file read again (appended to) does not set
    /// them aside a second time.
    set_aside: HashSet<u64>,
}

/// A message set aside later: where it starts, why, and its raw bytes.
#[derive(Debug)]
struct Held {
    line: u64,
    reason: String,
    raw: Vec<u8>,
}

/// Watches the pickup folder.
pub struct PickupAgent {
    pickup_dir: PathBuf,
    /// This gateway's node name: its claim folder is `<claim root>/<node>/`.
    node: String,
    archive_dir: PathBuf,
    quarantine_dir: PathBuf,
    spool: Arc<Spool>,
    codec: Arc<dyn PickupCodec>,
    ledger: Arc<Ledger>,
    read: ReadOptions,
    poll: Duration,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

impl std::fmt::Debug for PickupAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PickupAgent")
            .field("pickup_dir", &self.pickup_dir)
            .field("node", &self.node)
            .finish()
    }
}

/// A file-level failure: the file is tried again later (the others go on).
#[derive(Debug)]
struct FileError(String);

/// Why a claimed file's processing stopped.
#[derive(Debug)]
enum Stop {
    /// The file's own problem.
    File(FileError),
    /// The spool or the ledger failed: stop the pass, count nothing against the file.
    Global(ServerError),
}

impl From<ServerError> for Stop {
    fn from(e: ServerError) -> Self {
        Self::Global(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl PickupAgent {
    /// An agent on `pickup_dir`, reading with `read` every `poll`; `work_dir` (in the data
    /// folder) gets `archive/`, `quarantine/` and this gateway's node name (`pickup.node`),
    /// which names its claim folder `<parent>/.<pickup>.ccgate/<node>/` (see [`CLAIM_DIR`]).
    ///
    /// # Errors
    /// [`ServerError::Io`] when a folder cannot be created or the node name not kept.
    pub fn new(
        pickup_dir: &Path,
        work_dir: &Path,
        spool: Arc<Spool>,
        codec: Arc<dyn PickupCodec>,
        ledger: Arc<Ledger>,
        (read, poll): (ReadOptions, Duration),
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let archive_dir = work_dir.join("archive");
        let quarantine_dir = work_dir.join("quarantine");
        for dir in [pickup_dir, &archive_dir, &quarantine_dir] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let node = node_name(work_dir)?;
        let claim_dir = claim_root(pickup_dir).join(&node);
        fs::create_dir_all(&claim_dir).map_err(io_err(&claim_dir))?;
        Ok(Self {
            pickup_dir: pickup_dir.to_path_buf(),
            node,
            archive_dir,
            quarantine_dir,
            spool,
            codec,
            ledger,
            read,
            poll,
            metrics,
            state: Mutex::new(State::default()),
        })
    }

    /// Polls until `stop` fires.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let agent = Arc::new(self);
        loop {
            let worker = Arc::clone(&agent);
            match tokio::task::spawn_blocking(move || worker.pass()).await {
                Ok(Ok(report)) if report != PickupReport::default() => {
                    info!(
                        files = report.files,
                        queued = report.queued,
                        duplicates = report.duplicates,
                        quarantined = report.quarantined,
                        failed = report.failed,
                        files_quarantined = report.files_quarantined,
                        "legacy pickup"
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "legacy pickup stopped; retrying at the next poll"),
                Err(e) => warn!(error = %e, "legacy pickup task failed"),
            }
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(agent.poll) => {}
            }
        }
    }

    /// One pass: claims every file that has stopped changing, then reads every claimed file
    /// that is due (a failing one waits for its backoff).
    ///
    /// # Errors
    /// [`ServerError`] when the spool or the ledger fails (the file concerned stays claimed
    /// and is read again at the next pass). A problem with one file is never an error here:
    /// it is logged, counted in the report, and the other files go on.
    pub fn pass(&self) -> Result<PickupReport, ServerError> {
        let mut report = PickupReport::default();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.claim_stable(&mut state);
        let mut claimed: Vec<PathBuf> = Vec::new();
        for dir in claim_folders(&self.pickup_dir, &self.node) {
            match fs::read_dir(&dir) {
                Ok(entries) => claimed.extend(
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .map(|e| e.path())
                        .filter(|p| !is_hidden(p)),
                ),
                // Nothing claimed there (the other place, or a share mounted afresh: its
                // claim folder is made again before the next claim).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(folder = %dir.display(), error = %e, "cannot list the claim folder");
                }
            }
        }
        // Claimed names start with the time of the claim: oldest first.
        claimed.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let keys: HashSet<OsString> = claimed
            .iter()
            .filter_map(|p| p.file_name().map(OsString::from))
            .collect();
        state.read.retain(|k, _| keys.contains(k));
        let now = Instant::now();
        for path in claimed {
            let key = path.file_name().map(OsString::from).unwrap_or_default();
            if state.failing.get(&key).is_some_and(|f| f.next_try > now) {
                continue;
            }
            // A file read through at an earlier pass is archived once it has not changed
            // since: a writer that paused longer than the stability wait and then appended
            // to it (the claimed file is the same inode) has its new messages read first.
            let outcome = match state.read.remove(&key) {
                Some(mut done) if stamp_of(&path).ok() == Some(done.stamp) => {
                    let finished = self.finish_file(&path, &mut done, &mut report);
                    if finished.is_err() {
                        // Read through already: the next attempt only archives it.
                        state.read.insert(key.clone(), done);
                    }
                    finished
                }
                earlier => {
                    if earlier.is_some() {
                        info!(file = %original_name(&path), claimed = %path.display(), "changed after it was read (its writer appended to it): read again; what is already queued or set aside is not taken twice");
                    }
                    let set_aside = earlier.map(|e| e.set_aside).unwrap_or_default();
                    self.read_file(&path, set_aside, &mut report).map(|done| {
                        state.read.insert(key.clone(), done);
                    })
                }
            };
            match outcome {
                Ok(()) => {
                    state.failing.remove(&key);
                }
                Err(Stop::Global(e)) => return Err(e),
                Err(Stop::File(FileError(reason))) => {
                    report.failed += 1;
                    let failing = state.failing.entry(key.clone()).or_insert(Failing {
                        count: 0,
                        next_try: now,
                        last_error: String::new(),
                    });
                    failing.count += 1;
                    failing.last_error.clone_from(&reason);
                    let name = original_name(&path);
                    if failing.count >= MAX_FILE_FAILURES {
                        let why = format!(
                            "{name}: set aside after {} failed attempts: {reason}",
                            failing.count
                        );
                        state.failing.remove(&key);
                        self.quarantine_file(&path, &name, &why)?;
                        report.files_quarantined += 1;
                    } else {
                        let pause = backoff(self.poll, failing.count);
                        failing.next_try = now + pause;
                        warn!(file = %name, attempt = failing.count, retry_in = ?pause, error = %reason, "legacy file failed; the other files go on");
                    }
                }
            }
        }
        Ok(report)
    }

    /// Lists the pickup folder and claims the regular files that did not change since the
    /// previous listing. The claim folder is worked out and made (if missing) before the
    /// pass's first claim: the share may have been mounted, unmounted or mounted afresh
    /// since the previous pass, which takes the claim folder on it away or moves its place.
    fn claim_stable(&self, state: &mut State) {
        let entries = match fs::read_dir(&self.pickup_dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(folder = %self.pickup_dir.display(), error = %e, "cannot list the pickup folder");
                return;
            }
        };
        let mut names: Vec<(OsString, fs::FileType)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name(), e.file_type().ok()?)))
            .filter(|(name, _)| !name.to_string_lossy().starts_with('.'))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut now_seen = HashMap::new();
        let mut claim_dir: Option<Result<PathBuf, io::Error>> = None;
        for (name, kind) in names {
            let path = self.pickup_dir.join(&name);
            if !kind.is_file() {
                if state.reported.insert(name.clone()) {
                    let what = if kind.is_symlink() {
                        "a symbolic link (not followed)"
                    } else if kind.is_dir() {
                        "a folder"
                    } else {
                        "not a regular file"
                    };
                    warn!(file = %path.display(), "{what} in the pickup folder; left alone");
                }
                continue;
            }
            // Never follow a link: the listing's type is the entry's own, and so is this.
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_file() => meta,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    info!(file = %path.display(), "vanished before it was read (taken by another gateway, or removed)");
                    continue;
                }
                Err(e) => {
                    if state.reported.insert(name.clone()) {
                        warn!(file = %path.display(), error = %e, "cannot look at a file in the pickup folder; left alone");
                    }
                    continue;
                }
            };
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let stable = state.seen.get(&name) == Some(&stamp);
            if !stable {
                now_seen.insert(name, stamp);
                continue;
            }
            let dir = match claim_dir.get_or_insert_with(|| self.make_claim_dir()) {
                Ok(dir) => dir.clone(),
                Err(_) => {
                    // Said once for the pass (below); the file stays stable for the next.
                    now_seen.insert(name, stamp);
                    continue;
                }
            };
            let target = claim_name(&dir, &name);
            match fs::rename(&path, &target) {
                Ok(()) => {
                    state.reported.remove(&name);
                    if let Err(e) = sync_dir(&dir).and_then(|()| sync_dir(&self.pickup_dir)) {
                        warn!(folder = %dir.display(), error = %e, "cannot sync the claim folder");
                    }
                    info!(file = %name.to_string_lossy(), claimed = %target.display(), size = stamp.0, "claimed from the pickup folder");
                }
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && fs::symlink_metadata(&path).is_ok() =>
                {
                    // The file is there: the claim folder went away under us (the share
                    // was mounted afresh in the middle of the pass). It is made again before
                    // the next claim; this file waits for the next poll.
                    warn!(file = %path.display(), folder = %dir.display(), error = %e, "cannot claim a file: the claim folder is gone; made again and tried at the next poll");
                    now_seen.insert(name, stamp);
                    claim_dir = None;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    info!(file = %path.display(), "vanished before it was claimed (taken by another gateway, or removed)");
                }
                Err(e) => {
                    if state.reported.insert(name.clone()) {
                        warn!(file = %path.display(), error = %e, "cannot claim a file in the pickup folder; left alone, tried again at every poll");
                    }
                }
            }
        }
        if let Some(Err(e)) = &claim_dir {
            let dir = claim_root(&self.pickup_dir).join(&self.node);
            warn!(folder = %dir.display(), error = %e, "cannot make the claim folder; nothing claimed, tried again at the next poll");
        }
        state.seen = now_seen;
    }

    /// This gateway's claim folder where it belongs now (see [`claim_root`]), made if it is
    /// missing.
    fn make_claim_dir(&self) -> Result<PathBuf, io::Error> {
        let dir = claim_root(&self.pickup_dir).join(&self.node);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Reads a claimed file through: queues its good messages, sets aside the broken ones
    /// (but one cut short at the end: see [`ReadThrough`]). It is archived at a later pass.
    fn read_file(
        &self,
        path: &Path,
        mut set_aside: HashSet<u64>,
        report: &mut PickupReport,
    ) -> Result<ReadThrough, Stop> {
        let name = original_name(path);
        let file =
            open_regular(path).map_err(|e| Stop::File(FileError(format!("cannot open: {e}"))))?;
        let stamp = file
            .metadata()
            .map(|m| stamp_from(&m))
            .map_err(|e| Stop::File(FileError(format!("cannot look at it: {e}"))))?;
        let mut truncated: Option<Held> = None;
        let mut pending: Vec<ReadMessage> = Vec::new();
        let mut pending_bytes = 0u64;
        for result in Reader::new(file, self.read.clone()) {
            match result {
                Ok(read) => {
                    pending_bytes += read.len;
                    pending.push(read);
                    if pending.len() >= ENQUEUE_BATCH || pending_bytes >= MAX_PENDING_BYTES {
                        self.take_batch(&name, &mut pending, &mut set_aside, report)?;
                        pending_bytes = 0;
                    }
                }
                Err(ReadError::Parse { error, raw }) => {
                    let held = Held {
                        line: error.position.line,
                        reason: format!("{name}:{}: {}", error.position, error.kind),
                        raw,
                    };
                    // Cut short by the end of the file: maybe still being written.
                    let at_end = matches!(error.kind, ParseErrorKind::Truncated { .. });
                    let earlier = if at_end {
                        truncated.replace(held)
                    } else {
                        Some(held)
                    };
                    if let Some(h) = earlier
                        && set_aside.insert(h.line)
                    {
                        self.quarantine(&name, h.line, &h.reason, &h.raw)?;
                        report.quarantined += 1;
                    }
                }
                Err(ReadError::Io(e)) => {
                    // What was queued stays queued (the ledger knows it); the rest waits.
                    self.take_batch(&name, &mut pending, &mut set_aside, report)?;
                    return Err(Stop::File(FileError(format!("read error: {e}"))));
                }
                Err(other) => {
                    self.take_batch(&name, &mut pending, &mut set_aside, report)?;
                    return Err(Stop::File(FileError(other.to_string())));
                }
            }
        }
        self.take_batch(&name, &mut pending, &mut set_aside, report)?;
        Ok(ReadThrough {
            stamp,
            truncated,
            set_aside,
        })
    }

    /// A file read through and unchanged since: the message cut short at its end (if any)
    /// is set aside, and the file moves to the archive.
    fn finish_file(
        &self,
        path: &Path,
        done: &mut ReadThrough,
        report: &mut PickupReport,
    ) -> Result<(), Stop> {
        let name = original_name(path);
        if let Some(h) = done.truncated.take() {
            self.quarantine(&name, h.line, &h.reason, &h.raw)?;
            report.quarantined += 1;
        }
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Never over an archived file of the same name and second.
        let mut n = 0u32;
        let target = loop {
            let candidate = if n == 0 {
                self.archive_dir.join(format!("{name}.{stamp}"))
            } else {
                self.archive_dir.join(format!("{name}.{stamp}.{n}"))
            };
            match fs::symlink_metadata(&candidate) {
                Ok(meta) if meta.file_type().is_file() => n += 1,
                _ => break candidate,
            }
        };
        move_file(path, &target).map_err(|e| {
            Stop::File(FileError(format!(
                "cannot move it to {}: {e}",
                target.display()
            )))
        })?;
        info!(file = %name, archived = %target.display(), "legacy file done");
        report.files += 1;
        Ok(())
    }

    /// Converts a batch of read messages (on several threads), sets aside those that cannot
    /// be converted, skips those already taken in, and queues the rest.
    fn take_batch(
        &self,
        name: &str,
        pending: &mut Vec<ReadMessage>,
        set_aside: &mut HashSet<u64>,
        report: &mut PickupReport,
    ) -> Result<(), ServerError> {
        if pending.is_empty() {
            return Ok(());
        }
        let reads = std::mem::take(pending);
        let threads = std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .clamp(1, 8);
        let chunk = reads.len().div_ceil(threads).max(1);
        let converted: Vec<Result<Accepted, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = reads
                .chunks(chunk)
                .map(|part| {
                    let n = part.len();
                    let handle = scope.spawn(move || {
                        part.iter()
                            .map(|read| self.codec.accept(&read.message, read.len))
                            .collect::<Vec<_>>()
                    });
                    (n, handle)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join()
                        .unwrap_or_else(|_| vec![Err("the conversion panicked".to_owned()); n])
                })
                .collect()
        });
        let mut batch: Vec<(u64, Accepted)> = Vec::new();
        let mut in_batch: HashSet<String> = HashSet::new();
        for (read, outcome) in reads.iter().zip(converted) {
            let line = read.position.line;
            match outcome {
                Ok(accepted) => {
                    if self.ledger.contains(&accepted.message_id)
                        || !in_batch.insert(accepted.message_id.clone())
                    {
                        report.duplicates += 1;
                        info!(file = %name, line, message_id = %accepted.message_id, "already taken in; not queued again");
                        continue;
                    }
                    batch.push((line, accepted));
                }
                Err(_) if !set_aside.insert(line) => {}
                Err(reason) => {
                    let raw = format!("{:#?}", read.message);
                    self.quarantine(
                        name,
                        line,
                        &format!("{name}:{line}:1: {reason}"),
                        raw.as_bytes(),
                    )?;
                    report.quarantined += 1;
                }
            }
        }
        self.enqueue_batch(name, &mut batch, report)
    }

    /// Queues the batch (concurrently: the spool's group commit shares the fsyncs), records
    /// it in the ledger with one fsync, then hands it to the delivery agents.
    fn enqueue_batch(
        &self,
        name: &str,
        batch: &mut Vec<(u64, Accepted)>,
        report: &mut PickupReport,
    ) -> Result<(), ServerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(batch);
        let ids: Vec<QueueId> = items.iter().map(|_| QueueId::generate()).collect();
        let now = SystemTime::now();
        let chunk = items.len().div_ceil(ENQUEUE_THREADS).max(1);
        let results: Vec<Result<(), ServerError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .zip(ids.chunks(chunk))
                .map(|(part, part_ids)| {
                    let n = part.len();
                    let handle = scope.spawn(move || {
                        part.iter()
                            .zip(part_ids)
                            .map(|((_, a), id)| {
                                self.spool
                                    .enqueue_keyed(
                                        *id,
                                        &[a.message_id.as_str()],
                                        &a.envelope,
                                        &a.routes,
                                        &a.body,
                                        now,
                                    )
                                    .map(|_| ())
                                    .map_err(ServerError::from)
                            })
                            .collect::<Vec<_>>()
                    });
                    (n, handle)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join().unwrap_or_else(|_| {
                        (0..n)
                            .map(|_| {
                                Err(ServerError::Io {
                                    path: self.spool.dir().to_path_buf(),
                                    source: io::Error::other("an enqueue thread panicked"),
                                })
                            })
                            .collect()
                    })
                })
                .collect()
        });
        let mut queued_keys = Vec::new();
        let mut queued_ids = Vec::new();
        let mut first_error = None;
        for (((line, accepted), id), result) in items.iter().zip(&ids).zip(results) {
            match result {
                Ok(()) => {
                    queued_keys.push(accepted.message_id.as_str());
                    queued_ids.push(*id);
                    report.queued += 1;
                    self.metrics.count(MetricEvent::Accepted, "legacy", 1);
                    info!(queue_id = %id, file = %name, line, from = %accepted.envelope.sender, nrcpt = accepted.envelope.recipients.len(), "queued from the legacy side");
                    self.metrics.trace(crate::TraceEvent::accepted(
                        "legacy",
                        id,
                        &accepted.envelope,
                        &accepted.routes,
                        (&accepted.body, accepted.body.len() as u64),
                        &format!("{name}:{line}, "),
                    ));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Only now may the agents deliver (and remove) them: their keys are in the ledger,
        // or in this process's memory of it if the write failed (a restart takes them back
        // from the spool records).
        let recorded = self.ledger.insert_many(&queued_keys);
        self.spool.confirm_keyed(&queued_ids);
        recorded?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sets a message aside: its raw bytes and a `.err` file with the reason.
    fn quarantine(
        &self,
        file: &str,
        line: u64,
        reason: &str,
        raw: &[u8],
    ) -> Result<(), ServerError> {
        let base = self.quarantine_base(&format!("{file}.line{line}"));
        let err_path = with_suffix(&base, ".err");
        self.metrics.count(MetricEvent::Quarantined, "legacy", 1);
        write_durably(&base, raw).map_err(io_err(&base))?;
        write_durably(&err_path, format!("{reason}\n").as_bytes()).map_err(io_err(&err_path))?;
        sync_dir(&self.quarantine_dir).map_err(io_err(&self.quarantine_dir))?;
        warn!(file, line, reason, quarantined = %base.display(), "legacy message set aside");
        self.metrics
            .trace([crate::TraceEvent::quarantined(file, line, reason)]);
        Ok(())
    }

    /// Sets a whole claimed file aside after repeated failures: moved into `quarantine/`
    /// (across filesystems if need be) with a `.err` file. A file that cannot even be copied
    /// (unreadable) is renamed into the claim folder's `failed/` on its own filesystem, and the
    /// `.err` file says where it is.
    fn quarantine_file(&self, path: &Path, name: &str, reason: &str) -> Result<(), ServerError> {
        let base = self.quarantine_base(name);
        let err_path = with_suffix(&base, ".err");
        let reason = match move_file(path, &base) {
            Ok(()) => reason.to_owned(),
            Err(e) => {
                // Beside the file, in the claim folder that holds it.
                let failed_dir = path.with_file_name("failed");
                let kept = failed_dir.join(path.file_name().unwrap_or_default());
                let kept_ok =
                    fs::create_dir_all(&failed_dir).and_then(|()| fs::rename(path, &kept));
                match kept_ok {
                    Ok(()) => format!(
                        "{reason}\n(cannot copy it here: {e}; the file is at {})",
                        kept.display()
                    ),
                    Err(e2) => format!(
                        "{reason}\n(cannot copy it here: {e}; cannot move it aside either: {e2}; it stays at {})",
                        path.display()
                    ),
                }
            }
        };
        self.metrics.count(MetricEvent::Quarantined, "legacy", 1);
        write_durably(&err_path, format!("{reason}\n").as_bytes()).map_err(io_err(&err_path))?;
        sync_dir(&self.quarantine_dir).map_err(io_err(&self.quarantine_dir))?;
        warn!(file = name, reason, quarantined = %base.display(), "legacy file set aside");
        Ok(())
    }

    fn quarantine_base(&self, name: &str) -> PathBuf {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.quarantine_dir.join(format!("{name}.{stamp}"))
    }
}

/// A fresh name in the claim folder `dir` that keeps the original name at its end.
fn claim_name(dir: &Path, name: &OsString) -> PathBuf {
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut n = 0u32;
    loop {
        let candidate = dir.join(format!("{stamp:020}{n:04}.{}", name.to_string_lossy()));
        if fs::symlink_metadata(&candidate).is_err() {
            return candidate;
        }
        n += 1;
    }
}

/// Both places this gateway's claim folder can be (beside the pickup folder, or inside it:
/// see [`claim_root`]). Claimed files are looked for in both, so a file claimed before the
/// share was mounted or unmounted is still read.
fn claim_folders(pickup_dir: &Path, node: &str) -> Vec<PathBuf> {
    let mut folders = vec![pickup_dir.join(CLAIM_DIR).join(node)];
    if let Some(beside) = claim_root_beside(pickup_dir) {
        folders.push(beside.join(node));
    }
    folders
}

/// `<parent>/.<name>.ccgate`, the claim root beside `pickup_dir` (none for a root folder).
fn claim_root_beside(pickup_dir: &Path) -> Option<PathBuf> {
    let (Some(parent), Some(name)) = (pickup_dir.parent(), pickup_dir.file_name()) else {
        return None;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    Some(parent.join(format!(".{}{CLAIM_DIR}", name.to_string_lossy())))
}

/// Where gateways claim files from `pickup_dir`: beside it, `<parent>/.<name>.ccgate/`, when
/// that is on the same filesystem (so the pickup folder itself holds only the post office's
/// files); else, for a pickup folder that is the root of its mount, inside it (`.ccgate/`).
/// Every gateway on the share works this out the same way.
fn claim_root(pickup_dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let inside = pickup_dir.join(CLAIM_DIR);
    let Some(beside) = claim_root_beside(pickup_dir) else {
        return inside;
    };
    let same_fs = match (fs::metadata(pickup_dir), beside.parent().map(fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() == b.dev(),
        _ => false,
    };
    if same_fs && (beside.is_dir() || fs::create_dir(&beside).is_ok()) {
        beside
    } else {
        inside
    }
}

/// This gateway's node name, kept in `work_dir/pickup.node` (made once, at first start).
fn node_name(work_dir: &Path) -> Result<String, ServerError> {
    let path = work_dir.join("pickup.node");
    if let Ok(text) = fs::read_to_string(&path) {
        let name = text.trim();
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Ok(name.to_owned());
        }
    }
    let name = QueueId::generate().to_string().to_ascii_lowercase();
    write_durably(&path, format!("{name}\n").as_bytes()).map_err(io_err(&path))?;
    sync_dir(work_dir).map_err(io_err(work_dir))?;
    Ok(name)
}

/// The pause after `failures` failed attempts: the poll interval, doubling, capped.
fn backoff(poll: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(16);
    poll.saturating_mul(factor).min(MAX_FILE_BACKOFF)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The name the post office gave a claimed file (the claim prefix taken off).
fn original_name(claimed: &Path) -> String {
    let name = claimed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split_once('.') {
        Some((prefix, rest))
            if prefix.len() == 24 && prefix.bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest.to_owned()
        }
        _ => name,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Opens a regular file for reading, never through a symbolic link.
/// A file's size and modification time, as the stability checks compare them.
fn stamp_from(meta: &fs::Metadata) -> (u64, SystemTime) {
    (
        meta.len(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// The size and modification time of the file at `path` (the entry's own: links not followed).
fn stamp_of(path: &Path) -> io::Result<(u64, SystemTime)> {
    fs::symlink_metadata(path).map(|m| stamp_from(&m))
}

fn open_regular(path: &Path) -> io::Result<File> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    File::open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Copies `src` into `dst`, leaving runs of zero bytes as holes: a sparse garbage file of a
/// gigabyte costs no gigabyte of disk in the data folder.
fn copy_sparse(src: &mut File, dst: &mut File) -> io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const CHUNK: usize = 64 << 10;
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if chunk.iter().all(|b| *b == 0) {
            dst.seek(SeekFrom::Current(i64::try_from(n).unwrap_or(i64::MAX)))?;
        } else {
            dst.write_all(chunk)?;
        }
        len += n as u64;
    }
    dst.set_len(len)
}

/// Moves `from` to `to`: a rename when both are on one filesystem, else copy (to a hidden
/// name beside `to`), fsync, rename, fsync the folder, and only then remove `from`.
fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    let dest_dir = to.parent().unwrap_or(Path::new("."));
    match fs::rename(from, to) {
        Ok(()) => {
            sync_dir(dest_dir)?;
            if let Some(src_dir) = from.parent() {
                sync_dir(src_dir)?;
            }
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {}
        Err(e) => return Err(e),
    }
    let tmp = dest_dir.join(format!(
        ".{}.tmp",
        to.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let copied = (|| {
        let mut src = open_regular(from)?;
        let mut dst = File::create(&tmp)?;
        copy_sparse(&mut src, &mut dst)?;
        dst.sync_all()?;
        fs::rename(&tmp, to)?;
        sync_dir(dest_dir)
    })();
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::remove_file(from)?;
    if let Some(src_dir) = from.parent() {
        sync_dir(src_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ccgate_core::{EmailAddress, Lane, ReversePath};
    use ccgate_queue::SpoolOptions;

    use super::*;

    /// `Name at HQ` is `name@legacy.test`; the Message-ID is the subject.
    struct TestCodec;

    impl PickupCodec for TestCodec {
        fn accept(&self, message: &Message, _raw_len: u64) -> Result<Accepted, String> {
            let smtp = |legacy: &str| -> Result<EmailAddress, String> {
                let name = legacy
                    .split(" at ")
                    .next()
                    .unwrap_or_default()
                    .to_lowercase();
                format!("{name}@legacy.test")
                    .parse()
                    .map_err(|e| format!("{e}"))
            };
            let recipients: Vec<EmailAddress> =
                message.recipients().map(smtp).collect::<Result<_, _>>()?;
            let routes = recipients
                .iter()
                .map(|r| Route::new(Lane::Modern, r.clone()))
                .collect();
            let sender = ReversePath::Mailbox(smtp(message.from().ok_or("no sender")?)?);
            Ok(Accepted {
                envelope: Envelope { sender, recipients },
                routes,
                body: b"Subject: x\r\n\r\nx\r\n".to_vec(),
                message_id: message.subject().unwrap_or_default().to_owned(),
            })
        }
    }

    const FILE: &[u8] = b"Message:\r\nFrom: Ann at HQ\r\nTo: Bob at HQ\r\nSubject: one\r\nContents:\r\nText item:\r\nhi\r\n\
Message:\r\nFrom: Ann at HQ\r\nTo: Bob at HQ\r\nText item:\r\nno contents line\r\n\
Message:\r\nFrom: Ann at HQ\r\nTo: Cy at HQ\r\nSubject: two\r\nContents:\r\nText item:\r\nhi\r\n";

    /// A gateway's pickup on `pickup`, with its own spool, ledger and work folder in `data`;
    /// the ledger completed from the spool as `ccgate run` does.
    fn agent_on(pickup: &Path, data: &Path) -> (PickupAgent, Arc<Spool>) {
        let spool = Arc::new(Spool::open(&data.join("queue"), SpoolOptions::default()).unwrap());
        let ledger = Arc::new(Ledger::open(&data.join("ledger")).unwrap());
        ledger.adopt(&spool.origins()).unwrap();
        let agent = PickupAgent::new(
            pickup,
            &data.join("work"),
            Arc::clone(&spool),
            Arc::new(TestCodec),
            ledger,
            (ReadOptions::default(), Duration::from_millis(10)),
            Arc::default(),
        )
        .unwrap();
        (agent, spool)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut found: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    fn one_message(subject: &str) -> String {
        format!(
            "Message:\r\nFrom: Ann at HQ\r\nTo: Bob at HQ\r\nSubject: {subject}\r\nContents:\r\nText item:\r\nhi\r\n"
        )
    }

    /// The share under the pickup folder mounted afresh: the claim folder on it is gone
    /// (and the pickup folder with it). The next file is claimed and queued all the same,
    /// and a file claimed in the other place (beside or inside) is still read.
    #[test]
    fn a_claim_folder_that_went_away_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("share/outbound");
        let (agent, spool) = agent_on(&pickup, dir.path());
        fs::remove_dir_all(dir.path().join("share")).unwrap();
        assert_eq!(agent.pass().unwrap(), PickupReport::default());
        fs::create_dir_all(&pickup).unwrap();
        fs::write(pickup.join("REMOUNT.TXT"), one_message("remount")).unwrap();
        agent.pass().unwrap();
        let claimed = agent.pass().unwrap();
        assert_eq!(claimed.queued, 1, "{claimed:?}");
        let archived = agent.pass().unwrap();
        assert_eq!(archived.files, 1, "{archived:?}");
        // A file in the claim folder's other place (inside the pickup folder).
        let inside = pickup.join(CLAIM_DIR).join(&agent.node);
        fs::create_dir_all(&inside).unwrap();
        fs::write(inside.join("0001.OTHER.TXT"), one_message("other")).unwrap();
        let read = agent.pass().unwrap();
        assert_eq!(read.queued, 1, "{read:?}");
        assert_eq!(spool.len(), 2);
        assert_eq!(names(&pickup), [CLAIM_DIR], "only the claim folder is left");
    }

    /// A crash after the spool took a batch and before the ledger recorded it: the file is
    /// still claimed and is read again after the restart, and the keys the spool records carry
    /// keep its messages from being queued twice.
    #[test]
    fn a_crash_between_queueing_and_the_ledger_queues_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (pickup, data) = (dir.path().join("pickup"), dir.path().join("data"));
        let (agent, spool) = agent_on(&pickup, &data);
        fs::write(pickup.join("A.TXT"), FILE).unwrap();
        agent.pass().unwrap();
        let first = agent.pass().unwrap();
        assert_eq!((first.queued, first.files), (2, 0), "{first:?}");
        // The crash: the file stays claimed, the ledger's last write never happened.
        drop((agent, spool));
        fs::write(data.join("ledger"), b"").unwrap();
        let (agent, spool) = agent_on(&pickup, &data);
        let again = agent.pass().unwrap();
        assert_eq!((again.queued, again.duplicates), (0, 2), "{again:?}");
        assert_eq!(spool.len(), 2);
        let done = agent.pass().unwrap();
        assert_eq!(done.files, 1, "{done:?}");
    }

    #[test]
    fn two_gateways_on_one_folder_never_take_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("share");
        let (a, spool_a) = agent_on(&pickup, &dir.path().join("a"));
        let (b, spool_b) = agent_on(&pickup, &dir.path().join("b"));
        for i in 0..40 {
            fs::write(
                pickup.join(format!("F{i:03}.TXT")),
                one_message(&format!("m{i}")),
            )
            .unwrap();
        }
        // Both list the folder (each sees every file once), then race for the files.
        a.pass().unwrap();
        b.pass().unwrap();
        let (ra, rb) = std::thread::scope(|s| {
            let ha = s.spawn(|| a.pass().unwrap());
            let hb = s.spawn(|| b.pass().unwrap());
            (ha.join().unwrap(), hb.join().unwrap())
        });
        // Read through: archived at the next pass, once unchanged.
        let (fa, fb) = (a.pass().unwrap(), b.pass().unwrap());
        assert_eq!(ra.files + rb.files, 0, "{ra:?} {rb:?}");
        assert_eq!(fa.files + fb.files, 40, "{fa:?} {fb:?}");
        assert_eq!(fa.queued + fb.queued + fa.duplicates + fb.duplicates, 0);
        assert_eq!(ra.queued + rb.queued, 40, "each message queued once");
        assert_eq!(spool_a.len() + spool_b.len(), 40);
        let archived: Vec<String> = names(&dir.path().join("a/work/archive"))
            .into_iter()
            .chain(names(&dir.path().join("b/work/archive")))
            .map(|n| n.split('.').next().unwrap().to_owned())
            .collect();
        let unique: HashSet<&String> = archived.iter().collect();
        assert_eq!((archived.len(), unique.len()), (40, 40));
        assert_eq!(names(&pickup), Vec::<String>::new(), "the folder is empty");
    }

    #[test]
    fn links_folders_and_fifos_are_left_alone_and_the_other_files_flow() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("pickup");
        let (agent, spool) = agent_on(&pickup, &dir.path().join("data"));
        let secret = dir.path().join("secret.txt");
        fs::write(&secret, one_message("secret")).unwrap();
        std::os::unix::fs::symlink(&secret, pickup.join("LINK.TXT")).unwrap();
        fs::create_dir(pickup.join("DIR.TXT")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(pickup.join("FIFO.TXT"))
            .status()
            .is_ok_and(|s| s.success());
        fs::write(pickup.join("GOOD.TXT"), one_message("good")).unwrap();
        agent.pass().unwrap();
        let report = agent.pass().unwrap();
        let archived = agent.pass().unwrap();
        assert_eq!((archived.files, report.queued), (1, 1), "{report:?}");
        assert_eq!(spool.len(), 1, "the link's target was never read");
        assert!(
            fs::symlink_metadata(pickup.join("LINK.TXT"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(secret.exists() && pickup.join("DIR.TXT").is_dir());
        if fifo {
            assert!(pickup.join("FIFO.TXT").exists());
        }
    }

    #[test]
    fn a_file_that_keeps_failing_is_quarantined_whole_and_the_others_flow() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("pickup");
        let data = dir.path().join("data");
        let (agent, spool) = agent_on(&pickup, &data);
        // The archive name of BAD.TXT is taken by a folder for the next minutes: every
        // attempt to archive it fails, and only it.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for s in now..now + 300 {
            fs::create_dir_all(data.join(format!("work/archive/BAD.TXT.{s}"))).unwrap();
        }
        fs::write(pickup.join("BAD.TXT"), one_message("bad")).unwrap();
        fs::write(pickup.join("GOOD.TXT"), one_message("good")).unwrap();
        let mut total = PickupReport::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while total.files_quarantined == 0 {
            assert!(Instant::now() < deadline, "never quarantined: {total:?}");
            let r = agent.pass().unwrap();
            total.files += r.files;
            total.queued += r.queued;
            total.duplicates += r.duplicates;
            total.failed += r.failed;
            total.files_quarantined += r.files_quarantined;
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(total.files, 1, "GOOD.TXT was archived meanwhile: {total:?}");
        assert_eq!(total.failed, MAX_FILE_FAILURES as usize);
        assert_eq!(total.queued, 2, "each message queued once: {total:?}");
        assert_eq!(spool.len(), 2);
        let quarantined = names(&data.join("work/quarantine"));
        assert_eq!(quarantined.len(), 2, "{quarantined:?}");
        let err = quarantined.iter().find(|n| n.ends_with(".err")).unwrap();
        let reason = fs::read_to_string(data.join("work/quarantine").join(err)).unwrap();
        assert!(
            reason.starts_with("BAD.TXT: set aside after 5 failed attempts: cannot move it to"),
            "{reason}"
        );
        let kept = quarantined.iter().find(|n| !n.ends_with(".err")).unwrap();
        assert_eq!(
            fs::read_to_string(data.join("work/quarantine").join(kept)).unwrap(),
            one_message("bad")
        );
    }

    #[test]
    fn takes_stable_files_quarantines_broken_messages_and_never_queues_twice() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("pickup");
        let (agent, _spool) = agent_on(&pickup, dir.path());
        fs::write(pickup.join("EXPORT.TXT"), FILE).unwrap();
        fs::write(pickup.join(".partial"), b"Message:\r\n").unwrap();
        assert_eq!(
            agent.pass().unwrap(),
            PickupReport::default(),
            "a file is taken once it stops changing"
        );
        let report = agent.pass().unwrap();
        assert_eq!(
            report,
            PickupReport {
                queued: 2,
                duplicates: 0,
                quarantined: 1,
                ..PickupReport::default()
            }
        );
        // Archived at the next pass, unchanged since it was read.
        let report = agent.pass().unwrap();
        assert_eq!(
            report,
            PickupReport {
                files: 1,
                ..PickupReport::default()
            }
        );
        assert!(!pickup.join("EXPORT.TXT").exists(), "archived");
        assert!(
            pickup.join(".partial").exists(),
            "hidden files are left alone"
        );
        assert_eq!(
            fs::read_dir(dir.path().join("work/archive"))
                .unwrap()
                .count(),
            1
        );
        let quarantined: Vec<String> = fs::read_dir(dir.path().join("work/quarantine"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            quarantined.len(),
            2,
            "raw bytes and reason: {quarantined:?}"
        );
        let reason_file = quarantined.iter().find(|n| n.ends_with(".err")).unwrap();
        let reason =
            fs::read_to_string(dir.path().join("work/quarantine").join(reason_file)).unwrap();
        assert!(
            reason.contains("EXPORT.TXT:11:1: missing 'Contents:'"),
            "{reason}"
        );
        // The same export again (a replay, or a crash before archiving): nothing queued twice.
        fs::write(pickup.join("EXPORT.TXT"), FILE).unwrap();
        agent.pass().unwrap();
        let again = agent.pass().unwrap();
        assert_eq!((again.queued, again.duplicates), (0, 2));
    }

    /// A writer that paused past the stability wait, then appended to the file it still has
    /// open (the claimed file: the same inode): the new messages are read before the file
    /// is archived, and nothing is queued twice. A message it had cut short at the end is
    /// read whole, not set aside.
    #[test]
    fn messages_appended_to_a_claimed_file_are_read_before_it_is_archived() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("pickup");
        let (agent, spool) = agent_on(&pickup, dir.path());
        let mut writer = File::create(pickup.join("SLOW.TXT")).unwrap();
        let third = one_message("three");
        let (third_head, third_tail) = third.split_at(third.len() - 4);
        // A message with size lines, cut inside its text item: truncated as it stands.
        let body = "a body long enough to be cut in the middle\r\nof its second line";
        let item = format!("Text item:\r\n{}\r\n{body}\r\n", body.len());
        let head = "From: Ann at HQ\r\nTo: Bob at HQ\r\nSubject: cut\r\nContents:\r\n";
        let contents = format!("{}\r\n{item}", item.len());
        let sized = format!(
            "Message:\r\n{}\r\n{head}{contents}",
            head.len() + contents.len()
        );
        let (sized_head, sized_tail) = sized.split_at(sized.len() - 20);
        writer
            .write_all(format!("{}{sized_head}", one_message("one")).as_bytes())
            .unwrap();
        agent.pass().unwrap();
        let first = agent.pass().unwrap();
        assert_eq!(
            (first.files, first.queued, first.quarantined),
            (0, 1, 0),
            "{first:?}"
        );
        let claim_dir = claim_root(&pickup).join(&agent.node);
        let claimed = names(&claim_dir);
        assert_eq!(claimed.len(), 1, "claimed, not archived yet: {claimed:?}");
        // The writer goes on, into the claimed file.
        writer
            .write_all(format!("{sized_tail}{}{third_head}", one_message("two")).as_bytes())
            .unwrap();
        writer.write_all(third_tail.as_bytes()).unwrap();
        drop(writer);
        let again = agent.pass().unwrap();
        assert_eq!(
            (
                again.files,
                again.queued,
                again.duplicates,
                again.quarantined
            ),
            (0, 3, 1, 0),
            "read again: {again:?}"
        );
        let last = agent.pass().unwrap();
        assert_eq!(
            (last.files, last.queued, last.quarantined),
            (1, 0, 0),
            "{last:?}"
        );
        assert_eq!(
            spool.len(),
            4,
            "one, cut (now whole), two, three: each once"
        );
        assert!(names(&dir.path().join("work/quarantine")).is_empty());
        assert!(names(&claim_dir).is_empty());
    }

    /// A broken message before the point a writer appended at is set aside once, not again
    /// when the file is read a second time.
    #[test]
    fn a_broken_message_is_set_aside_once_when_its_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let pickup = dir.path().join("pickup");
        let (agent, spool) = agent_on(&pickup, dir.path());
        let mut writer = File::create(pickup.join("BROKEN.TXT")).unwrap();
        let broken = "Message:\r\nFrom: Ann at HQ\r\nTo: Bob at HQ\r\nSubject: broken\r\nContents: 999\r\nhello\r\n";
        writer
            .write_all(format!("{}{broken}{}", one_message("one"), one_message("two")).as_bytes())
            .unwrap();
        agent.pass().unwrap();
        let first = agent.pass().unwrap();
        assert_eq!((first.queued, first.quarantined), (2, 1), "{first:?}");
        writer.write_all(one_message("three").as_bytes()).unwrap();
        drop(writer);
        let again = agent.pass().unwrap();
        assert_eq!((again.queued, again.quarantined), (1, 0), "{again:?}");
        agent.pass().unwrap();
        assert_eq!(spool.len(), 3);
        let set_aside: Vec<_> = names(&dir.path().join("work/quarantine"))
            .into_iter()
            .filter(|n| !n.ends_with(".err"))
            .collect();
        assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    }
}
