//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

use ccgate_core::QueueId;

/// What went wrong in the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A file or folder of the spool could not be read, written, synced or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Another process owns the spool (its lock file is held).
    #[error("{}: the spool is owned by another process (is `ccgate run` running?)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A message body failed its checksum or framing check when read back.
    #[error("queue id {id}: stored body in {} at offset {offset} is corrupt: {reason}", path.display())]
    CorruptBody {
        /// The message.
        id: QueueId,
        /// The data segment.
        path: PathBuf,
        /// Where its frame starts.
        offset: u64,
        /// What check failed.
        reason: &'static str,
    },
    /// No message with this id is in the spool.
    #[error("queue id {id}: not in the queue")]
    NotFound {
        /// The id asked for.
        id: QueueId,
    },
    /// `enqueue` was given a different number of routes than the envelope has recipients.
    #[error("{routes} routes for {recipients} recipients")]
    RouteMismatch {
        /// Routes given.
        routes: usize,
        /// Recipients in the envelope.
        recipients: usize,
    },
    /// `enqueue` was given an envelope without recipients.
    #[error("a message needs at least one recipient")]
    NoRecipients,
    /// A message, an address or a recipient list is larger than the spool stores.
    #[error("{what} is too large ({size} bytes, at most {max})")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A write or fsync failed earlier; nothing more is written until the spool is reopened,
    /// because what reached the disk is unknown (the "fsyncgate" lesson).
    #[error("the spool stopped after a failed write; reopen it to recover: {reason}")]
    Poisoned {
        /// The first failure.
        reason: String,
        /// Whether it was the file system running out of space (ENOSPC or EDQUOT), which an
        /// SMTP server answers with 452 4.3.1 rather than 451 4.3.0.
        disk_full: bool,
    },
    /// The spool is not taking new mail right now: its file system is below `min_free`, or a
    /// write failed (and was rolled back) and the writer is retrying. Clears by itself.
    #[error("the spool is not taking new mail for now: {reason}")]
    NotAccepting {
        /// Why.
        reason: String,
        /// Whether it is about space (452 4.3.1 rather than 451 4.3.0).
        disk_full: bool,
    },
    /// [`crate::Spool::enqueue_with_id`] was given an id already in the queue.
    #[error("queue id {id} is already in the queue")]
    DuplicateId {
        /// The id.
        id: QueueId,
    },
    /// A control request file could not be understood.
    #[error("{}: invalid control request: {reason}", path.display())]
    BadControl {
        /// The request file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The running owner did not answer an admin request in time (it stays queued).
    #[error("{}: no answer from the running ccgate within {waited:?}; the request stays queued and will be carried out when it polls again", path.display())]
    NoAnswer {
        /// The request file.
        path: PathBuf,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// A spool option is out of range.
    #[error("invalid spool option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// This crate's result type.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`QueueError::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| QueueError::Io {
            path: path.into(),
            source,
        })
    }
}

impl QueueError {
    /// True when the error comes from a full file system (or quota): the condition an SMTP
    /// server reports as `452 4.3.1` and that clears by itself once space is freed.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Poisoned { disk_full, .. } | Self::NotAccepting { disk_full, .. } => *disk_full,
            Self::Io { source, .. } => is_disk_full_io(source),
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_disk_full_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
