//! Address mapping between the legacy world (`Name at PO`) and SMTP (`local@domain`).
//!
//! The conversions never decide where mail goes; they only need a name for each side. The
//! router owns the real directory; this module defines the seam ([`AddressMap`]) and a simple,
//! documented, reversible default ([`DefaultAddressMap`]) that needs no directory at all.

use ccgate_ccmail::{Dialect, LegacyAddress, parse_address, quote_display_name};
use ccgate_core::EmailAddress;

/// An SMTP mailbox with an optional display name (`"Doe, Jane" <Doe_Jane@legacy.example.com>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name, if any.
    pub display: Option<String>,
    /// The address.
    pub address: EmailAddress,
}

/// How addresses cross between the legacy side and SMTP.
///
/// Implementations must be pure and deterministic: the same input always gives the same
/// answer, because converted messages must be byte-identical on replay.
pub trait AddressMap {
    /// The SMTP mailbox for a legacy address; `None` when it has none (the conversion then
    /// leaves the recipient out of the headers and says so in its notes).
    fn to_smtp(&self, legacy: &LegacyAddress) -> Option<Mailbox>;

    /// The legacy address text (`Name at PO`, `user@domain at GATEWAYPO`) for an SMTP mailbox;
    /// `None` when it has none. The conversion checks that the text can be written for the
    /// post office's Import and leaves it out (with a note) otherwise.
    fn to_legacy(&self, smtp: &EmailAddress, display: Option<&str>) -> Option<String>;
}

/// The default mapping: no directory, every form reversible.
///
/// | Legacy | SMTP |
/// |---|---|
/// | `Doe, Jane at HQ` (HQ = `post_office`) | `"Doe, Jane" <Doe_Jane@legacy.example.com>` |
/// | `Doe, Jane` (bare name) | `"Doe, Jane" <Doe_Jane@legacy.example.com>` |
/// | `Smith, Jimmy at Site 1` (another PO) | `"Smith, Jimmy" <Smith_Jimmy%Site.1@legacy.example.com>` |
/// | `,Smith, Grover at Ferguson` (literal) | `<=2CSmith_Grover%Ferguson@legacy.example.com>` |
/// | `#Social at PO5` | `<#Social%PO5@legacy.example.com>` |
/// | `"Test User" at SITE` | `"Test User" <=22Test.User=22%SITE@legacy.example.com>` |
/// | `user@example.org at SMTPGW` | `<user@example.org>` |
/// | `Display [SMTP:user@example.org] at SITE` | `"Display" <user@example.org>` |
/// | `[ccmail:Name at PO]` | as `Name at PO` |
///
/// The local part encoding ([`encode_local_part`]) keeps ASCII letters, digits and
/// ``!#$&'*+-/?^`{|}~``, writes a single space between two other characters as `.`, a comma
/// followed by one space (and then another character) as `_`, and every other byte of the
/// UTF-8 text as `=XX` (upper-case hex); a post office other than `post_office` follows after
/// `%`, encoded the same way. The result is a dot-atom, so it needs no quoting, and decoding
/// gives back exactly the name and post office. A name whose encoding exceeds 64 bytes (RFC 5321)
/// has no SMTP form.
///
/// SMTP to legacy: an address in `domain` is decoded back (`Doe_Jane@legacy.example.com` →
/// `Doe, Jane at HQ`; a post office after `%`, else `post_office`). Any other address is written
/// `user@domain at GATEWAYPO` (KB Q168356), which routes replies back through the gateway. The
/// display name is dropped for `ie8` (Import 8.x acceptance of `<`/`>` is unconfirmed, see
/// `docs/legacy-format.md` §2); for `ie5` a display name is written `"Display" <user@domain> at
/// GATEWAYPO` only when KB Q179677 quoting leaves it unchanged (no `,`, `"`, `[`, `]`, `\` or
/// doubled blanks) and it is ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultAddressMap {
    /// SMTP domain of legacy users (`legacy.domain`), lower case.
    pub domain: String,
    /// The connected post office (`legacy.post_office`): names there carry no `%PO`.
    pub post_office: String,
    /// The gateway's post-office name (`legacy.gateway_po`).
    pub gateway_po: String,
    /// The dialect of the post office's Import.
    pub dialect: Dialect,
}

impl DefaultAddressMap {
    /// A map for the given legacy domain, post office and gateway post office (`ie8`).
    pub fn new(domain: &str, post_office: &str, gateway_po: &str) -> Self {
        Self {
            domain: domain.to_ascii_lowercase(),
            post_office: post_office.to_owned(),
            gateway_po: gateway_po.to_owned(),
            dialect: Dialect::Ie8,
        }
    }

    /// The map the conversion options describe.
    pub fn from_options(opts: &crate::ConvertOptions) -> Self {
        Self {
            dialect: opts.dialect,
            ..Self::new(&opts.legacy_domain, &opts.post_office, &opts.gateway_po)
        }
    }

    fn encoded(&self, name_part: &str, po: Option<&str>, display: Option<&str>) -> Option<Mailbox> {
        let po = po.filter(|p| !p.eq_ignore_ascii_case(&self.post_office));
        let local = encode_local_part(name_part, po);
        let address = EmailAddress::new(&local, &self.domain).ok()?;
        Some(Mailbox {
            display: display.map(str::to_owned).filter(|d| !d.is_empty()),
            address,
        })
    }
}

impl AddressMap for DefaultAddressMap {
    fn to_smtp(&self, legacy: &LegacyAddress) -> Option<Mailbox> {
        let smtp = |address: &str, display: Option<&String>| {
            let address = address.parse::<EmailAddress>().ok()?;
            Some(Mailbox {
                display: display.cloned().filter(|d| !d.is_empty()),
                address,
            })
        };
        match legacy {
            LegacyAddress::Foreign { address, .. } => smtp(address, None),
            LegacyAddress::Phrase {
                display, address, ..
            }
            | LegacyAddress::SmtpOneOff {
                display, address, ..
            } => smtp(address, display.as_ref()),
            LegacyAddress::CcMailOneOff { inner, display, .. } => {
                let mut mailbox = self.to_smtp(inner)?;
                if let Some(display) = display.as_ref().filter(|d| !d.is_empty()) {
                    mailbox.display = Some(display.clone());
                }
                Some(mailbox)
            }
            LegacyAddress::Name { name, po, literal } => {
                let text = if *literal {
                    format!(",{name}")
                } else {
                    name.clone()
                };
                self.encoded(&text, po.as_deref(), Some(name))
            }
            LegacyAddress::BulletinBoard { name, po } => {
                self.encoded(&format!("#{name}"), po.as_deref(), None)
            }
            LegacyAddress::DisplayName { display, po } => {
                self.encoded(&quote_display_name(display), po.as_deref(), Some(display))
            }
            LegacyAddress::OtherOneOff { display, site, .. } => {
                // The canonical text without its ` at SITE`.
                let text = legacy.to_string();
                let name_part = match site {
                    Some(site) => text
                        .strip_suffix(&format!(" at {site}"))
                        .unwrap_or(&text)
                        .to_owned(),
                    None => text,
                };
                self.encoded(&name_part, site.as_deref(), display.as_deref())
            }
        }
    }

    fn to_legacy(&self, smtp: &EmailAddress, display: Option<&str>) -> Option<String> {
        if smtp.domain().eq_ignore_ascii_case(&self.domain) {
            let (name, po) = decode_local_part(smtp.local())?;
            let text = format!("{name} at {}", po.as_deref().unwrap_or(&self.post_office));
            return parse_address(&text).ok().map(|_| text);
        }
        let plain = format!("{smtp} at {}", self.gateway_po);
        if self.dialect == Dialect::Ie5
            && let Some(display) = display.map(str::trim).filter(|d| !d.is_empty())
        {
            let quoted = quote_display_name(display);
            if display.is_ascii() && quoted == format!("\"{display}\"") {
                let phrase = format!("{quoted} <{smtp}> at {}", self.gateway_po);
                if parse_address(&phrase).is_ok() {
                    return Some(phrase);
                }
            }
        }
        parse_address(&plain).ok().map(|_| plain)
    }
}

/// Characters kept as they are in an encoded local part.
fn is_kept(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$&'*+-/?^`{|}~".contains(c)
}

/// Encodes a legacy name (and a post office, if given) as a dot-atom local part; see
/// [`DefaultAddressMap`] for the rules. [`decode_local_part`] is its inverse.
pub fn encode_local_part(name: &str, po: Option<&str>) -> String {
    let mut out = encode_text(name);
    if let Some(po) = po {
        out.push('%');
        out.push_str(&encode_text(po));
    }
    out
}

fn encode_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut idx = 0;
    while let Some(&c) = chars.get(idx) {
        let prev = idx.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(idx + 1).copied();
        let after_next = chars.get(idx + 2).copied();
        let solid = |c: Option<char>| c.is_some_and(|c| c != ' ');
        if c == ',' && next == Some(' ') && solid(after_next) && idx > 0 {
            out.push('_');
            idx += 2;
            continue;
        }
        if c == ' ' && solid(prev) && solid(next) {
            out.push('.');
        } else if is_kept(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("={b:02X}"));
            }
        }
        idx += 1;
    }
    out
}

/// Decodes a local part written by [`encode_local_part`] into the name and the post office
/// (`None` when there is no `%`). `None` when it is not such an encoding (bad `=XX`, not
/// UTF-8, an empty name).
pub fn decode_local_part(local: &str) -> Option<(String, Option<String>)> {
    let (name, po) = match local.rsplit_once('%') {
        Some((name, po)) => (name, Some(decode_text(po)?)),
        None => (local, None),
    };
    let name = decode_text(name)?;
    if name.is_empty() || po.as_deref().is_some_and(str::is_empty) {
        return None;
    }
    Some((name, po))
}

fn decode_text(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut iter = text.bytes();
    while let Some(b) = iter.next() {
        match b {
            b'.' => bytes.push(b' '),
            b'_' => bytes.extend_from_slice(b", "),
            b'=' => {
                let hi = hex_value(iter.next()?)?;
                let lo = hex_value(iter.next()?)?;
                bytes.push(hi << 4 | lo);
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> DefaultAddressMap {
        DefaultAddressMap::new("legacy.example.com", "HQ", "SMTPGW")
    }

    #[test]
    fn legacy_to_smtp_table() {
        let cases = [
            (
                "Doe, Jane at HQ",
                Some("Doe, Jane"),
                "Doe_Jane@legacy.example.com",
            ),
            (
                "Doe, Jane",
                Some("Doe, Jane"),
                "Doe_Jane@legacy.example.com",
            ),
            (
                "Smith, Jimmy at Site 1",
                Some("Smith, Jimmy"),
                "Smith_Jimmy%Site.1@legacy.example.com",
            ),
            (
                ",Smith, Grover at Ferguson",
                Some("Smith, Grover"),
                "=2CSmith_Grover%Ferguson@legacy.example.com",
            ),
            ("#Social at PO5", None, "#Social%PO5@legacy.example.com"),
            (
                "\"Test User\" at SITE",
                Some("Test User"),
                "=22Test.User=22%SITE@legacy.example.com",
            ),
            ("user@example.org at SMTPGW", None, "user@example.org"),
            (
                "Display [SMTP:user@example.org] at SITE",
                Some("Display"),
                "user@example.org",
            ),
            (
                "[ccmail:Doe, Jane at HQ]",
                Some("Doe, Jane"),
                "Doe_Jane@legacy.example.com",
            ),
            (
                "John Q. Public at HQ",
                Some("John Q. Public"),
                "John.Q=2E.Public@legacy.example.com",
            ),
            (
                "Müller, Jürgen at HQ",
                Some("Müller, Jürgen"),
                "M=C3=BCller_J=C3=BCrgen@legacy.example.com",
            ),
        ];
        for (legacy, display, smtp) in cases {
            let parsed = parse_address(legacy).unwrap();
            let mailbox = map().to_smtp(&parsed).unwrap();
            assert_eq!(mailbox.address.to_string(), smtp, "{legacy}");
            assert_eq!(mailbox.display.as_deref(), display, "{legacy}");
        }
    }

    #[test]
    fn smtp_to_legacy_table() {
        let cases = [
            ("Doe_Jane@legacy.example.com", None, "Doe, Jane at HQ"),
            (
                "Smith_Jimmy%Site.1@LEGACY.example.com",
                None,
                "Smith, Jimmy at Site 1",
            ),
            (
                "=2CSmith_Grover%Ferguson@legacy.example.com",
                None,
                ",Smith, Grover at Ferguson",
            ),
            ("jane.doe@legacy.example.com", None, "jane doe at HQ"),
            (
                "user@example.org",
                Some("User, Some"),
                "user@example.org at SMTPGW",
            ),
        ];
        for (smtp, display, legacy) in cases {
            let address: EmailAddress = smtp.parse().unwrap();
            assert_eq!(
                map().to_legacy(&address, display).as_deref(),
                Some(legacy),
                "{smtp}"
            );
        }
    }

    #[test]
    fn ie5_keeps_safe_display_names_only() {
        let ie5 = DefaultAddressMap {
            dialect: Dialect::Ie5,
            ..map()
        };
        let address: EmailAddress = "user@example.org".parse().unwrap();
        assert_eq!(
            ie5.to_legacy(&address, Some("Some User")).as_deref(),
            Some("\"Some User\" <user@example.org> at SMTPGW")
        );
        assert_eq!(
            ie5.to_legacy(&address, Some("User, Some")).as_deref(),
            Some("user@example.org at SMTPGW")
        );
    }

    #[test]
    fn bad_encodings_do_not_decode() {
        for local in ["=ZZ", "=C3", "abc%", "=", ""] {
            assert_eq!(decode_local_part(local), None, "{local}");
        }
    }

    #[test]
    fn overlong_names_have_no_smtp_form() {
        let parsed = parse_address(&format!("{} at HQ", "x".repeat(70))).unwrap();
        assert_eq!(map().to_smtp(&parsed), None);
    }

    proptest::proptest! {
        #[test]
        fn encoding_round_trips(name in "[ -~äöüé€]{1,30}", po in proptest::option::of("[A-Za-z0-9 _-]{1,8}")) {
            let local = encode_local_part(&name, po.as_deref());
            proptest::prop_assert!(!local.starts_with('.') && !local.ends_with('.') && !local.contains(".."), "{local}");
            proptest::prop_assert_eq!(decode_local_part(&local), Some((name, po)));
        }

        #[test]
        fn name_at_po_round_trips(name in "[A-Za-z][A-Za-z0-9 ,.'-]{0,20}[A-Za-z]", po in "[A-Za-z][A-Za-z0-9]{0,7}") {
            let text = format!("{name} at {po}");
            let Ok(parsed) = parse_address(&text) else { return Ok(()); };
            let Some(mailbox) = map().to_smtp(&parsed) else { return Ok(()); };
            let back = map().to_legacy(&mailbox.address, mailbox.display.as_deref()).unwrap();
            proptest::prop_assert_eq!(parse_address(&back).unwrap().name_key(), parsed.name_key());
        }
    }
}
