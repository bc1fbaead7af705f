//! The spool: the owning process's handle on the queue.
//!
//! [`Spool::open`] takes the spool's lock file (one owner at a time), recovers the journal, and
//! starts the group-commit writer. The server then drives it:
//!
//! - [`Spool::enqueue`] when a message is accepted (returns once it is durable: answer 250 then);
//! - [`Spool::lease`] per lane to get due work, [`Spool::complete`] with typed results, or
//!   [`Spool::abandon`] on a clean shutdown;
//! - [`Spool::unrouted`] and [`Spool::route`] for bounces and requeued messages;
//! - [`Spool::tick`] about once a second: lease timeouts, admin requests from other processes,
//!   owed bounces, compaction and clean-up.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::body::{BodyPart, SpillFile};
use bytes::Bytes;
use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};

use crate::admin::{
    AdminReport, AdminRequest, Depth, Filter, HistoryEntry, MessageDetail, MessageInfo, Summary,
};
use crate::bounce::{self, DsnInput, DsnRecipient};
use crate::error::{IoContext, QueueError, Result};
use crate::outcome::{DeliveryError, DeliveryResult, FailureScope, Severity, StatusCode};
use crate::record::{
    self, AdminAction, BodyRef, ErrorRec, MAX_BODY_LEN, MAX_STRING_LEN, MessageRec, RcptRec,
    RcptResult, RcptState, Record, ResultKind, RouteRec,
};
use crate::recover::{self, Mode, RecoveryReport};
use crate::schedule::{
    self, DeadPolicy, LaneStatus, RetryPolicy, duration_ms, from_ms, jitter_seed, to_ms,
};
use crate::state::{BOUNCE_BUILDING, BOUNCE_QUEUED, LaneLimits, LeaseInfo as LeaseSlot, State};
use crate::store::{self, Dirs, Request, SegmentLimits, Shared, Writer, lock};
use crate::{clock, control};

/// How the spool behaves. [`SpoolOptions::default`] matches the documented defaults.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Retry schedule and expiry (`[queue] retry`, `max_lifetime`).
    pub retry: RetryPolicy,
    /// Crashes or timeouts of one message before it is quarantined (`[queue] quarantine_after`).
    pub quarantine_after: u32,
    /// How long a leased attempt may run before it counts as hung.
    pub attempt_timeout: Duration,
    /// Concurrency limit per lane; lanes not listed get `default_concurrency`.
    pub lanes: HashMap<String, u32>,
    /// Concurrency limit of lanes not listed in `lanes`.
    pub default_concurrency: u32,
    /// When a lane is marked dead.
    pub dead: DeadPolicy,
    /// This gateway's host name, for bounces.
    pub reporting_mta: String,
    /// Journal segments are rotated past this size.
    pub journal_segment_bytes: u64,
    /// Data segments are rotated past this size.
    pub data_segment_bytes: u64,
    /// New messages are refused (`452 4.3.1`) while the spool's file system has less than
    /// this many bytes free, so that deliveries still have room to record their outcomes
    /// (Postfix's `queue_minfree`). 0 turns the check off.
    pub min_free: u64,
    /// If not 0, `min_free` is lowered to this percentage of the file system's size, so that
    /// a default meant for a real disk does not refuse everything on a small volume.
    pub min_free_cap_percent: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy {
                retry: [60, 300, 900, 3600, 14_400]
                    .map(Duration::from_secs)
                    .to_vec(),
                max_lifetime: Duration::from_secs(5 * 86_400),
            },
            quarantine_after: 5,
            attempt_timeout: Duration::from_secs(600),
            lanes: HashMap::new(),
            default_concurrency: 20,
            dead: DeadPolicy {
                dead_after: 3,
                cooloff: Duration::from_secs(300),
                max_cooloff: Duration::from_secs(3600),
            },
            reporting_mta: "localhost".to_owned(),
            journal_segment_bytes: 64 << 20,
            data_segment_bytes: 128 << 20,
            min_free: DEFAULT_MIN_FREE,
            min_free_cap_percent: 10,
        }
    }
}

/// Where one recipient goes: the routing decision made before enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination lane's name ([`Lane::as_str`]). The spool keeps names, not lanes: it
    /// loads whatever name it holds, and an empty one means "route it later".
    pub destination: String,
    /// The address to deliver to (after rewriting); the envelope's address is kept as the
    /// original recipient.
    pub deliver_to: EmailAddress,
    /// Hold this recipient instead of delivering it (a user being migrated).
    pub hold: bool,
}

impl Route {
    /// Deliver to `deliver_to` through `destination` (a [`Lane`], or a name: see
    /// [`Route::destination`]).
    pub fn new(destination: impl Into<String>, deliver_to: EmailAddress) -> Self {
        Self {
            destination: destination.into(),
            deliver_to,
            hold: false,
        }
    }

    /// The same route, but held.
    #[must_use]
    pub fn held(mut self) -> Self {
        self.hold = true;
        self
    }
}

/// The identity of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Due work handed to a delivery agent: one message, the recipients due in one lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// This attempt.
    pub id: LeaseId,
    /// The message.
    pub queue_id: QueueId,
    /// The lane.
    pub lane: String,
    /// The envelope sender.
    pub sender: ReversePath,
    /// The recipients to deliver to, in this attempt.
    pub recipients: Vec<LeasedRecipient>,
    /// After this the attempt counts as hung (and the recipients are retried).
    pub deadline: SystemTime,
    /// For a bounce: the message it reports on.
    pub bounce_of: Option<QueueId>,
    body: BodyRef,
}

/// One recipient of a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedRecipient {
    /// Its index in the message (stable for the message's life).
    pub index: u16,
    /// The address to deliver to.
    pub address: EmailAddress,
    /// The address as received, when routing rewrote it.
    pub original: Option<EmailAddress>,
    /// Attempts made before this one.
    pub attempts: u16,
}

/// What [`Spool::complete`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// The bounce queued for recipients that failed permanently, if any.
    pub bounce: Option<QueueId>,
    /// The message has left the queue (every recipient final, bounce queued).
    pub finished: bool,
    /// The lease had already timed out; only deliveries were recorded.
    pub late: bool,
}

/// What [`Spool::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Attempts that ran past their deadline (counted as crashes).
    pub timed_out: Vec<QueueId>,
    /// Messages quarantined in this tick.
    pub quarantined: Vec<QueueId>,
    /// Bounces queued in this tick.
    pub bounces: Vec<QueueId>,
    /// Admin requests from other processes carried out.
    pub control_requests: usize,
    /// Journal segments removed by compaction.
    pub compacted_segments: usize,
    /// Data segments removed because no message uses them.
    pub removed_data_segments: usize,
}

/// A message waiting for the router (a bounce, or requeued by an administrator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrouted {
    /// The message.
    pub queue_id: QueueId,
    /// Its envelope sender.
    pub sender: ReversePath,
    /// Unfinished recipients: index and the address to route (as originally received).
    pub recipients: Vec<(u16, EmailAddress)>,
}

/// A lane as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneInfo {
    /// The destination name.
    pub name: String,
    /// Its concurrency limit.
    pub limit: u32,
    /// Attempts running now.
    pub in_flight: u32,
    /// Alive, dead (cooling off) or probing.
    pub status: LaneStatus,
}

/// The owning handle on a spool directory. See the crate docs for the design.
#[derive(Debug)]
pub struct Spool {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    options: SpoolOptions,
    /// `options.retry` as in service: a configuration reload replaces it
    /// ([`Spool::set_retry`]).
    retry: std::sync::RwLock<Arc<RetryPolicy>>,
    report: RecoveryReport,
    wakers: Wakers,
    _lock: File,
}

/// A lane's wake-up call ([`Spool::on_due`]).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The wake-up calls of the lanes whose agents asked to be told of new work.
#[derive(Default)]
struct Wakers(std::sync::Mutex<Vec<(String, Wake)>>);

impl std::fmt::Debug for Wakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lanes: Vec<String> = lock(&self.0).iter().map(|(l, _)| l.clone()).collect();
        f.debug_tuple("Wakers").field(&lanes).finish()
    }
}

impl Wakers {
    /// Calls the wake-up of every lane among `lanes` (once each, outside the lock).
    fn wake<'a>(&self, lanes: impl Iterator<Item = &'a str> + Clone) {
        for wake in self.of(lanes) {
            wake();
        }
    }

    /// The wake-ups of every lane among `lanes`.
    fn of<'a>(&self, lanes: impl Iterator<Item = &'a str> + Clone) -> Vec<Wake> {
        lock(&self.0)
            .iter()
            .filter(|(lane, _)| lanes.clone().any(|l| l == lane))
            .map(|(_, wake)| Arc::clone(wake))
            .collect()
    }
}

/// Default of [`SpoolOptions::min_free`]: 64 MiB, room for the outcome records of about a
/// hundred thousand deliveries and for a new data segment's first messages, so a full disk
/// stops intake before it can stop deliveries (which are what free the space).
pub const DEFAULT_MIN_FREE: u64 = 64 << 20;

/// Whether the spool takes new mail, and if not, why ([`Spool::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolStatus {
    /// Writing and taking new mail.
    Accepting,
    /// Less free space than `min_free`: new mail is refused (`452 4.3.1`), deliveries go on.
    LowSpace {
        /// Bytes free now.
        free: u64,
        /// The configured floor.
        min_free: u64,
    },
    /// A write failed and was rolled back; the writer retries with backoff and resumes by
    /// itself. New mail is refused meanwhile (`452 4.3.1` when the disk is full).
    WriteFailing {
        /// The failed write, as the system said it.
        reason: String,
        /// ENOSPC or EDQUOT.
        disk_full: bool,
    },
    /// A failed write could not even be rolled back: only a restart (and recovery) helps.
    Failed {
        /// The failure.
        reason: String,
    },
}

impl SpoolStatus {
    /// A short name for metrics and probes: `accepting`, `low_space`, `disk_full`,
    /// `write_error` or `failed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Accepting => "accepting",
            Self::LowSpace { .. } => "low_space",
            Self::WriteFailing {
                disk_full: true, ..
            } => "disk_full",
            Self::WriteFailing { .. } => "write_error",
            Self::Failed { .. } => "failed",
        }
    }
}

impl std::fmt::Display for SpoolStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accepting => f.write_str("accepting mail"),
            Self::LowSpace { free, min_free } => write!(
                f,
                "not accepting mail: {free} bytes free on the spool's file system, below min_free ({min_free})"
            ),
            Self::WriteFailing { reason, .. } => write!(
                f,
                "not accepting mail: spool writes fail ({reason}); retrying"
            ),
            Self::Failed { reason } => write!(
                f,
                "the spool stopped after a write it could not roll back ({reason}); restart the process"
            ),
        }
    }
}

/// Messages snapshotted per state-lock hold during compaction.
const COMPACTION_CHUNK: usize = 4096;
/// Owed bounces built per tick.
const BOUNCES_PER_TICK: usize = 256;
/// Due entries of a dead lane deferred per `lease` call.
const DEAD_LANE_BATCH: usize = 10_000;

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, recovers it and starts the writer.
    ///
    /// # Errors
    /// [`QueueError::Locked`] if another process (or handle) owns the spool;
    /// [`QueueError::Io`] if the folder cannot be read or written;
    /// [`QueueError::InvalidOption`] for unusable options.
    pub fn open(dir: &Path, options: SpoolOptions) -> Result<Self> {
        check_options(&options)?;
        let started = Instant::now();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .at(dir)?;
        let dirs = Dirs::new(dir);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&dirs.lock)
            .at(&dirs.lock)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(QueueError::Locked { path: dirs.lock }),
            Err(TryLockError::Error(e)) => return Err(e).at(&dirs.lock),
        }
        dirs.create()?;

        let mut report = RecoveryReport::default();
        recover::clean_tmp(&dirs, &mut report)?;
        let limits = LaneLimits {
            limits: options.lanes.clone(),
            default: options.default_concurrency,
        };
        let (mut state, replayed, last_journal) = recover::replay(&dirs, limits, Mode::Owner)?;
        report.journal_segments = replayed.journal_segments;
        report.records = replayed.records;
        report.discarded = replayed.discarded;
        report.restored_bytes = replayed.restored_bytes;
        report.duplicates = replayed.duplicates;

        // Bodies must be where the journal says.
        let data_segments = dirs.data_segments()?;
        let mut sizes = HashMap::new();
        for (seq, path) in &data_segments {
            let len = std::fs::metadata(path).at(path)?.len();
            sizes.insert(*seq, len);
        }
        let now = clock::now();
        let now_ms = to_ms(now);
        let mut recovery_records = Vec::new();
        let mut in_flight: Vec<(QueueId, u64)> = Vec::new();
        for (id, msg) in &state.messages {
            let body_ok = sizes
                .get(&msg.body.seg)
                .is_some_and(|len| *len >= msg.body.frame_end());
            if !body_ok && msg.quarantine().is_none() {
                let reason = format!(
                    "stored message body missing or truncated ({})",
                    dirs.data_path(msg.body.seg).display()
                );
                report.quarantined.push((*id, reason.clone()));
                recovery_records.push(Record::Crash {
                    id: *id,
                    lease: 0,
                    at_ms: now_ms,
                    next_ms: now_ms,
                    reason,
                    quarantine: true,
                });
            }
            for r in msg.rcpts.iter() {
                if r.lease != 0 && !in_flight.contains(&(*id, r.lease)) {
                    in_flight.push((*id, r.lease));
                }
            }
        }
        for (id, lease) in in_flight {
            let Some(msg) = state.messages.get(&id) else {
                continue;
            };
            let failures = msg
                .rcpts
                .iter()
                .filter(|r| r.lease == lease)
                .map(|r| u32::from(r.attempts) + 1)
                .max()
                .unwrap_or(1);
            let quarantine = u32::from(msg.crashes) + 1 >= options.quarantine_after;
            let reason = "delivery attempt interrupted: the spool stopped while it ran".to_owned();
            if quarantine {
                report.quarantined.push((id, reason.clone()));
            }
            report.interrupted.push(id);
            // A first interruption is most likely the process stopping (SIGKILL, a power cut),
            // not the message: retry at once, as Postfix re-queues its active queue at start.
            // A message interrupted again backs off until it is quarantined.
            let next_ms = if msg.crashes == 0 {
                now_ms
            } else {
                schedule::next_attempt_ms(
                    now_ms,
                    msg.lifetime_from_ms,
                    &options.retry,
                    failures,
                    jitter_seed(id, 0, failures),
                )
            };
            recovery_records.push(Record::Crash {
                id,
                lease,
                at_ms: now_ms,
                next_ms,
                reason,
                quarantine,
            });
        }

        // New segments for this run: what came before is never appended to again.
        let journal = store::new_journal_segment(&dirs, last_journal.saturating_add(1))?;
        let data_seq = data_segments.last().map_or(1, |(s, _)| s.saturating_add(1));
        let data = store::new_data_segment(&dirs, data_seq)?;
        state.active_journal = journal.seq;
        state.active_data = data.seq;
        state.journal_sizes.insert(journal.seq, journal.len);
        state.data_live.entry(data.seq).or_default();
        state.build_index();

        // Data segments no queued message uses (their removals are already in the journal).
        for (seq, path) in &data_segments {
            if state.data_live.get(seq).copied().unwrap_or(0) == 0 {
                std::fs::remove_file(path).at(path)?;
                state.data_live.remove(seq);
                report.removed_segments.push(path.clone());
            }
        }
        if !report.removed_segments.is_empty() {
            store::sync_dir(&dirs.data)?;
        }

        let shared = Arc::new(Shared::new(dirs, state));
        let writer = Writer {
            journal,
            data,
            limits: SegmentLimits {
                journal_bytes: options.journal_segment_bytes,
                data_bytes: options.data_segment_bytes,
            },
        }
        .spawn(Arc::clone(&shared))?;
        let mut spool = Self {
            shared,
            writer: Some(writer),
            retry: std::sync::RwLock::new(Arc::new(options.retry.clone())),
            options,
            report,
            wakers: Wakers::default(),
            _lock: lock_file,
        };
        if !recovery_records.is_empty() {
            let ticket = spool.apply_and_push(&recovery_records)?;
            spool.shared.wait(ticket)?;
        }
        spool.report.messages = spool.len();
        spool.report.elapsed = started.elapsed();
        Ok(spool)
    }

    /// What recovery found when the spool was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The spool's folder.
    pub fn dir(&self) -> &Path {
        &self.shared.dirs.root
    }

    /// The options in force.
    pub fn options(&self) -> &SpoolOptions {
        &self.options
    }

    /// Queues a message. Returns once the message and its envelope are on disk (fsynced), so
    /// the caller may acknowledge it (answer `250`, remove the legacy file) right away.
    ///
    /// `routes` gives each envelope recipient's destination, in envelope order. Concurrent
    /// callers share fsyncs (group commit).
    ///
    /// # Errors
    /// [`QueueError::NoRecipients`], [`QueueError::RouteMismatch`], [`QueueError::TooLarge`]
    /// for bad input; [`QueueError::Poisoned`] if a write failed (then nothing was
    /// acknowledged and the spool must be reopened).
    pub fn enqueue(
        &self,
        envelope: &Envelope,
        routes: &[Route],
        body: &[u8],
        now: SystemTime,
    ) -> Result<QueueId> {
        let body = vec![BodyPart::Bytes(Bytes::copy_from_slice(body))];
        self.enqueue_inner(None, &[], envelope, routes, body, now)
    }

    /// Puts a new retry schedule and expiry (`[queue] retry`, `max_lifetime`) in service: the
    /// next failure of each recipient is scheduled by it, and expiry is judged by it from now
    /// on. Retries already scheduled keep their time.
    pub fn set_retry(&self, retry: RetryPolicy) {
        *self
            .retry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(retry);
    }

    /// The retry schedule and expiry in service.
    fn retry(&self) -> Arc<RetryPolicy> {
        self.retry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// [`Spool::enqueue`] under an id the caller chose (with [`QueueId::generate`]), so that the
    /// body can name it (a `Received:` header's `id`) before it is written.
    ///
    /// # Errors
    /// As [`Spool::enqueue`], and [`QueueError::DuplicateId`] if the id is already queued.
    pub fn enqueue_with_id(
        &self,
        id: QueueId,
        envelope: &Envelope,
        routes: &[Route],
        body: &[u8],
        now: SystemTime,
    ) -> Result<QueueId> {
        let body = vec![BodyPart::Bytes(Bytes::copy_from_slice(body))];
        self.enqueue_inner(Some(id), &[], envelope, routes, body, now)
    }

    /// [`Spool::enqueue_with_id`] for a message that fulfils keys of the caller's own ledger
    /// (a picked-up legacy message's Message-ID, a replayed message's keys). The keys are
    /// stored in the message's record, so after a crash between this call and the caller's
    /// ledger write, [`Spool::origins`] still names them and the message is not taken twice.
    /// The message is not leased until the caller calls [`Spool::confirm_keyed`] after its
    /// ledger write (or the spool is opened again), so it cannot be delivered and removed,
    /// key and all, before that write.
    ///
    /// # Errors
    /// As [`Spool::enqueue_with_id`]; [`QueueError::TooLarge`] when the keys do not fit the
    /// record.
    pub fn enqueue_keyed(
        &self,
        id: QueueId,
        origins: &[&str],
        envelope: &Envelope,
        routes: &[Route],
        body: &[u8],
        now: SystemTime,
    ) -> Result<QueueId> {
        for origin in origins {
            check_size("ledger key", origin.len() as u64, MAX_STRING_LEN as u64)?;
        }
        let body = vec![BodyPart::Bytes(Bytes::copy_from_slice(body))];
        self.enqueue_inner(Some(id), origins, envelope, routes, body, now)
    }

    /// [`Spool::enqueue_with_id`] for a body in parts (e.g. a `Received:` header, the message
    /// text spilled to a [`SpillFile`] as it arrived, the rest of it in memory), stored one
    /// after the other. The parts are not copied: the writer writes them to the data segment
    /// from these buffers and files, so a large message is never held whole in memory.
    ///
    /// # Errors
    /// As [`Spool::enqueue_with_id`].
    pub fn enqueue_parts(
        &self,
        id: QueueId,
        envelope: &Envelope,
        routes: &[Route],
        parts: Vec<BodyPart>,
        now: SystemTime,
    ) -> Result<QueueId> {
        self.enqueue_inner(Some(id), &[], envelope, routes, parts, now)
    }

    /// A new, empty [`SpillFile`] in the spool's `tmp/` folder (on the spool's file system,
    /// so it counts against the same free space), unlinked at once: a crash leaves nothing.
    ///
    /// # Errors
    /// [`QueueError::Io`] when the file cannot be created.
    pub fn spill_file(&self) -> Result<SpillFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = &self.shared.dirs.tmp;
        let path = dir.join(format!("spill-{}", QueueId::generate()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .at(&path)?;
        std::fs::remove_file(&path).at(&path)?;
        Ok(SpillFile::new(file, path))
    }

    /// As [`Spool::enqueue_parts`], without blocking the caller until the message is durable:
    /// checks it and hands it to the writer, then returns; `done` is called once with the
    /// result when the writer pass that carries it ends (on the writer thread, so it must only
    /// pass the result on, e.g. through a channel; an async server answers 250 from there
    /// without parking a thread per message). Parts that are [`SpillFile`]s are read here (for
    /// their checksum): call this off async workers for those.
    ///
    /// # Errors
    /// What `enqueue_parts` returns before the write (then `done` is never called); a failed
    /// write is given to `done`.
    pub fn enqueue_parts_then(
        &self,
        id: QueueId,
        envelope: &Envelope,
        routes: &[Route],
        parts: Vec<BodyPart>,
        now: SystemTime,
        done: impl FnOnce(Result<QueueId>) + Send + 'static,
    ) -> Result<()> {
        let wakes = self.wakers.of(due_lanes(routes));
        let (id, ticket) = self.submit(Some(id), &[], envelope, routes, parts, now)?;
        self.shared.on_durable(
            ticket,
            Box::new(move |result| {
                let queued = result.is_ok();
                done(result.map(|()| id));
                if queued {
                    for wake in wakes {
                        wake();
                    }
                }
            }),
        );
        Ok(())
    }

    fn enqueue_inner(
        &self,
        id: Option<QueueId>,
        origins: &[&str],
        envelope: &Envelope,
        routes: &[Route],
        body: Vec<BodyPart>,
        now: SystemTime,
    ) -> Result<QueueId> {
        let (id, ticket) = self.submit(id, origins, envelope, routes, body, now)?;
        self.shared.wait(ticket)?;
        self.wakers.wake(due_lanes(routes));
        Ok(id)
    }

    /// Checks a new message and hands it to the writer: its id and ticket.
    fn submit(
        &self,
        id: Option<QueueId>,
        origins: &[&str],
        envelope: &Envelope,
        routes: &[Route],
        body: Vec<BodyPart>,
        now: SystemTime,
    ) -> Result<(QueueId, u64)> {
        if envelope.recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        if routes.len() != envelope.recipients.len() {
            return Err(QueueError::RouteMismatch {
                routes: routes.len(),
                recipients: envelope.recipients.len(),
            });
        }
        let body_len: u64 = body.iter().map(BodyPart::len).sum();
        check_size("message", body_len, MAX_BODY_LEN)?;
        check_size("recipient list", routes.len() as u64, u64::from(u16::MAX))?;
        for route in routes {
            check_size(
                "destination name",
                route.destination.len() as u64,
                MAX_STRING_LEN as u64,
            )?;
        }
        let now_ms = to_ms(now);
        let rcpts: Vec<RcptRec> = envelope
            .recipients
            .iter()
            .zip(routes)
            .map(|(rcpt, route)| RcptRec {
                addr: route.deliver_to.to_string(),
                orig: (*rcpt != route.deliver_to).then(|| rcpt.to_string()),
                dest: route.destination.clone(),
                state: if route.hold {
                    RcptState::Held
                } else {
                    RcptState::Pending
                },
                attempts: 0,
                next_ms: now_ms,
                bounced: false,
                lease: 0,
                error: None,
            })
            .collect();
        self.check_min_free(body_len)?;
        let needs_routing = routes.iter().any(|r| r.destination.is_empty());
        let rec = MessageRec {
            id: QueueId::from_u128(0),
            arrival_ms: now_ms,
            body: BodyRef {
                crc: {
                    let mut crc = crc32fast::Hasher::new();
                    let mut buf = Vec::new();
                    for part in &body {
                        match part {
                            BodyPart::Bytes(bytes) => crc.update(bytes),
                            BodyPart::File(spill) => spill.for_each_chunk(&mut buf, |chunk| {
                                crc.update(chunk);
                                Ok(())
                            })?,
                        }
                    }
                    crc.finalize()
                },
                ..BodyRef::default()
            },
            sender: envelope.sender.to_string(),
            needs_routing,
            crashes: 0,
            quarantine: None,
            bounce_for: None,
            rcpts,
            lifetime_from_ms: None,
            origins: origins.iter().map(|&o| o.to_owned()).collect(),
        };
        rec.fits().map_err(|size| QueueError::TooLarge {
            what: "message record (recipients and their addresses)",
            size,
            max: record::MAX_RECORD_LEN as u64,
        })?;
        self.push_message(id, rec, body, None)
    }

    /// Whether a new message of `size` bytes would be taken now: refused
    /// ([`QueueError::NotAccepting`], `is_disk_full()` for `452 4.3.1`) while the writer cannot
    /// write or free space is short of `min_free` plus `size`. For SMTP to answer `MAIL FROM`
    /// before the client sends the message (`size` is what the client declared, else 0);
    /// `enqueue` checks again, since the disk can fill meanwhile.
    ///
    /// # Errors
    /// [`QueueError::NotAccepting`] or [`QueueError::Poisoned`] as `enqueue` would return
    /// them; [`QueueError::Io`] when the file system cannot be asked for its free space.
    pub fn accepts(&self, size: u64) -> Result<()> {
        self.shared.check_writing()?;
        self.check_min_free(size)
    }

    /// Registers `wake`, called each time mail becomes due at once in `lane`: a message
    /// queued or routed there (once it is durable). An agent waits on it instead of polling
    /// the lane often; mail that comes due later (a retry) is not announced, so the agent
    /// still polls now and then.
    pub fn on_due(&self, lane: impl AsRef<str>, wake: Wake) {
        lock(&self.wakers.0).push((lane.as_ref().to_owned(), wake));
    }

    /// Refuses a new message of `size` bytes while free space is below `min_free` (or would
    /// fall below it by writing the message).
    fn check_min_free(&self, size: u64) -> Result<()> {
        if self.options.min_free == 0 {
            return Ok(());
        }
        let (free, min_free) = self.free_and_floor()?;
        if free < min_free.saturating_add(size) {
            return Err(QueueError::NotAccepting {
                reason: format!(
                    "{free} bytes free on the spool's file system; min_free is {min_free}"
                ),
                disk_full: true,
            });
        }
        Ok(())
    }

    /// Free bytes now, and the `min_free` in force (capped to a share of the file system).
    fn free_and_floor(&self) -> Result<(u64, u64)> {
        let (free, size) = store::space(&self.shared.dirs.root)?;
        let mut floor = self.options.min_free;
        if self.options.min_free_cap_percent > 0 {
            floor = floor.min(size / 100 * self.options.min_free_cap_percent.min(100));
        }
        Ok((free, floor))
    }

    /// Whether the spool takes new mail now, and if not, why (for `/readyz` and metrics).
    pub fn status(&self) -> SpoolStatus {
        match self.shared.writer_status() {
            (_, Some(reason)) => SpoolStatus::Failed { reason },
            (Some(stall), None) => SpoolStatus::WriteFailing {
                reason: stall.reason,
                disk_full: stall.disk_full,
            },
            (None, None) => match self.free_and_floor() {
                Ok((free, min_free)) if self.options.min_free > 0 && free < min_free => {
                    SpoolStatus::LowSpace { free, min_free }
                }
                _ => SpoolStatus::Accepting,
            },
        }
    }

    /// False only when the spool cannot recover by itself (a failed write could not be rolled
    /// back): the liveness probe, so that a supervisor restarts the process.
    pub fn is_alive(&self) -> bool {
        self.shared.check().is_ok()
    }

    /// Gives `rec` a fresh id and hands it to the writer. `bounce` marks the recipients of the
    /// message a bounce reports on, under the same lock (so a snapshot never misses it).
    fn push_message(
        &self,
        wanted: Option<QueueId>,
        mut rec: MessageRec,
        body: Vec<BodyPart>,
        bounce: Option<(QueueId, &[u16])>,
    ) -> Result<(QueueId, u64)> {
        let mut state = lock(&self.shared.state);
        let id = match wanted {
            Some(id) if state.messages.contains_key(&id) => {
                return Err(QueueError::DuplicateId { id });
            }
            Some(id) => id,
            None => {
                let mut id = QueueId::generate();
                while state.messages.contains_key(&id) {
                    id = QueueId::generate();
                }
                id
            }
        };
        rec.id = id;
        if let Some((of, idxs)) = bounce {
            if let Some(orig) = state.messages.get_mut(&of) {
                for idx in idxs {
                    if let Some(r) = orig.rcpts.get_mut(usize::from(*idx)) {
                        r.flags = (r.flags | BOUNCE_QUEUED) & !BOUNCE_BUILDING;
                    }
                }
            }
            state.settle(of);
        }
        let keyed = !rec.origins.is_empty();
        if keyed {
            state.unconfirmed.insert(id);
        }
        let ticket = match self.shared.push(Request::Enqueue {
            rec: Box::new(rec),
            body,
        }) {
            Ok(ticket) => ticket,
            Err(e) => {
                state.unconfirmed.remove(&id);
                return Err(e);
            }
        };
        drop(state);
        Ok((id, ticket))
    }

    /// Hands keyed messages ([`Spool::enqueue_keyed`]) to the delivery agents, once the caller
    /// has recorded their keys in its ledger (or failed to: its own memory has them, and a
    /// restart finds them in the records). Until then they are queued but leased to no one,
    /// so none is delivered and removed while a crash could still lose its key. Ids that are
    /// not waiting (already confirmed, deleted) are passed over.
    pub fn confirm_keyed(&self, ids: &[QueueId]) {
        let mut lanes: Vec<String> = Vec::new();
        {
            let mut state = lock(&self.shared.state);
            for id in ids {
                if !state.unconfirmed.remove(id) {
                    continue;
                }
                state.index(*id);
                if let Some(msg) = state.messages.get(id) {
                    let names: Vec<String> = msg
                        .rcpts
                        .iter()
                        .filter(|r| r.waiting())
                        .map(|r| state.lane_name(r.dest).to_owned())
                        .collect();
                    for name in names {
                        if !lanes.contains(&name) {
                            lanes.push(name);
                        }
                    }
                }
            }
        }
        self.wakers.wake(lanes.iter().map(String::as_str));
    }

    /// Applies records to the state and hands them to the writer (caller waits if needed).
    fn apply_and_push(&self, records: &[Record]) -> Result<u64> {
        let mut state = lock(&self.shared.state);
        self.apply_and_push_locked(&mut state, records)
    }

    /// Hands records already applied to the writer.
    fn push_applied(&self, records: &[Record]) -> Result<u64> {
        let mut bytes = Vec::new();
        for rec in records {
            encode_checked(rec, &mut bytes)?;
        }
        self.shared.push(Request::Records {
            bytes,
            snapshots: Vec::new(),
        })
    }

    fn apply_and_push_locked(&self, state: &mut State, records: &[Record]) -> Result<u64> {
        // Encode (and check) every record before any is applied.
        let mut bytes = Vec::new();
        let mut lens = Vec::with_capacity(records.len());
        for rec in records {
            let start = bytes.len();
            encode_checked(rec, &mut bytes)?;
            lens.push(u32::try_from(bytes.len() - start).unwrap_or(u32::MAX));
        }
        for (rec, len) in records.iter().zip(lens) {
            let seg = state.active_journal;
            state.apply(rec, seg, len);
        }
        self.shared.push(Request::Records {
            bytes,
            snapshots: Vec::new(),
        })
    }

    /// Hands out due work in `lane` (a [`Lane`], or any name the spool holds): at most `max`
    /// leases, within the lane's free concurrency.
    /// Each lease is one message's due recipients in this lane. The attempt is journaled
    /// (without waiting for the disk) so that a crash during delivery is counted at restart.
    ///
    /// While the lane is dead its due mail is deferred to the end of the cool-off without
    /// attempts; mail past `max_lifetime` fails (and is bounced at the next [`Spool::tick`]).
    ///
    /// While writes fail (a full disk) it hands out nothing until the writer resumes.
    ///
    /// # Errors
    /// [`QueueError::Poisoned`] after a write that could not be rolled back.
    pub fn lease(&self, lane: impl AsRef<str>, max: usize, now: SystemTime) -> Result<Vec<Lease>> {
        let lane = lane.as_ref();
        // No new attempt while writes fail (its outcome could not be recorded): no work now,
        // not an error, so agents simply poll again.
        self.shared.check()?;
        if self.shared.check_writing().is_err() {
            return Ok(Vec::new());
        }
        let now_ms = to_ms(now);
        let mut state = lock(&self.shared.state);
        let Some(lane_id) = state.find_lane(lane) else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        let mut leases = Vec::new();
        let Some(lane_state) = state.lanes.get(usize::from(lane_id)) else {
            return Ok(Vec::new());
        };
        let status = lane_state.health.status(now_ms);
        let cap = lane_state.health.concurrency(now_ms, lane_state.limit);
        if let LaneStatus::Dead { until_ms } = status {
            self.defer_dead_lane(&mut state, lane_id, until_ms, now_ms, &mut records);
        } else {
            let deadline_ms = now_ms.saturating_add(duration_ms(self.options.attempt_timeout));
            while leases.len() < max {
                let Some(lane_state) = state.lanes.get_mut(usize::from(lane_id)) else {
                    break;
                };
                if lane_state.inflight >= cap {
                    break;
                }
                let Some(&(due, key)) = lane_state.due.first() else {
                    break;
                };
                if due > now_ms {
                    break;
                }
                lane_state.due.pop_first();
                let id = QueueId::from_u128(key);
                if let Some(lease) =
                    self.lease_one(&mut state, id, lane_id, now_ms, deadline_ms, &mut records)
                {
                    leases.push(lease);
                }
            }
        }
        if !records.is_empty() {
            // Already applied as they were made; the attempts are not waited for.
            self.push_applied(&records)?;
        }
        Ok(leases)
    }

    /// Tries to lease one message's due recipients in a lane.
    fn lease_one(
        &self,
        state: &mut State,
        id: QueueId,
        lane_id: u16,
        now_ms: u64,
        deadline_ms: u64,
        records: &mut Vec<Record>,
    ) -> Option<Lease> {
        let msg = state.messages.get(&id)?;
        if !msg.schedulable() {
            return None;
        }
        let in_lane = |r: &&crate::state::Rcpt| r.dest == lane_id && r.waiting();
        let due: Vec<u16> = msg
            .rcpts
            .iter()
            .enumerate()
            .filter(|(_, r)| in_lane(r) && r.next_ms <= now_ms)
            .filter_map(|(i, _)| u16::try_from(i).ok())
            .collect();
        if due.is_empty() {
            // A stale entry: put the message back at its real due time, if any.
            if let Some(next) = msg.rcpts.iter().filter(in_lane).map(|r| r.next_ms).min()
                && let Some(l) = state.lanes.get_mut(usize::from(lane_id))
            {
                l.due.insert((next, id.to_u128()));
            }
            return None;
        }
        // Expired without an attempt only when every due recipient was tried before: as in
        // Postfix, a message is given up after a failed attempt, never before its first one
        // (mail released from a hold, or long in a dead lane, is tried once).
        if schedule::is_expired(msg.lifetime_from_ms, now_ms, self.retry().max_lifetime)
            && tried_before(msg, &due)
        {
            let rec = self.expiry_outcome(id, msg, &due, now_ms);
            apply_now(state, records, rec);
            return None;
        }
        // Decode the stored envelope; an unreadable one is set aside, not retried forever.
        let sender = msg.sender.parse::<ReversePath>().map_err(|e| e.to_string());
        let mut recipients = Vec::with_capacity(due.len());
        let mut bad = None;
        for idx in &due {
            let Some(r) = msg.rcpts.get(usize::from(*idx)) else {
                continue;
            };
            let address = r.addr.parse::<EmailAddress>();
            let original = r
                .orig
                .as_deref()
                .map(str::parse::<EmailAddress>)
                .transpose();
            match (address, original) {
                (Ok(address), Ok(original)) => recipients.push(LeasedRecipient {
                    index: *idx,
                    address,
                    original,
                    attempts: r.attempts,
                }),
                (Err(e), _) | (_, Err(e)) => bad = Some(e.to_string()),
            }
        }
        let sender = match (sender, bad) {
            (Ok(s), None) => s,
            (Err(e), _) | (_, Some(e)) => {
                let rec = Record::Crash {
                    id,
                    lease: 0,
                    at_ms: now_ms,
                    next_ms: now_ms,
                    reason: format!("stored envelope is unreadable: {e}"),
                    quarantine: true,
                };
                apply_now(state, records, rec);
                return None;
            }
        };
        let bounce_of = msg.bounce_for();
        let body = msg.body;
        state.max_lease += 1;
        let lease_no = state.max_lease;
        let attempt = Record::Attempt {
            id,
            lease: lease_no,
            at_ms: now_ms,
            rcpts: due,
        };
        // Applied at once so the recipients are no longer waiting.
        apply_now(state, records, attempt);
        state.leases.insert(
            lease_no,
            LeaseSlot {
                id,
                lane: lane_id,
                deadline_ms,
            },
        );
        if let Some(l) = state.lanes.get_mut(usize::from(lane_id)) {
            l.inflight += 1;
        }
        Some(Lease {
            id: LeaseId(lease_no),
            queue_id: id,
            lane: state.lane_name(lane_id).to_owned(),
            sender,
            recipients,
            deadline: from_ms(deadline_ms),
            bounce_of,
            body,
        })
    }

    /// Defers the due mail of a dead lane to the end of its cool-off (no attempts).
    fn defer_dead_lane(
        &self,
        state: &mut State,
        lane_id: u16,
        until_ms: u64,
        now_ms: u64,
        records: &mut Vec<Record>,
    ) {
        let spread = state
            .lanes
            .get(usize::from(lane_id))
            .map_or(1, |l| l.health.cooloff_ms / 10 + 1);
        for _ in 0..DEAD_LANE_BATCH {
            let Some(lane) = state.lanes.get_mut(usize::from(lane_id)) else {
                return;
            };
            let Some(&(due, key)) = lane.due.first() else {
                return;
            };
            if due > now_ms {
                return;
            }
            lane.due.pop_first();
            let id = QueueId::from_u128(key);
            let Some(msg) = state.messages.get_mut(&id) else {
                continue;
            };
            if !msg.schedulable() {
                continue;
            }
            let due_idx: Vec<u16> = msg
                .rcpts
                .iter()
                .enumerate()
                .filter(|(_, r)| r.dest == lane_id && r.waiting() && r.next_ms <= now_ms)
                .filter_map(|(i, _)| u16::try_from(i).ok())
                .collect();
            if due_idx.is_empty() {
                continue;
            }
            if schedule::is_expired(msg.lifetime_from_ms, now_ms, self.retry().max_lifetime)
                && tried_before(msg, &due_idx)
            {
                let rec = self.expiry_outcome(id, msg, &due_idx, now_ms);
                apply_now(state, records, rec);
                continue;
            }
            let next = until_ms.saturating_add(schedule::mix64(key as u64) % spread);
            for idx in &due_idx {
                if let Some(r) = msg.rcpts.get_mut(usize::from(*idx)) {
                    r.next_ms = next;
                }
            }
            if let Some(lane) = state.lanes.get_mut(usize::from(lane_id)) {
                lane.due.insert((next, key));
            }
        }
    }

    /// The outcome that fails recipients of an expired message without an attempt.
    fn expiry_outcome(
        &self,
        id: QueueId,
        msg: &crate::state::Msg,
        idxs: &[u16],
        now_ms: u64,
    ) -> Record {
        let lifetime = ccgate_core::format_duration(self.retry().max_lifetime);
        let results = idxs
            .iter()
            .map(|idx| {
                let last = msg
                    .rcpts
                    .get(usize::from(*idx))
                    .and_then(|r| r.error.as_deref());
                let text = match last {
                    Some(e) => format!(
                        "message expired after {lifetime} in the queue; last error: {}",
                        e.text
                    ),
                    None => format!("message expired after {lifetime} in the queue"),
                };
                RcptResult {
                    idx: *idx,
                    kind: ResultKind::Failed,
                    attempted: false,
                    error: Some(ErrorRec {
                        severity: Severity::Permanent,
                        scope: FailureScope::Message,
                        status: Some(StatusCode::EXPIRED),
                        diagnostic: last.and_then(|e| e.diagnostic.clone()),
                        text: record::cap_text(&text),
                        at_ms: now_ms,
                    }),
                }
            })
            .collect();
        Record::Outcome {
            id,
            lease: 0,
            at_ms: now_ms,
            results,
        }
    }

    /// Reads a leased message's stored bytes (checksum verified).
    ///
    /// # Errors
    /// [`QueueError::CorruptBody`] if the stored body fails its checks; [`QueueError::Io`].
    ///
    /// A corrupt body is not an error that time mends: the message is set aside at once
    /// (quarantined with the reason, its attempt ended; `queue list` shows it, `queue show`
    /// still shows its envelope, `queue release` tries again), rather than retried until it
    /// expires and bounces.
    pub fn lease_body(&self, lease: &Lease) -> Result<Vec<u8>> {
        let read = recover::read_body(&self.shared.dirs, lease.queue_id, &lease.body);
        if let Err(e @ QueueError::CorruptBody { .. }) = &read {
            let now_ms = to_ms(crate::clock::now());
            let rec = Record::Crash {
                id: lease.queue_id,
                lease: lease.id.0,
                at_ms: now_ms,
                next_ms: now_ms,
                reason: record::cap_text(&e.to_string()),
                quarantine: true,
            };
            // Best effort: if it cannot be recorded, the attempt fails as before.
            if let Ok(ticket) = self.apply_and_push(&[rec]) {
                let _ = self.shared.wait(ticket);
            }
        }
        read
    }

    /// Records the results of an attempt, one per leased recipient (in the lease's order;
    /// a missing result counts as a transient failure). Returns once the results are durable.
    /// Permanent failures (and transient ones past `max_lifetime`) are bounced to the sender
    /// before this returns.
    ///
    /// A late completion (after the lease timed out) still records deliveries, so that mail
    /// already delivered is not delivered again; other late results are ignored.
    ///
    /// # Errors
    /// [`QueueError::Poisoned`] after a failed write.
    pub fn complete(
        &self,
        lease: Lease,
        results: &[DeliveryResult],
        now: SystemTime,
    ) -> Result<Completion> {
        let (mut completion, ticket) = {
            let mut state = lock(&self.shared.state);
            self.complete_locked(&mut state, &lease, results, to_ms(now))?
        };
        let Some(ticket) = ticket else {
            return Ok(completion);
        };
        self.shared.wait(ticket)?;
        self.bounce_if_owed(&lease, &mut completion, now)?;
        Ok(completion)
    }

    /// [`Spool::complete`] for the leases of a whole pass at once: their records are made
    /// under one lock and waited for with one fsync (the group commit without a thread per
    /// lease). One answer per lease, in order.
    ///
    /// # Errors
    /// [`QueueError::Poisoned`] after a failed write (for every lease not yet recorded).
    pub fn complete_all(
        &self,
        done: Vec<(Lease, Vec<DeliveryResult>)>,
        now: SystemTime,
    ) -> Vec<Result<Completion>> {
        let now_ms = to_ms(now);
        let mut made: Vec<(Lease, Result<Completion>)> = Vec::with_capacity(done.len());
        let mut last = None;
        {
            let mut state = lock(&self.shared.state);
            for (lease, results) in done {
                let made_one = self
                    .complete_locked(&mut state, &lease, &results, now_ms)
                    .map(|(completion, ticket)| {
                        last = last.max(ticket);
                        completion
                    });
                made.push((lease, made_one));
            }
        }
        let written = last.is_none_or(|ticket| self.shared.wait(ticket).is_ok());
        made.into_iter()
            .map(|(lease, made_one)| {
                let mut completion = made_one?;
                if !written && let Some(ticket) = last {
                    // Not durable: each lease gets the error (a failed spool stays failed).
                    self.shared.wait(ticket)?;
                }
                self.bounce_if_owed(&lease, &mut completion, now)?;
                Ok(completion)
            })
            .collect()
    }

    /// After the outcome is durable: the bounce a message now owes, if any.
    fn bounce_if_owed(
        &self,
        lease: &Lease,
        completion: &mut Completion,
        now: SystemTime,
    ) -> Result<()> {
        if !completion.finished {
            completion.bounce = self.send_bounce(lease.queue_id, now)?;
            if completion.bounce.is_some() {
                completion.finished = !lock(&self.shared.state)
                    .messages
                    .contains_key(&lease.queue_id);
            }
        }
        Ok(())
    }

    /// The records of one completion, applied and pushed under the state lock: the
    /// completion so far and the ticket to wait for (none when the message is gone).
    fn complete_locked(
        &self,
        state: &mut State,
        lease: &Lease,
        results: &[DeliveryResult],
        now_ms: u64,
    ) -> Result<(Completion, Option<u64>)> {
        let mut completion = Completion::default();
        {
            let late = !state.leases.contains_key(&lease.id.0);
            completion.late = late;
            let Some(msg) = state.messages.get(&lease.queue_id) else {
                // Deleted meanwhile: just free the slot.
                let abandon = Record::Abandon {
                    id: lease.queue_id,
                    lease: lease.id.0,
                };
                let seg = state.active_journal;
                state.apply(&abandon, seg, 0);
                completion.finished = true;
                return Ok((completion, None));
            };
            let mut out = Vec::with_capacity(lease.recipients.len());
            let mut destination_failure: Option<String> = None;
            let mut destination_answered = false;
            let missing = DeliveryError::transient(
                FailureScope::Message,
                "the delivery agent reported no result",
            );
            for (i, leased) in lease.recipients.iter().enumerate() {
                let result = results.get(i).cloned().unwrap_or(Err(missing.clone()));
                let Some(r) = msg.rcpts.get(usize::from(leased.index)) else {
                    continue;
                };
                if r.state.is_final() || (late && result.is_err()) {
                    continue;
                }
                let error = |e: &DeliveryError, text: String| ErrorRec {
                    severity: e.severity(),
                    scope: e.scope(),
                    status: Some(e.effective_status()),
                    diagnostic: e.diagnostic().map(record::cap_text),
                    text: record::cap_text(&text),
                    at_ms: now_ms,
                };
                let (kind, err) = match &result {
                    Ok(()) => {
                        destination_answered = true;
                        (ResultKind::Delivered, None)
                    }
                    Err(e) => {
                        if e.scope() == FailureScope::Destination && e.is_transient() {
                            destination_failure = Some(e.text().to_owned());
                        } else {
                            destination_answered = true;
                        }
                        if e.is_permanent() {
                            (ResultKind::Failed, Some(error(e, e.text().to_owned())))
                        } else if schedule::is_expired(
                            msg.lifetime_from_ms,
                            now_ms,
                            self.retry().max_lifetime,
                        ) {
                            let text = format!(
                                "message expired after {} in the queue; last error: {}",
                                ccgate_core::format_duration(self.retry().max_lifetime),
                                e.text()
                            );
                            (ResultKind::Failed, Some(error(e, text)))
                        } else {
                            let failures = u32::from(r.attempts) + 1;
                            let next_ms = schedule::next_attempt_ms(
                                now_ms,
                                msg.lifetime_from_ms,
                                &self.retry(),
                                failures,
                                jitter_seed(lease.queue_id, leased.index, failures),
                            );
                            (
                                ResultKind::Deferred { next_ms },
                                Some(error(e, e.text().to_owned())),
                            )
                        }
                    }
                };
                out.push(RcptResult {
                    idx: leased.index,
                    kind,
                    attempted: true,
                    error: err,
                });
            }
            let mut records = vec![Record::Outcome {
                id: lease.queue_id,
                lease: if late { 0 } else { lease.id.0 },
                at_ms: now_ms,
                results: out,
            }];
            if !late
                && let Some(lane_id) = state.find_lane(&lease.lane)
                && let Some(l) = state.lanes.get_mut(usize::from(lane_id))
            {
                if destination_answered {
                    if l.health.on_success() {
                        records.push(Record::Lane {
                            name: lease.lane.clone(),
                            at_ms: now_ms,
                            dead_until_ms: 0,
                            reason: String::new(),
                        });
                    }
                } else if let Some(e) = destination_failure
                    && let Some(until) = l.health.on_failure(now_ms, &self.options.dead)
                {
                    records.push(Record::Lane {
                        name: lease.lane.clone(),
                        at_ms: now_ms,
                        dead_until_ms: until,
                        reason: record::cap_text(&e),
                    });
                }
            }
            let ticket = self.apply_and_push_locked(state, &records)?;
            completion.finished = !state.messages.contains_key(&lease.queue_id);
            Ok((completion, Some(ticket)))
        }
    }

    /// Renews a lease before its delivery starts: its deadline becomes `now` plus the attempt
    /// timeout. Returns false if the lease has already timed out (its recipients were given
    /// back to the queue and may be in another attempt): then the caller must not deliver.
    /// An agent that takes several leases at once calls this before each delivery, so a lease
    /// never times out while it waits its turn.
    pub fn renew(&self, lease: &mut Lease, now: SystemTime) -> bool {
        let mut state = lock(&self.shared.state);
        let Some(slot) = state.leases.get_mut(&lease.id.0) else {
            return false;
        };
        let deadline_ms = to_ms(now).saturating_add(duration_ms(self.options.attempt_timeout));
        slot.deadline_ms = slot.deadline_ms.max(deadline_ms);
        lease.deadline = from_ms(slot.deadline_ms);
        true
    }

    /// Gives a lease back unfinished (clean shutdown): no attempt is counted and the
    /// recipients are due again at once.
    ///
    /// # Errors
    /// [`QueueError::Poisoned`] after a failed write.
    pub fn abandon(&self, lease: Lease) -> Result<()> {
        let ticket = self.apply_and_push(&[Record::Abandon {
            id: lease.queue_id,
            lease: lease.id.0,
        }])?;
        self.shared.wait(ticket)
    }

    /// Builds and queues the bounce a message owes, if any; returns its id.
    fn send_bounce(&self, id: QueueId, now: SystemTime) -> Result<Option<QueueId>> {
        let now_ms = to_ms(now);
        let (sender, arrival_ms, body, idxs, recipients, earlier_bounce) = {
            let mut state = lock(&self.shared.state);
            let Some(msg) = state.messages.get_mut(&id) else {
                return Ok(None);
            };
            if msg.sender.is_empty() {
                return Ok(None);
            }
            // One bounce per message: recipients already reported, or being reported by
            // another thread building its bounce right now, mean one was sent.
            let earlier_bounce = msg
                .rcpts
                .iter()
                .any(|r| r.flags & (crate::state::BOUNCED | BOUNCE_QUEUED | BOUNCE_BUILDING) != 0);
            let mut idxs = Vec::new();
            let mut recipients = Vec::new();
            for (i, r) in msg.rcpts.iter_mut().enumerate() {
                if r.state != RcptState::Failed
                    || r.flags & (crate::state::BOUNCED | BOUNCE_QUEUED | BOUNCE_BUILDING) != 0
                {
                    continue;
                }
                let Ok(idx) = u16::try_from(i) else { continue };
                r.flags |= BOUNCE_BUILDING;
                idxs.push(idx);
                let e = r.error.as_deref();
                recipients.push(DsnRecipient {
                    final_recipient: r.addr.to_string(),
                    original_recipient: r.orig.as_deref().map(str::to_owned),
                    status: e.and_then(|e| e.status).unwrap_or(StatusCode::PERMANENT),
                    diagnostic: e.and_then(|e| e.diagnostic.clone()),
                    reason: e.map_or_else(|| "delivery failed".to_owned(), |e| e.text.clone()),
                    last_attempt_ms: e.map(|e| e.at_ms),
                });
            }
            if idxs.is_empty() {
                return Ok(None);
            }
            (
                msg.sender.to_string(),
                msg.arrival_ms,
                msg.body,
                idxs,
                recipients,
                earlier_bounce,
            )
        };
        // Read the original headers outside the lock. An unreadable body still gets a bounce.
        let original = recover::read_body(&self.shared.dirs, id, &body).unwrap_or_default();
        let headers = bounce::header_section(&original);
        let suppressed = bounce::suppression(&sender, headers, earlier_bounce);
        let mut dsn = bounce::build_dsn(&DsnInput {
            reporting_mta: &self.options.reporting_mta,
            queue_id: id,
            to: &sender,
            arrival_ms,
            now_ms,
            recipients: &recipients,
            original_headers: headers,
        });
        // A bounce that must not be sent (backscatter, loops) is still queued, so the recipients
        // it reports on are settled as usual, but straight into the `suppressed` lane with the
        // reason on top: its agent fails it at once, and the log and the listing say why.
        if let Some(reason) = &suppressed {
            let mut marked = format!("{}: {reason}\r\n", bounce::SUPPRESSED_HEADER).into_bytes();
            marked.append(&mut dsn);
            dsn = marked;
        }
        let rec = MessageRec {
            id: QueueId::from_u128(0),
            arrival_ms: now_ms,
            body: BodyRef {
                crc: crc32fast::hash(&dsn),
                ..BodyRef::default()
            },
            sender: String::new(),
            needs_routing: suppressed.is_none(),
            crashes: 0,
            quarantine: None,
            bounce_for: Some((id, idxs.clone())),
            rcpts: vec![RcptRec {
                addr: sender,
                orig: None,
                dest: if suppressed.is_some() {
                    Lane::Suppressed.into()
                } else {
                    String::new()
                },
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
        let (bounce_id, ticket) = self.push_message(
            None,
            rec,
            vec![BodyPart::Bytes(Bytes::from(dsn))],
            Some((id, &idxs)),
        )?;
        self.shared.wait(ticket)?;
        Ok(Some(bounce_id))
    }

    /// True while the spool takes new mail ([`Spool::status`] is `Accepting`): the readiness
    /// probe.
    pub fn is_healthy(&self) -> bool {
        self.status() == SpoolStatus::Accepting
    }

    /// Messages waiting for the router (bounces, requeued mail), at most `max`.
    pub fn unrouted(&self, max: usize) -> Vec<Unrouted> {
        let state = lock(&self.shared.state);
        let mut out = Vec::new();
        for id in state.unrouted.iter().take(max) {
            let Some(msg) = state.messages.get(id) else {
                continue;
            };
            let Ok(sender) = msg.sender.parse::<ReversePath>() else {
                continue;
            };
            let recipients = msg
                .rcpts
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.state.is_final())
                .filter_map(|(i, r)| {
                    let addr = r.orig.as_deref().unwrap_or(&r.addr);
                    Some((u16::try_from(i).ok()?, addr.parse().ok()?))
                })
                .collect();
            out.push(Unrouted {
                queue_id: *id,
                sender,
                recipients,
            });
        }
        out
    }

    /// Sets new routes for a message's unfinished recipients (the router's answer to
    /// [`Spool::unrouted`]) and makes them due now. Returns once durable.
    ///
    /// # Errors
    /// [`QueueError::NotFound`] if the message is gone; [`QueueError::Poisoned`].
    pub fn route(&self, id: QueueId, routes: &[(u16, Route)], now: SystemTime) -> Result<()> {
        let record = Record::Route {
            id,
            at_ms: to_ms(now),
            routes: routes
                .iter()
                .map(|(idx, r)| RouteRec {
                    idx: *idx,
                    addr: r.deliver_to.to_string(),
                    dest: r.destination.clone(),
                    hold: r.hold,
                })
                .collect(),
        };
        let ticket = {
            let mut state = lock(&self.shared.state);
            if !state.messages.contains_key(&id) {
                return Err(QueueError::NotFound { id });
            }
            self.apply_and_push_locked(&mut state, &[record])?
        };
        self.shared.wait(ticket)?;
        self.wakers.wake(
            routes
                .iter()
                .filter(|(_, r)| !r.hold)
                .map(|(_, r)| r.destination.as_str()),
        );
        Ok(())
    }

    /// Carries out an administrator's request (hold, release, retry, delete, requeue).
    /// Returns once the changes are durable.
    ///
    /// `retry` also ends the cool-off of the dead lanes involved: an administrator retries
    /// because the destination is back.
    ///
    /// # Errors
    /// [`QueueError::Poisoned`] after a failed write.
    pub fn admin(&self, request: &AdminRequest, now: SystemTime) -> Result<AdminReport> {
        let now_ms = to_ms(now);
        let (ids, bad) = crate::admin::parse_ids(&request.ids);
        let mut report = AdminReport {
            not_found: bad,
            ..AdminReport::default()
        };
        let ticket = {
            let mut state = lock(&self.shared.state);
            let mut targets = Vec::new();
            for id in ids {
                if state.messages.contains_key(&id) {
                    targets.push(id);
                } else {
                    report.not_found.push(id.to_string());
                }
            }
            if request.all {
                state.for_each_match(&request.filter, now_ms, |id, _| targets.push(id));
            }
            targets.sort_unstable();
            targets.dedup();
            let mut records = Vec::with_capacity(targets.len());
            let mut revive: Vec<u16> = Vec::new();
            for id in &targets {
                if request.action == AdminAction::Retry
                    && let Some(msg) = state.messages.get(id)
                {
                    for r in msg.rcpts.iter().filter(|r| r.waiting()) {
                        if !revive.contains(&r.dest) {
                            revive.push(r.dest);
                        }
                    }
                }
                records.push(Record::Admin {
                    id: *id,
                    at_ms: now_ms,
                    action: request.action,
                });
                report.affected.push(id.to_string());
            }
            for lane in revive {
                let dead = state
                    .lanes
                    .get(usize::from(lane))
                    .is_some_and(|l| l.health.dead_until_ms != 0);
                if dead {
                    records.push(Record::Lane {
                        name: state.lane_name(lane).to_owned(),
                        at_ms: now_ms,
                        dead_until_ms: 0,
                        reason: String::new(),
                    });
                }
            }
            if records.is_empty() {
                return Ok(report);
            }
            self.apply_and_push_locked(&mut state, &records)?
        };
        self.shared.wait(ticket)?;
        Ok(report)
    }

    /// Periodic housekeeping; call about once a second. It:
    /// - times out attempts past their deadline (a crash for the message; quarantine after
    ///   `quarantine_after`);
    /// - carries out admin requests left in `control/` by other processes;
    /// - queues owed bounces (expired mail, restarts);
    /// - removes data segments no message uses and compacts the journal.
    ///
    /// # Errors
    /// [`QueueError::Poisoned`] after a failed write; [`QueueError::Io`].
    pub fn tick(&self, now: SystemTime) -> Result<TickReport> {
        self.shared.check()?;
        if self.shared.check_writing().is_err() {
            // Writes fail for now (a full disk): housekeeping waits for the writer to resume.
            return Ok(TickReport::default());
        }
        let now_ms = to_ms(now);
        let mut report = TickReport::default();

        // 1. Hung attempts.
        let ticket = {
            let mut state = lock(&self.shared.state);
            let mut expired: Vec<(u64, QueueId)> = state
                .leases
                .iter()
                .filter(|(_, l)| l.deadline_ms <= now_ms)
                .map(|(n, l)| (*n, l.id))
                .collect();
            expired.sort_unstable();
            let mut records = Vec::new();
            for (lease, id) in expired {
                let Some(msg) = state.messages.get(&id) else {
                    state.apply(&Record::Abandon { id, lease }, 0, 0);
                    continue;
                };
                let failures = msg
                    .rcpts
                    .iter()
                    .filter(|r| r.lease == lease)
                    .map(|r| u32::from(r.attempts) + 1)
                    .max()
                    .unwrap_or(1);
                let quarantine = u32::from(msg.crashes) + 1 >= self.options.quarantine_after;
                let reason = format!(
                    "delivery attempt did not finish within {}",
                    ccgate_core::format_duration(self.options.attempt_timeout)
                );
                report.timed_out.push(id);
                if quarantine {
                    report.quarantined.push(id);
                }
                records.push(Record::Crash {
                    id,
                    lease,
                    at_ms: now_ms,
                    next_ms: schedule::next_attempt_ms(
                        now_ms,
                        msg.lifetime_from_ms,
                        &self.retry(),
                        failures,
                        jitter_seed(id, 0, failures),
                    ),
                    reason,
                    quarantine,
                });
            }
            if records.is_empty() {
                None
            } else {
                Some(self.apply_and_push_locked(&mut state, &records)?)
            }
        };
        if let Some(ticket) = ticket {
            self.shared.wait(ticket)?;
        }

        // 2. Requests from `ccgate queue ...` while we own the spool.
        report.control_requests = control::process(self, now)?;

        // 3. Owed bounces.
        let owed: Vec<QueueId> = lock(&self.shared.state)
            .owed
            .iter()
            .take(BOUNCES_PER_TICK)
            .copied()
            .collect();
        for id in owed {
            if let Some(b) = self.send_bounce(id, now)? {
                report.bounces.push(b);
            }
        }

        // 4. Clean-up.
        report.removed_data_segments = self.remove_unused_data_segments()?;
        report.compacted_segments = self.compact()?;
        Ok(report)
    }

    fn remove_unused_data_segments(&self) -> Result<usize> {
        let candidates: Vec<u32> = {
            let state = lock(&self.shared.state);
            state
                .data_live
                .iter()
                .filter(|(seq, n)| **n == 0 && **seq != state.active_data)
                .map(|(seq, _)| *seq)
                .collect()
        };
        if candidates.is_empty() {
            return Ok(0);
        }
        // The records that emptied these segments must be durable before the bodies go.
        self.shared.wait(self.shared.last_ticket())?;
        let dirs = &self.shared.dirs;
        let mut removed = 0;
        for seq in candidates {
            let still_unused = {
                let mut state = lock(&self.shared.state);
                let unused = state.data_live.get(&seq) == Some(&0) && seq != state.active_data;
                if unused {
                    state.data_live.remove(&seq);
                }
                unused
            };
            if still_unused {
                let path = dirs.data_path(seq);
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).at(&path),
                }
            }
        }
        if removed > 0 {
            store::sync_dir(&dirs.data)?;
        }
        Ok(removed)
    }

    /// Rewrites the live messages of the oldest journal segment as snapshots at the end of
    /// the journal, then removes that segment. Runs when the journal holds more than twice
    /// the live records (plus two segments of slack), so its cost stays proportional to
    /// what it frees.
    fn compact(&self) -> Result<usize> {
        let (oldest, ids) = {
            let state = lock(&self.shared.state);
            let total: u64 = state.journal_sizes.values().sum();
            let slack = self.options.journal_segment_bytes.saturating_mul(2);
            let Some((&oldest, _)) = state.journal_sizes.first_key_value() else {
                return Ok(0);
            };
            if oldest >= state.active_journal
                || total
                    <= state
                        .live_record_bytes
                        .saturating_mul(2)
                        .saturating_add(slack)
            {
                return Ok(0);
            }
            let ids: Vec<QueueId> = state
                .messages
                .iter()
                .filter(|(_, m)| m.first_seg <= oldest)
                .map(|(id, _)| *id)
                .collect();
            (oldest, ids)
        };
        let mut last_ticket = None;
        for chunk in ids.chunks(COMPACTION_CHUNK) {
            let state = lock(&self.shared.state);
            let mut bytes = Vec::new();
            let mut snapshots = Vec::new();
            for id in chunk {
                if let Some(rec) = state.snapshot(*id) {
                    let start = bytes.len();
                    Record::Snapshot(rec).encode_frame(&mut bytes);
                    snapshots.push((*id, u32::try_from(bytes.len() - start).unwrap_or(u32::MAX)));
                }
            }
            last_ticket = Some(self.shared.push(Request::Records { bytes, snapshots })?);
        }
        {
            // Lanes still cooling off keep their state across the removal.
            let state = lock(&self.shared.state);
            let mut bytes = Vec::new();
            for lane in &state.lanes {
                if lane.health.dead_until_ms != 0 {
                    Record::Lane {
                        name: lane.name.to_string(),
                        at_ms: lane
                            .health
                            .dead_until_ms
                            .saturating_sub(lane.health.cooloff_ms),
                        dead_until_ms: lane.health.dead_until_ms,
                        reason: lane.reason.as_deref().unwrap_or_default().to_owned(),
                    }
                    .encode_frame(&mut bytes);
                }
            }
            if !bytes.is_empty() {
                last_ticket = Some(self.shared.push(Request::Records {
                    bytes,
                    snapshots: Vec::new(),
                })?);
            }
        }
        if let Some(t) = last_ticket {
            self.shared.wait(t)?;
        }
        let doomed: Vec<u32> = {
            let mut state = lock(&self.shared.state);
            if state.messages.values().any(|m| m.first_seg <= oldest) {
                return Ok(0);
            }
            let doomed: Vec<u32> = state
                .journal_sizes
                .range(..=oldest)
                .map(|(s, _)| *s)
                .collect();
            for s in &doomed {
                state.journal_sizes.remove(s);
            }
            doomed
        };
        for seq in &doomed {
            let path = self.shared.dirs.journal_path(*seq);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        store::sync_dir(&self.shared.dirs.journal)?;
        Ok(doomed.len())
    }

    /// Messages in the queue.
    pub fn len(&self) -> usize {
        lock(&self.shared.state).messages.len()
    }

    /// The ledger keys of the queued messages ([`Spool::enqueue_keyed`]): a caller opening its
    /// ledger adds those it lacks, which a crash kept it from writing.
    pub fn origins(&self) -> Vec<String> {
        let state = lock(&self.shared.state);
        state
            .messages
            .values()
            .flat_map(|msg| msg.origins().iter().map(|o| o.to_string()))
            .collect()
    }

    /// True when the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Listing entries of the messages matching `filter`, oldest first.
    pub fn list(&self, filter: &Filter, now: SystemTime) -> Vec<MessageInfo> {
        let now_ms = to_ms(now);
        let state = lock(&self.shared.state);
        let mut out = Vec::new();
        state.for_each_match(filter, now_ms, |id, msg| {
            out.push(state.info(id, msg, now_ms))
        });
        out
    }

    /// The qshape table.
    pub fn summary(&self, now: SystemTime) -> Summary {
        lock(&self.shared.state).summary(to_ms(now))
    }

    /// One message: listing entry, history from the journal, stored bytes.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::Io`] reading it (a corrupt body is said in
    /// [`MessageDetail::body_error`]).
    pub fn show(&self, id: QueueId, now: SystemTime) -> Result<MessageDetail> {
        let now_ms = to_ms(now);
        let (info, body) = {
            let state = lock(&self.shared.state);
            let msg = state.messages.get(&id).ok_or(QueueError::NotFound { id })?;
            (state.info(id, msg, now_ms), msg.body)
        };
        detail(&self.shared.dirs, id, info, &body)
    }

    /// Messages by state and unfinished recipients by destination and state.
    pub fn depth(&self, now: SystemTime) -> Depth {
        lock(&self.shared.state).depth(to_ms(now))
    }

    /// The lanes known so far.
    pub fn lanes(&self, now: SystemTime) -> Vec<LaneInfo> {
        let now_ms = to_ms(now);
        lock(&self.shared.state)
            .lanes
            .iter()
            .filter(|l| !l.name.is_empty())
            .map(|l| LaneInfo {
                name: l.name.to_string(),
                limit: l.limit,
                in_flight: l.inflight,
                status: l.health.status(now_ms),
            })
            .collect()
    }

    /// When the earliest waiting recipient of `lane` is due (it may be a stale estimate that
    /// [`Spool::lease`] corrects), for the server's sleep.
    pub fn next_due(&self, lane: &str) -> Option<SystemTime> {
        let state = lock(&self.shared.state);
        let lane = state.lanes.get(usize::from(state.find_lane(lane)?))?;
        let first = lane.due.first().map(|(due, _)| *due)?;
        Some(from_ms(match lane.health.status(first) {
            LaneStatus::Dead { until_ms } => until_ms.max(first),
            LaneStatus::Alive | LaneStatus::Probing => first,
        }))
    }

    /// Waits for everything written so far, stops the writer and releases the spool.
    ///
    /// # Errors
    /// [`QueueError::Poisoned`] if a write had failed.
    pub fn close(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        self.shared.shutdown();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        // Still failing at the end: what was not written is reported, not hidden.
        self.shared.check_writing()
    }

    /// The folder layout (for the control protocol).
    pub(crate) fn dirs(&self) -> &Dirs {
        &self.shared.dirs
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Encodes a record, refusing one larger than recovery accepts.
fn encode_checked(rec: &Record, out: &mut Vec<u8>) -> Result<()> {
    rec.try_encode_frame(out)
        .map_err(|size| QueueError::TooLarge {
            what: "journal record",
            size,
            max: record::MAX_RECORD_LEN as u64,
        })
}

/// Applies a record and keeps it for the writer.
fn apply_now(state: &mut State, records: &mut Vec<Record>, record: Record) {
    let seg = state.active_journal;
    state.apply(&record, seg, 0);
    records.push(record);
}

/// Builds a [`MessageDetail`] from the journal and the data segment.
pub(crate) fn detail(
    dirs: &Dirs,
    id: QueueId,
    info: MessageInfo,
    body: &BodyRef,
) -> Result<MessageDetail> {
    let history: Vec<HistoryEntry> = recover::history(dirs, id)?
        .iter()
        .filter_map(|r| crate::admin::describe(r, id))
        .collect();
    let (body, body_error) = match recover::read_body(dirs, id, body) {
        Ok(body) => (body, None),
        Err(e @ QueueError::CorruptBody { .. }) => (Vec::new(), Some(e.to_string())),
        Err(e) => return Err(e),
    };
    Ok(MessageDetail {
        info,
        history,
        body,
        body_error,
    })
}

fn check_options(o: &SpoolOptions) -> Result<()> {
    let bad = |name, reason| Err(QueueError::InvalidOption { name, reason });
    if o.quarantine_after == 0 {
        return bad("quarantine_after", "must be at least 1");
    }
    if o.attempt_timeout.is_zero() {
        return bad("attempt_timeout", "must be positive");
    }
    if o.journal_segment_bytes < 4096 || o.data_segment_bytes < 4096 {
        return bad("segment size", "must be at least 4096 bytes");
    }
    if o.default_concurrency == 0 || o.lanes.values().any(|n| *n == 0) {
        return bad("concurrency", "must be at least 1");
    }
    Ok(())
}

fn check_size(what: &'static str, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(QueueError::TooLarge { what, size, max });
    }
    Ok(())
}

/// The spool folder inside a data directory (`<data_dir>/queue`).
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("queue")
}

/// True when every recipient in `idxs` has had at least one attempt.
fn tried_before(msg: &crate::state::Msg, idxs: &[u16]) -> bool {
    idxs.iter().all(|i| {
        msg.rcpts
            .get(usize::from(*i))
            .is_some_and(|r| r.attempts > 0)
    })
}

/// The lanes a new message's routes make work for now (not held).
fn due_lanes(routes: &[Route]) -> impl Iterator<Item = &str> + Clone {
    routes
        .iter()
        .filter(|r| !r.hold)
        .map(|r| r.destination.as_str())
}
