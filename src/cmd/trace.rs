//! `ccgate trace [--since TIME] [--until TIME] [--json] [QUERY]`: the message trace the
//! running gateway keeps in `data_dir/trace/` (see docs/console.md), searched by address,
//! queue id or Message-ID, newest first. Works whether or not the gateway runs.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use ccgate_server::{TraceLog, TraceQuery};

use crate::config::Config;

/// The trace folder of a data folder.
pub fn dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("trace")
}

/// A time: UTC `YYYY-MM-DDTHH:MM[:SS]`, or a duration ago (`90m`, `2d`).
fn time(flag: &str, text: &str) -> anyhow::Result<u64> {
    if let Some(at) = ccgate_console::parse_utc(text) {
        return Ok(at);
    }
    let ago = ccgate_core::parse_duration(text).with_context(|| {
        format!("{flag} {text:?}: not a UTC time like 2026-12-02T20:30 nor a duration like 2h")
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(now.saturating_sub(ago.as_secs()))
}

/// Runs `ccgate trace`.
///
/// # Errors
/// A bad time, or standard output failing.
pub fn run(
    config: &Config,
    since: Option<&str>,
    until: Option<&str>,
    json: bool,
    limit: usize,
    query: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let query = TraceQuery {
        text: query.unwrap_or("").to_owned(),
        since: since.map(|t| time("--since", t)).transpose()?,
        until: until.map(|t| time("--until", t)).transpose()?,
    };
    let folder = dir(config);
    if !folder.join(ccgate_server::TRACE_FILE).exists() {
        eprintln!(
            "ccgate: trace: {}: no trace yet (the gateway writes it while it runs)",
            folder.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let events = TraceLog::reader(&folder).search(&query, limit);
    let mut out = io::stdout().lock();
    for e in &events {
        if json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            let mut line = format!("{} {:<11}", ccgate_console::utc(e.at / 1000), e.event);
            if !e.queue_id.is_empty() {
                line.push_str(&format!(" {}", e.queue_id));
            }
            if !e.from.is_empty() {
                line.push_str(&format!(" from={}", e.from));
            }
            if !e.to.is_empty() {
                line.push_str(&format!(" to={}", e.to.join(",")));
            }
            if !e.side.is_empty() {
                line.push_str(&format!(" [{}]", e.side));
            }
            if !e.message_id.is_empty() {
                line.push_str(&format!(" message-id=<{}>", e.message_id));
            }
            if !e.detail.is_empty() {
                line.push_str(&format!(": {}", e.detail));
            }
            writeln!(out, "{line}")?;
        }
    }
    if events.is_empty() {
        eprintln!("ccgate: trace: no events match");
    }
    Ok(ExitCode::SUCCESS)
}
