#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod address;
mod date;
mod error;
mod id;
mod lane;
mod units;

pub use address::{EmailAddress, Envelope, ReversePath, check_domain};
pub use date::{
    civil_from_days, day_name, days_from_civil, month_name, rfc5322_date, rfc5322_date_at,
    rfc5322_date_ms,
};
pub use error::CoreError;
pub use id::QueueId;
pub use lane::Lane;
pub use units::{format_duration, parse_duration, parse_size};
