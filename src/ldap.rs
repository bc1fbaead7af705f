//! The LDAP directory source: one subtree search (paged, 500 entries a page) with ldap3 over
//! rustls/ring, each entry mapped to a directory row ([`RawEntry`]) through an
//! [`AttributeMap`]. Validation is the router's, the same as for the CSV file, so both sources
//! give the same directory for the same users.
//!
//! Default attribute mapping (Exchange/Active Directory names where they exist):
//!
//! | row field | attribute | notes |
//! |---|---|---|
//! | `proxy_addresses` | `proxyAddresses` | multi-valued, one `TYPE:address` per value |
//! | (primary SMTP) | `mail` | added as `SMTP:mail` when no value of `proxyAddresses` is that address (as `smtp:` if another `SMTP:` primary exists) |
//! | `target_address` | `targetAddress` | `SMTP:addr` or a bare address |
//! | `display_name` | `displayName` | |
//! | `state` | `ccgateMigrationState` | `legacy`, `migrating` or `migrated` |
//! | `legacy_name` | `ccgateLegacyName` | when absent: the name of the primary `CCMAIL:` proxy |
//! | `post_office` | `ccgatePostOffice` | when absent: the post office of the primary `CCMAIL:` proxy |
//!
//! Each name can be changed in the config's `[directory.ldap_attributes]` table, keyed by the
//! row field (`mail` for the primary SMTP address), for directories that keep these in other
//! attributes (`extensionAttribute1`, say).
//!
//! Attribute names are matched without regard to case, as LDAP does. Problems name the entry by
//! its position in the result and its DN: `ldap://host:389:3:1: uid=jdoe,...: state is empty`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use ccgate_router::{RawEntry, RawField, split_proxies};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConn, LdapConnSettings, Scope, SearchEntry};

/// Entries per page of the paged-results search (RFC 2696).
const PAGE_SIZE: i32 = 500;
/// Connect, bind and search time limit.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Which LDAP attribute holds each field of a directory row: the `[directory.ldap_attributes]`
/// table, any key left out keeping its default.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributeMap {
    /// The primary SMTP address.
    pub mail: String,
    /// Typed proxy addresses (multi-valued).
    pub proxy_addresses: String,
    /// Where a migrated user's mail goes.
    pub target_address: String,
    /// The display name.
    pub display_name: String,
    /// `legacy`, `migrating` or `migrated`.
    pub state: String,
    /// The legacy mailbox name.
    pub legacy_name: String,
    /// The legacy post office.
    pub post_office: String,
}

impl Default for AttributeMap {
    fn default() -> Self {
        Self {
            mail: "mail".to_owned(),
            proxy_addresses: "proxyAddresses".to_owned(),
            target_address: "targetAddress".to_owned(),
            display_name: "displayName".to_owned(),
            state: "ccgateMigrationState".to_owned(),
            legacy_name: "ccgateLegacyName".to_owned(),
            post_office: "ccgatePostOffice".to_owned(),
        }
    }
}

impl AttributeMap {
    /// The config keys with the attribute each names, in the table's order.
    pub fn keys(&self) -> [(&'static str, &str); 7] {
        [
            ("mail", &self.mail),
            ("proxy_addresses", &self.proxy_addresses),
            ("target_address", &self.target_address),
            ("display_name", &self.display_name),
            ("state", &self.state),
            ("legacy_name", &self.legacy_name),
            ("post_office", &self.post_office),
        ]
    }

    fn all(&self) -> [&str; 7] {
        self.keys().map(|(_, attribute)| attribute)
    }

    /// Checks every value is an attribute name (RFC 4512 §1.4 `descr`: a letter, then letters,
    /// digits and hyphens). Numeric OIDs are refused: servers return values under the
    /// attribute's name, so a value asked for by OID would never be found in the entry.
    ///
    /// # Errors
    /// The first bad value, named by its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, attribute) in self.keys() {
            let name_ok = attribute
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && attribute
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !name_ok {
                bail!(
                    "directory.ldap_attributes.{key}: {attribute:?} is not an LDAP attribute name"
                );
            }
        }
        Ok(())
    }

    /// The search filter used when `ldap_filter` is not set: entries with proxy addresses or
    /// a migration state, in this map's attribute names.
    pub fn default_filter(&self) -> String {
        format!("(|({}=*)({}=*))", self.proxy_addresses, self.state)
    }
}

/// Where and how to search.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// The search base (default: the server's empty base).
    pub base: String,
    /// Bind DN and password; anonymous without.
    pub bind: Option<(String, String)>,
    /// The search filter.
    pub filter: String,
    /// The attribute mapping.
    pub attributes: AttributeMap,
}

impl LdapSettings {
    /// Settings from the `[directory]` keys: the password is read from `password_file` (its
    /// first line).
    ///
    /// # Errors
    /// The password file cannot be read, or a bind DN is set without it.
    pub fn from_config(
        url: &str,
        base: Option<&str>,
        bind_dn: Option<&str>,
        password_file: Option<&Path>,
        filter: Option<&str>,
        attributes: &AttributeMap,
    ) -> anyhow::Result<Self> {
        let bind = match (bind_dn, password_file) {
            (Some(dn), Some(file)) => {
                let text = std::fs::read_to_string(file).with_context(|| {
                    format!(
                        "{}: cannot read directory.ldap_password_file",
                        file.display()
                    )
                })?;
                let password = text.lines().next().unwrap_or_default().to_owned();
                Some((dn.to_owned(), password))
            }
            (Some(_), None) => bail!("directory.ldap_bind_dn is set without ldap_password_file"),
            (None, _) => None,
        };
        Ok(Self {
            url: url.to_owned(),
            base: base.unwrap_or_default().to_owned(),
            bind,
            filter: filter.map_or_else(|| attributes.default_filter(), str::to_owned),
            attributes: attributes.clone(),
        })
    }
}

/// Connects and binds (anonymously without a bind DN).
///
/// # Errors
/// Connecting or binding fails (the message names the URL and the DN).
fn connect(settings: &LdapSettings) -> anyhow::Result<LdapConn> {
    let url = &settings.url;
    let conn_settings = LdapConnSettings::new().set_conn_timeout(TIMEOUT);
    let mut ldap = LdapConn::with_settings(conn_settings, url)
        .with_context(|| format!("{url}: cannot connect"))?;
    if let Some((dn, password)) = &settings.bind {
        ldap.with_timeout(TIMEOUT)
            .simple_bind(dn, password)
            .and_then(ldap3::LdapResult::success)
            .with_context(|| format!("{url}: bind as {dn:?} failed"))?;
    }
    Ok(ldap)
}

/// Searches the directory and maps each entry to a row.
///
/// # Errors
/// Connecting, binding or searching fails (the message names the URL).
pub fn load(settings: &LdapSettings) -> anyhow::Result<Vec<RawEntry>> {
    let url = &settings.url;
    let mut ldap = connect(settings)?;
    let attributes: Vec<String> = settings
        .attributes
        .all()
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE_SIZE)),
    ];
    let mut rows = Vec::new();
    {
        let mut search = ldap
            .with_timeout(TIMEOUT)
            .streaming_search_with(
                adapters,
                &settings.base,
                Scope::Subtree,
                &settings.filter,
                attributes,
            )
            .with_context(|| format!("{url}: search under {:?} failed", settings.base))?;
        while let Some(entry) = search
            .next()
            .with_context(|| format!("{url}: search under {:?} failed", settings.base))?
        {
            let entry = SearchEntry::construct(entry);
            let position = rows.len().saturating_add(1);
            rows.push(row_from_entry(
                position,
                &entry.dn,
                &entry.attrs,
                &settings.attributes,
            ));
        }
        search
            .result()
            .success()
            .with_context(|| format!("{url}: search under {:?} failed", settings.base))?;
    }
    let _ = ldap.unbind();
    Ok(rows)
}

/// Sets the migration-state attribute (`ldap_attributes.state`) of each entry, by DN, with
/// the configured bind: one modify (replace) per entry. Answers, per DN, whether it worked.
///
/// # Errors
/// Connecting or binding fails.
pub fn set_state(
    settings: &LdapSettings,
    changes: &[(String, &str)],
) -> anyhow::Result<Vec<Result<(), String>>> {
    let url = &settings.url;
    let mut ldap = connect(settings)?;
    let results = changes
        .iter()
        .map(|(dn, state)| {
            let values = std::collections::HashSet::from([(*state).to_owned()]);
            let change = ldap3::Mod::Replace(settings.attributes.state.clone(), values);
            ldap.with_timeout(TIMEOUT)
                .modify(dn, vec![change])
                .and_then(ldap3::LdapResult::success)
                .map(|_| ())
                .map_err(|e| format!("{url}: modify {dn:?} failed: {e}"))
        })
        .collect();
    let _ = ldap.unbind();
    Ok(results)
}

/// Maps one LDAP entry to a directory row (see the module documentation).
pub fn row_from_entry(
    position: usize,
    dn: &str,
    attrs: &HashMap<String, Vec<String>>,
    map: &AttributeMap,
) -> RawEntry {
    let values = |name: &str| -> Vec<String> {
        attrs
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values.iter().cloned())
            .collect()
    };
    let first = |name: &str| values(name).into_iter().next().unwrap_or_default();

    let mut proxies: Vec<String> = values(&map.proxy_addresses)
        .iter()
        // One value per proxy; a value holding `;`-separated proxies is split the CSV way.
        .flat_map(|value| split_proxies(value).into_iter().map(|(_, p)| p))
        .collect();
    let mail = first(&map.mail);
    let mail = mail.trim();
    if !mail.is_empty() {
        let listed = proxies.iter().any(|p| {
            p.split_once(':').is_some_and(|(kind, address)| {
                kind.eq_ignore_ascii_case("smtp") && address.trim().eq_ignore_ascii_case(mail)
            })
        });
        if !listed {
            let has_primary = proxies.iter().any(|p| p.starts_with("SMTP:"));
            let kind = if has_primary { "smtp" } else { "SMTP" };
            proxies.push(format!("{kind}:{mail}"));
        }
    }

    let mut legacy_name = first(&map.legacy_name);
    let mut post_office = first(&map.post_office);
    if legacy_name.trim().is_empty() && post_office.trim().is_empty() {
        let primary_ccmail = proxies.iter().find_map(|p| p.strip_prefix("CCMAIL:"));
        if let Some(Ok(ccgate_ccmail::LegacyAddress::Name {
            name,
            po: Some(po),
            literal: false,
        })) = primary_ccmail.map(ccgate_ccmail::parse_address)
        {
            legacy_name = name;
            post_office = po;
        }
    }

    RawEntry {
        line: position,
        id: Some(dn.to_owned()),
        display_name: RawField::new(first(&map.display_name)),
        legacy_name: RawField::new(legacy_name),
        post_office: RawField::new(post_office),
        proxy_addresses: proxies.into_iter().map(RawField::new).collect(),
        target_address: RawField::new(first(&map.target_address)),
        state: RawField::new(first(&map.state)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_follows_the_attribute_map() {
        assert_eq!(
            AttributeMap::default().default_filter(),
            "(|(proxyAddresses=*)(ccgateMigrationState=*))"
        );
        let map = AttributeMap {
            state: "extensionAttribute1".to_owned(),
            proxy_addresses: "otherMailbox".to_owned(),
            ..AttributeMap::default()
        };
        assert_eq!(
            map.default_filter(),
            "(|(otherMailbox=*)(extensionAttribute1=*))"
        );
    }
}
