//! Keyed tags on the reply addresses the gateway issues (the idea of SRS and BATV).
//!
//! When a legacy sender is not in the directory, its SMTP form is a generated address
//! (`IMCEACCMAIL-...`). Anyone could write such an address for any legacy name, so the gateway
//! adds a short tag to the ones it issues: a day stamp and an HMAC-SHA256 over the legacy
//! address and that stamp, under a secret key. At RCPT, a generated form for a name that is not
//! in the directory is accepted only when its tag verifies and is not older than the configured
//! lifetime.
//!
//! # The tag
//!
//! Ten characters of base32 (`a`-`z`, `2`-`7`; read without regard to case, since SMTP peers
//! may change the case of a local part): two for the day (days since 1970-01-01 modulo 1024),
//! eight for the first 40 bits of `HMAC-SHA256(key, "<day>:<legacy address in lower case>")`.
//! A tag is verified with the current key and, if that fails, the previous one, so tags made
//! before a key rotation stay valid until they expire. A stamp up to one day ahead of today is
//! accepted (clocks differ); the day counter wraps after 1024 days, so lifetimes are capped at
//! [`MAX_LIFETIME_DAYS`]: a key verifies tags for up to two rotation periods of a lifetime and
//! two days each (see the binary's key file), and no tag may be that old and read as young.
//!
//! Pure: the keys come in from the caller (the binary keeps them in the data folder) and so
//! does the day.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a tag in characters.
pub const TAG_LEN: usize = 10;
/// Longest lifetime a tag may be given, in days. A key stays in the key file (current, then
/// previous) for two rotation periods of `lifetime + 2` days, so a tag it made can be shown up
/// to `2 * lifetime + 5` days after it was made; that must stay below the 1024 days after which
/// the day stamp wraps, or an expired tag would read as fresh again.
pub const MAX_LIFETIME_DAYS: u16 = 500;
/// Day stamps wrap at this many days.
const DAY_MODULUS: u32 = 1024;
/// The base32 alphabet of tags (RFC 4648, lower case).
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A secret key for tags. Its `Debug` does not show the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TagKey([u8; KEY_LEN]);

impl TagKey {
    /// A key from its bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes (to store it).
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TagKey(..)")
    }
}

/// The keys in service: tags are made with `current` and checked with both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagKeys {
    /// Makes new tags.
    pub current: TagKey,
    /// The key before the last rotation: its tags stay valid until they expire.
    pub previous: Option<TagKey>,
}

/// The tag settings the router uses: the keys (replaced in place when they rotate) and how
/// long a tag stays valid. Clones share the keys.
#[derive(Debug, Clone)]
pub struct ReplyTags {
    keys: Arc<RwLock<Arc<TagKeys>>>,
    lifetime_days: u16,
}

impl PartialEq for ReplyTags {
    fn eq(&self, other: &Self) -> bool {
        self.lifetime_days == other.lifetime_days && Arc::ptr_eq(&self.keys, &other.keys)
    }
}

impl Eq for ReplyTags {}

impl ReplyTags {
    /// Tags with these keys, valid for `lifetime_days` (clamped to 1..=[`MAX_LIFETIME_DAYS`]).
    pub fn new(keys: TagKeys, lifetime_days: u16) -> Self {
        Self {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            lifetime_days: lifetime_days.clamp(1, MAX_LIFETIME_DAYS),
        }
    }

    /// The keys in service now.
    pub fn keys(&self) -> Arc<TagKeys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts new keys in service (after a rotation); every clone sees them.
    pub fn set_keys(&self, keys: TagKeys) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// The same keys (shared with `self`, rotations included) with another lifetime: a
    /// configuration reload of the lifetime.
    pub fn with_lifetime(&self, lifetime_days: u16) -> Self {
        Self {
            keys: Arc::clone(&self.keys),
            lifetime_days: lifetime_days.clamp(1, MAX_LIFETIME_DAYS),
        }
    }

    /// How many days a tag stays valid.
    pub fn lifetime_days(&self) -> u16 {
        self.lifetime_days
    }

    /// The tag for `address` (any text: the router passes the legacy address) made on `today`.
    pub fn make(&self, address: &str, today: Day) -> String {
        let stamp = today.stamp();
        let mac = mac(&self.keys().current, address, stamp);
        let mut tag = String::with_capacity(TAG_LEN);
        push_base32(&mut tag, u64::from(stamp), 2);
        push_base32(&mut tag, mac, 8);
        tag
    }

    /// Checks `tag` (as found in an address, `None` when there is none) for `address` on
    /// `today`.
    pub fn verify(&self, address: &str, tag: Option<&str>, today: Day) -> TagStatus {
        let Some(text) = tag else {
            return TagStatus::Missing;
        };
        let Ok(parsed) = parse_tag(text) else {
            return TagStatus::Malformed;
        };
        let keys = self.keys();
        let previous = keys.previous.as_ref();
        let key_matches = |key: &TagKey| mac(key, address, parsed.stamp) == parsed.mac;
        let with_previous = if key_matches(&keys.current) {
            false
        } else if previous.is_some_and(key_matches) {
            true
        } else {
            return TagStatus::Forged;
        };
        let age = today.age_of(parsed.stamp);
        if age > i32::from(self.lifetime_days) {
            return TagStatus::Expired {
                age_days: age.unsigned_abs(),
                lifetime_days: self.lifetime_days,
            };
        }
        TagStatus::Valid {
            age_days: age,
            lifetime_days: self.lifetime_days,
            previous_key: with_previous,
        }
    }
}

/// A day: days since 1970-01-01 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    /// The day of `time` (days before 1970 are day 0).
    pub fn of(time: SystemTime) -> Self {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        Self(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    /// Today, by the system clock.
    pub fn today() -> Self {
        Self::of(SystemTime::now())
    }

    /// The day stamp written in a tag.
    pub fn stamp(self) -> u16 {
        u16::try_from(self.0 % DAY_MODULUS).unwrap_or(0)
    }

    /// How many days ago a stamp was made: 0 today, -1 for tomorrow (a clock ahead of ours),
    /// up to 1022.
    fn age_of(self, stamp: u16) -> i32 {
        let today = i64::from(self.stamp());
        let age = (today - i64::from(stamp)).rem_euclid(i64::from(DAY_MODULUS));
        let age = if age == i64::from(DAY_MODULUS) - 1 {
            -1
        } else {
            age
        };
        i32::try_from(age).unwrap_or(i32::MAX)
    }
}

/// What a tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TagStatus {
    /// Made by this gateway (with the current key, or the previous one) and not expired.
    Valid {
        /// Days since it was made (-1: made by a clock one day ahead).
        age_days: i32,
        /// How long tags stay valid.
        lifetime_days: u16,
        /// Made with the key before the last rotation.
        previous_key: bool,
    },
    /// Made by this gateway, but longer ago than the lifetime.
    Expired {
        /// Days since it was made.
        age_days: u32,
        /// How long tags stay valid.
        lifetime_days: u16,
    },
    /// The address has no tag.
    Missing,
    /// Something in the tag's place that is not a tag.
    Malformed,
    /// A well-formed tag that neither key made (or made for another address).
    Forged,
    /// No key is configured, so no tag can be checked.
    NoKey,
}

impl TagStatus {
    /// `valid`, `expired`, `missing`, `malformed`, `forged` or `no key`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Valid { .. } => "valid",
            Self::Expired { .. } => "expired",
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Forged => "forged",
            Self::NoKey => "no key",
        }
    }

    /// True for a valid tag.
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }
}

impl fmt::Display for TagStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Valid {
                age_days,
                lifetime_days,
                previous_key,
            } => {
                let left = i32::from(*lifetime_days).saturating_sub(*age_days);
                write!(
                    f,
                    "reply tag valid (issued {}, valid {left} more day(s){})",
                    days(*age_days),
                    if *previous_key {
                        ", made with the previous key"
                    } else {
                        ""
                    }
                )
            }
            Self::Expired {
                age_days,
                lifetime_days,
            } => write!(
                f,
                "reply tag expired (issued {age_days} days ago; reply addresses stay valid {lifetime_days} days)"
            ),
            Self::Missing => f.write_str("no reply tag (the gateway did not issue this address)"),
            Self::Malformed => f.write_str("malformed reply tag"),
            Self::Forged => {
                f.write_str("forged reply tag (not made by this gateway's keys for this name)")
            }
            Self::NoKey => f.write_str("reply tag cannot be checked: no tag key in service"),
        }
    }
}

fn days(age: i32) -> String {
    match age {
        i32::MIN..=-1 => "tomorrow by this clock".to_owned(),
        0 => "today".to_owned(),
        1 => "1 day ago".to_owned(),
        n => format!("{n} days ago"),
    }
}

/// A tag read from text: the day stamp and the 40-bit MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTag {
    /// Days since 1970-01-01, modulo 1024.
    pub stamp: u16,
    /// The first 40 bits of the HMAC.
    pub mac: u64,
}

/// Why text is not a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Not [`TAG_LEN`] characters.
    #[error("a reply tag has {TAG_LEN} characters, this has {0}")]
    Length(usize),
    /// A character outside base32.
    #[error("{0:?} is not a base32 character")]
    Character(char),
}

/// Reads a tag (ten base32 characters, any case).
///
/// # Errors
/// [`TagError`] for text of the wrong length or with a character outside base32.
pub fn parse_tag(text: &str) -> Result<RawTag, TagError> {
    let count = text.chars().count();
    if count != TAG_LEN {
        return Err(TagError::Length(count));
    }
    let mut value: u64 = 0;
    for c in text.chars() {
        let lower = c.to_ascii_lowercase();
        let digit = ALPHABET
            .iter()
            .position(|&a| char::from(a) == lower)
            .ok_or(TagError::Character(c))?;
        value = (value << 5) | u64::try_from(digit).unwrap_or(0);
    }
    Ok(RawTag {
        stamp: u16::try_from(value >> 40).unwrap_or(0),
        mac: value & ((1 << 40) - 1),
    })
}

/// True when `text` has the shape of a tag.
pub fn looks_like_tag(text: &str) -> bool {
    parse_tag(text).is_ok()
}

fn push_base32(out: &mut String, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        let index = usize::try_from((value >> (5 * i)) & 31).unwrap_or(0);
        out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'a')));
    }
}

/// The first 40 bits of `HMAC-SHA256(key, "<stamp>:<address in lower case>")`.
fn mac(key: &TagKey, address: &str, stamp: u16) -> u64 {
    let message = format!("{stamp}:{}", address.to_lowercase());
    let digest = hmac_sha256(key.bytes(), message.as_bytes());
    digest
        .iter()
        .take(5)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// HMAC-SHA256 (RFC 2104) for a 32-byte key.
pub fn hmac_sha256(key: &[u8; KEY_LEN], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key.iter()) {
        *i ^= k;
        *o ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(lifetime: u16) -> ReplyTags {
        ReplyTags::new(
            TagKeys {
                current: TagKey::new([7; KEY_LEN]),
                previous: None,
            },
            lifetime,
        )
    }

    #[test]
    fn hmac_matches_an_independent_implementation() {
        // Python: hmac.new(b"\x0b" * 32, b"Hi There", hashlib.sha256).hexdigest()
        let out = hmac_sha256(&[0x0b; 32], b"Hi There");
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
    }

    #[test]
    fn tags_verify_until_they_expire() {
        let tags = tags(30);
        let day = Day(20_000);
        let tag = tags.make("Stranger, Sam at HQ", day);
        assert_eq!(tag.len(), TAG_LEN);
        assert!(
            tags.verify("stranger, sam at hq", Some(&tag.to_uppercase()), day)
                .is_valid()
        );
        assert!(
            tags.verify("Stranger, Sam at HQ", Some(&tag), Day(20_030))
                .is_valid()
        );
        assert!(
            tags.verify("Stranger, Sam at HQ", Some(&tag), Day(19_999))
                .is_valid(),
            "a clock one day behind the issuer"
        );
        assert!(matches!(
            tags.verify("Stranger, Sam at HQ", Some(&tag), Day(20_031)),
            TagStatus::Expired { age_days: 31, .. }
        ));
        assert_eq!(
            tags.verify("Other, Sam at HQ", Some(&tag), day),
            TagStatus::Forged
        );
        assert_eq!(
            tags.verify("Stranger, Sam at HQ", None, day),
            TagStatus::Missing
        );
        assert_eq!(
            tags.verify("Stranger, Sam at HQ", Some("abc"), day),
            TagStatus::Malformed
        );
    }

    #[test]
    fn the_day_stamp_never_wraps_while_a_key_can_verify() {
        // A key verifies for two rotation periods (lifetime + 2 days each) after it became
        // current; over all that time an expired tag must read as expired, not young again.
        let lifetime = MAX_LIFETIME_DAYS;
        let tags = tags(lifetime);
        let made = Day(20_000);
        let tag = tags.make("Stranger, Sam at HQ", made);
        let last_day_a_key_verifies = 2 * (u32::from(lifetime) + 2) + 1;
        for age in (u32::from(lifetime) + 1)..=last_day_a_key_verifies {
            assert!(
                !tags
                    .verify("Stranger, Sam at HQ", Some(&tag), Day(made.0 + age))
                    .is_valid(),
                "age {age} read as valid"
            );
        }
    }

    #[test]
    fn rotation_keeps_the_previous_key() {
        let tags = tags(30);
        let day = Day(20_000);
        let old = tags.make("A at HQ", day);
        tags.set_keys(TagKeys {
            current: TagKey::new([9; KEY_LEN]),
            previous: Some(TagKey::new([7; KEY_LEN])),
        });
        assert!(matches!(
            tags.verify("A at HQ", Some(&old), day),
            TagStatus::Valid {
                previous_key: true,
                ..
            }
        ));
        let new = tags.make("A at HQ", day);
        assert_ne!(old, new);
        tags.set_keys(TagKeys {
            current: TagKey::new([11; KEY_LEN]),
            previous: Some(TagKey::new([9; KEY_LEN])),
        });
        assert_eq!(tags.verify("A at HQ", Some(&old), day), TagStatus::Forged);
    }

    #[test]
    fn parse_tag_reads_base32() {
        assert_eq!(parse_tag("baaaaaaaab"), Ok(RawTag { stamp: 32, mac: 1 }));
        assert_eq!(parse_tag("77"), Err(TagError::Length(2)));
        assert_eq!(parse_tag("aaaaaaaaa1"), Err(TagError::Character('1')));
        assert_eq!(parse_tag("aaaaaaaaaé"), Err(TagError::Character('é')));
    }
}
