//! Typed delivery outcomes: what a delivery agent reports back for each recipient.
//!
//! The spool decides "retry" or "bounce" only through [`DeliveryError::is_transient`] and
//! [`DeliveryError::is_permanent`], never by matching reply texts (lettre's `Error`). The
//! [`FailureScope`] says whether the destination itself failed (connection refused, greeting
//! timeout): only those failures count towards marking a lane dead.

use std::fmt;
use std::str::FromStr;

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StatusCode {
    class: u8,
    subject: u16,
    detail: u16,
}

impl StatusCode {
    /// `4.0.0`: some transient failure.
    pub const TRANSIENT: Self = Self::new_unchecked(4, 0, 0);
    /// `5.0.0`: some permanent failure.
    pub const PERMANENT: Self = Self::new_unchecked(5, 0, 0);
    /// `4.4.7`: delivery time expired (RFC 3463 §3.5).
    pub const EXPIRED: Self = Self::new_unchecked(4, 4, 7);
    /// `4.4.1`: no answer from host.
    pub const NO_ANSWER: Self = Self::new_unchecked(4, 4, 1);

    /// A status code; `None` unless the class is 2, 4 or 5 and subject and detail are below
    /// 1000 (RFC 3463 §2 allows 1 to 3 digits).
    pub fn new(class: u8, subject: u16, detail: u16) -> Option<Self> {
        (matches!(class, 2 | 4 | 5) && subject < 1000 && detail < 1000)
            .then_some(Self::new_unchecked(class, subject, detail))
    }

    const fn new_unchecked(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }

    /// 2 (success), 4 (persistent transient) or 5 (permanent).
    pub fn class(&self) -> u8 {
        self.class
    }

    /// The subject digit(s).
    pub fn subject(&self) -> u16 {
        self.subject
    }

    /// The detail digit(s).
    pub fn detail(&self) -> u16 {
        self.detail
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl FromStr for StatusCode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an enhanced status code like 5.1.1");
        let mut parts = s.trim().splitn(3, '.');
        let mut next = || parts.next().ok_or_else(bad);
        let class = next()?.parse::<u8>().map_err(|_| bad())?;
        let subject = next()?.parse::<u16>().map_err(|_| bad())?;
        let detail = next()?.parse::<u16>().map_err(|_| bad())?;
        Self::new(class, subject, detail).ok_or_else(bad)
    }
}

impl TryFrom<String> for StatusCode {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<StatusCode> for String {
    fn from(value: StatusCode) -> Self {
        value.to_string()
    }
}

/// Whether a failure may go away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Try again later (4xx, timeouts, connection failures).
    Transient,
    /// Never try again; bounce (5xx, invalid recipient).
    Permanent,
}

/// What failed: one recipient, the whole message, or the destination itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureScope {
    /// The destination answered and refused this recipient (e.g. `450` or `550` at RCPT).
    Recipient,
    /// The destination answered and refused the message (e.g. `554` after DATA, conversion failed).
    Message,
    /// The destination did not answer properly (connection refused, timeout, `421` greeting,
    /// post office locked). Counts towards marking the lane dead.
    Destination,
}

/// Why a delivery to one recipient failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{text}")]
pub struct DeliveryError {
    severity: Severity,
    scope: FailureScope,
    status: Option<StatusCode>,
    diagnostic: Option<String>,
    text: String,
}

impl DeliveryError {
    /// A failure that may go away: the recipient is deferred and retried.
    pub fn transient(scope: FailureScope, text: impl Into<String>) -> Self {
        Self::new(Severity::Transient, scope, text)
    }

    /// A failure that will not go away: the recipient fails and the sender gets a bounce.
    pub fn permanent(scope: FailureScope, text: impl Into<String>) -> Self {
        Self::new(Severity::Permanent, scope, text)
    }

    fn new(severity: Severity, scope: FailureScope, text: impl Into<String>) -> Self {
        Self {
            severity,
            scope,
            status: None,
            diagnostic: None,
            text: text.into(),
        }
    }

    /// Adds the enhanced status code (used in bounces and listings).
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Adds the remote server's reply, for a bounce's `Diagnostic-Code: smtp; ...` field.
    #[must_use]
    pub fn with_diagnostic(mut self, reply: impl Into<String>) -> Self {
        self.diagnostic = Some(reply.into());
        self
    }

    /// True when the recipient should be retried later.
    pub fn is_transient(&self) -> bool {
        self.severity == Severity::Transient
    }

    /// True when the recipient should fail now and be bounced.
    pub fn is_permanent(&self) -> bool {
        self.severity == Severity::Permanent
    }

    /// Transient or permanent.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// Recipient, message or destination.
    pub fn scope(&self) -> FailureScope {
        self.scope
    }

    /// The enhanced status code, if the agent gave one.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The status code to report: the given one, else `4.0.0` or `5.0.0` by severity.
    pub fn effective_status(&self) -> StatusCode {
        self.status.unwrap_or(match self.severity {
            Severity::Transient => StatusCode::TRANSIENT,
            Severity::Permanent => StatusCode::PERMANENT,
        })
    }

    /// The remote server's reply, if any.
    pub fn diagnostic(&self) -> Option<&str> {
        self.diagnostic.as_deref()
    }

    /// The human-readable reason.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// What a delivery agent reports for one recipient: `Ok(())` when the destination accepted it.
pub type DeliveryResult = Result<(), DeliveryError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        for (input, ok) in [
            ("5.1.1", true),
            ("4.4.7", true),
            ("2.0.0", true),
            ("3.0.0", false),
            ("5.1", false),
            ("5.1000.1", false),
            ("x.1.1", false),
        ] {
            assert_eq!(input.parse::<StatusCode>().is_ok(), ok, "{input}");
        }
        assert_eq!("5.1.1".parse::<StatusCode>().unwrap().to_string(), "5.1.1");
    }

    #[test]
    fn classification() {
        let t = DeliveryError::transient(FailureScope::Destination, "connection refused");
        assert!(t.is_transient() && !t.is_permanent());
        assert_eq!(t.effective_status(), StatusCode::TRANSIENT);
        let p = DeliveryError::permanent(FailureScope::Recipient, "no such user")
            .with_status(StatusCode::new(5, 1, 1).unwrap());
        assert!(p.is_permanent() && !p.is_transient());
        assert_eq!(p.effective_status().to_string(), "5.1.1");
    }
}
