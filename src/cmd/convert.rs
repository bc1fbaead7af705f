//! `ccgate convert --to mime|legacy FILE`: convert between the legacy format and RFC 5322,
//! standard output only. Addresses are mapped with the directory as `ccgate run` maps them (a
//! migrated user's legacy name becomes their current address, an SMTP address in the directory
//! its legacy name), without routing anything. When the directory cannot be used (no file yet,
//! unreadable, problems) that is said on standard error and the directory-free default map
//! built from `[legacy]` is used (`domain`, `post_office`, `gateway_po`; see
//! `ccgate_convert::DefaultAddressMap`).
//!
//! - `--to mime`: FILE is a legacy Import/Export file. A file holding one message gives that
//!   message as RFC 5322 (CR LF line ends), ready to save as `.eml`. A file holding several gives
//!   an mbox (mboxrd: each message after a `From sender date` line, LF line ends, body lines
//!   matching `>*From ` quoted with one more `>`, a blank line after each message).
//! - `--to legacy`: FILE is an RFC 5322 message (or an mbox of them, when it starts with
//!   `From `); the output is Import text as `write_messages` writes it with the configured
//!   dialect, date order, code page and gateway PO.
//!
//! Standard error gets one line per problem: `file:line:column: error: ...` for a legacy message
//! that does not parse (the others are still converted), `file:line:1: error: ...` for a message
//! that cannot be converted, `file:line:column: warning: ...` for what the legacy reader worked
//! around, `file:line:1: note: ...` for what the conversion changed. Exit 0 when every message
//! was converted, 1 when some message failed, 2 when the file cannot be read.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use ccgate_ccmail::{Dialect, SliceReader, write_messages};
use ccgate_convert::{
    AddressMap, ConvertOptions, DefaultAddressMap, LegacyContext, MimeMessage, legacy_to_mime,
    mime_to_legacy,
};
use ccgate_router::{Directory, Router};

use crate::cli::ConvertTo;
use crate::config::{Config, DialectChoice};
use crate::directory_source;
use crate::gateway::RouterMap;

/// The conversion options of the config's `[legacy]` section. Legacy dates are taken as UTC
/// (the config has no time-zone key yet).
pub fn options(config: &Config) -> ConvertOptions {
    let legacy = &config.legacy;
    ConvertOptions {
        legacy_domain: legacy.domain.clone(),
        post_office: legacy.post_office.clone(),
        gateway_po: legacy.gateway_po.clone(),
        dialect: match legacy.dialect {
            DialectChoice::Ie5 => Dialect::Ie5,
            DialectChoice::Ie8 => Dialect::Ie8,
        },
        date_order: legacy.date_format,
        codepage: legacy.codepage,
        ..ConvertOptions::default()
    }
}

/// Runs the command.
///
/// # Errors
/// Writing to standard output or error failed (a closed pipe included; `main` treats that as
/// success).
pub fn run(config: &Config, to: ConvertTo, file: &Path) -> anyhow::Result<ExitCode> {
    let name = file.display().to_string();
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = options(config);
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let directory = directory(config, &mut err)?;
    let mut router_config = directory_source::router_config(config);
    // The keys `ccgate run` made: legacy senders outside the directory get the reply address
    // the gateway would give them (without the keys, the untagged form).
    router_config.reply_tags = match crate::reply_keys::KeyFile::of(config).open_existing(config) {
        Ok(tags) => tags,
        Err(e) => {
            writeln!(
                err,
                "ccgate: convert: {e:#}: reply addresses are shown without their tag"
            )?;
            None
        }
    };
    let router_map;
    let default_map;
    let map: &dyn AddressMap = match &directory {
        Some(directory) => {
            router_map = RouterMap(Router::new(directory, &router_config));
            &router_map
        }
        None => {
            default_map = DefaultAddressMap::from_options(&opts);
            &default_map
        }
    };
    let failed = match to {
        ConvertTo::Mime => to_mime(&name, &bytes, &opts, map, &mut out, &mut err)?,
        ConvertTo::Legacy => to_legacy(&name, &bytes, &opts, map, &mut out, &mut err)?,
    };
    out.flush()?;
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The directory in service, or `None` (said on `err`) when it cannot be used.
fn directory(config: &Config, err: &mut impl Write) -> io::Result<Option<Directory>> {
    let why = match directory_source::load(config) {
        Ok(Ok(directory)) => return Ok(Some(directory)),
        Ok(Err(invalid)) => {
            writeln!(err, "{invalid}")?;
            format!("the directory has {} problem(s)", invalid.problems.len())
        }
        Err(e) => format!("{e:#}"),
    };
    writeln!(
        err,
        "ccgate: convert: {why}: addresses are mapped without the directory"
    )?;
    Ok(None)
}

/// Legacy file → RFC 5322 (one message) or mbox (several). Returns how many messages failed.
fn to_mime(
    name: &str,
    bytes: &[u8],
    opts: &ConvertOptions,
    map: &dyn AddressMap,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<usize> {
    let mut reader = SliceReader::new(bytes);
    let mut converted: Vec<MimeMessage> = Vec::new();
    let mut n_messages = 0;
    let mut failed = 0;
    while let Some(result) = reader.next() {
        n_messages += 1;
        let raw = match result {
            Ok(raw) => raw,
            Err(e) => {
                failed += 1;
                writeln!(err, "{name}:{}: error: {}", e.position, e.kind)?;
                continue;
            }
        };
        let line = reader.position(raw.offset).line;
        let (message, notes) = raw.decode(&opts.read_options());
        for (offset, text) in notes {
            writeln!(err, "{name}:{}: warning: {text}", reader.position(offset))?;
        }
        match legacy_to_mime(&message, &LegacyContext::default(), opts, map) {
            Ok(mime) => {
                for note in &mime.notes {
                    writeln!(err, "{name}:{line}:1: note: {note}")?;
                }
                converted.push(mime);
            }
            Err(e) => {
                failed += 1;
                writeln!(err, "{name}:{line}:1: error: {e}")?;
            }
        }
    }
    if n_messages <= 1 {
        for mime in &converted {
            out.write_all(&mime.bytes)?;
        }
    } else {
        for mime in &converted {
            write_mboxrd(mime, out)?;
        }
    }
    Ok(failed)
}

/// One message in mboxrd form.
fn write_mboxrd(mime: &MimeMessage, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", mime.mbox_from_line())?;
    let text = mime.bytes.strip_suffix(b"\r\n").unwrap_or(&mime.bytes);
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let unquoted = line.iter().position(|b| *b != b'>').unwrap_or(line.len());
        if line
            .get(unquoted..)
            .is_some_and(|rest| rest.starts_with(b"From "))
        {
            out.write_all(b">")?;
        }
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    out.write_all(b"\n")
}

/// RFC 5322 file (or mbox) → Import text. Returns how many messages failed.
fn to_legacy(
    name: &str,
    bytes: &[u8],
    opts: &ConvertOptions,
    map: &dyn AddressMap,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<usize> {
    let wopts = opts.write_options();
    let mut failed = 0;
    for (line, raw) in split_mbox(bytes) {
        let conv = mime_to_legacy(&raw, opts, map);
        for note in &conv.notes {
            writeln!(err, "{name}:{line}:1: note: {note}")?;
        }
        let mut written = Vec::new();
        match write_messages(&conv.message, &wopts, &mut written) {
            Ok(report) => {
                for change in &report.changes {
                    writeln!(err, "{name}:{line}:1: note: {change}")?;
                }
                if report.replaced_chars > 0 {
                    writeln!(
                        err,
                        "{name}:{line}:1: note: {} characters have no equivalent in code page {} and were written as '?'",
                        report.replaced_chars,
                        opts.codepage.name()
                    )?;
                }
                out.write_all(&written)?;
            }
            Err(e) => {
                failed += 1;
                writeln!(err, "{name}:{line}:1: error: {e}")?;
            }
        }
    }
    Ok(failed)
}

/// The messages of an mbox (mboxrd `>From ` unquoted) with the line each starts on, or the
/// whole input as one message when it does not start with `From `.
fn split_mbox(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    if !bytes.starts_with(b"From ") {
        return vec![(1, bytes.to_vec())];
    }
    let mut messages: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut previous_blank = true;
    for (idx, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let line_no = idx as u64 + 1;
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if previous_blank && content.starts_with(b"From ") {
            // The blank line before a `From ` line belongs to the separator.
            if let Some((_, last)) = messages.last_mut() {
                strip_final_blank_line(last);
            }
            messages.push((line_no + 1, Vec::new()));
            previous_blank = false;
            continue;
        }
        previous_blank = content.is_empty();
        let Some((_, current)) = messages.last_mut() else {
            continue;
        };
        let quotes = content.iter().take_while(|b| **b == b'>').count();
        if quotes > 0
            && content
                .get(quotes..)
                .is_some_and(|r| r.starts_with(b"From "))
        {
            current.extend_from_slice(line.get(1..).unwrap_or_default());
        } else {
            current.extend_from_slice(line);
        }
    }
    messages
}

fn strip_final_blank_line(message: &mut Vec<u8>) {
    if message.ends_with(b"\r\n\r\n") {
        message.truncate(message.len() - 2);
    } else if message.ends_with(b"\n\n") {
        message.truncate(message.len() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splitting_and_unquoting() {
        let mbox = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: one\n\n>From here\nbody\n\nFrom c@d Thu Jan  1 00:00:00 1970\nSubject: two\n\nx\n";
        let messages = split_mbox(mbox);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].0, 2);
        assert_eq!(messages[0].1, b"Subject: one\n\nFrom here\nbody\n");
        assert_eq!(messages[1].0, 8);
        assert_eq!(messages[1].1, b"Subject: two\n\nx\n");
        assert_eq!(split_mbox(b"Subject: x\r\n\r\ny").len(), 1);
    }
}
