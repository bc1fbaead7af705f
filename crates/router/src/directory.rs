//! The directory: entries with typed proxy addresses and a migration state (docs/directory.md),
//! validated and compiled into hash indexes for routing.
//!
//! A source (the CSV reader in `csv.rs`, or the LDAP loader of the binary) produces
//! [`RawEntry`] rows of text; [`Directory::from_raw`] checks every row, then the directory as a
//! whole, and either returns a compiled [`Directory`] or every problem found
//! ([`Error::Invalid`]). A directory is immutable: a reload compiles a new one (see
//! [`crate::DirectoryHandle`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ccgate_ccmail::{LegacyAddress, parse_address};
use ccgate_core::EmailAddress;

use crate::error::{Error, OtherRow, Problem, ProblemKind};

/// Most entries one directory may hold.
pub const MAX_ENTRIES: usize = 5_000_000;
/// Most proxy addresses one entry may hold.
pub const MAX_PROXIES: usize = 1_000;
/// Longest proxy type word (`SMTP`, `CCMAIL`, `X500`, `MIGRATE`, `X400`, `SIP` ...).
const MAX_PROXY_TYPE_LEN: usize = 16;

/// The migration state of a user (docs/directory.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The mailbox is on the legacy post office.
    Legacy,
    /// The mailbox is being moved: mail is held (or sent to legacy, per the cutover setting).
    Migrating,
    /// The mailbox is on the modern side: mail goes to the target address.
    Migrated,
}

impl State {
    /// The word used in the CSV and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Migrating => "migrating",
            Self::Migrated => "migrated",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = ProblemKind;

    /// Reads `legacy`, `migrating` or `migrated`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "legacy" => Ok(Self::Legacy),
            "migrating" => Ok(Self::Migrating),
            "migrated" => Ok(Self::Migrated),
            _ => Err(ProblemKind::BadState {
                value: s.to_owned(),
            }),
        }
    }
}

/// The type of a proxy address, Exchange style.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// `SMTP:` (primary) or `smtp:` (secondary): an RFC 5321 mailbox.
    Smtp,
    /// `CCMAIL:Name at PO` (KB Q166905, Q253306): a legacy name.
    CcMail,
    /// `X500:/o=.../cn=...`: the Exchange legacy DN, matched by `IMCEAEX-` addresses.
    X500,
    /// `MIGRATE:CCMAIL:user at postoffice` (KB Q151826): an address a pre-created mailbox takes
    /// over; matched like the address inside it.
    Migrate,
    /// Any other type (`X400:`, `SIP:` ...): kept, never matched.
    Other(String),
}

impl ProxyKind {
    /// The type word in upper case.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Smtp => "SMTP",
            Self::CcMail => "CCMAIL",
            Self::X500 => "X500",
            Self::Migrate => "MIGRATE",
            Self::Other(word) => word,
        }
    }
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One typed proxy address, `TYPE:address`. An upper-case type word marks the primary address
/// of its type (`SMTP:`), a lower-case one a secondary (`smtp:`), as in Exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    primary: bool,
    text: String,
    value: ProxyValue,
}

/// The parsed value of a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProxyValue {
    Smtp(EmailAddress),
    CcMail(LegacyAddress),
    X500(String),
    Migrate(Box<Proxy>),
    Other,
}

/// What a proxy is matched by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Smtp(String),
    Name(String),
    X500(String),
}

impl Proxy {
    /// Reads one proxy address, `TYPE:address`.
    ///
    /// # Errors
    /// [`ProblemKind::ProxyWithoutType`] without a `TYPE:` prefix; [`ProblemKind::BadProxy`]
    /// when the value is empty or malformed: `SMTP` needs an RFC 5321 mailbox, `CCMAIL` a
    /// legacy `Name at PO`, `X500` a DN starting with `/`, `MIGRATE` one of those inside.
    pub fn parse(text: &str) -> Result<Self, ProblemKind> {
        Self::parse_nested(text, false)
    }

    fn parse_nested(text: &str, nested: bool) -> Result<Self, ProblemKind> {
        let text = text.trim();
        let Some((word, value)) = split_type(text) else {
            return Err(ProblemKind::ProxyWithoutType {
                text: text.to_owned(),
            });
        };
        let bad = |reason: &str| ProblemKind::BadProxy {
            proxy: text.to_owned(),
            reason: reason.to_owned(),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(bad("empty address"));
        }
        let primary = word.chars().any(|c| c.is_ascii_alphabetic())
            && !word.chars().any(|c| c.is_ascii_lowercase());
        let (kind, parsed) = match word.to_ascii_lowercase().as_str() {
            "smtp" => {
                let address = EmailAddress::from_str(value).map_err(|e| bad(&e.to_string()))?;
                (ProxyKind::Smtp, ProxyValue::Smtp(address))
            }
            "ccmail" => {
                let plain = split_last_at(value).and_then(|(name, po)| plain_name(name, po));
                let address = match plain {
                    Some(address) => address,
                    None => parse_address(value).map_err(|e| bad(&e.to_string()))?,
                };
                match &address {
                    LegacyAddress::Name {
                        literal: false,
                        po: Some(_),
                        ..
                    } => {}
                    _ => return Err(bad("a CCMAIL proxy is a legacy name: Name at PO")),
                }
                (ProxyKind::CcMail, ProxyValue::CcMail(address))
            }
            "x500" => {
                if !value.starts_with('/') {
                    return Err(bad(
                        "an X500 proxy is a DN such as /o=Org/ou=Site/cn=Recipients/cn=jdoe",
                    ));
                }
                (ProxyKind::X500, ProxyValue::X500(value.to_owned()))
            }
            "migrate" if !nested => {
                let inner = Self::parse_nested(value, true).map_err(|e| match e {
                    ProblemKind::BadProxy { reason, .. } => bad(&reason),
                    _ => bad("MIGRATE needs a typed address inside: MIGRATE:CCMAIL:user at PO"),
                })?;
                if matches!(inner.kind, ProxyKind::Other(_)) {
                    return Err(bad("MIGRATE takes an SMTP, CCMAIL or X500 address"));
                }
                (ProxyKind::Migrate, ProxyValue::Migrate(Box::new(inner)))
            }
            "migrate" => return Err(bad("MIGRATE inside MIGRATE")),
            _ => (
                ProxyKind::Other(word.to_ascii_uppercase()),
                ProxyValue::Other,
            ),
        };
        Ok(Self {
            kind,
            primary,
            text: {
                let mut text = String::with_capacity(word.len() + 1 + value.len());
                text.push_str(word);
                text.push(':');
                text.push_str(value);
                text
            },
            value: parsed,
        })
    }

    /// The type.
    pub fn kind(&self) -> &ProxyKind {
        &self.kind
    }

    /// True for the primary address of its type (type word in upper case).
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// The proxy as written (trimmed), e.g. `smtp:jdoe@legacy.example.com`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The SMTP address of an `SMTP` proxy, or inside a `MIGRATE` one.
    pub fn smtp(&self) -> Option<&EmailAddress> {
        match &self.value {
            ProxyValue::Smtp(address) => Some(address),
            ProxyValue::Migrate(inner) => inner.smtp(),
            _ => None,
        }
    }

    /// The legacy name of a `CCMAIL` proxy, or inside a `MIGRATE` one.
    pub fn legacy(&self) -> Option<&LegacyAddress> {
        match &self.value {
            ProxyValue::CcMail(address) => Some(address),
            ProxyValue::Migrate(inner) => inner.legacy(),
            _ => None,
        }
    }

    /// The address inside a `MIGRATE` proxy.
    pub fn migrate_inner(&self) -> Option<&Proxy> {
        match &self.value {
            ProxyValue::Migrate(inner) => Some(inner),
            _ => None,
        }
    }

    fn key(&self) -> Option<Key> {
        match &self.value {
            ProxyValue::Smtp(address) => Some(Key::Smtp(smtp_key(address))),
            ProxyValue::CcMail(address) => name_key(address).map(Key::Name),
            ProxyValue::X500(dn) => Some(Key::X500(dn.to_lowercase())),
            ProxyValue::Migrate(inner) => inner.key(),
            ProxyValue::Other => None,
        }
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Proxy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Splits `TYPE:value` when TYPE is a plausible type word (letters and digits, at most 16).
fn split_type(text: &str) -> Option<(&str, &str)> {
    let (word, value) = text.split_once(':')?;
    let plausible = !word.is_empty()
        && word.len() <= MAX_PROXY_TYPE_LEN
        && word.chars().all(|c| c.is_ascii_alphanumeric());
    plausible.then_some((word, value))
}

/// Splits a `;`-separated list of proxies (the CSV's `proxy_addresses`), giving each piece with
/// its character offset in `text`. A piece without a `TYPE:` prefix continues the previous
/// proxy (X.400 addresses hold `;`: `X400:c=US;a= ;p=Org;s=Doe`); empty pieces are skipped.
pub fn split_proxies(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut chars_before = 0usize;
    for piece in text.split(';') {
        let leading = piece.chars().take_while(|c| c.is_whitespace()).count();
        let offset = chars_before.saturating_add(leading);
        chars_before = chars_before
            .saturating_add(piece.chars().count())
            .saturating_add(1);
        let trimmed = piece.trim();
        if trimmed.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((_, previous)) if split_type(trimmed).is_none() => {
                previous.push(';');
                previous.push_str(piece);
            }
            _ => out.push((offset, trimmed.to_owned())),
        }
    }
    out
}

/// One field of a raw row: its text and 1-based character column (1 when the source has no
/// columns).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawField {
    /// The text as read.
    pub value: String,
    /// Where it starts.
    pub column: usize,
}

impl RawField {
    /// A field at column 1.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            column: 1,
        }
    }
}

/// One directory row as text, before validation: what a source reads. The fields are the
/// columns of docs/directory.md; `proxy_addresses` holds one field per proxy (the CSV reader
/// splits its column with [`split_proxies`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawEntry {
    /// The row's first line (CSV) or 1-based position (LDAP).
    pub line: usize,
    /// The row's identity, if the source has one (an LDAP DN).
    pub id: Option<String>,
    /// `display_name`.
    pub display_name: RawField,
    /// `legacy_name`.
    pub legacy_name: RawField,
    /// `post_office`.
    pub post_office: RawField,
    /// `proxy_addresses`, one field per proxy.
    pub proxy_addresses: Vec<RawField>,
    /// `target_address`.
    pub target_address: RawField,
    /// `state`.
    pub state: RawField,
}

/// A validated directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    line: usize,
    id: Option<String>,
    display_name: String,
    legacy: Option<LegacyAddress>,
    proxies: Vec<Proxy>,
    target: Option<EmailAddress>,
    state: State,
    columns: Columns,
}

/// Where an entry's fields were, for problems found when compiling the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Columns {
    legacy_name: usize,
    target: usize,
    proxies: [usize; 4],
    proxies_rest: usize,
}

impl Columns {
    fn proxy(&self, index: usize) -> usize {
        self.proxies
            .get(index)
            .copied()
            .unwrap_or(self.proxies_rest)
    }
}

impl Entry {
    /// Validates one row.
    ///
    /// # Errors
    /// Every problem of the row: a bad or missing state, a legacy name and post office that do
    /// not form a writable legacy address (or are missing for a `legacy` or `migrating` user),
    /// bad proxies, two primaries of one type, a bad target address (or none for a `migrated`
    /// user).
    pub fn from_raw(raw: RawEntry) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let line = raw.line;
        let id = raw.id;
        let mut problem = |column: usize, kind: ProblemKind| {
            problems.push(Problem {
                line,
                column: column.max(1),
                id: id.clone(),
                kind,
            });
        };

        let state = match raw.state.value.trim() {
            "" => {
                problem(
                    raw.state.column,
                    ProblemKind::Empty {
                        field: "state",
                        state_needs: false,
                    },
                );
                None
            }
            text => match text.parse::<State>() {
                Ok(state) => Some(state),
                Err(kind) => {
                    problem(raw.state.column, kind);
                    None
                }
            },
        };

        let name = raw.legacy_name.value.trim();
        let po = raw.post_office.value.trim();
        let legacy = match (name.is_empty(), po.is_empty()) {
            (false, false) => match legacy_name_address(name, po) {
                Ok(address) => Some(address),
                Err(reason) => {
                    problem(
                        raw.legacy_name.column,
                        ProblemKind::BadLegacyName {
                            name: name.to_owned(),
                            post_office: po.to_owned(),
                            reason,
                        },
                    );
                    None
                }
            },
            (true, true) => {
                if matches!(state, Some(State::Legacy | State::Migrating)) {
                    problem(
                        raw.legacy_name.column,
                        ProblemKind::Empty {
                            field: "legacy_name",
                            state_needs: true,
                        },
                    );
                }
                None
            }
            (true, false) => {
                problem(
                    raw.legacy_name.column,
                    ProblemKind::Empty {
                        field: "legacy_name",
                        state_needs: false,
                    },
                );
                None
            }
            (false, true) => {
                problem(
                    raw.post_office.column,
                    ProblemKind::Empty {
                        field: "post_office",
                        state_needs: false,
                    },
                );
                None
            }
        };

        let mut columns = Columns {
            legacy_name: raw.legacy_name.column.max(1),
            target: raw.target_address.column.max(1),
            ..Columns::default()
        };
        if raw.proxy_addresses.len() > MAX_PROXIES {
            problem(
                raw.proxy_addresses.first().map_or(1, |field| field.column),
                ProblemKind::TooLarge {
                    what: "the number of proxy addresses",
                    max: MAX_PROXIES,
                },
            );
        }
        let mut proxies: Vec<Proxy> = Vec::with_capacity(raw.proxy_addresses.len());
        for field in raw.proxy_addresses.iter().take(MAX_PROXIES) {
            match Proxy::parse(&field.value) {
                Ok(proxy) => {
                    let column = field.column.max(1);
                    match columns.proxies.get_mut(proxies.len()) {
                        Some(slot) => *slot = column,
                        None => columns.proxies_rest = column,
                    }
                    if proxy.primary
                        && matches!(proxy.kind, ProxyKind::Smtp | ProxyKind::CcMail)
                        && let Some(first) =
                            proxies.iter().find(|p| p.primary && p.kind == proxy.kind)
                    {
                        problem(
                            column,
                            ProblemKind::TwoPrimaries {
                                kind: proxy.kind.to_string(),
                                first: first.text.clone(),
                                second: proxy.text.clone(),
                            },
                        );
                        continue;
                    }
                    proxies.push(proxy);
                }
                Err(kind) => problem(field.column, kind),
            }
        }

        let target_text = raw.target_address.value.trim();
        let target = if target_text.is_empty() {
            if state == Some(State::Migrated) {
                problem(
                    raw.target_address.column,
                    ProblemKind::Empty {
                        field: "target_address",
                        state_needs: true,
                    },
                );
            }
            None
        } else {
            match parse_target(target_text) {
                Ok(address) => Some(address),
                Err(reason) => {
                    problem(
                        raw.target_address.column,
                        ProblemKind::BadTarget {
                            value: target_text.to_owned(),
                            reason,
                        },
                    );
                    None
                }
            }
        };

        let (Some(state), true) = (state, problems.is_empty()) else {
            return Err(problems);
        };
        let display_name = if raw.display_name.value.trim().is_empty() {
            name.to_owned()
        } else if raw.display_name.value.trim().len() == raw.display_name.value.len() {
            raw.display_name.value
        } else {
            raw.display_name.value.trim().to_owned()
        };
        Ok(Self {
            line,
            id,
            display_name,
            legacy,
            proxies,
            target,
            state,
            columns,
        })
    }

    /// The row's first line (CSV) or position (LDAP).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The row's identity (an LDAP DN), if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The display name (the legacy name when the row has none).
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The legacy mailbox name, e.g. `Doe, Jane`.
    pub fn legacy_name(&self) -> Option<&str> {
        self.legacy.as_ref().and_then(LegacyAddress::name)
    }

    /// The legacy post office, e.g. `HQ`.
    pub fn post_office(&self) -> Option<&str> {
        self.legacy.as_ref().and_then(LegacyAddress::po)
    }

    /// `legacy_name at post_office` as a legacy address.
    pub fn legacy_address(&self) -> Option<&LegacyAddress> {
        self.legacy.as_ref()
    }

    /// The proxy addresses, in source order.
    pub fn proxies(&self) -> &[Proxy] {
        &self.proxies
    }

    /// Where a migrated user's mail goes.
    pub fn target_address(&self) -> Option<&EmailAddress> {
        self.target.as_ref()
    }

    /// The migration state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The primary SMTP address (`SMTP:`), else the first secondary (`smtp:`): the address the
    /// user is known by, used when rewriting the user's address for the SMTP side.
    pub fn primary_smtp(&self) -> Option<&EmailAddress> {
        let smtp = |primary: bool| {
            self.proxies
                .iter()
                .filter(|p| p.kind == ProxyKind::Smtp && p.primary == primary)
                .find_map(Proxy::smtp)
        };
        smtp(true).or_else(|| smtp(false))
    }

    /// The row named in problems about another row.
    fn other_row(&self) -> OtherRow {
        OtherRow {
            line: self.line,
            id: self.id.clone(),
        }
    }
}

impl serde::Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct View<'a> {
            line: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            display_name: &'a str,
            legacy_name: Option<&'a str>,
            post_office: Option<&'a str>,
            proxy_addresses: &'a [Proxy],
            target_address: Option<&'a EmailAddress>,
            state: State,
        }
        View {
            line: self.line,
            id: self.id(),
            display_name: &self.display_name,
            legacy_name: self.legacy_name(),
            post_office: self.post_office(),
            proxy_addresses: &self.proxies,
            target_address: self.target.as_ref(),
            state: self.state,
        }
        .serialize(serializer)
    }
}

/// Checks that `name at po` is a plain legacy name that reads back as written.
fn legacy_name_address(name: &str, po: &str) -> Result<LegacyAddress, String> {
    if let Some(address) = plain_name(name, po) {
        return Ok(address);
    }
    if name.starts_with(',') {
        return Err("a directory name cannot start with a comma (that marks a one-off)".to_owned());
    }
    let address = parse_address(&format!("{name} at {po}")).map_err(|e| e.to_string())?;
    match &address {
        LegacyAddress::Name {
            name: n,
            po: Some(p),
            literal: false,
        } if n == name && p == po => Ok(address),
        LegacyAddress::Name { .. } => Err(
            "the post office must be a plain identifier without the word \"at\" (legacy-format.md §7)"
                .to_owned(),
        ),
        _ => Err("not a plain legacy name".to_owned()),
    }
}

/// `name at po` built without the legacy reader, for the plain names that make up almost every
/// directory (letters, digits, single spaces, `, . - ' &`; a post office of letters, digits,
/// `-` and `_`; neither holding the word `at`). `None` sends the text to the full reader. A
/// test checks that both agree.
fn plain_name(name: &str, po: &str) -> Option<LegacyAddress> {
    let name_char =
        |c: char| c.is_alphanumeric() || matches!(c, ' ' | ',' | '.' | '-' | '\'' | '&');
    let po_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    let plain = !name.is_empty()
        && !po.is_empty()
        && !name.starts_with([',', ' ', '#'])
        && !name.ends_with(' ')
        && !name.contains("  ")
        && name.chars().all(name_char)
        && po.chars().all(po_char)
        && !po.eq_ignore_ascii_case("at")
        && !name.split(' ').any(|word| word.eq_ignore_ascii_case("at"));
    plain.then(|| LegacyAddress::Name {
        name: name.to_owned(),
        po: Some(po.to_owned()),
        literal: false,
    })
}

/// [`LegacyAddress::name_key`], without its allocations for names already single-spaced.
fn name_key(address: &LegacyAddress) -> Option<String> {
    match address {
        LegacyAddress::Name {
            name,
            literal: false,
            ..
        } if !name.starts_with(' ')
            && !name.ends_with(' ')
            && !name.contains("  ")
            && !name.contains(|c: char| c.is_whitespace() && c != ' ') =>
        {
            Some(name.to_lowercase())
        }
        other => other.name_key(),
    }
}

/// The index key of an SMTP address: the address with its local part lower-cased (the domain
/// already is), built without the formatting machinery because loading makes hundreds of
/// thousands of them.
fn smtp_key(address: &EmailAddress) -> String {
    let (local, domain) = (address.local(), address.domain());
    let mut key = String::with_capacity(local.len() + 1 + domain.len());
    for c in local.chars() {
        if c.is_ascii() {
            key.push(c.to_ascii_lowercase());
        } else {
            key.extend(c.to_lowercase());
        }
    }
    key.push('@');
    key.push_str(domain);
    key
}

/// Splits `name at po` at the last ` at ` (any case, one space each side).
fn split_last_at(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let at = (0..bytes.len().saturating_sub(3)).rev().find(|&i| {
        bytes
            .get(i..i.saturating_add(4))
            .is_some_and(|w| w.eq_ignore_ascii_case(b" at "))
    })?;
    Some((text.get(..at)?, text.get(at.saturating_add(4)..)?))
}

/// Reads `SMTP:addr`, `smtp:addr` or a bare `addr`.
fn parse_target(text: &str) -> Result<EmailAddress, String> {
    let address = match split_type(text) {
        Some((word, value)) if word.eq_ignore_ascii_case("smtp") => value.trim(),
        Some((word, _)) => {
            return Err(format!(
                "only SMTP targets are supported, not {}",
                word.to_ascii_uppercase()
            ));
        }
        None => text,
    };
    EmailAddress::from_str(address).map_err(|e| e.to_string())
}

/// How an entry was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchedBy {
    /// By the proxy at this index of [`Entry::proxies`].
    Proxy(usize),
    /// By the `legacy_name` column.
    LegacyName,
    /// By the `target_address` column.
    TargetAddress,
}

/// An entry found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The entry.
    pub entry: Arc<Entry>,
    /// What matched.
    pub by: MatchedBy,
}

impl Matched {
    /// The proxy that matched, if a proxy did.
    pub fn proxy(&self) -> Option<&Proxy> {
        match self.by {
            MatchedBy::Proxy(index) => self.entry.proxies.get(index),
            _ => None,
        }
    }

    /// What matched, for people: the proxy as written, `legacy_name Doe, Jane at HQ` or
    /// `target_address SMTP:...`.
    pub fn describe(&self) -> String {
        match self.by {
            MatchedBy::Proxy(_) => self
                .proxy()
                .map_or_else(String::new, |p| p.as_str().to_owned()),
            MatchedBy::LegacyName => self
                .entry
                .legacy
                .as_ref()
                .map_or_else(String::new, |a| format!("legacy_name {a}")),
            MatchedBy::TargetAddress => self
                .entry
                .target
                .as_ref()
                .map_or_else(String::new, |a| format!("target_address SMTP:{a}")),
        }
    }
}

impl serde::Serialize for Matched {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct View<'a> {
            entry: &'a Entry,
            matched: String,
        }
        View {
            entry: &self.entry,
            matched: self.describe(),
        }
        .serialize(serializer)
    }
}

/// Where a key points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    entry: u32,
    by: MatchedBy,
}

/// A validated, compiled directory: the entries and three hash indexes (SMTP addresses
/// lower-cased, legacy name keys, X.500 DNs lower-cased).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    entries: Vec<Arc<Entry>>,
    smtp: HashMap<String, Hit>,
    names: HashMap<String, Hit>,
    x500: HashMap<String, Hit>,
}

impl Directory {
    /// An empty directory: every lookup misses.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Validates the rows and compiles them.
    ///
    /// # Errors
    /// [`Error::Invalid`] with every problem: those of each row ([`Entry::from_raw`]), legacy
    /// names used by two entries (the `legacy_name` column and `CCMAIL:` proxies, compared
    /// without regard to case), addresses owned by two entries (SMTP proxies, target
    /// addresses, X500 DNs), more than [`MAX_ENTRIES`] rows. Each problem of the second kind
    /// names both rows.
    pub fn from_raw(rows: Vec<RawEntry>) -> Result<Self, Error> {
        Self::from_raw_with(rows, Vec::new())
    }

    /// As [`from_raw`](Self::from_raw), adding problems the source already found.
    pub(crate) fn from_raw_with(
        rows: Vec<RawEntry>,
        mut problems: Vec<Problem>,
    ) -> Result<Self, Error> {
        if rows.len() > MAX_ENTRIES {
            problems.push(Problem {
                line: rows.get(MAX_ENTRIES).map_or(1, |r| r.line),
                column: 1,
                id: None,
                kind: ProblemKind::TooManyEntries { max: MAX_ENTRIES },
            });
        }
        let mut entries = Vec::with_capacity(rows.len().min(MAX_ENTRIES));
        for row in rows.into_iter().take(MAX_ENTRIES) {
            match Entry::from_raw(row) {
                Ok(entry) => entries.push(entry),
                Err(mut found) => problems.append(&mut found),
            }
        }
        match Self::from_entries(entries) {
            Ok(directory) if problems.is_empty() => Ok(directory),
            Ok(_) => Err(invalid(problems)),
            Err(Error::Invalid {
                problems: mut found,
            }) => {
                problems.append(&mut found);
                Err(invalid(problems))
            }
            Err(other) => Err(other),
        }
    }

    /// Compiles validated entries.
    ///
    /// # Errors
    /// [`Error::Invalid`] for names and addresses owned by two entries, or more than
    /// [`MAX_ENTRIES`] entries.
    pub fn from_entries(entries: Vec<Entry>) -> Result<Self, Error> {
        if entries.len() > MAX_ENTRIES {
            return Err(invalid(vec![Problem {
                line: entries.get(MAX_ENTRIES).map_or(1, |e| e.line),
                column: 1,
                id: None,
                kind: ProblemKind::TooManyEntries { max: MAX_ENTRIES },
            }]));
        }
        let mut directory = Self {
            entries: Vec::with_capacity(entries.len()),
            smtp: HashMap::with_capacity(entries.len().saturating_mul(2)),
            names: HashMap::with_capacity(entries.len()),
            x500: HashMap::new(),
        };
        let mut problems = Vec::new();
        for entry in entries {
            let Ok(index) = u32::try_from(directory.entries.len()) else {
                break;
            };
            let mut keys: Vec<(Key, MatchedBy)> = Vec::with_capacity(entry.proxies.len() + 2);
            if let Some(key) = entry.legacy.as_ref().and_then(name_key) {
                keys.push((Key::Name(key), MatchedBy::LegacyName));
            }
            for (proxy_index, proxy) in entry.proxies.iter().enumerate() {
                if let Some(key) = proxy.key() {
                    keys.push((key, MatchedBy::Proxy(proxy_index)));
                }
            }
            if let Some(target) = &entry.target {
                keys.push((Key::Smtp(smtp_key(target)), MatchedBy::TargetAddress));
            }
            for (key, by) in keys {
                let (map, is_name, key) = match key {
                    Key::Smtp(k) => (&mut directory.smtp, false, k),
                    Key::Name(k) => (&mut directory.names, true, k),
                    Key::X500(k) => (&mut directory.x500, false, k),
                };
                match map.entry(key) {
                    MapEntry::Vacant(slot) => {
                        slot.insert(Hit { entry: index, by });
                    }
                    MapEntry::Occupied(slot) if slot.get().entry == index => {}
                    MapEntry::Occupied(slot) => {
                        let (text, column) = match by {
                            MatchedBy::LegacyName => (
                                entry.legacy_name().unwrap_or_default().to_owned(),
                                entry.columns.legacy_name,
                            ),
                            MatchedBy::Proxy(i) => (
                                entry
                                    .proxies
                                    .get(i)
                                    .map(|p| p.text.clone())
                                    .unwrap_or_default(),
                                entry.columns.proxy(i),
                            ),
                            MatchedBy::TargetAddress => (
                                entry
                                    .target
                                    .as_ref()
                                    .map(ToString::to_string)
                                    .unwrap_or_default(),
                                entry.columns.target,
                            ),
                        };
                        let owner = usize::try_from(slot.get().entry)
                            .ok()
                            .and_then(|i| directory.entries.get(i));
                        let other = owner
                            .map_or(OtherRow { line: 0, id: None }, |owner: &Arc<Entry>| {
                                owner.other_row()
                            });
                        let kind = if is_name {
                            ProblemKind::DuplicateName { name: text, other }
                        } else {
                            ProblemKind::DuplicateAddress {
                                address: text,
                                other,
                            }
                        };
                        problems.push(Problem {
                            line: entry.line,
                            column: column.max(1),
                            id: entry.id.clone(),
                            kind,
                        });
                    }
                }
            }
            directory.entries.push(Arc::new(entry));
        }
        if problems.is_empty() {
            Ok(directory)
        } else {
            Err(invalid(problems))
        }
    }

    /// The entries, in source order.
    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry owning an SMTP address (a proxy, a `MIGRATE:SMTP:` proxy or a target
    /// address), compared without regard to case.
    pub fn lookup_smtp(&self, address: &EmailAddress) -> Option<Matched> {
        self.hit(self.smtp.get(&smtp_key(address)))
    }

    /// The entry owning a legacy name (its `legacy_name` or a `CCMAIL:`/`MIGRATE:CCMAIL:`
    /// proxy), compared as [`LegacyAddress::name_key`] does: without regard to case, runs of
    /// white space as one space. The post office is not compared: names are unique across the
    /// whole directory.
    pub fn lookup_name(&self, name: &str) -> Option<Matched> {
        let key = name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        self.hit(self.names.get(&key))
    }

    /// As [`lookup_name`](Self::lookup_name), for a key already made by
    /// [`LegacyAddress::name_key`].
    pub fn lookup_name_key(&self, key: &str) -> Option<Matched> {
        self.hit(self.names.get(key))
    }

    /// The entry owning an X.500 DN (an `X500:` proxy), compared without regard to case.
    pub fn lookup_x500(&self, dn: &str) -> Option<Matched> {
        self.hit(self.x500.get(&dn.to_lowercase()))
    }

    fn hit(&self, hit: Option<&Hit>) -> Option<Matched> {
        let hit = hit?;
        let entry = self.entries.get(usize::try_from(hit.entry).ok()?)?;
        Some(Matched {
            entry: Arc::clone(entry),
            by: hit.by,
        })
    }
}

/// Sorts problems by row and column and wraps them.
fn invalid(mut problems: Vec<Problem>) -> Error {
    problems.sort_by_key(|p| (p.line, p.column));
    Error::Invalid { problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        line: usize,
        name: &str,
        po: &str,
        proxies: &str,
        target: &str,
        state: &str,
    ) -> RawEntry {
        RawEntry {
            line,
            id: None,
            display_name: RawField::new(""),
            legacy_name: RawField::new(name),
            post_office: RawField::new(po),
            proxy_addresses: split_proxies(proxies)
                .into_iter()
                .map(|(_, p)| RawField::new(p))
                .collect(),
            target_address: RawField::new(target),
            state: RawField::new(state),
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_names_read_as_the_legacy_reader_reads_them(
            name in "[A-Za-z0-9 ,.'&#-]{0,12}(at|At)?[A-Za-z ,]{0,6}",
            po in "[A-Za-z0-9_ -]{0,6}",
        ) {
            if let Some(fast) = plain_name(&name, &po) {
                proptest::prop_assert_eq!(name_key(&fast), fast.name_key());
                let text = format!("{name} at {po}");
                proptest::prop_assert_eq!(parse_address(&text).ok(), Some(fast.clone()));
                proptest::prop_assert_eq!(
                    split_last_at(&text).and_then(|(n, p)| plain_name(n, p)),
                    Some(fast)
                );
            }
        }
    }

    #[test]
    fn proxies_parse_with_type_and_primary_flag() {
        let cases = [
            ("SMTP:Jane.Doe@Legacy.Example.com", ProxyKind::Smtp, true),
            ("smtp:jd@legacy.example.com", ProxyKind::Smtp, false),
            ("CCMAIL:Doe, Jane at HQ", ProxyKind::CcMail, true),
            ("ccmail:Doe, Jane at EXSITE", ProxyKind::CcMail, false),
            (
                "X500:/o=Org/ou=Site/cn=Recipients/cn=jdoe",
                ProxyKind::X500,
                true,
            ),
            ("MIGRATE:CCMAIL:jdoe AT hq", ProxyKind::Migrate, true),
            (
                "X400:c=US;a= ;p=Org;s=Doe",
                ProxyKind::Other("X400".into()),
                true,
            ),
        ];
        for (text, kind, primary) in cases {
            let proxy = Proxy::parse(text).unwrap();
            assert_eq!(
                (proxy.kind(), proxy.is_primary()),
                (&kind, primary),
                "{text}"
            );
            assert_eq!(proxy.as_str(), text);
        }
        let migrate = Proxy::parse("MIGRATE:CCMAIL:jdoe AT hq").unwrap();
        assert_eq!(
            migrate.legacy().and_then(|a| a.name_key()).as_deref(),
            Some("jdoe")
        );
    }

    #[test]
    fn bad_proxies_are_refused() {
        for text in [
            "jane@example.com",
            "SMTP:not an address",
            "SMTP:",
            "CCMAIL:no post office",
            "CCMAIL:,Literal at HQ",
            "X500:o=Org",
            "MIGRATE:MIGRATE:SMTP:a@b.c",
            "MIGRATE:X400:c=US",
        ] {
            assert!(Proxy::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn split_keeps_x400_semicolons_together() {
        let split = split_proxies("SMTP:a@b.c; X400:c=US;a= ;p=Org;s=Doe;;ccmail:A at B");
        let texts: Vec<&str> = split.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            ["SMTP:a@b.c", "X400:c=US;a= ;p=Org;s=Doe", "ccmail:A at B"]
        );
        assert_eq!(split.first().map(|(o, _)| *o), Some(0));
        assert_eq!(split.get(1).map(|(o, _)| *o), Some(12));
    }

    #[test]
    fn row_validation_reports_each_problem() {
        let cases: [(RawEntry, &str); 7] = [
            (
                row(2, "Doe, Jane", "HQ", "", "", "retired"),
                "state \"retired\"",
            ),
            (
                row(2, "", "", "SMTP:a@b.c", "", "legacy"),
                "legacy_name is empty (required",
            ),
            (
                row(2, "Doe, Jane", "", "", "", "legacy"),
                "post_office is empty",
            ),
            (
                row(2, "Doe, Jane", "HQ", "", "", "migrated"),
                "target_address is empty (required",
            ),
            (
                row(2, "Doe, Jane", "HQ", "", "X400:c=US", "migrated"),
                "only SMTP targets",
            ),
            (
                row(2, "Doe, Jane", "HQ", "SMTP:a@b.c;SMTP:d@b.c", "", "legacy"),
                "two primary SMTP",
            ),
            (
                row(2, ",Doe, Jane", "HQ", "", "", "legacy"),
                "cannot start with a comma",
            ),
        ];
        for (raw, expected) in cases {
            let problems = Entry::from_raw(raw).unwrap_err();
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert!(
                text.iter().any(|t| t.contains(expected)),
                "{text:?} lacks {expected}"
            );
        }
    }

    #[test]
    fn duplicates_name_both_rows() {
        let err = Directory::from_raw(vec![
            row(
                2,
                "Smith, Jimmy",
                "Site 1",
                "SMTP:jimmy@a.example",
                "",
                "legacy",
            ),
            row(
                3,
                "SMITH, Jimmy",
                "Site2",
                "smtp:Jimmy@A.example",
                "",
                "legacy",
            ),
            row(
                4,
                "Other, One",
                "HQ",
                "ccmail:smith,  jimmy at EX",
                "",
                "legacy",
            ),
        ])
        .unwrap_err();
        let Error::Invalid { problems } = err else {
            panic!("{err:?}")
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("3:1: legacy name \"SMITH, Jimmy\" is also line 2")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t
                    .starts_with("3:1: address \"smtp:Jimmy@A.example\" also belongs to line 2")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t
                    .starts_with("4:1: legacy name \"ccmail:smith,  jimmy at EX\" is also line 2")),
            "{text:?}"
        );
    }

    #[test]
    fn lookups_are_case_insensitive() {
        let directory = Directory::from_raw(vec![row(
            2,
            "Doe, Jane",
            "HQ",
            "SMTP:jane.doe@legacy.example.com;X500:/o=Org/cn=JDOE;MIGRATE:CCMAIL:jdoe at HQ",
            "SMTP:jane.doe@modern.example.com",
            "migrated",
        )])
        .unwrap();
        let smtp: EmailAddress = "JANE.DOE@LEGACY.example.com".parse().unwrap();
        assert_eq!(
            directory.lookup_smtp(&smtp).unwrap().by,
            MatchedBy::Proxy(0)
        );
        let target: EmailAddress = "jane.doe@modern.example.com".parse().unwrap();
        assert_eq!(
            directory.lookup_smtp(&target).unwrap().by,
            MatchedBy::TargetAddress
        );
        assert_eq!(
            directory.lookup_name("DOE,   jane").unwrap().by,
            MatchedBy::LegacyName
        );
        let migrate = directory.lookup_name("JDOE").unwrap();
        assert_eq!(migrate.describe(), "MIGRATE:CCMAIL:jdoe at HQ");
        assert_eq!(
            directory.lookup_x500("/O=ORG/CN=jdoe").unwrap().by,
            MatchedBy::Proxy(1)
        );
        assert!(directory.lookup_name("Doe, John").is_none());
    }
}
