//! `ccgate queue list|show|summary|hold|release|retry|delete|requeue` (docs/cli.md).
//!
//! Reading commands (`list`, `show`, `summary`) take a read-only view of the spool's journal:
//! they need no lock and change nothing, so they work the same whether or not `ccgate run`
//! owns the spool. Actions go through [`ccgate_queue::admin_request`]: carried out directly
//! when nothing owns the spool, else handed to the running `ccgate run` through the spool's
//! `control/` folder and answered within about a second (see the ccgate-queue README).
//!
//! Exit codes: 0 done; 1 some ids are not in the queue; 2 usage or I/O error (one line on
//! standard error, printed by `main`).

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use ccgate_core::{QueueId, parse_duration};
use ccgate_queue::{
    AdminAction, AdminRequest, Filter, MessageInfo, QueueState, QueueView, RcptState, RetryPolicy,
    SpoolOptions,
};

use crate::cli::{QueueCommand, QueueFilter, QueueStateArg, QueueTarget};
use crate::config::Config;

/// How long an action waits for a running `ccgate run` to carry it out.
const OWNER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one queue command.
///
/// # Errors
/// Bad arguments (ids, filters) and I/O errors on the spool: `main` prints them and exits 2.
pub fn run(config: &Config, command: &QueueCommand) -> anyhow::Result<ExitCode> {
    let dir = ccgate_queue::spool_dir(&config.data_dir);
    let now = ccgate_queue::now();
    match command {
        QueueCommand::List { json, filter } => {
            let filter = to_filter(filter)?;
            let view = open_view(&dir)?;
            list(&view, &filter, *json, now)
        }
        QueueCommand::Show { id } => {
            let id = parse_id(id)?;
            let view = open_view(&dir)?;
            show(&view, id, now)
        }
        QueueCommand::Summary => {
            let view = open_view(&dir)?;
            let mut out = io::stdout().lock();
            write!(out, "{}", view.summary(now))?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Hold(target) => act(config, AdminAction::Hold, target),
        QueueCommand::Release(target) => act(config, AdminAction::Release, target),
        QueueCommand::Retry(target) => act(config, AdminAction::Retry, target),
        QueueCommand::Delete(target) => act(config, AdminAction::Delete, target),
        QueueCommand::Requeue(target) => act(config, AdminAction::Requeue, target),
    }
}

/// The spool options that follow from the config file (shared with `ccgate run`).
pub fn spool_options(config: &Config) -> SpoolOptions {
    let defaults = SpoolOptions::default();
    SpoolOptions {
        retry: RetryPolicy {
            retry: config.queue.retry.clone(),
            max_lifetime: config.queue.max_lifetime,
        },
        quarantine_after: config.queue.quarantine_after.max(1),
        reporting_mta: config.smtp.hostname.clone(),
        // Postfix wants 1.5 x message_size_limit free before it takes a message; capped at a
        // tenth of the file system unless set, so a small volume still takes mail.
        min_free: config
            .queue
            .min_free
            .unwrap_or(config.smtp.max_message_size.saturating_mul(3) / 2),
        min_free_cap_percent: if config.queue.min_free.is_some() {
            0
        } else {
            10
        },
        attempt_timeout: attempt_timeout(config),
        // The legacy agent delivers one pass at a time, each of several import files' worth:
        // the lane's limit is that pass, not the default (which would cap the import files).
        lanes: std::collections::HashMap::from([(
            "legacy".to_owned(),
            u32::try_from(ccgate_server::LegacyAgent::leases_per_pass(
                config.legacy.import_batch,
            ))
            .unwrap_or(u32::MAX),
        )]),
        ..defaults
    }
}

/// A lease outlives every attempt an agent can make: the longest of the next hop's
/// (connect, a few commands, data) and the import command's timeouts, plus a margin, and
/// never less than the spool's default. The SMTP agent also stops an attempt at the lease's
/// deadline, so no message is ever in two attempts at once.
fn attempt_timeout(config: &Config) -> std::time::Duration {
    let margin = std::time::Duration::from_secs(60);
    let m = &config.modern;
    let smtp = m.connect_timeout + m.command_timeout * 6 + m.data_timeout;
    let legacy = config.legacy.import_timeout;
    SpoolOptions::default()
        .attempt_timeout
        .max(smtp + margin)
        .max(legacy + margin)
}

fn open_view(dir: &std::path::Path) -> anyhow::Result<QueueView> {
    let view = QueueView::open(dir)
        .with_context(|| format!("{}: cannot read the queue", dir.display()))?;
    for finding in view.report().findings() {
        eprintln!("ccgate: warning: {finding}");
    }
    Ok(view)
}

fn parse_id(id: &str) -> anyhow::Result<QueueId> {
    id.trim()
        .parse()
        .with_context(|| format!("{id:?} is not a queue id"))
}

fn to_filter(f: &QueueFilter) -> anyhow::Result<Filter> {
    let older_than = f
        .older_than
        .as_deref()
        .map(|d| parse_duration(d).context("--older-than"))
        .transpose()?;
    Ok(Filter {
        destination: f.destination.clone(),
        sender: f.sender.clone(),
        recipient: f.recipient.clone(),
        state: f.state.map(|s| match s {
            QueueStateArg::Active => QueueState::Active,
            QueueStateArg::Deferred => QueueState::Deferred,
            QueueStateArg::Held => QueueState::Held,
            QueueStateArg::Quarantined => QueueState::Quarantined,
        }),
        older_than,
    })
}

fn is_empty(f: &QueueFilter) -> bool {
    f.destination.is_none()
        && f.sender.is_none()
        && f.recipient.is_none()
        && f.state.is_none()
        && f.older_than.is_none()
}

fn list(
    view: &QueueView,
    filter: &Filter,
    json: bool,
    now: SystemTime,
) -> anyhow::Result<ExitCode> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut count = 0u64;
    let mut result: io::Result<()> = Ok(());
    view.for_each(filter, now, |info| {
        if result.is_err() {
            return;
        }
        count += 1;
        result = if json {
            serde_json::to_string(&info)
                .map_err(io::Error::other)
                .and_then(|line| writeln!(out, "{line}"))
        } else {
            write_text(&mut out, &info)
        };
    });
    result?;
    if !json {
        if count == 0 {
            writeln!(out, "Mail queue is empty")?;
        } else {
            writeln!(out, "-- {count} message(s)")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write_text(out: &mut impl Write, m: &MessageInfo) -> io::Result<()> {
    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
    write!(
        out,
        "{:<26} {:<11} {:>9} {:>7}  {sender}",
        m.queue_id,
        m.queue_name.to_string(),
        m.message_size,
        age(m.age_seconds)
    )?;
    if m.needs_routing {
        write!(out, "  (waiting for routing)")?;
    }
    if let Some(of) = &m.bounce_of {
        write!(out, "  (bounce of {of})")?;
    }
    writeln!(out)?;
    if let Some(reason) = &m.quarantine_reason {
        writeln!(
            out,
            "    quarantined after {} crash(es): {reason}",
            m.crashes
        )?;
    }
    for r in &m.recipients {
        let mut line = format!(
            "    {:<40} {:<10} {}",
            r.address,
            r.destination,
            state_name(r.state)
        );
        if r.attempts > 0 {
            line.push_str(&format!(" attempts={}", r.attempts));
        }
        if r.in_flight {
            line.push_str(" (being delivered)");
        }
        if let Some(next) = r.next_attempt {
            line.push_str(&format!(
                " next={}",
                ccgate_core::rfc5322_date_ms(next.saturating_mul(1000))
            ));
        }
        writeln!(out, "{line}")?;
        if let Some(orig) = &r.orig_address {
            writeln!(out, "        originally {orig}")?;
        }
        if let Some(reason) = r.delay_reason.as_ref().or(r.bounce_reason.as_ref()) {
            writeln!(out, "        {reason}")?;
        }
    }
    Ok(())
}

fn state_name(s: RcptState) -> &'static str {
    match s {
        RcptState::Pending => "pending",
        RcptState::Deferred => "deferred",
        RcptState::Held => "held",
        RcptState::Delivered => "delivered",
        RcptState::Failed => "failed",
    }
}

/// `3d4h`, `2h13m`, `45m`, `30s`.
fn age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, (secs / 3600) % 24, (secs / 60) % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h:02}h"),
    }
}

fn show(view: &QueueView, id: QueueId, now: SystemTime) -> anyhow::Result<ExitCode> {
    let detail = match view.show(id, now) {
        Ok(d) => d,
        Err(ccgate_queue::QueueError::NotFound { .. }) => {
            eprintln!("ccgate: queue id {id}: not in the queue");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e).with_context(|| format!("queue id {id}")),
    };
    let mut out = io::stdout().lock();
    write_text(&mut out, &detail.info)?;
    writeln!(out, "history:")?;
    for h in &detail.history {
        if h.at_ms == 0 {
            writeln!(out, "    {}", h.event)?;
        } else {
            writeln!(
                out,
                "    {}  {}",
                ccgate_core::rfc5322_date_ms(h.at_ms),
                h.event
            )?;
        }
    }
    if let Some(error) = &detail.body_error {
        writeln!(out, "message: cannot be read: {error}")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "message ({} bytes):", detail.body.len())?;
    out.write_all(&detail.body)?;
    if !detail.body.ends_with(b"\n") {
        writeln!(out)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn act(config: &Config, action: AdminAction, target: &QueueTarget) -> anyhow::Result<ExitCode> {
    let mut ids = Vec::new();
    for id in &target.ids {
        if id == "-" {
            for line in io::stdin().lock().lines() {
                let line = line.context("reading queue ids from standard input")?;
                let line = line.trim();
                if !line.is_empty() {
                    ids.push(line.to_owned());
                }
            }
        } else {
            ids.push(id.clone());
        }
    }
    if target.all && !target.ids.is_empty() {
        bail!("give queue ids or --all, not both");
    }
    if !target.all && !is_empty(&target.filter) {
        bail!("filters select messages only with --all");
    }
    if !target.all && ids.is_empty() {
        bail!("give queue ids (or `-` to read them from standard input), or --all");
    }
    let mut bad = Vec::new();
    for id in &ids {
        if id.parse::<QueueId>().is_err() {
            bad.push(id.clone());
        }
    }
    ids.retain(|id| id.parse::<QueueId>().is_ok());
    let request = AdminRequest {
        action,
        ids,
        all: target.all,
        filter: to_filter(&target.filter)?,
    };
    let dir = ccgate_queue::spool_dir(&config.data_dir);
    let (report, _via) =
        ccgate_queue::admin_request(&dir, &spool_options(config), &request, OWNER_TIMEOUT)
            .with_context(|| format!("{}: queue {}", dir.display(), verb(action)))?;
    if let Some(error) = report.error {
        bail!("{error}");
    }
    for id in &bad {
        eprintln!("ccgate: {id:?} is not a queue id");
    }
    for id in &report.not_found {
        eprintln!("ccgate: queue id {id}: not in the queue");
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}: {} message(s)",
        verb(action),
        report.affected.len()
    )?;
    out.flush()?;
    Ok(if bad.is_empty() && report.not_found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verb(action: AdminAction) -> &'static str {
    match action {
        AdminAction::Hold => "held",
        AdminAction::Release => "released",
        AdminAction::Retry => "scheduled for retry",
        AdminAction::Delete => "deleted",
        AdminAction::Requeue => "requeued for routing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        for (secs, text) in [(5, "5s"), (120, "2m"), (7980, "2h13m"), (273_600, "3d04h")] {
            assert_eq!(age(secs), text);
        }
    }
}
