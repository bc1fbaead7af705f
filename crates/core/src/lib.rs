#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod address;
mod error;
mod id;
mod units;

pub use address::{EmailAddress, Envelope, ReversePath};
pub use error::CoreError;
pub use id::QueueId;
pub use units::{format_duration, parse_duration, parse_size};
