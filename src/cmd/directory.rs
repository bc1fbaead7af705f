//! `ccgate directory check` and `ccgate directory export-legacy OUTDIR`.
//!
//! `check` loads and validates the configured directory (CSV file or LDAP): every problem on
//! standard error as `file:line:column: what is wrong` (for LDAP, `url:position:1: DN: ...`),
//! a summary on standard output; exit 1 on problems, 2 when the source cannot be read.
//!
//! `export-legacy` writes the legacy directory update files that make the legacy post offices
//! send migrated users' mail to the gateway instead of the stale mailbox (KB Q253306), named as
//! CCMC's directory synchronization names them (KB Q295753) and meant to be imported in this
//! order:
//!
//! 1. `OUTDIR/Ccmdel.imp`, the deletions: for each `migrated` user with a legacy name, the old
//!    local entry, `Name: <legacy_name>`, `Locn: L` (`R` when the user's post office is not the
//!    connected one), `Addr: <post_office>`.
//! 2. `OUTDIR/Ccmdir.imp`, the additions: for the same users, `Name: <legacy_name>`, `Locn: r`,
//!    `Addr: <primary SMTP address> at <gateway_po>` (the target address when the entry has no
//!    SMTP proxy), the form of a foreign alias through a gateway (legacy-format.md §8). Mail
//!    a legacy user sends to the old name then reaches ccgate as `address at GATEWAYPO`, which
//!    the router sends to the target address.
//!
//! Deletions first, because names are unique: the new entry cannot exist while the old one
//! does (KB Q166581). Both files are in the legacy directory format of ccgate-ccmail
//! (`Name:`/`Locn:`/`Addr:`/`Comments:` blocks, CR LF, the configured code page), written to a
//! temporary name and renamed; they are always both written, empty when no user is migrated,
//! so that a script can import them unconditionally. The post office needs the gateway's
//! post-office entry first (KB Q156063 §2.6.1); ccgate does not write it.
//!
//! From [`PROGRESS_FROM`] rows (both files together) on, and when standard error is a terminal,
//! a bar over the rows written shows on standard error; piped output has none.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use ccgate_ccmail::{DirectoryEntry, Location, write_directory};
use ccgate_router::{Directory, State};

use crate::config::Config;
use crate::directory_source;
use crate::progress::{Progress, Unit};

/// The deletions file (KB Q295753).
pub const DELETIONS_FILE: &str = "Ccmdel.imp";
/// The additions file (KB Q295753).
pub const ADDITIONS_FILE: &str = "Ccmdir.imp";

/// Rows (deletions and additions together) from which the progress bar shows.
const PROGRESS_FROM: u64 = 10_000;
/// Rows written at a time (the bar moves between writes).
const ROWS_PER_WRITE: u64 = 1_000;

/// `ccgate directory check`.
///
/// # Errors
/// The directory cannot be read.
pub fn check(config: &Config) -> anyhow::Result<ExitCode> {
    let origin = directory_source::origin(config);
    match directory_source::load(config)? {
        Ok(directory) => {
            let count = |state| {
                directory
                    .entries()
                    .iter()
                    .filter(|e| e.state() == state)
                    .count()
            };
            println!(
                "{origin}: ok: {} entries ({} legacy, {} migrating, {} migrated)",
                directory.len(),
                count(State::Legacy),
                count(State::Migrating),
                count(State::Migrated)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(invalid) => {
            eprintln!("{invalid}");
            println!("{origin}: {} problem(s)", invalid.problems.len());
            Ok(ExitCode::from(1))
        }
    }
}

/// `ccgate directory export-legacy OUTDIR`.
///
/// # Errors
/// The directory cannot be read, or the files cannot be written.
pub fn export_legacy(config: &Config, outdir: &Path) -> anyhow::Result<ExitCode> {
    let directory = match directory_source::load(config)? {
        Ok(directory) => directory,
        Err(invalid) => {
            eprintln!("{invalid}");
            eprintln!(
                "ccgate: directory export-legacy: the directory has {} problem(s); nothing written",
                invalid.problems.len()
            );
            return Ok(ExitCode::from(1));
        }
    };
    let (deletions, additions) = legacy_updates(config, &directory);
    std::fs::create_dir_all(outdir)
        .with_context(|| format!("{}: cannot create the folder", outdir.display()))?;
    let rows = (deletions.len() + additions.len()) as u64;
    let progress = Progress::new("export-legacy", Unit::Rows, rows);
    if rows >= PROGRESS_FROM {
        progress.show();
    }
    // Both files are written before anything is reported, so a closed standard output
    // (`| head`) never leaves a new deletions file beside an old additions file.
    let mut written = Vec::new();
    for (name, entries, what) in [
        (DELETIONS_FILE, &deletions, "deletions"),
        (ADDITIONS_FILE, &additions, "additions"),
    ] {
        let (bytes, replaced) = write_directory(entries, config.legacy.codepage);
        let path = outdir.join(name);
        progress.set_message(name);
        write_file(&path, &bytes, &progress)?;
        written.push((path, entries.len(), what, replaced));
    }
    progress.finish();
    let mut out = progress.stdout(io::stdout().lock());
    let mut err = progress.stderr(io::stderr().lock());
    for (path, count, what, replaced) in written {
        writeln!(out, "{}: {count} {what}", path.display())?;
        if replaced > 0 {
            writeln!(
                err,
                "{}: warning: {replaced} character(s) not in the code page were replaced",
                path.display()
            )?;
        }
    }
    writeln!(
        out,
        "import {DELETIONS_FILE} first, then {ADDITIONS_FILE} (KB Q295753)"
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The deletions and additions for every migrated user with a legacy name, in directory order.
pub fn legacy_updates(
    config: &Config,
    directory: &Directory,
) -> (Vec<DirectoryEntry>, Vec<DirectoryEntry>) {
    let mut deletions = Vec::new();
    let mut additions = Vec::new();
    for entry in directory.entries() {
        let (State::Migrated, Some(name), Some(po)) =
            (entry.state(), entry.legacy_name(), entry.post_office())
        else {
            continue;
        };
        let Some(address) = entry.primary_smtp().or_else(|| entry.target_address()) else {
            continue;
        };
        let local = po.eq_ignore_ascii_case(&config.legacy.post_office);
        deletions.push(DirectoryEntry {
            name: name.to_owned(),
            location: Location::new(if local { 'L' } else { 'R' }),
            address: Some(po.to_owned()),
            comments: Some("ccgate: migrated, old mailbox entry".to_owned()),
            other: Vec::new(),
        });
        additions.push(DirectoryEntry {
            name: name.to_owned(),
            location: Location::new('r'),
            address: Some(format!("{address} at {}", config.legacy.gateway_po)),
            comments: Some("ccgate: migrated, mail through the gateway".to_owned()),
            other: Vec::new(),
        });
    }
    (deletions, additions)
}

/// Writes to `path.tmp` (advancing `progress` by the rows written), syncs, renames over
/// `path`.
fn write_file(path: &Path, bytes: &[u8], progress: &Progress) -> anyhow::Result<()> {
    let tmp = path.with_extension("imp.tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    write_rows(&mut file, bytes, progress)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok(())
}

/// Writes the directory file `bytes` [`ROWS_PER_WRITE`] entries at a time, advancing
/// `progress` by the entries written. An entry ends with an empty line (`write_directory`
/// writes no line break inside a value), so `CR LF CR LF` ends one.
fn write_rows(file: &mut impl Write, bytes: &[u8], progress: &Progress) -> io::Result<()> {
    let mut written = 0;
    let mut rows = 0;
    for end in bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"\r\n\r\n")
        .map(|(i, _)| i + 4)
    {
        rows += 1;
        if rows == ROWS_PER_WRITE {
            file.write_all(bytes.get(written..end).unwrap_or_default())?;
            progress.inc(rows);
            written = end;
            rows = 0;
        }
    }
    file.write_all(bytes.get(written..).unwrap_or_default())?;
    progress.inc(rows);
    Ok(())
}

/// `ccgate directory set-state STATE NAME...`: rewrites the directory CSV (only the named
/// rows' `state` fields; comments and order kept; atomically), one line per person on
/// standard output. A running gateway takes the change at its next reload (SIGHUP, or the
/// console's cutover, which reloads at once and releases held mail). Exit 1 when some name
/// is unknown, 2 when the directory cannot be read or written (nothing changed then).
///
/// # Errors
/// The directory cannot be read, has problems, is LDAP, or cannot be written.
pub fn set_state(
    config: &Config,
    state: crate::cli::StateArg,
    names: &[String],
) -> anyhow::Result<ExitCode> {
    let state = match state {
        crate::cli::StateArg::Legacy => State::Legacy,
        crate::cli::StateArg::Migrating => State::Migrating,
        crate::cli::StateArg::Migrated => State::Migrated,
    };
    let mut all: Vec<String> = Vec::new();
    for name in names {
        if name == "-" {
            for line in io::stdin().lines() {
                let line = line.context("reading names from standard input")?;
                if !line.trim().is_empty() {
                    all.push(line.trim().to_owned());
                }
            }
        } else {
            all.push(name.clone());
        }
    }
    let changes = crate::directory_edit::set_state(config, &all, state)?;
    let mut out = io::stdout().lock();
    let mut unknown = 0usize;
    for change in &changes {
        match &change.result {
            Ok(what) => writeln!(out, "{}: {what}", change.name)?,
            Err(why) => {
                unknown += 1;
                eprintln!("ccgate: directory set-state: {:?}: {why}", change.name);
            }
        }
    }
    if changes
        .iter()
        .any(|c| c.result.as_ref().is_ok_and(|w| w.contains("->")))
    {
        eprintln!(
            "ccgate: {} rewritten; a running gateway takes it at its next reload (SIGHUP)",
            directory_source::origin(config)
        );
    }
    Ok(if unknown > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccgate_ccmail::Codepage;

    #[test]
    fn rows_are_written_whole_and_counted() {
        let entries: Vec<DirectoryEntry> = (0..2_500)
            .map(|i| DirectoryEntry {
                name: format!("User, {i:05}"),
                location: Location::new('r'),
                address: Some(format!("u{i}@example.org at SMTPGW")),
                comments: None,
                other: Vec::new(),
            })
            .collect();
        let (bytes, _) = write_directory(&entries, Codepage::Ibm437);
        let progress = Progress::new("test", Unit::Rows, 2_500);
        let mut out = Vec::new();
        write_rows(&mut out, &bytes, &progress).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(progress.position(), 2_500);
    }
}
