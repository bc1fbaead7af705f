//! The one entry into mail-parser, with its panics contained.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{Message, MessageParser};

/// mail-parser panicked on the input (it has a `debug_assert!` on malformed nesting, and any
/// parser may have a bug): the input is treated as unreadable, never allowed to take a
/// delivery or a conversion down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParserPanicked;

/// Parses an RFC 5322 message; `Ok(None)` when mail-parser finds no message in it.
pub(crate) fn parse(raw: &[u8]) -> Result<Option<Message<'_>>, ParserPanicked> {
    catch_unwind(AssertUnwindSafe(|| MessageParser::default().parse(raw)))
        .map_err(|_| ParserPanicked)
}
