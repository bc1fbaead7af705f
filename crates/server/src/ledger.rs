//! The replay ledger: identities of messages already taken in, so that picking up the same
//! legacy file again (after a crash between queueing and archiving) or replaying the same
//! input twice queues nothing twice.
//!
//! One line per key, appended and fsynced before the caller goes on; loaded whole at open.
//! A torn last line (crash mid-append) is ignored.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ServerError;

/// Keys seen, backed by an append-only file.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    inner: Mutex<(HashSet<String>, File)>,
}

impl Ledger {
    /// Opens (or creates) the ledger file.
    ///
    /// # Errors
    /// [`ServerError::Io`] when it cannot be read or created.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let io = |source| ServerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let keys = Self::read_keys(path)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::private::FILE_MODE)
            .open(path)
            .map_err(io)?;
        // After a torn append, start the next key on a line of its own.
        let len = file.metadata().map_err(io)?.len();
        if len > 0 && std::fs::read(path).map_err(io)?.last() != Some(&b'\n') {
            file.write_all(b"\n").map_err(io)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            inner: Mutex::new((keys, file)),
        })
    }

    /// The keys recorded in the ledger file at `path`, read without opening it for writing
    /// (`ccgate replay --dry-run`); an empty set when there is no file yet.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the file exists but cannot be read.
    pub fn read_keys(path: &Path) -> Result<HashSet<String>, ServerError> {
        let io = |source| ServerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut keys = HashSet::new();
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
            Err(e) => return Err(io(e)),
        };
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(io)?;
            // Only complete lines count: a torn append has no newline and no `.` end mark.
            if let Some(key) = line
                .strip_suffix(b".")
                .and_then(|k| std::str::from_utf8(k).ok())
            {
                keys.insert(key.to_owned());
            }
        }
        Ok(keys)
    }

    /// True when `key` was recorded.
    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .lock()
            .map(|g| g.0.contains(key))
            .unwrap_or(false)
    }

    /// Records `key` durably (append, fsync). Keys must not contain line breaks.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the append or fsync fails.
    pub fn insert(&self, key: &str) -> Result<(), ServerError> {
        let key = key.replace(['\r', '\n'], " ");
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.0.contains(&key) {
            return Ok(());
        }
        let text = format!("{key}.\n");
        self.append(&mut guard, &text, vec![key])
    }

    /// Records several keys with one append and one fsync (a batch of picked-up messages);
    /// answers how many were not recorded before.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the append or fsync fails.
    pub fn insert_many(&self, keys: &[&str]) -> Result<usize, ServerError> {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = String::new();
        let mut fresh = Vec::new();
        let mut in_batch = HashSet::new();
        for key in keys {
            let key = key.replace(['\r', '\n'], " ");
            if guard.0.contains(&key) || !in_batch.insert(key.clone()) {
                continue;
            }
            text.push_str(&key);
            text.push_str(".\n");
            fresh.push(key);
        }
        let added = fresh.len();
        if added > 0 {
            self.append(&mut guard, &text, fresh)?;
        }
        Ok(added)
    }

    /// Records the keys of messages the spool holds ([`ccgate_queue::Spool::origins`]) that
    /// the ledger lacks: a crash after the spool took a message and before its key was
    /// written here. Called once the spool is open, before anything delivers from it. Returns
    /// how many keys were missing.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the append or fsync fails.
    pub fn adopt(&self, keys: &[String]) -> Result<usize, ServerError> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.insert_many(&keys)
    }

    /// Appends `text` (the lines of `fresh`) and fsyncs. The keys are taken as recorded in this
    /// process whether or not the write works: their messages are queued already, and a ledger
    /// that fails must not make every later poll queue them again. A failed append is cut off,
    /// so the next key never continues half a line.
    fn append(
        &self,
        guard: &mut (HashSet<String>, File),
        text: &str,
        fresh: Vec<String>,
    ) -> Result<(), ServerError> {
        guard.0.extend(fresh);
        let before = guard.1.metadata().map(|m| m.len()).ok();
        let written = guard
            .1
            .write_all(text.as_bytes())
            .and_then(|()| guard.1.sync_data());
        if let Err(source) = written {
            if let Some(len) = before {
                let _ = guard.1.set_len(len);
            }
            return Err(ServerError::Io {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// How many keys are recorded.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
    }

    /// True when no key is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopen_and_torn_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let ledger = Ledger::open(&path).unwrap();
        ledger.insert("<a@x>").unwrap();
        ledger.insert("<a@x>").unwrap();
        ledger.insert("<b@x>").unwrap();
        drop(ledger);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"<torn@x")
            .unwrap();
        let ledger = Ledger::open(&path).unwrap();
        assert!(ledger.contains("<a@x>") && ledger.contains("<b@x>"));
        assert!(!ledger.contains("<torn@x"));
        assert_eq!(ledger.len(), 2);
        ledger.insert("<c@x>").unwrap();
        let added = ledger
            .insert_many(&["<d@x>", "<a@x>", "<d@x>", "<e@x>"])
            .unwrap();
        assert_eq!((added, ledger.len()), (2, 5));
        // Keys a spool record holds: only those missing are written, and counted.
        let adopted = ledger
            .adopt(&["<e@x>".to_owned(), "<f@x>".to_owned()])
            .unwrap();
        assert_eq!((adopted, ledger.len()), (1, 6));
        drop(ledger);
        let reopened = Ledger::open(&path).unwrap();
        assert!(reopened.contains("<d@x>") && reopened.contains("<e@x>"));
        assert_eq!(reopened.len(), 6, "each key once");
        drop(reopened);
        assert!(
            Ledger::open(&path).unwrap().contains("<c@x>"),
            "a key after a torn line is kept"
        );
    }
}
