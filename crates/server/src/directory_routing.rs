//! The listener's [`Routing`] backed by the directory and the router.
//!
//! - RCPT: the router's decision for an SMTP-origin recipient: `550 5.1.1` for an unknown user
//!   in our domains (and for a generated form of a name outside the directory without a valid
//!   reply tag, or at a post office not in `[legacy] post_offices`), `554 5.7.1` outside them,
//!   accepted otherwise (legacy, modern, or held).
//! - Once accepted, mail is routed without checking reply tags again
//!   ([`Router::accepted`]): a tag that expires while the mail waits does not strand it.
//! - Queueing: `Legacy` goes to the `legacy` lane under the address as received (the legacy
//!   agent asks the router again for the legacy name); `Modern` to the `modern` lane,
//!   rewritten to the target address; `Hold` (a user being migrated) to the `cutover` lane,
//!   held: it is re-routed when a reloaded directory changes ([`DirectoryRouting::release`]).
//! - Mail already accepted (bounces, requeued mail) to an address outside our domains goes to the
//!   modern next hop, which relays it.

use std::sync::{Arc, PoisonError, RwLock};

use ccgate_core::{EmailAddress, Lane, ReversePath};
use ccgate_queue::{AdminAction, AdminRequest, Filter, Route, Spool};
use ccgate_router::{Destination, DirectoryHandle, Origin, RejectCode, Router, RouterConfig};
use ccgate_smtp::RcptVerdict;
use tracing::{info, warn};

use crate::routing::Routing;

/// Routing by the directory in service.
#[derive(Debug)]
pub struct DirectoryRouting {
    handle: Arc<DirectoryHandle>,
    /// Replaced whole by a configuration reload ([`DirectoryRouting::set_config`]).
    config: RwLock<Arc<RouterConfig>>,
}

impl DirectoryRouting {
    /// Routing with the directory in `handle` (replaced on reload) and `config`.
    pub fn new(handle: Arc<DirectoryHandle>, config: RouterConfig) -> Self {
        Self {
            handle,
            config: RwLock::new(Arc::new(config)),
        }
    }

    /// Puts new router settings in service (a configuration reload): every decision from now
    /// on uses them. Mail already queued keeps its route; held cutover mail is routed again
    /// by [`DirectoryRouting::release`].
    pub fn set_config(&self, config: RouterConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }

    /// The directory handle (for reloads).
    pub fn handle(&self) -> &Arc<DirectoryHandle> {
        &self.handle
    }

    /// The router settings in service.
    pub fn config(&self) -> Arc<RouterConfig> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The legacy address (`Name at PO`, rendered for the dialect) of an SMTP address the
    /// router sends to the legacy post office.
    pub fn legacy_recipient(&self, rcpt: &EmailAddress) -> Option<String> {
        let (directory, config) = (self.handle.current(), self.config());
        let router = Router::new(&directory, &config).accepted();
        match router.route_smtp(Origin::Smtp, rcpt).destination {
            Destination::Legacy { address } => router.render(&address).ok(),
            _ => None,
        }
    }

    /// After a directory reload: every recipient held in the cutover lane is routed again
    /// (a user now `migrated` gets their held mail). Returns how many messages were requeued.
    ///
    /// # Errors
    /// The spool's error.
    pub fn release(&self, spool: &Spool) -> Result<u64, ccgate_queue::QueueError> {
        let request = AdminRequest {
            action: AdminAction::Requeue,
            ids: Vec::new(),
            all: true,
            // Whatever their state: held, or made pending by `queue release` (no agent serves
            // the cutover lane, so only routing them again moves them).
            filter: Filter {
                destination: Some(Lane::Cutover.into()),
                ..Filter::default()
            },
        };
        let report = spool.admin(&request, std::time::SystemTime::now())?;
        Ok(report.affected.len() as u64)
    }
}

impl Routing for DirectoryRouting {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        let (directory, config) = (self.handle.current(), self.config());
        match Router::new(&directory, &config)
            .route_smtp(Origin::Smtp, rcpt)
            .destination
        {
            Destination::Reject {
                code: RejectCode::UserUnknown,
                ..
            } => RcptVerdict::Unknown,
            Destination::Reject {
                code: RejectCode::RelayDenied,
                ..
            } => RcptVerdict::RelayDenied,
            _ => RcptVerdict::Accept,
        }
    }

    fn route(&self, _sender: &ReversePath, rcpt: &EmailAddress) -> Route {
        let (directory, config) = (self.handle.current(), self.config());
        let decision = Router::new(&directory, &config)
            .accepted()
            .route_smtp(Origin::Smtp, rcpt);
        to_route(decision.destination, rcpt)
    }

    /// A quoted `"Name%PO%tag"` recipient is one the gateway issued when the router decodes it
    /// to a legacy name (its reply tag checked) or to a person in the directory, held or
    /// rewritten to their target. Never when it would leave for the modern side as given: only
    /// there could a `%` be read by another host as a route.
    fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
        let (directory, config) = (self.handle.current(), self.config());
        match Router::new(&directory, &config)
            .route_smtp(Origin::Smtp, rcpt)
            .destination
        {
            Destination::Legacy { .. } | Destination::Hold { .. } => true,
            Destination::Modern { recipient } => recipient != *rcpt,
            Destination::Reject { .. } => false,
        }
    }
}

impl DirectoryRouting {
    /// The route of a recipient of mail picked up from the legacy side (its SMTP form), or
    /// the refusal (`550 5.1.1` and why) for a name nobody has.
    pub fn route_from_legacy(&self, rcpt: &EmailAddress) -> Result<Route, String> {
        let (directory, config) = (self.handle.current(), self.config());
        let decision = Router::new(&directory, &config).route_smtp(Origin::Legacy, rcpt);
        match decision.destination {
            Destination::Reject { code, reason } => Err(format!("{code} {reason}")),
            destination => Ok(to_route(destination, rcpt)),
        }
    }
}

/// The queue's route for a decision about `rcpt`.
fn to_route(destination: Destination, rcpt: &EmailAddress) -> Route {
    {
        match destination {
            Destination::Legacy { .. } => Route::new(Lane::Legacy, rcpt.clone()),
            Destination::Modern { recipient } => Route::new(Lane::Modern, recipient),
            Destination::Hold { .. } => {
                info!(to = %rcpt, "held until the migration completes");
                Route::new(Lane::Cutover, rcpt.clone()).held()
            }
            Destination::Reject {
                code: RejectCode::RelayDenied,
                ..
            } => Route::new(Lane::Modern, rcpt.clone()),
            Destination::Reject { reason, .. } => {
                warn!(to = %rcpt, reason = %reason, "accepted recipient no longer in the directory; held for the administrator");
                Route::new(Lane::Unroutable, rcpt.clone()).held()
            }
        }
    }
}
