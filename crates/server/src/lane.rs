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

/// Longest pause when the lane has nothing due. New mail for the lane wakes the agent at
/// once (the spool's wake-up call); the poll only finds retries that came due meanwhile.
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
    /// While mail keeps coming: how many messages make a full pass, and how long to let
    /// more gather after a pass that had fewer (none by default: the next pass at once). The
    /// legacy lane gathers for a file's worth, since each file costs the same (a file to
    /// create and fsync, an Import run) whatever it holds. A message arriving when the lane
    /// is idle is never held back: only the ones after a busy pass wait, at most this long.
    fn gather(&self) -> (usize, Duration) {
        (0, Duration::ZERO)
    }
    /// The attempts for all the leases of a pass, one outcome per lease in order: `None`
    /// for a message not attempted because its lease was lost before its turn (see
    /// [`Lane::renew`]). An agent that can deliver several messages at once (the legacy
    /// lane's batched import files) overrides it; the default delivers them one by one,
    /// renewing each lease right before its message.
    fn deliver_all(&self, leases: &mut [Lease]) -> Vec<Option<Result<String, DeliveryError>>> {
        deliver_each(self, leases)
    }
}

/// The leases of a pass delivered one by one, each renewed right before its message.
pub(crate) fn deliver_each<A: LaneAgent + ?Sized>(
    agent: &A,
    leases: &mut [Lease],
) -> Vec<Option<Result<String, DeliveryError>>> {
    (0..leases.len())
        .map(|i| {
            let turn = agent.context().renew_for_turn(leases, &[i]);
            let lease = leases.get(i).filter(|_| !turn.is_empty())?;
            Some(agent.deliver(lease))
        })
        .collect()
}

impl LaneContext {
    /// Renews a lease right before its message is handled, so that a long pass never
    /// outlives the leases it has yet to deliver. False (and a warning) when the lease
    /// already timed out: its recipients went back to the queue and may be in another
    /// attempt, so the message must not be delivered (and its outcome not recorded) here.
    pub(crate) fn renew(&self, lease: &mut Lease) -> bool {
        let renewed = self.spool.renew(lease, SystemTime::now());
        if !renewed {
            warn!(queue_id = %lease.queue_id, lane = %self.lane, "lease expired before its turn; not delivered here (it is attempted again)");
        }
        renewed
    }

    /// Before the messages `turn` (indices into the pass's `leases`) are handled: renews
    /// their leases ([`Lane::renew`]) and answers those still held, in order. The pass's
    /// other leases are renewed too, quietly: the ones already handled wait for the outcomes
    /// recorded at the end of the pass, the later ones for their turn, and neither may time
    /// out meanwhile.
    pub(crate) fn renew_for_turn(&self, leases: &mut [Lease], turn: &[usize]) -> Vec<usize> {
        let now = SystemTime::now();
        let mut held = Vec::with_capacity(turn.len());
        for (i, lease) in leases.iter_mut().enumerate() {
            if turn.contains(&i) {
                if self.renew(lease) {
                    held.push(i);
                }
            } else {
                self.spool.renew(lease, now);
            }
        }
        held
    }
}

/// Delivers until `stop` fires; a lease in hand when it fires is finished first.
pub(crate) async fn run<A: LaneAgent>(agent: Arc<A>, mut stop: watch::Receiver<bool>) {
    // Mail queued or routed to the lane while a pass runs leaves a permit: the next wait
    // ends at once.
    let due = Arc::new(tokio::sync::Notify::new());
    let wake = Arc::clone(&due);
    let lane = agent.context();
    lane.spool
        .on_due(lane.lane, Arc::new(move || wake.notify_one()));
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
                () = due.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let (full, window) = agent.gather();
        if handled < full && !window.is_zero() {
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(window) => {}
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
    let mut leases = leases;
    let started = Instant::now();
    // The agent renews each lease right before its message (a long pass must not outlive
    // the later ones) and skips a message whose lease timed out meanwhile: never twice.
    let outcomes = agent.deliver_all(&mut leases);
    let each = started.elapsed() / u32::try_from(leases.len().max(1)).unwrap_or(u32::MAX);
    let mut done: Vec<(Lease, Vec<DeliveryResult>)> = Vec::with_capacity(n);
    for (lease, outcome) in leases.into_iter().zip(outcomes) {
        // Lease lost before its turn (said when it was found): not attempted, not recorded.
        let Some(outcome) = outcome else {
            continue;
        };
        metrics.observe_delivery(lane.as_str(), each);
        let result: DeliveryResult = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
        let results: Vec<DeliveryResult> =
            lease.recipients.iter().map(|_| result.clone()).collect();
        delivery_log::report(attempt, &lease, &results, outcome.ok().as_deref());
        done.push((lease, results));
    }
    // Record the outcomes together: one lock, one fsync for the whole pass.
    let ids: Vec<_> = done.iter().map(|(lease, _)| lease.queue_id).collect();
    for (queue_id, recorded) in ids.iter().zip(spool.complete_all(done, SystemTime::now())) {
        if let Err(e) = recorded {
            warn!(queue_id = %queue_id, error = %e, "cannot record the delivery");
        }
    }
    n
}
