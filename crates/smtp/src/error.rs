//! The one error type of this crate.
//!
//! Every way a client (or the layers around the session) can make an SMTP exchange fail is a
//! variant of [`Error`]. Each variant becomes exactly one reply in
//! [`reply::for_error`](crate::reply::for_error), the only place that maps errors to replies;
//! the `Display` texts here are for logs, not for the wire.

/// Where in the exchange a framing error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// A command line.
    Command,
    /// The message text between `354` and the final `CR LF . CR LF`.
    Data,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Command => "command",
            Self::Data => "message data",
        })
    }
}

/// The command a syntax or sequence error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `HELO`.
    Helo,
    /// `EHLO`.
    Ehlo,
    /// `MAIL FROM:`.
    Mail,
    /// `RCPT TO:`.
    Rcpt,
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`.
    Vrfy,
    /// `HELP`.
    Help,
    /// `STARTTLS`.
    StartTls,
}

impl Verb {
    /// The verb as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Helo => "HELO",
            Self::Ehlo => "EHLO",
            Self::Mail => "MAIL",
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Quit => "QUIT",
            Self::Vrfy => "VRFY",
            Self::Help => "HELP",
            Self::StartTls => "STARTTLS",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trick by which a client asks a gateway to relay through an address that looks local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelayTrick {
    /// `<@a,@b:user@domain>` (RFC 5321 Appendix C source route).
    SourceRoute,
    /// `user%elsewhere@ours`.
    PercentHack,
    /// `elsewhere!user@ours` (UUCP bang path).
    BangPath,
    /// `"user@elsewhere"@ours`: a quoted local part holding `@`, `%` or `!`.
    QuotedAddress,
}

impl std::fmt::Display for RelayTrick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SourceRoute => "source route",
            Self::PercentHack => "percent hack",
            Self::BangPath => "bang path",
            Self::QuotedAddress => "quoted local part hiding another address",
        })
    }
}

/// Why the I/O layer could not queue a complete message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum NotQueued {
    /// Any transient failure of the spool (`451 4.3.0`).
    #[error("the queue could not store the message")]
    Temporary,
    /// The spool's file system is full (`452 4.3.1`).
    #[error("the queue's disk is full")]
    DiskFull,
    /// The messages being received at once hold the whole memory budget the server sets
    /// aside for them (`452 4.3.1`, as for a full disk: insufficient system storage).
    #[error("the memory budget for messages in transit is used up")]
    MemoryBudget,
}

/// What went wrong in an SMTP exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Framing.
    /// A command line longer than the limit (RFC 5321 4.5.3.1.4: 512 octets with CR LF).
    #[error("command line longer than {limit} octets")]
    CommandLineTooLong {
        /// The limit in force, CR LF included.
        limit: usize,
    },
    /// A text line of the message longer than the limit (RFC 5321 4.5.3.1.6: 1000 octets
    /// with CR LF).
    #[error("line {line} of the message is longer than {limit} octets")]
    TextLineTooLong {
        /// The limit in force, CR LF included.
        limit: usize,
        /// The 1-based line number in the message.
        line: u64,
    },
    /// A line feed not preceded by a carriage return (SMTP smuggling, CVE-2023-51764).
    #[error("bare LF in {part} (line {line})")]
    BareLf {
        /// Command or message text.
        part: Part,
        /// The 1-based line number in the message, or 0 for a command.
        line: u64,
    },
    /// A carriage return not followed by a line feed.
    #[error("bare CR in {part} (line {line})")]
    BareCr {
        /// Command or message text.
        part: Part,
        /// The 1-based line number in the message, or 0 for a command.
        line: u64,
    },
    /// The message grew past the size limit while it was streamed.
    #[error("message larger than {limit} octets")]
    MessageTooLarge {
        /// The limit in force.
        limit: u64,
    },

    // Commands.
    /// A command line that is not UTF-8.
    #[error("command is not valid UTF-8")]
    InvalidUtf8,
    /// A verb this server does not know.
    #[error("unknown command")]
    UnknownCommand,
    /// Something that is not SMTP at all (HTTP, TLS on the plain port, binary noise): the
    /// session closes, as Postfix does for `smtpd_forbidden_commands`.
    #[error("non-SMTP command")]
    NonSmtpCommand,
    /// A known command with bad arguments.
    #[error("syntax error in {verb} command")]
    Syntax {
        /// The command.
        verb: Verb,
    },
    /// `MAIL FROM:<...>` holds something that is not an address.
    #[error("bad sender address: {reason}")]
    BadSender {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `RCPT TO:<...>` holds something that is not an address.
    #[error("bad recipient address: {reason}")]
    BadRecipient {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A recipient that tries to make the gateway relay.
    #[error("recipient uses a {trick}")]
    RelayTrick {
        /// Which trick.
        trick: RelayTrick,
    },
    /// A `MAIL` or `RCPT` parameter this server does not implement.
    #[error("unsupported parameter {keyword}")]
    UnsupportedParameter {
        /// The parameter's keyword, upper-cased (it is `ALPHA / DIGIT / "-"` only).
        keyword: String,
    },
    /// A known parameter with a bad or repeated value.
    #[error("bad value for parameter {keyword}")]
    BadParameter {
        /// The parameter's keyword.
        keyword: &'static str,
    },
    /// ESMTP parameters after `HELO` instead of `EHLO`.
    #[error("ESMTP parameters need EHLO")]
    ParametersNeedEhlo,
    /// `MAIL ... SIZE=n` announced more than the limit (RFC 1870).
    #[error("declared size {declared} exceeds the limit of {limit} octets")]
    DeclaredSizeTooLarge {
        /// What the client announced.
        declared: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A non-ASCII address in a transaction not opened with `SMTPUTF8` (RFC 6531 3.5).
    #[error("non-ASCII address without SMTPUTF8")]
    NeedsSmtputf8,

    // Sequence.
    /// `MAIL` inside a transaction.
    #[error("nested MAIL command")]
    NestedMail,
    /// `RCPT` or `DATA` without `MAIL`.
    #[error("{verb} without MAIL")]
    NeedMail {
        /// The early command.
        verb: Verb,
    },
    /// `DATA` without any `RCPT` command.
    #[error("DATA without RCPT")]
    NeedRcpt,
    /// `DATA` after `RCPT` commands that were all refused.
    #[error("DATA without any accepted recipient")]
    NoValidRecipients,
    /// `STARTTLS` inside a mail transaction.
    #[error("STARTTLS inside a mail transaction")]
    TransactionInProgress,
    /// `STARTTLS` when no certificate is configured.
    #[error("STARTTLS is not available")]
    TlsUnavailable,
    /// `STARTTLS` on a connection that already is TLS.
    #[error("TLS is already active")]
    TlsAlreadyActive,

    // Pipelining (RFC 2920) and synchronization.
    /// The client sent data before the greeting.
    #[error("client talked before the greeting")]
    EarlyTalker,
    /// The client sent more after a command that must end a pipelined group (EHLO, HELO,
    /// DATA, NOOP, VRFY, STARTTLS), or pipelined without EHLO.
    #[error("pipelining after {verb} where it is not allowed")]
    Synchronization {
        /// The command that was followed by unexpected input.
        verb: Verb,
    },

    // Limits.
    /// More recipients than the limit in one transaction.
    #[error("more than {limit} recipients")]
    TooManyRecipients {
        /// The limit in force.
        limit: usize,
    },
    /// The session reached its error limit and is closed.
    #[error("{limit} errors in one session")]
    TooManyErrors {
        /// The limit in force.
        limit: u32,
    },

    // Recipient policy.
    /// The policy does not know the recipient (`550 5.1.1`).
    #[error("unknown recipient")]
    UnknownRecipient,
    /// The recipient is not in a domain this gateway serves (`554 5.7.1`).
    #[error("relay access denied")]
    RelayDenied,
    /// The policy could not decide now (`450`).
    #[error("recipient lookup failed temporarily")]
    RecipientTempFail,

    // Layers around the session.
    /// The I/O layer failed to queue the message.
    #[error("queueing failed: {0}")]
    Queue(NotQueued),
    /// The I/O layer's idle or total timeout expired.
    #[error("timeout")]
    Timeout,
    /// The server is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// The server is at its connection limit.
    #[error("too many connections")]
    TooManyConnections,
    /// The client's address has as many sessions open as one client may have (Postfix's
    /// `smtpd_client_connection_count_limit`).
    #[error("too many connections from this client")]
    TooManyClientConnections,
    /// The client's address opened more sessions in the last minute than one client may
    /// (Postfix's `smtpd_client_connection_rate_limit`).
    #[error("too many connections per minute from this client")]
    ClientConnectionRate,
    /// The configured host name cannot be used in the greeting and `postmaster@` address.
    #[error("invalid host name {hostname:?}: {reason}")]
    InvalidHostname {
        /// The host name, as configured.
        hostname: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Error {
    /// True when the session must close the connection after sending this error's reply.
    pub fn closes_session(&self) -> bool {
        matches!(
            self,
            Self::NonSmtpCommand
                | Self::EarlyTalker
                | Self::Synchronization { .. }
                | Self::TooManyErrors { .. }
                | Self::Timeout
                | Self::ShuttingDown
                | Self::TooManyConnections
                | Self::TooManyClientConnections
                | Self::ClientConnectionRate
                | Self::InvalidHostname { .. }
        )
    }

    /// True when this error counts toward the session's error limit: the client's fault, and
    /// not something a well-behaved client meets in normal use (too many recipients, a
    /// temporary lookup failure and queue failures do not count).
    pub fn counts_toward_limit(&self) -> bool {
        !matches!(
            self,
            Self::TooManyRecipients { .. }
                | Self::RecipientTempFail
                | Self::Queue(_)
                | Self::Timeout
                | Self::ShuttingDown
                | Self::TooManyConnections
                | Self::TooManyClientConnections
                | Self::ClientConnectionRate
                | Self::InvalidHostname { .. }
        ) && !self.closes_session()
    }
}

impl From<NotQueued> for Error {
    fn from(value: NotQueued) -> Self {
        Self::Queue(value)
    }
}
