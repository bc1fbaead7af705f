//! The glue between conversion and routing for `ccgate run`: the router's address rewriting
//! as the converter's [`AddressMap`], and the two codecs the legacy agents use.

use std::sync::Arc;

use ccgate_ccmail::{Header, LegacyAddress, Message};
use ccgate_convert::{
    AddressMap, ConvertOptions, LegacyContext, Mailbox, legacy_to_mime, mime_to_legacy,
};
use ccgate_core::{EmailAddress, Envelope, ReversePath};
use ccgate_queue::{Route, SUPPRESSED_LANE};
use ccgate_router::Router;
use ccgate_server::{
    Accepted, DirectoryRouting, LegacyCodec, PickupCodec, UNKNOWN_LANE, UNROUTABLE_LANE,
};

use crate::config::UnknownRecipients;
use tracing::{info, warn};

/// The router's rewriting (docs/directory.md: replies reach the sender's current mailbox) seen
/// as the converter's address map.
struct RouterMap<'a>(Router<'a>);

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

/// Conversion both ways with the directory in service.
pub struct Codec {
    routing: Arc<DirectoryRouting>,
    options: ConvertOptions,
    unknown: UnknownRecipients,
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
            unknown,
        }
    }
}

impl LegacyCodec for Codec {
    fn to_legacy(&self, rfc5322: &[u8]) -> Result<Message, String> {
        let directory = self.routing.handle().current();
        let map = RouterMap(Router::new(&directory, self.routing.config()));
        let conversion = mime_to_legacy(rfc5322, &self.options, &map);
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
        let directory = self.routing.handle().current();
        let map = RouterMap(Router::new(&directory, self.routing.config()));
        let mime = legacy_to_mime(message, &LegacyContext::default(), &self.options, &map)
            .map_err(|e| e.to_string())?;
        for note in &mime.notes {
            info!(message_id = %mime.message_id, note = %note, "converted from the legacy side");
        }
        let mut recipients = Vec::new();
        let mut routes = Vec::new();
        let ndr = is_legacy_ndr(message);
        for rcpt in &mime.recipients {
            match self.routing.route_from_legacy(rcpt) {
                // A legacy non-delivery report for mail from another system's robot (a bounce,
                // postmaster): not relayed back out (no backscatter, no loops). Queued to the
                // `suppressed` lane, whose agent fails it with the reason in the log.
                Ok(route)
                    if ndr
                        && route.destination == "modern"
                        && is_mail_system_address(&route.deliver_to) =>
                {
                    warn!(message_id = %mime.message_id, to = %rcpt, "legacy non-delivery report to a mail system's address: not relayed back out");
                    recipients.push(rcpt.clone());
                    routes.push(Route::new(SUPPRESSED_LANE, rcpt.clone()));
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
                    match self.unknown {
                        UnknownRecipients::Bounce => {
                            warn!(message_id = %mime.message_id, to = %rcpt, reason = %reason, "legacy recipient unknown; bounced to the sender");
                            routes.push(Route::new(UNKNOWN_LANE, rcpt.clone()));
                        }
                        UnknownRecipients::Hold => {
                            warn!(message_id = %mime.message_id, to = %rcpt, reason = %reason, "legacy recipient unknown; held in the unroutable lane");
                            routes.push(Route::new(UNROUTABLE_LANE, rcpt.clone()).held());
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

/// True for a legacy non-delivery report: from the post office's postmaster or a mailer
/// daemon, or with the subject routers and Import give their reports.
fn is_legacy_ndr(message: &Message) -> bool {
    const SUBJECTS: [&str; 6] = [
        "message not deliverable",
        "not deliverable",
        "undeliverable",
        "non-delivery",
        "nondeliverable",
        "delivery failure",
    ];
    message.headers.iter().any(|header| match header {
        Header::From(from) => {
            let from = from.trim().to_ascii_lowercase();
            from.starts_with("postmaster") || from.starts_with("mailer-daemon")
        }
        Header::Subject(subject) => {
            let subject = subject.trim().to_ascii_lowercase();
            SUBJECTS.iter().any(|s| subject.starts_with(s))
        }
        _ => false,
    })
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
        assert!(is_legacy_ndr(&message("Postmaster at HQ", "x")));
        assert!(is_legacy_ndr(&message(
            "Router at HQ",
            "Message not deliverable"
        )));
        assert!(!is_legacy_ndr(&message("Smith, John at HQ", "lunch")));
        assert!(is_mail_system_address(
            &"MAILER-DAEMON@far.test".parse().unwrap()
        ));
        assert!(!is_mail_system_address(&"alice@far.test".parse().unwrap()));
    }
}
