//! Why a conversion failed. Only legacy → MIME can fail; MIME → legacy always gives a message.

/// Why [`legacy_to_mime`](crate::legacy_to_mime) could not convert a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The message has no `From:` line (Import rejects it too, KB Q192594).
    #[error("the message has no sender (no From:)")]
    NoSender,
    /// The `From:` address does not parse or has no SMTP form in the address map.
    #[error("From: {address:?} has no SMTP form: {reason}")]
    BadSender {
        /// The address as written.
        address: String,
        /// Why.
        reason: String,
    },
}
