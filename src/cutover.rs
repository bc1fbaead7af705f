//! The console's side in the binary: the [`DirectoryEditor`] that carries out a cutover (the
//! directory CSV rewritten, the directory reloaded, held mail released), the admin token, and
//! the facts the overview's health table shows.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, bail};
use ccgate_console::{CutoverOutcome, CutoverReport, CutoverRequest, DirectoryEditor};
use ccgate_queue::Spool;
use ccgate_server::{DirectoryRouting, Metrics};
use tracing::{info, warn};

use crate::config::{Config, NextHop};
use crate::directory_source;

/// Reads the token of `[admin] token_file` (its first line). A listener beyond loopback
/// without a token is refused: anyone on the network could act. A configured file that does
/// not exist yet is made with a random token (mode 0600) and its path logged, as a container
/// image needs: the administrator reads it there, or mounts a secret over it.
///
/// # Errors
/// The file cannot be read, made or is too short; a non-loopback listener without a token.
pub fn admin_token(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(path) = &config.admin_token_file else {
        if !config.admin_listen.ip().is_loopback() {
            bail!(
                "admin.listen {} is not a loopback address: set [admin] token_file (a file holding a secret token), or listen on 127.0.0.1",
                config.admin_listen
            );
        }
        return Ok(None);
    };
    if !path.exists() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let token = crate::reply_keys::hex(&crate::reply_keys::random_key()?);
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| {
                file.write_all(format!("{token}\n").as_bytes())?;
                file.sync_all()
            });
        match made {
            Ok(()) => {
                info!(file = %path.display(), "admin token made (read it from the file; it is never logged)")
            }
            // Another process made it first: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "admin.token_file {}: cannot create",
                    path.display()
                )));
            }
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("admin.token_file {}: cannot read", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.len() < 16 {
        bail!(
            "admin.token_file {}: the token (its first line) must be at least 16 characters",
            path.display()
        );
    }
    Ok(Some(token))
}

/// What the overview lists about the configuration.
pub fn facts(config: &Config) -> Vec<(String, String)> {
    let hop = match &config.modern.next_hop {
        NextHop::Maildir(p) => format!("maildir {}", p.display()),
        NextHop::Smtp { host, port } => format!("smtp://{host}:{port}"),
    };
    let mut facts = vec![
        ("Next hop (modern)".to_owned(), hop),
        (
            "Legacy drop folder".to_owned(),
            config.legacy.drop_dir.display().to_string(),
        ),
        (
            "Legacy pickup folder".to_owned(),
            config.legacy.pickup_dir.display().to_string(),
        ),
        (
            "Directory source".to_owned(),
            directory_source::origin(config),
        ),
    ];
    if let Some(command) = &config.legacy.import_command {
        facts.push(("Import command".to_owned(), format!("{command:?}")));
    }
    facts
}

/// Carries out cutovers for the console.
pub struct Editor {
    /// The configuration in service (SIGHUP may change its `[directory]`).
    pub config: Arc<Mutex<Config>>,
    /// The router and its directory handle.
    pub routing: Arc<DirectoryRouting>,
    /// The spool (held mail is released there).
    pub spool: Arc<Spool>,
    /// Directory load counters.
    pub metrics: Arc<Metrics>,
}

impl DirectoryEditor for Editor {
    fn set_state(&self, request: &CutoverRequest) -> CutoverReport {
        let config = self
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let changes = match crate::directory_edit::set_state(&config, &request.names, request.state)
        {
            Ok(changes) => changes,
            Err(e) => {
                warn!(who = %request.who, error = %format!("{e:#}"), "cutover refused");
                return CutoverReport {
                    people: (request.names.iter())
                        .map(|n| CutoverOutcome {
                            name: n.clone(),
                            result: Err("not changed".to_owned()),
                        })
                        .collect(),
                    released: 0,
                    error: Some(format!("{e:#}")),
                };
            }
        };
        for c in &changes {
            match &c.result {
                Ok(what) => info!(who = %request.who, person = %c.name, change = %what, "cutover"),
                Err(why) => {
                    warn!(who = %request.who, person = %c.name, reason = %why, "cutover: not changed")
                }
            }
        }
        let mut report = CutoverReport {
            people: changes
                .into_iter()
                .map(|c| CutoverOutcome {
                    name: c.name,
                    result: c.result,
                })
                .collect(),
            released: 0,
            error: None,
        };
        match directory_source::load(&config) {
            Ok(Ok(directory)) => {
                let entries = directory.len();
                self.routing.handle().swap(directory);
                self.metrics.directory_loaded(Ok(entries as u64));
                info!(entries, "directory reloaded after a cutover");
            }
            Ok(Err(invalid)) => {
                self.metrics.directory_loaded(Err(()));
                report.error = Some(format!(
                    "the directory was changed but does not load:\n{invalid}"
                ));
                return report;
            }
            Err(e) => {
                self.metrics.directory_loaded(Err(()));
                report.error = Some(format!(
                    "the directory was changed but cannot be read: {e:#}"
                ));
                return report;
            }
        }
        match self.routing.release(&self.spool) {
            Ok(n) => {
                report.released = n;
                if n > 0 {
                    info!(messages = n, "held cutover mail routed again");
                }
            }
            Err(e) => report.error = Some(format!("held mail not released: {e}")),
        }
        report
    }

    fn describe(&self) -> String {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        directory_source::origin(&config)
    }
}

/// Records a message `ccgate replay` queued itself (no gateway running) in the message trace.
pub fn trace_replayed(
    config: &Config,
    id: &ccgate_core::QueueId,
    envelope: &ccgate_core::Envelope,
    routes: &[ccgate_queue::Route],
    body: &[u8],
) {
    if config.trace_size > 0 {
        let size = body.len() as u64;
        let events =
            ccgate_server::TraceEvent::accepted("replay", id, envelope, routes, (body, size), "");
        if let Err(e) = ccgate_server::TraceLog::append(&trace_dir(&config.data_dir), &events) {
            tracing::warn!(error = %e, "cannot write the message trace");
        }
    }
}

/// The trace folder of the data folder.
pub fn trace_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("trace")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_missing_token_file_is_made_once_private_and_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ccgate.toml");
        let config = Config::parse(
            "[admin]\nlisten = \"0.0.0.0:8025\"\ntoken_file = \"admin.token\"\n",
            &file,
        )
        .unwrap();
        let token = admin_token(&config).unwrap().unwrap();
        assert!(token.len() >= 16, "{token}");
        let path = dir.path().join("admin.token");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(admin_token(&config).unwrap().unwrap(), token, "kept");
        let open = Config::parse("[admin]\nlisten = \"0.0.0.0:8025\"\n", &file).unwrap();
        assert!(
            admin_token(&open).is_err(),
            "beyond loopback a token is required"
        );
    }
}
