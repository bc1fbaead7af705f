//! What every whole-attempt delivery agent (Maildir, legacy drop folder, the refusing lanes)
//! does around its one delivery: poll the lane, lease what is due, report the outcome per
//! recipient ([`delivery_log::report`]), and record it in the spool.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ccgate_core::Lane;
use ccgate_queue::{DeliveryError, DeliveryResult, Lease, Spool};
use tokio::sync::watch;
use tracing::warn;

use crate::delivery_log::{self, Attempt};
use crate::metrics::Metrics;
use crate::shutdown::stopped;

/// Pause when the lane has nothing due.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// What every agent has around its deliveries: the lane it serves, its name in log lines,
/// how many messages a pass leases, the spool and the metrics.
#[derive(Debug)]
pub(crate) struct LaneContext {
    /// The lane served.
    pub(crate) lane: Lane,
    /// The `relay=` name in log lines.
    pub(crate) relay: &'static str,
    /// How many messages one pass leases.
    pub(crate) batch: usize,
    /// The spool.
    pub(crate) spool: Arc<Spool>,
    /// The metrics.
    pub(crate) metrics: Arc<Metrics>,
}

/// One agent: its [`LaneContext`] and how it delivers one attempt to all its recipients.
pub(crate) trait LaneAgent: Send + Sync + 'static {
    /// Where it takes work from and reports to.
    fn context(&self) -> &LaneContext;
    /// One attempt for every recipient of the lease; on success, where it went (for the log).
    fn deliver(&self, lease: &Lease) -> Result<String, DeliveryError>;
    /// The attempts for all the leases of a pass, one outcome per lease in order. An agent
    /// that can deliver several messages at once (the legacy lane's batched import files)
    /// overrides it; the default delivers them one by one.
    fn deliver_all(&self, leases: &[Lease]) -> Vec<Result<String, DeliveryError>> {
        leases.iter().map(|lease| self.deliver(lease)).collect()
    }
}

/// Threads recording the outcomes of one pass at once (the spool's group commit joins them).
const COMPLETE_THREADS: usize = 32;

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
    let LaneContext {
        lane,
        relay,
        batch,
        spool,
        metrics,
    } = agent.context();
    let lane = *lane;
    let attempt = Attempt {
        lane,
        relay,
        metrics,
    };
    let leases = match spool.lease(lane, *batch, SystemTime::now()) {
        Ok(leases) => leases,
        Err(e) => {
            warn!(lane = %lane, error = %e, "cannot lease");
            return 0;
        }
    };
    let n = leases.len();
    // Renew every lease as its pass starts: one that timed out meanwhile has its recipients
    // back in the queue, maybe in another attempt already. Never deliver twice.
    let mut live = Vec::with_capacity(n);
    for mut lease in leases {
        if spool.renew(&mut lease, SystemTime::now()) {
            live.push(lease);
        } else {
            warn!(queue_id = %lease.queue_id, lane = %lane, "lease expired before its turn; not delivered");
        }
    }
    let leases = live;
    let started = Instant::now();
    let outcomes = agent.deliver_all(&leases);
    let each = started.elapsed() / u32::try_from(leases.len().max(1)).unwrap_or(u32::MAX);
    let mut done: Vec<(Lease, Vec<DeliveryResult>)> = Vec::with_capacity(n);
    for (lease, outcome) in leases.into_iter().zip(outcomes) {
        metrics.observe_delivery(lane.as_str(), each);
        let result: DeliveryResult = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
        let results: Vec<DeliveryResult> =
            lease.recipients.iter().map(|_| result.clone()).collect();
        delivery_log::report(attempt, &lease, &results, outcome.ok().as_deref());
        done.push((lease, results));
    }
    // Record the outcomes from several threads at once, so their fsyncs are shared.
    let chunk = n.div_ceil(COMPLETE_THREADS).max(1);
    let mut parts: Vec<Vec<(Lease, Vec<DeliveryResult>)>> = Vec::new();
    let mut rest = done.into_iter().peekable();
    while rest.peek().is_some() {
        parts.push(rest.by_ref().take(chunk).collect());
    }
    std::thread::scope(|scope| {
        for part in parts {
            scope.spawn(move || {
                for (lease, results) in part {
                    let queue_id = lease.queue_id;
                    if let Err(e) = spool.complete(lease, &results, SystemTime::now()) {
                        warn!(queue_id = %queue_id, error = %e, "cannot record the delivery");
                    }
                }
            });
        }
    });
    n
}
