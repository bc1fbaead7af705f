#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod address;
mod codepage;
mod date;
mod directory_file;
mod error;
mod frame;
mod message;
mod reader;
mod text;
mod validate;
mod write;

pub use address::{
    AddressError, LegacyAddress, MAX_ADDRESS_LEN, RenderOptions, find_outside_quotes,
    parse_address, quote_display_name, unquote_display_name,
};
pub use codepage::Codepage;
pub use date::{DateError, DateOrder, LegacyDateTime, LegacyTime, YEAR_PIVOT, parse_date};
pub use directory_file::{
    DirectoryEntry, LOCATION_ORDER, Location, parse_directory, write_directory,
};
pub use error::{Diagnostic, ParseError, ParseErrorKind, Position, WriteError};
pub use message::{Header, Item, ItemBody, ItemKind, Message};
pub use reader::{
    DEFAULT_MAX_MESSAGE_SIZE, RawHeader, RawItem, RawMessage, ReadError, ReadMessage, ReadOptions,
    Reader, SliceReader,
};
pub use text::crlf_only;
pub use validate::{IE8_MAX_HEADER_BYTES, MAX_TEXT_ITEM_BYTES, Reject, check_import};
pub use write::{Dialect, WriteOptions, WriteReport, write_messages};
