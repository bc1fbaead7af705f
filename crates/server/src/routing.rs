//! The listener's question to the router: take this recipient, and where does it go?

use ccgate_core::{EmailAddress, Lane, ReversePath};
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

    /// Whether `rcpt`, a quoted local part with a `%` (which the SMTP session otherwise refuses
    /// as the percent hack), is an address the gateway issued and routes itself: see
    /// [`ccgate_smtp::RecipientPolicy::vouches_for`]. Default: none is.
    fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
        let _ = rcpt;
        false
    }
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
            Lane::Legacy
        } else {
            Lane::Modern
        };
        Route::new(lane, rcpt.clone())
    }
}

/// Routes what waits in the spool for the router (bounces, requeued mail): at most `max`
/// messages per call. Returns how many were routed.
///
/// # Errors
/// The spool's error when a route cannot be recorded.
pub fn route_unrouted(
    spool: &ccgate_queue::Spool,
    routing: &dyn Routing,
    max: usize,
    now: std::time::SystemTime,
) -> Result<usize, ccgate_queue::QueueError> {
    let pending = spool.unrouted(max);
    for message in &pending {
        let routes: Vec<(u16, Route)> = message
            .recipients
            .iter()
            .map(|(idx, rcpt)| (*idx, routing.route(&message.sender, rcpt)))
            .collect();
        spool.route(message.queue_id, &routes, now)?;
        for (_, route) in &routes {
            tracing::info!(queue_id = %message.queue_id, to = %route.deliver_to, lane = %route.destination, "routed");
        }
    }
    Ok(pending.len())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use ccgate_core::{Envelope, ReversePath};
    use ccgate_queue::{Route, Spool, SpoolOptions};

    use super::*;

    #[test]
    fn unrouted_mail_is_routed_by_domain() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let rcpt: EmailAddress = "bob@legacy.example.com".parse().unwrap();
        let env = Envelope {
            sender: ReversePath::Null,
            recipients: vec![rcpt.clone()],
        };
        // An empty destination means "route me later" (as bounces and requeued mail are).
        spool
            .enqueue(
                &env,
                &[Route::new("", rcpt)],
                b"Subject: x\r\n\r\nx\r\n",
                SystemTime::now(),
            )
            .unwrap();
        let routing = DomainRouting {
            legacy_domain: "legacy.example.com".into(),
            modern_domain: "modern.example.com".into(),
        };
        assert_eq!(
            route_unrouted(&spool, &routing, 10, SystemTime::now()).unwrap(),
            1
        );
        assert_eq!(
            route_unrouted(&spool, &routing, 10, SystemTime::now()).unwrap(),
            0,
            "routed once"
        );
        let leases = spool.lease(Lane::Legacy, 10, SystemTime::now()).unwrap();
        assert_eq!(leases.len(), 1);
        assert!(
            spool
                .lease(Lane::Modern, 10, SystemTime::now())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn domain_routing_refuses_relaying() {
        let routing = DomainRouting {
            legacy_domain: "legacy.example.com".into(),
            modern_domain: "modern.example.com".into(),
        };
        let check = |a: &str| routing.check(&a.parse().unwrap());
        assert_eq!(check("a@legacy.example.com"), RcptVerdict::Accept);
        assert_eq!(check("a@MODERN.example.com"), RcptVerdict::Accept);
        assert_eq!(check("a@elsewhere.example"), RcptVerdict::RelayDenied);
    }
}
