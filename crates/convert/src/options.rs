//! What both directions need to know about the post office.

use ccgate_ccmail::{Codepage, DateOrder, Dialect, WriteOptions};

/// How to convert; build it from the `[legacy]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// SMTP domain of legacy users (`legacy.domain`); also the right-hand side of the
    /// Message-IDs made for legacy messages.
    pub legacy_domain: String,
    /// The connected post office (`legacy.post_office`).
    pub post_office: String,
    /// The gateway's post-office name (`legacy.gateway_po`).
    pub gateway_po: String,
    /// What the post office's Import accepts.
    pub dialect: Dialect,
    /// Field order of legacy dates.
    pub date_order: DateOrder,
    /// The post office's code page.
    pub codepage: Codepage,
    /// The post office's offset from UTC in minutes (legacy dates carry no zone): legacy dates
    /// are read and written in this offset. Default 0 (UTC).
    pub utc_offset_minutes: i16,
    /// Cut attachment names to 8.3 as the old connector did by default (KB Q190297). Default
    /// off: full names are kept.
    pub short_file_names: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            legacy_domain: "legacy.example.com".to_owned(),
            post_office: "HQ".to_owned(),
            gateway_po: "SMTPGW".to_owned(),
            dialect: Dialect::Ie8,
            date_order: DateOrder::Us,
            codepage: Codepage::Ibm437,
            utc_offset_minutes: 0,
            short_file_names: false,
        }
    }
}

impl ConvertOptions {
    /// The writer options for the post office (limits at their defaults).
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            dialect: self.dialect,
            date_order: self.date_order,
            codepage: self.codepage,
            gateway_po: self.gateway_po.clone(),
            ..WriteOptions::default()
        }
    }

    /// The reader options for the post office.
    pub fn read_options(&self) -> ccgate_ccmail::ReadOptions {
        ccgate_ccmail::ReadOptions {
            date_order: self.date_order,
            codepage: self.codepage,
            ..ccgate_ccmail::ReadOptions::default()
        }
    }
}
