//! Dates across the two worlds: legacy dates carry no zone and are taken to be in the post
//! office's configured offset ([`ConvertOptions::utc_offset_minutes`](crate::ConvertOptions));
//! RFC 5322 dates carry their own.

use ccgate_ccmail::{LegacyDateTime, LegacyTime, YEAR_PIVOT};
use ccgate_core::{civil_from_days, day_name, days_from_civil, month_name};

/// Seconds since the epoch (UTC) of a legacy date read in `offset_minutes`; a date without a
/// time is taken at 00:00.
pub(crate) fn legacy_to_unix(date: &LegacyDateTime, offset_minutes: i16) -> i64 {
    let days = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let (h, m, s) = date
        .time
        .map_or((0, 0, 0), |t| (t.hour, t.minute, t.second.unwrap_or(0)));
    days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)
        - i64::from(offset_minutes) * 60
}

/// The RFC 5322 `date-time` of a legacy date in `offset_minutes`:
/// `Tue, 2 Jun 1998 08:39:00 +0000`.
pub(crate) fn rfc5322_date(date: &LegacyDateTime, offset_minutes: i16) -> String {
    ccgate_core::rfc5322_date(legacy_to_unix(date, offset_minutes), offset_minutes)
}

/// `asctime`-style date for an mbox `From ` line, in UTC: `Tue Jun  2 08:39:00 1998`.
pub(crate) fn asctime(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{} {} {day:>2} {:02}:{:02}:{:02} {year}",
        day_name(days),
        month_name(month),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Why an RFC 5322 date has no legacy form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateProblem {
    /// A field out of range (month 13, hour 25 ...).
    Invalid,
    /// Outside 1970-2069: the writer's two-digit years would read back in another century.
    OutOfRange,
}

/// The legacy date (to the minute) of an RFC 5322 date, in `offset_minutes`.
pub(crate) fn mime_to_legacy_date(
    date: &mail_parser::DateTime,
    offset_minutes: i16,
) -> Result<LegacyDateTime, DateProblem> {
    let valid = (1..=12).contains(&date.month)
        && date.day >= 1
        && date.day <= days_in_month(date.year, date.month)
        && date.hour <= 23
        && date.minute <= 59
        && date.second <= 60
        && date.tz_hour <= 23
        && date.tz_minute <= 59;
    if !valid {
        return Err(DateProblem::Invalid);
    }
    let zone = (i64::from(date.tz_hour) * 60 + i64::from(date.tz_minute))
        * if date.tz_before_gmt { -1 } else { 1 };
    let unix = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    ) * 86_400
        + i64::from(date.hour) * 3600
        + i64::from(date.minute) * 60
        + i64::from(date.second.min(59))
        - zone * 60;
    let local = unix + i64::from(offset_minutes) * 60;
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let first = 1900 + i64::from(YEAR_PIVOT);
    if !(first..first + 100).contains(&year) {
        return Err(DateProblem::OutOfRange);
    }
    Ok(LegacyDateTime {
        year: u16::try_from(year).map_err(|_| DateProblem::OutOfRange)?,
        month: u8::try_from(month).map_err(|_| DateProblem::Invalid)?,
        day: u8::try_from(day).map_err(|_| DateProblem::Invalid)?,
        time: Some(LegacyTime {
            hour: u8::try_from(secs / 3600).map_err(|_| DateProblem::Invalid)?,
            minute: u8::try_from(secs % 3600 / 60).map_err(|_| DateProblem::Invalid)?,
            second: None,
        }),
    })
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(year: u16, month: u8, day: u8, hm: Option<(u8, u8)>) -> LegacyDateTime {
        LegacyDateTime {
            year,
            month,
            day,
            time: hm.map(|(hour, minute)| LegacyTime {
                hour,
                minute,
                second: None,
            }),
        }
    }

    #[test]
    fn rfc5322_dates() {
        let cases = [
            (
                legacy(1998, 6, 2, Some((8, 39))),
                0,
                "Tue, 2 Jun 1998 08:39:00 +0000",
            ),
            (
                legacy(2000, 2, 29, Some((23, 5))),
                -300,
                "Tue, 29 Feb 2000 23:05:00 -0500",
            ),
            (
                legacy(1970, 1, 1, None),
                60,
                "Thu, 1 Jan 1970 00:00:00 +0100",
            ),
            (
                legacy(2069, 12, 31, Some((0, 0))),
                330,
                "Tue, 31 Dec 2069 00:00:00 +0530",
            ),
        ];
        for (date, offset, expected) in cases {
            assert_eq!(rfc5322_date(&date, offset), expected);
        }
    }

    #[test]
    fn asctime_dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(896_776_740), "Tue Jun  2 08:39:00 1998");
    }

    #[test]
    fn mime_dates_to_legacy() {
        let dt = |year, month, day, hour, minute, before, tz_hour| mail_parser::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second: 30,
            tz_before_gmt: before,
            tz_hour,
            tz_minute: 0,
        };
        let cases = [
            (
                dt(1998, 6, 2, 8, 39, false, 0),
                0,
                Ok(legacy(1998, 6, 2, Some((8, 39)))),
            ),
            (
                dt(1998, 6, 2, 22, 0, true, 5),
                0,
                Ok(legacy(1998, 6, 3, Some((3, 0)))),
            ),
            (
                dt(1998, 6, 2, 22, 0, true, 5),
                -300,
                Ok(legacy(1998, 6, 2, Some((22, 0)))),
            ),
            (
                dt(1998, 13, 2, 8, 39, false, 0),
                0,
                Err(DateProblem::Invalid),
            ),
            (
                dt(2070, 1, 2, 8, 39, false, 0),
                0,
                Err(DateProblem::OutOfRange),
            ),
            (
                dt(1969, 12, 31, 23, 0, false, 0),
                0,
                Err(DateProblem::OutOfRange),
            ),
        ];
        for (input, offset, expected) in cases {
            assert_eq!(mime_to_legacy_date(&input, offset), expected, "{input:?}");
        }
    }

    #[test]
    fn unix_of_legacy() {
        assert_eq!(legacy_to_unix(&legacy(1970, 1, 1, Some((1, 0))), 60), 0);
        assert_eq!(
            legacy_to_unix(&legacy(1998, 6, 2, Some((8, 39))), 0),
            896_776_740
        );
    }
}
