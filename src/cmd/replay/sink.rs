//! Where replayed messages go: nowhere (`--dry-run`), the spool itself, or a running
//! gateway's pickup folder and SMTP listener; the ledger that makes replays idempotent.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use ccgate_core::EmailAddress;
use ccgate_queue::{QueueError, Spool};
use ccgate_server::Ledger;

use super::handoff::SmtpClient;
use crate::config::Config;

pub(super) fn ledger_path(config: &Config) -> PathBuf {
    config.data_dir.join("ledger.log")
}

/// The ledger key of one recipient of an RFC 5322 message.
pub(super) fn recipient_key(identity: &str, rcpt: &EmailAddress) -> String {
    format!("{identity} {}", rcpt.to_lowercase_key())
}

// ---------------------------------------------------------------------------------------------
// Where messages go.

/// The running gateway's SMTP listener, once tried.
pub(super) enum Listener {
    NotTried,
    Open(SmtpClient),
    Unusable(String),
}

/// Where replayed messages go.
pub(super) enum Sink {
    /// `--dry-run`: nothing is written; `seen` starts as the ledger's keys.
    DryRun { seen: HashSet<String> },
    /// No gateway runs: this process owns the spool.
    Direct { spool: Box<Spool>, ledger: Ledger },
    /// `ccgate run` owns the spool.
    Running {
        ledger: Ledger,
        /// The spool's folder and options, for messages handed to the owner whole
        /// ([`ccgate_queue::submit`]).
        spool: Box<(PathBuf, ccgate_queue::SpoolOptions)>,
        pickup_dir: PathBuf,
        smtp_addr: Option<SocketAddr>,
        hostname: String,
        listener: Listener,
    },
}

pub(super) fn open_sink(config: &Config, err: &mut impl Write) -> anyhow::Result<Sink> {
    fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("{}: cannot create folder", config.data_dir.display()))?;
    let spool_dir = ccgate_queue::spool_dir(&config.data_dir);
    let ledger = || {
        let path = ledger_path(config);
        Ledger::open(&path).with_context(|| format!("{}: cannot open the ledger", path.display()))
    };
    match Spool::open(&spool_dir, crate::cmd::queue::spool_options(config)) {
        Ok(spool) => {
            for finding in spool.recovery_report().findings() {
                writeln!(err, "ccgate: warning: spool recovery: {finding}")?;
            }
            let ledger = ledger()?;
            let adopted = ledger
                .adopt(&spool.origins())
                .context("cannot complete the ledger from the spool")?;
            if adopted > 0 {
                writeln!(
                    err,
                    "ccgate: the ledger lacked {adopted} key(s) of messages already queued (a \
                     crash before they were recorded): added, those are not queued again"
                )?;
            }
            Ok(Sink::Direct {
                spool: Box::new(spool),
                ledger,
            })
        }
        Err(QueueError::Locked { .. }) => {
            writeln!(
                err,
                "ccgate: the spool is owned by a running `ccgate run`: legacy files go through \
                 its pickup folder, RFC 5322 messages through its SMTP listener (our users' mail \
                 to outside addresses through its spool's control folder)"
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
                spool: Box::new((spool_dir, crate::cmd::queue::spool_options(config))),
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
    pub(super) fn seen(&self, key: &str) -> bool {
        match self {
            Self::DryRun { seen } => seen.contains(key),
            Self::Direct { ledger, .. } | Self::Running { ledger, .. } => ledger.contains(key),
        }
    }

    pub(super) fn record(&mut self, key: &str) -> anyhow::Result<()> {
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
    pub(super) fn finish(self) -> anyhow::Result<()> {
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
