//! The one error type of this crate.

/// What was wrong with a value handed to this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// An SMTP address failed validation.
    #[error("invalid address {input:?}: {reason}")]
    InvalidAddress {
        /// The input, as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A duration such as `"15m"` could not be read.
    #[error(
        "invalid duration {input:?}: expected a number followed by s, m, h, d or w (e.g. \"90s\", \"15m\")"
    )]
    InvalidDuration {
        /// The input, as given.
        input: String,
    },
    /// A size such as `"25MB"` could not be read.
    #[error("invalid size {input:?}: expected bytes or a number with KB, MB or GB (e.g. \"25MB\")")]
    InvalidSize {
        /// The input, as given.
        input: String,
    },
    /// A queue id was not a ULID.
    #[error("invalid queue id {input:?}: expected 26 characters of Crockford base 32")]
    InvalidQueueId {
        /// The input, as given.
        input: String,
    },
    /// A lane name that is not one of the known lanes.
    #[error(
        "unknown lane {input:?}: expected modern, legacy, cutover, unroutable, unknown or suppressed"
    )]
    UnknownLane {
        /// The input, as given.
        input: String,
    },
}
