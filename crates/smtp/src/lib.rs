#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

//! # Modules, in reading order
//!
//! - [`framing`]: command lines and the DATA stream over raw bytes ([`LineDecoder`],
//!   [`DataDecoder`]); strict CR LF, dot-unstuffing, line and size limits.
//! - [`command`]: one command line to a [`Command`]; refuses relay tricks.
//! - [`reply`]: the [`Reply`] type, every reply text, and [`for_error`].
//! - [`session`]: the [`Session`] state machine the I/O layer drives.
//! - [`error`]: the crate's [`Error`].
//! - [`client`]: the client side: [`ReplyReader`] for a server's replies, [`Capabilities`]
//!   from its EHLO reply (with [`encode_data`], what an SMTP client needs besides sockets).

pub mod client;
pub mod command;
pub mod error;
pub mod framing;
pub mod reply;
pub mod session;

// The core types that appear in this crate's API, so its users need not name ccgate-core.
pub use ccgate_core::{EmailAddress, Envelope, QueueId, ReversePath};
pub use client::{
    Capabilities, MAX_REPLY_LINE, MAX_REPLY_LINES, ReplyError, ReplyReader, ServerReply,
};
pub use command::{Body, Command, ForwardPath, MailParams, parse_command};
pub use error::{Error, NotQueued, Part, RelayTrick, Verb};
pub use framing::{
    DataDecoder, DataStatus, LineDecoder, LineStatus, MAX_COMMAND_LINE, MAX_TEXT_LINE,
    NO_LINE_LIMIT, encode_data,
};
pub use reply::{EnhancedStatus, Reply, for_error};
pub use session::{
    Event, Limits, MAX_ERRORS, MAX_MESSAGE_SIZE, MAX_RECIPIENTS, Output, Protocol, RcptVerdict,
    RecipientPolicy, Session, SessionConfig, Trace,
};
