//! The `unknown` lane: legacy recipients the directory does not know. Its agent fails each one
//! at once with `5.1.1`, so the queue sends the legacy sender a non-delivery report (RFC 3464,
//! imported into their mailbox like any other message, with the original headers), as a post
//! office does for a name it does not have. The sender is told; nothing goes silently.
//!
//! The `suppressed` lane: bounces the queue must not send (to the null sender, postmaster,
//! MAILER-DAEMON, for auto-submitted mail, a second one for a message; and legacy
//! non-delivery reports to such addresses). Its agent fails each at once with the reason,
//! so the log line `not delivered` (with the queue id) says why; a bounce has the null sender,
//! so nothing bounces further.

use std::sync::Arc;

use ccgate_core::Lane;
use ccgate_queue::{DeliveryError, FailureScope, Lease, Spool, StatusCode, suppressed_reason};
use tokio::sync::watch;

use crate::lane::{self, LaneAgent, LaneContext};
use crate::metrics::Metrics;

/// Messages one pass takes.
const BATCH: usize = 64;

/// Fails every recipient of the `unknown` lane permanently.
#[derive(Debug)]
pub struct RefuseAgent {
    context: LaneContext,
}

impl RefuseAgent {
    /// An agent for the `unknown` lane of `spool`.
    pub fn new(spool: Arc<Spool>, metrics: Arc<Metrics>) -> Self {
        Self {
            context: LaneContext {
                lane: Lane::Unknown,
                relay: "directory",
                batch: BATCH,
                spool,
                metrics,
            },
        }
    }

    /// Works until `stop` fires.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        lane::run(Arc::new(self), stop).await;
    }
}

impl LaneAgent for RefuseAgent {
    fn context(&self) -> &LaneContext {
        &self.context
    }
    fn deliver(&self, _lease: &Lease) -> Result<String, DeliveryError> {
        let error = DeliveryError::permanent(
            FailureScope::Recipient,
            "no such recipient: the address is not in the gateway's directory",
        );
        Err(match StatusCode::new(5, 1, 1) {
            Some(status) => error.with_status(status),
            None => error,
        })
    }
}

/// Fails every recipient of the `suppressed` lane, with the reason the queue wrote.
#[derive(Debug)]
pub struct SuppressAgent {
    context: LaneContext,
}

impl SuppressAgent {
    /// An agent for the `suppressed` lane of `spool`.
    pub fn new(spool: Arc<Spool>, metrics: Arc<Metrics>) -> Self {
        Self {
            context: LaneContext {
                lane: Lane::Suppressed,
                relay: "policy",
                batch: BATCH,
                spool,
                metrics,
            },
        }
    }

    /// Works until `stop` fires.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        lane::run(Arc::new(self), stop).await;
    }
}

impl LaneAgent for SuppressAgent {
    fn context(&self) -> &LaneContext {
        &self.context
    }
    fn deliver(&self, lease: &Lease) -> Result<String, DeliveryError> {
        let reason = self
            .context
            .spool
            .lease_body(lease)
            .ok()
            .and_then(|body| suppressed_reason(&body))
            .unwrap_or_else(|| {
                "a non-delivery report to an address that must not get one".to_owned()
            });
        Err(DeliveryError::permanent(
            FailureScope::Recipient,
            format!("bounce suppressed, not sent (no backscatter): {reason}"),
        ))
    }
}
