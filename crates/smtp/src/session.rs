//! The SMTP server session as a state machine without I/O.
//!
//! The I/O layer owns the socket and the clock; the [`Session`] owns the protocol. The I/O
//! layer sends [`Session::greeting`], then feeds whatever it reads to [`Session::feed`] and gets
//! back an [`Output`]: how many input octets were consumed, the replies to send (in order), at
//! most one [`Event`] to act on, and whether to close after sending. Processing stops at an
//! event, and input after it stays unconsumed until the event is answered:
//!
//! - [`Event::StartTls`]: send the replies, run the TLS handshake, then call
//!   [`Session::tls_established`] (or close if the handshake fails).
//! - [`Event::MessageComplete`]: durably queue the message (prepending
//!   [`Trace::received_header`]), then call [`Session::message_queued`] and send its reply.
//!   The session never produces the final 250 for DATA by itself.
//!
//! Recipients are checked synchronously through the [`RecipientPolicy`] trait, so a pipelined
//! group of RCPT commands is answered in one pass.

use std::net::IpAddr;
use std::sync::Arc;

use ccgate_core::{EmailAddress, Envelope, QueueId, ReversePath};

use crate::command::{Command, ForwardPath, MailParams, parse_command};
use crate::error::{Error, NotQueued, Verb};
use crate::framing::{
    DataDecoder, DataStatus, LineDecoder, LineStatus, MAX_COMMAND_LINE, NO_LINE_LIMIT,
};
use crate::reply::{Reply, for_error};

/// Default largest message, in octets (Postfix `message_size_limit`).
pub const MAX_MESSAGE_SIZE: u64 = 10_240_000;
/// Default most recipients per transaction (Postfix `smtpd_recipient_limit`).
pub const MAX_RECIPIENTS: usize = 1000;
/// Default most errors per session before `421` and close (Postfix `smtpd_hard_error_limit`).
pub const MAX_ERRORS: u32 = 20;

/// Octets reserved up front for a message that announced its size, at most.
const MAX_PREALLOCATION: u64 = 1 << 20;

/// The limits a session enforces; every field defaults to the named const.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message after dot-unstuffing (`552 5.3.4` past it); advertised with SIZE.
    pub max_message_size: u64,
    /// Most accepted recipients per transaction (`452 4.5.3` past it).
    pub max_recipients: usize,
    /// Errors after which the session answers `421 4.7.0` and closes. A message queued
    /// successfully resets the count, as in Postfix.
    pub max_errors: u32,
    /// Longest command line, CR LF included.
    pub max_command_line: usize,
    /// Longest message text line, CR LF included (`550 5.5.2` past it). The default is
    /// [`NO_LINE_LIMIT`]: like Postfix, any line up to the message size is accepted, and the
    /// delivery side makes shorter lines where a next hop needs them.
    pub max_text_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: MAX_MESSAGE_SIZE,
            max_recipients: MAX_RECIPIENTS,
            max_errors: MAX_ERRORS,
            max_command_line: MAX_COMMAND_LINE,
            max_text_line: NO_LINE_LIMIT,
        }
    }
}

/// What every session of one listener shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    hostname: String,
    postmaster: EmailAddress,
    /// The limits.
    pub limits: Limits,
    /// True when a certificate is configured, so STARTTLS is offered.
    pub tls_available: bool,
}

impl SessionConfig {
    /// A configuration with default limits and no TLS.
    ///
    /// # Errors
    /// [`Error::InvalidHostname`] when `hostname` is not a domain or address literal (it is
    /// used in the greeting and as the domain of `<postmaster>`).
    pub fn new(hostname: &str) -> Result<Self, Error> {
        let postmaster =
            EmailAddress::new("postmaster", hostname).map_err(|e| Error::InvalidHostname {
                hostname: hostname.to_owned(),
                reason: match e {
                    ccgate_core::CoreError::InvalidAddress { reason, .. } => reason,
                    _ => "invalid domain",
                },
            })?;
        Ok(Self {
            hostname: postmaster.domain().to_owned(),
            postmaster,
            limits: Limits::default(),
            tls_available: false,
        })
    }

    /// The host name (lower-cased), as in the greeting.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// `postmaster@<hostname>`: where `RCPT TO:<postmaster>` goes.
    pub fn postmaster(&self) -> &EmailAddress {
        &self.postmaster
    }
}

/// The recipient policy's answer for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RcptVerdict {
    /// A local recipient the router resolves: `250 2.1.5`.
    Accept,
    /// In a served domain but not known: `550 5.1.1`.
    Unknown,
    /// Not in a served domain: `554 5.7.1`.
    RelayDenied,
    /// The lookup failed for now: `450 4.4.3`.
    TempFail,
}

/// Decides whether a recipient is accepted (the router plugs in here).
pub trait RecipientPolicy {
    /// The verdict for `rcpt`.
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict;

    /// Whether a recipient that looks like the percent hack in quotes (`"name%po"@ours`) is an
    /// address this gateway issued itself (a tagged reply address for a long legacy name) and
    /// goes where the gateway decides, never on to a host named in it. Without this, such a
    /// recipient is refused as a relay trick (`553 5.7.1`). Default: none is.
    fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
        let _ = rcpt;
        false
    }

    /// Whether the queue takes a new message now, asked at MAIL FROM with the size the
    /// client declared (`SIZE=`), if any: an error is answered at once (`452 4.3.1` for
    /// [`NotQueued::DiskFull`], as Postfix does when its queue file system is short of
    /// space), so the client does not send a message that would be refused after DATA.
    /// The default takes every message.
    ///
    /// # Errors
    /// Why the queue cannot take the message.
    fn accepts_mail(&self, declared_size: Option<u64>) -> Result<(), NotQueued> {
        let _ = declared_size;
        Ok(())
    }
}

impl<T: RecipientPolicy + ?Sized> RecipientPolicy for &T {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        (**self).check(rcpt)
    }

    fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
        (**self).vouches_for(rcpt)
    }

    fn accepts_mail(&self, declared_size: Option<u64>) -> Result<(), NotQueued> {
        (**self).accepts_mail(declared_size)
    }
}

impl<T: RecipientPolicy + ?Sized> RecipientPolicy for Box<T> {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        (**self).check(rcpt)
    }

    fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
        (**self).vouches_for(rcpt)
    }

    fn accepts_mail(&self, declared_size: Option<u64>) -> Result<(), NotQueued> {
        (**self).accepts_mail(declared_size)
    }
}

impl<T: RecipientPolicy + ?Sized> RecipientPolicy for Arc<T> {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        (**self).check(rcpt)
    }

    fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
        (**self).vouches_for(rcpt)
    }

    fn accepts_mail(&self, declared_size: Option<u64>) -> Result<(), NotQueued> {
        (**self).accepts_mail(declared_size)
    }
}

/// Something the I/O layer must do before the session can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send the replies (the last is `220 2.0.0 Ready to start TLS`), run the TLS handshake
    /// on the socket, then call [`Session::tls_established`]. No unconsumed input is left:
    /// the session refused a STARTTLS followed by more input.
    StartTls,
    /// A complete, well-formed message: queue it durably, then call
    /// [`Session::message_queued`].
    MessageComplete {
        /// Sender and accepted recipients.
        envelope: Envelope,
        /// The message, dot-unstuffed, every line ending in CR LF.
        data: Vec<u8>,
        /// The `MAIL FROM` parameters (body type, SMTPUTF8).
        params: MailParams,
        /// What the `Received:` header needs.
        trace: Trace,
    },
}

/// What one call to [`Session::feed`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Input octets consumed; the rest must be fed again after the event is answered.
    pub consumed: usize,
    /// Replies to send, in order.
    pub replies: Vec<Reply>,
    /// At most one event, to act on after sending the replies.
    pub event: Option<Event>,
    /// Close the connection after sending the replies.
    pub close: bool,
}

impl Output {
    /// Appends all replies in wire form (one write for a pipelined group, RFC 2920).
    pub fn encode_replies(&self, out: &mut Vec<u8>) {
        for reply in &self.replies {
            reply.encode(out);
        }
    }
}

/// The protocol name of the `with` clause of `Received:` (RFC 3848, RFC 6531 3.7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HELO.
    Smtp,
    /// EHLO.
    Esmtp,
    /// EHLO after STARTTLS.
    Esmtps,
    /// EHLO with `MAIL FROM:<..> SMTPUTF8`.
    Utf8Smtp,
    /// EHLO with SMTPUTF8 after STARTTLS.
    Utf8Smtps,
}

impl Protocol {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "SMTP",
            Self::Esmtp => "ESMTP",
            Self::Esmtps => "ESMTPS",
            Self::Utf8Smtp => "UTF8SMTP",
            Self::Utf8Smtps => "UTF8SMTPS",
        }
    }
}

/// The facts a `Received:` header records about how a message came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The HELO/EHLO argument, or `unknown` when the client sent none.
    pub helo: String,
    /// The client's address, when the I/O layer knows it.
    pub peer_ip: Option<IpAddr>,
    /// This server's host name.
    pub hostname: String,
    /// How the message was sent.
    pub protocol: Protocol,
}

impl Trace {
    /// The `Received:` header line (RFC 5321 4.4), folded, ending in CR LF:
    ///
    /// ```text
    /// Received: from <helo> ([<peer ip>])
    ///         by <hostname> with ESMTPS id <queue id>;
    ///         <date>
    /// ```
    ///
    /// `date` is an RFC 5322 date, e.g. from [`ccgate_core::rfc5322_date`]; control characters in it are
    /// sent as spaces so the header cannot be split.
    pub fn received_header(&self, queue_id: &QueueId, date: &str) -> String {
        let peer = match self.peer_ip {
            Some(IpAddr::V4(ip)) => format!(" ([{ip}])"),
            Some(IpAddr::V6(ip)) => format!(" ([IPv6:{ip}])"),
            None => String::new(),
        };
        let date: String = date
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!(
            "Received: from {helo}{peer}\r\n\tby {host} with {protocol} id {queue_id};\r\n\t{date}\r\n",
            helo = self.helo,
            host = self.hostname,
            protocol = self.protocol.as_str(),
        )
    }
}

#[derive(Debug, Clone)]
enum Phase {
    /// Connected, greeting not yet sent.
    Connected,
    /// Reading commands.
    Command,
    /// Reading message text after `354`.
    Data(DataDecoder),
    /// [`Event::MessageComplete`] was returned; waiting for [`Session::message_queued`].
    AwaitingQueue,
    /// [`Event::StartTls`] was returned; waiting for [`Session::tls_established`].
    AwaitingTls,
    /// Closed: input is discarded.
    Closed,
}

#[derive(Debug, Clone)]
struct Hello {
    domain: String,
    extended: bool,
}

#[derive(Debug, Clone)]
struct Transaction {
    sender: ReversePath,
    params: MailParams,
    recipients: Vec<EmailAddress>,
    rcpt_commands: usize,
}

/// One SMTP server session, without I/O.
///
/// ```
/// use ccgate_core::{EmailAddress, QueueId};
/// use ccgate_smtp::{Event, RcptVerdict, RecipientPolicy, Session, SessionConfig};
///
/// struct AcceptAll;
/// impl RecipientPolicy for AcceptAll {
///     fn check(&self, _: &EmailAddress) -> RcptVerdict {
///         RcptVerdict::Accept
///     }
/// }
///
/// let config = SessionConfig::new("mx.example.com").unwrap();
/// let mut session = Session::new(config, None, AcceptAll);
/// assert_eq!(session.greeting().to_string(), "220 mx.example.com ESMTP ccgate\r\n");
/// let out = session.feed(b"EHLO client.example\r\n");
/// assert_eq!(out.replies[0].code(), 250);
/// let out = session.feed(b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
/// assert_eq!(out.replies.len(), 3); // 250, 250, 354
/// let out = session.feed(b"Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n");
/// let Some(Event::MessageComplete { data, .. }) = out.event else { panic!() };
/// assert_eq!(data, b"Subject: hi\r\n\r\nhello\r\n");
/// // Queue the message durably here; only then:
/// let reply = session.message_queued(Ok(QueueId::generate())).unwrap();
/// assert_eq!(reply.code(), 250);
/// // The pipelined QUIT was not consumed yet.
/// let rest = &b"QUIT\r\n"[..];
/// let out = session.feed(rest);
/// assert!(out.close);
/// ```
#[derive(Debug, Clone)]
pub struct Session<P> {
    config: SessionConfig,
    peer_ip: Option<IpAddr>,
    policy: P,
    phase: Phase,
    lines: LineDecoder,
    hello: Option<Hello>,
    tls_active: bool,
    transaction: Option<Transaction>,
    message: Vec<u8>,
    errors: u32,
    data_count: u64,
}

impl<P: RecipientPolicy> Session<P> {
    /// A new session for a client at `peer_ip`, before the greeting.
    pub fn new(config: SessionConfig, peer_ip: Option<IpAddr>, policy: P) -> Self {
        let lines = LineDecoder::new(config.limits.max_command_line);
        Self {
            config,
            peer_ip,
            policy,
            phase: Phase::Connected,
            lines,
            hello: None,
            tls_active: false,
            transaction: None,
            message: Vec::new(),
            errors: 0,
            data_count: 0,
        }
    }

    /// The `220` greeting. Send it first; input fed before it is an early talker, refused
    /// with `554 5.5.0` and a close.
    pub fn greeting(&mut self) -> Reply {
        if matches!(self.phase, Phase::Connected) {
            self.phase = Phase::Command;
        }
        Reply::greeting(&self.config.hostname)
    }

    /// Processes input; see [`Output`]. While an event is unanswered, nothing is consumed;
    /// once closed, everything is consumed and ignored.
    pub fn feed(&mut self, input: &[u8]) -> Output {
        let mut out = Output::default();
        match self.phase {
            Phase::Closed => {
                out.consumed = input.len();
                out.close = true;
                return out;
            }
            Phase::AwaitingQueue | Phase::AwaitingTls => return out,
            Phase::Connected => {
                out.consumed = input.len();
                if !input.is_empty() {
                    self.fail(Error::EarlyTalker, &mut out);
                }
                return out;
            }
            Phase::Command | Phase::Data(_) => {}
        }
        let mut rest = input;
        while !rest.is_empty() && !out.close && out.event.is_none() {
            if let Phase::Data(decoder) = &mut self.phase {
                let status = decoder.decode(&mut rest, &mut self.message);
                if decoder.has_failed() && self.message.capacity() > 0 {
                    // The message will be refused: free it now rather than at its end.
                    self.message = Vec::new();
                }
                match status {
                    Ok(DataStatus::NeedsMoreData) => {}
                    Ok(DataStatus::Complete { .. }) => self.complete_message(&mut out),
                    Err(error) => {
                        self.phase = Phase::Command;
                        self.transaction = None;
                        self.message = Vec::new();
                        self.fail(error, &mut out);
                    }
                }
                continue;
            }
            match self.lines.decode(&mut rest) {
                Ok(LineStatus::NeedsMoreData) => {}
                Ok(LineStatus::Line(line)) => self.handle_line(&line, !rest.is_empty(), &mut out),
                Err(error) => self.fail(error, &mut out),
            }
        }
        out.consumed = input.len().saturating_sub(rest.len());
        out
    }

    /// Answers [`Event::StartTls`] once the handshake succeeded: the session starts over
    /// (RFC 3207 4.2: the client must EHLO again), now with TLS.
    pub fn tls_established(&mut self) {
        if matches!(self.phase, Phase::AwaitingTls) {
            self.tls_active = true;
            self.hello = None;
            self.transaction = None;
            self.lines = LineDecoder::new(self.config.limits.max_command_line);
            self.phase = Phase::Command;
        }
    }

    /// Answers [`Event::MessageComplete`] with the outcome of queueing, and returns the reply
    /// to send: `250 2.0.0 Ok: queued as <id>`, `451 4.3.0` or `452 4.3.1`. `None` when no
    /// message was waiting (a bug in the caller).
    pub fn message_queued(&mut self, result: Result<QueueId, NotQueued>) -> Option<Reply> {
        if !matches!(self.phase, Phase::AwaitingQueue) {
            return None;
        }
        self.phase = Phase::Command;
        Some(match result {
            Ok(queue_id) => {
                self.errors = 0;
                Reply::queued(&queue_id)
            }
            Err(error) => for_error(&Error::Queue(error)),
        })
    }

    /// Ends the session for a reason of the I/O layer (timeout, shutdown) and returns the
    /// reply to send before closing.
    pub fn abort(&mut self, reason: &Error) -> Reply {
        self.phase = Phase::Closed;
        self.transaction = None;
        self.message = Vec::new();
        for_error(reason)
    }

    /// Octets of message text held for the message being received (0 outside DATA, and once
    /// the message is refused).
    pub fn message_len(&self) -> usize {
        match self.phase {
            Phase::Data(_) => self.message.len(),
            _ => 0,
        }
    }

    /// How many times `DATA` was answered with `354` in this session: it tells the text taken
    /// by [`Session::take_message_text`] for one message from the next message's.
    pub fn data_count(&self) -> u64 {
        self.data_count
    }

    /// Takes the message text held so far, so that the I/O layer can stream a large message
    /// to disk as it arrives instead of holding it: the text of [`Event::MessageComplete`] is
    /// then only what came after the last call. Empty outside DATA and once the message is
    /// sure to be refused.
    pub fn take_message_text(&mut self) -> Vec<u8> {
        match &self.phase {
            Phase::Data(decoder) if !decoder.has_failed() => std::mem::take(&mut self.message),
            _ => Vec::new(),
        }
    }

    /// Refuses the message being received for a reason of the I/O layer, e.g.
    /// [`NotQueued::MemoryBudget`]: the text held so far is freed, the rest of the data is
    /// read and dropped, and the end of data is answered with `error`'s reply, so the session
    /// stays in step with the client. Outside DATA it does nothing.
    pub fn refuse_message(&mut self, error: Error) {
        if let Phase::Data(decoder) = &mut self.phase {
            decoder.refuse(error);
            self.message = Vec::new();
        }
    }

    /// True once the session has asked to close.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// True between an accepted `MAIL` and the end of that transaction (queued, refused or
    /// reset): a stopping server lets such a session finish before closing it.
    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some() || matches!(self.phase, Phase::Data(_) | Phase::AwaitingQueue)
    }

    /// True while an event waits for its answer.
    pub fn is_awaiting_event(&self) -> bool {
        matches!(self.phase, Phase::AwaitingQueue | Phase::AwaitingTls)
    }

    /// True once STARTTLS has completed.
    pub fn is_tls_active(&self) -> bool {
        self.tls_active
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn handle_line(&mut self, line: &[u8], more_input: bool, out: &mut Output) {
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => return self.fail(error, out),
        };
        // RFC 2920: only after EHLO may commands be pipelined, and some must end a group.
        // Checked before the command runs, so a refused DATA or STARTTLS never treats the
        // bytes after it as message text or as commands (CVE-2011-0411).
        let pipelining = self.hello.as_ref().is_some_and(|h| h.extended);
        if more_input && command != Command::Quit && (command.ends_pipeline_group() || !pipelining)
        {
            return self.fail(
                Error::Synchronization {
                    verb: command.verb(),
                },
                out,
            );
        }
        if let Err(error) = self.execute(command, out) {
            self.fail(error, out);
        }
    }

    fn execute(&mut self, command: Command, out: &mut Output) -> Result<(), Error> {
        let reply = match command {
            Command::Helo { domain } => {
                self.hello = Some(Hello {
                    domain,
                    extended: false,
                });
                self.transaction = None;
                Reply::helo(&self.config.hostname)
            }
            Command::Ehlo { domain } => {
                self.hello = Some(Hello {
                    domain,
                    extended: true,
                });
                self.transaction = None;
                let starttls = self.config.tls_available && !self.tls_active;
                Reply::ehlo(
                    &self.config.hostname,
                    self.config.limits.max_message_size,
                    starttls,
                )
            }
            Command::Mail { from, params } => self.mail(from, params)?,
            Command::Rcpt { to } => self.rcpt(to)?,
            Command::Data => self.data()?,
            Command::Rset => {
                self.transaction = None;
                Reply::ok()
            }
            Command::Noop => Reply::ok(),
            Command::Quit => {
                out.close = true;
                self.phase = Phase::Closed;
                self.transaction = None;
                Reply::bye()
            }
            Command::Vrfy { .. } => Reply::cannot_vrfy(),
            Command::Help { .. } => Reply::help(),
            Command::StartTls => {
                if self.tls_active {
                    return Err(Error::TlsAlreadyActive);
                }
                if !self.config.tls_available {
                    return Err(Error::TlsUnavailable);
                }
                if self.transaction.is_some() {
                    return Err(Error::TransactionInProgress);
                }
                self.phase = Phase::AwaitingTls;
                out.event = Some(Event::StartTls);
                Reply::ready_to_start_tls()
            }
        };
        out.replies.push(reply);
        Ok(())
    }

    fn mail(&mut self, sender: ReversePath, params: MailParams) -> Result<Reply, Error> {
        // No HELO/EHLO is needed first, as a default Postfix (`smtpd_helo_required = no`);
        // without EHLO, though, no ESMTP parameters.
        let extended = self.hello.as_ref().is_some_and(|h| h.extended);
        if self.transaction.is_some() {
            return Err(Error::NestedMail);
        }
        if !extended && !params.is_empty() {
            return Err(Error::ParametersNeedEhlo);
        }
        let limit = self.config.limits.max_message_size;
        if let Some(declared) = params.size.filter(|&size| size > limit) {
            return Err(Error::DeclaredSizeTooLarge { declared, limit });
        }
        self.policy.accepts_mail(params.size)?;
        self.transaction = Some(Transaction {
            sender,
            params,
            recipients: Vec::new(),
            rcpt_commands: 0,
        });
        Ok(Reply::sender_ok())
    }

    fn rcpt(&mut self, to: ForwardPath) -> Result<Reply, Error> {
        let Some(transaction) = &mut self.transaction else {
            return Err(Error::NeedMail { verb: Verb::Rcpt });
        };
        transaction.rcpt_commands = transaction.rcpt_commands.saturating_add(1);
        let limit = self.config.limits.max_recipients;
        if transaction.recipients.len() >= limit {
            return Err(Error::TooManyRecipients { limit });
        }
        let address = match to {
            ForwardPath::Postmaster => self.config.postmaster.clone(),
            ForwardPath::Mailbox(address) => {
                if address.needs_smtputf8() && !transaction.params.smtputf8 {
                    return Err(Error::NeedsSmtputf8);
                }
                if crate::command::is_quoted_percent(address.local())
                    && !self.policy.vouches_for(&address)
                {
                    return Err(Error::RelayTrick {
                        trick: crate::error::RelayTrick::QuotedAddress,
                    });
                }
                match self.policy.check(&address) {
                    RcptVerdict::Accept => address,
                    RcptVerdict::Unknown => return Err(Error::UnknownRecipient),
                    RcptVerdict::RelayDenied => return Err(Error::RelayDenied),
                    RcptVerdict::TempFail => return Err(Error::RecipientTempFail),
                }
            }
        };
        // A repeated recipient is acknowledged but delivered once.
        if !transaction.recipients.contains(&address) {
            transaction.recipients.push(address);
        }
        Ok(Reply::recipient_ok())
    }

    fn data(&mut self) -> Result<Reply, Error> {
        let Some(transaction) = &self.transaction else {
            return Err(Error::NeedMail { verb: Verb::Data });
        };
        if transaction.recipients.is_empty() {
            return Err(if transaction.rcpt_commands == 0 {
                Error::NeedRcpt
            } else {
                Error::NoValidRecipients
            });
        }
        let limits = self.config.limits;
        let reserve = transaction
            .params
            .size
            .unwrap_or(0)
            .min(limits.max_message_size)
            .min(MAX_PREALLOCATION);
        self.message = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        self.data_count = self.data_count.saturating_add(1);
        self.phase = Phase::Data(DataDecoder::new(
            limits.max_message_size,
            limits.max_text_line,
        ));
        Ok(Reply::start_data())
    }

    fn complete_message(&mut self, out: &mut Output) {
        let data = std::mem::take(&mut self.message);
        let Some(transaction) = self.transaction.take() else {
            // Unreachable: DATA is only entered with a transaction.
            self.phase = Phase::Command;
            return;
        };
        self.phase = Phase::AwaitingQueue;
        let trace = self.trace(transaction.params.smtputf8);
        out.event = Some(Event::MessageComplete {
            envelope: Envelope {
                sender: transaction.sender,
                recipients: transaction.recipients,
            },
            data,
            params: transaction.params,
            trace,
        });
    }

    fn trace(&self, smtputf8: bool) -> Trace {
        let extended = self.hello.as_ref().is_some_and(|h| h.extended);
        let protocol = match (extended, self.tls_active, smtputf8) {
            (false, false, _) => Protocol::Smtp,
            (true, false, false) => Protocol::Esmtp,
            (_, true, false) => Protocol::Esmtps,
            (_, false, true) => Protocol::Utf8Smtp,
            (_, true, true) => Protocol::Utf8Smtps,
        };
        Trace {
            // A client may send MAIL without HELO/EHLO; Postfix then names it `unknown` too.
            helo: self
                .hello
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |h| h.domain.clone()),
            peer_ip: self.peer_ip,
            hostname: self.config.hostname.clone(),
            protocol,
        }
    }

    /// Sends the error's reply, counts it, and closes when the error or the count says so.
    fn fail(&mut self, error: Error, out: &mut Output) {
        out.replies.push(for_error(&error));
        if error.closes_session() {
            self.close(out);
            return;
        }
        if error.counts_toward_limit() {
            self.errors = self.errors.saturating_add(1);
            let limit = self.config.limits.max_errors;
            if self.errors >= limit {
                out.replies.push(for_error(&Error::TooManyErrors { limit }));
                self.close(out);
            }
        }
    }

    fn close(&mut self, out: &mut Output) {
        out.close = true;
        out.event = None;
        self.phase = Phase::Closed;
        self.transaction = None;
        self.message = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    struct Policy;

    impl RecipientPolicy for Policy {
        fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
            match (rcpt.local(), rcpt.domain()) {
                ("nobody", _) => RcptVerdict::Unknown,
                ("later", _) => RcptVerdict::TempFail,
                (_, "legacy.example.com") => RcptVerdict::Accept,
                _ => RcptVerdict::RelayDenied,
            }
        }

        fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
            rcpt.local() == "\"Long, Name%PO%abcdefghij\""
        }
    }

    fn session() -> Session<Policy> {
        let mut session = Session::new(
            SessionConfig::new("MX.Example.COM").unwrap(),
            Some("192.0.2.7".parse().unwrap()),
            Policy,
        );
        session.greeting();
        session
    }

    /// Feeds every chunk, answering events, and returns the reply codes and the messages.
    fn run(session: &mut Session<Policy>, chunks: &[&[u8]]) -> (Vec<u16>, Vec<Vec<u8>>) {
        let mut codes = Vec::new();
        let mut messages = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            loop {
                let out = session.feed(input);
                input = &input[out.consumed..];
                codes.extend(out.replies.iter().map(Reply::code));
                match out.event {
                    Some(Event::MessageComplete { data, .. }) => {
                        messages.push(data);
                        let reply = session.message_queued(Ok(QueueId::generate())).unwrap();
                        codes.push(reply.code());
                    }
                    Some(Event::StartTls) => session.tls_established(),
                    None => break,
                }
            }
            assert!(input.is_empty() || session.is_closed());
        }
        (codes, messages)
    }

    const CONVERSATION: &[u8] = b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\n\
        RCPT TO:<b@legacy.example.com>\r\nRCPT TO:<nobody@legacy.example.com>\r\nDATA\r\n\
        Subject: x\r\n\r\n..stuffed\r\n.\r\nNOOP\r\nQUIT\r\n";

    #[test]
    fn same_replies_whatever_the_chunking() {
        let expected = (
            vec![250, 250, 250, 550, 354, 250, 250, 221],
            vec![b"Subject: x\r\n\r\n.stuffed\r\n".to_vec()],
        );
        // One line per feed, then one octet per feed: no pipelining either way.
        let by_line: Vec<&[u8]> = CONVERSATION.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(run(&mut session(), &by_line), expected);
        let by_octet: Vec<&[u8]> = CONVERSATION.chunks(1).collect();
        assert_eq!(run(&mut session(), &by_octet), expected);
    }

    #[test]
    fn verdicts_and_sequence_errors() {
        let cases: [(&[&[u8]], &[u16]); 10] = [
            // No HELO needed (Postfix smtpd_helo_required = no), but no parameters without EHLO.
            (&[b"MAIL FROM:<>\r\n"], &[250]),
            (&[b"MAIL FROM:<> SIZE=10\r\n"], &[555]),
            (
                &[b"HELO x\r\n", b"RCPT TO:<b@legacy.example.com>\r\n"],
                &[250, 503],
            ),
            (&[b"HELO x\r\n", b"DATA\r\n"], &[250, 503]),
            (
                &[b"HELO x\r\n", b"MAIL FROM:<>\r\n", b"DATA\r\n"],
                &[250, 250, 503],
            ),
            (
                &[b"HELO x\r\n", b"MAIL FROM:<>\r\n", b"MAIL FROM:<>\r\n"],
                &[250, 250, 503],
            ),
            (
                &[
                    b"HELO x\r\n",
                    b"MAIL FROM:<>\r\n",
                    b"RCPT TO:<later@legacy.example.com>\r\n",
                ],
                &[250, 250, 450],
            ),
            (
                &[
                    b"HELO x\r\n",
                    b"MAIL FROM:<>\r\n",
                    b"RCPT TO:<a@elsewhere.example>\r\n",
                    b"DATA\r\n",
                ],
                &[250, 250, 554, 554],
            ),
            (&[b"HELO x\r\n", b"MAIL FROM:<> SIZE=10\r\n"], &[250, 555]),
            // The percent hack in quotes: refused unless the policy vouches for the address
            // (one the gateway issued).
            (
                &[
                    b"HELO x\r\n",
                    b"MAIL FROM:<>\r\n",
                    b"RCPT TO:<\"u%victim.example\"@legacy.example.com>\r\n",
                    b"RCPT TO:<\"Long, Name%PO%abcdefghij\"@legacy.example.com>\r\n",
                ],
                &[250, 250, 553, 250],
            ),
        ];
        for (chunks, codes) in cases {
            assert_eq!(run(&mut session(), chunks).0, codes, "{chunks:?}");
        }
    }

    #[test]
    fn postmaster_goes_to_the_configured_host() {
        let mut session = session();
        run(
            &mut session,
            &[
                b"EHLO x\r\n",
                b"MAIL FROM:<>\r\n",
                b"RCPT TO:<Postmaster>\r\n",
                b"DATA\r\n",
            ],
        );
        let out = session.feed(b".\r\n");
        let Some(Event::MessageComplete {
            envelope, trace, ..
        }) = out.event
        else {
            panic!("{out:?}");
        };
        assert_eq!(
            envelope.recipients,
            vec![EmailAddress::new("postmaster", "mx.example.com").unwrap()]
        );
        assert_eq!(envelope.sender, ReversePath::Null);
        assert_eq!(trace.protocol, Protocol::Esmtp);
        assert!(session.is_awaiting_event());
        assert_eq!(session.feed(b"QUIT\r\n"), Output::default());
    }

    /// A queue short of space: refuses every message, or those declared larger than 1000.
    struct Full(Option<u64>);

    impl RecipientPolicy for Full {
        fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
            Policy.check(rcpt)
        }

        fn accepts_mail(&self, declared_size: Option<u64>) -> Result<(), NotQueued> {
            match (self.0, declared_size) {
                (Some(room), Some(size)) if size <= room => Ok(()),
                _ => Err(NotQueued::DiskFull),
            }
        }
    }

    /// Feeds `input` whole; the replies.
    fn replies<P: RecipientPolicy>(session: &mut Session<P>, mut input: &[u8]) -> Vec<String> {
        let mut replies = Vec::new();
        while !input.is_empty() {
            let out = session.feed(input);
            assert!(out.consumed > 0 && out.event.is_none());
            input = &input[out.consumed..];
            replies.extend(out.replies.iter().map(ToString::to_string));
        }
        replies
    }

    #[test]
    fn mail_is_refused_while_the_queue_is_short_of_space() {
        let config = SessionConfig::new("mx.example.com").unwrap();
        let mut session = Session::new(config.clone(), None, Full(None));
        session.greeting();
        replies(&mut session, b"EHLO x\r\n");
        let r = replies(
            &mut session,
            b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@legacy.example.com>\r\n",
        );
        assert_eq!(
            r,
            [
                "452 4.3.1 Error: insufficient system storage\r\n",
                "503 5.5.1 Error: need MAIL command\r\n"
            ]
        );
        assert!(!session.in_transaction() && !session.is_closed());

        // Room for what the client declares: a small message is taken, a larger one not.
        let mut session = Session::new(config, None, Full(Some(1000)));
        session.greeting();
        replies(&mut session, b"EHLO x\r\n");
        let r = replies(&mut session, b"MAIL FROM:<a@client.example> SIZE=2000\r\n");
        assert!(r.last().unwrap().starts_with("452 4.3.1"), "{r:?}");
        let r = replies(&mut session, b"MAIL FROM:<a@client.example> SIZE=900\r\n");
        assert!(r.last().unwrap().starts_with("250 "), "{r:?}");
        assert!(session.in_transaction());
    }

    #[test]
    fn message_queued_only_when_awaited() {
        let mut session = session();
        assert_eq!(session.message_queued(Ok(QueueId::generate())), None);
        assert!(!session.in_transaction());
        run(
            &mut session,
            &[
                b"EHLO x\r\n",
                b"MAIL FROM:<>\r\n",
                b"RCPT TO:<b@legacy.example.com>\r\n",
                b"DATA\r\n",
            ],
        );
        assert!(session.in_transaction());
        assert!(session.feed(b"hi\r\n.\r\n").event.is_some());
        assert!(session.in_transaction());
        let reply = session.message_queued(Err(NotQueued::DiskFull)).unwrap();
        assert_eq!(
            reply.to_string(),
            "452 4.3.1 Error: insufficient system storage\r\n"
        );
        assert_eq!(session.message_queued(Ok(QueueId::generate())), None);
        assert!(!session.in_transaction());
        // The transaction is over either way.
        assert_eq!(run(&mut session, &[b"DATA\r\n"]).0, vec![503]);
    }

    #[test]
    fn received_header() {
        let id: QueueId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let cases = [
            (
                Trace {
                    helo: "client.example".into(),
                    peer_ip: Some("192.0.2.7".parse().unwrap()),
                    hostname: "mx.example.com".into(),
                    protocol: Protocol::Esmtps,
                },
                "Mon, 23 Nov 2026 11:23:29 +0000",
                "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.com with ESMTPS \
                 id 01ARZ3NDEKTSV4RRFFQ69G5FAV;\r\n\tMon, 23 Nov 2026 11:23:29 +0000\r\n",
            ),
            (
                Trace {
                    helo: "[IPv6:2001:db8::1]".into(),
                    peer_ip: Some("2001:db8::1".parse().unwrap()),
                    hostname: "mx.example.com".into(),
                    protocol: Protocol::Smtp,
                },
                "bad\r\ndate",
                "Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n\tby mx.example.com \
                 with SMTP id 01ARZ3NDEKTSV4RRFFQ69G5FAV;\r\n\tbad  date\r\n",
            ),
            (
                Trace {
                    helo: "c".into(),
                    peer_ip: None,
                    hostname: "h".into(),
                    protocol: Protocol::Utf8Smtp,
                },
                "d",
                "Received: from c\r\n\tby h with UTF8SMTP id 01ARZ3NDEKTSV4RRFFQ69G5FAV;\r\n\td\r\n",
            ),
        ];
        for (trace, date, header) in cases {
            assert_eq!(trace.received_header(&id, date), header);
        }
    }

    /// SMTP-ish tokens, so that random input reaches the deeper states.
    const ALPHABET: [&[u8]; 16] = [
        b"EHLO x\r\n",
        b"HELO x\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"RCPT TO:<u@legacy.example.com>\r\n",
        b"RCPT TO:<nobody@legacy.example.com>\r\n",
        b"DATA\r\n",
        b"RSET\r\n",
        b"STARTTLS\r\n",
        b"NOOP\r\n",
        b"\r\n",
        b".",
        b"\r",
        b"\n",
        b"text",
        b"\r\n.\r\n",
        b"\x00",
    ];

    /// Feeds `input` in chunks of the given sizes, answering every event; checks that the
    /// session always makes progress and never acknowledges a message by itself.
    fn drive(input: &[u8], sizes: &[usize], tls: bool) -> Result<(), TestCaseError> {
        let mut config = SessionConfig::new("mx.example.com").unwrap();
        config.tls_available = tls;
        config.limits.max_message_size = 300;
        config.limits.max_recipients = 3;
        let mut session = Session::new(config, None, Policy);
        session.greeting();
        let mut rest = input;
        let mut sizes = sizes.iter().cycle();
        let mut queued = 0u128;
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            let mut pending = rest[..n].to_vec();
            rest = &rest[n..];
            loop {
                let out = session.feed(&pending);
                prop_assert!(out.consumed <= pending.len());
                pending.drain(..out.consumed);
                for reply in &out.replies {
                    let text = reply.to_string();
                    prop_assert!(!text.contains("queued as"), "{text}");
                    prop_assert_eq!(text.matches("\r\n").count(), reply.lines().len().max(1));
                }
                if out.close {
                    prop_assert!(out.event.is_none() && session.is_closed());
                    return Ok(());
                }
                match out.event {
                    Some(Event::MessageComplete { data, .. }) => {
                        prop_assert!(data.len() <= 300);
                        queued += 1;
                        let reply = session.message_queued(Ok(QueueId::from_u128(queued)));
                        prop_assert!(reply.is_some());
                    }
                    Some(Event::StartTls) => {
                        prop_assert!(tls && pending.is_empty());
                        session.tls_established();
                    }
                    None => {
                        prop_assert!(pending.is_empty());
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn session_never_panics_on_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..1500),
            sizes in proptest::collection::vec(1usize..200, 1..20),
            tls in any::<bool>(),
        ) {
            drive(&bytes, &sizes, tls)?;
        }

        #[test]
        fn session_never_panics_on_tokens(
            tokens in proptest::collection::vec(0usize..ALPHABET.len(), 0..300),
            sizes in proptest::collection::vec(1usize..200, 1..20),
            tls in any::<bool>(),
        ) {
            let bytes: Vec<u8> = tokens.iter().flat_map(|&t| ALPHABET[t].iter().copied()).collect();
            drive(&bytes, &sizes, tls)?;
        }
    }

    #[test]
    fn bad_hostname_is_refused() {
        assert!(matches!(
            SessionConfig::new("not a host"),
            Err(Error::InvalidHostname { .. })
        ));
        assert_eq!(
            SessionConfig::new("MX.Example").unwrap().hostname(),
            "mx.example"
        );
    }

    #[test]
    fn message_text_can_be_taken_as_it_arrives_or_refused() {
        let mut s = session();
        s.feed(b"EHLO c.example\r\n");
        s.feed(b"MAIL FROM:<a@c.example>\r\n");
        s.feed(b"RCPT TO:<x@legacy.example.com>\r\n");
        assert_eq!(s.feed(b"DATA\r\n").replies[0].code(), 354);
        s.feed(b"one\r\ntw");
        assert_eq!(s.message_len(), 7);
        assert_eq!(s.take_message_text(), b"one\r\ntw");
        assert_eq!(s.message_len(), 0);
        let out = s.feed(b"o\r\n.\r\n");
        let Some(Event::MessageComplete { data, .. }) = out.event else {
            panic!("{out:?}")
        };
        assert_eq!(data, b"o\r\n");
        assert_eq!(
            s.message_queued(Ok(QueueId::generate())).unwrap().code(),
            250
        );
        // Refused by the I/O layer: the rest is read and the end of data gets its reply.
        s.feed(b"MAIL FROM:<a@c.example>\r\n");
        s.feed(b"RCPT TO:<x@legacy.example.com>\r\n");
        s.feed(b"DATA\r\n");
        s.feed(b"big\r\n");
        s.refuse_message(Error::Queue(NotQueued::MemoryBudget));
        assert_eq!(s.message_len(), 0);
        assert!(s.take_message_text().is_empty());
        let out = s.feed(b"more\r\n.\r\nNOOP\r\n");
        let codes: Vec<u16> = out.replies.iter().map(Reply::code).collect();
        assert_eq!(codes, [452, 250]);
        assert!(out.event.is_none());
    }
}
