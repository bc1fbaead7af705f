//! What Import 8.x would reject (legacy-format.md §4), found in a message that was read.
//!
//! `ccgate check --dialect ie5|ie8` reports these; the writer prevents them (write.rs).

use std::fmt;

use crate::{Dialect, Header, ItemBody, ItemKind, Message};

/// The header buffer of Import 8.2x and earlier (KB Q166499, Q266711).
pub const IE8_MAX_HEADER_BYTES: usize = 4096;
/// Text items larger than this are turned into file items by Import (KB Q156063 §2.6.15).
pub const MAX_TEXT_ITEM_BYTES: usize = 20 * 1024;

/// One thing Import 8.x would do to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reject {
    /// `[` or `]` in an address: rejected, and the old connector's queue stuck (KB Q232687).
    BracketInAddress {
        /// Header keyword.
        header: String,
        /// The address.
        address: String,
    },
    /// A subject holding both `[` and `]` (KB Q234350).
    SubjectBrackets {
        /// The subject.
        subject: String,
    },
    /// Headers over the header buffer: "Header Buffer Full" (KB Q166499).
    HeaderBufferFull {
        /// Bytes of header lines.
        bytes: usize,
    },
    /// A date Import cannot read: "Unknown Date Format", exit 5 (KB Q180641).
    UnknownDateFormat {
        /// The value.
        value: String,
    },
    /// No sender or an empty `From:` (KB Q192594).
    EmptyFrom,
    /// A recipient with no name, `at PO` only (KB Q249133).
    NamelessRecipient {
        /// Header keyword.
        header: String,
        /// The value.
        address: String,
    },
    /// No recipient at all.
    NoRecipients,
    /// A text item over 20 KB: not rejected, but Import turns it into a file item.
    LargeTextItem {
        /// Its size in bytes.
        bytes: usize,
    },
}

impl Reject {
    /// False for what Import accepts but changes ([`Reject::LargeTextItem`]).
    pub fn is_rejected(&self) -> bool {
        !matches!(self, Self::LargeTextItem { .. })
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BracketInAddress { header, address } => {
                write!(
                    f,
                    "{header}: {address:?} holds '[' or ']', which Import 8.x rejects (KB Q232687)"
                )
            }
            Self::SubjectBrackets { subject } => {
                write!(
                    f,
                    "Subject: {subject:?} holds both '[' and ']', which Import 8.3 rejects (KB Q234350)"
                )
            }
            Self::HeaderBufferFull { bytes } => {
                write!(
                    f,
                    "headers of {bytes} bytes exceed Import's {IE8_MAX_HEADER_BYTES}-byte header buffer (KB Q166499)"
                )
            }
            Self::UnknownDateFormat { value } => {
                write!(
                    f,
                    "Date: {value:?} is not in the post office's date format: Import answers Unknown Date Format (KB Q180641)"
                )
            }
            Self::EmptyFrom => write!(
                f,
                "no sender (empty From:), which Import cannot take (KB Q192594)"
            ),
            Self::NamelessRecipient { header, address } => {
                write!(
                    f,
                    "{header}: {address:?} has no name before 'at' (KB Q249133)"
                )
            }
            Self::NoRecipients => write!(f, "no recipient"),
            Self::LargeTextItem { bytes } => {
                write!(
                    f,
                    "a text item of {bytes} bytes exceeds 20 KB; Import turns it into a file item (KB Q156063)"
                )
            }
        }
    }
}

/// Everything in `msg` that the dialect's Import would reject or change. `header_bytes` is the
/// size of the header lines as read (see `ReadMessage::header_bytes`).
///
/// Both dialects: an unreadable date, an empty sender, no recipient, a nameless recipient,
/// headers over the buffer, large text items. `Ie8` adds brackets in addresses and subjects.
pub fn check_import(msg: &Message, header_bytes: usize, dialect: Dialect) -> Vec<Reject> {
    let ie8 = dialect == Dialect::Ie8;
    let mut found = Vec::new();
    let mut has_from = false;
    let mut has_rcpt = false;
    for header in &msg.headers {
        match header {
            Header::From(a) | Header::To(a) | Header::Cc(a) | Header::Bcc(a) => {
                let keyword = header.keyword().to_owned();
                let trimmed = a.trim();
                if matches!(header, Header::From(_)) {
                    has_from |= !trimmed.is_empty();
                } else {
                    has_rcpt = true;
                    let lower = trimmed.to_ascii_lowercase();
                    if trimmed.is_empty() || lower == "at" || lower.starts_with("at ") {
                        found.push(Reject::NamelessRecipient {
                            header: keyword.clone(),
                            address: a.clone(),
                        });
                    }
                }
                if ie8 && a.contains(['[', ']']) {
                    found.push(Reject::BracketInAddress {
                        header: keyword,
                        address: a.clone(),
                    });
                }
            }
            Header::Subject(s) if ie8 && s.contains('[') && s.contains(']') => {
                found.push(Reject::SubjectBrackets { subject: s.clone() });
            }
            Header::Other { keyword, value } if keyword.eq_ignore_ascii_case("date") => {
                found.push(Reject::UnknownDateFormat {
                    value: value.clone(),
                });
            }
            _ => {}
        }
    }
    if !has_from {
        found.push(Reject::EmptyFrom);
    }
    if !has_rcpt {
        found.push(Reject::NoRecipients);
    }
    if header_bytes > IE8_MAX_HEADER_BYTES {
        found.push(Reject::HeaderBufferFull {
            bytes: header_bytes,
        });
    }
    for item in &msg.items {
        if let (ItemKind::Text, ItemBody::Text(text)) = (&item.kind, &item.body) {
            // Code-page bytes are one per character.
            let bytes = text.chars().count();
            if bytes > MAX_TEXT_ITEM_BYTES {
                found.push(Reject::LargeTextItem { bytes });
            }
        }
    }
    found
}
