//! The config file: raw TOML (`RawConfig`, every key optional, unknown keys refused) turned into
//! a validated [`Config`] with typed durations, sizes and absolute paths (ripgrep's "high args").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ccgate_core::{parse_duration, parse_size};
use serde::{Deserialize, Serialize};

/// The config file read when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "ccgate.toml";

/// Where the embedded defaults keep everything.
pub const DEFAULT_DATA_DIR: &str = "ccgate-data";

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<String>,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    legacy: RawLegacy,
    #[serde(default)]
    modern: RawModern,
    #[serde(default)]
    directory: RawDirectory,
    #[serde(default)]
    migration: RawMigration,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    admin: RawAdmin,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    listen: Option<Vec<String>>,
    hostname: Option<String>,
    max_message_size: Option<SizeValue>,
    max_recipients: Option<u32>,
    max_connections: Option<u32>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    max_line_length: Option<u32>,
    max_connections_per_client: Option<u32>,
    max_connection_rate: Option<u32>,
    client_limit_exceptions: Option<Vec<String>>,
    memory_budget: Option<SizeValue>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawLegacy {
    post_office: Option<String>,
    gateway_po: Option<String>,
    domain: Option<String>,
    pickup_dir: Option<String>,
    drop_dir: Option<String>,
    dialect: Option<String>,
    date_format: Option<String>,
    codepage: Option<String>,
    import_command: Option<String>,
    import_timeout: Option<String>,
    poll_interval: Option<String>,
    unknown_recipients: Option<String>,
    post_offices: Option<Vec<String>>,
    smtp_bulletin_boards: Option<Vec<String>>,
    reply_tag_lifetime: Option<String>,
    import_batch: Option<u32>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawModern {
    domain: Option<String>,
    next_hop: Option<String>,
    concurrency: Option<u32>,
    connect_timeout: Option<String>,
    command_timeout: Option<String>,
    data_timeout: Option<String>,
    tls: Option<String>,
    tls_ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    source: Option<String>,
    ldap_base: Option<String>,
    ldap_bind_dn: Option<String>,
    ldap_password_file: Option<String>,
    ldap_filter: Option<String>,
    ldap_attributes: Option<crate::ldap::AttributeMap>,
    reload_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawMigration {
    cutover: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    retry: Option<Vec<String>>,
    max_lifetime: Option<String>,
    quarantine_after: Option<u32>,
    min_free: Option<SizeValue>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_file: Option<String>,
    trace_size: Option<SizeValue>,
}

/// Sizes may be written as a number of bytes or a string like `"25MB"`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Read by hand rather than `untagged`, whose error ("data did not match any variant") says
/// nothing an administrator can act on.
impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SizeValue;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a whole number of bytes or a string like \"25MB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue::Bytes(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SizeValue, E> {
                u64::try_from(v)
                    .map(SizeValue::Bytes)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The names a choice-valued key takes, each with its value: the one list both reading the
/// file and `ccgate config` use.
type Choices<T> = [(&'static str, T)];

const DIALECTS: &Choices<DialectChoice> =
    &[("ie5", DialectChoice::Ie5), ("ie8", DialectChoice::Ie8)];
const DATE_FORMATS: &Choices<ccgate_ccmail::DateOrder> = &[
    ("us", ccgate_ccmail::DateOrder::Us),
    ("eu", ccgate_ccmail::DateOrder::Eu),
    ("jp", ccgate_ccmail::DateOrder::Jp),
];
const CODEPAGES: &Choices<ccgate_ccmail::Codepage> = &[
    ("ibm437", ccgate_ccmail::Codepage::Ibm437),
    ("ibm850", ccgate_ccmail::Codepage::Ibm850),
];
const UNKNOWN_RECIPIENTS: &Choices<UnknownRecipients> = &[
    ("bounce", UnknownRecipients::Bounce),
    ("hold", UnknownRecipients::Hold),
];
const CUTOVERS: &Choices<Cutover> = &[("hold", Cutover::Hold), ("legacy", Cutover::Legacy)];
/// `modern.tls`; `verify` takes `tls_ca_file` besides.
const TLS_LEVELS: &[&str] = &["none", "may", "encrypt", "verify"];

/// The value named `value` (else `default`) in `choices`, or an error naming the key and the
/// names it takes.
fn choice<T: Copy>(
    key: &str,
    value: Option<&str>,
    default: &str,
    choices: &Choices<T>,
) -> anyhow::Result<T> {
    let value = value.unwrap_or(default);
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, v)) => Ok(*v),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            bail!("{key}: {value:?} is not {}", one_of(&names))
        }
    }
}

/// The name of `value` in `choices`.
fn name_of<T: PartialEq>(value: &T, choices: &Choices<T>) -> String {
    choices
        .iter()
        .find(|(_, v)| v == value)
        .map_or_else(String::new, |(name, _)| (*name).to_owned())
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// What the post office's Import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectChoice {
    /// Import 5.12-5.15.
    Ie5,
    /// Import 6.x/8.x.
    Ie8,
}

/// What to do with mail for users in state `migrating`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutover {
    /// Hold it; release it when the user becomes `migrated`.
    Hold,
    /// Keep delivering to the legacy mailbox until the switch.
    Legacy,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    /// Spool, archives, state.
    pub data_dir: PathBuf,
    /// `[smtp]`.
    pub smtp: SmtpConfig,
    /// `[legacy]`.
    pub legacy: LegacyConfig,
    /// `[modern]`.
    pub modern: ModernConfig,
    /// `[directory]`.
    pub directory: DirectoryConfig,
    /// `[migration] cutover`.
    pub cutover: Cutover,
    /// `[queue]`.
    pub queue: QueueConfig,
    /// `[admin] listen`.
    pub admin_listen: SocketAddr,
    /// `[admin] token_file`: the console's token for actions (and for reading beyond loopback).
    pub admin_token_file: Option<PathBuf>,
    /// `[admin] trace_size`: the bound on the message trace's files; 0 turns the trace off.
    pub trace_size: u64,
}

/// `[smtp]`.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Listening addresses.
    pub listen: Vec<SocketAddr>,
    /// Greeting and Received: name.
    pub hostname: String,
    /// Largest message accepted, in bytes.
    pub max_message_size: u64,
    /// Most recipients per transaction.
    pub max_recipients: u32,
    /// Most concurrent sessions.
    pub max_connections: u32,
    /// Certificate and key for STARTTLS, when both are set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Longest message text line, CR LF included; 0 = no limit (the default, as Postfix).
    pub max_line_length: u32,
    /// Most sessions at once from one client address; 0 = no limit.
    pub max_connections_per_client: u32,
    /// Most new sessions per minute from one client address; 0 = no limit.
    pub max_connection_rate: u32,
    /// Client networks the per-client limits do not apply to.
    pub client_limit_exceptions: Vec<ccgate_server::Network>,
    /// Message text all sessions may hold in memory at once, in bytes; 0 = no limit.
    pub memory_budget: u64,
}

/// `[legacy]`.
#[derive(Debug, Clone)]
pub struct LegacyConfig {
    /// The connected legacy post office.
    pub post_office: String,
    /// The gateway's post-office entry in the legacy directory.
    pub gateway_po: String,
    /// SMTP domain of legacy users.
    pub domain: String,
    /// Export files written by the post office.
    pub pickup_dir: PathBuf,
    /// Import files written by ccgate.
    pub drop_dir: PathBuf,
    /// What Import accepts.
    pub dialect: DialectChoice,
    /// `us`, `eu` or `jp`.
    pub date_format: ccgate_ccmail::DateOrder,
    /// `ibm437` or `ibm850`.
    pub codepage: ccgate_ccmail::Codepage,
    /// Program run once per import file, if any.
    pub import_command: Option<String>,
    /// A hung import command is killed after this.
    pub import_timeout: Duration,
    /// How often the pickup folder is scanned.
    pub poll_interval: Duration,
    /// At most this many messages per import file (at least 1).
    pub import_batch: usize,
    /// What happens to legacy recipients the directory does not know.
    pub unknown_recipients: UnknownRecipients,
    /// Legacy post offices reachable from SMTP for names outside the directory (default: the
    /// connected one).
    pub post_offices: Vec<String>,
    /// Bulletin boards reachable from SMTP (default: none).
    pub smtp_bulletin_boards: Vec<String>,
    /// How long the reply address issued for a legacy sender outside the directory stays
    /// valid, in whole days (also how often the tag key is rotated).
    pub reply_tag_lifetime_days: u16,
}

/// `legacy.unknown_recipients`: what happens to a recipient of a legacy message that the
/// directory does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownRecipients {
    /// Fail it with 5.1.1: the legacy sender gets a non-delivery report.
    Bounce,
    /// Hold it in the `unroutable` lane for the administrator (requeue after fixing the
    /// directory, or delete).
    Hold,
}

/// `[modern]`.
#[derive(Debug, Clone)]
pub struct ModernConfig {
    /// SMTP domain of migrated mailboxes.
    pub domain: String,
    /// `maildir:PATH` or `smtp://host:port`.
    pub next_hop: NextHop,
    /// Connections to an `smtp://` next hop at once (Postfix's destination concurrency).
    pub concurrency: usize,
    /// Time to connect and get the greeting (`smtp_connect_timeout`).
    pub connect_timeout: Duration,
    /// Time for the reply to each command (`smtp_helo_timeout`, `smtp_rcpt_timeout`, ...).
    pub command_timeout: Duration,
    /// Time to send the message and get the reply to its final dot (`smtp_data_done_timeout`).
    pub data_timeout: Duration,
    /// TLS to an `smtp://` next hop (`smtp_tls_security_level`).
    pub tls: ccgate_server::TlsPolicy,
}

/// Where modern-bound and external mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    /// Deliver into a Maildir.
    Maildir(PathBuf),
    /// Relay to an SMTP server.
    Smtp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

/// `[directory]`.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// A CSV path or an `ldap://` URL.
    pub source: DirectorySource,
    /// How often to reload (besides SIGHUP).
    pub reload_interval: Option<Duration>,
}

/// Where the directory comes from.
#[derive(Debug, Clone)]
pub enum DirectorySource {
    /// A CSV file.
    Csv(PathBuf),
    /// An LDAP server.
    Ldap {
        /// `ldap://host:port`.
        url: String,
        /// Search base.
        base: Option<String>,
        /// Bind DN.
        bind_dn: Option<String>,
        /// File holding the bind password.
        password_file: Option<PathBuf>,
        /// Search filter.
        filter: Option<String>,
        /// Which attribute holds which row field.
        attributes: Box<crate::ldap::AttributeMap>,
    },
}

/// `[queue]`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Retry intervals; the last repeats.
    pub retry: Vec<Duration>,
    /// Then bounce.
    pub max_lifetime: Duration,
    /// Crashes or timeouts of one message before it is quarantined.
    pub quarantine_after: u32,
    /// Refuse new mail below this much free space; `None`: 1.5 x `smtp.max_message_size`,
    /// at most a tenth of the spool's file system ("auto").
    pub min_free: Option<u64>,
}

impl Config {
    /// Loads `--config PATH`, else `./ccgate.toml` if present, else the embedded defaults.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, has an unknown key, or a value is invalid; the
    /// message names the file and the key.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let Some(path) = path else {
            return Self::from_raw(RawConfig::default(), None, Path::new("."));
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse(&text, &path)
    }

    /// The keys (`section.key`, `directory.ldap_attributes.mail`) whose effective values differ
    /// between `self` and `other`, sorted.
    pub fn changed_keys(&self, other: &Self) -> Vec<String> {
        let flat = |config: &Self| {
            let mut keys = Vec::new();
            if let Ok(table) = config.effective_toml().parse::<toml::Table>() {
                flatten("", &table, &mut keys);
            }
            keys
        };
        let (before, after) = (flat(self), flat(other));
        let mut changed: Vec<String> = after
            .iter()
            .filter(|kv| !before.contains(kv))
            .map(|(k, _)| k.clone())
            .collect();
        for (key, _) in &before {
            if !after.iter().any(|(k, _)| k == key) && !changed.contains(key) {
                changed.push(key.clone());
            }
        }
        changed.sort();
        changed
    }

    /// Parses config text read from `path` (relative paths are taken relative to its folder).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::from_raw(raw, Some(path.to_path_buf()), base).map_err(|e| {
            // `section.key: what is wrong`, placed at the key's value in the file.
            let message = format!("{e:#}");
            let position = message
                .split_once(':')
                .map(|(key, _)| key)
                .filter(|key| {
                    !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                })
                .and_then(|key| key_position(text, key));
            match position {
                Some((line, col)) => {
                    anyhow::anyhow!("{}:{line}:{col}: {message}", path.display())
                }
                None => anyhow::anyhow!("{}: invalid config: {message}", path.display()),
            }
        })
    }

    fn from_raw(raw: RawConfig, source: Option<PathBuf>, base: &Path) -> anyhow::Result<Self> {
        let rel = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let data_dir = rel(raw.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR));
        // Folders of the data area (pickup, drop, Maildir) are relative to data_dir.
        let in_data = |value: Option<&str>, default: &str| -> PathBuf {
            data_dir.join(value.unwrap_or(default))
        };

        let smtp = {
            let s = raw.smtp;
            let listen = s
                .listen
                .unwrap_or_else(|| vec!["127.0.0.1:2525".to_owned()])
                .iter()
                .map(|a| {
                    a.parse()
                        .with_context(|| format!("smtp.listen: {a:?} is not host:port"))
                })
                .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
            let max_message_size = match s.max_message_size {
                None => 25_000_000,
                Some(SizeValue::Bytes(n)) => n,
                Some(SizeValue::Text(t)) => parse_size(&t).context("smtp.max_message_size")?,
            };
            let tls = match (s.tls_cert, s.tls_key) {
                (Some(c), Some(k)) => Some((rel(&c), rel(&k))),
                (None, None) => None,
                _ => bail!("smtp.tls_cert and smtp.tls_key must be set together"),
            };
            let memory_budget = match s.memory_budget {
                None => ccgate_server::MEMORY_BUDGET,
                Some(SizeValue::Bytes(n)) => n,
                Some(SizeValue::Text(t)) => parse_size(&t).context("smtp.memory_budget")?,
            };
            let client_limit_exceptions = match s.client_limit_exceptions {
                None => ccgate_server::Network::loopback(),
                Some(list) => list
                    .iter()
                    .map(|n| ccgate_server::Network::parse(n))
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(|e| anyhow::anyhow!("smtp.client_limit_exceptions: {e}"))?,
            };
            let hostname = s
                .hostname
                .unwrap_or_else(|| "ccgate.localdomain".to_owned());
            // It goes into the greeting and every Received: header: a host name, nothing else.
            if hostname.is_empty()
                || hostname.len() > 255
                || !hostname
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                bail!("smtp.hostname: {hostname:?} is not a host name (letters, digits, - and .)");
            }
            if max_message_size == 0 {
                bail!(
                    "smtp.max_message_size: 0 would refuse every message (unlike Postfix's 0, it is not \"no limit\": give a size, e.g. \"25MB\")"
                );
            }
            let max_recipients = s.max_recipients.unwrap_or(1000);
            if max_recipients == 0 {
                bail!("smtp.max_recipients: 0 would refuse every recipient (give at least 1)");
            }
            SmtpConfig {
                listen,
                hostname,
                max_message_size,
                max_recipients,
                max_connections: s.max_connections.unwrap_or(1000),
                tls,
                max_line_length: s.max_line_length.unwrap_or(0),
                max_connections_per_client: s.max_connections_per_client.unwrap_or(
                    u32::try_from(ccgate_server::MAX_CONNECTIONS_PER_CLIENT).unwrap_or(50),
                ),
                max_connection_rate: s.max_connection_rate.unwrap_or(0),
                client_limit_exceptions,
                memory_budget,
            }
        };

        let legacy = {
            let l = raw.legacy;
            let dialect = choice("legacy.dialect", l.dialect.as_deref(), "ie8", DIALECTS)?;
            let date_format = choice(
                "legacy.date_format",
                l.date_format.as_deref(),
                "us",
                DATE_FORMATS,
            )?;
            let codepage = choice(
                "legacy.codepage",
                l.codepage.as_deref(),
                "ibm437",
                CODEPAGES,
            )?;
            let post_office = l.post_office.unwrap_or_else(|| "HQ".to_owned());
            let gateway_po = l.gateway_po.unwrap_or_else(|| "SMTPGW".to_owned());
            for (key, po) in [
                ("legacy.post_office", &post_office),
                ("legacy.gateway_po", &gateway_po),
            ] {
                if po.is_empty()
                    || !po
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    bail!(
                        "{key}: {po:?} must be plain letters, digits, _ and - (other characters break the legacy tools)"
                    );
                }
            }
            let post_offices = l.post_offices.unwrap_or_else(|| vec![post_office.clone()]);
            if post_offices.is_empty() {
                bail!(
                    "legacy.post_offices: list at least one post office (the connected one is {post_office:?})"
                );
            }
            for po in &post_offices {
                if po.is_empty()
                    || !po
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ')
                {
                    bail!("legacy.post_offices: {po:?} is not a post office name");
                }
            }
            let smtp_bulletin_boards = l.smtp_bulletin_boards.unwrap_or_default();
            if let Some(bad) = smtp_bulletin_boards
                .iter()
                .find(|b| b.trim_start_matches('#').trim().is_empty())
            {
                bail!("legacy.smtp_bulletin_boards: {bad:?} is not a bulletin board name");
            }
            let lifetime = duration(
                "legacy.reply_tag_lifetime",
                l.reply_tag_lifetime.as_deref(),
                "30d",
            )?;
            let lifetime_days = lifetime.as_secs() / 86_400;
            if lifetime.as_secs() % 86_400 != 0
                || lifetime_days == 0
                || lifetime_days > u64::from(ccgate_router::MAX_LIFETIME_DAYS)
            {
                bail!(
                    "legacy.reply_tag_lifetime: {} is not a whole number of days from 1d to {}d",
                    ccgate_core::format_duration(lifetime),
                    ccgate_router::MAX_LIFETIME_DAYS
                );
            }
            LegacyConfig {
                post_offices,
                smtp_bulletin_boards,
                reply_tag_lifetime_days: u16::try_from(lifetime_days).unwrap_or(30),
                post_office,
                gateway_po,
                domain: mail_domain(
                    "legacy.domain",
                    l.domain.as_deref().unwrap_or("legacy.example.com"),
                )?,
                pickup_dir: in_data(l.pickup_dir.as_deref(), "legacy/outbound"),
                drop_dir: in_data(l.drop_dir.as_deref(), "legacy/inbound"),
                dialect,
                date_format,
                codepage,
                import_command: l.import_command.filter(|c| !c.trim().is_empty()),
                import_timeout: positive_duration(
                    "legacy.import_timeout",
                    l.import_timeout.as_deref(),
                    "60s",
                )?,
                poll_interval: positive_duration(
                    "legacy.poll_interval",
                    l.poll_interval.as_deref(),
                    "15s",
                )?,
                import_batch: match l.import_batch {
                    None => ccgate_server::DEFAULT_IMPORT_BATCH,
                    Some(0) => bail!(
                        "legacy.import_batch: 0 is not a number of messages (1 writes one message per import file)"
                    ),
                    Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                },
                unknown_recipients: choice(
                    "legacy.unknown_recipients",
                    l.unknown_recipients.as_deref(),
                    "bounce",
                    UNKNOWN_RECIPIENTS,
                )?,
            }
        };

        let modern = {
            let m = raw.modern;
            let next_hop = match m.next_hop.as_deref().unwrap_or("maildir:modern") {
                hop if hop.starts_with("maildir:") => {
                    let folder = hop.trim_start_matches("maildir:");
                    if folder.trim().is_empty() {
                        bail!(
                            "modern.next_hop: {hop:?} names no folder (the data folder itself would become the Maildir): write maildir:PATH"
                        );
                    }
                    NextHop::Maildir(in_data(None, folder))
                }
                hop if hop.starts_with("smtp://") => {
                    let hp = hop.trim_start_matches("smtp://").trim_end_matches('/');
                    let (host, port) = match hp.rsplit_once(':') {
                        Some((h, p)) => (
                            h,
                            p.parse::<u16>()
                                .with_context(|| format!("modern.next_hop: bad port in {hop:?}"))?,
                        ),
                        None => (hp, 25),
                    };
                    if host.is_empty() {
                        bail!("modern.next_hop: no host in {hop:?}");
                    }
                    NextHop::Smtp {
                        host: host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_owned(),
                        port,
                    }
                }
                other => {
                    bail!("modern.next_hop: {other:?} is neither maildir:PATH nor smtp://host:port")
                }
            };
            let tls = match (m.tls.as_deref().unwrap_or("may"), m.tls_ca_file.as_deref()) {
                ("verify", ca_file) => ccgate_server::TlsPolicy::Verify {
                    ca_file: ca_file.map(rel),
                },
                (_, Some(_)) => bail!("modern.tls_ca_file: only used with tls = \"verify\""),
                ("may", None) => ccgate_server::TlsPolicy::May,
                ("encrypt", None) => ccgate_server::TlsPolicy::Encrypt,
                ("none", None) => ccgate_server::TlsPolicy::None,
                (other, None) => {
                    bail!("modern.tls: {other:?} is not {}", one_of(TLS_LEVELS))
                }
            };
            let concurrency = m.concurrency.unwrap_or(8);
            if !(1..=1000).contains(&concurrency) {
                bail!("modern.concurrency: {concurrency} is not between 1 and 1000");
            }
            ModernConfig {
                domain: mail_domain(
                    "modern.domain",
                    m.domain.as_deref().unwrap_or("modern.example.com"),
                )?,
                next_hop,
                concurrency: usize::try_from(concurrency).unwrap_or(8),
                connect_timeout: positive_duration(
                    "modern.connect_timeout",
                    m.connect_timeout.as_deref(),
                    "30s",
                )?,
                command_timeout: positive_duration(
                    "modern.command_timeout",
                    m.command_timeout.as_deref(),
                    "5m",
                )?,
                data_timeout: positive_duration(
                    "modern.data_timeout",
                    m.data_timeout.as_deref(),
                    "10m",
                )?,
                tls,
            }
        };

        let directory = {
            let d = raw.directory;
            // Checked whatever the source, so a mistake shows before the switch to LDAP.
            let attributes = d.ldap_attributes.unwrap_or_default();
            attributes.validate()?;
            let source = match d.source.as_deref() {
                Some(url) if url.starts_with("ldap://") || url.starts_with("ldaps://") => {
                    DirectorySource::Ldap {
                        url: url.to_owned(),
                        base: d.ldap_base,
                        bind_dn: d.ldap_bind_dn,
                        password_file: d.ldap_password_file.as_deref().map(rel),
                        filter: d.ldap_filter,
                        attributes: Box::new(attributes),
                    }
                }
                Some(path) => DirectorySource::Csv(rel(path)),
                None if source.is_some() => DirectorySource::Csv(rel("directory.csv")),
                None => DirectorySource::Csv(data_dir.join("directory.csv")),
            };
            let reload_interval = d
                .reload_interval
                .as_deref()
                .map(|v| config_duration(v).context("directory.reload_interval"))
                .transpose()?;
            DirectoryConfig {
                source,
                reload_interval,
            }
        };

        if modern.domain == legacy.domain {
            bail!(
                "modern.domain: {:?} is legacy.domain too: the gateway tells the two sides apart by their domains",
                modern.domain
            );
        }

        let cutover = choice(
            "migration.cutover",
            raw.migration.cutover.as_deref(),
            "hold",
            CUTOVERS,
        )?;

        let queue = {
            let q = raw.queue;
            let retry = q
                .retry
                .unwrap_or_else(|| ["1m", "5m", "15m", "1h", "4h"].map(str::to_owned).to_vec())
                .iter()
                .map(|r| config_duration(r).context("queue.retry"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if retry.is_empty() {
                bail!("queue.retry: needs at least one interval");
            }
            QueueConfig {
                retry,
                max_lifetime: duration("queue.max_lifetime", q.max_lifetime.as_deref(), "5d")?,
                quarantine_after: match q.quarantine_after.unwrap_or(5) {
                    0 => bail!(
                        "queue.quarantine_after: 0 is not a number of crashes (1 sets a message aside at its first crash or timeout)"
                    ),
                    n => n,
                },
                min_free: match q.min_free {
                    None => None,
                    Some(SizeValue::Text(t)) if t == "auto" => None,
                    Some(SizeValue::Bytes(n)) => Some(n),
                    Some(SizeValue::Text(t)) => {
                        Some(parse_size(&t).context("queue.min_free (a size or \"auto\")")?)
                    }
                },
            }
        };

        let admin_listen = raw
            .admin
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:8025")
            .parse()
            .context("admin.listen: not host:port")?;
        let admin_token_file = raw.admin.token_file.as_deref().map(rel);
        let trace_size = match raw.admin.trace_size {
            None => ccgate_server::DEFAULT_TRACE_SIZE,
            Some(SizeValue::Bytes(n)) => n,
            Some(SizeValue::Text(t)) => parse_size(&t).context("admin.trace_size")?,
        };

        Ok(Self {
            source,
            data_dir,
            smtp,
            legacy,
            modern,
            directory,
            cutover,
            queue,
            admin_listen,
            admin_token_file,
            trace_size,
        })
    }
}

impl Config {
    /// The effective configuration as TOML, every key with its value (like `postconf`): what
    /// `ccgate config` prints and what `ccgate run` logs on start. It is the file's own schema
    /// (the raw structs) filled with the values in effect and written by serde, so what it
    /// prints reads back as the same configuration.
    pub fn effective_toml(&self) -> String {
        let source = self.source.as_deref().map_or_else(
            || "embedded defaults".to_owned(),
            |s| s.display().to_string(),
        );
        let body = toml::to_string(&self.to_raw())
            .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"));
        format!("# source: {source}\n{body}")
    }

    /// The configuration in effect as the file's schema, every key with its value.
    fn to_raw(&self) -> RawConfig {
        let text = |s: &str| Some(s.to_owned());
        let path = |p: &Path| Some(p.display().to_string());
        let duration = |d: Duration| Some(ccgate_core::format_duration(d));
        // Folders of the data area are written relative to data_dir, as they are read.
        let in_data = |p: &Path| path(p.strip_prefix(&self.data_dir).unwrap_or(p));
        let s = &self.smtp;
        let l = &self.legacy;
        let m = &self.modern;
        let (ldap, source) = match &self.directory.source {
            DirectorySource::Csv(csv) => (None, path(csv)),
            DirectorySource::Ldap { url, .. } => (Some(&self.directory.source), text(url)),
        };
        let mut directory = RawDirectory {
            source,
            reload_interval: self.directory.reload_interval.and_then(duration),
            ..RawDirectory::default()
        };
        if let Some(DirectorySource::Ldap {
            base,
            bind_dn,
            password_file,
            filter,
            attributes,
            ..
        }) = ldap
        {
            // The search base and filter in effect, defaults included.
            directory.ldap_base = Some(base.clone().unwrap_or_default());
            directory.ldap_bind_dn.clone_from(bind_dn);
            directory.ldap_password_file = password_file.as_deref().and_then(path);
            directory.ldap_filter = Some(
                filter
                    .clone()
                    .unwrap_or_else(|| attributes.default_filter()),
            );
            directory.ldap_attributes = Some((**attributes).clone());
        }
        let (tls, tls_ca_file) = match &m.tls {
            ccgate_server::TlsPolicy::None => ("none", None),
            ccgate_server::TlsPolicy::May => ("may", None),
            ccgate_server::TlsPolicy::Encrypt => ("encrypt", None),
            ccgate_server::TlsPolicy::Verify { ca_file } => {
                ("verify", ca_file.as_deref().and_then(path))
            }
        };
        RawConfig {
            data_dir: path(&self.data_dir),
            smtp: RawSmtp {
                listen: Some(s.listen.iter().map(ToString::to_string).collect()),
                hostname: text(&s.hostname),
                max_message_size: Some(SizeValue::Bytes(s.max_message_size)),
                max_recipients: Some(s.max_recipients),
                max_connections: Some(s.max_connections),
                tls_cert: s.tls.as_ref().and_then(|(cert, _)| path(cert)),
                tls_key: s.tls.as_ref().and_then(|(_, key)| path(key)),
                max_line_length: Some(s.max_line_length),
                max_connections_per_client: Some(s.max_connections_per_client),
                max_connection_rate: Some(s.max_connection_rate),
                client_limit_exceptions: Some(
                    s.client_limit_exceptions
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                ),
                memory_budget: Some(SizeValue::Bytes(s.memory_budget)),
            },
            legacy: RawLegacy {
                post_office: text(&l.post_office),
                gateway_po: text(&l.gateway_po),
                domain: text(&l.domain),
                pickup_dir: in_data(&l.pickup_dir),
                drop_dir: in_data(&l.drop_dir),
                dialect: Some(name_of(&l.dialect, DIALECTS)),
                date_format: Some(name_of(&l.date_format, DATE_FORMATS)),
                codepage: Some(name_of(&l.codepage, CODEPAGES)),
                import_command: Some(l.import_command.clone().unwrap_or_default()),
                import_timeout: duration(l.import_timeout),
                poll_interval: duration(l.poll_interval),
                import_batch: u32::try_from(l.import_batch).ok(),
                unknown_recipients: Some(name_of(&l.unknown_recipients, UNKNOWN_RECIPIENTS)),
                post_offices: Some(l.post_offices.clone()),
                smtp_bulletin_boards: Some(l.smtp_bulletin_boards.clone()),
                reply_tag_lifetime: Some(format!("{}d", l.reply_tag_lifetime_days)),
            },
            modern: RawModern {
                domain: text(&m.domain),
                next_hop: Some(match &m.next_hop {
                    NextHop::Maildir(dir) => {
                        format!("maildir:{}", in_data(dir).unwrap_or_default())
                    }
                    NextHop::Smtp { host, port } => format!("smtp://{host}:{port}"),
                }),
                concurrency: u32::try_from(m.concurrency).ok(),
                connect_timeout: duration(m.connect_timeout),
                command_timeout: duration(m.command_timeout),
                data_timeout: duration(m.data_timeout),
                tls: text(tls),
                tls_ca_file,
            },
            directory,
            migration: RawMigration {
                cutover: Some(name_of(&self.cutover, CUTOVERS)),
            },
            queue: RawQueue {
                retry: Some(
                    self.queue
                        .retry
                        .iter()
                        .map(|r| ccgate_core::format_duration(*r))
                        .collect(),
                ),
                max_lifetime: duration(self.queue.max_lifetime),
                quarantine_after: Some(self.queue.quarantine_after),
                min_free: Some(match self.queue.min_free {
                    Some(n) => SizeValue::Bytes(n),
                    None => SizeValue::Text("auto".to_owned()),
                }),
            },
            admin: RawAdmin {
                listen: Some(self.admin_listen.to_string()),
                token_file: self.admin_token_file.as_deref().and_then(path),
                trace_size: Some(SizeValue::Bytes(self.trace_size)),
            },
        }
    }
}

fn duration(key: &str, value: Option<&str>, default: &str) -> anyhow::Result<Duration> {
    config_duration(value.unwrap_or(default)).with_context(|| key.to_owned())
}

/// [`duration`], refused when zero (a timeout or an interval).
fn positive_duration(key: &str, value: Option<&str>, default: &str) -> anyhow::Result<Duration> {
    let d = duration(key, value, default)?;
    if d.is_zero() {
        bail!("{key}: must be longer than 0s");
    }
    Ok(d)
}

/// A mail domain (`legacy.domain`, `modern.domain`): what may follow `@` in an address
/// ([`ccgate_core::check_domain`]), not an address literal, lower-cased.
fn mail_domain(key: &str, text: &str) -> anyhow::Result<String> {
    let domain = text.trim().to_ascii_lowercase();
    let checked = if domain.starts_with('[') {
        Err("an address literal, not a domain name")
    } else {
        ccgate_core::check_domain(&domain)
    };
    if let Err(why) = checked {
        bail!("{key}: {text:?} is not a domain name: {why}");
    }
    Ok(domain)
}

/// A duration as the config writes it: a number and a unit (`"90s"`, `"15m"`, `"5d"`). A bare
/// number is refused: Postfix's time parameters each have their own default unit (days for
/// `maximal_queue_lifetime`), so `"5"` means different things to different readers.
fn config_duration(text: &str) -> anyhow::Result<Duration> {
    if !text.trim().is_empty() && text.trim().chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "{text:?} needs a unit: s, m, h, d or w (\"{}s\", \"{}d\" ...)",
            text.trim(),
            text.trim()
        );
    }
    Ok(parse_duration(text)?)
}

/// Where the value of `key` (`section.key`, `directory.ldap_attributes.mail`) is written in
/// the TOML `text`: 1-based line and column, `None` when the key is not in the file (a default
/// was at fault) or the text does not parse.
fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
        match value.get_ref() {
            toml::de::DeValue::Table(inner) if parts.peek().is_some() => table = inner,
            _ => return Some(line_col(text, value.span().start)),
        }
    }
    None
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `prefix.key = value` for every value of `table`, nested tables flattened.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out),
            other => out.push((name, other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_raw(RawConfig::default(), None, Path::new(".")).unwrap();
        assert_eq!(
            c.smtp.listen,
            vec!["127.0.0.1:2525".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.data_dir, Path::new("./ccgate-data"));
        assert_eq!(
            c.modern.next_hop,
            NextHop::Maildir(PathBuf::from("./ccgate-data/modern"))
        );
        assert_eq!(c.queue.retry.len(), 5);
        assert_eq!(c.legacy.post_offices, ["HQ"], "the connected post office");
        assert!(c.legacy.smtp_bulletin_boards.is_empty());
        assert_eq!(c.legacy.reply_tag_lifetime_days, 30);
        let c = Config::parse(
            "[legacy]\npost_office = \"MAIN\"\nreply_tag_lifetime = \"90d\"",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.legacy.post_offices, ["MAIN"]);
        assert_eq!(c.legacy.reply_tag_lifetime_days, 90);
    }

    #[test]
    fn effective_config_reads_back_the_same() {
        let c = Config::parse("data_dir = \"spool\"\n[legacy]\ndate_format = \"eu\"\n[modern]\nnext_hop = \"smtp://mx.example.test:2526\"\n[queue]\nretry = [\"90s\", \"2h\"]", Path::new("/etc/ccgate.toml")).unwrap();
        let text = c.effective_toml();
        let again = Config::parse(&text, Path::new("/etc/ccgate.toml")).unwrap();
        assert_eq!(
            again.effective_toml().lines().skip(1).collect::<Vec<_>>(),
            text.lines().skip(1).collect::<Vec<_>>()
        );
        assert!(text.contains("retry = [\"90s\", \"2h\"]"), "{text}");
    }

    #[test]
    fn effective_config_escapes_as_toml() {
        // Quotes, backslashes and non-ASCII survive `ccgate config` and read back the same.
        let path = Path::new("/etc/ccgate.toml");
        let c = Config::parse(
            "[legacy]\nimport_command = 'C:\\bin\\import.exe /q \"x\" é'\n",
            path,
        )
        .unwrap();
        let text = c.effective_toml();
        let again = Config::parse(&text, path).unwrap();
        assert_eq!(
            again.legacy.import_command.as_deref(),
            Some(r#"C:\bin\import.exe /q "x" é"#),
            "{text}"
        );
        assert!(c.changed_keys(&again).is_empty());
        // A control character: Rust's `{:?}` would write `\u{1b}`, which TOML does not read.
        let c = Config::parse("[legacy]\nimport_command = \"x\\u001b\"\n", path).unwrap();
        let again = Config::parse(&c.effective_toml(), path).unwrap();
        assert_eq!(again.legacy.import_command.as_deref(), Some("x\u{1b}"));
    }

    #[test]
    fn ldap_attribute_names_are_configurable_and_checked() {
        let c = Config::parse(
            "[directory]\nsource = \"ldap://127.0.0.1:389\"\n[directory.ldap_attributes]\ndisplay_name = \"cn\"\nstate = \"extensionAttribute1\"\n",
            Path::new("/etc/ccgate.toml"),
        )
        .unwrap();
        let DirectorySource::Ldap { attributes, .. } = &c.directory.source else {
            panic!("not LDAP: {:?}", c.directory.source);
        };
        assert_eq!(attributes.display_name, "cn");
        assert_eq!(attributes.state, "extensionAttribute1");
        assert_eq!(attributes.mail, "mail", "unset keys keep their default");
        let text = c.effective_toml();
        assert!(
            text.contains("[directory.ldap_attributes]\nmail = \"mail\"\n"),
            "{text}"
        );
        let again = Config::parse(&text, Path::new("/etc/ccgate.toml")).unwrap();
        assert_eq!(again.effective_toml(), text);

        let err = Config::parse(
            "[directory]\nsource = \"ldap://h\"\n[directory.ldap_attributes]\nphone = \"tel\"\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("x.toml:4:1") && msg.contains("phone"), "{msg}");
        for bad in ["", "display name", "1cn", "2.5.4.3", "cn;binary"] {
            let err = Config::parse(
                &format!("[directory]\nsource = \"ldap://h\"\n[directory.ldap_attributes]\ndisplay_name = {bad:?}\n"),
                Path::new("x.toml"),
            )
            .unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains("directory.ldap_attributes.display_name")
                    && msg.contains("not an LDAP attribute name"),
                "{bad}: {msg}"
            );
        }
        for good in ["cn", "extensionAttribute-1"] {
            let toml = format!(
                "[directory]\nsource = \"ldap://h\"\n[directory.ldap_attributes]\nmail = {good:?}\n"
            );
            assert!(Config::parse(&toml, Path::new("x.toml")).is_ok(), "{good}");
        }
    }

    #[test]
    fn next_hop_tls_policy() {
        let path = Path::new("/etc/ccgate/ccgate.toml");
        let c = Config::parse(
            "[modern]\nnext_hop = \"smtp://mx.example.test\"\ntls = \"verify\"\ntls_ca_file = \"ca.pem\"\n",
            path,
        )
        .unwrap();
        assert_eq!(
            c.modern.tls,
            ccgate_server::TlsPolicy::Verify {
                ca_file: Some(PathBuf::from("/etc/ccgate/ca.pem"))
            }
        );
        let text = c.effective_toml();
        assert!(
            text.contains("tls = \"verify\"\ntls_ca_file = \"/etc/ccgate/ca.pem\""),
            "{text}"
        );
        assert!(
            c.changed_keys(&Config::parse(&text, path).unwrap())
                .is_empty()
        );
        let default = Config::parse("", path).unwrap();
        assert_eq!(default.modern.tls, ccgate_server::TlsPolicy::May);
    }

    #[test]
    fn changed_keys_are_named() {
        let path = Path::new("/etc/ccgate/ccgate.toml");
        let a = Config::parse("[smtp]\nmax_recipients = 10\n", path).unwrap();
        assert!(a.changed_keys(&a).is_empty());
        let b = Config::parse(
            "[smtp]\nmax_recipients = 20\n[directory]\nsource = \"other.csv\"\nreload_interval = \"5m\"\n",
            path,
        )
        .unwrap();
        assert_eq!(
            a.changed_keys(&b),
            [
                "directory.reload_interval",
                "directory.source",
                "smtp.max_recipients"
            ]
        );
        // A key that is gone counts too (reload_interval has no default).
        assert!(
            b.changed_keys(&a)
                .contains(&"directory.reload_interval".to_owned())
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            Config::parse("[smtp]\nlisten = []\nbogus = 1\n", Path::new("x.toml")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("x.toml:3:1") && msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("[legacy]\ndialect = \"ie7\"", "legacy.dialect"),
            (
                "[legacy]\nunknown_recipients = \"drop\"",
                "legacy.unknown_recipients",
            ),
            ("[modern]\nconcurrency = 0", "modern.concurrency"),
            ("[smtp]\nhostname = \"mx\\r\\n250 ok\"", "smtp.hostname"),
            ("[legacy]\npost_offices = []", "legacy.post_offices"),
            ("[legacy]\npost_offices = [\"A@B\"]", "legacy.post_offices"),
            (
                "[legacy]\nsmtp_bulletin_boards = [\"#\"]",
                "legacy.smtp_bulletin_boards",
            ),
            (
                "[legacy]\nreply_tag_lifetime = \"36h\"",
                "legacy.reply_tag_lifetime",
            ),
            (
                "[legacy]\nreply_tag_lifetime = \"1000d\"",
                "legacy.reply_tag_lifetime",
            ),
            ("[modern]\ntls = \"dane\"", "modern.tls"),
            ("[modern]\ntls_ca_file = \"ca.pem\"", "modern.tls_ca_file"),
            (
                "[modern]\nconnect_timeout = \"0s\"",
                "modern.connect_timeout",
            ),
            ("[modern]\ndata_timeout = \"long\"", "modern.data_timeout"),
            ("[queue]\nmax_lifetime = \"soon\"", "queue.max_lifetime"),
            ("[queue]\nmax_lifetime = \"90\"", "queue.max_lifetime"),
            ("[queue]\nquarantine_after = 0", "queue.quarantine_after"),
            ("[smtp]\nmax_message_size = 0", "smtp.max_message_size"),
            ("[smtp]\nmax_recipients = 0", "smtp.max_recipients"),
            ("[legacy]\npoll_interval = \"0s\"", "legacy.poll_interval"),
            ("[legacy]\ndomain = \"\"", "legacy.domain"),
            ("[modern]\ndomain = \"legacy.example.com\"", "modern.domain"),
            ("[modern]\nnext_hop = \"maildir:\"", "modern.next_hop"),
            ("[modern]\nnext_hop = \"ftp://x\"", "modern.next_hop"),
            (
                "[smtp]\nmax_message_size = \"lots\"",
                "smtp.max_message_size",
            ),
        ] {
            let msg = format!(
                "{:#}",
                Config::parse(text, Path::new("c.toml")).unwrap_err()
            );
            assert!(msg.contains(key), "{text}: {msg}");
            // Every value here is on the second line: the error points at it.
            assert!(msg.starts_with("c.toml:2:"), "{text}: {msg}");
        }
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = Config::parse(
            "data_dir = \"spool\"\n[modern]\nnext_hop = \"smtp://[127.0.0.1]:2526\"",
            Path::new("/etc/ccgate/ccgate.toml"),
        )
        .unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/ccgate/spool"));
        assert_eq!(
            c.modern.next_hop,
            NextHop::Smtp {
                host: "127.0.0.1".into(),
                port: 2526
            }
        );
    }
}
