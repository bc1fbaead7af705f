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
//!   came by SMTP: an unknown user or a domain not ours is refused and reported, not queued.
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

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ccgate_ccmail::{ReadError, ReadOptions, Reader};
use ccgate_core::{EmailAddress, Envelope, QueueId, ReversePath};
use ccgate_queue::{QueueError, Route, Spool};
use ccgate_router::{Destination, DirectoryHandle, Origin, Router};
use ccgate_server::{Accepted, DirectoryRouting, Ledger, PickupCodec, Routing, UNKNOWN_LANE};
use mail_parser::{HeaderName, HeaderValue, MessageParser};

use crate::config::Config;
use crate::gateway::Codec;
use crate::progress::{Progress, Unit};

/// Messages before the progress bar shows (on a terminal only).
const PROGRESS_AFTER: u64 = 100;
/// How long an SMTP reply from the running gateway may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(120);

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
    let routing = Arc::new(DirectoryRouting::new(
        Arc::new(DirectoryHandle::new(directory)),
        crate::directory_source::router_config(config),
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
            seen: read_ledger(&ledger_path(config))?,
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

// ---------------------------------------------------------------------------------------------
// Inputs.

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A legacy export file.
    Legacy,
    /// An mbox file.
    Mbox,
    /// One RFC 5322 message (an `.eml` file, a Maildir file).
    Rfc5322,
}

/// One file to replay.
#[derive(Debug)]
struct Input {
    path: PathBuf,
    kind: Kind,
}

/// The files behind `paths`: folders are listed (Maildir `cur/` and `new/`; other folders one
/// level down), `.und` files refused, empty files skipped.
fn collect(paths: &[PathBuf], err: &mut impl Write, tally: &mut Tally) -> io::Result<Vec<Input>> {
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

fn collect_dir(
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
fn list(dir: &Path, err: &mut impl Write, tally: &mut Tally) -> io::Result<Vec<PathBuf>> {
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

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

fn collect_file(
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
fn sniff(path: &Path) -> io::Result<Option<Kind>> {
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
fn location(path: &Path, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// mbox.

/// Messages of an mbox file, one at a time: a `From ` line at the start of the file or after a
/// blank line separates them; the blank line before a separator belongs to no message;
/// `>From `, `>>From `, ... lose one `>` (mboxrd).
struct Mbox<R> {
    inner: R,
    line: u64,
    /// The line number of the separator that starts the next message.
    next_start: Option<u64>,
    done: bool,
}

impl<R: BufRead> Mbox<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            line: 0,
            next_start: None,
            done: false,
        }
    }

    fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        let n = self.inner.read_until(b'\n', buf)?;
        if n > 0 {
            self.line += 1;
        }
        Ok(n > 0)
    }

    fn next_message(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        let mut buf = Vec::new();
        let start = match self.next_start.take() {
            Some(start) => start,
            None => loop {
                if self.done || !self.read_line(&mut buf)? {
                    self.done = true;
                    return Ok(None);
                }
                if buf.starts_with(b"From ") {
                    break self.line;
                }
                // Text before the first separator (blank lines) is not a message.
            },
        };
        let mut message = Vec::new();
        let mut previous_blank = false;
        loop {
            if !self.read_line(&mut buf)? {
                self.done = true;
                break;
            }
            if previous_blank && buf.starts_with(b"From ") {
                self.next_start = Some(self.line);
                // The separator's blank line is not part of the message.
                strip_last_line_end(&mut message);
                break;
            }
            previous_blank = buf.trim_ascii().is_empty();
            let quoted = buf.iter().take_while(|&&b| b == b'>').count();
            if quoted > 0 && buf.get(quoted..).is_some_and(|r| r.starts_with(b"From ")) {
                message.extend_from_slice(buf.get(1..).unwrap_or_default());
            } else {
                message.extend_from_slice(&buf);
            }
        }
        Ok(Some((start, message)))
    }
}

/// Drops the last line end of `message` (the blank line before an mbox separator).
fn strip_last_line_end(message: &mut Vec<u8>) {
    if message.ends_with(b"\r\n") {
        message.truncate(message.len() - 2);
    } else if message.ends_with(b"\n") {
        message.truncate(message.len() - 1);
    }
}

/// Every line end as CR LF (as the SMTP listener stores messages).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The ledger.

fn ledger_path(config: &Config) -> PathBuf {
    config.data_dir.join("ledger.log")
}

/// The ledger's keys, read without writing anything (for `--dry-run`): complete lines end in
/// `.` (see `ccgate_server::Ledger`).
fn read_ledger(path: &Path) -> anyhow::Result<HashSet<String>> {
    let mut keys = HashSet::new();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("{}: cannot read", path.display()))?;
        if let Some(key) = line
            .strip_suffix(b".")
            .and_then(|k| std::str::from_utf8(k).ok())
        {
            keys.insert(key.to_owned());
        }
    }
    Ok(keys)
}

/// The ledger key of one recipient of an RFC 5322 message.
fn recipient_key(identity: &str, rcpt: &EmailAddress) -> String {
    format!("{identity} {}", rcpt.to_lowercase_key())
}

// ---------------------------------------------------------------------------------------------
// Where messages go.

/// The running gateway's SMTP listener, once tried.
enum Listener {
    NotTried,
    Open(SmtpClient),
    Unusable(String),
}

/// Where replayed messages go.
enum Sink {
    /// `--dry-run`: nothing is written; `seen` starts as the ledger's keys.
    DryRun { seen: HashSet<String> },
    /// No gateway runs: this process owns the spool.
    Direct { spool: Box<Spool>, ledger: Ledger },
    /// `ccgate run` owns the spool.
    Running {
        ledger: Ledger,
        pickup_dir: PathBuf,
        smtp_addr: Option<SocketAddr>,
        hostname: String,
        listener: Listener,
    },
}

fn open_sink(config: &Config, err: &mut impl Write) -> anyhow::Result<Sink> {
    fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("{}: cannot create folder", config.data_dir.display()))?;
    let spool_dir = ccgate_queue::spool_dir(&config.data_dir);
    let ledger = || {
        let path = ledger_path(config);
        Ledger::open(&path).with_context(|| format!("{}: cannot open the ledger", path.display()))
    };
    match Spool::open(&spool_dir, super::queue::spool_options(config)) {
        Ok(spool) => {
            for finding in spool.recovery_report().findings() {
                writeln!(err, "ccgate: warning: spool recovery: {finding}")?;
            }
            Ok(Sink::Direct {
                spool: Box::new(spool),
                ledger: ledger()?,
            })
        }
        Err(QueueError::Locked { .. }) => {
            writeln!(
                err,
                "ccgate: the spool is owned by a running `ccgate run`: legacy files go through \
                 its pickup folder, RFC 5322 messages through its SMTP listener"
            )?;
            let smtp_addr = config.smtp.listen.first().map(|addr| {
                let ip = match addr.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                SocketAddr::new(ip, addr.port())
            });
            Ok(Sink::Running {
                ledger: ledger()?,
                pickup_dir: config.legacy.pickup_dir.clone(),
                smtp_addr,
                hostname: config.smtp.hostname.clone(),
                listener: Listener::NotTried,
            })
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot open the spool", spool_dir.display())),
    }
}

impl Sink {
    fn seen(&self, key: &str) -> bool {
        match self {
            Self::DryRun { seen } => seen.contains(key),
            Self::Direct { ledger, .. } | Self::Running { ledger, .. } => ledger.contains(key),
        }
    }

    fn record(&mut self, key: &str) -> anyhow::Result<()> {
        match self {
            Self::DryRun { seen } => {
                seen.insert(key.to_owned());
            }
            Self::Direct { ledger, .. } | Self::Running { ledger, .. } => ledger
                .insert(key)
                .context("cannot record the message in the ledger")?,
        }
        Ok(())
    }

    /// Releases the spool, says goodbye to the listener.
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::DryRun { .. } => Ok(()),
            Self::Direct { spool, .. } => (*spool).close().context("closing the spool"),
            Self::Running { listener, .. } => {
                if let Listener::Open(mut client) = listener {
                    client.quit();
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The replay.

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
    fn route_smtp(&self, sender: &ReversePath, rcpt: &EmailAddress) -> Result<Route, String> {
        let directory = self.routing.handle().current();
        let decision =
            Router::new(&directory, self.routing.config()).route_smtp(Origin::Smtp, rcpt);
        match decision.destination {
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
                spool
                    .enqueue_with_id(id, &envelope, &routes, &stored, now)
                    .context("cannot queue")?;
                crate::cutover::trace_replayed(self.config, &id, &envelope, &routes, &stored);
                Ok((id.to_string(), envelope.recipients, Vec::new()))
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
            match message.keys {
                Keys::Message => self.sink.record(identity)?,
                Keys::PerRecipient => {
                    for rcpt in taken {
                        self.sink.record(&recipient_key(identity, rcpt))?;
                    }
                }
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
                .is_ok_and(|route| route.destination == UNKNOWN_LANE)
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
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "Received: by {hostname} (ccgate replay) id {id};\r\n\t{}\r\n",
        ccgate_smtp::rfc5322_date(secs)
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The envelope of an RFC 5322 message.

/// `Return-Path:` (`<>` is the null sender), else `Sender:`, else `From:`.
fn envelope_sender(parsed: &mail_parser::Message<'_>) -> Result<ReversePath, String> {
    if let Some((_, raw)) = parsed
        .headers_raw()
        .find(|(name, _)| name.eq_ignore_ascii_case("Return-Path"))
    {
        let text = raw
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if text.is_empty() {
            return Ok(ReversePath::Null);
        }
        return text
            .parse::<EmailAddress>()
            .map(ReversePath::Mailbox)
            .map_err(|e| format!("Return-Path {text:?} is not an address: {e}"));
    }
    for header in [parsed.sender(), parsed.from()].into_iter().flatten() {
        if let Some(addr) = header.first().and_then(|a| a.address()) {
            return addr
                .parse::<EmailAddress>()
                .map(ReversePath::Mailbox)
                .map_err(|e| format!("sender {addr:?} is not an address: {e}"));
        }
    }
    Err("no sender (no Return-Path, Sender or From address)".to_owned())
}

/// The envelope recipients: the topmost `X-Original-To:` (the address as first received),
/// else the topmost `Delivered-To:`, else every `To:`, `Cc:` and `Bcc:` address; each once.
/// The second list holds what is not an address, with why.
fn envelope_recipients(
    parsed: &mail_parser::Message<'_>,
) -> (Vec<EmailAddress>, Vec<(String, String)>) {
    let mut found: Vec<String> = Vec::new();
    for name in ["X-Original-To", "Delivered-To"] {
        if let Some((_, raw)) = parsed
            .headers_raw()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            found.extend(
                raw.split(',')
                    .map(|a| {
                        a.trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .trim()
                    })
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned),
            );
            break;
        }
    }
    if found.is_empty() {
        for header in [HeaderName::To, HeaderName::Cc, HeaderName::Bcc] {
            for value in parsed.header_values(header) {
                if let HeaderValue::Address(list) = value {
                    found.extend(list.iter().filter_map(|a| a.address().map(str::to_owned)));
                }
            }
        }
    }
    let mut good: Vec<EmailAddress> = Vec::new();
    let mut bad = Vec::new();
    for text in found {
        match text.parse::<EmailAddress>() {
            Ok(addr) => {
                if !good
                    .iter()
                    .any(|g| g.to_lowercase_key() == addr.to_lowercase_key())
                {
                    good.push(addr);
                }
            }
            Err(e) => bad.push((text, e.to_string())),
        }
    }
    (good, bad)
}

// ---------------------------------------------------------------------------------------------
// Handing RFC 5322 messages to a running gateway over SMTP.

/// What the listener did: the queue id, the recipients it took, those it refused.
type HandedOver = (String, Vec<EmailAddress>, Vec<(EmailAddress, String)>);

/// Sends one message to the running gateway's listener (connecting on first use).
fn smtp_hand_over(
    addr: Option<SocketAddr>,
    hostname: &str,
    listener: &mut Listener,
    envelope: &Envelope,
    body: &[u8],
) -> Result<HandedOver, String> {
    if let Listener::NotTried = listener {
        *listener = match addr {
            Some(addr) if addr.port() != 0 => match SmtpClient::connect(addr, hostname) {
                Ok(client) => Listener::Open(client),
                Err(e) => Listener::Unusable(format!(
                    "`ccgate run` owns the spool but its SMTP listener {addr} does not answer \
                     ({e}); stop the gateway and replay again"
                )),
            },
            _ => Listener::Unusable(
                "`ccgate run` owns the spool and its SMTP port is not fixed in the config \
                 ([smtp] listen); stop the gateway and replay again"
                    .to_owned(),
            ),
        };
    }
    let result = match listener {
        Listener::Open(client) => client.send(envelope, body),
        Listener::Unusable(why) => return Err(why.clone()),
        Listener::NotTried => return Err("no SMTP listener".to_owned()),
    };
    result.map_err(|e| {
        let why = format!("the gateway's SMTP listener failed: {e}");
        *listener = Listener::Unusable(why.clone());
        why
    })
}

/// A plain SMTP client for the gateway's own listener.
struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    eightbit: bool,
    smtputf8: bool,
}

impl SmtpClient {
    fn connect(addr: SocketAddr, hostname: &str) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(SMTP_TIMEOUT))?;
        stream.set_write_timeout(Some(SMTP_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut client = Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            eightbit: false,
            smtputf8: false,
        };
        let (code, text) = client.reply()?;
        if code != 220 {
            return Err(io::Error::other(format!("greeting: {code} {text}")));
        }
        let (code, text) = client.command(&format!("EHLO {hostname}"))?;
        if code != 250 {
            return Err(io::Error::other(format!("EHLO: {code} {text}")));
        }
        let upper = text.to_ascii_uppercase();
        client.eightbit = upper.lines().any(|l| l.trim() == "8BITMIME");
        client.smtputf8 = upper.lines().any(|l| l.trim() == "SMTPUTF8");
        Ok(client)
    }

    /// One reply: the code and its lines joined by `\n`.
    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut text = Vec::new();
        loop {
            let mut raw = Vec::new();
            (&mut self.reader).take(4096).read_until(b'\n', &mut raw)?;
            if raw.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the listener closed the connection",
                ));
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| io::Error::other(format!("not an SMTP reply: {line:?}")))?;
            text.push(line.get(4..).unwrap_or_default().to_owned());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text.join("\n")));
            }
        }
    }

    fn command(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    fn send(&mut self, envelope: &Envelope, body: &[u8]) -> io::Result<HandedOver> {
        let mut params = String::new();
        if self.eightbit && !body.is_ascii() {
            params.push_str(" BODY=8BITMIME");
        }
        let utf8 = envelope
            .sender
            .mailbox()
            .is_some_and(|m| m.needs_smtputf8())
            || envelope.recipients.iter().any(EmailAddress::needs_smtputf8);
        if self.smtputf8 && utf8 {
            params.push_str(" SMTPUTF8");
        }
        let (code, text) = self.command(&format!("MAIL FROM:<{}>{params}", envelope.sender))?;
        if code != 250 {
            let _ = self.command("RSET");
            return Err(io::Error::other(format!("MAIL FROM: {code} {text}")));
        }
        let mut taken = Vec::new();
        let mut refused = Vec::new();
        for rcpt in &envelope.recipients {
            let (code, text) = self.command(&format!("RCPT TO:<{rcpt}>"))?;
            if (200..300).contains(&code) {
                taken.push(rcpt.clone());
            } else {
                refused.push((rcpt.clone(), format!("{code} {text}")));
            }
        }
        if taken.is_empty() {
            let _ = self.command("RSET");
            return Ok((String::new(), taken, refused));
        }
        let (code, text) = self.command("DATA")?;
        if code != 354 {
            let _ = self.command("RSET");
            return Err(io::Error::other(format!("DATA: {code} {text}")));
        }
        let mut data = Vec::new();
        ccgate_smtp::encode_data(body, &mut data);
        self.writer.write_all(&data)?;
        let (code, text) = self.reply()?;
        if code != 250 {
            return Err(io::Error::other(format!("end of data: {code} {text}")));
        }
        let id = text
            .split("queued as ")
            .nth(1)
            .map_or_else(|| "?".to_owned(), |s| s.trim().to_owned());
        Ok((id, taken, refused))
    }

    fn quit(&mut self) {
        let _ = self.command("QUIT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<(u64, String)> {
        let mut mbox = Mbox::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some((line, bytes)) = mbox.next_message().unwrap() {
            out.push((line, String::from_utf8(bytes).unwrap()));
        }
        out
    }

    #[test]
    fn mbox_splits_on_separators_after_blank_lines_and_unescapes_mboxrd() {
        let text = "From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From here\n>>From there\nFrom inside a paragraph\n\n\
From b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody\n";
        assert_eq!(
            messages(text),
            vec![
                (
                    1,
                    "Subject: one\n\nFrom here\n>From there\nFrom inside a paragraph\n".to_owned()
                ),
                (8, "Subject: two\n\nbody\n".to_owned()),
            ]
        );
        assert!(messages("").is_empty());
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc".to_vec());
    }

    #[test]
    fn envelope_from_delivery_headers_else_addresses() {
        let parse = |raw: &'static str| MessageParser::default().parse_headers(raw).unwrap();
        let m = parse(
            "Return-Path: <>\r\nDelivered-To: b@x.test\r\nDelivered-To: c@x.test\r\nX-Original-To: a@x.test\r\nFrom: f@x.test\r\nTo: t@x.test\r\n\r\n",
        );
        assert_eq!(envelope_sender(&m).unwrap(), ReversePath::Null);
        let (rcpts, bad) = envelope_recipients(&m);
        assert_eq!(rcpts, vec!["a@x.test".parse::<EmailAddress>().unwrap()]);
        assert!(bad.is_empty());
        let m = parse(
            "From: F <f@x.test>\r\nTo: T <t@x.test>, u@x.test\r\nCc: T@x.test\r\nBcc: b@x.test\r\n\r\n",
        );
        assert_eq!(envelope_sender(&m).unwrap().to_string(), "f@x.test");
        let (rcpts, _) = envelope_recipients(&m);
        let rcpts: Vec<String> = rcpts.iter().map(ToString::to_string).collect();
        assert_eq!(rcpts, ["t@x.test", "u@x.test", "b@x.test"]);
        assert!(envelope_sender(&parse("Subject: x\r\n\r\n")).is_err());
    }
}
