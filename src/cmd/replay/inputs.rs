//! Finding the inputs: files, folders, Maildirs; what each holds.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::Tally;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A legacy export file.
    Legacy,
    /// An mbox file.
    Mbox,
    /// One RFC 5322 message (an `.eml` file, a Maildir file).
    Rfc5322,
}

/// One file to replay.
#[derive(Debug)]
pub(super) struct Input {
    pub(super) path: PathBuf,
    pub(super) kind: Kind,
}

/// The files behind `paths`: folders are listed (Maildir `cur/` and `new/`; other folders one
/// level down), `.und` files refused, empty files skipped.
pub(super) fn collect(
    paths: &[PathBuf],
    err: &mut impl Write,
    tally: &mut Tally,
) -> io::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => collect_dir(path, 0, &mut inputs, err, tally)?,
            Ok(_) => collect_file(path, &mut inputs, err, tally)?,
            Err(e) => {
                writeln!(err, "{}: error: {e}", path.display())?;
                tally.io_errors += 1;
            }
        }
    }
    Ok(inputs)
}

pub(super) fn collect_dir(
    dir: &Path,
    depth: u32,
    inputs: &mut Vec<Input>,
    err: &mut impl Write,
    tally: &mut Tally,
) -> io::Result<()> {
    if is_maildir(dir) {
        for sub in ["cur", "new"] {
            for path in list(&dir.join(sub), err, tally)? {
                if path.is_file() {
                    collect_file(&path, inputs, err, tally)?;
                }
            }
        }
        return Ok(());
    }
    for path in list(dir, err, tally)? {
        if path.is_dir() {
            if depth == 0 {
                collect_dir(&path, depth + 1, inputs, err, tally)?;
            }
        } else if path.is_file() {
            collect_file(&path, inputs, err, tally)?;
        }
    }
    Ok(())
}

/// A folder's visible entries, sorted; a listing error is reported and gives nothing.
pub(super) fn list(
    dir: &Path,
    err: &mut impl Write,
    tally: &mut Tally,
) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            writeln!(err, "{}: error: {e}", dir.display())?;
            tally.io_errors += 1;
            return Ok(Vec::new());
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths)
}

pub(super) fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

pub(super) fn collect_file(
    path: &Path,
    inputs: &mut Vec<Input>,
    err: &mut impl Write,
    tally: &mut Tally,
) -> io::Result<()> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("und"))
    {
        writeln!(
            err,
            "{}: error: a legacy undeliverable (.und) file is never replayed (KB Q168680: it \
             holds the non-delivery reports of failed imports); replay the saved original \
             export instead",
            path.display()
        )?;
        tally.unreadable += 1;
        return Ok(());
    }
    match sniff(path) {
        Ok(Some(kind)) => inputs.push(Input {
            path: path.to_path_buf(),
            kind,
        }),
        Ok(None) => writeln!(err, "{}: warning: empty file skipped", path.display())?,
        Err(e) => {
            writeln!(err, "{}: error: {e}", path.display())?;
            tally.io_errors += 1;
        }
    }
    Ok(())
}

/// The kind of a file by its first non-blank line; `None` for a blank file.
pub(super) fn sniff(path: &Path) -> io::Result<Option<Kind>> {
    let mut head = Vec::new();
    File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
    let Some(first) = head
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(if first.starts_with(b"From ") {
        Kind::Mbox
    } else if first
        .get(..8)
        .is_some_and(|k| k.eq_ignore_ascii_case(b"Message:"))
    {
        Kind::Legacy
    } else {
        Kind::Rfc5322
    }))
}

/// Where a message was found, for the report.
pub(super) fn location(path: &Path, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}
