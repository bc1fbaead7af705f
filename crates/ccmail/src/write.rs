//! The strict writer: Import files that the configured Import version accepts.

use crate::{Codepage, DateOrder};

/// What the post office's Import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Dialect {
    /// Import 5.12-5.15: tolerant of brackets.
    Ie5,
    /// Import 6.x/8.x: rejects `[`/`]` in addresses, subjects with both brackets, headers over
    /// the header buffer (KB Q232687, Q234350, Q166499).
    #[default]
    Ie8,
}

/// How to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Which Import version's rules to follow.
    pub dialect: Dialect,
    /// Field order of `Date:`.
    pub date_order: DateOrder,
    /// The post office's code page.
    pub codepage: Codepage,
    /// The gateway's post-office name, used to re-encode bracketed SMTP forms as
    /// `user@domain at GATEWAYPO`.
    pub gateway_po: String,
    /// Largest header block in bytes (Import 8.x's "Header Buffer Full" at 4,096).
    pub max_header_bytes: usize,
    /// Largest text item in bytes (Import turns larger ones into file items).
    pub max_text_item_bytes: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dialect: Dialect::Ie8,
            date_order: DateOrder::Us,
            codepage: Codepage::Ibm437,
            gateway_po: "SMTPGW".to_owned(),
            max_header_bytes: 4096,
            max_text_item_bytes: 20 * 1024,
        }
    }
}
