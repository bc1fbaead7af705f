//! `ccgate check [--dialect ie5|ie8] FILE...`: read legacy files and report every message.
//!
//! One line per message on standard output (`file:line: ok ...`), one line per problem on
//! standard error (`file:line:column: error: ...`, `... warning: ...`, `... ie8: ...`). Exit 1
//! when any message is invalid (or, with `--dialect`, would be rejected by that Import), 2 when
//! a file cannot be read.
//!
//! When the files add up to [`PROGRESS_FROM`] bytes or more and standard error is a terminal,
//! a bar over the bytes read (all files together, the file at hand named) shows on standard
//! error while they are read; piped output has none.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use ccgate_ccmail::{
    Dialect, ReadError, ReadMessage, ReadOptions, Reader, check_import, parse_directory,
};

use crate::config::Config;
use crate::progress::{Progress, Unit};

/// Bytes (all files together) from which the progress bar shows: 8 MiB.
const PROGRESS_FROM: u64 = 8 << 20;

/// Totals over all files.
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    invalid: u64,
    /// Directory files read, their entries and their errors.
    directory_files: u64,
    entries: u64,
    entry_errors: u64,
    io_errors: u64,
}

/// `1 message`, `2 messages`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Runs the command.
pub fn run(
    config: &Config,
    dialect: Option<Dialect>,
    files: &[std::path::PathBuf],
) -> anyhow::Result<ExitCode> {
    let opts = ReadOptions {
        date_order: config.legacy.date_format,
        codepage: config.legacy.codepage,
        ..ReadOptions::default()
    };
    let total: u64 = files
        .iter()
        .filter_map(|path| fs::metadata(path).ok())
        .filter(fs::Metadata::is_file)
        .map(|meta| meta.len())
        .sum();
    let progress = Progress::new("check", Unit::Bytes, total);
    if total >= PROGRESS_FROM {
        progress.show();
    }
    let mut out = progress.stdout(io::stdout().lock());
    let mut err = progress.stderr(io::stderr().lock());
    let mut tally = Tally::default();
    for path in files {
        if progress.is_visible() {
            progress.set_message(crate::progress::short_name(path));
        }
        let checked = check_file(
            path, &opts, dialect, &progress, &mut out, &mut err, &mut tally,
        );
        if let Err(e) = checked {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(err, "{}: error: {e}", path.display())?;
            tally.io_errors += 1;
        }
    }
    progress.finish();
    out.flush()?;
    let messages = format!(
        "{}: {} invalid",
        count(tally.messages, "message", "messages"),
        tally.invalid
    );
    let entries = format!(
        "{}: {}",
        count(tally.entries, "directory entry", "directory entries"),
        count(tally.entry_errors, "error", "errors")
    );
    let summary = match (tally.directory_files, tally.messages) {
        (0, _) => messages,
        (_, 0) => entries,
        _ => format!("{messages}; {entries}"),
    };
    writeln!(err, "checked {summary}")?;
    Ok(if tally.io_errors > 0 {
        ExitCode::from(2)
    } else if tally.invalid > 0 || tally.entry_errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn check_file(
    path: &Path,
    opts: &ReadOptions,
    dialect: Option<Dialect>,
    progress: &Progress,
    out: &mut impl Write,
    err: &mut impl Write,
    tally: &mut Tally,
) -> io::Result<()> {
    let name = path.display();
    let mut file = progress.wrap_read(File::open(path)?);
    // A directory file starts with `Name:`; a message file with `Message:`.
    let mut head = [0u8; 512];
    let n = read_up_to(&mut file, &mut head)?;
    let first = head
        .get(..n)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    if first.is_some_and(|l| {
        l.len() >= 5 && l.get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"name:"))
    }) {
        let mut bytes = head.get(..n).unwrap_or_default().to_vec();
        file.read_to_end(&mut bytes)?;
        let (entries, errors) = parse_directory(&bytes, opts.codepage);
        for error in &errors {
            writeln!(err, "{name}:{}: error: {}", error.position, error.kind)?;
        }
        writeln!(
            out,
            "{name}: directory: {}, {}",
            count(entries.len() as u64, "entry", "entries"),
            count(errors.len() as u64, "error", "errors")
        )?;
        tally.directory_files += 1;
        tally.entries += entries.len() as u64;
        tally.entry_errors += errors.len() as u64;
        return Ok(());
    }
    let reader = Reader::new(
        io::Cursor::new(head.get(..n).unwrap_or_default().to_vec()).chain(file),
        opts.clone(),
    );
    for result in reader {
        tally.messages += 1;
        match result {
            Ok(read) => report(&name, &read, dialect, out, err, tally)?,
            Err(ReadError::Parse { error, .. }) => {
                tally.invalid += 1;
                writeln!(err, "{name}:{}: error: {}", error.position, error.kind)?;
            }
            Err(ReadError::Io(e)) => return Err(e),
            Err(other) => return Err(io::Error::other(other.to_string())),
        }
    }
    Ok(())
}

fn report(
    name: &impl std::fmt::Display,
    read: &ReadMessage,
    dialect: Option<Dialect>,
    out: &mut impl Write,
    err: &mut impl Write,
    tally: &mut Tally,
) -> io::Result<()> {
    let line = read.position.line;
    for diag in &read.diagnostics {
        writeln!(err, "{name}:{}: warning: {}", diag.position, diag.message)?;
    }
    let mut rejected = false;
    if let Some(dialect) = dialect {
        let label = match dialect {
            Dialect::Ie5 => "ie5",
            Dialect::Ie8 => "ie8",
        };
        for reject in check_import(&read.message, read.header_bytes, dialect) {
            rejected |= reject.is_rejected();
            let severity = if reject.is_rejected() {
                "rejected"
            } else {
                "note"
            };
            writeln!(err, "{name}:{line}:1: {label} {severity}: {reject}")?;
        }
    }
    if rejected {
        tally.invalid += 1;
        return Ok(());
    }
    let msg = &read.message;
    writeln!(
        out,
        "{name}:{line}: ok: from {:?}, {} recipients, subject {:?}, {} items, {} bytes{}",
        msg.from().unwrap_or(""),
        msg.recipients().count(),
        msg.subject().unwrap_or(""),
        msg.items.len(),
        read.len,
        if read.sized { ", sized" } else { "" }
    )
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
