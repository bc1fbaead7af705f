//! Calendar arithmetic and the one RFC 5322 date formatter: `Received:` headers, bounces, queue
//! listings and converted legacy dates all write their dates here.
//!
//! Dates are proleptic Gregorian, computed with Howard Hinnant's `days_from_civil` and
//! `civil_from_days`; no time zone database is needed (legacy dates carry no zone and the
//! gateway writes UTC or a configured fixed offset).

/// English day names from 1970-01-01, a Thursday.
const DAY_NAMES: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
/// English month names.
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// The last second of the year 9999: later times are written as this one (four-digit years).
const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
/// The first second of the year 0: earlier times are written as this one.
const FIRST_SECOND_OF_0: i64 = -62_167_219_200;

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1-12, `day` 1-31; out-of-range
/// days roll over into the next month, as the arithmetic does).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1-12, day 1-31) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The English abbreviation of a day number's weekday (`Thu` for day 0, 1970-01-01).
pub fn day_name(days: i64) -> &'static str {
    DAY_NAMES
        .get(usize::try_from(days.rem_euclid(7)).unwrap_or(0))
        .copied()
        .unwrap_or("Thu")
}

/// The English abbreviation of a month, 1-12 (`Jan` for anything else).
pub fn month_name(month: u32) -> &'static str {
    MONTH_NAMES
        .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
        .copied()
        .unwrap_or("Jan")
}

/// The RFC 5322 `date-time` of `unix_seconds` seen at a fixed offset from UTC:
/// `Mon, 23 Nov 2026 11:23:29 +0000`. Times outside the years 0-9999 are clamped to them.
pub fn rfc5322_date(unix_seconds: i64, offset_minutes: i16) -> String {
    let local = unix_seconds
        .saturating_add(i64::from(offset_minutes) * 60)
        .clamp(FIRST_SECOND_OF_0, LAST_SECOND_OF_9999);
    let days = local.div_euclid(86_400);
    let rem = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let abs = offset_minutes.unsigned_abs();
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        day_name(days),
        month_name(month),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        abs / 60,
        abs % 60
    )
}

/// [`rfc5322_date`] in UTC for a time in milliseconds since the epoch, as the spool keeps
/// times.
pub fn rfc5322_date_ms(unix_ms: u64) -> String {
    rfc5322_date(i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX), 0)
}

/// [`rfc5322_date`] in UTC for a wall-clock time (times before 1970 are written as 1970).
pub fn rfc5322_date_at(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc5322_date(i64::try_from(secs).unwrap_or(i64::MAX), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        for (secs, text) in [
            (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_751_373_296, "Tue, 1 Jul 2025 12:34:56 +0000"),
            (1_795_432_209, "Mon, 23 Nov 2026 11:10:09 +0000"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 +0000"),
            (i64::MAX, "Fri, 31 Dec 9999 23:59:59 +0000"),
            (-86_400, "Wed, 31 Dec 1969 00:00:00 +0000"),
            (i64::MIN, "Sat, 1 Jan 0 00:00:00 +0000"),
        ] {
            assert_eq!(rfc5322_date(secs, 0), text, "{secs}");
        }
        assert_eq!(
            rfc5322_date_ms(1_751_373_296_999),
            "Tue, 1 Jul 2025 12:34:56 +0000"
        );
        assert_eq!(rfc5322_date_ms(u64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc5322_date_at(at), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn offsets_show_local_time() {
        // 1998-06-02 08:39 in UTC+2 is 06:39 UTC.
        let unix = days_from_civil(1998, 6, 2) * 86_400 + 6 * 3600 + 39 * 60;
        assert_eq!(rfc5322_date(unix, 120), "Tue, 2 Jun 1998 08:39:00 +0200");
        assert_eq!(rfc5322_date(unix, -330), "Tue, 2 Jun 1998 01:09:00 -0530");
    }

    #[test]
    fn civil_days_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
