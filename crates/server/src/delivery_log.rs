//! The outcome of one delivery attempt, told the same way by every agent: one log line per
//! recipient in the Postfix maillog style, one message-trace event per recipient, and the
//! delivery counters. The whole-attempt agents (Maildir, legacy drop folder, the refusing
//! lanes) and the SMTP agent all call [`report`].
//!
//! The lines (fields in this order):
//!
//! - `delivered`: `queue_id`, `to`, `relay`, `dest` (where it went, when the agent knows
//!   more than the relay: a Maildir file, an import file), `status=sent`;
//! - `not delivered`: `queue_id`, `to`, `relay`, `status` (`bounced` or `deferred`), `dsn`
//!   (the enhanced status code), `reply` (the next hop's reply, empty when there was none),
//!   `error`;
//! - once per message, when a permanent failure of mail from the null sender bounces to
//!   nobody (RFC 5321 §4.5.5): `bounce suppressed, not sent (no backscatter): ...`.

use ccgate_core::{Lane, ReversePath};
use ccgate_queue::{DeliveryResult, Lease};
use tracing::{info, warn};

use crate::metrics::{Event as MetricEvent, Metrics};
use crate::trace::TraceEvent;

/// Who made the attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt<'a> {
    /// The lane the lease came from.
    pub(crate) lane: Lane,
    /// The `relay=` of the log lines: the agent, or the next hop's `host:port`.
    pub(crate) relay: &'a str,
    /// Where the counters and the trace go.
    pub(crate) metrics: &'a Metrics,
}

/// Counts, traces and logs `results` (one per recipient of `lease`, in order). `dest` says
/// where the delivered recipients went, when the agent knows more than its relay.
pub(crate) fn report(
    attempt: Attempt<'_>,
    lease: &Lease,
    results: &[DeliveryResult],
    dest: Option<&str>,
) {
    let Attempt {
        lane,
        relay,
        metrics,
    } = attempt;
    let queue_id = lease.queue_id;
    let (mut sent, mut deferred, mut bounced) = (0u64, 0u64, 0u64);
    let mut traced = Vec::with_capacity(results.len());
    for (r, result) in lease.recipients.iter().zip(results) {
        match result {
            Ok(()) => {
                sent += 1;
                traced.push(TraceEvent::delivery(
                    "delivered",
                    &queue_id,
                    lane,
                    &r.address,
                    dest.unwrap_or(relay),
                ));
                match dest {
                    Some(dest) => {
                        info!(queue_id = %queue_id, to = %r.address, relay = %relay, dest = %dest, status = "sent", "delivered");
                    }
                    None => {
                        info!(queue_id = %queue_id, to = %r.address, relay = %relay, status = "sent", "delivered");
                    }
                }
            }
            Err(e) => {
                let status = if e.is_permanent() {
                    bounced += 1;
                    "bounced"
                } else {
                    deferred += 1;
                    "deferred"
                };
                traced.push(TraceEvent::delivery(
                    status,
                    &queue_id,
                    lane,
                    &r.address,
                    e.text(),
                ));
                warn!(queue_id = %queue_id, to = %r.address, relay = %relay, status, dsn = %e.effective_status(), reply = e.diagnostic().unwrap_or(""), error = %e.text(), "not delivered");
            }
        }
    }
    metrics.trace(traced);
    for (event, n) in [
        (MetricEvent::Delivered, sent),
        (MetricEvent::Deferred, deferred),
        (MetricEvent::Bounced, bounced),
    ] {
        if n > 0 {
            metrics.count(event, lane.as_str(), n);
        }
    }
    // A bounce is never sent to the null sender: say so (the suppressed lane's own failures
    // are such bounces already, and say why in their line).
    if bounced > 0 && lease.sender == ReversePath::Null && lane != Lane::Suppressed {
        info!(queue_id = %queue_id, "bounce suppressed, not sent (no backscatter): the sender is the null sender <>");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use ccgate_core::{EmailAddress, Envelope};
    use ccgate_queue::{DeliveryError, FailureScope, Route, Spool, SpoolOptions};

    use super::*;
    use crate::trace::{TraceLog, TraceQuery};

    /// Whatever the agent, the outcome of each recipient is counted under the lane and traced
    /// with where it went (or why not).
    #[test]
    fn each_recipient_is_counted_and_traced_under_its_lane() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), SpoolOptions::default()).unwrap();
        let (a, b): (EmailAddress, EmailAddress) = (
            "a@x.example".parse().unwrap(),
            "b@x.example".parse().unwrap(),
        );
        let envelope = Envelope {
            sender: ReversePath::Null,
            recipients: vec![a.clone(), b.clone()],
        };
        let routes = [
            Route::new(Lane::Modern, a.clone()),
            Route::new(Lane::Modern, b.clone()),
        ];
        let id = spool
            .enqueue(
                &envelope,
                &routes,
                b"Subject: x\r\n\r\nx\r\n",
                SystemTime::now(),
            )
            .unwrap();
        let lease = spool
            .lease(Lane::Modern, 1, SystemTime::now())
            .unwrap()
            .pop()
            .unwrap();
        let metrics = Metrics::default();
        metrics.set_trace(Arc::new(
            TraceLog::open(&dir.path().join("trace"), 1 << 20).unwrap(),
        ));
        let results = [
            Ok(()),
            Err(DeliveryError::permanent(
                FailureScope::Recipient,
                "550 no such user",
            )),
        ];
        let attempt = Attempt {
            lane: Lane::Modern,
            relay: "hop.example:25",
            metrics: &metrics,
        };
        report(attempt, &lease, &results, None);

        let mut counters = metrics.counters();
        counters.sort();
        assert_eq!(
            counters,
            [
                (MetricEvent::Delivered, "modern".to_owned(), 1),
                (MetricEvent::Bounced, "modern".to_owned(), 1),
            ]
        );
        let log = metrics.trace_log().unwrap();
        let query = TraceQuery {
            text: id.to_string(),
            ..TraceQuery::default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = log.search(&query, 10);
        while events.len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            events = log.search(&query, 10);
        }
        let mut seen: Vec<(String, String, String, String)> = events
            .into_iter()
            .map(|e| (e.event, e.to.join(","), e.side, e.detail))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    "bounced".to_owned(),
                    "b@x.example".to_owned(),
                    "modern".to_owned(),
                    "550 no such user".to_owned()
                ),
                (
                    "delivered".to_owned(),
                    "a@x.example".to_owned(),
                    "modern".to_owned(),
                    "hop.example:25".to_owned()
                ),
            ]
        );
    }
}
