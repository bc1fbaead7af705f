#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod address;
mod codepage;
mod date;
mod message;
mod write;

pub use address::{AddressError, LegacyAddress, RenderOptions, parse_address};
pub use codepage::Codepage;
pub use date::{DateError, DateOrder, LegacyDateTime, LegacyTime, YEAR_PIVOT, parse_date};
pub use message::{Header, Item, ItemBody, ItemKind, Message};
pub use write::{Dialect, WriteOptions};
