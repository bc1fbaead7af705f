//! Legacy pickup: export files written by the post office into the pickup folder.
//!
//! Every `poll_interval` the folder is listed; a file is taken once its size and modification
//! time have not changed since the previous listing (the post office has finished writing
//! it). It is read with the streaming reader; each good message is turned into an envelope
//! and an RFC 5322 body by the [`PickupCodec`] (conversion and routing), checked against the
//! [`Ledger`] by its Message-ID, queued durably, then recorded in the ledger. A broken message
//! (or one that cannot be converted) is set aside in `quarantine/` with its raw bytes and the
//! reason; the other messages of the file go on. When every message is queued or set aside the
//! file moves to `archive/`. If the spool fails the file stays where it is and is read again
//! at the next poll; the ledger keeps that from queueing anything twice.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ccgate_ccmail::{Message, ReadError, ReadOptions, Reader};
use ccgate_core::{Envelope, QueueId};
use ccgate_queue::{Route, Spool};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ServerError;
use crate::ledger::Ledger;
use crate::metrics::{Event as MetricEvent, Metrics};
use crate::shutdown::stopped;

/// A legacy message made ready for the spool.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Rewritten sender and the recipients as received (SMTP forms).
    pub envelope: Envelope,
    /// One route per envelope recipient.
    pub routes: Vec<Route>,
    /// The RFC 5322 message.
    pub body: Vec<u8>,
    /// Its identity for the ledger (the deterministic Message-ID).
    pub message_id: String,
}

/// Conversion and routing of picked-up legacy messages.
pub trait PickupCodec: Send + Sync + 'static {
    /// The message ready for the spool, or why it cannot be taken (it is then quarantined).
    ///
    /// # Errors
    /// A sentence saying why.
    fn accept(&self, message: &Message, raw_len: u64) -> Result<Accepted, String>;
}

/// What one pass over the folder did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PickupReport {
    /// Files archived.
    pub files: usize,
    /// Messages queued.
    pub queued: usize,
    /// Messages already in the ledger (not queued again).
    pub duplicates: usize,
    /// Messages set aside.
    pub quarantined: usize,
}

/// Watches the pickup folder.
pub struct PickupAgent {
    pickup_dir: PathBuf,
    archive_dir: PathBuf,
    quarantine_dir: PathBuf,
    spool: Arc<Spool>,
    codec: Arc<dyn PickupCodec>,
    ledger: Arc<Ledger>,
    read: ReadOptions,
    poll: Duration,
    metrics: Arc<Metrics>,
    seen: std::sync::Mutex<HashMap<PathBuf, (u64, SystemTime)>>,
}

impl std::fmt::Debug for PickupAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PickupAgent")
            .field("pickup_dir", &self.pickup_dir)
            .finish()
    }
}

impl PickupAgent {
    /// An agent on `pickup_dir`, reading with `read` every `poll`; `work_dir` gets `archive/`
    /// and `quarantine/`.
    ///
    /// # Errors
    /// [`ServerError::Io`] when a folder cannot be created.
    pub fn new(
        pickup_dir: &Path,
        work_dir: &Path,
        spool: Arc<Spool>,
        codec: Arc<dyn PickupCodec>,
        ledger: Arc<Ledger>,
        (read, poll): (ReadOptions, Duration),
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let archive_dir = work_dir.join("archive");
        let quarantine_dir = work_dir.join("quarantine");
        for dir in [pickup_dir, &archive_dir, &quarantine_dir] {
            fs::create_dir_all(dir).map_err(|source| ServerError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        Ok(Self {
            pickup_dir: pickup_dir.to_path_buf(),
            archive_dir,
            quarantine_dir,
            spool,
            codec,
            ledger,
            read,
            poll,
            metrics,
            seen: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Polls until `stop` fires.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let agent = Arc::new(self);
        loop {
            let worker = Arc::clone(&agent);
            match tokio::task::spawn_blocking(move || worker.pass()).await {
                Ok(Ok(report)) if report != PickupReport::default() => {
                    info!(?report, "legacy pickup")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "legacy pickup failed; retrying at the next poll"),
                Err(e) => warn!(error = %e, "legacy pickup task failed"),
            }
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(agent.poll) => {}
            }
        }
    }

    /// One listing of the folder: takes every file that has stopped changing.
    ///
    /// # Errors
    /// [`ServerError`] when the folder cannot be listed or the spool fails (the file concerned
    /// stays in place).
    pub fn pass(&self) -> Result<PickupReport, ServerError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ServerError::Io { path, source }
        };
        let mut report = PickupReport::default();
        let mut names: Vec<PathBuf> = fs::read_dir(&self.pickup_dir)
            .map_err(io(&self.pickup_dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        names.sort();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut now_seen = HashMap::new();
        for path in names {
            let meta = fs::metadata(&path).map_err(io(&path))?;
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let stable = seen.get(&path) == Some(&stamp);
            now_seen.insert(path.clone(), stamp);
            if !stable {
                continue;
            }
            self.take_file(&path, &mut report)?;
            now_seen.remove(&path);
        }
        *seen = now_seen;
        Ok(report)
    }

    fn take_file(&self, path: &Path, report: &mut PickupReport) -> Result<(), ServerError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ServerError::Io { path: p, source }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = File::open(path).map_err(io(path))?;
        for result in Reader::new(file, self.read.clone()) {
            match result {
                Ok(read) => {
                    let line = read.position.line;
                    match self.codec.accept(&read.message, read.len) {
                        Ok(accepted) => {
                            if self.ledger.contains(&accepted.message_id) {
                                report.duplicates += 1;
                                info!(file = %name, line, message_id = %accepted.message_id, "already taken in; not queued again");
                                continue;
                            }
                            let id = QueueId::generate();
                            self.spool.enqueue_with_id(
                                id,
                                &accepted.envelope,
                                &accepted.routes,
                                &accepted.body,
                                SystemTime::now(),
                            )?;
                            self.ledger.insert(&accepted.message_id)?;
                            report.queued += 1;
                            self.metrics.count(MetricEvent::Accepted, "legacy", 1);
                            info!(queue_id = %id, file = %name, line, from = %accepted.envelope.sender, nrcpt = accepted.envelope.recipients.len(), "queued from the legacy side");
                            self.metrics.trace(crate::TraceEvent::accepted(
                                "legacy",
                                &id,
                                &accepted.envelope,
                                &accepted.routes,
                                (&accepted.body, accepted.body.len() as u64),
                                &format!("{name}:{line}, "),
                            ));
                        }
                        Err(reason) => {
                            let raw = format!("{:#?}", read.message);
                            self.quarantine(&name, line, &reason, raw.as_bytes())?;
                            report.quarantined += 1;
                        }
                    }
                }
                Err(ReadError::Parse { error, raw }) => {
                    self.quarantine(
                        &name,
                        error.position.line,
                        &format!("{name}:{}: {}", error.position, error.kind),
                        &raw,
                    )?;
                    report.quarantined += 1;
                }
                Err(ReadError::Io(e)) => {
                    return Err(ServerError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
                Err(other) => return Err(ServerError::Settings(other.to_string())),
            }
        }
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let target = self.archive_dir.join(format!("{name}.{stamp}"));
        fs::rename(path, &target).map_err(io(path))?;
        File::open(&self.archive_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.archive_dir))?;
        File::open(&self.pickup_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.pickup_dir))?;
        report.files += 1;
        Ok(())
    }

    /// Sets a message aside: its raw bytes and a `.err` file with the reason.
    fn quarantine(
        &self,
        file: &str,
        line: u64,
        reason: &str,
        raw: &[u8],
    ) -> Result<(), ServerError> {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let base = self
            .quarantine_dir
            .join(format!("{file}.line{line}.{stamp}"));
        let err_path = base.with_extension(format!(
            "{}.err",
            base.extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let write = |path: &Path, bytes: &[u8]| -> Result<(), ServerError> {
            let mut f = File::create(path).map_err(|source| ServerError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|source| ServerError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        };
        self.metrics.count(MetricEvent::Quarantined, "legacy", 1);
        write(&base, raw)?;
        write(&err_path, format!("{reason}\n").as_bytes())?;
        warn!(file, line, reason, quarantined = %base.display(), "legacy message set aside");
        self.metrics
            .trace([crate::TraceEvent::quarantined(file, line, reason)]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ccgate_core::{EmailAddress, ReversePath};
    use ccgate_queue::SpoolOptions;

    use super::*;

    /// `Name at HQ` is `name@legacy.test`; the Message-ID is the subject.
    struct TestCodec;

    impl PickupCodec for TestCodec {
        fn accept(&self, message: &Message, _raw_len: u64) -> Result<Accepted, String> {
            let smtp = |legacy: &str| -> Result<EmailAddress, String> {
                let name = legacy
                    .split(" at ")
                    .next()
                    .unwrap_or_default()
                    .to_lowercase();
                format!("{name}@legacy.test")
                    .parse()
                    .map_err(|e| format!("{e}"))
            };
            let recipients: Vec<EmailAddress> =
                message.recipients().map(smtp).collect::<Result<_, _>>()?;
            let routes = recipients
                .iter()
                .map(|r| Route::new("modern", r.clone()))
                .collect();
            let sender = ReversePath::Mailbox(smtp(message.from().ok_or("no sender")?)?);
            Ok(Accepted {
                envelope: Envelope { sender, recipients },
                routes,
                body: b"Subject: x\r\n\r\nx\r\n".to_vec(),
                message_id: message.subject().unwrap_or_default().to_owned(),
            })
        }
    }

    const FILE: &[u8] = b"Message:\r\nFrom: Ann at HQ\r\nTo: Bob at HQ\r\nSubject: one\r\nContents:\r\nText item:\r\nhi\r\n\
Message:\r\nFrom: Ann at HQ\r\nTo: Bob at HQ\r\nText item:\r\nno contents line\r\n\
Message:\r\nFrom: Ann at HQ\r\nTo: Cy at HQ\r\nSubject: two\r\nContents:\r\nText item:\r\nhi\r\n";

    #[test]
    fn takes_stable_files_quarantines_broken_messages_and_never_queues_twice() {
        let dir = tempfile::tempdir().unwrap();
        let spool =
            Arc::new(Spool::open(&dir.path().join("queue"), SpoolOptions::default()).unwrap());
        let ledger = Arc::new(Ledger::open(&dir.path().join("ledger")).unwrap());
        let pickup = dir.path().join("pickup");
        let agent = PickupAgent::new(
            &pickup,
            &dir.path().join("work"),
            spool,
            Arc::new(TestCodec),
            ledger,
            (ReadOptions::default(), Duration::from_millis(10)),
            Arc::default(),
        )
        .unwrap();
        fs::write(pickup.join("EXPORT.TXT"), FILE).unwrap();
        fs::write(pickup.join(".partial"), b"Message:\r\n").unwrap();
        assert_eq!(
            agent.pass().unwrap(),
            PickupReport::default(),
            "a file is taken once it stops changing"
        );
        let report = agent.pass().unwrap();
        assert_eq!(
            report,
            PickupReport {
                files: 1,
                queued: 2,
                duplicates: 0,
                quarantined: 1
            }
        );
        assert!(!pickup.join("EXPORT.TXT").exists(), "archived");
        assert!(
            pickup.join(".partial").exists(),
            "hidden files are left alone"
        );
        assert_eq!(
            fs::read_dir(dir.path().join("work/archive"))
                .unwrap()
                .count(),
            1
        );
        let quarantined: Vec<String> = fs::read_dir(dir.path().join("work/quarantine"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            quarantined.len(),
            2,
            "raw bytes and reason: {quarantined:?}"
        );
        let reason_file = quarantined.iter().find(|n| n.ends_with(".err")).unwrap();
        let reason =
            fs::read_to_string(dir.path().join("work/quarantine").join(reason_file)).unwrap();
        assert!(
            reason.contains("EXPORT.TXT:11:1: missing 'Contents:'"),
            "{reason}"
        );
        // The same export again (a replay, or a crash before archiving): nothing queued twice.
        fs::write(pickup.join("EXPORT.TXT"), FILE).unwrap();
        agent.pass().unwrap();
        let again = agent.pass().unwrap();
        assert_eq!((again.queued, again.duplicates), (0, 2));
    }
}
