//! Address rewriting both ways, so that a reply to a rewritten address reaches the sender's
//! current mailbox (issue 5 item 4), and the header policy built on it.
//!
//! - **Legacy → SMTP** ([`Router::smtp_form`]): a directory user becomes the entry's primary
//!   SMTP address (`SMTP:`, else the first `smtp:`) if it is in one of our domains, else its
//!   first SMTP proxy that is, else a migrated user's target address (replies go straight to
//!   the mailbox they use now), else the generated form below; an address that
//!   carries an SMTP address (`user@domain at GW`, phrases, SMTP one-offs) keeps it; anything
//!   else gets a **generated** address in the legacy domain ([`encode_generated`]) that the
//!   router maps back to the legacy address. For a name not in the directory the generated
//!   address carries a reply tag ([`encode_tagged`], `tag.rs`) when tags are configured.
//! - **SMTP → legacy** ([`Router::legacy_form`]): a directory user whose mail goes to the
//!   legacy post office becomes `legacy_name at post_office` (a reply stays inside the legacy
//!   system); any other directory user becomes `primary@domain at GATEWAYPO`, so the reply
//!   comes back through the gateway and is routed by the directory (held, or sent to the
//!   target); a generated address decodes back to its legacy address; an outside sender
//!   becomes `user@domain at GATEWAYPO` (KB Q168356), with the display name as a phrase in
//!   `ie5` and dropped in `ie8`, which never gets brackets (KB Q179677, Q232687).
//!
//! # Generated addresses
//!
//! Exchange's IMCEA encapsulation, in the legacy domain:
//! `IMCEACCMAIL-<legacy address>@legacy.domain`, where every byte of the UTF-8 legacy address
//! other than ASCII letters, digits, `-` and `=` is written `+HH` (upper-case hex):
//! `Doe, Jane at HQ` → `IMCEACCMAIL-Doe+2C+20Jane+20at+20HQ@legacy.example.com`. When that is
//! longer than RFC 5321's 64-octet local part, the PMDF form is used:
//! `"Doe, Jane%HQ"@legacy.example.com` (quoted local part, the last ` at ` written `%`, `"` and
//! `\` escaped); longer still is [`Error::Unencodable`]. Both forms, and `IMCEAEX-` addresses
//! (Exchange's encapsulated X.500 DNs, `_` for `/`), are decoded by [`decode_generated`] in
//! either of our domains, after the directory lookup has missed.

use std::fmt;
use std::str::FromStr;

use ccgate_ccmail::{
    AddressError, LegacyAddress, parse_address, quote_display_name, unquote_display_name,
};
use ccgate_core::{EmailAddress, ReversePath};

use crate::directory::{Entry, Matched, Proxy, ProxyKind, State};
use crate::error::Error;
use crate::route::{Destination, Router, RouterConfig};
use crate::tag::looks_like_tag;

/// Longest local part RFC 5321 §4.5.3.1.1 allows.
const MAX_LOCAL_LEN: usize = 64;
/// The IMCEA prefix of a generated legacy address.
const IMCEA_CCMAIL: &str = "IMCEACCMAIL-";
/// The IMCEA prefix of an Exchange X.500 DN.
const IMCEA_EX: &str = "IMCEAEX-";

/// What an address in one of our domains decodes to, when it is not a directory address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// A legacy address (`IMCEACCMAIL-...` or the PMDF `"Name%PO"` form).
    Legacy(LegacyAddress),
    /// An X.500 DN (`IMCEAEX-...`).
    X500(String),
}

/// Encodes a legacy address as an SMTP address in `domain` (see the module documentation).
///
/// # Errors
/// [`Error::Unencodable`] when neither form fits in 64 octets.
pub fn encode_generated(address: &LegacyAddress, domain: &str) -> Result<EmailAddress, Error> {
    encode_tagged(address, domain, None)
}

/// Encodes a legacy address as [`encode_generated`] does, with a reply tag
/// ([`crate::ReplyTags::make`]) after the address: `IMCEACCMAIL-<address>.<tag>` (a `.` never
/// appears in the encoded address) or `"Name%PO%<tag>"`. The tag counts towards the 64 octets.
///
/// # Errors
/// [`Error::Unencodable`] when neither form fits in 64 octets.
pub fn encode_tagged(
    address: &LegacyAddress,
    domain: &str,
    tag: Option<&str>,
) -> Result<EmailAddress, Error> {
    let text = address.to_string();
    let mut local = String::with_capacity(IMCEA_CCMAIL.len().saturating_add(text.len() * 2));
    local.push_str(IMCEA_CCMAIL);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'=' {
            local.push(char::from(byte));
        } else {
            local.push('+');
            local.push(hex_digit(byte >> 4));
            local.push(hex_digit(byte & 0x0f));
        }
    }
    if let Some(tag) = tag {
        local.push('.');
        local.push_str(tag);
    }
    let unencodable = || Error::Unencodable {
        address: text.clone(),
    };
    if local.len() <= MAX_LOCAL_LEN {
        return EmailAddress::new(&local, domain).map_err(|_| unencodable());
    }
    let (prefix, name, po) = match address {
        LegacyAddress::Name {
            name,
            po: Some(po),
            literal,
        } => (if *literal { "," } else { "" }, name, po),
        LegacyAddress::BulletinBoard { name, po: Some(po) } => ("#", name, po),
        _ => return Err(unencodable()),
    };
    // `%` separates the post office (and the tag): a form that would not read back the same
    // is not issued.
    if po.contains('%') || (tag.is_none() && name.contains('%') && looks_like_tag(po)) {
        return Err(unencodable());
    }
    let mut quoted = String::from("\"");
    for c in prefix.chars().chain(name.chars()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('%');
    for c in po.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    if let Some(tag) = tag {
        quoted.push('%');
        quoted.push_str(tag);
    }
    quoted.push('"');
    if quoted.len() > MAX_LOCAL_LEN {
        return Err(unencodable());
    }
    EmailAddress::new(&quoted, domain).map_err(|_| unencodable())
}

/// Decodes a generated address: `IMCEACCMAIL-...`, `IMCEAEX-...` or PMDF's `"Name%PO"` /
/// `name%po`. `None` for anything else (and for encodings that do not decode cleanly).
pub fn decode_generated(address: &EmailAddress) -> Option<Generated> {
    decode_tagged(address).map(|(generated, _)| generated)
}

/// Decodes a generated address as [`decode_generated`] does, and returns its reply tag, if it
/// has one: the letters and digits after the last `.` of an `IMCEACCMAIL-` form, or the text
/// after the last `%` of a `Name%PO%tag` form when that text has the shape of a tag
/// ([`crate::parse_tag`]). The tag is returned as written; checking it is
/// [`crate::ReplyTags::verify`]'s job.
pub fn decode_tagged(address: &EmailAddress) -> Option<(Generated, Option<String>)> {
    let local = address.local();
    if let Some(rest) = strip_prefix_ignore_case(local, IMCEA_CCMAIL) {
        // Our encoding never writes a `.` (it is `+2E`); other writers may leave one in a name,
        // but then escapes (`+20` for the space before ` at `) follow it. So a short run of
        // letters and digits after the last `.` is a tag, well formed or not (a malformed one
        // is refused by the check, and explained).
        let (rest, tag) = match rest.rsplit_once('.') {
            Some((head, tag)) if is_tag_shaped(tag) => (head, Some(tag.to_owned())),
            _ => (rest, None),
        };
        let text = unhex(rest, false)?;
        return parse_address(&text)
            .ok()
            .map(|legacy| (Generated::Legacy(legacy), tag));
    }
    if let Some(rest) = strip_prefix_ignore_case(local, IMCEA_EX) {
        return unhex(rest, true).map(|dn| (Generated::X500(dn), None));
    }
    let text = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            }
            out
        }
        None => local.to_owned(),
    };
    let (text, tag) = match text.rsplit_once('%') {
        Some((head, tag)) if head.contains('%') && looks_like_tag(tag) => {
            (head, Some(tag.to_owned()))
        }
        _ => (text.as_str(), None),
    };
    let (name, po) = text.rsplit_once('%')?;
    if name.trim().is_empty() || po.trim().is_empty() {
        return None;
    }
    parse_address(&format!("{name} at {po}"))
        .ok()
        .map(|legacy| (Generated::Legacy(legacy), tag))
}

/// Letters and digits, at most twice a tag's length: what can only be a (maybe damaged) tag.
fn is_tag_shaped(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 2 * crate::tag::TAG_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn hex_digit(nibble: u8) -> char {
    char::from(
        b"0123456789ABCDEF"
            .get(usize::from(nibble))
            .copied()
            .unwrap_or(b'0'),
    )
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// Undoes `+HH` escapes (and `_` → `/` for X.500 DNs); `None` on a bad escape or bytes that
/// are not UTF-8.
fn unhex(text: &str, underscore_is_slash: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => {
                let hex = text.get(index.saturating_add(1)..index.saturating_add(3))?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index = index.saturating_add(3);
            }
            b'_' if underscore_is_slash => {
                out.push(b'/');
                index = index.saturating_add(1);
            }
            _ => {
                out.push(byte);
                index = index.saturating_add(1);
            }
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.is_empty()).then_some(text)
}

/// How a rewritten address was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressForm {
    /// From a directory entry (its primary SMTP address, or its legacy name).
    Directory,
    /// An SMTP address kept as it was, in legacy form through the gateway
    /// (`user@domain at GATEWAYPO`), or taken out of a legacy form.
    Foreign,
    /// A generated address in the legacy domain (`IMCEACCMAIL-...`).
    Generated,
    /// A generated address decoded back to its legacy address.
    Decoded,
}

/// An address for the SMTP side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SmtpForm {
    /// The mailbox.
    pub address: EmailAddress,
    /// A display name for headers: the entry's display name, else the legacy name or phrase.
    pub display: Option<String>,
    /// How it was made.
    pub form: AddressForm,
    /// The directory entry, if one matched.
    pub matched: Option<Matched>,
}

impl fmt::Display for SmtpForm {
    /// The RFC 5322 mailbox: `"Doe, Jane" <jane.doe@example.com>`, or the bare address without
    /// a display name. Non-ASCII display names are written raw (RFC 6532); encoding them as
    /// RFC 2047 words is the converter's job.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.display.as_deref().filter(|d| !d.trim().is_empty()) {
            Some(display) => write!(f, "{} <{}>", rfc5322_phrase(display), self.address),
            None => self.address.fmt(f),
        }
    }
}

/// An address for the legacy side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyForm {
    /// The address; render it with [`Router::render`].
    pub address: LegacyAddress,
    /// How it was made.
    pub form: AddressForm,
    /// The directory entry, if one matched.
    pub matched: Option<Matched>,
}

/// Writes a display name as an RFC 5322 phrase: bare when it is atoms and spaces, else quoted.
pub fn rfc5322_phrase(display: &str) -> String {
    let display = display.trim();
    let is_atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    if display
        .split(' ')
        .all(|word| !word.is_empty() && word.chars().all(is_atext))
    {
        return display.to_owned();
    }
    let mut out = String::with_capacity(display.len().saturating_add(2));
    out.push('"');
    for c in display.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out.push('"');
    out
}

impl Router<'_> {
    /// The SMTP form of a legacy address (a sender, or a `From:`/`To:`/`Cc:` address of a
    /// message converted to MIME); see the module documentation.
    ///
    /// # Errors
    /// [`Error::Unencodable`] when the address needs a generated form and is too long for one.
    pub fn smtp_form(&self, address: &LegacyAddress) -> Result<SmtpForm, Error> {
        if let Some(smtp) = address.smtp_address()
            && let Ok(parsed) = EmailAddress::from_str(smtp)
        {
            if let Some(matched) = self.directory().lookup_smtp(&parsed)
                && let Some(form) = entry_smtp_form(&matched, self.config())
            {
                return Ok(form);
            }
            return Ok(SmtpForm {
                address: parsed,
                display: address.display_name().map(str::to_owned),
                form: AddressForm::Foreign,
                matched: None,
            });
        }
        if let Some(key) = address.name_key()
            && let Some(matched) = self.directory().lookup_name_key(&key)
        {
            if let Some(form) = entry_smtp_form(&matched, self.config()) {
                return Ok(form);
            }
            let legacy = matched
                .entry
                .legacy_address()
                .cloned()
                .unwrap_or_else(|| address.clone());
            return Ok(SmtpForm {
                address: encode_generated(&legacy, &self.config().legacy_domain)?,
                display: Some(matched.entry.display_name().to_owned()),
                form: AddressForm::Generated,
                matched: Some(matched),
            });
        }
        let with_po = self.with_post_office(address);
        // Not in the directory: the reply address carries a tag, so that it is accepted back.
        let tag = self
            .config()
            .reply_tags
            .as_ref()
            .map(|tags| tags.make(&with_po.to_string(), self.today()));
        let display = match &with_po {
            LegacyAddress::Name { name, .. } => Some(name.clone()),
            LegacyAddress::BulletinBoard { name, .. } => Some(format!("#{name}")),
            other => other.display_name().map(str::to_owned),
        };
        Ok(SmtpForm {
            address: encode_tagged(&with_po, &self.config().legacy_domain, tag.as_deref())?,
            display,
            form: AddressForm::Generated,
            matched: None,
        })
    }

    /// The legacy form of an SMTP address (a sender, or a header address of a message
    /// converted to legacy text), with an optional display name; see the module documentation.
    pub fn legacy_form(&self, address: &EmailAddress, display: Option<&str>) -> LegacyForm {
        if let Some(matched) = self.directory().lookup_smtp(address) {
            return self.entry_legacy_form(matched, address);
        }
        if self.config().is_our_domain(address.domain()) {
            match decode_generated(address) {
                Some(Generated::Legacy(legacy)) => {
                    // A directory name decodes to its entry's current form.
                    if let Some(matched) = legacy
                        .name_key()
                        .and_then(|key| self.directory().lookup_name_key(&key))
                    {
                        return self.entry_legacy_form(matched, address);
                    }
                    return LegacyForm {
                        address: legacy,
                        form: AddressForm::Decoded,
                        matched: None,
                    };
                }
                Some(Generated::X500(dn)) => {
                    if let Some(matched) = self.directory().lookup_x500(&dn) {
                        return self.entry_legacy_form(matched, address);
                    }
                }
                None => {}
            }
        }
        LegacyForm {
            address: self.through_gateway(address, display),
            form: AddressForm::Foreign,
            matched: None,
        }
    }

    /// The envelope sender of a message from the legacy side, for SMTP.
    ///
    /// # Errors
    /// As [`smtp_form`](Self::smtp_form).
    pub fn rewrite_sender_to_smtp(&self, sender: &LegacyAddress) -> Result<ReversePath, Error> {
        self.smtp_form(sender)
            .map(|form| ReversePath::Mailbox(form.address))
    }

    /// The sender of a message from the SMTP side, for the legacy post office; `None` for the
    /// null sender `<>` (a bounce), which the converter writes as the gateway's postmaster.
    pub fn rewrite_sender_to_legacy(
        &self,
        sender: &ReversePath,
        display: Option<&str>,
    ) -> Option<LegacyForm> {
        sender
            .mailbox()
            .map(|mailbox| self.legacy_form(mailbox, display))
    }

    /// Writes a legacy address for the configured dialect (never brackets in `ie8`).
    ///
    /// # Errors
    /// The legacy writer's [`AddressError`] when the address has no form in the dialect.
    pub fn render(&self, address: &LegacyAddress) -> Result<String, AddressError> {
        address.render(&self.config().render_options())
    }

    /// `From:`, `To:` and `Cc:` of a message converted to MIME: each legacy address in its SMTP
    /// form (the header policy of the crate documentation). One result per address, in order.
    pub fn rewrite_headers_to_smtp(
        &self,
        addresses: &[LegacyAddress],
    ) -> Vec<Result<SmtpForm, Error>> {
        addresses.iter().map(|a| self.smtp_form(a)).collect()
    }

    /// `From:`, `To:` and `Cc:` of a message converted to legacy text: each mailbox (with its
    /// display name) in its legacy form, rendered for the dialect. One result per address.
    pub fn rewrite_headers_to_legacy(
        &self,
        mailboxes: &[(Option<String>, EmailAddress)],
    ) -> Vec<Result<String, AddressError>> {
        mailboxes
            .iter()
            .map(|(display, mailbox)| {
                self.render(&self.legacy_form(mailbox, display.as_deref()).address)
            })
            .collect()
    }

    fn entry_legacy_form(&self, matched: Matched, given: &EmailAddress) -> LegacyForm {
        let current = self.for_entry(matched.clone());
        if let Destination::Legacy { address } = current.destination {
            return LegacyForm {
                address,
                form: AddressForm::Directory,
                matched: Some(matched),
            };
        }
        let smtp = entry_reply_address(&matched.entry, self.config())
            .cloned()
            .unwrap_or_else(|| given.clone());
        LegacyForm {
            address: self.through_gateway(&smtp, Some(matched.entry.display_name())),
            form: AddressForm::Directory,
            matched: Some(matched),
        }
    }

    /// `user@domain at GATEWAYPO`, or `"Display" <user@domain> at GATEWAYPO` with a display name
    /// (written so in `ie5`; `ie8` drops the display name).
    fn through_gateway(&self, address: &EmailAddress, display: Option<&str>) -> LegacyAddress {
        let po = Some(self.config().gateway_po.clone());
        let display = display
            .map(|d| unquote_display_name(&quote_display_name(d)))
            .filter(|d| !d.is_empty());
        match display {
            Some(display) => LegacyAddress::Phrase {
                display: Some(display),
                address: address.to_string(),
                po,
            },
            None => LegacyAddress::Foreign {
                address: address.to_string(),
                po,
            },
        }
    }

    /// Names and boards written without a post office are on the connected one.
    fn with_post_office(&self, address: &LegacyAddress) -> LegacyAddress {
        let po = Some(self.config().post_office.clone());
        match address {
            LegacyAddress::Name {
                name,
                po: None,
                literal,
            } => LegacyAddress::Name {
                name: name.clone(),
                po,
                literal: *literal,
            },
            LegacyAddress::BulletinBoard { name, po: None } => LegacyAddress::BulletinBoard {
                name: name.clone(),
                po,
            },
            other => other.clone(),
        }
    }
}

/// The address a directory user is known by on the SMTP side: one that brings a reply back to
/// this gateway (the primary SMTP address, else another `SMTP` proxy, in one of our domains:
/// an outside address is relaying for SMTP clients), else a migrated user's target (the reply
/// goes straight to the mailbox they use now). `None` otherwise: the caller writes the
/// generated form in the legacy domain, which comes back and is routed by the directory.
fn entry_reply_address<'e>(entry: &'e Entry, config: &RouterConfig) -> Option<&'e EmailAddress> {
    let ours = |address: &&EmailAddress| config.is_our_domain(address.domain());
    entry
        .primary_smtp()
        .filter(ours)
        .or_else(|| {
            entry
                .proxies()
                .iter()
                .filter(|p| *p.kind() == ProxyKind::Smtp)
                .filter_map(Proxy::smtp)
                .find(ours)
        })
        .or_else(|| {
            (entry.state() == State::Migrated)
                .then(|| entry.target_address())
                .flatten()
        })
}

fn entry_smtp_form(matched: &Matched, config: &RouterConfig) -> Option<SmtpForm> {
    let address = entry_reply_address(&matched.entry, config)?.clone();
    Some(SmtpForm {
        address,
        display: Some(matched.entry.display_name().to_owned()),
        form: AddressForm::Directory,
        matched: Some(matched.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_addresses_round_trip() {
        let cases = [
            (
                "Doe, Jane at HQ",
                "IMCEACCMAIL-Doe+2C+20Jane+20at+20HQ@legacy.example.com",
            ),
            (
                "#Social at PO5",
                "IMCEACCMAIL-+23Social+20at+20PO5@legacy.example.com",
            ),
            (
                ",Smith, Grover at Ferguson",
                "IMCEACCMAIL-+2CSmith+2C+20Grover+20at+20Ferguson@legacy.example.com",
            ),
            (
                "Müller, Jörg at HQ",
                "IMCEACCMAIL-M+C3+BCller+2C+20J+C3+B6rg+20at+20HQ@legacy.example.com",
            ),
            (
                "Schedule+ Free Busy Information - NA at NorthAmerica",
                "\"Schedule+ Free Busy Information - NA%NorthAmerica\"@legacy.example.com",
            ),
            (
                "Say \"Hi\" Bob at HQ",
                "IMCEACCMAIL-Say+20+22Hi+22+20Bob+20at+20HQ@legacy.example.com",
            ),
        ];
        for (legacy, smtp) in cases {
            let address = parse_address(legacy).unwrap();
            let encoded = encode_generated(&address, "legacy.example.com").unwrap();
            assert_eq!(encoded.to_string(), smtp, "{legacy}");
            assert_eq!(
                decode_generated(&encoded),
                Some(Generated::Legacy(address)),
                "{legacy}"
            );
        }
    }

    #[test]
    fn pmdf_and_imceaex_forms_decode() {
        let cases = [
            (
                "\"John Smith%rpo\"@ccmail.example.com",
                Generated::Legacy(parse_address("John Smith at rpo").unwrap()),
            ),
            (
                "jsmith%HQ@legacy.example.com",
                Generated::Legacy(parse_address("jsmith at HQ").unwrap()),
            ),
            (
                "IMCEACCMAIL-J.+20Smith+20at+20HQ@legacy.example.com",
                Generated::Legacy(parse_address("J. Smith at HQ").unwrap()),
            ),
            (
                "IMCEAEX-_O=ORG_OU=SITE+201_CN=RECIPIENTS_CN=JDOE@modern.example.com",
                Generated::X500("/O=ORG/OU=SITE 1/CN=RECIPIENTS/CN=JDOE".to_owned()),
            ),
        ];
        for (smtp, expected) in cases {
            let address: EmailAddress = smtp.parse().unwrap();
            assert_eq!(decode_generated(&address), Some(expected), "{smtp}");
        }
        for smtp in [
            "jane@legacy.example.com",
            "IMCEACCMAIL-bad+zz@x.y",
            "IMCEACCMAIL-+FF@x.y",
            "%x@y.z",
        ] {
            let address: EmailAddress = smtp.parse().unwrap();
            assert_eq!(decode_generated(&address), None, "{smtp}");
        }
    }

    #[test]
    fn pmdf_forms_that_would_not_read_back_are_not_issued() {
        // Found by the router_reply_tag fuzz target: a `%` in the post office.
        let address = LegacyAddress::Name {
            name: "Stranle aSm".to_owned(),
            po: Some("BRANbsmithHQC%a%aH".to_owned()),
            literal: false,
        };
        assert!(matches!(
            encode_tagged(&address, "legacy.example.com", Some("ra4rbz7lxn")),
            Err(Error::Unencodable { .. })
        ));
        // And a `\` or `"` in the post office is escaped like one in the name.
        let address = LegacyAddress::Name {
            name: "St%x\\\\pth with a longer name here".to_owned(),
            po: Some("Haa\\\\\\".to_owned()),
            literal: false,
        };
        let encoded = encode_tagged(&address, "legacy.example.com", Some("rabg5z5t4s")).unwrap();
        assert!(encoded.local().starts_with('"'), "{encoded}");
        assert_eq!(
            decode_tagged(&encoded),
            Some((Generated::Legacy(address), Some("rabg5z5t4s".to_owned())))
        );
    }

    #[test]
    fn too_long_names_are_unencodable() {
        let name = format!("{} at HQ", "x".repeat(70));
        let address = parse_address(&name).unwrap();
        assert!(matches!(
            encode_generated(&address, "legacy.example.com"),
            Err(Error::Unencodable { .. })
        ));
    }

    #[test]
    fn phrases_are_quoted_when_needed() {
        let cases = [
            ("Jane Doe", "Jane Doe"),
            ("Doe, Jane", "\"Doe, Jane\""),
            ("Say \"Hi\"", "\"Say \\\"Hi\\\"\""),
            ("Jörg", "Jörg"),
        ];
        for (display, expected) in cases {
            assert_eq!(rfc5322_phrase(display), expected);
        }
    }
}
