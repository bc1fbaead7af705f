//! Routing: one [`Decision`] per recipient, following the rules of docs/directory.md.
//!
//! A [`Router`] borrows a compiled [`Directory`] and a [`RouterConfig`]; it holds no state and
//! does no I/O, so a decision depends only on the directory, the config, where the message
//! came from ([`Origin`]) and the recipient. Held mail is re-routed by its owner (the queue)
//! whenever a new directory is swapped in: that is how mail for a `migrating` user is released
//! once the entry becomes `migrated`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ccgate_ccmail::{Dialect, LegacyAddress, RenderOptions, find_outside_quotes, parse_address};
use ccgate_core::{EmailAddress, Envelope};

use crate::directory::{Directory, Entry, Matched, State};
use crate::rewrite::{Generated, decode_tagged};
use crate::tag::{Day, ReplyTags, TagStatus};

/// What the router needs to know of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// SMTP domain of legacy users (`[legacy] domain`), lower case.
    pub legacy_domain: String,
    /// SMTP domain of migrated mailboxes (`[modern] domain`), lower case.
    pub modern_domain: String,
    /// The connected legacy post office (`[legacy] post_office`).
    pub post_office: String,
    /// The gateway's post-office entry in the legacy directory (`[legacy] gateway_po`).
    pub gateway_po: String,
    /// What to do with mail for `migrating` users (`[migration] cutover`).
    pub cutover: Cutover,
    /// What the post office's Import accepts (`[legacy] dialect`): how legacy addresses are
    /// rendered.
    pub dialect: Dialect,
    /// The legacy post offices a name that is not in the directory may be addressed at from
    /// SMTP (`[legacy] post_offices`); empty means the connected one alone.
    pub post_offices: Vec<String>,
    /// Bulletin boards reachable from SMTP (`[legacy] smtp_bulletin_boards`); none by default.
    pub smtp_bulletin_boards: Vec<String>,
    /// The keys and lifetime of reply tags; without them no generated form of a name outside
    /// the directory is accepted from SMTP, and none is issued with a tag.
    pub reply_tags: Option<ReplyTags>,
    /// The gateway's host name (`[smtp] hostname`). `postmaster@` it is the postmaster's one
    /// home: where `RCPT TO:<Postmaster>` goes, and mail for the postmaster of each domain
    /// the gateway serves (RFC 5321 4.5.1), unless the directory has an entry for it.
    pub hostname: String,
}

impl Default for RouterConfig {
    /// The embedded defaults (docs/configuration.md).
    fn default() -> Self {
        Self {
            legacy_domain: "legacy.example.com".to_owned(),
            modern_domain: "modern.example.com".to_owned(),
            post_office: "HQ".to_owned(),
            gateway_po: "SMTPGW".to_owned(),
            cutover: Cutover::Hold,
            dialect: Dialect::Ie8,
            post_offices: Vec::new(),
            smtp_bulletin_boards: Vec::new(),
            reply_tags: None,
            hostname: "ccgate.localdomain".to_owned(),
        }
    }
}

impl RouterConfig {
    /// True for one of our two domains (compared without regard to case; subdomains are not
    /// ours).
    pub fn is_our_domain(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.legacy_domain)
            || domain.eq_ignore_ascii_case(&self.modern_domain)
    }

    /// `postmaster@<hostname>`, where postmaster's mail goes (see [`RouterConfig::hostname`]);
    /// `None` for a host name that cannot be a domain.
    pub fn postmaster(&self) -> Option<EmailAddress> {
        EmailAddress::new("postmaster", &self.hostname.to_ascii_lowercase()).ok()
    }

    /// True for `postmaster@` one of our domains or the host name, any case.
    pub fn is_postmaster(&self, address: &EmailAddress) -> bool {
        address.local().eq_ignore_ascii_case("postmaster")
            && (self.is_our_domain(address.domain())
                || address.domain().eq_ignore_ascii_case(&self.hostname))
    }

    /// How legacy addresses are written for the post office.
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            dialect: self.dialect,
            gateway_po: self.gateway_po.clone(),
        }
    }

    fn is_gateway(&self, po: &str) -> bool {
        po.eq_ignore_ascii_case(&self.gateway_po)
    }

    /// True for a post office that SMTP mail may reach (`[legacy] post_offices`, by default the
    /// connected one).
    pub fn serves_post_office(&self, po: &str) -> bool {
        if self.post_offices.is_empty() {
            return po.eq_ignore_ascii_case(&self.post_office);
        }
        self.post_offices.iter().any(|p| p.eq_ignore_ascii_case(po))
    }

    /// True for a bulletin board configured as reachable from SMTP.
    pub fn board_reachable(&self, name: &str) -> bool {
        self.smtp_bulletin_boards
            .iter()
            .any(|b| b.trim_start_matches('#').eq_ignore_ascii_case(name))
    }
}

/// Mail for `migrating` users (`[migration] cutover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cutover {
    /// Hold it until the entry becomes `migrated`, then deliver to the target address.
    Hold,
    /// Keep delivering to the legacy mailbox until the switch.
    Legacy,
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Received by SMTP (the modern side or the Internet).
    Smtp,
    /// Picked up from the legacy post office's export files.
    Legacy,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Smtp => "smtp",
            Self::Legacy => "legacy",
        })
    }
}

/// A recipient as given: an SMTP mailbox or a legacy address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// `user@domain`.
    Smtp(EmailAddress),
    /// Any form of legacy-format.md §7: `Name at PO`, a bare name, `user@domain at SMTPGW`,
    /// bracketed one-offs.
    Legacy(LegacyAddress),
}

impl Recipient {
    /// Reads a recipient: a plain `user@domain` (optionally in `<>`) is an SMTP mailbox,
    /// anything else a legacy address.
    ///
    /// # Errors
    /// The legacy reader's error when the text is neither.
    pub fn parse(text: &str) -> Result<Self, ccgate_ccmail::AddressError> {
        let trimmed = text.trim();
        // White space outside a quoted local part (`Name at PO`, `u@d at SMTPGW`) is the
        // legacy side's; `"John Doe"@example.org` is an SMTP mailbox.
        if find_outside_quotes(trimmed, char::is_whitespace).is_none()
            && let Ok(address) = EmailAddress::from_str(trimmed)
        {
            return Ok(Self::Smtp(address));
        }
        parse_address(trimmed).map(Self::Legacy)
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Smtp(address) => address.fmt(f),
            Self::Legacy(address) => address.fmt(f),
        }
    }
}

/// Why a recipient is refused, as an SMTP reply code and enhanced status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// `550 5.1.1`: no such user in our domains.
    UserUnknown,
    /// `554 5.7.1`: relaying denied (an SMTP recipient outside our domains).
    RelayDenied,
}

impl RejectCode {
    /// `550 5.1.1` or `554 5.7.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserUnknown => "550 5.1.1",
            Self::RelayDenied => "554 5.7.1",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Where a recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Destination {
    /// Into the legacy post office, addressed `legacy_name at post_office` (or a bulletin
    /// board, or a one-off name as addressed).
    Legacy {
        /// The recipient as the post office's Import gets it.
        #[serde(serialize_with = "serialize_display")]
        address: LegacyAddress,
    },
    /// To the modern next hop, with this SMTP recipient.
    Modern {
        /// The rewritten recipient: the target address of a migrated user, or the address as
        /// given for mail relayed outside.
        recipient: EmailAddress,
    },
    /// Held: the user is `migrating` and the cutover setting is `hold`. Released (re-routed)
    /// when a reloaded directory says `migrated`.
    Hold {
        /// Where it will go once migrated, if the entry says already.
        target: Option<EmailAddress>,
    },
    /// Refused.
    Reject {
        /// `550 5.1.1` or `554 5.7.1`.
        code: RejectCode,
        /// For the reply text and the log.
        reason: String,
    },
}

fn serialize_display<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl Destination {
    /// `legacy`, `modern`, `hold` or `reject`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Legacy { .. } => "legacy",
            Self::Modern { .. } => "modern",
            Self::Hold { .. } => "hold",
            Self::Reject { .. } => "reject",
        }
    }

    fn legacy(name: &str, po: &str) -> Self {
        Self::Legacy {
            address: LegacyAddress::Name {
                name: name.to_owned(),
                po: Some(po.to_owned()),
                literal: false,
            },
        }
    }
}

/// The routing decision for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Where the copy goes.
    pub destination: Destination,
    /// The directory entry and the proxy (or column) that matched, if any.
    pub matched: Option<Matched>,
    /// Why: the rule applied (and how the recipient was read). Its `Display` is a sentence.
    pub why: Why,
}

impl Decision {
    /// The recipient as rewritten for its destination, for people and logs: the legacy
    /// address, the modern recipient, the held mail's eventual target.
    pub fn rewritten_recipient(&self) -> Option<String> {
        match &self.destination {
            Destination::Legacy { address } => Some(address.to_string()),
            Destination::Modern { recipient } => Some(recipient.to_string()),
            Destination::Hold { target } => target.as_ref().map(ToString::to_string),
            Destination::Reject { .. } => None,
        }
    }

    /// The matched entry, if any.
    pub fn entry(&self) -> Option<&Arc<Entry>> {
        self.matched.as_ref().map(|m| &m.entry)
    }

    /// True when the recipient is refused.
    pub fn is_reject(&self) -> bool {
        matches!(self.destination, Destination::Reject { .. })
    }

    /// One sentence: how the recipient matched, then why it goes where it goes.
    pub fn explain(&self) -> String {
        match &self.matched {
            Some(matched) => format!("matches {}; {}", matched.describe(), self.why),
            None => self.why.to_string(),
        }
    }
}

/// Why a decision was made: the steps that led to the rule (empty in the common case, so a
/// decision costs no formatting until someone displays it), then the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    /// How the recipient was read before the rule applied, outermost first.
    pub steps: Vec<Step>,
    /// The rule of docs/directory.md that decided.
    pub rule: Rule,
}

impl Why {
    fn new(rule: Rule) -> Self {
        Self {
            steps: Vec::new(),
            rule,
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            write!(f, "{step}; ")?;
        }
        self.rule.fmt(f)
    }
}

impl serde::Serialize for Why {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A step in reading a recipient before a rule applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// A legacy form carrying an SMTP address (`user@domain at GW`, a phrase, an SMTP one-off).
    Carries(EmailAddress),
    /// ccgate's generated SMTP form of a legacy address (`IMCEACCMAIL-...`).
    Generated(LegacyAddress),
    /// Exchange's `IMCEAEX-` form of an X.500 DN.
    ImceaEx(String),
    /// A `[ccmail:...]` one-off, read as the address inside.
    CcMailOneOff,
    /// A name matched although written with another post office than the entry's.
    OtherPostOffice {
        /// The post office as written.
        given: String,
        /// The entry's post office.
        home: String,
    },
    /// The reply tag of a generated form, checked.
    Tag(TagStatus),
    /// A bulletin board configured as reachable from SMTP.
    BoardReachable,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Carries(address) => write!(f, "carries the SMTP address {address}"),
            Self::Generated(legacy) => {
                write!(f, "ccgate's SMTP form of the legacy address {legacy}")
            }
            Self::ImceaEx(dn) => write!(f, "the IMCEAEX form of X500:{dn}"),
            Self::CcMailOneOff => f.write_str("a ccmail one-off, read as the address inside"),
            Self::OtherPostOffice { given, home } => write!(
                f,
                "written at {given}, the entry's post office is {home} (names are unique whatever the post office)"
            ),
            Self::Tag(status) => status.fmt(f),
            Self::BoardReachable => {
                f.write_str("a bulletin board listed in [legacy] smtp_bulletin_boards")
            }
        }
    }
}

/// The rule that decided (docs/directory.md).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// A `legacy` user.
    LegacyUser,
    /// A `migrating` user, cutover `hold`.
    MigratingHeld,
    /// A `migrating` user, cutover `legacy`.
    MigratingToLegacy,
    /// A `migrated` user.
    MigratedUser,
    /// An entry that should reach the legacy side but has no legacy name.
    NoLegacyName,
    /// A `migrated` entry without a target address.
    NoTarget,
    /// In one of our domains, no entry (SMTP origin, or the legacy domain).
    UnknownInOurDomain,
    /// In the modern domain, no entry, from the legacy side.
    ModernDomainUnlisted,
    /// Outside our domains, by SMTP.
    RelayDenied,
    /// Outside our domains, from the legacy side.
    OutsideFromLegacy,
    /// A bare name matching no entry.
    UnknownBareName,
    /// A name at the gateway's post office matching no entry.
    UnknownAtGateway,
    /// `Name at PO` matching no entry, PO not the gateway.
    LegacyNotInDirectory,
    /// A leading-comma one-off name.
    LiteralName,
    /// A leading-comma one-off name without a usable post office.
    LiteralWithoutPostOffice,
    /// A bulletin board.
    BulletinBoard,
    /// A bulletin board at the gateway.
    BulletinBoardAtGateway,
    /// A legacy form whose SMTP address is malformed.
    BadSmtpAddress(String),
    /// An X.500 address that no entry has.
    UnknownX500,
    /// A one-off of a type ccgate cannot route.
    NoRouteForType(String),
    /// A display name with no address.
    DisplayNameOnly,
    /// A generated form, from SMTP, for a name not in the directory, at a post office not in
    /// `[legacy] post_offices`.
    PostOfficeNotServed(String),
    /// A generated form, from SMTP, for a bulletin board not configured as reachable.
    BulletinBoardNotReachable,
    /// A generated form, from SMTP, for a name not in the directory, without a valid tag.
    ReplyTag(TagStatus),
    /// `postmaster@` one of our domains or the host name, no entry: the postmaster's home.
    Postmaster,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LegacyUser => "legacy user: deliver into the legacy post office",
            Self::MigratingHeld => {
                "migrating user, cutover = hold: held, released when the directory says migrated (never bounced)"
            }
            Self::MigratingToLegacy => {
                "migrating user, cutover = legacy: deliver into the legacy post office until migrated"
            }
            Self::MigratedUser => {
                "migrated user: deliver to the modern next hop as the target address (the old legacy mailbox gets nothing, KB Q253306)"
            }
            Self::NoLegacyName => "the entry has no legacy name to deliver to",
            Self::NoTarget => "migrated entry without a target address",
            Self::UnknownInOurDomain => "in our domain but matches no directory entry",
            Self::ModernDomainUnlisted => {
                "in the modern domain but not in the directory: the modern side knows its own mailboxes, so it goes to the modern next hop unchanged"
            }
            Self::RelayDenied => "outside our domains and arrived by SMTP: relay denied",
            Self::OutsideFromLegacy => {
                "outside address sent from the legacy side: the modern next hop relays it"
            }
            Self::UnknownBareName => "bare name that matches no directory entry",
            Self::UnknownAtGateway => "no directory entry by that name behind the gateway",
            Self::LegacyNotInDirectory => {
                "not in the directory: deliver into the legacy post office as addressed (the post office knows its users)"
            }
            Self::LiteralName => {
                "one-off name (leading comma), never resolved: deliver into the legacy post office as addressed"
            }
            Self::LiteralWithoutPostOffice => {
                "one-off name (leading comma) without a post office ccgate can deliver to"
            }
            Self::BulletinBoard => "bulletin board: deliver into the legacy post office",
            Self::BulletinBoardAtGateway => "no bulletin board behind the gateway",
            Self::BadSmtpAddress(reason) => return write!(f, "bad SMTP address: {reason}"),
            Self::UnknownX500 => "no entry has this X500 address",
            Self::NoRouteForType(kind) => {
                return write!(f, "ccgate has no route for {kind} addresses");
            }
            Self::DisplayNameOnly => "a display name alone carries no address",
            Self::PostOfficeNotServed(po) => {
                return write!(
                    f,
                    "not in the directory, and post office {po} is not in [legacy] post_offices: not reachable from SMTP"
                );
            }
            Self::BulletinBoardNotReachable => {
                "bulletin board not listed in [legacy] smtp_bulletin_boards: not reachable from SMTP"
            }
            Self::ReplyTag(status) => {
                return write!(
                    f,
                    "not in the directory, {status}: only reply addresses this gateway issued are accepted"
                );
            }
            Self::Postmaster => {
                "postmaster of a domain this gateway serves (RFC 5321 4.5.1), not in the directory: to postmaster@ the gateway's host name on the modern next hop, where RCPT TO:<Postmaster> goes"
            }
        })
    }
}

/// The decisions for an envelope, in recipient order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// One per recipient.
    pub decisions: Vec<Decision>,
}

/// Routes recipients against one directory.
#[derive(Debug, Clone, Copy)]
pub struct Router<'a> {
    directory: &'a Directory,
    config: &'a RouterConfig,
    today: Day,
    accepted: bool,
}

impl<'a> Router<'a> {
    /// A router over this directory and config.
    /// The day (for reply tags) is today by the system clock; see [`Router::on`].
    pub fn new(directory: &'a Directory, config: &'a RouterConfig) -> Self {
        Self::on(directory, config, Day::today())
    }

    /// A router that takes `today` as the day, for reply tags it makes and checks.
    pub fn on(directory: &'a Directory, config: &'a RouterConfig, today: Day) -> Self {
        Self {
            directory,
            config,
            today,
            accepted: false,
        }
    }

    /// The same router for mail already accepted (routed after DATA, delivered, requeued,
    /// bounced): reply tags and `[legacy] post_offices` were checked at RCPT and are not
    /// checked again, so a tag that expires while the mail waits does not strand it.
    #[must_use]
    pub fn accepted(mut self) -> Self {
        self.accepted = true;
        self
    }

    /// The day reply tags are made and checked on.
    pub fn today(&self) -> Day {
        self.today
    }

    /// The directory.
    pub fn directory(&self) -> &'a Directory {
        self.directory
    }

    /// The config.
    pub fn config(&self) -> &'a RouterConfig {
        self.config
    }

    /// Routes one recipient.
    pub fn route(&self, origin: Origin, recipient: &Recipient) -> Decision {
        match recipient {
            Recipient::Smtp(address) => self.smtp(origin, address, true),
            Recipient::Legacy(address) => self.legacy(origin, address, true),
        }
    }

    /// Routes an SMTP recipient.
    pub fn route_smtp(&self, origin: Origin, recipient: &EmailAddress) -> Decision {
        self.smtp(origin, recipient, true)
    }

    /// Routes a legacy-form recipient (normally with [`Origin::Legacy`]).
    pub fn route_legacy(&self, origin: Origin, recipient: &LegacyAddress) -> Decision {
        self.legacy(origin, recipient, true)
    }

    /// Routes every recipient of an envelope received by SMTP.
    pub fn route_envelope(&self, envelope: &Envelope) -> Routed {
        Routed {
            decisions: envelope
                .recipients
                .iter()
                .map(|r| self.smtp(Origin::Smtp, r, true))
                .collect(),
        }
    }

    /// Where mail for this entry goes now: the rule of its state.
    pub fn for_entry(&self, matched: Matched) -> Decision {
        let entry = &matched.entry;
        let legacy = || match (entry.legacy_name(), entry.post_office()) {
            (Some(name), Some(po)) => Some(Destination::legacy(name, po)),
            _ => None,
        };
        let (destination, rule) = match entry.state() {
            State::Legacy => match legacy() {
                Some(destination) => (destination, Rule::LegacyUser),
                None => (reject_unknown(), Rule::NoLegacyName),
            },
            State::Migrating => match (self.config.cutover, legacy()) {
                (Cutover::Legacy, Some(destination)) => (destination, Rule::MigratingToLegacy),
                _ => (
                    Destination::Hold {
                        target: entry.target_address().cloned(),
                    },
                    Rule::MigratingHeld,
                ),
            },
            State::Migrated => match entry.target_address() {
                Some(target) => (
                    Destination::Modern {
                        recipient: target.clone(),
                    },
                    Rule::MigratedUser,
                ),
                None => (reject_unknown(), Rule::NoTarget),
            },
        };
        Decision {
            destination,
            matched: Some(matched),
            why: Why::new(rule),
        }
    }

    fn smtp(&self, origin: Origin, address: &EmailAddress, decode: bool) -> Decision {
        // By SMTP only our domains are ours to deliver: an outside address the directory holds
        // (a migrated user's target in another system, a proxy in a domain not configured here)
        // is still relaying, or anyone could send through the gateway to it.
        let domain = address.domain();
        let ours = self.config.is_our_domain(domain);
        if (ours || origin == Origin::Legacy)
            && let Some(matched) = self.directory.lookup_smtp(address)
        {
            return self.for_entry(matched);
        }
        if self.config.is_postmaster(address)
            && let Some(postmaster) = self.config.postmaster()
        {
            return decision(
                Destination::Modern {
                    recipient: postmaster,
                },
                Rule::Postmaster,
            );
        }
        if ours {
            if decode {
                match decode_tagged(address) {
                    Some((Generated::Legacy(legacy), tag)) => {
                        let mut decision = self.legacy(origin, &legacy, false);
                        if origin == Origin::Smtp && !self.accepted {
                            decision = self.guard_generated(decision, &legacy, tag.as_deref());
                        }
                        return with_step(decision, Step::Generated(legacy));
                    }
                    Some((Generated::X500(dn), _)) => {
                        if let Some(matched) = self.directory.lookup_x500(&dn) {
                            return with_step(self.for_entry(matched), Step::ImceaEx(dn));
                        }
                    }
                    None => {}
                }
            }
            if origin == Origin::Legacy && domain.eq_ignore_ascii_case(&self.config.modern_domain) {
                return decision(
                    Destination::Modern {
                        recipient: address.clone(),
                    },
                    Rule::ModernDomainUnlisted,
                );
            }
            return decision(reject_unknown(), Rule::UnknownInOurDomain);
        }
        match origin {
            Origin::Smtp => decision(
                Destination::Reject {
                    code: RejectCode::RelayDenied,
                    reason: "relay access denied".to_owned(),
                },
                Rule::RelayDenied,
            ),
            Origin::Legacy => decision(
                Destination::Modern {
                    recipient: address.clone(),
                },
                Rule::OutsideFromLegacy,
            ),
        }
    }

    /// The policy for a generated form received by SMTP (docs/directory.md, the reply-tag
    /// rule): a name in the directory is taken as it is; anything else must be at a post office in
    /// `[legacy] post_offices` and carry a valid reply tag (a bulletin board must be listed in
    /// `[legacy] smtp_bulletin_boards` instead), or it is refused with `550 5.1.1`.
    fn guard_generated(
        &self,
        decided: Decision,
        legacy: &LegacyAddress,
        tag: Option<&str>,
    ) -> Decision {
        if decided.matched.is_some() {
            return decided;
        }
        let Destination::Legacy { address } = &decided.destination else {
            return decided;
        };
        let (po, board) = match address {
            LegacyAddress::Name { po, .. } => (po.as_deref(), None),
            LegacyAddress::BulletinBoard { name, po } => (po.as_deref(), Some(name.as_str())),
            _ => (None, None),
        };
        let po = po.unwrap_or(&self.config.post_office);
        if !self.config.serves_post_office(po) {
            return decision(reject_unknown(), Rule::PostOfficeNotServed(po.to_owned()));
        }
        if let Some(board) = board {
            return if self.config.board_reachable(board) {
                with_step(decided, Step::BoardReachable)
            } else {
                decision(reject_unknown(), Rule::BulletinBoardNotReachable)
            };
        }
        let status = match (&self.config.reply_tags, tag) {
            (_, None) => TagStatus::Missing,
            (None, Some(_)) => TagStatus::NoKey,
            (Some(tags), tag) => tags.verify(&legacy.to_string(), tag, self.today),
        };
        if status.is_valid() {
            with_step(decided, Step::Tag(status))
        } else {
            decision(reject_unknown(), Rule::ReplyTag(status))
        }
    }

    fn legacy(&self, origin: Origin, address: &LegacyAddress, decode: bool) -> Decision {
        match address {
            LegacyAddress::Name {
                name,
                po,
                literal: false,
            } => {
                if let Some(key) = address.name_key()
                    && let Some(matched) = self.directory.lookup_name_key(&key)
                {
                    let home = matched.entry.post_office().map(str::to_owned);
                    let decision = self.for_entry(matched);
                    return match (po, home) {
                        (Some(given), Some(home))
                            if !given.eq_ignore_ascii_case(&home)
                                && !self.config.is_gateway(given) =>
                        {
                            with_step(
                                decision,
                                Step::OtherPostOffice {
                                    given: given.clone(),
                                    home,
                                },
                            )
                        }
                        _ => decision,
                    };
                }
                match po {
                    None => decision(reject_unknown(), Rule::UnknownBareName),
                    Some(po) if self.config.is_gateway(po) => {
                        decision(reject_unknown(), Rule::UnknownAtGateway)
                    }
                    Some(po) => decision(Destination::legacy(name, po), Rule::LegacyNotInDirectory),
                }
            }
            LegacyAddress::Name {
                po: Some(po),
                literal: true,
                ..
            } if !self.config.is_gateway(po) => decision(
                Destination::Legacy {
                    address: address.clone(),
                },
                Rule::LiteralName,
            ),
            LegacyAddress::Name { literal: true, .. } => {
                decision(reject_unknown(), Rule::LiteralWithoutPostOffice)
            }
            LegacyAddress::BulletinBoard { name, po } => match po {
                Some(po) if self.config.is_gateway(po) => {
                    decision(reject_unknown(), Rule::BulletinBoardAtGateway)
                }
                _ => {
                    let po = po
                        .clone()
                        .unwrap_or_else(|| self.config.post_office.clone());
                    decision(
                        Destination::Legacy {
                            address: LegacyAddress::BulletinBoard {
                                name: name.clone(),
                                po: Some(po),
                            },
                        },
                        Rule::BulletinBoard,
                    )
                }
            },
            LegacyAddress::Foreign { address: smtp, .. }
            | LegacyAddress::Phrase { address: smtp, .. }
            | LegacyAddress::SmtpOneOff { address: smtp, .. } => {
                match EmailAddress::from_str(smtp) {
                    Ok(parsed) => {
                        let decision = self.smtp(origin, &parsed, decode);
                        with_step(decision, Step::Carries(parsed))
                    }
                    Err(e) => decision(reject_unknown(), Rule::BadSmtpAddress(e.to_string())),
                }
            }
            LegacyAddress::CcMailOneOff { inner, .. } => {
                with_step(self.legacy(origin, inner, decode), Step::CcMailOneOff)
            }
            LegacyAddress::OtherOneOff {
                kind, address: dn, ..
            } if kind.eq_ignore_ascii_case("X500") || kind.eq_ignore_ascii_case("EX") => {
                match self.directory.lookup_x500(dn) {
                    Some(matched) => self.for_entry(matched),
                    None => decision(reject_unknown(), Rule::UnknownX500),
                }
            }
            LegacyAddress::OtherOneOff { kind, .. } => {
                decision(reject_unknown(), Rule::NoRouteForType(kind.clone()))
            }
            LegacyAddress::DisplayName { .. } => decision(reject_unknown(), Rule::DisplayNameOnly),
        }
    }
}

fn decision(destination: Destination, rule: Rule) -> Decision {
    Decision {
        destination,
        matched: None,
        why: Why::new(rule),
    }
}

fn with_step(mut decision: Decision, step: Step) -> Decision {
    decision.why.steps.insert(0, step);
    decision
}

fn reject_unknown() -> Destination {
    Destination::Reject {
        code: RejectCode::UserUnknown,
        reason: "no such user here".to_owned(),
    }
}
