//! Dates as the legacy side writes them: numeric, in the post office's locale order.
//!
//! Read (tolerant): 1-2 digit day and month, `/` or `-` between fields, 2- or 4-digit years,
//! an optional time `H:MM`, `H:MM:SS`, with or without a space before `AM`/`PM`. The field order
//! comes from the config (`us` M/D/Y, `eu` D/M/Y, `jp` Y/M/D) and is never guessed. Two-digit
//! years below [`YEAR_PIVOT`] are 20xx, the others 19xx (the Y2K rule of KB Q192595's era).
//!
//! Write (strict): `M/D/YY H:MM` in the configured order, 24-hour clock, no seconds, as the
//! Exchange connector wrote it (KB Q184052).

use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while_m_n};
use nom::character::complete::{char as ch, space0, space1};
use nom::combinator::{all_consuming, map_res, opt};
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Two-digit years below this are 20xx; the rest 19xx.
pub const YEAR_PIVOT: u16 = 70;

/// The order of day, month and year (`[legacy] date_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum DateOrder {
    /// `M/D/YY` (CCMC "Locale Date Format" 1).
    #[default]
    Us,
    /// `D/M/YY` (2).
    Eu,
    /// `YY/M/D` (3).
    Jp,
}

/// A calendar date with an optional time of day, as written in a legacy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegacyDateTime {
    /// Four-digit year.
    pub year: u16,
    /// 1-12.
    pub month: u8,
    /// 1-31, valid for the month.
    pub day: u8,
    /// Time of day, if the value carried one.
    pub time: Option<LegacyTime>,
}

/// A time of day on a 24-hour clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegacyTime {
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59, if written.
    pub second: Option<u8>,
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for LegacyDateTime {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let year = u.int_in_range(1970..=2069)?;
        let month = u.int_in_range(1..=12)?;
        let day = u.int_in_range(1..=days_in_month(year, month))?;
        let time = if u.arbitrary()? {
            Some(LegacyTime {
                hour: u.int_in_range(0..=23)?,
                minute: u.int_in_range(0..=59)?,
                second: None,
            })
        } else {
            None
        };
        Ok(Self {
            year,
            month,
            day,
            time,
        })
    }
}

/// Why a date did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown date format {input:?} for date order {order:?} (expected e.g. {example})")]
pub struct DateError {
    /// The input.
    pub input: String,
    /// The order it was read with.
    pub order: DateOrder,
    /// A valid example in that order.
    pub example: &'static str,
}

/// Parses a legacy date in the given order.
///
/// # Errors
/// [`DateError`] when the value is not a valid date (and time) in that order.
pub fn parse_date(input: &str, order: DateOrder) -> Result<LegacyDateTime, DateError> {
    let err = || DateError {
        input: input.to_owned(),
        order,
        example: match order {
            DateOrder::Us => "6/2/98 8:39",
            DateOrder::Eu => "2/6/98 8:39",
            DateOrder::Jp => "98/6/2 8:39",
        },
    };
    let (_, (a, b, c, time)) = all_consuming(date_time)
        .parse(input.trim())
        .map_err(|_| err())?;
    let (y, m, d) = match order {
        DateOrder::Us => (c, a, b),
        DateOrder::Eu => (c, b, a),
        DateOrder::Jp => (a, b, c),
    };
    let year = match y {
        0..YEAR_PIVOT => 2000 + y,
        YEAR_PIVOT..=99 => 1900 + y,
        _ => y,
    };
    let month = u8::try_from(m).map_err(|_| err())?;
    let day = u8::try_from(d).map_err(|_| err())?;
    if !(1..=12).contains(&month)
        || !(1900..=2099).contains(&year)
        || day == 0
        || day > days_in_month(year, month)
    {
        return Err(err());
    }
    let time = match time {
        None => None,
        Some((hour, minute, second, meridiem)) => {
            let hour = match meridiem {
                None if hour <= 23 => hour,
                Some(pm) if (1..=12).contains(&hour) => (hour % 12) + if pm { 12 } else { 0 },
                _ => return Err(err()),
            };
            if minute > 59 || second.is_some_and(|s| s > 59) {
                return Err(err());
            }
            Some(LegacyTime {
                hour,
                minute,
                second,
            })
        }
    };
    Ok(LegacyDateTime {
        year,
        month,
        day,
        time,
    })
}

/// Days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

type Time = (u8, u8, Option<u8>, Option<bool>);

/// `date-time = number sep number sep number [1*SP time]`
fn date_time(input: &str) -> IResult<&str, (u16, u16, u16, Option<Time>)> {
    let (input, a) = number(4).parse(input)?;
    let (input, _) = sep(input)?;
    let (input, b) = number(2).parse(input)?;
    let (input, _) = sep(input)?;
    let (input, c) = number(4).parse(input)?;
    let (input, time) = opt(preceded(space1, time_of_day)).parse(input)?;
    Ok((input, (a, b, c, time)))
}

/// `time = 1*2DIGIT ":" 2DIGIT [":" 2DIGIT] [*SP ("AM" / "PM")]`
fn time_of_day(input: &str) -> IResult<&str, Time> {
    let (input, hour) = map_res(number(2), u8::try_from).parse(input)?;
    let (input, _) = ch(':')(input)?;
    let (input, minute) = map_res(two_digits, u8::try_from).parse(input)?;
    let (input, second) = opt(preceded(ch(':'), map_res(two_digits, u8::try_from))).parse(input)?;
    let (input, meridiem) = opt(preceded(
        space0,
        alt((
            tag_no_case("AM").map(|_| false),
            tag_no_case("PM").map(|_| true),
        )),
    ))
    .parse(input)?;
    Ok((input, (hour, minute, second, meridiem)))
}

fn sep(input: &str) -> IResult<&str, &str> {
    alt((tag("/"), tag("-"))).parse(input)
}

fn number(max: usize) -> impl Fn(&str) -> IResult<&str, u16> {
    move |input| {
        map_res(
            take_while_m_n(1, max, |c: char| c.is_ascii_digit()),
            str::parse::<u16>,
        )
        .parse(input)
    }
}

fn two_digits(input: &str) -> IResult<&str, u16> {
    map_res(
        take_while_m_n(2, 2, |c: char| c.is_ascii_digit()),
        str::parse::<u16>,
    )
    .parse(input)
}

impl LegacyDateTime {
    /// Writes the date as the strict writer does: `M/D/YY H:MM` in the given order.
    pub fn display(&self, order: DateOrder) -> impl fmt::Display + '_ {
        DisplayDate { date: self, order }
    }
}

struct DisplayDate<'a> {
    date: &'a LegacyDateTime,
    order: DateOrder,
}

impl fmt::Display for DisplayDate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.date;
        let yy = d.year % 100;
        match self.order {
            DateOrder::Us => write!(f, "{}/{}/{yy:02}", d.month, d.day)?,
            DateOrder::Eu => write!(f, "{}/{}/{yy:02}", d.day, d.month)?,
            DateOrder::Jp => write!(f, "{yy:02}/{}/{}", d.month, d.day)?,
        }
        if let Some(t) = d.time {
            write!(f, " {}:{:02}", t.hour, t.minute)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(year: u16, month: u8, day: u8, hm: Option<(u8, u8)>) -> LegacyDateTime {
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
    fn reads_every_form() {
        let cases = [
            ("6/2/98 8:39", DateOrder::Us, dt(1998, 6, 2, Some((8, 39)))),
            (
                "5/6/97 3:10PM",
                DateOrder::Us,
                dt(1997, 5, 6, Some((15, 10))),
            ),
            (
                "5/6/97 12:10 am",
                DateOrder::Us,
                dt(1997, 5, 6, Some((0, 10))),
            ),
            ("9-11-1998", DateOrder::Us, dt(1998, 9, 11, None)),
            ("2/6/98 8:39", DateOrder::Eu, dt(1998, 6, 2, Some((8, 39)))),
            ("98/6/2 8:39", DateOrder::Jp, dt(1998, 6, 2, Some((8, 39)))),
            ("1/1/00 0:00", DateOrder::Us, dt(2000, 1, 1, Some((0, 0)))),
            (
                "12/31/69 23:59",
                DateOrder::Us,
                dt(2069, 12, 31, Some((23, 59))),
            ),
            ("1/1/70", DateOrder::Us, dt(1970, 1, 1, None)),
            ("2/29/2000", DateOrder::Us, dt(2000, 2, 29, None)),
        ];
        for (input, order, want) in cases {
            assert_eq!(parse_date(input, order), Ok(want), "{input}");
        }
        let with_seconds = parse_date("6/2/98 8:39:07", DateOrder::Us).unwrap();
        assert_eq!(with_seconds.time.and_then(|t| t.second), Some(7));
    }

    #[test]
    fn rejects_what_import_would_not_read() {
        for (input, order) in [
            ("13/2/98", DateOrder::Us),
            ("2/13/98", DateOrder::Eu),
            ("2/30/98", DateOrder::Us),
            ("2/29/99", DateOrder::Us),
            ("6/2/98 24:00", DateOrder::Us),
            ("6/2/98 13:00PM", DateOrder::Us),
            ("6/2/98 8:5", DateOrder::Us),
            ("Tue, 2 Jun 1998 08:39", DateOrder::Us),
            ("", DateOrder::Us),
            ("6/2", DateOrder::Us),
        ] {
            assert!(parse_date(input, order).is_err(), "{input:?}");
        }
    }

    #[test]
    fn writes_in_order_and_reads_back() {
        let d = dt(2003, 11, 4, Some((9, 5)));
        for (order, text) in [
            (DateOrder::Us, "11/4/03 9:05"),
            (DateOrder::Eu, "4/11/03 9:05"),
            (DateOrder::Jp, "03/11/4 9:05"),
        ] {
            assert_eq!(d.display(order).to_string(), text);
            assert_eq!(parse_date(text, order), Ok(d));
        }
    }
}
