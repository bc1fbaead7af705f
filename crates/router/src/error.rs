//! Errors: [`Error`] for the crate's fallible operations, [`Problem`] for one thing wrong with
//! one directory row, so that `ccgate directory check` can print `file:line:column: what`.

use std::fmt;

/// What went wrong in the router crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory source has problems; nothing was compiled. Every problem is listed, in
    /// source order.
    #[error("the directory has {} problem(s), the first: {}", .problems.len(), FirstProblem(.problems))]
    Invalid {
        /// Each problem, with its row.
        problems: Vec<Problem>,
    },
    /// A legacy address has no SMTP form that fits RFC 5321's 64-octet local part.
    #[error(
        "{address:?} is too long to be encoded as an SMTP address (RFC 5321 local part over 64 octets)"
    )]
    Unencodable {
        /// The legacy address, as written.
        address: String,
    },
}

/// Displays the first problem of a list, or `none`.
struct FirstProblem<'a>(&'a [Problem]);

impl fmt::Display for FirstProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.first() {
            Some(p) => p.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// One problem with one row of a directory source.
///
/// `line` and `column` are 1-based: the CSV line where the row starts and the character column
/// of the field; for LDAP, `line` is the entry's position in the search result, `column` is 1
/// and `id` is the entry's DN. Displayed as `line:column: what`, or `line:column: id: what`;
/// callers prefix the file name or URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The row's first line (CSV) or position (LDAP).
    pub line: usize,
    /// The field's column.
    pub column: usize,
    /// The row's identity where the source has one (an LDAP DN).
    pub id: Option<String>,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if let Some(id) = &self.id {
            write!(f, "{id}: ")?;
        }
        self.kind.fmt(f)
    }
}

impl std::error::Error for Problem {}

/// A row of another entry, named by a problem that involves two rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OtherRow {
    /// Its line (CSV) or position (LDAP).
    pub line: usize,
    /// Its identity (an LDAP DN), if any.
    pub id: Option<String>,
}

impl fmt::Display for OtherRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(id) = &self.id {
            write!(f, " ({id})")?;
        }
        Ok(())
    }
}

/// What is wrong with a row. The `Display` text is the message after `line:column:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The bytes are not UTF-8.
    #[error("not UTF-8 text (save the directory as UTF-8)")]
    NotUtf8,
    /// No header row: the file is empty or holds only comments.
    #[error("no header row (expected the column names of docs/directory.md)")]
    MissingHeader,
    /// A header names a column this format does not have.
    #[error("unknown column {name:?} (known: {})", crate::csv::COLUMNS.join(", "))]
    UnknownColumn {
        /// The name as written.
        name: String,
    },
    /// A header names the same column twice.
    #[error("column {name:?} appears twice (first in column {first_column})")]
    DuplicateColumn {
        /// The column's name.
        name: String,
        /// The character column of its first appearance.
        first_column: usize,
    },
    /// A required column is not in the header.
    #[error("required column {name:?} is missing from the header")]
    MissingColumn {
        /// The column's name.
        name: &'static str,
    },
    /// A row has more or fewer fields than the header.
    #[error("row has {found} fields, the header has {expected}")]
    FieldCount {
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A quoted field is not closed before the end of the input.
    #[error("quoted field is not closed")]
    UnterminatedQuote,
    /// Text follows the closing quote of a field.
    #[error(
        "text after the closing quote of a field (write \"\" for a quote inside a quoted field)"
    )]
    TextAfterQuote,
    /// A field or row is over its size limit.
    #[error("{what} is over the limit of {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A required field is empty.
    #[error("{field} is empty{}", if *.state_needs { " (required for this state)" } else { "" })]
    Empty {
        /// The field's column name.
        field: &'static str,
        /// True when the state makes it required.
        state_needs: bool,
    },
    /// The state is not `legacy`, `migrating` or `migrated`.
    #[error("state {value:?} is not legacy, migrating or migrated")]
    BadState {
        /// The value as written.
        value: String,
    },
    /// A proxy address has no `TYPE:` prefix.
    #[error("proxy address {text:?} has no TYPE: prefix (SMTP:, smtp:, CCMAIL:, X500:, MIGRATE:)")]
    ProxyWithoutType {
        /// The text as written.
        text: String,
    },
    /// A proxy address's value is malformed.
    #[error("bad proxy address {proxy:?}: {reason}")]
    BadProxy {
        /// The proxy as written.
        proxy: String,
        /// What is wrong.
        reason: String,
    },
    /// The legacy name and post office do not form a writable legacy address.
    #[error("bad legacy name {name:?} at post office {post_office:?}: {reason}")]
    BadLegacyName {
        /// The name.
        name: String,
        /// The post office.
        post_office: String,
        /// What is wrong.
        reason: String,
    },
    /// The target address is not an SMTP address.
    #[error("bad target_address {value:?}: {reason}")]
    BadTarget {
        /// The value as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// More than one primary proxy of one type (`SMTP:` twice).
    #[error(
        "two primary {kind} proxies: {first:?} and {second:?} (write secondaries in lower case, e.g. smtp:)"
    )]
    TwoPrimaries {
        /// The proxy type.
        kind: String,
        /// The first primary.
        first: String,
        /// The second primary.
        second: String,
    },
    /// A legacy name (the `legacy_name` column or a `CCMAIL:` proxy) is already another
    /// entry's: names are unique without regard to case across the whole directory.
    #[error(
        "legacy name {name:?} is also {other} (names are unique without regard to case, KB Q237588)"
    )]
    DuplicateName {
        /// The name as written in this row.
        name: String,
        /// The entry that has it first.
        other: OtherRow,
    },
    /// An address is already another entry's: an address belongs to one entry.
    #[error("address {address:?} also belongs to {other} (an address belongs to one entry)")]
    DuplicateAddress {
        /// The address as written in this row.
        address: String,
        /// The entry that has it first.
        other: OtherRow,
    },
    /// More rows than the directory may hold.
    #[error("more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
}
