//! `ccgate replay [--dry-run] PATH...`: stuck or exported mail back through routing into the
//! queue, each message as new mail, never twice.
//!
//! Inputs: legacy export files (first non-blank line `Message:`), RFC 5322 files (`.eml`), mbox
//! files (`From ` separator lines, mboxrd `>From ` unescaped), Maildir folders (`cur/` and
//! `new/`), and folders of these (one level down). Legacy undeliverable files (`*.und`) are
//! refused (KB Q168680: replaying them re-sends the non-delivery reports they collected).
//!
//! - Legacy messages are converted and routed exactly as the pickup does
//!   ([`crate::gateway::Codec`]); RFC 5322 messages get an envelope from `X-Original-To:`
//!   (else the topmost `Delivered-To:`, else `To:`/`Cc:`/`Bcc:`) and a sender from
//!   `Return-Path:` (else `Sender:`, else `From:`), and each recipient is routed as if it
//!   came by SMTP: an unknown user or a domain not ours is refused and reported, not queued;
//!   except that mail from one of ours (a directory user or an address in our domains) to an
//!   outside address goes to the modern next hop, as legacy-origin mail does (replay is the
//!   administrator's trusted submission; next to a running gateway such a message goes to its
//!   spool through the control folder, [`ccgate_queue::submit`], since the gateway's listener
//!   relays for nobody).
//! - Idempotence: the ledger `<data_dir>/ledger.log` (shared with the pickup) records what was
//!   taken in. A legacy message is keyed by its deterministic Message-ID alone (the pickup's
//!   key, so an export file the gateway already picked up queues nothing); an RFC 5322 message
//!   by `<Message-ID> recipient` (or `sha256:... recipient` without a Message-ID), so a
//!   replay queues only the recipients not replayed before.
//! - Reaching the queue: when no `ccgate run` owns the spool, replay opens it and queues
//!   directly (with a `Received:` header naming the queue id on RFC 5322 messages). When one
//!   does (the spool is locked), legacy files are copied into the pickup folder (hidden name,
//!   then renamed) and the running gateway takes them in, its ledger deduplicating; RFC 5322
//!   messages are handed to its SMTP listener (`[smtp] listen`, first address) as a plain SMTP
//!   client. That needs a fixed port: with port 0 replay says to stop the gateway (exit 2).
//! - `--dry-run` prints one line per recipient (message id, recipient, lane, rewritten
//!   recipient, or the refusal) and writes nothing: no ledger, no spool, no folder.
//!
//! Output: one line per message on standard output (`path[:line]: queued as ID to N
//! recipients`, `already replayed`, `refused: ...`), problems on standard error, a summary
//! line on standard error. Exit 0 when all went well, 1 when a message was refused or
//! unreadable (or an input was a `.und` file), 2 on usage or I/O errors.
//!
//! From the [`PROGRESS_AFTER`]th message on, when standard error is a terminal, a progress bar
//! shows there: over messages when every input holds one (a Maildir, `.eml` files), else over
//! the bytes of the inputs with the message count and rate; piped output has none.
//!
//! By concern: [`inputs`] finds the messages in the paths given, [`mbox`] splits mbox files,
//! [`envelope`] makes an envelope from an RFC 5322 message's headers, [`sink`] is where
//! messages go (nowhere, the spool, or a running gateway) with the ledger check, and
//! [`handoff`] is the blocking SMTP client for a running gateway's listener (replies read
//! with `ccgate_smtp`'s reader). This file routes each message and reports it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use ccgate_ccmail::{ReadError, ReadOptions, Reader};
use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::Route;
use ccgate_router::{Destination, DirectoryHandle, Origin, RejectCode, Router};
use ccgate_server::{Accepted, DirectoryRouting, Ledger, PickupCodec, Routing};
use mail_parser::MessageParser;

use crate::config::Config;
use crate::gateway::Codec;
use crate::progress::{Progress, Unit};

mod envelope;
mod handoff;
mod inputs;
mod mbox;
mod sink;

use envelope::{envelope_recipients, envelope_sender};
use handoff::smtp_hand_over;
use inputs::{Input, Kind, collect, location};
use mbox::{Mbox, crlf};
use sink::{Sink, ledger_path, open_sink, recipient_key};

/// Messages before the progress bar shows (on a terminal only).
const PROGRESS_AFTER: u64 = 100;

/// Runs the command.
///
/// # Errors
/// Writing the report failed, or the directory cannot be read (exit 2 in `main`).
pub fn run(config: &Config, dry_run: bool, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let directory = match crate::directory_source::load(config)? {
        Ok(directory) => directory,
        Err(invalid) => {
            eprintln!("ccgate: the directory has problems; fix them and replay again:\n{invalid}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut router_config = crate::directory_source::router_config(config);
    // Reply tags as `ccgate run` makes them; a dry run writes nothing, so it makes no key.
    let keys = crate::reply_keys::KeyFile::of(config);
    router_config.reply_tags = if dry_run {
        keys.open_existing(config)?
    } else {
        Some(keys.open_or_create(config)?)
    };
    let routing = Arc::new(DirectoryRouting::new(
        Arc::new(DirectoryHandle::new(directory)),
        router_config,
    ));
    let codec = Codec::new(
        Arc::clone(&routing),
        super::convert::options(config),
        config.legacy.unknown_recipients,
    );

    let mut tally = Tally::default();
    let mut err = io::stderr().lock();
    let inputs = collect(paths, &mut err, &mut tally)?;
    let sink = if dry_run || inputs.is_empty() {
        // Nothing to queue (or a dry run): touch neither the spool nor the ledger.
        Sink::DryRun {
            seen: Ledger::read_keys(&ledger_path(config))?,
        }
    } else {
        match open_sink(config, &mut err) {
            Ok(sink) => sink,
            Err(e) => {
                writeln!(err, "ccgate: {e:#}")?;
                return Ok(ExitCode::from(2));
            }
        }
    };
    let progress = progress_for(&inputs);
    let mut replay = Replay {
        config,
        routing,
        codec,
        sink,
        read: ReadOptions {
            date_order: config.legacy.date_format,
            codepage: config.legacy.codepage,
            ..ReadOptions::default()
        },
        out: progress.bar.stdout(io::stdout().lock()),
        err: progress.bar.stderr(err),
        tally,
        progress,
    };
    for input in &inputs {
        if let Err(e) = replay.input(input) {
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return Err(e);
            }
            writeln!(replay.err, "{}: error: {e:#}", input.path.display())?;
            replay.tally.io_errors += 1;
        }
    }
    replay.progress.bar.finish();
    replay.out.flush()?;
    let Replay {
        sink,
        mut err,
        mut tally,
        ..
    } = replay;
    if let Err(e) = sink.finish() {
        writeln!(err, "ccgate: {e:#}")?;
        tally.io_errors += 1;
    }
    writeln!(err, "{}", tally.summary(dry_run))?;
    Ok(if tally.io_errors > 0 {
        ExitCode::from(2)
    } else if tally.refused + tally.unreadable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    queued: u64,
    recipients: u64,
    already: u64,
    handed_over: u64,
    refused: u64,
    unreadable: u64,
    io_errors: u64,
}

impl Tally {
    fn summary(&self, dry_run: bool) -> String {
        let mut line = if dry_run {
            format!(
                "dry run: {} message(s): {} would be queued ({} recipient(s)), {} already \
                 replayed, {} refused, {} unreadable; nothing was changed",
                self.messages,
                self.queued,
                self.recipients,
                self.already,
                self.refused,
                self.unreadable
            )
        } else {
            format!(
                "replayed {} message(s): {} queued ({} recipient(s)), {} already replayed, {} \
                 refused, {} unreadable",
                self.messages,
                self.queued,
                self.recipients,
                self.already,
                self.refused,
                self.unreadable
            )
        };
        if self.handed_over > 0 {
            line.push_str(&format!(
                ", {} handed to the running gateway's pickup",
                self.handed_over
            ));
        }
        if self.io_errors > 0 {
            line.push_str(&format!(", {} I/O error(s)", self.io_errors));
        }
        line
    }
}

/// The replay's progress bar: over messages when every input holds one message (a Maildir,
/// `.eml` files), else over the bytes of the inputs, with the message count and rate.
struct ReplayProgress {
    bar: Progress,
    by_bytes: bool,
    messages: u64,
}

fn progress_for(inputs: &[Input]) -> ReplayProgress {
    let by_bytes = inputs.iter().any(|i| i.kind != Kind::Rfc5322);
    let bar = if by_bytes {
        let bytes = inputs
            .iter()
            .filter_map(|i| fs::metadata(&i.path).ok())
            .map(|m| m.len())
            .sum();
        Progress::new("replay", Unit::Bytes, bytes)
    } else {
        Progress::new("replay", Unit::Messages, inputs.len() as u64)
    };
    ReplayProgress {
        bar,
        by_bytes,
        messages: 0,
    }
}

impl ReplayProgress {
    /// One more message; the bar shows from the [`PROGRESS_AFTER`]th on.
    fn tick(&mut self) {
        self.messages += 1;
        if self.by_bytes {
            let seconds = self.bar.elapsed().as_secs_f64();
            let rate = if seconds > 0.0 {
                format!(", {:.0}/s", self.messages as f64 / seconds)
            } else {
                String::new()
            };
            self.bar
                .set_message(format!("{} messages{rate}", self.messages));
        } else {
            self.bar.inc(1);
        }
        if self.messages == PROGRESS_AFTER {
            self.bar.show();
        }
    }

    /// A file read whole (one RFC 5322 message).
    fn read_whole(&self, bytes: u64) {
        if self.by_bytes {
            self.bar.inc(bytes);
        }
    }
}

/// One recipient's routing: the route, or why it is refused.
type Routed = (EmailAddress, Result<Route, String>);

struct Replay<'a, O: Write, E: Write> {
    config: &'a Config,
    routing: Arc<DirectoryRouting>,
    codec: Codec,
    sink: Sink,
    read: ReadOptions,
    out: O,
    err: E,
    tally: Tally,
    progress: ReplayProgress,
}

impl<O: Write, E: Write> Replay<'_, O, E> {
    fn input(&mut self, input: &Input) -> anyhow::Result<()> {
        match input.kind {
            Kind::Legacy => self.legacy_file(&input.path),
            Kind::Mbox => {
                let file = self.progress.bar.wrap_read(File::open(&input.path)?);
                let mut mbox = Mbox::new(BufReader::new(file));
                while let Some((line, bytes)) = mbox.next_message()? {
                    self.rfc5322(&input.path, Some(line), &bytes)?;
                }
                Ok(())
            }
            Kind::Rfc5322 => {
                let bytes = fs::read(&input.path)?;
                self.progress.read_whole(bytes.len() as u64);
                self.rfc5322(&input.path, None, &bytes)
            }
        }
    }

    /// Writes a report line (the writer keeps the progress bar out of its way).
    fn say(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.out, "{line}")
    }

    fn complain(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.err, "{line}")
    }

    // ---- legacy export files

    fn legacy_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let file = self.progress.bar.wrap_read(File::open(path)?);
        let mut hand_over = false;
        for result in Reader::new(file, self.read.clone()) {
            let read = match result {
                Ok(read) => read,
                Err(ReadError::Parse { error, .. }) => {
                    self.tally.messages += 1;
                    self.tally.unreadable += 1;
                    self.progress.tick();
                    self.complain(&format!(
                        "{}:{}: error: {}",
                        path.display(),
                        error.position,
                        error.kind
                    ))?;
                    continue;
                }
                Err(ReadError::Io(e)) => return Err(e.into()),
                Err(other) => return Err(anyhow::anyhow!("{other}")),
            };
            self.tally.messages += 1;
            self.progress.tick();
            let at = location(path, Some(read.position.line));
            let accepted = match self.codec.accept(&read.message, read.len) {
                Ok(accepted) => accepted,
                Err(reason) => {
                    self.tally.refused += 1;
                    self.say(&format!("{at}: refused: {reason}"))?;
                    continue;
                }
            };
            let refused = self.left_out(&accepted);
            if self.sink.seen(&accepted.message_id) {
                self.tally.already += 1;
                self.say(&format!("{at}: already replayed ({})", accepted.message_id))?;
                continue;
            }
            let routed: Vec<Routed> = accepted
                .envelope
                .recipients
                .iter()
                .cloned()
                .zip(accepted.routes.iter().cloned().map(Ok))
                .chain(refused.into_iter().map(|(r, why)| (r, Err(why))))
                .collect();
            if matches!(self.sink, Sink::Running { .. }) {
                // The running gateway records the message in the ledger when it queues it.
                hand_over = true;
                self.tally.handed_over += 1;
                let mut line = format!(
                    "{at}: handed to the running gateway's pickup ({} recipient(s))",
                    accepted.routes.len()
                );
                line.push_str(&bounced_note(&routed));
                let refused: Vec<Routed> = routed.into_iter().filter(|(_, r)| r.is_err()).collect();
                if !refused.is_empty() {
                    self.tally.refused += 1;
                    line.push_str(&format!("; refused {}", refusals(&refused)));
                }
                self.say(&line)?;
                continue;
            }
            let message = Message {
                at: &at,
                identity: &accepted.message_id,
                keys: Keys::Message,
                sender: &accepted.envelope.sender,
                body: &accepted.body,
                note: None,
            };
            self.deliver(&message, &routed)?;
        }
        if hand_over {
            self.hand_to_pickup(path)?;
        }
        Ok(())
    }

    /// The recipients a legacy message names in `To:`/`Cc:` that the conversion left out of
    /// the envelope, with why (the codec logs refused recipients; the report names them).
    fn left_out(&self, accepted: &Accepted) -> Vec<(EmailAddress, String)> {
        let Some(parsed) = MessageParser::default().parse_headers(&accepted.body) else {
            return Vec::new();
        };
        let in_envelope: HashSet<String> = accepted
            .envelope
            .recipients
            .iter()
            .map(EmailAddress::to_lowercase_key)
            .collect();
        let mut out = Vec::new();
        for list in [parsed.to(), parsed.cc()].into_iter().flatten() {
            for addr in list.iter() {
                let Some(rcpt) = addr.address().and_then(|a| a.parse::<EmailAddress>().ok()) else {
                    continue;
                };
                if in_envelope.contains(&rcpt.to_lowercase_key())
                    || out.iter().any(|(r, _): &(EmailAddress, String)| r == &rcpt)
                {
                    continue;
                }
                let why = match self.routing.route_from_legacy(&rcpt) {
                    Err(why) => why,
                    Ok(_) => "left out by the conversion".to_owned(),
                };
                out.push((rcpt, why));
            }
        }
        out
    }

    /// Copies a legacy file into the running gateway's pickup folder: written under a hidden
    /// name (the pickup skips those), synced, then renamed.
    fn hand_to_pickup(&mut self, path: &Path) -> anyhow::Result<()> {
        let Sink::Running { pickup_dir, .. } = &self.sink else {
            return Ok(());
        };
        fs::create_dir_all(pickup_dir)
            .with_context(|| format!("{}: cannot create folder", pickup_dir.display()))?;
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "export".to_owned());
        let target = pickup_dir.join(format!("replay-{stamp}-{name}"));
        let tmp = pickup_dir.join(format!(".replay-{stamp}-{name}.tmp"));
        let copy = || -> io::Result<()> {
            fs::copy(path, &tmp)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &target)?;
            File::open(pickup_dir)?.sync_all()
        };
        if let Err(e) = copy() {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("{}: cannot write", target.display()));
        }
        let line = format!(
            "{}: copied to {} for the running gateway",
            path.display(),
            target.display()
        );
        self.complain(&line)?;
        Ok(())
    }

    // ---- RFC 5322 messages

    fn rfc5322(&mut self, path: &Path, line: Option<u64>, raw: &[u8]) -> anyhow::Result<()> {
        self.tally.messages += 1;
        self.progress.tick();
        let at = location(path, line);
        let bytes = crlf(raw);
        let parser = MessageParser::default();
        let parsed = parser
            .parse_headers(&bytes)
            .filter(|m| !m.headers().is_empty());
        let Some(parsed) = parsed else {
            self.tally.unreadable += 1;
            self.complain(&format!("{at}: error: not an RFC 5322 message (no header)"))?;
            return Ok(());
        };
        let identity = parsed.message_id().map_or_else(
            || ccgate_convert::content_identity(&bytes),
            |id| format!("<{id}>"),
        );
        let sender = match envelope_sender(&parsed) {
            Ok(sender) => sender,
            Err(why) => {
                self.tally.refused += 1;
                self.say(&format!("{at}: refused: {identity}: {why}"))?;
                return Ok(());
            }
        };
        let (recipients, bad) = envelope_recipients(&parsed);
        drop(parsed);
        let mut routed: Vec<Routed> = Vec::new();
        let mut already = 0usize;
        // The message taken in whole before (the legacy pickup's key): nothing is new.
        let whole = self.sink.seen(&identity);
        for rcpt in recipients {
            if whole || self.sink.seen(&recipient_key(&identity, &rcpt)) {
                already += 1;
                continue;
            }
            let route = self.route_smtp(&sender, &rcpt);
            routed.push((rcpt, route));
        }
        for (text, why) in bad {
            let line = format!("{at}: {identity} {text:?}: not an address: {why}");
            self.complain(&line)?;
        }
        if routed.is_empty() && already > 0 {
            self.tally.already += 1;
            self.say(&format!("{at}: already replayed ({identity})"))?;
            return Ok(());
        }
        if routed.is_empty() {
            self.tally.refused += 1;
            self.say(&format!(
                "{at}: refused: {identity}: no recipient (no X-Original-To, Delivered-To, To, \
                 Cc or Bcc address)"
            ))?;
            return Ok(());
        }
        let note = (already > 0).then(|| format!("{already} already replayed"));
        let message = Message {
            at: &at,
            identity: &identity,
            keys: Keys::PerRecipient,
            sender: &sender,
            body: &bytes,
            note: note.as_deref(),
        };
        self.deliver(&message, &routed)
    }

    /// The route of an SMTP-origin recipient, or the router's refusal (`550 5.1.1 ...`).
    ///
    /// Replay is the local administrator's submission (like Postfix's sendmail and pickup,
    /// which are trusted): a recipient outside our domains is routed as legacy-origin mail to
    /// such an address is ([`DirectoryRouting::route_from_legacy`]: to the modern next hop)
    /// when the sender is one of ours, a directory user or an address in our domains: the
    /// stuck outbound queue after an outage. Foreign sender to foreign recipient stays
    /// refused as relaying.
    fn route_smtp(&self, sender: &ReversePath, rcpt: &EmailAddress) -> Result<Route, String> {
        let (directory, config) = (self.routing.handle().current(), self.routing.config());
        let decision = Router::new(&directory, &config).route_smtp(Origin::Smtp, rcpt);
        match decision.destination {
            Destination::Reject {
                code: code @ RejectCode::RelayDenied,
                reason,
            } => {
                let ReversePath::Mailbox(from) = sender else {
                    return Err(format!(
                        "{code} {reason}: the null sender is not one of ours, and replay \
                         relays only our own users' mail to outside addresses"
                    ));
                };
                let ours =
                    directory.lookup_smtp(from).is_some() || config.is_our_domain(from.domain());
                if !ours {
                    return Err(format!(
                        "{code} {reason}: neither the sender {from} nor the recipient is ours, \
                         and replay relays only our own users' mail to outside addresses"
                    ));
                }
                self.routing.route_from_legacy(rcpt)
            }
            Destination::Reject { code, reason } => Err(format!("{code} {reason}")),
            _ => Ok(self.routing.route(sender, rcpt)),
        }
    }

    // ---- delivery

    /// Queues (or, in a dry run, prints) one message for its routed recipients, records it in
    /// the ledger and reports it.
    fn deliver(&mut self, message: &Message<'_>, routed: &[Routed]) -> anyhow::Result<()> {
        let at = message.at;
        let identity = message.identity;
        let good: Vec<(EmailAddress, Route)> = routed
            .iter()
            .filter_map(|(r, route)| route.as_ref().ok().map(|route| (r.clone(), route.clone())))
            .collect();
        if let Sink::DryRun { .. } = self.sink {
            for (rcpt, route) in routed {
                let line = match route {
                    Ok(route) => format!(
                        "{at}: {identity} {rcpt} -> {} {}{}",
                        route.destination,
                        route.deliver_to,
                        if route.hold { " (held)" } else { "" }
                    ),
                    Err(why) => format!("{at}: {identity} {rcpt}: refused: {why}"),
                };
                self.say(&line)?;
            }
            if let Some(note) = message.note {
                self.say(&format!("{at}: {identity}: {note}"))?;
            }
            let taken: Vec<EmailAddress> = good.into_iter().map(|(r, _)| r).collect();
            return self.account(message, routed, "would be queued", &taken, Vec::new());
        }
        if good.is_empty() {
            return self.account(message, routed, "", &[], Vec::new());
        }
        let (recipients, routes): (Vec<EmailAddress>, Vec<Route>) = good.into_iter().unzip();
        let envelope = Envelope {
            sender: message.sender.clone(),
            recipients,
        };
        let queued = match &mut self.sink {
            Sink::DryRun { .. } => return Ok(()),
            Sink::Direct { spool, .. } => {
                let id = QueueId::generate();
                let now = SystemTime::now();
                let stored = match message.keys {
                    // As the pickup stores it.
                    Keys::Message => message.body.to_vec(),
                    Keys::PerRecipient => {
                        let mut stored = received_header(&self.config.smtp.hostname, &id, now);
                        stored.extend_from_slice(message.body);
                        stored
                    }
                };
                // The ledger keys ride in the spool record, so that a crash before
                // `account` writes them does not queue the message again on the next replay.
                // No agent delivers from this process, so the message needs no
                // `confirm_keyed`: the next process to open the spool leases it.
                let keys = message.keys.of(identity, &envelope.recipients);
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                spool
                    .enqueue_keyed(id, &keys, &envelope, &routes, &stored, now)
                    .context("cannot queue")?;
                crate::cutover::trace_replayed(self.config, &id, &envelope, &routes, &stored);
                Ok((id.to_string(), envelope.recipients, Vec::new()))
            }
            // Our users' mail to outside addresses: the listener relays for nobody, so the
            // message goes to the running gateway's spool whole, through its control folder.
            Sink::Running { spool, .. }
                if message.keys == Keys::PerRecipient
                    && envelope
                        .recipients
                        .iter()
                        .any(|r| !self.routing.config().is_our_domain(r.domain())) =>
            {
                let id = QueueId::generate();
                let mut stored =
                    received_header(&self.config.smtp.hostname, &id, SystemTime::now());
                stored.extend_from_slice(message.body);
                let (spool_dir, options) = &**spool;
                ccgate_queue::submit(spool_dir, options, id, &envelope, &routes, &stored)
                    .map(|_| (id.to_string(), envelope.recipients.clone(), Vec::new()))
                    .map_err(|e| format!("cannot hand the message to the running gateway: {e}"))
            }
            Sink::Running {
                smtp_addr,
                hostname,
                listener,
                ..
            } => smtp_hand_over(*smtp_addr, hostname, listener, &envelope, message.body),
        };
        match queued {
            Ok((id, taken, server_refused)) => {
                let verb = format!("queued as {id}");
                self.account(message, routed, &verb, &taken, server_refused)
            }
            Err(why) => {
                self.tally.io_errors += 1;
                let line = format!("{at}: error: {identity}: {why}");
                Ok(self.complain(&line)?)
            }
        }
    }

    /// Records what was taken in (`taken`) and writes the message's line: `{at}: {verb} to N
    /// recipient(s)`, with the refusals of the router (in `routed`) and of the listener.
    fn account(
        &mut self,
        message: &Message<'_>,
        routed: &[Routed],
        verb: &str,
        taken: &[EmailAddress],
        server_refused: Vec<(EmailAddress, String)>,
    ) -> anyhow::Result<()> {
        let (at, identity) = (message.at, message.identity);
        if !taken.is_empty() {
            for key in message.keys.of(identity, taken) {
                self.sink.record(&key)?;
            }
        }
        let mut refused: Vec<Routed> = routed
            .iter()
            .filter(|(_, route)| route.is_err())
            .cloned()
            .collect();
        refused.extend(server_refused.into_iter().map(|(r, why)| (r, Err(why))));
        if taken.is_empty() {
            self.tally.refused += 1;
            let mut line = format!("{at}: refused: {identity}: {}", refusals(&refused));
            if let Some(note) = message.note {
                line.push_str(&format!(" ({note})"));
            }
            return Ok(self.say(&line)?);
        }
        self.tally.queued += 1;
        self.tally.recipients += taken.len() as u64;
        let mut line = format!("{at}: {verb} to {} recipient(s)", taken.len());
        if let Some(note) = message.note {
            line.push_str(&format!(" ({note})"));
        }
        if !refused.is_empty() {
            self.tally.refused += 1;
            line.push_str(&format!("; refused {}", refusals(&refused)));
        }
        line.push_str(&bounced_note(routed));
        Ok(self.say(&line)?)
    }
}

/// `; bounced (5.1.1, not in the directory): a, b` for recipients routed to the `unknown`
/// lane (the legacy sender will get a non-delivery report), or nothing.
fn bounced_note(routed: &[Routed]) -> String {
    let unknown: Vec<String> = routed
        .iter()
        .filter(|(_, route)| {
            route
                .as_ref()
                .is_ok_and(|route| route.destination == Lane::Unknown)
        })
        .map(|(rcpt, _)| rcpt.to_string())
        .collect();
    if unknown.is_empty() {
        String::new()
    } else {
        format!(
            "; to be bounced to the sender (5.1.1, not in the directory): {}",
            unknown.join(", ")
        )
    }
}

/// How a message is keyed in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// By its identity alone (legacy messages, as the pickup keys them).
    Message,
    /// By identity and recipient (RFC 5322 messages).
    PerRecipient,
}

impl Keys {
    /// The ledger keys of a message with identity `identity` taken for `recipients`.
    fn of(self, identity: &str, recipients: &[EmailAddress]) -> Vec<String> {
        match self {
            Self::Message => vec![identity.to_owned()],
            Self::PerRecipient => recipients
                .iter()
                .map(|rcpt| recipient_key(identity, rcpt))
                .collect(),
        }
    }
}

/// One message ready for the queue.
struct Message<'a> {
    /// `path[:line]`.
    at: &'a str,
    /// Message-ID (with angle brackets) or content hash.
    identity: &'a str,
    keys: Keys,
    sender: &'a ReversePath,
    /// RFC 5322, CR LF line ends.
    body: &'a [u8],
    /// Said after the count (`2 already replayed`).
    note: Option<&'a str>,
}

/// `a@x (550 5.1.1 why), b@y (...)`.
fn refusals(refused: &[Routed]) -> String {
    refused
        .iter()
        .filter_map(|(rcpt, route)| route.as_ref().err().map(|why| format!("{rcpt} ({why})")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The trace header of a message replay queues itself.
fn received_header(hostname: &str, id: &QueueId, now: SystemTime) -> Vec<u8> {
    format!(
        "Received: by {hostname} (ccgate replay) id {id};\r\n\t{}\r\n",
        ccgate_core::rfc5322_date_at(now)
    )
    .into_bytes()
}
