//! The listener's question to the router: take this recipient, and where does it go?

use ccgate_core::{EmailAddress, ReversePath};
use ccgate_queue::Route;
use ccgate_smtp::RcptVerdict;

/// Decides recipients for the SMTP listener. Must be cheap and synchronous: the session asks
/// for each RCPT of a pipelined group in one pass.
pub trait Routing: Send + Sync + 'static {
    /// Whether RCPT is accepted (`250`), unknown (`550 5.1.1`), not ours (`554 5.7.1`).
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict;

    /// Where an accepted recipient goes (lane and rewritten address). Called after the data,
    /// once per recipient.
    fn route(&self, sender: &ReversePath, rcpt: &EmailAddress) -> Route;
}

/// Routing by domain alone: the legacy domain's recipients go to the `legacy` lane, the modern
/// domain's to the `modern` lane, anything else is refused (no relaying). Used when no
/// directory is configured; the directory router replaces it.
#[derive(Debug, Clone)]
pub struct DomainRouting {
    /// Domain of users still on the legacy side.
    pub legacy_domain: String,
    /// Domain of migrated users.
    pub modern_domain: String,
}

impl Routing for DomainRouting {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        if rcpt.domain() == self.legacy_domain || rcpt.domain() == self.modern_domain {
            RcptVerdict::Accept
        } else {
            RcptVerdict::RelayDenied
        }
    }

    fn route(&self, _sender: &ReversePath, rcpt: &EmailAddress) -> Route {
        let lane = if rcpt.domain() == self.legacy_domain {
            "legacy"
        } else {
            "modern"
        };
        Route::new(lane, rcpt.clone())
    }
}
