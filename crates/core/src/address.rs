//! SMTP addresses and envelopes.
//!
//! Validation follows RFC 5321 §4.1.2 (`Mailbox = Local-part "@" ( Domain / address-literal )`),
//! widened for SMTPUTF8 (RFC 6531): non-ASCII UTF-8 is accepted in both parts, except control
//! characters (C0, DEL and the C1 range U+0080-U+009F), which no real mailbox holds, which the
//! legacy side's address reader refuses too, and which would only confuse logs and terminals.
//! Address literals (`user@[192.0.2.1]`) are valid here, as RFC 5321 has them; the legacy side
//! cannot write them (brackets), so the converter leaves such an address out rather than write
//! it. The domain is stored lower-cased so that comparisons and routing are case-insensitive on
//! it; the local part keeps its case, because RFC 5321 leaves its interpretation to the
//! receiving host, and loses quotes it does not need (`"jane.doe"` is `jane.doe`, as Postfix
//! reads it; a quoted `%` or `!` keeps them).

use std::fmt;
use std::str::FromStr;

use crate::CoreError;

/// Longest local part RFC 5321 §4.5.3.1.1 allows.
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain RFC 5321 §4.5.3.1.2 allows.
pub const MAX_DOMAIN_LEN: usize = 255;

/// A validated SMTP mailbox, `local@domain`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress {
    local: String,
    domain: String,
}

impl EmailAddress {
    /// Validates `local` and `domain` and builds the address.
    ///
    /// # Errors
    /// [`CoreError::InvalidAddress`] when either part breaks RFC 5321 (as widened by RFC 6531).
    pub fn new(local: &str, domain: &str) -> Result<Self, CoreError> {
        let input = || format!("{local}@{domain}");
        let bad = |reason| CoreError::InvalidAddress {
            input: input(),
            reason,
        };
        check_local(local).map_err(bad)?;
        check_domain(domain).map_err(bad)?;
        Ok(Self {
            local: canonical_local(local),
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The local part, case preserved.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain, lower-cased.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The address with the local part lower-cased too: the key for case-insensitive lookups.
    pub fn to_lowercase_key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    /// True when either part holds non-ASCII characters (the message then needs SMTPUTF8).
    pub fn needs_smtputf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl FromStr for EmailAddress {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(s);
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(CoreError::InvalidAddress {
                input: s.to_owned(),
                reason: "no @",
            });
        };
        Self::new(local, domain)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = CoreError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.to_string()
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_utf8_non_ascii(c)
}

/// RFC 6531's UTF8-non-ascii, less the C1 control characters.
fn is_utf8_non_ascii(c: char) -> bool {
    !c.is_ascii() && !c.is_control()
}

fn check_local(local: &str) -> Result<(), &'static str> {
    if local.is_empty() {
        return Err("empty local part");
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err("local part longer than 64 octets");
    }
    if let Some(inner) = local.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        // quoted-string: qtextSMTP or quoted-pairSMTP.
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(' '..='~') => {}
                    _ => return Err("bad quoted pair in local part"),
                },
                '"' => return Err("unescaped quote in local part"),
                c if c.is_control() => return Err("control character in local part"),
                _ => {}
            }
        }
        return Ok(());
    }
    // Dot-string: atoms separated by single dots.
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return Err("local part is not a dot-string");
    }
    Ok(())
}

/// A quoted local part that needs no quotes is the same mailbox as its dot-string (RFC 5321
/// §4.1.2; Postfix reads `"jane.doe"@example.com` as `jane.doe@example.com`): stored without
/// the quotes, so it matches the directory and is written the usual way. One holding `%` or
/// `!` keeps its quotes (unquoted it would read as the percent hack or a bang path), as does
/// one that needs them (`"john doe"`).
fn canonical_local(local: &str) -> String {
    let Some(inner) = local.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return local.to_owned();
    };
    let mut content = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => content.extend(chars.next()),
            c => content.push(c),
        }
    }
    let dot_string = !content.is_empty()
        && !content.contains(['%', '!'])
        && content
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext));
    if dot_string {
        content
    } else {
        local.to_owned()
    }
}

/// Checks a domain as it may follow `@` (RFC 5321 `Domain` or an address literal, widened for
/// SMTPUTF8 as described above); the reason when it may not.
///
/// # Errors
/// A short reason (`"empty domain"`, `"bad character in domain"` ...).
pub fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("empty domain");
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err("domain longer than 255 octets");
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let ok = literal.parse::<std::net::Ipv4Addr>().is_ok()
            || literal
                .strip_prefix("IPv6:")
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
        return if ok {
            Ok(())
        } else {
            Err("bad address literal")
        };
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("empty or over-long domain label");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with '-'");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || is_utf8_non_ascii(c))
        {
            return Err("bad character in domain");
        }
    }
    Ok(())
}

/// The envelope sender: a mailbox, or the null sender `<>` used by bounces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ReversePath {
    /// `MAIL FROM:<>`: never bounced to, never rewritten.
    Null,
    /// A real sender.
    Mailbox(EmailAddress),
}

impl ReversePath {
    /// The mailbox, unless this is the null sender.
    pub fn mailbox(&self) -> Option<&EmailAddress> {
        match self {
            Self::Null => None,
            Self::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => Ok(()),
            Self::Mailbox(m) => m.fmt(f),
        }
    }
}

impl FromStr for ReversePath {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "<>" => Ok(Self::Null),
            other => other.parse().map(Self::Mailbox),
        }
    }
}

impl TryFrom<String> for ReversePath {
    type Error = CoreError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ReversePath> for String {
    fn from(value: ReversePath) -> Self {
        value.to_string()
    }
}

/// Who a message is from and to, as the transport sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    /// The reverse path.
    pub sender: ReversePath,
    /// The forward paths, in the order given.
    pub recipients: Vec<EmailAddress>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses() {
        let cases = [
            ("jane.doe@example.com", "jane.doe", "example.com"),
            ("Jane.Doe@Example.COM", "Jane.Doe", "example.com"),
            ("<a@b.c>", "a", "b.c"),
            ("\"odd user\"@example.com", "\"odd user\"", "example.com"),
            // Quotes that are not needed are not kept: the same mailbox as the dot-string.
            ("\"jane.doe\"@example.com", "jane.doe", "example.com"),
            ("<\"Jane\\.Doe\"@example.com>", "Jane.Doe", "example.com"),
            ("\"a%b\"@example.com", "\"a%b\"", "example.com"),
            ("\"a!b\"@example.com", "\"a!b\"", "example.com"),
            ("\"a..b\"@example.com", "\"a..b\"", "example.com"),
            ("x+tag@[127.0.0.1]", "x+tag", "[127.0.0.1]"),
            ("ünï@bücher.example", "ünï", "bücher.example"),
        ];
        for (input, local, domain) in cases {
            let a: EmailAddress = input.parse().unwrap();
            assert_eq!((a.local(), a.domain()), (local, domain), "{input}");
        }
    }

    #[test]
    fn invalid_addresses() {
        for input in [
            "",
            "noat",
            "@example.com",
            "a@",
            "a..b@example.com",
            ".a@example.com",
            "a@-x.com",
            "a@x..com",
            "a b@example.com",
            "a@[1.2.3]",
            "a@ex ample.com",
            "\"a\"b\"@x.com",
            "a\u{85}b@example.com",
            "\"a\u{9f}b\"@example.com",
            "\"a\u{7f}\"@example.com",
            "a@ex\u{80}ample.com",
        ] {
            assert!(
                input.parse::<EmailAddress>().is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn reverse_path() {
        assert_eq!("<>".parse::<ReversePath>().unwrap(), ReversePath::Null);
        assert!(
            "<a@b.c>"
                .parse::<ReversePath>()
                .unwrap()
                .mailbox()
                .is_some()
        );
    }
}
