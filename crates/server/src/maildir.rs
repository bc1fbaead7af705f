//! The `modern` lane's embedded next hop: a Maildir (`maildir:PATH`).
//!
//! Folders are created 0700 and messages 0600. One file per delivery attempt in `new/`, written to `tmp/`, fsynced, renamed, and the folder
//! fsynced, before the recipients are reported delivered. `Return-Path:` and one
//! `Delivered-To:` per recipient are added on top, as a local delivery agent does.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use ccgate_core::Lane;
use ccgate_queue::{DeliveryError, DeliveryResult, FailureScope, Lease, Spool};
use tokio::sync::watch;

use crate::ServerError;
use crate::lane::{self, LaneAgent, LaneContext};
use crate::metrics::Metrics;

/// How many messages one pass leases.
const BATCH: usize = 32;

/// Delivers one lane of the spool into a Maildir.
#[derive(Debug)]
pub struct MaildirAgent {
    root: PathBuf,
    context: LaneContext,
    hostname: String,
    seq: AtomicU64,
}

impl MaildirAgent {
    /// Creates `root/{tmp,new,cur}` if missing.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the folders cannot be created.
    pub fn new(
        root: &Path,
        lane: Lane,
        spool: Arc<Spool>,
        hostname: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        for sub in ["tmp", "new", "cur"] {
            let dir = root.join(sub);
            crate::private::create_dirs(&dir)
                .map_err(|source| ServerError::Io { path: dir, source })?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            context: LaneContext {
                lane,
                relay: "maildir",
                batch: BATCH,
                spool,
                metrics,
            },
            hostname: hostname.to_owned(),
            seq: AtomicU64::new(0),
        })
    }

    /// Delivers until `stop` fires; a lease in hand when it fires is finished first.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        lane::run(Arc::new(self), stop).await;
    }

    fn write(&self, lease: &Lease) -> DeliveryResult {
        let transient = |what: &str, e: &dyn std::fmt::Display| {
            DeliveryError::transient(
                FailureScope::Destination,
                format!("maildir {}: {what}: {e}", self.root.display()),
            )
        };
        let body = self.context.spool.lease_body(lease).map_err(|e| {
            DeliveryError::transient(
                FailureScope::Message,
                format!("cannot read the queued message: {e}"),
            )
        })?;
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{secs}.{}_{}_{seq}.{}",
            lease.queue_id,
            lease.id,
            self.hostname.replace(['/', ':'], "_")
        );
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        let mut head = format!("Return-Path: <{}>\r\n", lease.sender);
        for r in &lease.recipients {
            head.push_str(&format!("Delivered-To: {}\r\n", r.address));
        }
        let write = || -> std::io::Result<()> {
            let mut file = crate::private::create_file(&tmp)?;
            file.write_all(head.as_bytes())?;
            file.write_all(&body)?;
            file.sync_all()?;
            fs::rename(&tmp, &new)?;
            File::open(self.root.join("new"))?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            transient("write failed", &e)
        })
    }
}

impl LaneAgent for MaildirAgent {
    fn context(&self) -> &LaneContext {
        &self.context
    }
    fn deliver(&self, lease: &Lease) -> Result<String, DeliveryError> {
        self.write(lease)
            .map(|()| self.root.join("new").display().to_string())
    }
}
