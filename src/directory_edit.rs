//! Changing people's migration state in the directory source: `ccgate directory set-state`
//! and the console's cutover.
//!
//! The CSV file is edited in place as text: only the `state` field of each named row changes;
//! comments, blank lines, quoting, column order and row order stay as they were. The new text
//! is read back before it is written (every changed row must carry its new state and the file
//! must still compile), then written atomically: a temporary file beside it, fsync, rename,
//! fsync of the folder.
//!
//! An LDAP directory is changed by a modify (replace of the `ldap_attributes.state`
//! attribute) of each named entry, by its DN, with the configured bind, after the entries as
//! read, with the new states, were checked to compile.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use ccgate_router::{Directory, Entry, State};

use crate::config::{Config, DirectorySource};

/// What happened to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The name as given.
    pub name: String,
    /// `legacy -> migrated`, or why not.
    pub result: Result<String, String>,
}

/// Whether `key` names `entry` (legacy name or legacy address, display name or any address,
/// case-insensitively).
pub fn names(entry: &Entry, key: &str) -> bool {
    let key = key.trim();
    let eq = |s: &str| s.eq_ignore_ascii_case(key);
    entry.legacy_name().is_some_and(eq)
        || entry.legacy_address().is_some_and(|a| eq(&a.to_string()))
        || entry.proxies().iter().any(|p| {
            eq(p.as_str())
                || p.smtp().is_some_and(|a| eq(&a.to_string()))
                || p.legacy().is_some_and(|a| eq(&a.to_string()))
        })
        || entry.target_address().is_some_and(|t| eq(&t.to_string()))
}

/// The entry `key` names; a display name counts only when it names one person.
fn find(directory: &Directory, key: &str) -> Result<Arc<Entry>, String> {
    if let Some(e) = directory.entries().iter().find(|e| names(e, key)) {
        return Ok(Arc::clone(e));
    }
    let by_display: Vec<&Arc<Entry>> = directory
        .entries()
        .iter()
        .filter(|e| e.display_name().eq_ignore_ascii_case(key.trim()))
        .collect();
    match by_display.as_slice() {
        [one] => Ok(Arc::clone(one)),
        [] => Err("nobody in the directory has this name or address".to_owned()),
        _ => Err(format!(
            "{} people have this display name; give a legacy name or address",
            by_display.len()
        )),
    }
}

/// Sets the `state` field of the rows starting at the given lines. Returns the new text.
///
/// # Errors
/// A row that is not where the directory said, or a result that does not read back.
pub fn set_state_in_csv(text: &str, rows: &[(usize, State)]) -> anyhow::Result<String> {
    let (raw, _) = ccgate_router::parse_csv(text.as_bytes());
    let bom = if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    // Line starts (byte offsets), 1-based lines.
    let mut starts = vec![0usize, bom];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    for (line, state) in rows {
        let row = raw
            .iter()
            .find(|r| r.line == *line)
            .with_context(|| format!("line {line}: no directory row starts here"))?;
        let start = *starts
            .get(*line)
            .with_context(|| format!("line {line}: past the end"))?;
        let line_text = text.get(start..).unwrap_or_default();
        let offset: usize = line_text
            .chars()
            .take(row.state.column.saturating_sub(1))
            .map(char::len_utf8)
            .sum();
        let at = start + offset;
        let value = row.state.value.as_str();
        if text.get(at..at + value.len()) != Some(value) {
            bail!("line {line}: the state field is not where expected (a multi-line row?)");
        }
        edits.push((at, at + value.len(), state.as_str()));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_owned();
    for (from, to, word) in edits {
        out.replace_range(from..to, word);
    }
    let (after, _) = ccgate_router::parse_csv(out.as_bytes());
    for (line, state) in rows {
        let ok = after
            .iter()
            .any(|r| r.line == *line && r.state.value == state.as_str());
        if !ok {
            bail!("line {line}: the change does not read back");
        }
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically and durably, keeping the file's permissions.
///
/// # Errors
/// Any I/O error, with the path.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.ccgate-tmp"));
    let io = |what: &str, p: &Path| format!("{}: cannot {what}", p.display());
    let mut f = File::create(&tmp).with_context(|| io("create", &tmp))?;
    f.write_all(bytes).with_context(|| io("write", &tmp))?;
    if let Ok(meta) = fs::metadata(path) {
        let _ = fs::set_permissions(&tmp, meta.permissions());
    }
    f.sync_all().with_context(|| io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| io("rename onto", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| io("fsync", dir))?;
    Ok(())
}

/// Sets `state` for every named person in the configured directory source, in one atomic
/// rewrite. Returns the result per person (people already in that state are reported, not
/// rewritten). Nothing is written when no row changes.
///
/// # Errors
/// The source cannot be read, has problems, would not load with the new states, or cannot be
/// written (LDAP: the connection or bind fails; a failed modify is that person's result).
pub fn set_state(config: &Config, names: &[String], state: State) -> anyhow::Result<Vec<Change>> {
    let DirectorySource::Csv(path) = &config.directory.source else {
        return set_state_ldap(config, names, state);
    };
    // One change at a time (the console and `directory set-state` may meet): a lock file
    // beside the directory, held from the read to the rename.
    let lock_path = path.with_file_name(format!(
        ".{}.ccgate-lock",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let lock = File::create(&lock_path)
        .with_context(|| format!("{}: cannot create", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("{}: cannot lock", lock_path.display()))?;
    let text = fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the directory", path.display()))?;
    let directory = match Directory::from_csv(text.as_bytes()) {
        Ok(d) => d,
        Err(e) => bail!(
            "{}: the directory has problems; fix them first:\n{e}",
            path.display()
        ),
    };
    let mut changes = Vec::new();
    let mut rows: Vec<(usize, State)> = Vec::new();
    for name in names {
        let result = find(&directory, name).map(|entry| {
            let before = entry.state();
            if before == state {
                format!("already {state}")
            } else {
                if !rows.iter().any(|(l, _)| *l == entry.line()) {
                    rows.push((entry.line(), state));
                }
                format!("{before} -> {state}")
            }
        });
        changes.push(Change {
            name: name.clone(),
            result,
        });
    }
    if rows.is_empty() {
        return Ok(changes);
    }
    let new_text = set_state_in_csv(&text, &rows).with_context(|| path.display().to_string())?;
    if let Err(e) = Directory::from_csv(new_text.as_bytes()) {
        bail!(
            "{}: the changed directory would not load, nothing changed:\n{e}",
            path.display()
        );
    }
    write_atomically(path, new_text.as_bytes())?;
    Ok(changes)
}

/// One person's result before the modify: what changes and the entry's DN (if it changes),
/// or why not.
type Pending = Result<(String, Option<String>), String>;

/// [`set_state`] for an LDAP source.
fn set_state_ldap(config: &Config, names: &[String], state: State) -> anyhow::Result<Vec<Change>> {
    let origin = crate::directory_source::origin(config);
    let settings = crate::directory_source::ldap_settings(config)?
        .with_context(|| format!("{origin}: not an LDAP source"))?;
    let rows = crate::ldap::load(&settings)?;
    let directory = match Directory::from_raw(rows.clone()) {
        Ok(d) => d,
        Err(e) => bail!("{origin}: the directory has problems; fix them first:\n{e}"),
    };
    let mut changes = Vec::new();
    let mut dns: Vec<String> = Vec::new();
    for name in names {
        let result = find(&directory, name).and_then(|entry| {
            let before = entry.state();
            if before == state {
                return Ok((format!("already {state}"), None));
            }
            let dn = entry
                .id()
                .ok_or_else(|| "the entry has no DN".to_owned())?
                .to_owned();
            if !dns.contains(&dn) {
                dns.push(dn.clone());
            }
            Ok((format!("{before} -> {state}"), Some(dn)))
        });
        changes.push((name.clone(), result));
    }
    let finish = |changes: Vec<(String, Pending)>| {
        changes
            .into_iter()
            .map(|(name, result)| Change {
                name,
                result: result.map(|(what, _)| what),
            })
            .collect::<Vec<Change>>()
    };
    if dns.is_empty() {
        return Ok(finish(changes));
    }
    let mut changed = rows;
    for row in &mut changed {
        if row.id.as_ref().is_some_and(|id| dns.contains(id)) {
            row.state = ccgate_router::RawField::new(state.as_str());
        }
    }
    if let Err(e) = Directory::from_raw(changed) {
        bail!("{origin}: the changed directory would not load, nothing changed:\n{e}");
    }
    let requests: Vec<(String, &str)> = dns.iter().map(|dn| (dn.clone(), state.as_str())).collect();
    let results = crate::ldap::set_state(&settings, &requests)?;
    // A modify that failed turns the result of the people of that entry into the reason.
    for (dn, result) in dns.iter().zip(results) {
        if let Err(why) = result {
            for (_, change) in &mut changes {
                if matches!(change, Ok((_, Some(d))) if d == dn) {
                    *change = Err(why.clone());
                }
            }
        }
    }
    Ok(finish(changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "\u{feff}# the pilot group\ndisplay_name,legacy_name,post_office,proxy_addresses,target_address,state\n\
Jane Doe,\"Doe, Jane\",HQ,SMTP:jane@legacy.example.com,SMTP:jane.doe@modern.example.com, legacy \r\n\
# Bob moves later\r\n\
Bob Roe,\"Roe, Bob\",HQ,SMTP:bob@legacy.example.com,SMTP:bob.roe@modern.example.com,\"legacy\"\n";

    #[test]
    fn only_the_state_fields_change() {
        let out = set_state_in_csv(CSV, &[(3, State::Migrated), (5, State::Migrating)]).unwrap();
        let expected = CSV
            .replace(", legacy \r\n", ", migrated \r\n")
            .replace(",\"legacy\"\n", ",\"migrating\"\n");
        assert_eq!(out, expected);
        let directory = Directory::from_csv(out.as_bytes()).unwrap();
        let states: Vec<State> = directory.entries().iter().map(|e| e.state()).collect();
        assert_eq!(states, [State::Migrated, State::Migrating]);
    }

    #[test]
    fn a_line_without_a_row_is_refused() {
        assert!(set_state_in_csv(CSV, &[(4, State::Migrated)]).is_err());
        assert!(set_state_in_csv(CSV, &[(99, State::Migrated)]).is_err());
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.csv");
        fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
