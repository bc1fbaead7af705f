//! Loading the directory named by `[directory] source`: the CSV file or LDAP, validated and
//! compiled by ccgate-router. Shared by `ccgate route`, `ccgate directory ...` and the server's
//! reload:
//! `handle.load_and_swap(|| directory_source::load(&config)?.map_err(anyhow::Error::new))`
//! keeps the old directory and returns why when the new one cannot be read or has problems.

use std::fmt;

use ccgate_router::{Directory, Error as RouterError, Problem, RouterConfig};

use crate::config::{Config, Cutover, DialectChoice, DirectorySource};
use crate::ldap::{self, LdapSettings};

/// A directory source with problems: where it is, and every problem.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// The file path or LDAP URL, the prefix of each problem line.
    pub origin: String,
    /// The problems, in row order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Invalid {
    /// One `origin:line:column: what` line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{problem}", self.origin)?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// The file path or URL of the configured source, for messages.
pub fn origin(config: &Config) -> String {
    match &config.directory.source {
        DirectorySource::Csv(path) => path.display().to_string(),
        DirectorySource::Ldap { url, .. } => url.clone(),
    }
}

/// Loads and compiles the configured directory.
///
/// The outer `Err` is an I/O or connection failure (exit 2); the inner one the source's
/// problems (exit 1).
///
/// # Errors
/// The CSV file cannot be read; the LDAP server cannot be reached, refuses the bind or the
/// search; the password file cannot be read.
pub fn load(config: &Config) -> anyhow::Result<Result<Directory, Invalid>> {
    let origin = origin(config);
    let compiled = match &config.directory.source {
        DirectorySource::Csv(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("{}: cannot read the directory: {e}", path.display())
            })?;
            Directory::from_csv(&bytes)
        }
        DirectorySource::Ldap { .. } => {
            let settings = ldap_settings(config)?
                .ok_or_else(|| anyhow::anyhow!("{origin}: not an LDAP source"))?;
            Directory::from_raw(ldap::load(&settings)?)
        }
    };
    Ok(match compiled {
        Ok(directory) => Ok(directory),
        Err(RouterError::Invalid { problems }) => Err(Invalid { origin, problems }),
        Err(other) => return Err(anyhow::Error::new(other).context(origin)),
    })
}

/// The LDAP settings of an LDAP source (the bind password read from its file); `None` for a
/// CSV source.
///
/// # Errors
/// The password file cannot be read.
pub fn ldap_settings(config: &Config) -> anyhow::Result<Option<LdapSettings>> {
    let DirectorySource::Ldap {
        url,
        base,
        bind_dn,
        password_file,
        filter,
        attributes,
    } = &config.directory.source
    else {
        return Ok(None);
    };
    LdapSettings::from_config(
        url,
        base.as_deref(),
        bind_dn.as_deref(),
        password_file.as_deref(),
        filter.as_deref(),
        attributes,
    )
    .map(Some)
}

/// The router's view of the configuration.
pub fn router_config(config: &Config) -> RouterConfig {
    RouterConfig {
        legacy_domain: config.legacy.domain.clone(),
        modern_domain: config.modern.domain.clone(),
        post_office: config.legacy.post_office.clone(),
        gateway_po: config.legacy.gateway_po.clone(),
        cutover: match config.cutover {
            Cutover::Hold => ccgate_router::Cutover::Hold,
            Cutover::Legacy => ccgate_router::Cutover::Legacy,
        },
        dialect: match config.legacy.dialect {
            DialectChoice::Ie5 => ccgate_ccmail::Dialect::Ie5,
            DialectChoice::Ie8 => ccgate_ccmail::Dialect::Ie8,
        },
        post_offices: config.legacy.post_offices.clone(),
        smtp_bulletin_boards: config.legacy.smtp_bulletin_boards.clone(),
        reply_tags: None,
        hostname: config.smtp.hostname.clone(),
    }
}
