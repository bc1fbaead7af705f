//! What administrators see and do: filters, listings (`postqueue -j` style JSON lines),
//! the qshape summary, message details with history, and admin requests.

use std::fmt;
use std::time::Duration;

use ccgate_core::QueueId;

use crate::record::{AdminAction, Record, ResultKind};
use crate::schedule::{AGE_BUCKETS, LaneStatus, age_bucket, duration_ms};
use crate::state::{Msg, Rcpt, State};

pub use crate::record::RcptState;

/// The state of a message as a whole (the `--state` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    /// Some recipient is due, being delivered, or waiting for routing.
    Active,
    /// Every unfinished recipient waits for a retry (or for its dead destination).
    Deferred,
    /// Every unfinished recipient is held.
    Held,
    /// Set aside after repeated crashes or timeouts (or an unreadable body); never retried
    /// until released.
    Quarantined,
}

impl QueueState {
    /// Every state, in the order metrics and reports list them.
    pub const ALL: [Self; 4] = [Self::Active, Self::Deferred, Self::Held, Self::Quarantined];

    fn index(self) -> usize {
        match self {
            Self::Active => 0,
            Self::Deferred => 1,
            Self::Held => 2,
            Self::Quarantined => 3,
        }
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Deferred => "deferred",
            Self::Held => "held",
            Self::Quarantined => "quarantined",
        })
    }
}

/// Which messages a listing or an action applies to. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    /// Some unfinished recipient is bound for this destination (lane).
    pub destination: Option<String>,
    /// The envelope sender (case-insensitive; `<>` or an empty string for the null sender).
    pub sender: Option<String>,
    /// Some recipient has this address, as routed or as received (case-insensitive).
    pub recipient: Option<String>,
    /// The message's state; `held` also matches messages with only some recipients held.
    pub state: Option<QueueState>,
    /// The message arrived at least this long ago.
    pub older_than: Option<Duration>,
}

/// One recipient in a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecipientInfo {
    /// The address delivered to.
    pub address: String,
    /// The address as received, if routing rewrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_address: Option<String>,
    /// The destination lane.
    pub destination: String,
    /// Per-recipient state.
    pub state: RcptState,
    /// Attempts made.
    pub attempts: u16,
    /// A delivery attempt is running now.
    pub in_flight: bool,
    /// When the next attempt is due (Unix seconds), for pending and deferred recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<u64>,
    /// Why it is waiting (last transient error, or the dead destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_reason: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_reason: Option<String>,
    /// The enhanced status code of the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// One message in a listing (`queue list --json` prints one per line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageInfo {
    /// The queue id.
    pub queue_id: String,
    /// Active, deferred, held or quarantined.
    pub queue_name: QueueState,
    /// Arrival (Unix seconds).
    pub arrival_time: u64,
    /// Seconds since arrival.
    pub age_seconds: u64,
    /// Size of the stored message in bytes.
    pub message_size: u64,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// Waiting for the router (requeued, or a bounce).
    pub needs_routing: bool,
    /// Attempts that crashed or timed out.
    pub crashes: u16,
    /// Why it is quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_reason: Option<String>,
    /// For a bounce: the message it reports on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_of: Option<String>,
    /// Every recipient, finished or not.
    pub recipients: Vec<RecipientInfo>,
}

/// One event in a message's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryEntry {
    /// When (ms since the epoch; 0 if the record carries no time).
    pub at_ms: u64,
    /// What happened.
    pub event: String,
}

/// `queue show`: the listing entry, the history, and the stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDetail {
    /// As in a listing.
    pub info: MessageInfo,
    /// Events from the journal, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The stored message (empty when it cannot be read: see `body_error`).
    pub body: Vec<u8>,
    /// Why the stored message cannot be read (a corrupt body); the rest is still shown.
    pub body_error: Option<String>,
}

/// Queue depth for monitoring: how many messages are in each state, and how many unfinished
/// recipients each destination has in each state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    /// Messages by their state as a whole (as `queue list` shows it), every state listed.
    pub messages: [(QueueState, u64); 4],
    /// Unfinished recipients, by destination (sorted) and state; every known destination is
    /// listed with all four states, so a gauge drops to zero instead of vanishing.
    /// Recipients of messages waiting for routing (bounces, requeued mail) count under
    /// `(unrouted)`, a row listed only while there are some.
    pub recipients: Vec<DepthRow>,
}

/// One destination and state of [`Depth`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DepthRow {
    /// The destination lane, or `(unrouted)`.
    pub destination: String,
    /// The recipients' state.
    pub state: QueueState,
    /// How many recipients.
    pub recipients: u64,
}

/// `queue summary`: messages by destination and age, like Postfix's qshape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The column labels: `T` (total), then ages in minutes (`5` = under 5 minutes, ...,
    /// `1280+` = 1280 minutes or more).
    pub columns: Vec<String>,
    /// One row per destination, busiest first, after a `TOTAL` row.
    pub rows: Vec<SummaryRow>,
}

/// One row of the summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SummaryRow {
    /// The destination, or `TOTAL`.
    pub destination: String,
    /// Counts per column.
    pub counts: Vec<u64>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|r| r.destination.len())
            .max()
            .unwrap_or(5)
            .max(5);
        write!(f, "{:>width$}", "")?;
        for c in &self.columns {
            write!(f, " {c:>6}")?;
        }
        writeln!(f)?;
        for row in &self.rows {
            write!(f, "{:>width$}", row.destination)?;
            for n in &row.counts {
                write!(f, " {n:>6}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// An administrator's request: an action on listed ids or on every message matching a filter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminRequest {
    /// What to do.
    pub action: AdminAction,
    /// Queue ids (as text; unknown or malformed ones are reported as not found).
    #[serde(default)]
    pub ids: Vec<String>,
    /// Act on every message matching `filter` (besides `ids`).
    #[serde(default)]
    pub all: bool,
    /// Filters for `all`.
    #[serde(default)]
    pub filter: Filter,
}

/// What an admin request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminReport {
    /// Ids acted on.
    pub affected: Vec<String>,
    /// Ids given that are not in the queue (or are not queue ids).
    pub not_found: Vec<String>,
    /// Set when the request could not be carried out at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl State {
    fn lane_dead(&self, lane: u16, now_ms: u64) -> Option<(u64, Option<&str>)> {
        let l = self.lanes.get(usize::from(lane))?;
        match l.health.status(now_ms) {
            LaneStatus::Dead { until_ms } => Some((until_ms, l.reason.as_deref())),
            LaneStatus::Alive | LaneStatus::Probing => None,
        }
    }

    /// The state of a message as a whole.
    pub(crate) fn message_state(&self, msg: &Msg, now_ms: u64) -> QueueState {
        if msg.quarantine().is_some() {
            return QueueState::Quarantined;
        }
        if msg.needs_routing {
            return QueueState::Active;
        }
        let (mut active, mut deferred, mut held) = (false, false, false);
        for r in msg.rcpts.iter().filter(|r| !r.state.is_final()) {
            match self.recipient_state(msg, r, now_ms) {
                QueueState::Held => held = true,
                QueueState::Active => active = true,
                QueueState::Deferred | QueueState::Quarantined => deferred = true,
            }
        }
        if active {
            QueueState::Active
        } else if deferred {
            QueueState::Deferred
        } else if held {
            QueueState::Held
        } else {
            // Every recipient is final; the message waits for its bounce to be queued.
            QueueState::Active
        }
    }

    /// Where one unfinished recipient stands: quarantined with its message, active while its
    /// message waits for routing, held, active when in flight or due on a live lane, else
    /// deferred (waiting for its retry time or for its dead destination).
    fn recipient_state(&self, msg: &Msg, r: &Rcpt, now_ms: u64) -> QueueState {
        if msg.quarantine().is_some() {
            QueueState::Quarantined
        } else if msg.needs_routing {
            QueueState::Active
        } else if r.state == RcptState::Held {
            QueueState::Held
        } else if r.lease != 0 || (r.next_ms <= now_ms && self.lane_dead(r.dest, now_ms).is_none())
        {
            QueueState::Active
        } else {
            QueueState::Deferred
        }
    }

    /// Queue depth: messages by state, unfinished recipients by destination and state.
    pub(crate) fn depth(&self, now_ms: u64) -> Depth {
        let mut messages = QueueState::ALL.map(|s| (s, 0u64));
        let mut per_lane: Vec<[u64; 4]> = vec![[0; 4]; self.lanes.len()];
        let mut unrouted = [0u64; 4];
        for msg in self.messages.values() {
            let state = self.message_state(msg, now_ms);
            if let Some((_, n)) = messages.get_mut(state.index()) {
                *n += 1;
            }
            for r in msg.rcpts.iter().filter(|r| !r.state.is_final()) {
                let state = self.recipient_state(msg, r, now_ms);
                let row = match per_lane.get_mut(usize::from(r.dest)) {
                    Some(row) if !msg.needs_routing && !self.lane_name(r.dest).is_empty() => row,
                    _ => &mut unrouted,
                };
                if let Some(n) = row.get_mut(state.index()) {
                    *n += 1;
                }
            }
        }
        let mut recipients = Vec::new();
        let named = per_lane
            .iter()
            .enumerate()
            .filter_map(|(lane, counts)| {
                let name = self.lane_name(u16::try_from(lane).ok()?);
                (!name.is_empty()).then_some((name, counts))
            })
            .chain(
                unrouted
                    .iter()
                    .any(|n| *n > 0)
                    .then_some(("(unrouted)", &unrouted)),
            );
        for (name, counts) in named {
            for (state, count) in QueueState::ALL.iter().zip(counts) {
                recipients.push(DepthRow {
                    destination: name.to_owned(),
                    state: *state,
                    recipients: *count,
                });
            }
        }
        recipients.sort_by(|a, b| {
            a.destination
                .cmp(&b.destination)
                .then_with(|| a.state.index().cmp(&b.state.index()))
        });
        Depth {
            messages,
            recipients,
        }
    }

    /// Does a message match a filter?
    pub(crate) fn matches(&self, msg: &Msg, filter: &Filter, now_ms: u64) -> bool {
        if let Some(min_age) = filter.older_than
            && now_ms.saturating_sub(msg.arrival_ms) < duration_ms(min_age)
        {
            return false;
        }
        if let Some(sender) = &filter.sender {
            let want = sender.trim().trim_start_matches('<').trim_end_matches('>');
            if !msg.sender.eq_ignore_ascii_case(want) {
                return false;
            }
        }
        if let Some(dest) = &filter.destination {
            let Some(lane) = self.find_lane(dest) else {
                return false;
            };
            if !msg
                .rcpts
                .iter()
                .any(|r| r.dest == lane && !r.state.is_final())
            {
                return false;
            }
        }
        if let Some(rcpt) = &filter.recipient {
            let want = rcpt.trim().trim_start_matches('<').trim_end_matches('>');
            if !msg.rcpts.iter().any(|r| {
                r.addr.eq_ignore_ascii_case(want)
                    || r.orig
                        .as_deref()
                        .is_some_and(|o| o.eq_ignore_ascii_case(want))
            }) {
                return false;
            }
        }
        if let Some(state) = filter.state {
            let held_somewhere = state == QueueState::Held
                && msg.quarantine().is_none()
                && msg.rcpts.iter().any(|r| r.state == RcptState::Held);
            if !held_somewhere && self.message_state(msg, now_ms) != state {
                return false;
            }
        }
        true
    }

    /// The listing entry of a message.
    pub(crate) fn info(&self, id: QueueId, msg: &Msg, now_ms: u64) -> MessageInfo {
        let recipients = msg
            .rcpts
            .iter()
            .map(|r| {
                let error_text = r.error.as_ref().map(|e| match &e.diagnostic {
                    Some(d) => format!("{} ({d})", e.text),
                    None => e.text.clone(),
                });
                let waiting = matches!(r.state, RcptState::Pending | RcptState::Deferred);
                let dead = self.lane_dead(r.dest, now_ms).filter(|_| waiting);
                let delay_reason = match (r.state, dead) {
                    (RcptState::Failed | RcptState::Delivered, _) => None,
                    (_, Some((until, reason))) => Some(format!(
                        "destination {} is not responding until {}{}",
                        self.lane_name(r.dest),
                        ccgate_core::rfc5322_date_ms(until),
                        reason.map(|t| format!(": {t}")).unwrap_or_default()
                    )),
                    _ => error_text.clone(),
                };
                RecipientInfo {
                    address: r.addr.to_string(),
                    orig_address: r.orig.as_deref().map(str::to_owned),
                    destination: self.lane_name(r.dest).to_owned(),
                    state: r.state,
                    attempts: r.attempts,
                    in_flight: r.lease != 0,
                    next_attempt: waiting
                        .then(|| dead.map_or(r.next_ms, |(until, _)| until.max(r.next_ms)) / 1000),
                    delay_reason,
                    bounce_reason: (r.state == RcptState::Failed)
                        .then(|| error_text.clone())
                        .flatten(),
                    status: r
                        .error
                        .as_ref()
                        .filter(|_| r.state != RcptState::Delivered)
                        .and_then(|e| e.status.map(|s| s.to_string())),
                }
            })
            .collect();
        MessageInfo {
            queue_id: id.to_string(),
            queue_name: self.message_state(msg, now_ms),
            arrival_time: msg.arrival_ms / 1000,
            age_seconds: now_ms.saturating_sub(msg.arrival_ms) / 1000,
            message_size: msg.body.len,
            sender: msg.sender.to_string(),
            needs_routing: msg.needs_routing,
            crashes: msg.crashes,
            quarantine_reason: msg.quarantine().map(str::to_owned),
            bounce_of: msg.bounce_for().map(|id| id.to_string()),
            recipients,
        }
    }

    /// Calls `f` for every message matching `filter`, oldest id first.
    pub(crate) fn for_each_match(
        &self,
        filter: &Filter,
        now_ms: u64,
        mut f: impl FnMut(QueueId, &Msg),
    ) {
        for (id, msg) in &self.messages {
            if self.matches(msg, filter, now_ms) {
                f(*id, msg);
            }
        }
    }

    /// The qshape table.
    pub(crate) fn summary(&self, now_ms: u64) -> Summary {
        let mut per_lane: Vec<[u64; 11]> = vec![[0; 11]; self.lanes.len()];
        let mut total = [0u64; 11];
        let mut seen: Vec<u16> = Vec::new();
        for msg in self.messages.values() {
            let col = age_bucket(now_ms.saturating_sub(msg.arrival_ms));
            seen.clear();
            for r in msg.rcpts.iter().filter(|r| !r.state.is_final()) {
                if !seen.contains(&r.dest) {
                    seen.push(r.dest);
                }
            }
            if seen.is_empty() {
                continue;
            }
            for lane in &seen {
                if let Some(row) = per_lane.get_mut(usize::from(*lane)) {
                    for c in [0, col] {
                        if let Some(n) = row.get_mut(c) {
                            *n += 1;
                        }
                    }
                }
            }
            for c in [0, col] {
                if let Some(n) = total.get_mut(c) {
                    *n += 1;
                }
            }
        }
        let mut rows: Vec<SummaryRow> = per_lane
            .iter()
            .enumerate()
            .filter(|(_, counts)| counts.first().is_some_and(|t| *t > 0))
            .map(|(lane, counts)| SummaryRow {
                destination: match self.lane_name(u16::try_from(lane).unwrap_or(u16::MAX)) {
                    "" => "(unrouted)".to_owned(),
                    name => name.to_owned(),
                },
                counts: counts.to_vec(),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.counts
                .first()
                .cmp(&a.counts.first())
                .then_with(|| a.destination.cmp(&b.destination))
        });
        rows.insert(
            0,
            SummaryRow {
                destination: "TOTAL".to_owned(),
                counts: total.to_vec(),
            },
        );
        Summary {
            columns: AGE_BUCKETS.iter().map(|s| (*s).to_owned()).collect(),
            rows,
        }
    }
}

/// Describes a journal record about a message for `queue show`.
pub(crate) fn describe(record: &Record, id: QueueId) -> Option<HistoryEntry> {
    let entry = |at_ms: u64, event: String| Some(HistoryEntry { at_ms, event });
    match record {
        Record::Enqueue(m) if m.id == id => entry(
            m.arrival_ms,
            format!(
                "queued from <{}> for {} recipient(s){}",
                m.sender,
                m.rcpts.len(),
                match &m.bounce_for {
                    Some((of, _)) => format!(" (bounce of {of})"),
                    None => String::new(),
                }
            ),
        ),
        Record::Enqueue(m) => entry(m.arrival_ms, format!("bounce {} queued", m.id)),
        Record::Snapshot(_) => None,
        Record::Attempt {
            at_ms,
            rcpts,
            lease,
            ..
        } => entry(
            *at_ms,
            format!(
                "attempt started for recipient {} (lease {lease})",
                rcpts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Record::Outcome { at_ms, results, .. } => {
            let parts: Vec<String> = results
                .iter()
                .map(|r| {
                    let what = match r.kind {
                        ResultKind::Delivered => "delivered".to_owned(),
                        ResultKind::Deferred { next_ms } => {
                            format!("deferred until {}", ccgate_core::rfc5322_date_ms(next_ms))
                        }
                        ResultKind::Failed => "failed".to_owned(),
                    };
                    match &r.error {
                        Some(e) => format!("recipient {}: {what}: {}", r.idx, e.text),
                        None => format!("recipient {}: {what}", r.idx),
                    }
                })
                .collect();
            entry(*at_ms, parts.join("; "))
        }
        Record::Crash {
            at_ms,
            reason,
            quarantine,
            ..
        } => entry(
            *at_ms,
            format!(
                "attempt crashed or timed out: {reason}{}",
                if *quarantine { " (quarantined)" } else { "" }
            ),
        ),
        Record::Abandon { lease, .. } => entry(
            0,
            format!("attempt (lease {lease}) given back unfinished: not counted"),
        ),
        Record::Admin { at_ms, action, .. } => {
            entry(*at_ms, format!("administrator: {action:?}").to_lowercase())
        }
        Record::Route { at_ms, routes, .. } => {
            let parts: Vec<String> = routes
                .iter()
                .map(|r| {
                    format!(
                        "recipient {} -> {} via {}{}",
                        r.idx,
                        r.addr,
                        r.dest,
                        if r.hold { " (held)" } else { "" }
                    )
                })
                .collect();
            entry(*at_ms, format!("routed: {}", parts.join("; ")))
        }
        Record::Header { .. } | Record::Lane { .. } => None,
    }
}

/// Parses the ids of a request; malformed ones are returned separately.
pub(crate) fn parse_ids(ids: &[String]) -> (Vec<QueueId>, Vec<String>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for raw in ids {
        match raw.trim().parse::<QueueId>() {
            Ok(id) => good.push(id),
            Err(_) => bad.push(raw.clone()),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history names an attempt by its lease (a number across the whole spool), never as
    /// if it were the message's own attempt count, which `attempts=` is.
    #[test]
    fn history_names_attempts_by_lease_and_recipients_by_place() {
        let id = QueueId::generate();
        let started = describe(
            &Record::Attempt {
                id,
                lease: 2,
                at_ms: 1,
                rcpts: vec![0, 2],
            },
            id,
        )
        .unwrap();
        assert_eq!(
            started.event,
            "attempt started for recipient 0, 2 (lease 2)"
        );
        let abandoned = describe(&Record::Abandon { id, lease: 2 }, id).unwrap();
        assert_eq!(
            abandoned.event,
            "attempt (lease 2) given back unfinished: not counted"
        );
    }
}
