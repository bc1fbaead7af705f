//! The `legacy` lane: import files written into the post office's drop folder.
//!
//! Each pass leases up to `import_batch` messages and writes them into one Import file
//! (`G*.CCM`, an 8.3 name because the DOS tools fail on longer ones, KB Q181186), as the
//! format allows (messages one after another), by the strict writer: to a hidden temporary
//! name, fsync, then a hard link to a free 8.3 name (which fails rather than replace a file
//! made meanwhile by anyone), the temporary name removed, fsync the folder. A file is closed early at [`MAX_BATCH_BYTES`]. Each
//! message's recipient lines are exactly the recipients of this attempt (an Import delivers to
//! every `To:`/`Cc:`/`Bcc:` line, so the message's other recipients, delivered by other lanes,
//! must not appear there). A message the converter or the writer refuses fails alone, before
//! any file is written.
//!
//! Without `import_command` the file in the drop folder is the delivery: the post office's
//! Import takes it from there. With one, the command runs once per file with the file's path
//! as its last argument, and whatever it does the gateway moves the file out of the drop
//! folder (KB Q223772: a file left behind was re-imported forever): exit 0 = consumed (file to
//! `imported/`), 4 = post office locked (retry later), 5 = undeliverable (bounce), anything
//! else or no exit within `import_timeout` = retry later; failed files go to `failed/` for
//! inspection. When a file of several messages gets exit 5, its messages are tried again at
//! once, one file each, so that only the bad one bounces (KB Q192516: one poison message must
//! not fail its batch). The command runs in its own process group, and at the timeout the
//! whole group is killed (not only `/bin/sh`), so a killed import never runs on beside its
//! retry.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccgate_ccmail::{Header, Message, WriteOptions, write_messages};
use ccgate_core::{EmailAddress, Lane, ReversePath};
use ccgate_queue::{DeliveryError, FailureScope, Lease, Spool};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ServerError;
use crate::lane::{self, LaneAgent, LaneContext};
use crate::metrics::Metrics;

/// Default of `[legacy] import_batch`: messages per import file.
pub const DEFAULT_IMPORT_BATCH: usize = 50;
/// Messages leased per pass at least (written one file each without batching).
const LEASE_PER_PASS: usize = 16;
/// Import files written per pass at most (their messages' outcomes are recorded together).
const FILES_PER_PASS: usize = 4;
/// After a pass with less than a file's worth, while mail keeps coming: how long more may
/// gather before the next pass (a few per cent of a message's usual way through).
const GATHER: Duration = Duration::from_millis(25);
/// An import file is closed once it holds this many bytes (a batch of large messages).
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// What the legacy agent needs from the converter and the router.
pub trait LegacyCodec: Send + Sync + 'static {
    /// The queued RFC 5322 message as a legacy message (its recipient lines are replaced);
    /// `sender` is its envelope sender, the legacy sender when the message names none.
    ///
    /// # Errors
    /// A sentence saying why the message cannot be converted (a permanent failure).
    fn to_legacy(&self, rfc5322: &[u8], sender: &ReversePath) -> Result<Message, String>;

    /// The legacy address (`Name at PO`) of a recipient routed to the legacy lane.
    fn recipient(&self, rcpt: &EmailAddress) -> Option<String>;
}

/// The optional Import program and its time limit.
#[derive(Debug, Clone)]
pub struct ImportCommand {
    /// Run by `/bin/sh -c`, with the file's path appended as the last argument.
    pub command: String,
    /// Killed after this.
    pub timeout: Duration,
}

/// The import program in service, which a configuration reload may replace
/// ([`LegacyAgent::import_handle`]): files written from then on are imported with it.
#[derive(Debug, Clone)]
pub struct ImportHandle(Arc<std::sync::RwLock<Option<ImportCommand>>>);

impl ImportHandle {
    /// Puts `import` (or none) in service.
    pub fn set(&self, import: Option<ImportCommand>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = import;
    }

    fn get(&self) -> Option<ImportCommand> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Delivers the `legacy` lane into the drop folder.
pub struct LegacyAgent {
    drop_dir: PathBuf,
    imported_dir: PathBuf,
    failed_dir: PathBuf,
    context: LaneContext,
    codec: Arc<dyn LegacyCodec>,
    write: WriteOptions,
    import: ImportHandle,
    batch: usize,
}

impl std::fmt::Debug for LegacyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyAgent")
            .field("drop_dir", &self.drop_dir)
            .field("import", &self.import)
            .field("batch", &self.batch)
            .finish()
    }
}

impl LegacyAgent {
    /// An agent writing into `drop_dir`; `work_dir` gets `imported/` and `failed/`. One import
    /// file holds one message; [`LegacyAgent::with_batch`] sets more. The drop folder's path
    /// is made absolute (canonical) once, here: `import_command` gets absolute paths.
    ///
    /// # Errors
    /// [`ServerError::Io`] when a folder cannot be created (or the drop folder resolved).
    pub fn new(
        drop_dir: &Path,
        work_dir: &Path,
        spool: Arc<Spool>,
        codec: Arc<dyn LegacyCodec>,
        write: WriteOptions,
        import: Option<ImportCommand>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let imported_dir = work_dir.join("imported");
        let failed_dir = work_dir.join("failed");
        for dir in [drop_dir, &imported_dir, &failed_dir] {
            fs::create_dir_all(dir).map_err(|source| ServerError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // Absolute, once: `import_command` gets the file's full path, whatever folder the
        // gateway was started in or the command changes to.
        let drop_dir = fs::canonicalize(drop_dir).map_err(|source| ServerError::Io {
            path: drop_dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            drop_dir,
            imported_dir,
            failed_dir,
            context: LaneContext {
                lane: Lane::Legacy,
                relay: "legacy",
                batch: LEASE_PER_PASS,
                spool,
                metrics,
            },
            codec,
            write,
            import: ImportHandle(Arc::new(std::sync::RwLock::new(import))),
            batch: 1,
        })
    }

    /// The handle a configuration reload replaces the import program through.
    pub fn import_handle(&self) -> ImportHandle {
        self.import.clone()
    }

    /// Up to `batch` messages per import file (`[legacy] import_batch`; 0 counts as 1).
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self.context.batch = Self::leases_per_pass(batch);
        self
    }

    /// How many messages one pass leases with `import_batch` messages per file: several
    /// files' worth, so their outcomes share the journal's fsyncs. The spool's concurrency
    /// limit of the `legacy` lane must be at least this, or a pass gets fewer messages than
    /// one file could hold (the agent is the lane's only deliverer and runs one pass at a
    /// time, so this is also the most it ever has in flight).
    #[must_use]
    pub fn leases_per_pass(import_batch: usize) -> usize {
        import_batch
            .max(1)
            .saturating_mul(FILES_PER_PASS)
            .max(LEASE_PER_PASS)
    }

    /// Delivers until `stop` fires; an attempt in hand is finished first.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        lane::run(Arc::new(self), stop).await;
    }

    #[cfg(test)]
    fn pass(&self) -> usize {
        lane::pass(self)
    }

    /// The message of one lease as Import text, or why it cannot be written (permanent).
    fn prepare(&self, lease: &Lease) -> Result<Vec<u8>, DeliveryError> {
        let permanent = |text: String| DeliveryError::permanent(FailureScope::Message, text);
        let body = self.context.spool.lease_body(lease).map_err(|e| {
            DeliveryError::transient(
                FailureScope::Message,
                format!("cannot read the queued message: {e}"),
            )
        })?;
        let mut msg = self
            .codec
            .to_legacy(&body, &lease.sender)
            .map_err(permanent)?;
        msg.headers.retain(|h| !h.is_recipient());
        for r in &lease.recipients {
            let legacy = self
                .codec
                .recipient(&r.address)
                .ok_or_else(|| permanent(format!("{} has no legacy address", r.address)))?;
            msg.headers.push(Header::To(legacy));
        }
        let mut bytes = Vec::new();
        let report = write_messages(&msg, &self.write, &mut bytes)
            .map_err(|e| permanent(format!("the post office would not accept it: {e}")))?;
        for change in &report.changes {
            info!(queue_id = %lease.queue_id, change = %change, "written for the legacy side");
        }
        if report.replaced_chars > 0 {
            info!(queue_id = %lease.queue_id, replaced = report.replaced_chars, code_page = self.write.codepage.name(), "characters without an equivalent written as '?'");
        }
        Ok(bytes)
    }

    /// One attempt for one message: its own import file.
    fn attempt(&self, lease: &Lease) -> Result<PathBuf, DeliveryError> {
        let bytes = self.prepare(lease)?;
        self.deliver_file(lease, &[bytes.as_slice()])
    }

    /// Writes one import file holding `parts` (whole messages) and runs the import command.
    fn deliver_file(&self, first: &Lease, parts: &[&[u8]]) -> Result<PathBuf, DeliveryError> {
        self.deliver_file_at(first, parts).1
    }

    /// As [`Self::deliver_file`], also answering where a refused file was set aside.
    fn deliver_file_at(
        &self,
        first: &Lease,
        parts: &[&[u8]],
    ) -> (Option<PathBuf>, Result<PathBuf, DeliveryError>) {
        let file = match self.write_file(first, parts) {
            Ok(file) => file,
            Err(e) => {
                let error = DeliveryError::transient(
                    FailureScope::Destination,
                    format!("drop folder {}: {e}", self.drop_dir.display()),
                );
                return (None, Err(error));
            }
        };
        let set_aside = file.file_name().map(|n| self.failed_dir.join(n));
        match self.import.get() {
            None => (None, Ok(file)),
            Some(import) => (set_aside, self.run_import(&import, file)),
        }
    }

    /// The attempts of a pass: the messages that could be written go into import files of up
    /// to `batch` messages (and [`MAX_BATCH_BYTES`]); a file refused for good is split, one
    /// message per file, so that only the bad message fails.
    fn deliver_batches(&self, leases: &mut [Lease]) -> Vec<Option<Result<String, DeliveryError>>> {
        let mut outcomes: Vec<Option<Result<String, DeliveryError>>> =
            leases.iter().map(|_| None).collect();
        let mut ready: Vec<(usize, Vec<u8>)> = Vec::new();
        // Converting is the CPU work: on several threads, results in lease order.
        // (Asked once: the answer reads cgroup files, which cost more than a small pass.)
        static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let threads = *THREADS.get_or_init(|| {
            std::thread::available_parallelism()
                .map_or(2, std::num::NonZeroUsize::get)
                .clamp(1, 8)
        });
        // At least 8 messages a thread: a small pass does not start threads it cannot use.
        let threads = threads.min(leases.len().div_ceil(8)).max(1);
        let chunk = leases.len().div_ceil(threads).max(1);
        let prepared: Vec<Result<Vec<u8>, DeliveryError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = leases
                .chunks(chunk)
                .map(|part| {
                    let n = part.len();
                    let handle = scope
                        .spawn(move || part.iter().map(|l| self.prepare(l)).collect::<Vec<_>>());
                    (n, handle)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join().unwrap_or_else(|_| {
                        let failed = DeliveryError::transient(
                            FailureScope::Message,
                            "the conversion panicked",
                        );
                        vec![Err(failed); n]
                    })
                })
                .collect()
        });
        for (i, outcome) in prepared.into_iter().enumerate() {
            match outcome {
                Ok(bytes) => ready.push((i, bytes)),
                Err(e) => {
                    if let Some(slot) = outcomes.get_mut(i) {
                        *slot = Some(Err(e));
                    }
                }
            }
        }
        let mut groups: Vec<Vec<(usize, Vec<u8>)>> = Vec::new();
        let mut current: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut current_bytes = 0;
        for (i, bytes) in ready {
            if !current.is_empty()
                && (current.len() >= self.batch || current_bytes + bytes.len() > MAX_BATCH_BYTES)
            {
                groups.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current_bytes += bytes.len();
            current.push((i, bytes));
        }
        if !current.is_empty() {
            groups.push(current);
        }
        for group in groups {
            // Each file's leases are renewed right before it is written: a pass of several
            // files, each allowed up to import_timeout, must not outlive its later leases.
            let turn: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
            let held = self.context.renew_for_turn(leases, &turn);
            let group: Vec<(usize, Vec<u8>)> = group
                .into_iter()
                .filter(|(i, _)| held.contains(i))
                .collect();
            let Some(first) = group.first().and_then(|(i, _)| leases.get(*i)) else {
                continue;
            };
            let parts: Vec<&[u8]> = group.iter().map(|(_, b)| b.as_slice()).collect();
            let (set_aside, result) = self.deliver_file_at(first, &parts);
            let split = group.len() > 1 && matches!(&result, Err(e) if e.is_permanent());
            if split {
                let ids: Vec<String> = group
                    .iter()
                    .filter_map(|(i, _)| leases.get(*i))
                    .map(|l| l.queue_id.to_string())
                    .collect();
                warn!(messages = group.len(), queue_ids = %ids.join(" "), error = %result.as_ref().err().map(DeliveryError::text).unwrap_or_default(), "import file refused for good; these messages are tried again now, one file each, so that only the bad one fails");
                // Each message gets a file of its own (and its own place in imported/ or
                // failed/): the refused batch file would only be a second copy of them.
                if let Some(batch_file) = set_aside {
                    let _ = fs::remove_file(batch_file);
                }
            }
            for (i, bytes) in &group {
                let outcome = if split {
                    if self.context.renew_for_turn(leases, &[*i]).is_empty() {
                        continue;
                    }
                    let Some(lease) = leases.get(*i) else {
                        continue;
                    };
                    self.deliver_file(lease, &[bytes.as_slice()])
                } else {
                    result.clone()
                };
                if let Some(slot) = outcomes.get_mut(*i) {
                    *slot = Some(outcome.map(|file| file.display().to_string()));
                }
            }
        }
        // A slot still empty is a message whose lease was lost before its file: not tried.
        outcomes
    }

    /// Writes the file under a temporary name, fsyncs, renames it to a fresh 8.3 name.
    fn write_file(&self, lease: &Lease, parts: &[&[u8]]) -> std::io::Result<PathBuf> {
        let seed = lease.queue_id.to_u128() ^ u128::from(lease.id.0).rotate_left(64);
        let tmp = self
            .drop_dir
            .join(format!(".ccgate-{}-{}.tmp", lease.queue_id, lease.id));
        let mut file = std::io::BufWriter::new(File::create(&tmp)?);
        for part in parts {
            file.write_all(part)?;
        }
        let file = file
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        let mut name_seed = seed;
        loop {
            let target = self.drop_dir.join(import_name(name_seed));
            match publish(&tmp, &target) {
                Ok(()) => {
                    File::open(&self.drop_dir)?.sync_all()?;
                    return Ok(target);
                }
                // Taken (by an earlier file, or another writer at this very moment).
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    name_seed = next_seed(name_seed);
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
    }

    fn run_import(&self, import: &ImportCommand, file: PathBuf) -> Result<PathBuf, DeliveryError> {
        let outcome = run_with_timeout(&import.command, &file, import.timeout);
        let (dest_dir, result) = match outcome {
            Ok(Some(0)) => (&self.imported_dir, Ok(())),
            Ok(Some(4)) => (
                &self.failed_dir,
                Err(DeliveryError::transient(
                    FailureScope::Destination,
                    "import: the post office is locked (exit 4)",
                )),
            ),
            Ok(Some(5)) => (
                &self.failed_dir,
                Err(DeliveryError::permanent(
                    FailureScope::Message,
                    "import: undeliverable message (exit 5)",
                )),
            ),
            Ok(Some(code)) => (
                &self.failed_dir,
                Err(DeliveryError::transient(
                    FailureScope::Destination,
                    format!("import failed (exit {code})"),
                )),
            ),
            Ok(None) => (
                &self.failed_dir,
                Err(DeliveryError::transient(
                    FailureScope::Destination,
                    format!("import did not finish within {:?}; killed", import.timeout),
                )),
            ),
            Err(e) => (
                &self.failed_dir,
                Err(DeliveryError::transient(
                    FailureScope::Destination,
                    format!("cannot run the import command: {e}"),
                )),
            ),
        };
        // Whatever the tool did, the file leaves the drop folder.
        let name = file.file_name().map(PathBuf::from).unwrap_or_default();
        let moved = dest_dir.join(name);
        let moved = match fs::rename(&file, &moved) {
            Ok(()) => moved,
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot move the import file out of the drop folder");
                let _ = fs::remove_file(&file);
                file
            }
        };
        result.map(|()| moved)
    }
}

/// Runs `sh -c "COMMAND \"$1\"" sh FILE` in a process group of its own; `Ok(None)` when it
/// was killed at the timeout, with every process of its group (what the shell started too).
fn run_with_timeout(command: &str, file: &Path, timeout: Duration) -> std::io::Result<Option<i32>> {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{command} \"$1\""))
        .arg("sh")
        .arg(file)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status.code().unwrap_or(-1)));
        }
        if started.elapsed() >= timeout {
            let group = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            match group {
                Some(group) => {
                    if let Err(e) =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL)
                    {
                        warn!(pgid = child.id(), error = %e, "cannot kill the import command's process group");
                        let _ = child.kill();
                    }
                }
                None => {
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The 8.3 import-file name for a seed: `G` and 7 base-36 digits, `.CCM`.
fn import_name(seed: u128) -> String {
    format!("G{}.CCM", base36(seed, 7))
}

/// The seed of the next name to try when one is taken.
fn next_seed(seed: u128) -> u128 {
    seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1)
}

/// Gives the written file at `tmp` the name `target` only if no file has it (never over
/// another import file, even one created at the same moment): a hard link then the removal of
/// the temporary name; on a share without hard links, a rename that refuses to replace.
/// [`std::io::ErrorKind::AlreadyExists`] when the name is taken.
fn publish(tmp: &Path, target: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let link_error = match fs::hard_link(tmp, target) {
        Ok(()) => {
            if let Err(e) = fs::remove_file(tmp) {
                // The import file is in place; only a hidden leftover remains.
                warn!(file = %tmp.display(), error = %e, "cannot remove the temporary name of an import file");
            }
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(e) => e,
    };
    match renameat_with(CWD, tmp, CWD, target, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(std::io::ErrorKind::AlreadyExists.into()),
        Err(rename_error) => {
            // Neither on this filesystem: look, then rename (a clash with another writer
            // choosing the same random name at the same instant stays possible here).
            warn!(folder = %tmp.parent().unwrap_or(Path::new(".")).display(), link_error = %link_error, rename_error = %rename_error, "the drop folder supports neither hard links nor exclusive renames; import file names are checked, then renamed");
            if fs::symlink_metadata(target).is_ok() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(tmp, target)
        }
    }
}

fn base36(mut n: u128, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS.get((n % 36) as usize).copied().unwrap_or(b'0');
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

impl LaneAgent for LegacyAgent {
    fn context(&self) -> &LaneContext {
        &self.context
    }
    fn gather(&self) -> (usize, Duration) {
        (self.batch, GATHER)
    }
    fn deliver(&self, lease: &Lease) -> Result<String, DeliveryError> {
        self.attempt(lease).map(|file| file.display().to_string())
    }
    fn deliver_all(&self, leases: &mut [Lease]) -> Vec<Option<Result<String, DeliveryError>>> {
        if self.batch <= 1 {
            return lane::deliver_each(self, leases);
        }
        self.deliver_batches(leases)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use ccgate_ccmail::{Item, ItemBody, ItemKind, ReadOptions, SliceReader};
    use ccgate_core::{Envelope, Lane, QueueId, ReversePath};
    use ccgate_queue::{RcptState, Route, SpoolOptions};

    use super::*;

    /// Takes `From:` and `Subject:` from the message and the body as one text item;
    /// `user@legacy.test` is `user at HQ`.
    struct TestCodec;

    impl LegacyCodec for TestCodec {
        fn to_legacy(&self, raw: &[u8], _sender: &ReversePath) -> Result<Message, String> {
            let text = String::from_utf8_lossy(raw);
            let (head, body) = text.split_once("\r\n\r\n").ok_or("no body")?;
            let mut headers = vec![Header::From("Sender at HQ".into())];
            for line in head.lines() {
                if let Some(s) = line.strip_prefix("Subject: ") {
                    headers.push(Header::Subject(s.to_owned()));
                }
                if line.starts_with("X-Poison:") {
                    return Err("poisoned on purpose".into());
                }
            }
            Ok(Message {
                headers,
                items: vec![Item {
                    kind: ItemKind::Text,
                    title: String::new(),
                    stamp: None,
                    body: ItemBody::Text(body.to_owned()),
                }],
            })
        }

        fn recipient(&self, rcpt: &EmailAddress) -> Option<String> {
            Some(format!("{} at HQ", rcpt.local()))
        }
    }

    fn setup(import: Option<(&str, u64)>) -> (tempfile::TempDir, Arc<Spool>, LegacyAgent) {
        setup_with(import, SpoolOptions::default())
    }

    fn setup_with(
        import: Option<(&str, u64)>,
        options: SpoolOptions,
    ) -> (tempfile::TempDir, Arc<Spool>, LegacyAgent) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(&dir.path().join("queue"), options).unwrap());
        let import = import.map(|(command, ms)| ImportCommand {
            command: command.to_owned(),
            timeout: Duration::from_millis(ms),
        });
        let agent = LegacyAgent::new(
            &dir.path().join("drop"),
            &dir.path().join("work"),
            Arc::clone(&spool),
            Arc::new(TestCodec),
            WriteOptions::default(),
            import,
            Arc::default(),
        )
        .unwrap();
        (dir, spool, agent)
    }

    fn enqueue(spool: &Spool, extra_header: &str) -> QueueId {
        let rcpts: Vec<EmailAddress> = ["jane@legacy.test", "bob@legacy.test"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let routes: Vec<Route> = rcpts
            .iter()
            .map(|r| Route::new(Lane::Legacy, r.clone()))
            .collect();
        let env = Envelope {
            sender: ReversePath::Mailbox("alice@example.org".parse().unwrap()),
            recipients: rcpts,
        };
        let body = format!("Subject: [EXT] hello [1]\r\n{extra_header}\r\nhi there\r\n");
        spool
            .enqueue(&env, &routes, body.as_bytes(), SystemTime::now())
            .unwrap()
    }

    fn states(spool: &Spool, id: QueueId) -> Vec<RcptState> {
        match spool.show(id, SystemTime::now()) {
            Ok(detail) => detail.info.recipients.iter().map(|r| r.state).collect(),
            Err(_) => vec![],
        }
    }

    /// Failed for good: the message is gone or final, and a bounce (null sender) waits for
    /// routing.
    fn assert_bounced(spool: &Spool, got: &[RcptState]) {
        assert!(got.iter().all(|s| *s == RcptState::Failed), "{got:?}");
        let bounces = spool.unrouted(10);
        assert_eq!(bounces.len(), 1, "one bounce queued");
        assert_eq!(bounces[0].sender, ReversePath::Null);
        assert_eq!(bounces[0].recipients[0].1.to_string(), "alice@example.org");
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn writes_an_import_file_the_reader_accepts() {
        let (dir, spool, agent) = setup(None);
        let id = enqueue(&spool, "");
        assert_eq!(agent.pass(), 1);
        let dropped = files(&dir.path().join("drop"));
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        let name = dropped[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with('G') && name.ends_with(".CCM") && name.len() == 12,
            "8.3 name: {name}"
        );
        let bytes = fs::read(&dropped[0]).unwrap();
        let msgs: Vec<Message> = SliceReader::new(&bytes)
            .map(|m| m.unwrap().decode(&ReadOptions::default()).0)
            .collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            msgs[0].recipients().collect::<Vec<_>>(),
            ["jane at HQ", "bob at HQ"]
        );
        assert_eq!(
            msgs[0].subject(),
            Some("(EXT) hello (1)"),
            "ie8: never both brackets"
        );
        assert!(
            states(&spool, id)
                .iter()
                .all(|s| *s == RcptState::Delivered)
                || states(&spool, id).is_empty()
        );
    }

    #[test]
    fn import_command_exit_codes() {
        for (command, expect_dir, expect_state) in [
            ("exit 0 #", "imported", None),
            ("exit 4 #", "failed", Some(RcptState::Deferred)),
            ("exit 1 #", "failed", Some(RcptState::Deferred)),
            ("exit 5 #", "failed", Some(RcptState::Failed)),
            ("sleep 5 #", "failed", Some(RcptState::Deferred)),
        ] {
            let (dir, spool, agent) = setup(Some((command, 300)));
            let id = enqueue(&spool, "");
            assert_eq!(agent.pass(), 1);
            assert!(
                files(&dir.path().join("drop")).is_empty(),
                "{command}: the file always leaves the drop folder"
            );
            assert_eq!(
                files(&dir.path().join("work").join(expect_dir)).len(),
                1,
                "{command}"
            );
            let got = states(&spool, id);
            match expect_state {
                None => assert!(
                    got.is_empty() || got.iter().all(|s| *s == RcptState::Delivered),
                    "{command}: {got:?}"
                ),
                Some(RcptState::Failed) => assert_bounced(&spool, &got),
                Some(state) => assert_eq!(got, vec![state, state], "{command}"),
            }
        }
    }

    #[test]
    fn the_command_gets_the_file_path_as_last_argument() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("args.log");
        let (work, spool, agent) = setup(Some((&format!("echo >{}", log.display()), 5_000)));
        enqueue(&spool, "");
        agent.pass();
        let arg = fs::read_to_string(&log).unwrap();
        assert!(
            arg.trim()
                .starts_with(&work.path().join("drop").display().to_string())
                && arg.trim().ends_with(".CCM"),
            "{arg}"
        );
    }

    fn enqueue_subject(spool: &Spool, subject: &str) -> QueueId {
        let rcpt: EmailAddress = "jane@legacy.test".parse().unwrap();
        let env = Envelope {
            sender: ReversePath::Mailbox("alice@example.org".parse().unwrap()),
            recipients: vec![rcpt.clone()],
        };
        let body = format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n");
        spool
            .enqueue(
                &env,
                &[Route::new(Lane::Legacy, rcpt)],
                body.as_bytes(),
                SystemTime::now(),
            )
            .unwrap()
    }

    #[test]
    fn a_batch_is_one_import_file_and_a_refused_batch_is_split_so_only_the_bad_message_fails() {
        // Without a command: one file holding every message of the pass.
        let (dir, spool, agent) = setup(None);
        let agent = agent.with_batch(50);
        let ids: Vec<QueueId> = (0..5)
            .map(|i| enqueue_subject(&spool, &format!("m{i}")))
            .collect();
        assert_eq!(agent.pass(), 5);
        let dropped = files(&dir.path().join("drop"));
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        let bytes = fs::read(&dropped[0]).unwrap();
        let mut subjects: Vec<String> = SliceReader::new(&bytes)
            .map(|m| m.unwrap().decode(&ReadOptions::default()).0)
            .map(|m| m.subject().unwrap_or_default().to_owned())
            .collect();
        // Queue ids made in the same millisecond need not sort by arrival: any order will do.
        subjects.sort();
        assert_eq!(subjects, ["m0", "m1", "m2", "m3", "m4"]);
        for id in ids {
            assert!(
                states(&spool, id)
                    .iter()
                    .all(|s| *s == RcptState::Delivered)
            );
        }

        // With a command that refuses (exit 5) any file holding the poison.
        let (dir, spool, agent) =
            setup(Some(("grep -q POISON \"$1\" && exit 5; exit 0 #", 10_000)));
        let agent = agent.with_batch(50);
        let good: Vec<QueueId> = (0..3)
            .map(|i| enqueue_subject(&spool, &format!("g{i}")))
            .collect();
        let bad = enqueue_subject(&spool, "POISON");
        assert_eq!(agent.pass(), 4);
        let imported = files(&dir.path().join("work/imported"));
        assert_eq!(
            imported.len(),
            3,
            "the good ones one file each: {imported:?}"
        );
        // Only the poison's own file: the refused batch file went once split.
        let failed = files(&dir.path().join("work/failed"));
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(fs::read_to_string(&failed[0]).unwrap().contains("POISON"));
        for id in good {
            let got = states(&spool, id);
            assert!(got.iter().all(|s| *s == RcptState::Delivered), "{got:?}");
        }
        assert_bounced(&spool, &states(&spool, bad));
    }

    #[test]
    fn a_timed_out_import_is_killed_with_everything_it_started() {
        let scratch = tempfile::tempdir().unwrap();
        let pid_file = scratch.path().join("child.pid");
        // The shell starts a child that would outlive it, then hangs.
        let command = format!("sleep 60 & echo $! > {}; wait #", pid_file.display());
        let (_dir, spool, agent) = setup(Some((&command, 500)));
        let id = enqueue(&spool, "");
        assert_eq!(agent.pass(), 1);
        assert_eq!(states(&spool, id), vec![RcptState::Deferred; 2]);
        let pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Gone, or a zombie waiting for init: either way no longer running.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            if stat.is_empty() || state == Some('Z') {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the import's child {pid} still runs: {stat}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_message_that_cannot_be_converted_fails_alone() {
        let (dir, spool, agent) = setup(None);
        let bad = enqueue(&spool, "X-Poison: yes\r\n");
        let good = enqueue(&spool, "");
        assert_eq!(agent.pass(), 2);
        assert_bounced(&spool, &states(&spool, bad));
        assert_eq!(
            files(&dir.path().join("drop")).len(),
            1,
            "the good one was written"
        );
        let _ = good;
    }

    /// A pass longer than the lease timeout (a slow import command, many files): each lease
    /// is renewed right before its file, so none times out while it waits its turn, and no
    /// message is imported twice. Housekeeping reaps expired leases all along, as in `run`.
    #[test]
    fn a_long_pass_renews_each_lease_before_its_file_and_imports_nothing_twice() {
        for batch in [1, 2] {
            let scratch = tempfile::tempdir().unwrap();
            let log = scratch.path().join("imported.log");
            // Each import takes 250 ms and records the subjects it imported.
            let command = format!(
                "sleep 0.25; grep '^Subject:' \"$1\" >> {}; exit 0 #",
                log.display()
            );
            let options = SpoolOptions {
                attempt_timeout: Duration::from_millis(800),
                retry: ccgate_queue::RetryPolicy {
                    retry: vec![Duration::from_millis(50)],
                    max_lifetime: Duration::from_secs(3600),
                },
                quarantine_after: 100,
                ..SpoolOptions::default()
            };
            let (_dir, spool, agent) = setup_with(Some((&command, 10_000)), options);
            let agent = agent.with_batch(batch);
            let count = 10;
            let ids: Vec<QueueId> = (0..count)
                .map(|i| enqueue_subject(&spool, &format!("m{i}")))
                .collect();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let ticker = {
                let (spool, stop) = (Arc::clone(&spool), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut timed_out = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        timed_out += spool.tick(SystemTime::now()).unwrap().timed_out.len();
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    timed_out
                })
            };
            // One pass holds every message (10 files of 250 ms at batch 1, 5 at batch 2: far
            // past the 800 ms lease); then passes until all are delivered.
            assert_eq!(
                agent.pass(),
                count,
                "batch {batch}: one pass leases them all"
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while !ids.iter().all(|id| {
                states(&spool, *id)
                    .iter()
                    .all(|s| *s == RcptState::Delivered)
            }) {
                assert!(
                    Instant::now() < deadline,
                    "batch {batch}: not all delivered"
                );
                agent.pass();
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let timed_out = ticker.join().unwrap();
            let mut subjects: Vec<String> = fs::read_to_string(&log)
                .unwrap()
                .lines()
                .map(|l| l.trim().to_owned())
                .collect();
            subjects.sort();
            let mut want: Vec<String> = (0..count).map(|i| format!("Subject: m{i}")).collect();
            want.sort();
            assert_eq!(
                subjects, want,
                "batch {batch}: each message imported exactly once"
            );
            assert_eq!(timed_out, 0, "batch {batch}: no lease timed out");
        }
    }

    /// An import file never replaces another: a name already taken (here made on purpose,
    /// as another writer could at the same moment) is skipped for the next one.
    #[test]
    fn an_import_file_name_already_taken_is_never_overwritten() {
        let (dir, spool, agent) = setup(None);
        enqueue_subject(&spool, "mine");
        let lease = spool
            .lease("legacy", 1, SystemTime::now())
            .unwrap()
            .pop()
            .unwrap();
        let seed = lease.queue_id.to_u128() ^ u128::from(lease.id.0).rotate_left(64);
        let drop_dir = dir.path().join("drop");
        let first = drop_dir.join(import_name(seed));
        fs::write(&first, b"someone else's file").unwrap();
        let written = agent.write_file(&lease, &[b"my file"]).unwrap();
        assert_eq!(written, drop_dir.join(import_name(next_seed(seed))));
        assert_eq!(fs::read(&first).unwrap(), b"someone else's file");
        assert_eq!(fs::read(&written).unwrap(), b"my file");
        let mut both = vec![first, written];
        both.sort();
        assert_eq!(files(&drop_dir), both, "no temporary name left");
    }
}
