//! Errors and diagnostics of the reader and the writer.

use std::fmt;

/// Where in the input something was found: byte offset, 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset from the start of the input.
    pub offset: u64,
    /// 1-based line.
    pub line: u64,
    /// 1-based column, in bytes.
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A message that could not be read. The reader resumes at the next `Message:` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {kind}")]
pub struct ParseError {
    /// Where the problem is.
    pub position: Position,
    /// What is wrong.
    pub kind: ParseErrorKind,
    /// Where the broken message started (offset of its first line).
    pub message_offset: u64,
    /// Where reading resumed (the next `Message:` line, or the end of the input).
    pub resume_offset: u64,
}

/// What was wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A message must start with a line `Message:`.
    #[error("expected 'Message:', found {found:?}")]
    ExpectedMessage {
        /// The start of the line that was found.
        found: String,
    },
    /// Between `Message:` and `Contents:` every line is `Keyword: value`.
    #[error("expected a header line 'Keyword: value' or 'Contents:', found {found:?}")]
    ExpectedHeader {
        /// The start of the line that was found.
        found: String,
    },
    /// `Contents:` is mandatory (KB Q234745: a message without it looped the old connector).
    #[error("missing 'Contents:' before {before}")]
    MissingContents {
        /// What came instead (`the next 'Message:'`, `end of file`).
        before: &'static str,
    },
    /// After `Contents:` every block starts with `<Kind> item:`.
    #[error("expected an item line such as 'Text item:', found {found:?}")]
    ExpectedItem {
        /// The start of the line that was found.
        found: String,
    },
    /// A directory line that is not `Label: value`.
    #[error("expected a directory line 'Label: value', found {found:?}")]
    ExpectedLabel {
        /// The start of the line that was found.
        found: String,
    },
    /// A directory entry without `Name:`.
    #[error("directory entry without 'Name:'")]
    MissingName,
    /// A location code that is not one of `P p L l R r A a`.
    #[error("location code {found:?} is not one of P p L l R r A a")]
    BadLocation {
        /// The value found.
        found: String,
    },
    /// A size line counts more bytes than the file holds after it: the file was cut short
    /// (a crashed export, a copy that stopped). The message is not read in part.
    #[error(
        "the {block} size line says {claimed} bytes, but the file ends {available} bytes after it: the file is truncated"
    )]
    Truncated {
        /// `message`, `contents` or `item`.
        block: &'static str,
        /// What the size line says.
        claimed: u64,
        /// What the file holds after it.
        available: u64,
    },
    /// A size line claims more than the reader's limit on one message.
    #[error("the {block} size line says {claimed} bytes, over the limit of {limit} bytes")]
    SizeOverLimit {
        /// `message` or `item`.
        block: &'static str,
        /// What the size line says.
        claimed: u64,
        /// The limit.
        limit: u64,
    },
    /// The message is larger than the reader's limit.
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
}

/// Something the reader noticed and worked around; the message was still read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub position: Position,
    /// What, as a sentence fragment.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position, self.message)
    }
}

/// Why the writer refused a message. Refusing is the point: Import 8.x would reject it and,
/// historically, wedge the queue behind it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No `From:`, or an empty one (KB Q192594).
    #[error("the message has no sender (empty From:)")]
    EmptyFrom,
    /// No `To:`, `Cc:` or `Bcc:`.
    #[error("the message has no recipient")]
    NoRecipients,
    /// An address that cannot be written in the dialect.
    #[error("{header}: cannot write address {address:?}: {reason}")]
    BadAddress {
        /// The header keyword.
        header: String,
        /// The address as given.
        address: String,
        /// Why.
        reason: String,
    },
    /// A header keyword the format cannot carry.
    #[error("header keyword {keyword:?} is not a word of letters, digits and '-'")]
    BadKeyword {
        /// The keyword.
        keyword: String,
    },
    /// `Date:` kept as text because it did not parse: Import would answer "Unknown Date Format".
    #[error("Date: {value:?} is not a date the post office can read")]
    BadDate {
        /// The value.
        value: String,
    },
    /// Even one recipient with the other headers exceeds the header buffer.
    #[error(
        "the headers need {needed} bytes, over the header buffer of {limit} bytes, even with one recipient per message"
    )]
    HeaderTooLarge {
        /// Bytes needed.
        needed: usize,
        /// The limit.
        limit: usize,
    },
    /// An item kind word the format cannot carry (or a known kind spelt as an unknown one).
    #[error("item kind {kind:?} is not a word of letters, digits and '-'")]
    BadKind {
        /// The kind word.
        kind: String,
    },
    /// An item title with a line break.
    #[error("item title {title:?} contains a line break")]
    BadTitle {
        /// The title.
        title: String,
    },
}
