//! The directory in service, swapped whole on reload: readers take an `Arc` of the current
//! directory and keep it for as long as they route one message; a reload compiles a new
//! directory beside it and swaps it in only if it is valid, so no reader ever sees half a
//! directory and a bad reload leaves the old one in service.
//!
//! Watching files, SIGHUP and the reload interval are the server's; this type only does the
//! swap.

use std::sync::{Arc, PoisonError, RwLock};

use crate::directory::Directory;

/// The directory in service, and how many times it was replaced.
#[derive(Debug)]
pub struct DirectoryHandle {
    current: RwLock<(Arc<Directory>, u64)>,
}

impl DirectoryHandle {
    /// Puts a first directory in service (generation 0).
    pub fn new(directory: Directory) -> Self {
        Self {
            current: RwLock::new((Arc::new(directory), 0)),
        }
    }

    /// The directory in service. Cheap: one reference-count increment under a read lock.
    pub fn current(&self) -> Arc<Directory> {
        let guard = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&guard.0)
    }

    /// How many successful swaps there have been.
    pub fn generation(&self) -> u64 {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
    }

    /// Puts `directory` in service and returns the one it replaces.
    pub fn swap(&self, directory: Directory) -> Arc<Directory> {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut guard.0, Arc::new(directory));
        guard.1 = guard.1.saturating_add(1);
        old
    }

    /// Runs `load` (outside any lock) and, if it returns a directory, puts it in service and
    /// returns it. On an error the directory in service stays as it was.
    ///
    /// # Errors
    /// Whatever `load` returns: the caller logs it ("a bad reload keeps the previous directory
    /// in service and says why").
    pub fn load_and_swap<E>(
        &self,
        load: impl FnOnce() -> Result<Directory, E>,
    ) -> Result<Arc<Directory>, E> {
        let directory = Arc::new(load()?);
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        guard.0 = Arc::clone(&directory);
        guard.1 = guard.1.saturating_add(1);
        Ok(directory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    const GOOD: &str = "legacy_name,post_office,proxy_addresses,state\n\"Doe, Jane\",HQ,SMTP:jane@legacy.example.com,legacy\n";
    const BETTER: &str = "legacy_name,post_office,proxy_addresses,state\n\"Doe, Jane\",HQ,SMTP:jane@legacy.example.com,legacy\n\"Roe, Rick\",HQ,SMTP:rick@legacy.example.com,legacy\n";
    const BAD: &str = "legacy_name,post_office,proxy_addresses,state\n\"Doe, Jane\",HQ,,legacy\n\"DOE, JANE\",HQ,,legacy\n";

    #[test]
    fn a_bad_reload_keeps_the_old_directory() {
        let handle = DirectoryHandle::new(Directory::from_csv(GOOD.as_bytes()).unwrap());
        let before = handle.current();
        let err = handle
            .load_and_swap(|| Directory::from_csv(BAD.as_bytes()))
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref problems } if problems.len() == 1),
            "{err}"
        );
        assert!(Arc::ptr_eq(&before, &handle.current()));
        assert_eq!(handle.generation(), 0);

        let after = handle
            .load_and_swap(|| Directory::from_csv(BETTER.as_bytes()))
            .unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(handle.current().len(), 2);
        assert_eq!(handle.generation(), 1);
        // A reader that took the old directory keeps a whole one.
        assert_eq!(before.len(), 1);
    }

    #[test]
    fn readers_see_whole_directories_while_swapping() {
        let handle = Arc::new(DirectoryHandle::new(
            Directory::from_csv(GOOD.as_bytes()).unwrap(),
        ));
        let reader = {
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    let len = handle.current().len();
                    assert!(len == 1 || len == 2, "{len}");
                }
            })
        };
        for round in 0..200 {
            let text = if round % 2 == 0 { BETTER } else { GOOD };
            handle
                .load_and_swap(|| Directory::from_csv(text.as_bytes()))
                .unwrap();
            let _ = handle.load_and_swap(|| Directory::from_csv(BAD.as_bytes()));
        }
        reader.join().unwrap();
        assert_eq!(handle.generation(), 200);
    }
}
