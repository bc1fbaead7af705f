#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address_map;
mod date;
mod error;
mod html;
mod line_length;
pub mod media_type;
mod message_id;
mod mime;
mod options;
mod to_legacy;
mod to_mime;

pub use address_map::{
    AddressMap, DefaultAddressMap, Mailbox, decode_local_part, encode_local_part,
};
pub use error::ConvertError;
pub use html::html_to_text;
pub use line_length::{SMTP_MAX_LINE, fit_line_length};
pub use message_id::{content_identity, legacy_message_id};
pub use options::ConvertOptions;
pub use to_legacy::{
    Conversion, MAX_FORWARD_TITLE_CHARS, MAX_SUBJECT_CHARS, ORIGINAL_NAME, mime_to_legacy,
    mime_to_legacy_from, unknown_sender,
};
pub use to_mime::{LegacyContext, MAX_NESTING, MimeMessage, legacy_to_mime};
