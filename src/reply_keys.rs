//! The keys of reply tags, kept in the data folder (`<data_dir>/reply-tag.keys`, mode 0600).
//!
//! The gateway tags the reply address it issues for a legacy sender outside the directory
//! (see the router's `tag` module). The key is made on first run from the system's random
//! source. **Rotation:** when the current key is two days older than `[legacy]
//! reply_tag_lifetime`, a new key replaces it and the old one is kept as `previous`, so every
//! tag made before the rotation stays valid until it expires: a tag is accepted up to the end of
//! the day its lifetime ends (at most a lifetime and a day after it was made), and the key that
//! made it stays in the file a whole rotation period (a lifetime and two days) after it stopped
//! being current, so two keys always suffice. Only `ccgate run` rotates, at start and every
//! hour, under an exclusive lock on the file; other processes read the file as it is. Deleting the file invalidates every reply address
//! issued so far (a new key is made at the next start).
//!
//! File format, one key per line: `current <unix seconds made> <64 hex digits>`, then
//! optionally `previous ...`; `#` lines are comments.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ccgate_router::{KEY_LEN, ReplyTags, TagKey, TagKeys};

use crate::config::Config;

/// The file's name in the data folder.
pub const FILE_NAME: &str = "reply-tag.keys";

/// One key and when it was made.
#[derive(Debug, Clone)]
struct Stored {
    made: u64,
    key: TagKey,
}

/// The keys file of a data folder.
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
    lifetime: Duration,
}

impl KeyFile {
    /// The keys file of `config`'s data folder.
    pub fn of(config: &Config) -> Self {
        Self {
            path: config.data_dir.join(FILE_NAME),
            lifetime: Duration::from_secs(
                u64::from(config.legacy.reply_tag_lifetime_days).saturating_mul(86_400),
            ),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tag settings with the keys in the file, made (mode 0600) if the file is missing.
    /// It never rotates: only `ccgate run` does ([`rotate_if_due`](Self::rotate_if_due)).
    ///
    /// # Errors
    /// The file cannot be read, written or parsed (`file:line: what`).
    pub fn open_or_create(&self, config: &Config) -> anyhow::Result<ReplyTags> {
        let (current, previous) = match self.read()? {
            Some(keys) => keys,
            None => {
                fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("{}: cannot create folder", config.data_dir.display())
                })?;
                self.create()?
            }
        };
        Ok(ReplyTags::new(
            to_keys(&current, previous.as_ref()),
            config.legacy.reply_tag_lifetime_days,
        ))
    }

    /// The tag settings with the keys in the file, or `None` when there is no file yet (a
    /// read-only command such as `ccgate route` does not make one).
    ///
    /// # Errors
    /// As [`open_or_create`](Self::open_or_create).
    pub fn open_existing(&self, config: &Config) -> anyhow::Result<Option<ReplyTags>> {
        Ok(self.read()?.map(|(current, previous)| {
            ReplyTags::new(
                to_keys(&current, previous.as_ref()),
                config.legacy.reply_tag_lifetime_days,
            )
        }))
    }

    /// Rotates the key when the current one is two days older than the lifetime (see the module
    /// documentation): a new current key, the old one kept as previous; `tags` then uses them.
    /// Returns true when it rotated. Two processes sharing the file never both rotate: the
    /// check and the write happen under an exclusive lock on `<file>.lock`, after reading the
    /// file again.
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn rotate_if_due(&self, tags: &ReplyTags, now: SystemTime) -> anyhow::Result<bool> {
        let lock_path = self.path.with_extension("keys.lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("{}: cannot open", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("{}: cannot lock", lock_path.display()))?;
        // Read under the lock: another gateway sharing the file may just have rotated.
        let Some((current, previous)) = self.read()? else {
            bail!("{}: the reply-tag key file is gone", self.path.display());
        };
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now_secs.saturating_sub(current.made) < self.rotation_age().as_secs() {
            // Another process may have rotated: serve what the file says.
            tags.set_keys(to_keys(&current, previous.as_ref()));
            return Ok(false);
        }
        let new = Stored {
            made: now_secs,
            key: TagKey::new(random_key()?),
        };
        self.write_replacing(&new, Some(&current))?;
        tags.set_keys(to_keys(&new, Some(&current)));
        tracing::info!(file = %self.path.display(), "reply-tag key rotated; tags made with the previous key stay valid until they expire");
        Ok(true)
    }

    /// How old the current key gets before it is replaced: the tag lifetime and two days (a
    /// tag is accepted to the end of its last day, and clocks differ by up to a day).
    fn rotation_age(&self) -> Duration {
        self.lifetime
            .saturating_add(Duration::from_secs(2 * 86_400))
    }

    fn read(&self) -> anyhow::Result<Option<(Stored, Option<Stored>)>> {
        let mut text = String::new();
        match File::open(&self.path) {
            Ok(mut file) => {
                file.read_to_string(&mut text)
                    .with_context(|| format!("{}: cannot read", self.path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("{}: cannot open", self.path.display()))
                );
            }
        }
        let mut current = None;
        let mut previous = None;
        for (index, line) in text.lines().enumerate() {
            let line_no = index.saturating_add(1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [role, made, hex] = parts.as_slice() else {
                bail!(
                    "{}:{line_no}:1: expected `current|previous SECONDS HEXKEY`",
                    self.path.display()
                );
            };
            let made: u64 = made
                .parse()
                .with_context(|| format!("{}:{line_no}: bad time {made:?}", self.path.display()))?;
            let key = TagKey::new(from_hex(hex).with_context(|| {
                format!(
                    "{}:{line_no}: the key is not {} hex digits",
                    self.path.display(),
                    KEY_LEN * 2
                )
            })?);
            let stored = Stored { made, key };
            match *role {
                "current" => current = Some(stored),
                "previous" => previous = Some(stored),
                other => bail!(
                    "{}:{line_no}:1: {other:?} is not current or previous",
                    self.path.display()
                ),
            }
        }
        match current {
            Some(current) => Ok(Some((current, previous))),
            None => bail!("{}: no `current` key", self.path.display()),
        }
    }

    /// Makes the first key. Two processes starting at once agree: the file is linked into
    /// place only if it does not exist, and the loser reads the winner's key.
    fn create(&self) -> anyhow::Result<(Stored, Option<Stored>)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let first = Stored {
            made: now,
            key: TagKey::new(random_key()?),
        };
        let tmp = self.write_tmp(&first, None)?;
        let linked = fs::hard_link(&tmp, &self.path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_dir();
                tracing::info!(file = %self.path.display(), "reply-tag key made");
                Ok((first, None))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self
                .read()?
                .with_context(|| format!("{}: vanished while made", self.path.display())),
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("{}: cannot create", self.path.display())))
            }
        }
    }

    fn write_replacing(&self, current: &Stored, previous: Option<&Stored>) -> anyhow::Result<()> {
        let tmp = self.write_tmp(current, previous)?;
        fs::rename(&tmp, &self.path)
            .with_context(|| format!("{}: cannot replace", self.path.display()))?;
        self.sync_dir();
        Ok(())
    }

    fn write_tmp(&self, current: &Stored, previous: Option<&Stored>) -> anyhow::Result<PathBuf> {
        let tmp = self
            .path
            .with_extension(format!("keys.tmp.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut text = String::from(
            "# ccgate reply-tag keys: secret, keep mode 0600. Deleting this file invalidates\n\
             # every reply address issued for legacy senders outside the directory.\n",
        );
        text.push_str(&format!(
            "current {} {}\n",
            current.made,
            hex(current.key.bytes())
        ));
        if let Some(previous) = previous {
            text.push_str(&format!(
                "previous {} {}\n",
                previous.made,
                hex(previous.key.bytes())
            ));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        Ok(tmp)
    }

    fn sync_dir(&self) {
        if let Some(dir) = self.path.parent()
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
    }
}

fn to_keys(current: &Stored, previous: Option<&Stored>) -> TagKeys {
    TagKeys {
        current: current.key.clone(),
        previous: previous.map(|p| p.key.clone()),
    }
}

/// 32 random bytes from the system's random source.
pub(crate) fn random_key() -> anyhow::Result<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("/dev/urandom: cannot read a random key")?;
    Ok(key)
}

/// Lower-case hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    if text.len() != KEY_LEN * 2 {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (slot, index) in out.iter_mut().zip((0..text.len()).step_by(2)) {
        *slot = u8::from_str_radix(text.get(index..index.saturating_add(2))?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use ccgate_router::Day;

    use super::*;

    fn config(dir: &Path) -> Config {
        Config::parse(
            &format!(
                "data_dir = {:?}\n[legacy]\nreply_tag_lifetime = \"10d\"",
                dir.join("data").display().to_string()
            ),
            &dir.join("ccgate.toml"),
        )
        .unwrap()
    }

    #[test]
    fn first_run_makes_a_private_key_and_later_runs_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let file = KeyFile::of(&config);
        assert!(file.open_existing(&config).unwrap().is_none());
        let tags = file.open_or_create(&config).unwrap();
        let mode = fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let day = Day::today();
        let tag = tags.make("A at HQ", day);
        let again = file.open_existing(&config).unwrap().unwrap();
        assert!(again.verify("A at HQ", Some(&tag), day).is_valid());
        let reopened = file.open_or_create(&config).unwrap();
        assert!(reopened.verify("A at HQ", Some(&tag), day).is_valid());
    }

    #[test]
    fn rotation_keeps_old_tags_valid_until_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let file = KeyFile::of(&config);
        let tags = file.open_or_create(&config).unwrap();
        let day = Day::today();
        let old = tags.make("A at HQ", day);
        let now = SystemTime::now();
        assert!(!file.rotate_if_due(&tags, now).unwrap(), "not due yet");
        let lifetime = 10 * 86_400;
        let not_yet = now + Duration::from_secs(lifetime + 86_400);
        assert!(
            !file.rotate_if_due(&tags, not_yet).unwrap(),
            "a tag is valid to the end of its last day: no rotation one day after the lifetime"
        );
        // Made with the first key just before it is replaced: valid to the end of day 21.
        let late = tags.make("A at HQ", Day(day.0 + 11));
        let later = now + Duration::from_secs(lifetime + 2 * 86_400 + 60);
        assert!(file.rotate_if_due(&tags, later).unwrap());
        assert!(tags.verify("A at HQ", Some(&old), day).is_valid());
        let other_process = file.open_existing(&config).unwrap().unwrap();
        assert!(other_process.verify("A at HQ", Some(&old), day).is_valid());
        // On its last day the first key is still there, as the previous one.
        let day_21 = now + Duration::from_secs(21 * 86_400 + 43_200);
        assert!(!file.rotate_if_due(&tags, day_21).unwrap());
        assert!(
            tags.verify("A at HQ", Some(&late), Day(day.0 + 21))
                .is_valid()
        );
        let much_later = later + Duration::from_secs(lifetime + 2 * 86_400 + 60);
        assert!(file.rotate_if_due(&tags, much_later).unwrap());
        assert!(!tags.verify("A at HQ", Some(&old), day).is_valid());
    }

    #[test]
    fn a_damaged_file_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        fs::create_dir_all(&config.data_dir).unwrap();
        let file = KeyFile::of(&config);
        fs::write(file.path(), "# x\ncurrent 12 abcd\n").unwrap();
        let error = format!("{:#}", file.open_existing(&config).unwrap_err());
        assert!(error.contains("reply-tag.keys:2"), "{error}");
    }
}
