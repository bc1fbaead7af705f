//! Replies: the [`Reply`] type, its wire encoding, every reply text this server sends, and
//! [`for_error`], the one place where an [`Error`] becomes a reply.
//!
//! Enhanced status codes (RFC 2034, RFC 3463) are on every reply except the greeting and the
//! answers to HELO and EHLO, as RFC 2034 section 3 asks. Texts follow Postfix where Postfix has
//! one, so that operators and scripts used to it feel at home.

use std::borrow::Cow;
use std::fmt;

use ccgate_core::QueueId;

use crate::error::{Error, NotQueued, Part, RelayTrick, Verb};

/// An enhanced mail system status code, `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject: 0 other, 1 addressing, 3 mail system, 4 network, 5 protocol, 6 content,
    /// 7 security.
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedStatus {
    /// `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply: a code, an optional enhanced status, and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<EnhancedStatus>,
    lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(
        code: u16,
        status: Option<EnhancedStatus>,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply; an empty `lines` encodes as one line with no text.
    pub fn multiline(
        code: u16,
        status: Option<EnhancedStatus>,
        lines: Vec<Cow<'static, str>>,
    ) -> Self {
        Self {
            code,
            status,
            lines,
        }
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if the reply carries one.
    pub fn status(&self) -> Option<EnhancedStatus> {
        self.status
    }

    /// The text lines, without code and status.
    pub fn lines(&self) -> &[Cow<'static, str>] {
        &self.lines
    }

    /// 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 4xx: the client may try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: the client must not repeat the same command.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the reply in wire form: `250-first` ... `250 last`, each line ending in CR LF.
    /// A CR or LF inside a text (none of this crate's texts has one) is sent as a space, so a
    /// reply can never split into extra lines.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let count = self.lines.len().max(1);
        let empty: [Cow<'static, str>; 1] = [Cow::Borrowed("")];
        let lines = if self.lines.is_empty() {
            &empty[..]
        } else {
            &self.lines[..]
        };
        for (idx, text) in lines.iter().enumerate() {
            let separator = if idx.saturating_add(1) == count {
                ' '
            } else {
                '-'
            };
            let mut line = format!("{:03}{separator}", self.code.min(999));
            if let Some(status) = self.status {
                line.push_str(&status.to_string());
                if !text.is_empty() {
                    line.push(' ');
                }
            }
            line.extend(
                text.chars()
                    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
            );
            out.extend_from_slice(line.trim_end_matches(' ').as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The reply in wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// `220 <hostname> ESMTP ccgate`.
    pub fn greeting(hostname: &str) -> Self {
        Self::new(220, None, format!("{hostname} {GREETING}"))
    }

    /// The answer to EHLO: the host name, then the extensions.
    pub fn ehlo(hostname: &str, max_message_size: u64, starttls: bool) -> Self {
        let mut lines: Vec<Cow<'static, str>> = vec![
            Cow::Owned(hostname.to_owned()),
            Cow::Borrowed(EXT_PIPELINING),
            Cow::Owned(format!("{EXT_SIZE} {max_message_size}")),
            Cow::Borrowed(EXT_8BITMIME),
            Cow::Borrowed(EXT_ENHANCEDSTATUSCODES),
            Cow::Borrowed(EXT_SMTPUTF8),
        ];
        if starttls {
            lines.push(Cow::Borrowed(EXT_STARTTLS));
        }
        Self::multiline(250, None, lines)
    }

    /// The answer to HELO: `250 <hostname>`.
    pub fn helo(hostname: &str) -> Self {
        Self::new(250, None, hostname.to_owned())
    }

    /// `250 2.0.0 Ok` (RSET, NOOP).
    pub fn ok() -> Self {
        Self::new(250, Some(STATUS_OK), OK)
    }

    /// `250 2.1.0 Ok` (MAIL).
    pub fn sender_ok() -> Self {
        Self::new(250, Some(STATUS_SENDER_OK), OK)
    }

    /// `250 2.1.5 Ok` (RCPT).
    pub fn recipient_ok() -> Self {
        Self::new(250, Some(STATUS_RECIPIENT_OK), OK)
    }

    /// `354 End data with <CR><LF>.<CR><LF>`.
    pub fn start_data() -> Self {
        Self::new(354, None, START_DATA)
    }

    /// `250 2.0.0 Ok: queued as <id>`: only after the message is durably queued.
    pub fn queued(queue_id: &QueueId) -> Self {
        Self::new(250, Some(STATUS_OK), format!("{QUEUED_AS} {queue_id}"))
    }

    /// `221 2.0.0 Bye`.
    pub fn bye() -> Self {
        Self::new(221, Some(STATUS_OK), BYE)
    }

    /// `220 2.0.0 Ready to start TLS`.
    pub fn ready_to_start_tls() -> Self {
        Self::new(220, Some(STATUS_OK), READY_TO_START_TLS)
    }

    /// `252 2.0.0 Cannot VRFY user, ...`: this server never confirms addresses (as Postfix).
    pub fn cannot_vrfy() -> Self {
        Self::new(252, Some(EnhancedStatus::new(2, 0, 0)), CANNOT_VRFY)
    }

    /// `214 2.0.0 Commands: ...`.
    pub fn help() -> Self {
        Self::new(214, Some(STATUS_OK), HELP)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

// Positive replies.

/// Follows the host name in the greeting.
pub const GREETING: &str = "ESMTP ccgate";
/// RSET, NOOP, MAIL, RCPT.
pub const OK: &str = "Ok";
/// The 354 reply to DATA.
pub const START_DATA: &str = "End data with <CR><LF>.<CR><LF>";
/// Precedes the queue id in the final 250 reply to DATA.
pub const QUEUED_AS: &str = "Ok: queued as";
/// QUIT.
pub const BYE: &str = "Bye";
/// STARTTLS.
pub const READY_TO_START_TLS: &str = "Ready to start TLS";
/// VRFY (RFC 5321 3.5.3).
pub const CANNOT_VRFY: &str = "Cannot VRFY user, but will accept message and attempt delivery";
/// HELP.
pub const HELP: &str = "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS";

// EHLO keywords.

/// RFC 2920.
pub const EXT_PIPELINING: &str = "PIPELINING";
/// RFC 1870; the limit follows.
pub const EXT_SIZE: &str = "SIZE";
/// RFC 6152.
pub const EXT_8BITMIME: &str = "8BITMIME";
/// RFC 2034.
pub const EXT_ENHANCEDSTATUSCODES: &str = "ENHANCEDSTATUSCODES";
/// RFC 6531.
pub const EXT_SMTPUTF8: &str = "SMTPUTF8";
/// RFC 3207.
pub const EXT_STARTTLS: &str = "STARTTLS";

// Error texts.

/// A command line over the limit.
pub const ERR_COMMAND_TOO_LONG: &str = "Error: command line too long";
/// A message line over the limit; the limit follows.
pub const ERR_TEXT_LINE_TOO_LONG: &str = "Error: message line longer than";
/// A bare LF (smuggling).
pub const ERR_BARE_LF: &str = "Error: bare <LF> received";
/// A bare CR in a command line (in message text it is text).
pub const ERR_BARE_CR: &str = "Error: bare <CR> received";
/// The message grew past the limit.
pub const ERR_MESSAGE_TOO_BIG: &str = "Error: message file too big";
/// A command line that is not UTF-8.
pub const ERR_BAD_UTF8: &str = "Error: bad UTF-8 syntax";
/// An unknown verb.
pub const ERR_UNKNOWN_COMMAND: &str = "Error: command not recognized";
/// HTTP or binary input.
pub const ERR_NON_SMTP: &str = "Error: non-SMTP command";
/// Usage of HELO.
pub const SYNTAX_HELO: &str = "Syntax: HELO hostname";
/// Usage of EHLO.
pub const SYNTAX_EHLO: &str = "Syntax: EHLO hostname";
/// Usage of MAIL.
pub const SYNTAX_MAIL: &str =
    "Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]";
/// Usage of RCPT.
pub const SYNTAX_RCPT: &str = "Syntax: RCPT TO:<address>";
/// Usage of VRFY.
pub const SYNTAX_VRFY: &str = "Syntax: VRFY address";
/// Usage of the commands that take no argument; the verb follows.
pub const SYNTAX_NO_ARGUMENTS: &str = "Syntax: no arguments allowed after";
/// A sender that is not an address.
pub const ERR_BAD_SENDER: &str = "Bad sender address syntax";
/// A recipient that is not an address.
pub const ERR_BAD_RECIPIENT: &str = "Bad recipient address syntax";
/// `<@a,@b:user@domain>`.
pub const ERR_SOURCE_ROUTE: &str = "Error: source routes (<@host:user@domain>) are not accepted";
/// `user%elsewhere@ours`.
pub const ERR_PERCENT_HACK: &str = "Error: the percent hack (user%domain@host) is not accepted";
/// `elsewhere!user@ours`.
pub const ERR_BANG_PATH: &str = "Error: bang paths (host!user@domain) are not accepted";
/// `"user@elsewhere"@ours`.
pub const ERR_QUOTED_ADDRESS: &str = "Error: quoted local parts holding @, % or ! are not accepted";
/// An unknown MAIL or RCPT parameter; the keyword follows.
pub const ERR_UNSUPPORTED_OPTION: &str = "Unsupported option:";
/// A known parameter with a bad value; the keyword follows.
pub const ERR_BAD_PARAMETER: &str = "Error: bad value or repetition of parameter";
/// ESMTP parameters after HELO.
pub const ERR_PARAMETERS_NEED_EHLO: &str = "Error: parameters need EHLO";
/// SIZE= over the limit.
pub const ERR_SIZE_EXCEEDS_LIMIT: &str = "Message size exceeds fixed limit";
/// A non-ASCII address without SMTPUTF8.
pub const ERR_NEEDS_SMTPUTF8: &str = "Error: non-ASCII address needs MAIL FROM with SMTPUTF8";
/// MAIL inside a transaction.
pub const ERR_NESTED_MAIL: &str = "Error: nested MAIL command";
/// RCPT or DATA before MAIL.
pub const ERR_NEED_MAIL: &str = "Error: need MAIL command";
/// DATA before RCPT.
pub const ERR_NEED_RCPT: &str = "Error: need RCPT command";
/// DATA after refused recipients only.
pub const ERR_NO_VALID_RECIPIENTS: &str = "Error: no valid recipients";
/// STARTTLS inside a transaction.
pub const ERR_TRANSACTION_IN_PROGRESS: &str = "Error: MAIL transaction in progress";
/// STARTTLS without a certificate.
pub const ERR_NOT_IMPLEMENTED: &str = "Error: command not implemented";
/// STARTTLS twice.
pub const ERR_TLS_ACTIVE: &str = "Error: TLS already active";
/// Early talkers and forbidden pipelining.
pub const ERR_SYNCHRONIZATION: &str = "Error: SMTP protocol synchronization";
/// Over the recipient limit.
pub const ERR_TOO_MANY_RECIPIENTS: &str = "Error: too many recipients";
/// Over the error limit.
pub const ERR_TOO_MANY_ERRORS: &str = "Error: too many errors";
/// The policy does not know the recipient.
pub const ERR_USER_UNKNOWN: &str = "Recipient address rejected: User unknown";
/// The recipient is not ours.
pub const ERR_RELAY_DENIED: &str = "Relay access denied";
/// The policy could not decide.
pub const ERR_RECIPIENT_TEMPFAIL: &str =
    "Recipient address rejected: directory lookup failed, try again later";
/// The queue could not store the message.
pub const ERR_QUEUE_WRITE: &str = "Error: queue file write error";
/// The queue's disk is full.
pub const ERR_DISK_FULL: &str = "Error: insufficient system storage";
/// Idle or total timeout.
pub const ERR_TIMEOUT: &str = "Error: timeout exceeded";
/// Graceful shutdown.
pub const ERR_SHUTTING_DOWN: &str = "Error: server shutting down";
/// Connection limit.
pub const ERR_TOO_MANY_CONNECTIONS: &str = "Error: too many connections";
/// Per-client connection limit (Postfix's anvil wording).
pub const ERR_TOO_MANY_CLIENT_CONNECTIONS: &str = "Error: too many connections from your address";
/// Per-client connection rate limit.
pub const ERR_CLIENT_CONNECTION_RATE: &str =
    "Error: too many connections per minute from your address";
/// The configured host name is unusable.
pub const ERR_CONFIGURATION: &str = "Error: server configuration error";

// Enhanced status codes used by more than one reply.

/// 2.0.0: success, nothing more to say.
pub const STATUS_OK: EnhancedStatus = EnhancedStatus::new(2, 0, 0);
/// 2.1.0: the sender is fine.
pub const STATUS_SENDER_OK: EnhancedStatus = EnhancedStatus::new(2, 1, 0);
/// 2.1.5: the recipient is fine.
pub const STATUS_RECIPIENT_OK: EnhancedStatus = EnhancedStatus::new(2, 1, 5);

/// The reply for an error: the only mapping from [`Error`] to the wire.
pub fn for_error(error: &Error) -> Reply {
    let s = |class, subject, detail| Some(EnhancedStatus::new(class, subject, detail));
    match error {
        Error::CommandLineTooLong { .. } => Reply::new(500, s(5, 5, 2), ERR_COMMAND_TOO_LONG),
        Error::TextLineTooLong { limit, .. } => Reply::new(
            550,
            s(5, 5, 2),
            format!("{ERR_TEXT_LINE_TOO_LONG} {limit} octets"),
        ),
        Error::BareLf { part, .. } => Reply::new(framing_code(*part), s(5, 5, 2), ERR_BARE_LF),
        Error::BareCr { part, .. } => Reply::new(framing_code(*part), s(5, 5, 2), ERR_BARE_CR),
        Error::MessageTooLarge { .. } => Reply::new(552, s(5, 3, 4), ERR_MESSAGE_TOO_BIG),
        Error::InvalidUtf8 => Reply::new(500, s(5, 5, 2), ERR_BAD_UTF8),
        Error::UnknownCommand => Reply::new(500, s(5, 5, 1), ERR_UNKNOWN_COMMAND),
        Error::NonSmtpCommand => Reply::new(554, s(5, 5, 1), ERR_NON_SMTP),
        Error::Syntax { verb } => Reply::new(501, s(5, 5, 4), syntax_text(*verb)),
        Error::BadSender { .. } => Reply::new(501, s(5, 1, 7), ERR_BAD_SENDER),
        Error::BadRecipient { .. } => Reply::new(501, s(5, 1, 3), ERR_BAD_RECIPIENT),
        Error::RelayTrick { trick } => Reply::new(553, s(5, 7, 1), trick_text(*trick)),
        Error::UnsupportedParameter { keyword } => Reply::new(
            555,
            s(5, 5, 4),
            format!("{ERR_UNSUPPORTED_OPTION} {keyword}"),
        ),
        Error::BadParameter { keyword } => {
            Reply::new(501, s(5, 5, 4), format!("{ERR_BAD_PARAMETER} {keyword}"))
        }
        Error::ParametersNeedEhlo => Reply::new(555, s(5, 5, 4), ERR_PARAMETERS_NEED_EHLO),
        Error::DeclaredSizeTooLarge { .. } => Reply::new(552, s(5, 3, 4), ERR_SIZE_EXCEEDS_LIMIT),
        Error::NeedsSmtputf8 => Reply::new(553, s(5, 6, 7), ERR_NEEDS_SMTPUTF8),
        Error::NestedMail => Reply::new(503, s(5, 5, 1), ERR_NESTED_MAIL),
        Error::NeedMail { .. } => Reply::new(503, s(5, 5, 1), ERR_NEED_MAIL),
        Error::NeedRcpt => Reply::new(503, s(5, 5, 1), ERR_NEED_RCPT),
        Error::NoValidRecipients => Reply::new(554, s(5, 5, 1), ERR_NO_VALID_RECIPIENTS),
        Error::TransactionInProgress => Reply::new(503, s(5, 5, 1), ERR_TRANSACTION_IN_PROGRESS),
        Error::TlsUnavailable => Reply::new(502, s(5, 5, 1), ERR_NOT_IMPLEMENTED),
        Error::TlsAlreadyActive => Reply::new(554, s(5, 5, 1), ERR_TLS_ACTIVE),
        Error::EarlyTalker | Error::Synchronization { .. } => {
            Reply::new(554, s(5, 5, 0), ERR_SYNCHRONIZATION)
        }
        Error::TooManyRecipients { .. } => Reply::new(452, s(4, 5, 3), ERR_TOO_MANY_RECIPIENTS),
        Error::TooManyErrors { .. } => Reply::new(421, s(4, 7, 0), ERR_TOO_MANY_ERRORS),
        Error::UnknownRecipient => Reply::new(550, s(5, 1, 1), ERR_USER_UNKNOWN),
        Error::RelayDenied => Reply::new(554, s(5, 7, 1), ERR_RELAY_DENIED),
        Error::RecipientTempFail => Reply::new(450, s(4, 4, 3), ERR_RECIPIENT_TEMPFAIL),
        Error::Queue(NotQueued::Temporary) => Reply::new(451, s(4, 3, 0), ERR_QUEUE_WRITE),
        Error::Queue(NotQueued::DiskFull | NotQueued::MemoryBudget) => {
            Reply::new(452, s(4, 3, 1), ERR_DISK_FULL)
        }
        Error::Timeout => Reply::new(421, s(4, 4, 2), ERR_TIMEOUT),
        Error::ShuttingDown => Reply::new(421, s(4, 3, 2), ERR_SHUTTING_DOWN),
        Error::TooManyConnections => Reply::new(421, s(4, 7, 0), ERR_TOO_MANY_CONNECTIONS),
        Error::TooManyClientConnections => {
            Reply::new(421, s(4, 7, 0), ERR_TOO_MANY_CLIENT_CONNECTIONS)
        }
        Error::ClientConnectionRate => Reply::new(421, s(4, 7, 0), ERR_CLIENT_CONNECTION_RATE),
        Error::InvalidHostname { .. } => Reply::new(421, s(4, 3, 5), ERR_CONFIGURATION),
    }
}

/// A bare line end in a command is a syntax error (500); in the message it is a refusal of
/// the content (550, Postfix's `smtpd_forbid_bare_newline_reject_code`).
fn framing_code(part: Part) -> u16 {
    match part {
        Part::Command => 500,
        Part::Data => 550,
    }
}

fn syntax_text(verb: Verb) -> Cow<'static, str> {
    match verb {
        Verb::Helo => Cow::Borrowed(SYNTAX_HELO),
        Verb::Ehlo => Cow::Borrowed(SYNTAX_EHLO),
        Verb::Mail => Cow::Borrowed(SYNTAX_MAIL),
        Verb::Rcpt => Cow::Borrowed(SYNTAX_RCPT),
        Verb::Vrfy => Cow::Borrowed(SYNTAX_VRFY),
        other => Cow::Owned(format!("{SYNTAX_NO_ARGUMENTS} {other}")),
    }
}

fn trick_text(trick: RelayTrick) -> &'static str {
    match trick {
        RelayTrick::SourceRoute => ERR_SOURCE_ROUTE,
        RelayTrick::PercentHack => ERR_PERCENT_HACK,
        RelayTrick::BangPath => ERR_BANG_PATH,
        RelayTrick::QuotedAddress => ERR_QUOTED_ADDRESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads wire replies back (the inverse of `encode`), for round trips.
    fn decode(wire: &str) -> Reply {
        let mut code = 0;
        let mut status = None;
        let mut lines = Vec::new();
        for line in wire.split_terminator("\r\n") {
            code = line[..3].parse().unwrap();
            let mut text = &line[4..];
            let mut words = text.splitn(2, ' ');
            let first = words.next().unwrap();
            let parts: Vec<&str> = first.split('.').collect();
            if parts.len() == 3 && parts.iter().all(|p| p.parse::<u16>().is_ok()) {
                status = Some(EnhancedStatus::new(
                    parts[0].parse().unwrap(),
                    parts[1].parse().unwrap(),
                    parts[2].parse().unwrap(),
                ));
                text = words.next().unwrap_or("");
            }
            lines.push(Cow::Owned(text.to_owned()));
        }
        Reply::multiline(code, status, lines)
    }

    #[test]
    fn encoding() {
        let cases = [
            (
                Reply::greeting("mx.example"),
                "220 mx.example ESMTP ccgate\r\n",
            ),
            (Reply::ok(), "250 2.0.0 Ok\r\n"),
            (
                Reply::ehlo("mx.example", 1000, true),
                "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
                 250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n",
            ),
            (
                Reply::ehlo("mx.example", 5, false),
                "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 5\r\n250-8BITMIME\r\n\
                 250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n",
            ),
            (
                Reply::multiline(250, Some(STATUS_OK), vec!["a".into(), "".into()]),
                "250-2.0.0 a\r\n250 2.0.0\r\n",
            ),
            (Reply::multiline(250, None, vec![]), "250\r\n"),
            (Reply::new(550, None, "a\r\nb\nc"), "550 a  b c\r\n"),
            (
                Reply::queued(&"01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap()),
                "250 2.0.0 Ok: queued as 01ARZ3NDEKTSV4RRFFQ69G5FAV\r\n",
            ),
        ];
        for (reply, wire) in cases {
            assert_eq!(String::from_utf8(reply.to_bytes()).unwrap(), wire);
            assert_eq!(reply.to_string(), wire);
        }
    }

    #[test]
    fn error_replies() {
        let cases = [
            (
                Error::UnknownCommand,
                "500 5.5.1 Error: command not recognized\r\n",
            ),
            (
                Error::BareLf {
                    part: Part::Data,
                    line: 3,
                },
                "550 5.5.2 Error: bare <LF> received\r\n",
            ),
            (
                Error::BareCr {
                    part: Part::Command,
                    line: 0,
                },
                "500 5.5.2 Error: bare <CR> received\r\n",
            ),
            (
                Error::TextLineTooLong {
                    limit: 1000,
                    line: 2,
                },
                "550 5.5.2 Error: message line longer than 1000 octets\r\n",
            ),
            (
                Error::MessageTooLarge { limit: 5 },
                "552 5.3.4 Error: message file too big\r\n",
            ),
            (
                Error::Syntax { verb: Verb::Data },
                "501 5.5.4 Syntax: no arguments allowed after DATA\r\n",
            ),
            (
                Error::UnsupportedParameter {
                    keyword: "RET".into(),
                },
                "555 5.5.4 Unsupported option: RET\r\n",
            ),
            (
                Error::RelayTrick {
                    trick: RelayTrick::PercentHack,
                },
                "553 5.7.1 Error: the percent hack (user%domain@host) is not accepted\r\n",
            ),
            (
                Error::UnknownRecipient,
                "550 5.1.1 Recipient address rejected: User unknown\r\n",
            ),
            (Error::RelayDenied, "554 5.7.1 Relay access denied\r\n"),
            (
                Error::TooManyRecipients { limit: 3 },
                "452 4.5.3 Error: too many recipients\r\n",
            ),
            (
                Error::Synchronization { verb: Verb::Data },
                "554 5.5.0 Error: SMTP protocol synchronization\r\n",
            ),
            (
                Error::Queue(NotQueued::Temporary),
                "451 4.3.0 Error: queue file write error\r\n",
            ),
            (
                Error::Queue(NotQueued::DiskFull),
                "452 4.3.1 Error: insufficient system storage\r\n",
            ),
            (
                Error::Queue(NotQueued::MemoryBudget),
                "452 4.3.1 Error: insufficient system storage\r\n",
            ),
            (
                Error::TooManyClientConnections,
                "421 4.7.0 Error: too many connections from your address\r\n",
            ),
            (
                Error::ClientConnectionRate,
                "421 4.7.0 Error: too many connections per minute from your address\r\n",
            ),
            (
                Error::TooManyErrors { limit: 3 },
                "421 4.7.0 Error: too many errors\r\n",
            ),
        ];
        for (error, wire) in cases {
            let reply = for_error(&error);
            assert_eq!(
                String::from_utf8(reply.to_bytes()).unwrap(),
                wire,
                "{error:?}"
            );
            // Every error reply is negative and its status class matches its code.
            assert!(!reply.is_positive());
            let class = reply.status().map(|s| u16::from(s.class));
            assert_eq!(class, Some(reply.code() / 100), "{error:?}");
        }
    }

    #[test]
    fn round_trips() {
        let replies = [
            Reply::ok(),
            Reply::bye(),
            Reply::start_data(),
            Reply::help(),
            Reply::cannot_vrfy(),
            Reply::ehlo("h.example", 10, true),
            for_error(&Error::NoValidRecipients),
            Reply::multiline(
                451,
                Some(EnhancedStatus::new(4, 3, 0)),
                vec!["one".into(), "two words".into()],
            ),
        ];
        for reply in replies {
            let wire = reply.to_string();
            assert_eq!(decode(&wire), reply, "{wire}");
        }
    }
}
