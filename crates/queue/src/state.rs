//! The in-memory queue: messages, per-recipient state, lanes and the due-work index.
//!
//! [`State::apply`] is the one state transition function. Recovery replays the journal through
//! it, read-only views (`queue list` while `ccgate run` runs) replay it the same way, and the
//! live spool applies each record it appends, so what a restart rebuilds is exactly what was
//! in memory. Decisions (retry when, quarantine or not) are made before a record is written and
//! carried in it; `apply` only follows them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ccgate_core::QueueId;

use crate::outcome::{FailureScope, Severity};
use crate::record::{
    AdminAction, BodyRef, ErrorRec, MessageRec, RcptRec, RcptState, Record, ResultKind,
};
use crate::schedule::LaneHealth;

/// Recipient flag: a bounce reporting this failure is in the journal.
pub(crate) const BOUNCED: u8 = 1;
/// Recipient flag: a bounce reporting this failure has been handed to the writer.
pub(crate) const BOUNCE_QUEUED: u8 = 2;
/// Recipient flag: a bounce reporting this failure is being built (in memory only).
pub(crate) const BOUNCE_BUILDING: u8 = 4;

/// One queued message.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub arrival_ms: u64,
    /// Where `[queue] max_lifetime` counts from: the arrival, or later the moment a recipient
    /// left the cutover lane (time held for a migrating user never counts: "never bounce").
    /// Derived from the records, so recovery gives it again.
    pub lifetime_from_ms: u64,
    pub body: BodyRef,
    /// "" for the null sender.
    pub sender: Box<str>,
    pub rcpts: Box<[Rcpt]>,
    pub crashes: u16,
    pub needs_routing: bool,
    /// Oldest journal segment holding a record this message's state depends on.
    pub first_seg: u32,
    /// Size of that record (for the compaction estimate).
    pub rec_len: u32,
    pub extra: Option<Box<Extra>>,
}

/// Rarely set fields, boxed to keep [`Msg`] small.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    pub quarantine: Option<Box<str>>,
    pub bounce_for: Option<(QueueId, Box<[u16]>)>,
    /// The ledger keys the message fulfils ([`MessageRec::origins`]).
    pub origins: Box<[Box<str>]>,
}

impl Msg {
    pub fn quarantine(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.quarantine.as_deref())
    }

    /// The ledger keys the message fulfils (empty for most).
    pub fn origins(&self) -> &[Box<str>] {
        self.extra.as_ref().map_or(&[], |e| &e.origins)
    }

    pub fn bounce_for(&self) -> Option<QueueId> {
        self.extra
            .as_ref()
            .and_then(|e| e.bounce_for.as_ref().map(|(id, _)| *id))
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn set_quarantine(&mut self, reason: Option<&str>) {
        match reason {
            Some(r) => self.extra_mut().quarantine = Some(r.into()),
            None => {
                if let Some(extra) = &mut self.extra {
                    extra.quarantine = None;
                }
            }
        }
    }

    /// True when the sender is owed a bounce for a failed recipient not yet reported.
    pub fn owes_bounce(&self) -> bool {
        !self.sender.is_empty()
            && self
                .rcpts
                .iter()
                .any(|r| r.state == RcptState::Failed && r.flags & (BOUNCED | BOUNCE_QUEUED) == 0)
    }

    /// May this message's recipients be handed out at all?
    pub fn schedulable(&self) -> bool {
        !self.needs_routing && self.quarantine().is_none()
    }
}

/// One recipient of a queued message.
#[derive(Debug, Clone)]
pub(crate) struct Rcpt {
    pub addr: Box<str>,
    pub orig: Option<Box<str>>,
    pub next_ms: u64,
    /// The lease of an attempt in flight, 0 if none.
    pub lease: u64,
    pub error: Option<Box<ErrorRec>>,
    pub dest: u16,
    pub attempts: u16,
    pub state: RcptState,
    pub flags: u8,
}

impl Rcpt {
    /// Waiting for an attempt (not held, not final, not in flight).
    pub fn waiting(&self) -> bool {
        matches!(self.state, RcptState::Pending | RcptState::Deferred) && self.lease == 0
    }
}

/// A destination lane.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    pub name: Box<str>,
    pub limit: u32,
    pub inflight: u32,
    pub health: LaneHealth,
    pub reason: Option<Box<str>>,
    /// (due time, queue id) of messages with recipients waiting in this lane. Entries may be
    /// stale; they are checked when popped.
    pub due: BTreeSet<(u64, u128)>,
}

/// An attempt in flight (live spool only).
#[derive(Debug, Clone)]
pub(crate) struct LeaseInfo {
    pub id: QueueId,
    pub lane: u16,
    pub deadline_ms: u64,
}

/// Concurrency limits per lane name.
#[derive(Debug, Clone, Default)]
pub(crate) struct LaneLimits {
    pub limits: HashMap<String, u32>,
    pub default: u32,
}

/// What applying a record did, for the caller's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Applied.
    Ok,
    /// The record names a message that is not (or no longer) queued: ignored.
    Unknown,
    /// An enqueue record for an id already queued: ignored.
    Duplicate,
}

/// The whole queue in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub messages: BTreeMap<QueueId, Msg>,
    pub lanes: Vec<Lane>,
    lane_ids: HashMap<Box<str>, u16>,
    limits: LaneLimits,
    /// Messages owing a bounce.
    pub owed: BTreeSet<QueueId>,
    /// Messages marked for (re-)routing.
    pub unrouted: BTreeSet<QueueId>,
    /// Live messages per data segment.
    pub data_live: BTreeMap<u32, u32>,
    /// Attempts in flight (live spool only).
    pub leases: HashMap<u64, LeaseInfo>,
    /// Keep the due index up to date (off while replaying; built once at the end).
    pub indexing: bool,
    /// Keyed messages ([`MessageRec::origins`]) whose caller has not yet recorded them in its
    /// ledger (live spool only): kept out of the due index, so no agent delivers and removes
    /// one before its key is safe; a restart finds them in the records instead.
    pub unconfirmed: std::collections::HashSet<QueueId>,
    /// Highest lease number seen.
    pub max_lease: u64,
    /// Sum of [`Msg::rec_len`] of live messages.
    pub live_record_bytes: u64,
    /// Bytes per journal segment (maintained by the writer and by recovery).
    pub journal_sizes: BTreeMap<u32, u64>,
    /// The data segment being appended to (never removed while in use).
    pub active_data: u32,
    /// The journal segment being appended to.
    pub active_journal: u32,
}

impl State {
    pub fn new(limits: LaneLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The lane of a destination name, created on first use.
    pub fn lane_id(&mut self, name: &str) -> u16 {
        if let Some(id) = self.lane_ids.get(name) {
            return *id;
        }
        let id = u16::try_from(self.lanes.len()).unwrap_or(u16::MAX);
        if id == u16::MAX {
            // 65,535 distinct destinations: fold the rest into the last lane rather than fail.
            return id.saturating_sub(1);
        }
        let limit = self
            .limits
            .limits
            .get(name)
            .copied()
            .unwrap_or(self.limits.default)
            .max(1);
        self.lanes.push(Lane {
            name: name.into(),
            limit,
            inflight: 0,
            health: LaneHealth::default(),
            reason: None,
            due: BTreeSet::new(),
        });
        self.lane_ids.insert(name.into(), id);
        id
    }

    /// The lane of a name, if it exists.
    pub fn find_lane(&self, name: &str) -> Option<u16> {
        self.lane_ids.get(name).copied()
    }

    /// The name of a lane.
    pub fn lane_name(&self, lane: u16) -> &str {
        self.lanes
            .get(usize::from(lane))
            .map_or("", |l| l.name.as_ref())
    }

    /// Applies one record. `seg` is the journal segment it lives in, `rec_len` its frame size.
    pub fn apply(&mut self, record: &Record, seg: u32, rec_len: u32) -> Applied {
        let result = match record {
            Record::Header { .. } => Applied::Ok,
            Record::Enqueue(m) => {
                if self.messages.contains_key(&m.id) {
                    return Applied::Duplicate;
                }
                self.insert(m, seg, rec_len);
                Applied::Ok
            }
            Record::Snapshot(m) => {
                self.remove_message(m.id);
                self.insert(m, seg, rec_len);
                Applied::Ok
            }
            Record::Attempt {
                id, lease, rcpts, ..
            } => {
                self.max_lease = self.max_lease.max(*lease);
                let Some(msg) = self.messages.get_mut(id) else {
                    return Applied::Unknown;
                };
                for idx in rcpts {
                    if let Some(r) = msg.rcpts.get_mut(usize::from(*idx))
                        && !r.state.is_final()
                    {
                        r.lease = *lease;
                    }
                }
                Applied::Ok
            }
            Record::Outcome {
                id, lease, results, ..
            } => {
                self.end_lease(*lease);
                let Some(msg) = self.messages.get_mut(id) else {
                    return Applied::Unknown;
                };
                for res in results {
                    let Some(r) = msg.rcpts.get_mut(usize::from(res.idx)) else {
                        continue;
                    };
                    if *lease != 0 && r.lease == *lease {
                        r.lease = 0;
                    }
                    if r.state.is_final() {
                        continue;
                    }
                    if res.attempted {
                        r.attempts = r.attempts.saturating_add(1);
                    }
                    if let Some(e) = &res.error {
                        r.error = Some(Box::new(e.clone()));
                    }
                    match res.kind {
                        ResultKind::Delivered => {
                            r.state = RcptState::Delivered;
                            r.lease = 0;
                        }
                        ResultKind::Failed => {
                            r.state = RcptState::Failed;
                            r.lease = 0;
                        }
                        ResultKind::Deferred { next_ms } => {
                            r.next_ms = next_ms;
                            if r.state != RcptState::Held {
                                r.state = RcptState::Deferred;
                            }
                        }
                    }
                }
                Applied::Ok
            }
            Record::Crash {
                id,
                lease,
                at_ms,
                next_ms,
                reason,
                quarantine,
            } => {
                self.end_lease(*lease);
                let Some(msg) = self.messages.get_mut(id) else {
                    return Applied::Unknown;
                };
                for r in msg.rcpts.iter_mut() {
                    if r.lease != *lease || *lease == 0 {
                        continue;
                    }
                    r.lease = 0;
                    if r.state.is_final() {
                        continue;
                    }
                    r.attempts = r.attempts.saturating_add(1);
                    r.next_ms = *next_ms;
                    r.error = Some(Box::new(ErrorRec {
                        severity: Severity::Transient,
                        scope: FailureScope::Message,
                        status: None,
                        diagnostic: None,
                        text: crate::record::cap_text(reason),
                        at_ms: *at_ms,
                    }));
                    if r.state != RcptState::Held {
                        r.state = RcptState::Deferred;
                    }
                }
                msg.crashes = msg.crashes.saturating_add(1);
                if *quarantine {
                    msg.set_quarantine(Some(reason));
                }
                Applied::Ok
            }
            Record::Abandon { id, lease } => {
                self.end_lease(*lease);
                let Some(msg) = self.messages.get_mut(id) else {
                    return Applied::Unknown;
                };
                for r in msg.rcpts.iter_mut() {
                    if *lease != 0 && r.lease == *lease {
                        r.lease = 0;
                    }
                }
                Applied::Ok
            }
            Record::Admin { id, at_ms, action } => {
                if *action == AdminAction::Delete {
                    return if self.remove_message(*id) {
                        Applied::Ok
                    } else {
                        Applied::Unknown
                    };
                }
                // Lanes whose recipients wait for the router, not for an attempt: mail held at a
                // cutover and mail for a legacy name nobody has. Released, they are routed again
                // (the router holds them once more while that is still right); made pending in
                // place they would wait in a lane no agent serves.
                let by_router: Vec<u16> =
                    [ccgate_core::Lane::Cutover, ccgate_core::Lane::Unroutable]
                        .iter()
                        .filter_map(|lane| self.lane_ids.get(lane.as_str()).copied())
                        .collect();
                let Some(msg) = self.messages.get_mut(id) else {
                    return Applied::Unknown;
                };
                match action {
                    AdminAction::Hold => {
                        for r in msg.rcpts.iter_mut().filter(|r| !r.state.is_final()) {
                            r.state = RcptState::Held;
                        }
                    }
                    AdminAction::Release => {
                        msg.set_quarantine(None);
                        msg.crashes = 0;
                        let mut reroute = false;
                        for r in msg.rcpts.iter_mut() {
                            if r.state == RcptState::Held {
                                r.state = if r.attempts == 0 {
                                    RcptState::Pending
                                } else {
                                    RcptState::Deferred
                                };
                            }
                            if !r.state.is_final() {
                                r.next_ms = *at_ms;
                                reroute |= by_router.contains(&r.dest);
                            }
                        }
                        if reroute {
                            msg.needs_routing = true;
                            self.unrouted.insert(*id);
                        }
                    }
                    AdminAction::Retry => {
                        for r in msg.rcpts.iter_mut() {
                            if matches!(r.state, RcptState::Pending | RcptState::Deferred) {
                                r.next_ms = r.next_ms.min(*at_ms);
                            }
                        }
                    }
                    AdminAction::Requeue => {
                        msg.needs_routing = true;
                        self.unrouted.insert(*id);
                    }
                    AdminAction::Delete => {}
                }
                Applied::Ok
            }
            Record::Route { id, at_ms, routes } => {
                let lanes: Vec<u16> = routes.iter().map(|r| self.lane_id(&r.dest)).collect();
                let cutover = self
                    .lane_ids
                    .get(ccgate_core::Lane::Cutover.as_str())
                    .copied();
                let Some(msg) = self.messages.get_mut(id) else {
                    return Applied::Unknown;
                };
                for (route, lane) in routes.iter().zip(lanes) {
                    let Some(r) = msg.rcpts.get_mut(usize::from(route.idx)) else {
                        continue;
                    };
                    if r.state.is_final() {
                        continue;
                    }
                    if *r.addr != *route.addr {
                        if r.orig.is_none() {
                            r.orig = Some(std::mem::take(&mut r.addr));
                        }
                        r.addr = route.addr.as_str().into();
                    }
                    if cutover == Some(r.dest) && cutover != Some(lane) && !route.hold {
                        msg.lifetime_from_ms = msg.lifetime_from_ms.max(*at_ms);
                    }
                    r.dest = lane;
                    r.next_ms = *at_ms;
                    r.state = if route.hold {
                        RcptState::Held
                    } else if r.attempts == 0 {
                        RcptState::Pending
                    } else {
                        RcptState::Deferred
                    };
                }
                msg.needs_routing = false;
                self.unrouted.remove(id);
                Applied::Ok
            }
            Record::Lane {
                name,
                at_ms,
                dead_until_ms,
                reason,
            } => {
                let lane = self.lane_id(name);
                if let Some(l) = self.lanes.get_mut(usize::from(lane)) {
                    if *dead_until_ms == 0 {
                        l.health.on_success();
                        l.reason = None;
                    } else {
                        l.health.dead_until_ms = *dead_until_ms;
                        l.health.cooloff_ms = dead_until_ms.saturating_sub(*at_ms);
                        l.reason = Some(reason.as_str().into());
                    }
                }
                return Applied::Ok;
            }
        };
        if result == Applied::Ok
            && let Some(id) = record.queue_id()
        {
            self.settle(id);
            self.index(id);
        }
        result
    }

    fn end_lease(&mut self, lease: u64) {
        if lease == 0 {
            return;
        }
        if let Some(info) = self.leases.remove(&lease)
            && let Some(l) = self.lanes.get_mut(usize::from(info.lane))
        {
            l.inflight = l.inflight.saturating_sub(1);
        }
    }

    fn insert(&mut self, m: &MessageRec, seg: u32, rec_len: u32) {
        let mut rcpts = Vec::with_capacity(m.rcpts.len());
        for r in &m.rcpts {
            let dest = self.lane_id(&r.dest);
            self.max_lease = self.max_lease.max(r.lease);
            rcpts.push(Rcpt {
                addr: r.addr.as_str().into(),
                orig: r.orig.as_deref().map(Into::into),
                next_ms: r.next_ms,
                lease: r.lease,
                error: r.error.clone().map(Box::new),
                dest,
                attempts: r.attempts,
                state: r.state,
                flags: if r.bounced { BOUNCED } else { 0 },
            });
        }
        let extra = (m.quarantine.is_some() || m.bounce_for.is_some() || !m.origins.is_empty())
            .then(|| {
                Box::new(Extra {
                    quarantine: m.quarantine.as_deref().map(Into::into),
                    bounce_for: m
                        .bounce_for
                        .as_ref()
                        .map(|(id, r)| (*id, r.clone().into_boxed_slice())),
                    origins: m.origins.iter().map(|o| o.as_str().into()).collect(),
                })
            });
        if m.needs_routing {
            self.unrouted.insert(m.id);
        }
        *self.data_live.entry(m.body.seg).or_default() += 1;
        self.live_record_bytes = self.live_record_bytes.saturating_add(u64::from(rec_len));
        self.messages.insert(
            m.id,
            Msg {
                arrival_ms: m.arrival_ms,
                lifetime_from_ms: m.lifetime_from_ms.unwrap_or(m.arrival_ms),
                body: m.body,
                sender: m.sender.as_str().into(),
                rcpts: rcpts.into_boxed_slice(),
                crashes: m.crashes,
                needs_routing: m.needs_routing,
                first_seg: seg,
                rec_len,
                extra,
            },
        );
        // A bounce reports on recipients of another message: they are now bounced.
        if let Some((of, idxs)) = &m.bounce_for
            && let Some(orig) = self.messages.get_mut(of)
        {
            for idx in idxs {
                if let Some(r) = orig.rcpts.get_mut(usize::from(*idx)) {
                    r.flags |= BOUNCED;
                    r.flags &= !BOUNCE_QUEUED;
                }
            }
            self.settle(*of);
        }
    }

    /// Removes a message; returns false if it was not there.
    pub fn remove_message(&mut self, id: QueueId) -> bool {
        let Some(msg) = self.messages.remove(&id) else {
            return false;
        };
        if let Some(n) = self.data_live.get_mut(&msg.body.seg) {
            *n = n.saturating_sub(1);
        }
        self.live_record_bytes = self
            .live_record_bytes
            .saturating_sub(u64::from(msg.rec_len));
        self.owed.remove(&id);
        self.unrouted.remove(&id);
        true
    }

    /// Drops a message whose recipients are all final and whose bounce (if owed) is queued;
    /// keeps the owed-bounce set up to date otherwise.
    pub fn settle(&mut self, id: QueueId) {
        let Some(msg) = self.messages.get(&id) else {
            self.owed.remove(&id);
            return;
        };
        let owes = msg.owes_bounce();
        let waiting_for_bounce = msg
            .rcpts
            .iter()
            .any(|r| r.state == RcptState::Failed && r.flags & BOUNCE_QUEUED != 0);
        if owes {
            self.owed.insert(id);
        } else {
            self.owed.remove(&id);
        }
        if !owes && !waiting_for_bounce && msg.rcpts.iter().all(|r| r.state.is_final()) {
            self.remove_message(id);
        }
    }

    /// Puts a message's waiting recipients into their lanes' due index.
    pub fn index(&mut self, id: QueueId) {
        if !self.indexing || self.unconfirmed.contains(&id) {
            return;
        }
        let Some(msg) = self.messages.get(&id) else {
            return;
        };
        if !msg.schedulable() {
            return;
        }
        let key = id.to_u128();
        for r in msg.rcpts.iter().filter(|r| r.waiting()) {
            if let Some(lane) = self.lanes.get_mut(usize::from(r.dest)) {
                lane.due.insert((r.next_ms, key));
            }
        }
    }

    /// Builds the due index from scratch (after replay).
    pub fn build_index(&mut self) {
        self.indexing = true;
        for lane in &mut self.lanes {
            lane.due.clear();
        }
        let ids: Vec<QueueId> = self.messages.keys().copied().collect();
        for id in ids {
            self.index(id);
        }
    }

    /// The record that recreates this message as it is now (for compaction).
    pub fn snapshot(&self, id: QueueId) -> Option<MessageRec> {
        let msg = self.messages.get(&id)?;
        Some(MessageRec {
            id,
            arrival_ms: msg.arrival_ms,
            body: msg.body,
            sender: msg.sender.to_string(),
            needs_routing: msg.needs_routing,
            crashes: msg.crashes,
            quarantine: msg.quarantine().map(str::to_owned),
            bounce_for: msg
                .extra
                .as_ref()
                .and_then(|e| e.bounce_for.as_ref().map(|(of, idx)| (*of, idx.to_vec()))),
            rcpts: msg
                .rcpts
                .iter()
                .map(|r| RcptRec {
                    addr: r.addr.to_string(),
                    orig: r.orig.as_deref().map(str::to_owned),
                    dest: self.lane_name(r.dest).to_owned(),
                    state: r.state,
                    attempts: r.attempts,
                    next_ms: r.next_ms,
                    bounced: r.flags & (BOUNCED | BOUNCE_QUEUED) != 0,
                    lease: r.lease,
                    error: r.error.as_deref().cloned(),
                })
                .collect(),
            lifetime_from_ms: (msg.lifetime_from_ms != msg.arrival_ms)
                .then_some(msg.lifetime_from_ms),
            origins: msg.origins().iter().map(|o| o.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RcptResult, RouteRec};

    pub(crate) fn message(id: u128, sender: &str, dests: &[&str]) -> MessageRec {
        MessageRec {
            id: QueueId::from_u128(id),
            arrival_ms: 1_000,
            body: BodyRef {
                seg: 1,
                offset: 0,
                len: 10,
                crc: 0,
            },
            sender: sender.to_owned(),
            needs_routing: false,
            crashes: 0,
            quarantine: None,
            bounce_for: None,
            rcpts: dests
                .iter()
                .enumerate()
                .map(|(i, d)| RcptRec {
                    addr: format!("r{i}@example.com"),
                    orig: None,
                    dest: (*d).to_owned(),
                    state: RcptState::Pending,
                    attempts: 0,
                    next_ms: 1_000,
                    bounced: false,
                    lease: 0,
                    error: None,
                })
                .collect(),
            lifetime_from_ms: None,
            origins: Vec::new(),
        }
    }

    fn outcome(id: u128, lease: u64, results: &[(u16, ResultKind)]) -> Record {
        Record::Outcome {
            id: QueueId::from_u128(id),
            lease,
            at_ms: 2_000,
            results: results
                .iter()
                .map(|(idx, kind)| RcptResult {
                    idx: *idx,
                    kind: *kind,
                    attempted: true,
                    error: None,
                })
                .collect(),
        }
    }

    #[test]
    fn message_leaves_only_when_final_and_bounce_queued() {
        let mut s = State::new(LaneLimits::default());
        s.apply(
            &Record::Enqueue(message(1, "a@b.c", &["modern", "legacy"])),
            1,
            100,
        );
        s.apply(&outcome(1, 0, &[(0, ResultKind::Delivered)]), 1, 10);
        assert!(s.messages.contains_key(&QueueId::from_u128(1)));
        s.apply(&outcome(1, 0, &[(1, ResultKind::Failed)]), 1, 10);
        // All final, but a bounce is owed: still queued.
        assert!(s.owed.contains(&QueueId::from_u128(1)));
        assert!(s.messages.contains_key(&QueueId::from_u128(1)));
        let mut bounce = message(2, "", &[""]);
        bounce.bounce_for = Some((QueueId::from_u128(1), vec![1]));
        s.apply(&Record::Enqueue(bounce), 1, 100);
        assert!(!s.messages.contains_key(&QueueId::from_u128(1)));
        assert!(s.owed.is_empty());
        assert_eq!(s.data_live.get(&1), Some(&1));
    }

    #[test]
    fn null_sender_is_never_owed_a_bounce() {
        let mut s = State::new(LaneLimits::default());
        s.apply(&Record::Enqueue(message(1, "", &["modern"])), 1, 100);
        s.apply(&outcome(1, 0, &[(0, ResultKind::Failed)]), 1, 10);
        assert!(s.messages.is_empty() && s.owed.is_empty());
    }

    #[test]
    fn duplicate_enqueue_is_ignored() {
        let mut s = State::new(LaneLimits::default());
        assert_eq!(
            s.apply(&Record::Enqueue(message(1, "a@b.c", &["x"])), 1, 1),
            Applied::Ok
        );
        assert_eq!(
            s.apply(&Record::Enqueue(message(1, "z@b.c", &["y"])), 1, 1),
            Applied::Duplicate
        );
        assert_eq!(&*s.messages[&QueueId::from_u128(1)].sender, "a@b.c");
    }

    #[test]
    fn crash_counts_and_quarantines() {
        let mut s = State::new(LaneLimits::default());
        s.apply(&Record::Enqueue(message(1, "a@b.c", &["x"])), 1, 1);
        let id = QueueId::from_u128(1);
        s.apply(
            &Record::Attempt {
                id,
                lease: 7,
                at_ms: 5,
                rcpts: vec![0],
            },
            1,
            1,
        );
        assert_eq!(s.messages[&id].rcpts[0].lease, 7);
        s.apply(
            &Record::Crash {
                id,
                lease: 7,
                at_ms: 6,
                next_ms: 99,
                reason: "timed out".into(),
                quarantine: true,
            },
            1,
            1,
        );
        let m = &s.messages[&id];
        assert_eq!(
            (m.crashes, m.quarantine(), m.rcpts[0].next_ms),
            (1, Some("timed out"), 99)
        );
        assert_eq!(m.rcpts[0].state, RcptState::Deferred);
        s.apply(
            &Record::Admin {
                id,
                at_ms: 50,
                action: AdminAction::Release,
            },
            1,
            1,
        );
        let m = &s.messages[&id];
        assert_eq!(
            (m.crashes, m.quarantine(), m.rcpts[0].next_ms),
            (0, None, 50)
        );
    }

    #[test]
    fn the_lifetime_clock_starts_at_the_cutover_and_survives_a_snapshot() {
        let mut s = State::new(LaneLimits::default());
        let mut held = message(7, "a@b.c", &["cutover"]);
        if let Some(r) = held.rcpts.get_mut(0) {
            r.state = RcptState::Held;
        }
        s.apply(&Record::Enqueue(held), 1, 1);
        let id = QueueId::from_u128(7);
        s.apply(
            &Record::Route {
                id,
                at_ms: 9_000,
                routes: vec![RouteRec {
                    idx: 0,
                    addr: "x@modern.example".into(),
                    dest: "modern".into(),
                    hold: false,
                }],
            },
            1,
            1,
        );
        assert_eq!(s.messages[&id].lifetime_from_ms, 9_000);
        assert_eq!(s.messages[&id].arrival_ms, 1_000);
        // Compaction writes a snapshot; a restart reads only it.
        let snap = s.snapshot(id).unwrap();
        let mut frame = Vec::new();
        crate::record::encode_message_frame(&snap, true, &mut frame);
        let mut again = State::new(LaneLimits::default());
        let crate::record::Frame::Complete {
            type_code, payload, ..
        } = crate::record::check_frame(&frame)
        else {
            panic!("not a frame");
        };
        let record = Record::decode_payload(type_code, payload).unwrap();
        again.apply(&record, 2, 1);
        assert_eq!(again.messages[&id].lifetime_from_ms, 9_000);
        assert_eq!(again.messages[&id].arrival_ms, 1_000);
    }

    #[test]
    fn hold_release_route() {
        let mut s = State::new(LaneLimits::default());
        s.apply(&Record::Enqueue(message(1, "a@b.c", &["x", "x"])), 1, 1);
        let id = QueueId::from_u128(1);
        s.apply(&outcome(1, 0, &[(0, ResultKind::Delivered)]), 1, 1);
        let admin = |action| Record::Admin {
            id,
            at_ms: 3,
            action,
        };
        s.apply(&admin(AdminAction::Hold), 1, 1);
        let states: Vec<_> = s.messages[&id].rcpts.iter().map(|r| r.state).collect();
        assert_eq!(states, [RcptState::Delivered, RcptState::Held]);
        s.apply(&admin(AdminAction::Requeue), 1, 1);
        assert!(s.unrouted.contains(&id));
        s.apply(
            &Record::Route {
                id,
                at_ms: 4,
                routes: vec![RouteRec {
                    idx: 1,
                    addr: "new@modern.example".into(),
                    dest: "modern".into(),
                    hold: false,
                }],
            },
            1,
            1,
        );
        let r = &s.messages[&id].rcpts[1];
        assert_eq!(
            (&*r.addr, r.orig.as_deref(), r.state),
            (
                "new@modern.example",
                Some("r1@example.com"),
                RcptState::Pending
            )
        );
        assert!(s.unrouted.is_empty());
        s.apply(&admin(AdminAction::Delete), 1, 1);
        assert!(s.messages.is_empty());
    }

    #[test]
    fn snapshot_round_trips_state() {
        let mut s = State::new(LaneLimits::default());
        s.apply(&Record::Enqueue(message(1, "a@b.c", &["x", "y"])), 1, 1);
        s.apply(
            &outcome(1, 0, &[(0, ResultKind::Deferred { next_ms: 77 })]),
            1,
            1,
        );
        let snap = s.snapshot(QueueId::from_u128(1)).unwrap();
        let mut t = State::new(LaneLimits::default());
        t.apply(&Record::Snapshot(snap.clone()), 2, 1);
        assert_eq!(t.snapshot(QueueId::from_u128(1)).unwrap(), snap);
        assert_eq!(snap.rcpts[0].state, RcptState::Deferred);
        assert_eq!(snap.rcpts[0].attempts, 1);
    }
}
