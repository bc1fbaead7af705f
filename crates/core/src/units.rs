//! Durations and sizes as the config file writes them: `"90s"`, `"15m"`, `"5d"`, `"25MB"`.

use std::time::Duration;

use crate::CoreError;

/// Reads `"90s"`, `"15m"`, `"1h"`, `"5d"`, `"2w"` (a bare number is seconds).
///
/// # Errors
/// [`CoreError::InvalidDuration`] for anything else, including overflow.
pub fn parse_duration(input: &str) -> Result<Duration, CoreError> {
    let bad = || CoreError::InvalidDuration {
        input: input.to_owned(),
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(per).map(Duration::from_secs).ok_or_else(bad)
}

/// Writes a duration in the largest whole unit that fits: the inverse of [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, per) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= per && secs.is_multiple_of(per) {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}

/// Reads a size: `"1048576"`, `"64KB"`, `"25MB"`, `"1GB"` (decimal units, as Postfix documents
/// sizes), and `KiB`/`MiB`/`GiB` for powers of two.
///
/// # Errors
/// [`CoreError::InvalidSize`] for anything else, including overflow.
pub fn parse_size(input: &str) -> Result<u64, CoreError> {
    let bad = || CoreError::InvalidSize {
        input: input.to_owned(),
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (input, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("5d", 432_000),
            ("30", 30),
        ] {
            assert_eq!(parse_duration(input).unwrap().as_secs(), secs, "{input}");
            assert_eq!(
                parse_duration(&format_duration(Duration::from_secs(secs)))
                    .unwrap()
                    .as_secs(),
                secs
            );
        }
        for input in ["", "m", "15x", "-1s", "99999999999999999999d", "1.5h"] {
            assert!(parse_duration(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn sizes() {
        for (input, n) in [
            ("25MB", 25_000_000),
            ("1024", 1024),
            ("1KiB", 1024),
            ("2gb", 2_000_000_000),
        ] {
            assert_eq!(parse_size(input).unwrap(), n, "{input}");
        }
        for input in ["", "MB", "1TB", "-5", "99999999999999999999GB"] {
            assert!(parse_size(input).is_err(), "{input:?}");
        }
    }
}
