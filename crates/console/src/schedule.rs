//! Cutovers scheduled for a later time, kept on disk so that a restart (an upgrade, a crash, a
//! reboot of the host) does not forget them.
//!
//! The list lives in one JSON file in the data folder (`cutovers.json`), rewritten whole on
//! every change: a temporary file, fsync, rename over the old one, fsync of the folder. A
//! cutover is removed from the file only after it has run, so a crash while it runs runs it
//! again at the next start; that is safe, since moving people to the state they are in changes
//! nothing and releasing held mail twice finds none the second time. One whose time passed while
//! the gateway was down runs as soon as it is back, and the log says how late.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ccgate_router::State as PersonState;
use serde::{Deserialize, Serialize};

use crate::cutover::CutoverRequest;

/// The file's name in the data folder.
pub const FILE_NAME: &str = "cutovers.json";

/// A cutover waiting for its time.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Its number, for cancelling.
    pub id: u64,
    /// When (Unix seconds).
    pub at: u64,
    /// What.
    pub request: CutoverRequest,
    /// True from the moment it starts: it can no longer be cancelled.
    pub running: bool,
}

/// One entry as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    id: u64,
    at: u64,
    state: String,
    who: String,
    names: Vec<String>,
}

/// The file as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    version: u32,
    cutovers: Vec<Stored>,
}

/// Why the list could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a list this version can read.
    #[error("{path}: not a list of scheduled cutovers: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The scheduled cutovers, in memory and (with a file) on disk.
#[derive(Debug, Default)]
pub struct Schedule {
    file: Option<PathBuf>,
    entries: Mutex<Vec<Scheduled>>,
    /// The last id given: ids are never reused within a run (a cancelled entry's timer may
    /// still be sleeping, and a stale Cancel form may still name it).
    last_id: std::sync::atomic::AtomicU64,
}

impl Schedule {
    /// The list kept in `file` (`None`: in memory only, for tests), read from it when it
    /// exists.
    ///
    /// # Errors
    /// [`ScheduleError`] when the file exists but cannot be read or parsed; the file is left as
    /// it is (nothing is scheduled from it, nothing overwrites it).
    pub fn open(file: Option<PathBuf>) -> Result<Self, ScheduleError> {
        let entries = match &file {
            Some(path) => read(path)?,
            None => Vec::new(),
        };
        let last_id = entries.iter().map(|s| s.id).max().unwrap_or(0);
        Ok(Self {
            file,
            entries: Mutex::new(entries),
            last_id: std::sync::atomic::AtomicU64::new(last_id),
        })
    }

    /// A schedule that neither reads nor writes a file (the file could not be read: it is left
    /// untouched for a person to look at).
    pub fn unsaved() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Scheduled>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every entry, soonest first.
    pub fn entries(&self) -> Vec<Scheduled> {
        let mut all = self.lock().clone();
        all.sort_by_key(|s| (s.at, s.id));
        all
    }

    /// Adds `request` at `at` and writes the list; returns its entry.
    ///
    /// # Errors
    /// [`ScheduleError::Io`]: the list is left as it was, in memory and on disk.
    pub fn add(&self, at: u64, request: CutoverRequest) -> Result<Scheduled, ScheduleError> {
        let mut entries = self.lock();
        let id = self
            .last_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(1);
        let entry = Scheduled {
            id,
            at,
            request,
            running: false,
        };
        entries.push(entry.clone());
        if let Err(e) = self.save(&entries) {
            entries.retain(|s| s.id != id);
            return Err(e);
        }
        Ok(entry)
    }

    /// Removes entry `id` unless it is running; `Ok(None)` when there is no such entry.
    ///
    /// # Errors
    /// [`ScheduleError::Io`]: the entry stays.
    pub fn cancel(&self, id: u64) -> Result<Option<Result<Scheduled, Scheduled>>, ScheduleError> {
        let mut entries = self.lock();
        let Some(pos) = entries.iter().position(|s| s.id == id) else {
            return Ok(None);
        };
        let entry = entries.remove(pos);
        if entry.running {
            entries.insert(pos, entry.clone());
            return Ok(Some(Err(entry)));
        }
        if let Err(e) = self.save(&entries) {
            entries.insert(pos, entry);
            return Err(e);
        }
        Ok(Some(Ok(entry)))
    }

    /// Marks entry `id` (due at `at`) as running; `None` when it was cancelled meanwhile.
    pub fn start(&self, id: u64, at: u64) -> Option<Scheduled> {
        let mut entries = self.lock();
        let entry = entries.iter_mut().find(|s| s.id == id && s.at == at)?;
        entry.running = true;
        Some(entry.clone())
    }

    /// Removes entry `id` after it ran.
    ///
    /// # Errors
    /// [`ScheduleError::Io`]: it stays in the file and runs again at the next start (harmless).
    pub fn done(&self, id: u64) -> Result<(), ScheduleError> {
        let mut entries = self.lock();
        entries.retain(|s| s.id != id);
        self.save(&entries)
    }

    fn save(&self, entries: &[Scheduled]) -> Result<(), ScheduleError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let stored = StoredFile {
            version: 1,
            cutovers: entries
                .iter()
                .map(|s| Stored {
                    id: s.id,
                    at: s.at,
                    state: s.request.state.to_string(),
                    who: s.request.who.clone(),
                    names: s.request.names.clone(),
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&stored).map_err(|e| ScheduleError::Format {
            path: path.clone(),
            why: e.to_string(),
        })?;
        text.push(b'\n');
        write_atomic(path, &text).map_err(|source| ScheduleError::Io {
            path: path.clone(),
            source,
        })
    }
}

fn read(path: &Path) -> Result<Vec<Scheduled>, ScheduleError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ScheduleError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let format = |why: String| ScheduleError::Format {
        path: path.to_owned(),
        why,
    };
    let stored: StoredFile = serde_json::from_slice(&text).map_err(|e| format(e.to_string()))?;
    if stored.version != 1 {
        return Err(format(format!(
            "version {} (this gateway reads 1)",
            stored.version
        )));
    }
    stored
        .cutovers
        .into_iter()
        .map(|s| {
            let state: PersonState = s
                .state
                .parse()
                .map_err(|_| format(format!("cutover {}: state {:?}", s.id, s.state)))?;
            Ok(Scheduled {
                id: s.id,
                at: s.at,
                request: CutoverRequest {
                    names: s.names,
                    state,
                    who: s.who,
                },
                running: false,
            })
        })
        .collect()
}

/// Writes `path` whole or not at all: a 0600 temporary file beside it, fsync, rename, fsync of
/// the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn request(name: &str) -> CutoverRequest {
        CutoverRequest {
            names: vec![name.to_owned(), "Doe, Jane".to_owned()],
            state: PersonState::Migrated,
            who: "ops@127.0.0.1".to_owned(),
        }
    }

    #[test]
    fn the_list_survives_a_reopen_and_a_cancel_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        let schedule = Schedule::open(Some(file.clone())).unwrap();
        let a = schedule.add(2_000_000_000, request("Lee, Pat")).unwrap();
        let b = schedule.add(1_900_000_000, request("Roe, Max")).unwrap();
        assert_ne!(a.id, b.id);
        let again = Schedule::open(Some(file.clone())).unwrap().entries();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].at, 1_900_000_000, "soonest first");
        assert_eq!(again[0].request.names, ["Roe, Max", "Doe, Jane"]);
        assert_eq!(again[0].request.state, PersonState::Migrated);
        assert_eq!(again[0].request.who, "ops@127.0.0.1");
        assert!(matches!(schedule.cancel(a.id).unwrap(), Some(Ok(_))));
        assert!(schedule.cancel(a.id).unwrap().is_none());
        // A new entry never takes a cancelled one's id.
        let c = schedule.add(2_100_000_000, request("New, One")).unwrap();
        assert!(c.id > b.id && c.id != a.id);
        assert!(matches!(schedule.cancel(c.id).unwrap(), Some(Ok(_))));
        let again = Schedule::open(Some(file.clone())).unwrap().entries();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, b.id);
        // A running cutover cannot be cancelled; once done it is gone from the file.
        assert!(
            schedule.start(b.id, b.at + 1).is_none(),
            "another time: not this entry"
        );
        assert!(schedule.start(b.id, b.at).is_some());
        assert!(matches!(schedule.cancel(b.id).unwrap(), Some(Err(_))));
        schedule.done(b.id).unwrap();
        assert!(
            Schedule::open(Some(file.clone()))
                .unwrap()
                .entries()
                .is_empty()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_file_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        std::fs::write(&file, b"{\"version\":1,\"cutovers\":[{\"id\":1,").unwrap();
        let err = Schedule::open(Some(file.clone())).unwrap_err();
        assert!(err.to_string().contains("cutovers.json"), "{err}");
        std::fs::write(
            &file,
            b"{\"version\":1,\"cutovers\":[{\"id\":1,\"at\":5,\"state\":\"gone\",\"who\":\"x\",\"names\":[\"a\"]}]}",
        )
        .unwrap();
        let err = Schedule::open(Some(file.clone())).unwrap_err();
        assert!(err.to_string().contains("state \"gone\""), "{err}");
        assert!(std::fs::read(&file).unwrap().starts_with(b"{\"version\":1"));
    }

    #[test]
    fn a_failed_write_leaves_the_list_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        // A file inside a folder that does not exist cannot be written.
        let schedule = Schedule::open(Some(dir.path().join("missing").join(FILE_NAME))).unwrap();
        assert!(schedule.add(5, request("Lee, Pat")).is_err());
        assert!(schedule.entries().is_empty());
    }
}
