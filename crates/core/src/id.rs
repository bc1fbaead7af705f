//! Queue ids.
//!
//! A ULID: 48 bits of milliseconds since the epoch and 80 random bits, written as 26 characters
//! of Crockford base 32. Ids sort by arrival, are unique without coordination, and are never
//! reused (unlike Postfix's short ids, see lessons.md §1).

use std::fmt;
use std::str::FromStr;

use crate::CoreError;

/// The identity of one queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(ulid::Ulid);

impl QueueId {
    /// A fresh id from the system clock and the thread's random generator.
    pub fn generate() -> Self {
        Self(ulid::Ulid::new())
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }

    /// The id as a 128-bit number (for compact on-disk records).
    pub fn to_u128(self) -> u128 {
        self.0.0
    }

    /// The id from its 128-bit number.
    pub fn from_u128(n: u128) -> Self {
        Self(ulid::Ulid(n))
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for QueueId {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s)
            .map(Self)
            .map_err(|_| CoreError::InvalidQueueId {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_uniqueness() {
        let a = QueueId::generate();
        let b = QueueId::generate();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<QueueId>().unwrap(), a);
        assert_eq!(QueueId::from_u128(a.to_u128()), a);
        assert!("not-an-id".parse::<QueueId>().is_err());
    }
}
