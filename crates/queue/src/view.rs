//! Read-only views of a spool, for `ccgate queue list|show|summary`: they work whether or not
//! `ccgate run` owns the spool, without its lock and without changing anything.
//!
//! A view replays the journal like recovery does. The owner appends while the view reads: a
//! record cut short at the very end is taken as "being written" and left out; a segment
//! removed by compaction after the view listed it is skipped (its live messages were
//! rewritten into a later segment before it was removed); when the owner moves on to a new
//! segment during the read, the view goes round again. The view is thus a consistent picture
//! of the queue as of some moment during the read.

use std::path::Path;
use std::time::SystemTime;

use ccgate_core::QueueId;

use crate::admin::{Depth, Filter, MessageDetail, MessageInfo, Summary};
use crate::error::{QueueError, Result};
use crate::recover::{self, Mode, RecoveryReport};
use crate::schedule::to_ms;
use crate::state::{LaneLimits, State};
use crate::store::Dirs;

/// A read-only picture of a spool.
#[derive(Debug)]
pub struct QueueView {
    dirs: Dirs,
    state: State,
    report: RecoveryReport,
}

impl QueueView {
    /// Reads the spool in `dir` (an absent folder is an empty queue).
    ///
    /// # Errors
    /// [`QueueError::Io`] if the journal cannot be read.
    pub fn open(dir: &Path) -> Result<Self> {
        let dirs = Dirs::new(dir);
        let limits = LaneLimits {
            default: 1,
            ..LaneLimits::default()
        };
        let (state, mut report, _) = recover::replay(&dirs, limits, Mode::Reader)?;
        report.messages = state.messages.len();
        Ok(Self {
            dirs,
            state,
            report,
        })
    }

    /// What the read found (torn or corrupt records not yet cleaned up by the owner, ...).
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Messages in the queue.
    pub fn len(&self) -> usize {
        self.state.messages.len()
    }

    /// True when the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.state.messages.is_empty()
    }

    /// Calls `f` with the listing entry of every message matching `filter`, oldest first.
    pub fn for_each(&self, filter: &Filter, now: SystemTime, mut f: impl FnMut(MessageInfo)) {
        let now_ms = to_ms(now);
        self.state.for_each_match(filter, now_ms, |id, msg| {
            f(self.state.info(id, msg, now_ms));
        });
    }

    /// Listing entries of the messages matching `filter`, oldest first.
    pub fn list(&self, filter: &Filter, now: SystemTime) -> Vec<MessageInfo> {
        let mut out = Vec::new();
        self.for_each(filter, now, |m| out.push(m));
        out
    }

    /// Ids of the messages matching `filter`.
    pub fn ids(&self, filter: &Filter, now: SystemTime) -> Vec<QueueId> {
        let mut out = Vec::new();
        self.state
            .for_each_match(filter, to_ms(now), |id, _| out.push(id));
        out
    }

    /// Messages by state and unfinished recipients by destination and state.
    pub fn depth(&self, now: SystemTime) -> Depth {
        self.state.depth(to_ms(now))
    }

    /// The qshape table.
    pub fn summary(&self, now: SystemTime) -> Summary {
        self.state.summary(to_ms(now))
    }

    /// One message: listing entry, history from the journal, stored bytes.
    ///
    /// # Errors
    /// [`QueueError::NotFound`]; [`QueueError::Io`] or [`QueueError::CorruptBody`] reading it.
    pub fn show(&self, id: QueueId, now: SystemTime) -> Result<MessageDetail> {
        let msg = self
            .state
            .messages
            .get(&id)
            .ok_or(QueueError::NotFound { id })?;
        let info = self.state.info(id, msg, to_ms(now));
        crate::spool::detail(&self.dirs, id, info, &msg.body)
    }
}
