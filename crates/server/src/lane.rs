//! What every whole-attempt delivery agent (Maildir, legacy drop folder) does around its one
//! delivery: poll the lane, lease what is due, count and log the outcome per recipient in the
//! Postfix maillog style, and record it in the spool.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ccgate_queue::{DeliveryError, DeliveryResult, Lease, Spool};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::{Event as MetricEvent, Metrics};
use crate::shutdown::stopped;

/// Pause when the lane has nothing due.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// What every agent has around its deliveries: the lane it serves, its name in log lines,
/// how many messages a pass leases, the spool and the metrics.
#[derive(Debug)]
pub(crate) struct Lane {
    /// The lane served.
    pub(crate) name: String,
    /// The `relay=` name in log lines.
    pub(crate) relay: &'static str,
    /// How many messages one pass leases.
    pub(crate) batch: usize,
    /// The spool.
    pub(crate) spool: Arc<Spool>,
    /// The metrics.
    pub(crate) metrics: Arc<Metrics>,
}

/// One agent: its [`Lane`] and how it delivers one attempt to all its recipients.
pub(crate) trait LaneAgent: Send + Sync + 'static {
    /// Where it takes work from and reports to.
    fn lane(&self) -> &Lane;
    /// One attempt for every recipient of the lease; on success, where it went (for the log).
    fn deliver(&self, lease: &Lease) -> Result<String, DeliveryError>;
}

/// Delivers until `stop` fires; a lease in hand when it fires is finished first.
pub(crate) async fn run<A: LaneAgent>(agent: Arc<A>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let worker = Arc::clone(&agent);
        let handled = tokio::task::spawn_blocking(move || pass(worker.as_ref()))
            .await
            .unwrap_or(0);
        if handled == 0 {
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }
}

/// Leases what is due and delivers it; answers how many messages were handled.
pub(crate) fn pass<A: LaneAgent>(agent: &A) -> usize {
    let Lane {
        name: lane,
        relay,
        batch,
        spool,
        metrics,
    } = agent.lane();
    let (lane, relay) = (lane.as_str(), *relay);
    let leases = match spool.lease(lane, *batch, SystemTime::now()) {
        Ok(leases) => leases,
        Err(e) => {
            warn!(lane = %lane, error = %e, "cannot lease");
            return 0;
        }
    };
    let n = leases.len();
    for mut lease in leases {
        let queue_id = lease.queue_id;
        if !spool.renew(&mut lease, SystemTime::now()) {
            // It timed out while earlier leases of the pass were delivered: its recipients
            // are back in the queue, maybe in another attempt already. Never deliver twice.
            warn!(queue_id = %queue_id, lane = %lane, "lease expired before its turn; not delivered");
            continue;
        }
        let started = Instant::now();
        let outcome = agent.deliver(&lease);
        metrics.observe_delivery(lane, started.elapsed());
        let (event, status) = match &outcome {
            Ok(_) => (MetricEvent::Delivered, "sent"),
            Err(e) if e.is_permanent() => (MetricEvent::Bounced, "bounced"),
            Err(_) => (MetricEvent::Deferred, "deferred"),
        };
        metrics.count(event, lane, lease.recipients.len() as u64);
        for r in &lease.recipients {
            metrics.trace([crate::TraceEvent::delivery(
                if status == "sent" {
                    "delivered"
                } else {
                    status
                },
                &queue_id,
                lane,
                &r.address,
                outcome.as_ref().map_or_else(|e| e.text(), String::as_str),
            )]);
            match &outcome {
                Ok(to) => {
                    info!(queue_id = %queue_id, to = %r.address, relay, dest = %to, status, "delivered")
                }
                Err(e) => {
                    warn!(queue_id = %queue_id, to = %r.address, relay, status, error = %e.text(), "not delivered")
                }
            }
        }
        // A permanent failure of mail from <> is not bounced (RFC 5321 §4.5.5): say so.
        if matches!(&outcome, Err(e) if e.is_permanent())
            && lease.sender == ccgate_core::ReversePath::Null
            && lane != ccgate_queue::SUPPRESSED_LANE
        {
            info!(queue_id = %queue_id, "bounce suppressed, not sent (no backscatter): the sender is the null sender <>");
        }
        let result: DeliveryResult = outcome.map(|_| ());
        let results: Vec<DeliveryResult> =
            lease.recipients.iter().map(|_| result.clone()).collect();
        if let Err(e) = spool.complete(lease, &results, SystemTime::now()) {
            warn!(queue_id = %queue_id, error = %e, "cannot record the delivery");
        }
    }
    n
}
