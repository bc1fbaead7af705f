//! Files and folders only the gateway's own user can read: mail in the Maildir, in
//! quarantine or in import files is nobody else's business, whatever the process umask
//! (0022 in most containers would make it world-readable).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of the files the gateway creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of the folders the gateway creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates (or truncates) `path` for writing, mode 0600.
pub(crate) fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates `path` and its missing parents, mode 0700 (existing folders keep their mode).
pub(crate) fn create_dirs(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn files_are_0600_and_folders_0700_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a/b");
        create_dirs(&folder).unwrap();
        let file = folder.join("f");
        drop(create_file(&file).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&file), 0o600);
    }
}
