//! The glue between conversion and routing for `ccgate run`: the router's address rewriting
//! as the converter's [`AddressMap`], and the two codecs the legacy agents use.

use std::sync::Arc;

use ccgate_ccmail::{Header, LegacyAddress, Message};
use ccgate_convert::{
    AddressMap, ConvertOptions, LegacyContext, Mailbox, legacy_to_mime, mime_to_legacy_from,
};
use ccgate_core::{EmailAddress, Envelope, Lane, ReversePath};
use ccgate_queue::Route;
use ccgate_router::Router;
use ccgate_server::{Accepted, DirectoryRouting, LegacyCodec, PickupCodec};

use crate::config::UnknownRecipients;
use tracing::{info, warn};

/// The router's rewriting (docs/directory.md: replies reach the sender's current mailbox) seen
/// as the converter's address map (also for `ccgate convert`).
pub struct RouterMap<'a>(pub Router<'a>);

impl AddressMap for RouterMap<'_> {
    fn to_smtp(&self, legacy: &LegacyAddress) -> Option<Mailbox> {
        let form = self.0.smtp_form(legacy).ok()?;
        Some(Mailbox {
            display: form.display,
            address: form.address,
        })
    }

    fn to_legacy(&self, smtp: &EmailAddress, display: Option<&str>) -> Option<String> {
        let form = self.0.legacy_form(smtp, display);
        self.0.render(&form.address).ok()
    }
}

/// The SMTP next hop's line fitting: `ccgate-convert` re-encodes parts with lines over 998
/// octets (quoted-printable) so a strict next hop takes them with the same content.
pub struct FitLines;

impl ccgate_server::LineFitter for FitLines {
    fn fit<'a>(&self, message: &'a [u8], max: usize) -> std::borrow::Cow<'a, [u8]> {
        ccgate_convert::fit_line_length(message, max)
    }
}

/// Conversion both ways with the directory in service.
pub struct Codec {
    routing: Arc<DirectoryRouting>,
    options: ConvertOptions,
    /// Replaced by a configuration reload ([`Codec::set_unknown_recipients`]).
    unknown: std::sync::RwLock<UnknownRecipients>,
    /// Post offices already warned about (replies to their senders are refused).
    unlisted_warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Codec {
    /// A codec on the directory behind `routing`; `unknown` says what becomes of legacy
    /// recipients the directory does not know.
    pub fn new(
        routing: Arc<DirectoryRouting>,
        options: ConvertOptions,
        unknown: UnknownRecipients,
    ) -> Self {
        Self {
            routing,
            options,
            unknown: std::sync::RwLock::new(unknown),
            unlisted_warned: std::sync::Mutex::default(),
        }
    }

    /// Puts a reloaded `legacy.unknown_recipients` in service for the messages read from now on.
    pub fn set_unknown_recipients(&self, unknown: UnknownRecipients) {
        *self
            .unknown
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = unknown;
    }

    fn unknown_recipients(&self) -> UnknownRecipients {
        *self
            .unknown
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LegacyCodec for Codec {
    fn to_legacy(&self, rfc5322: &[u8], sender: &ReversePath) -> Result<Message, String> {
        let (directory, config) = (self.routing.handle().current(), self.routing.config());
        let map = RouterMap(Router::new(&directory, &config));
        let conversion = mime_to_legacy_from(rfc5322, sender.mailbox(), &self.options, &map);
        for note in &conversion.notes {
            info!(message_id = ?conversion.message_id, note = %note, "converted for the legacy side");
        }
        Ok(conversion.message)
    }

    fn recipient(&self, rcpt: &EmailAddress) -> Option<String> {
        self.routing.legacy_recipient(rcpt)
    }
}

impl PickupCodec for Codec {
    fn accept(&self, message: &Message, _raw_len: u64) -> Result<Accepted, String> {
        let (directory, config) = (self.routing.handle().current(), self.routing.config());
        let map = RouterMap(Router::new(&directory, &config));
        let mime = legacy_to_mime(message, &LegacyContext::default(), &self.options, &map)
            .map_err(|e| e.to_string())?;
        for note in &mime.notes {
            info!(message_id = %mime.message_id, note = %note, "converted from the legacy side");
        }
        let mut recipients = Vec::new();
        let mut routes = Vec::new();
        let is_person = |name: &str| {
            ccgate_ccmail::parse_address(name)
                .ok()
                .and_then(|address| address.name_key())
                .is_some_and(|key| directory.lookup_name_key(&key).is_some())
        };
        let ndr = is_legacy_ndr(message, is_person);
        self.warn_if_replies_refused(message, is_person);
        for rcpt in &mime.recipients {
            match self.routing.route_from_legacy(rcpt) {
                // A legacy non-delivery report for mail from another system's robot (a bounce,
                // postmaster): not relayed back out (no backscatter, no loops). Queued to the
                // `suppressed` lane, whose agent fails it with the reason in the log.
                Ok(route)
                    if ndr
                        && route.destination == Lane::Modern
                        && is_mail_system_address(&route.deliver_to) =>
                {
                    warn!(message_id = %mime.message_id, to = %rcpt, "legacy non-delivery report to a mail system's address: not relayed back out");
                    recipients.push(rcpt.clone());
                    routes.push(Route::new(Lane::Suppressed, rcpt.clone()));
                }
                Ok(route) => {
                    recipients.push(rcpt.clone());
                    routes.push(route);
                }
                // Nobody has this address. It is still queued, so nothing the legacy side
                // handed over goes silently: in the `unknown` lane, whose agent fails it with
                // 5.1.1 so the legacy sender gets a non-delivery report; or,
                // with `unknown_recipients = "hold"`, held in the `unroutable` lane for the
                // administrator (`ccgate queue list --destination unroutable`; requeue after
                // fixing the directory, or delete).
                Err(reason) => {
                    recipients.push(rcpt.clone());
                    match self.unknown_recipients() {
                        UnknownRecipients::Bounce => {
                            warn!(message_id = %mime.message_id, to = %rcpt, reason = %reason, "legacy recipient unknown; bounced to the sender");
                            routes.push(Route::new(Lane::Unknown, rcpt.clone()));
                        }
                        UnknownRecipients::Hold => {
                            warn!(message_id = %mime.message_id, to = %rcpt, reason = %reason, "legacy recipient unknown; held in the unroutable lane");
                            routes.push(Route::new(Lane::Unroutable, rcpt.clone()).held());
                        }
                    }
                }
            }
        }
        if recipients.is_empty() {
            return Err(format!("no recipient (message {})", mime.message_id));
        }
        // A non-delivery report leaves with the null sender, as bounces do (RFC 5321 §4.5.5):
        // nothing bounces it back.
        let sender = if ndr {
            ReversePath::Null
        } else {
            ReversePath::Mailbox(mime.sender)
        };
        Ok(Accepted {
            envelope: Envelope { sender, recipients },
            routes,
            body: mime.bytes,
            message_id: mime.message_id,
        })
    }
}

impl Codec {
    /// A sender outside the directory at a post office not in `[legacy] post_offices` gets a
    /// tagged reply address that RCPT will refuse: say so, once per post office and process,
    /// so the administrator can list it.
    fn warn_if_replies_refused(&self, message: &Message, is_person: impl Fn(&str) -> bool) {
        let Some(from) = message.headers.iter().find_map(|header| match header {
            Header::From(from) => Some(from.as_str()),
            _ => None,
        }) else {
            return;
        };
        let Some(po) = ccgate_ccmail::parse_address(from)
            .ok()
            .and_then(|address| address.po().map(str::to_owned))
        else {
            return;
        };
        let config = self.routing.config();
        if is_person(from)
            || config.serves_post_office(&po)
            || po.eq_ignore_ascii_case(&config.gateway_po)
        {
            return;
        }
        let mut warned = self
            .unlisted_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.insert(po.to_ascii_lowercase()) {
            warn!(post_office = %po, from = %from, "a sender outside the directory at a post office not in [legacy] post_offices: replies to them will be refused (550 5.1.1); add the post office to the list");
        }
    }
}

/// True for a legacy non-delivery report: from the post office's postmaster or a mailer
/// daemon, or with the subject routers and Import give their reports, from a sender who is not
/// a person in the directory (`is_person` answers for the `From:` text): a user's own message
/// titled "Undeliverable items" keeps its sender and its bounces.
fn is_legacy_ndr(message: &Message, is_person: impl Fn(&str) -> bool) -> bool {
    const SUBJECTS: [&str; 6] = [
        "message not deliverable",
        "not deliverable",
        "undeliverable",
        "non-delivery",
        "nondeliverable",
        "delivery failure",
    ];
    let from = message.headers.iter().find_map(|header| match header {
        Header::From(from) => Some(from.trim()),
        _ => None,
    });
    let robot = from.is_some_and(|from| {
        let from = from.to_ascii_lowercase();
        from.starts_with("postmaster") || from.starts_with("mailer-daemon")
    });
    let report_subject = message.headers.iter().any(|header| match header {
        Header::Subject(subject) => {
            let subject = subject.trim().to_ascii_lowercase();
            SUBJECTS.iter().any(|s| subject.starts_with(s))
        }
        _ => false,
    });
    robot || (report_subject && !from.is_some_and(is_person))
}

/// `postmaster@...` or `MAILER-DAEMON@...`: another mail system, never sent a report.
fn is_mail_system_address(address: &EmailAddress) -> bool {
    ["postmaster", "mailer-daemon"]
        .iter()
        .any(|robot| address.local().eq_ignore_ascii_case(robot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, subject: &str) -> Message {
        Message {
            headers: vec![
                Header::From(from.to_owned()),
                Header::Subject(subject.to_owned()),
            ],
            ..Message::default()
        }
    }

    #[test]
    fn legacy_reports_are_recognised() {
        let nobody = |_: &str| false;
        let john = |from: &str| from == "Smith, John at HQ";
        assert!(is_legacy_ndr(&message("Postmaster at HQ", "x"), nobody));
        assert!(is_legacy_ndr(
            &message("Router at HQ", "Message not deliverable"),
            nobody
        ));
        assert!(!is_legacy_ndr(&message("Smith, John at HQ", "lunch"), john));
        assert!(
            !is_legacy_ndr(
                &message("Smith, John at HQ", "Undeliverable items at the dock"),
                john
            ),
            "a person's own message keeps its sender"
        );
        assert!(is_mail_system_address(
            &"MAILER-DAEMON@far.test".parse().unwrap()
        ));
        assert!(!is_mail_system_address(&"alice@far.test".parse().unwrap()));
    }
}
