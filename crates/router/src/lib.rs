#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod csv;
mod directory;
mod error;
mod handle;
mod rewrite;
mod route;
mod tag;

pub use crate::csv::{COLUMNS, MAX_FIELD_LEN, parse_csv};
pub use directory::{
    Directory, Entry, MAX_ENTRIES, MAX_PROXIES, Matched, MatchedBy, Proxy, ProxyKind, RawEntry,
    RawField, State, split_proxies,
};
pub use error::{Error, OtherRow, Problem, ProblemKind};
pub use handle::DirectoryHandle;
pub use rewrite::{
    AddressForm, Generated, LegacyForm, SmtpForm, decode_generated, decode_tagged,
    encode_generated, encode_tagged, rfc5322_phrase,
};
pub use route::{
    Cutover, Decision, Destination, Origin, Recipient, RejectCode, Routed, Router, RouterConfig,
    Rule, Step, Why,
};
pub use tag::{
    Day, KEY_LEN, MAX_LIFETIME_DAYS, RawTag, ReplyTags, TAG_LEN, TagError, TagKey, TagKeys,
    TagStatus, hmac_sha256, looks_like_tag, parse_tag,
};
