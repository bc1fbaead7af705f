//! The `modern` lane's SMTP next hop (`smtp://host:port`): a small SMTP client on tokio.
//!
//! Why not lettre: `AsyncSmtpConnection::send` stops at the first refused `RCPT` and returns
//! one error for the whole message, so "a 450 to one recipient defers that recipient only"
//! cannot be expressed; and it writes the body and the final `\r\n.\r\n` in two writes on a
//! socket without `TCP_NODELAY`, which is the 44 ms per message stall (Nagle holds the small
//! second write until the peer's delayed ACK of the first). See the crate README.
//!
//! Per attempt: one recipient's `RCPT` reply decides that recipient (4xx transient, 5xx
//! permanent, scope `Recipient`); a refusal of `MAIL`, `DATA` or the end of data decides every
//! recipient not yet decided (scope `Message`); a connection failure, a timeout, a broken reply
//! or a `421` decides them all as transient with scope `Destination`, so that the spool's
//! dead-destination logic applies.
//!
//! TLS follows [`TlsPolicy`], Postfix's `smtp_tls_security_level`: `may` (the default:
//! STARTTLS when the server offers it, **any certificate accepted** (signatures are still
//! checked), plaintext when the server does not offer it or the handshake fails), `encrypt`
//! (STARTTLS required, any certificate), `verify` (STARTTLS required and the certificate
//! verified for the next hop's host name against a CA file or the system's trust store) or
//! `none`. A requirement not met defers the mail (`4.7.4` not offered, `4.7.5` handshake or
//! certificate), scope `Destination`; it never falls back to plaintext.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ccgate_core::Lane;
use ccgate_queue::{DeliveryError, DeliveryResult, FailureScope, Lease, Spool, StatusCode};
use ccgate_smtp::{Capabilities, ReplyReader, ServerReply, encode_data};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use crate::delivery_log::{self, Attempt};
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::shutdown::stopped;

/// Connections opened at once to the next hop.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Time allowed for the TCP connection (Postfix `smtp_connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for each reply (greeting, EHLO, MAIL, RCPT, DATA; RFC 5321 §4.5.3.2: 5 min).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed for sending the message and the reply to the final dot (RFC 5321: 10 min).
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// An unused cached connection is closed (`QUIT`) after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause when the lane has nothing due: mail queued or routed to the lane wakes a
/// worker at once (`Spool::on_due`); this catches retries coming due.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Longest reply line accepted (RFC 5321 §4.5.3.1.5 says 512; be lenient).
const MAX_LINE: u64 = ccgate_smtp::MAX_REPLY_LINE as u64;
/// Time allowed for the reply to `QUIT`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the agent demands of TLS to its next hop (Postfix's `smtp_tls_security_level`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never `STARTTLS`.
    None,
    /// `STARTTLS` when offered, any certificate; plaintext when not offered or it fails.
    May,
    /// `STARTTLS` required (the mail is deferred otherwise), any certificate.
    Encrypt,
    /// `STARTTLS` required and the certificate verified for the next hop's host name, against
    /// the CA certificates of `ca_file` (PEM) or, without one, the system's trust store.
    Verify {
        /// PEM file of trusted CA certificates.
        ca_file: Option<PathBuf>,
    },
}

impl TlsPolicy {
    /// Without TLS the mail waits (no plaintext fallback).
    fn required(&self) -> bool {
        matches!(self, Self::Encrypt | Self::Verify { .. })
    }
}

/// Longest line RFC 5321 lets a next hop insist on, CR LF excluded.
pub const SMTP_MAX_LINE: usize = 998;

/// Makes a message's lines fit a next hop's limit without changing its content (the codec
/// seam: the binary plugs in `ccgate-convert`'s MIME re-encoding; the server converts nothing
/// itself).
pub trait LineFitter: Send + Sync {
    /// `message` with no line longer than `max` octets (CR LF excluded) where that can be
    /// done keeping what a MIME reader decodes; borrowed when nothing needs to change.
    fn fit<'a>(&self, message: &'a [u8], max: usize) -> Cow<'a, [u8]>;
}

/// How the agent talks to its next hop.
#[derive(Clone)]
pub struct SmtpClientOptions {
    /// Next hop host name or address.
    pub host: String,
    /// Next hop port.
    pub port: u16,
    /// Our name in `EHLO`.
    pub helo: String,
    /// Connections at once (and messages in flight).
    pub concurrency: usize,
    /// Time to connect and get the greeting (default 30 s).
    pub connect_timeout: Duration,
    /// Time for each reply (default 300 s).
    pub reply_timeout: Duration,
    /// Time to send the data and get its reply (default 600 s).
    pub data_timeout: Duration,
    /// How long an unused connection is kept (default 5 s).
    pub idle_timeout: Duration,
    /// What is demanded of TLS (default [`TlsPolicy::May`]).
    pub tls: TlsPolicy,
    /// Set `TCP_NODELAY` (always, except to measure what Nagle costs).
    pub nodelay: bool,
    /// Re-encodes lines over [`SMTP_MAX_LINE`] octets before sending (`None`: sent as they
    /// are, and a strict next hop may refuse them).
    pub line_fitter: Option<Arc<dyn LineFitter>>,
}

impl std::fmt::Debug for SmtpClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClientOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("helo", &self.helo)
            .field("concurrency", &self.concurrency)
            .field("connect_timeout", &self.connect_timeout)
            .field("reply_timeout", &self.reply_timeout)
            .field("data_timeout", &self.data_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("tls", &self.tls)
            .field("nodelay", &self.nodelay)
            .field("line_fitter", &self.line_fitter.is_some())
            .finish()
    }
}

impl SmtpClientOptions {
    /// The defaults for `host:port`, saying `EHLO helo`.
    pub fn new(host: &str, port: u16, helo: &str) -> Self {
        Self {
            host: host.to_owned(),
            port,
            helo: helo.to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
            connect_timeout: CONNECT_TIMEOUT,
            reply_timeout: REPLY_TIMEOUT,
            data_timeout: DATA_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            tls: TlsPolicy::May,
            nodelay: true,
            line_fitter: None,
        }
    }
}

/// Delivers one lane of the spool to an SMTP next hop.
#[derive(Debug)]
pub struct SmtpAgent {
    inner: Arc<Inner>,
}

struct Inner {
    opts: SmtpClientOptions,
    relay: String,
    lane: Lane,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("opts", &self.opts)
            .field("lane", &self.lane)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl SmtpAgent {
    /// An agent for `lane`; nothing is connected until mail is due.
    ///
    /// # Errors
    /// [`ServerError::Tls`] when `verify` has no trusted certificate to verify with (an
    /// unreadable or empty CA file, or an empty system trust store).
    pub fn new(
        opts: SmtpClientOptions,
        lane: Lane,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let tls = match &opts.tls {
            TlsPolicy::None => None,
            TlsPolicy::May | TlsPolicy::Encrypt => opportunistic_tls(),
            TlsPolicy::Verify { ca_file } => Some(verifying_tls(ca_file.as_deref())?),
        };
        if opts.tls.required() && tls.is_none() {
            return Err(ServerError::Tls {
                path: PathBuf::new(),
                reason: "no TLS client configuration could be built".to_owned(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                relay: format!("{}:{}", opts.host, opts.port),
                opts,
                lane,
                spool,
                metrics,
                tls,
            }),
        })
    }

    /// Delivers until `stop` fires; messages in hand are finished and recorded first, and the
    /// cached connections get `QUIT`.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        // Each message queued or routed to the lane wakes one idle worker (or leaves a permit
        // for the next one to wait); a worker that finds mail goes on leasing until none is
        // left, so a burst wakes as many workers as it needs.
        let due = Arc::new(tokio::sync::Notify::new());
        let wake = Arc::clone(&due);
        self.inner
            .spool
            .on_due(self.inner.lane, Arc::new(move || wake.notify_one()));
        let mut workers = JoinSet::new();
        for _ in 0..self.inner.opts.concurrency.max(1) {
            workers.spawn(worker(
                Arc::clone(&self.inner),
                Arc::clone(&due),
                stop.clone(),
            ));
        }
        while workers.join_next().await.is_some() {}
    }
}

/// An SMTP attempt is stopped this long before its lease expires.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// One connection's worth of delivery: lease, deliver on the cached connection, record.
async fn worker(inner: Arc<Inner>, due: Arc<tokio::sync::Notify>, mut stop: watch::Receiver<bool>) {
    let mut cached: Option<Connection> = None;
    let mut completions: JoinSet<()> = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        while completions.try_join_next().is_some() {}
        let spool = Arc::clone(&inner.spool);
        let lane = inner.lane;
        let leased = tokio::task::spawn_blocking(move || {
            let mut leases = spool.lease(lane, 1, SystemTime::now())?;
            Ok::<_, ccgate_queue::QueueError>(leases.pop().map(|lease| {
                let body = spool.lease_body(&lease).map_err(|e| e.to_string());
                (lease, body)
            }))
        })
        .await;
        let (lease, body) = match leased {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => {
                if cached
                    .as_ref()
                    .is_some_and(|c| c.idle_since.elapsed() >= inner.opts.idle_timeout)
                    && let Some(c) = cached.take()
                {
                    c.quit().await;
                }
                // A cached connection is closed once idle long enough, so the wait ends then
                // at the latest.
                let pause = match &cached {
                    Some(c) => inner
                        .opts
                        .idle_timeout
                        .saturating_sub(c.idle_since.elapsed())
                        .min(IDLE_POLL),
                    None => IDLE_POLL,
                };
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = due.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            Ok(Err(e)) => {
                warn!(lane = %inner.lane, error = %e, "cannot lease");
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            Err(e) => {
                warn!(lane = %inner.lane, error = %e, "lease task failed");
                continue;
            }
        };
        let started = Instant::now();
        let results = match body {
            Ok(body) => {
                // The attempt ends before its lease does, so the spool never hands the same
                // recipients to a second attempt while this one still runs.
                let left = lease
                    .deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .saturating_sub(LEASE_MARGIN);
                match tokio::time::timeout(left, inner.deliver(&mut cached, &lease, &body)).await {
                    Ok(results) => results,
                    Err(_) => {
                        // The connection is in an unknown state: never reuse it.
                        cached = None;
                        let err = DeliveryError::transient(
                            FailureScope::Message,
                            "delivery attempt stopped at its lease deadline",
                        );
                        vec![Err(err); lease.recipients.len()]
                    }
                }
            }
            Err(e) => {
                let err = DeliveryError::transient(
                    FailureScope::Message,
                    format!("cannot read the queued message: {e}"),
                );
                vec![Err(err); lease.recipients.len()]
            }
        };
        inner
            .metrics
            .observe_delivery(inner.lane.as_str(), started.elapsed());
        let attempt = Attempt {
            lane: inner.lane,
            relay: &inner.relay,
            metrics: &inner.metrics,
        };
        delivery_log::report(attempt, &lease, &results, None);
        let spool = Arc::clone(&inner.spool);
        completions.spawn_blocking(move || {
            let queue_id = lease.queue_id;
            if let Err(e) = spool.complete(lease, &results, SystemTime::now()) {
                warn!(queue_id = %queue_id, error = %e, "cannot record the delivery");
            }
        });
    }
    if let Some(c) = cached.take() {
        c.quit().await;
    }
    while completions.join_next().await.is_some() {}
}

impl Inner {
    /// One result per recipient of `lease`, in order.
    async fn deliver(
        &self,
        cached: &mut Option<Connection>,
        lease: &Lease,
        body: &[u8],
    ) -> Vec<DeliveryResult> {
        let n = lease.recipients.len();
        // Lines over 998 octets (accepted from SMTP clients, as Postfix accepts them) are
        // re-encoded so that a next hop holding to RFC 5321's limit takes the message; the
        // content a MIME reader decodes is the same.
        let fitted = match &self.opts.line_fitter {
            Some(fitter) => fitter.fit(body, SMTP_MAX_LINE),
            None => Cow::Borrowed(body),
        };
        if matches!(fitted, Cow::Owned(_)) {
            debug!(queue_id = %lease.queue_id, "long lines re-encoded for the next hop");
        }
        // Every line end made CR LF, leading dots doubled, `.` CR LF at the end: bare CR and
        // bare LF never reach the wire, so no SMTP smuggling through this gateway.
        let mut data = Vec::with_capacity(fitted.len() + fitted.len() / 64 + 8);
        encode_data(&fitted, &mut data);
        drop(fitted);
        for fresh_retry in [false, true] {
            let reused = cached.is_some();
            let mut conn = match cached.take() {
                Some(c) => c,
                None => match self.connect().await {
                    Ok(c) => c,
                    Err(e) => return vec![Err(self.session_error(&e)); n],
                },
            };
            let mut txn = Txn {
                results: vec![None; n],
                accepted: Vec::new(),
                mail_replied: false,
            };
            match self.transaction(&mut conn, lease, &data, &mut txn).await {
                Ok(reusable) => {
                    if reusable {
                        conn.idle_since = Instant::now();
                        *cached = Some(conn);
                    } else {
                        conn.quit().await;
                    }
                    let fallback = DeliveryError::transient(
                        FailureScope::Message,
                        "no reply recorded for this recipient",
                    );
                    return txn
                        .results
                        .into_iter()
                        .map(|r| r.unwrap_or_else(|| Err(fallback.clone())))
                        .collect();
                }
                Err(e) if reused && !fresh_retry && !txn.mail_replied => {
                    // The server closed the cached connection while it was idle: nothing was
                    // accepted, so try once on a new connection.
                    debug!(relay = %self.relay, error = %e, "cached connection went stale");
                }
                Err(e) => {
                    let err = self.session_error(&e);
                    return txn
                        .results
                        .into_iter()
                        .map(|r| r.unwrap_or_else(|| Err(err.clone())))
                        .collect();
                }
            }
        }
        let err = DeliveryError::transient(FailureScope::Destination, "connection lost twice")
            .with_status(StatusCode::NO_ANSWER);
        vec![Err(err); n]
    }

    /// Runs one transaction on `c`. `Ok(reusable)` when the session is still in step (every
    /// recipient decided); `Err` when the session broke (undecided recipients are the caller's).
    async fn transaction(
        &self,
        c: &mut Connection,
        lease: &Lease,
        data: &[u8],
        txn: &mut Txn,
    ) -> Result<bool, SessionError> {
        let sender = lease.sender.to_string();
        let rcpts: Vec<String> = lease
            .recipients
            .iter()
            .map(|r| r.address.to_string())
            .collect();
        let mut params = String::new();
        if let Some(limit) = c.caps.size {
            if limit > 0 && data.len() > limit {
                let e = DeliveryError::permanent(
                    FailureScope::Message,
                    format!(
                        "message size {} exceeds the limit {limit} of {}",
                        data.len(),
                        self.relay
                    ),
                )
                .with_status(status(5, 3, 4));
                txn.fill(&e);
                return Ok(true);
            }
            params.push_str(&format!(" SIZE={}", data.len()));
        }
        if c.caps.eightbitmime && !data.is_ascii() {
            params.push_str(" BODY=8BITMIME");
        }
        if !sender.is_ascii() || rcpts.iter().any(|r| !r.is_ascii()) {
            if !c.caps.smtputf8 {
                let e = DeliveryError::permanent(
                    FailureScope::Message,
                    format!(
                        "{} does not offer SMTPUTF8, needed for a non-ASCII address",
                        self.relay
                    ),
                )
                .with_status(status(5, 6, 7));
                txn.fill(&e);
                return Ok(true);
            }
            params.push_str(" SMTPUTF8");
        }
        let mail = format!("MAIL FROM:<{sender}>{params}\r\n");
        let timeout = self.opts.reply_timeout;
        let data_reply;
        if c.caps.pipelining {
            let mut batch = mail;
            for r in &rcpts {
                batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
            }
            batch.push_str("DATA\r\n");
            c.send(batch.as_bytes(), timeout).await?;
            let mail_reply = c.reply(timeout, "MAIL FROM").await?;
            txn.mail_replied = true;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for _ in &rcpts {
                rcpt_replies.push(c.reply(timeout, "RCPT TO").await?);
            }
            let reply = c.reply(timeout, "DATA").await?;
            if !mail_reply.is_positive() {
                txn.fill(&self.reply_error(&mail_reply, FailureScope::Message, "MAIL FROM"));
                return self.abort(c, reply.code == 354).await;
            }
            for (i, r) in rcpt_replies.iter().enumerate() {
                txn.rcpt(i, r, self);
            }
            if reply.code != 354 {
                txn.fill(&self.reply_error(&reply, FailureScope::Message, "DATA"));
                return self.abort(c, false).await;
            }
            if txn.accepted.is_empty() {
                return self.abort(c, true).await;
            }
            data_reply = reply;
        } else {
            c.send(mail.as_bytes(), timeout).await?;
            let mail_reply = c.reply(timeout, "MAIL FROM").await?;
            txn.mail_replied = true;
            if !mail_reply.is_positive() {
                txn.fill(&self.reply_error(&mail_reply, FailureScope::Message, "MAIL FROM"));
                return self.abort(c, false).await;
            }
            for (i, r) in rcpts.iter().enumerate() {
                c.send(format!("RCPT TO:<{r}>\r\n").as_bytes(), timeout)
                    .await?;
                let reply = c.reply(timeout, "RCPT TO").await?;
                txn.rcpt(i, &reply, self);
            }
            if txn.accepted.is_empty() {
                return self.abort(c, false).await;
            }
            c.send(b"DATA\r\n", timeout).await?;
            let reply = c.reply(timeout, "DATA").await?;
            if reply.code != 354 {
                txn.fill(&self.reply_error(&reply, FailureScope::Message, "DATA"));
                return self.abort(c, false).await;
            }
            data_reply = reply;
        }
        debug!(queue_id = %lease.queue_id, relay = %self.relay, reply = %data_reply, "sending data");
        c.send(data, self.opts.data_timeout).await?;
        let done = c.reply(self.opts.data_timeout, "end of DATA").await?;
        if done.is_positive() {
            for &i in &txn.accepted {
                if let Some(slot) = txn.results.get_mut(i) {
                    *slot = Some(Ok(()));
                }
            }
            debug!(queue_id = %lease.queue_id, relay = %self.relay, reply = %done, "accepted");
        } else {
            txn.fill(&self.reply_error(&done, FailureScope::Message, "end of DATA"));
        }
        Ok(true)
    }

    /// Leaves a transaction that will not reach the end of data: an empty body if the server
    /// already said 354 (RFC 2920 §3.1), then `RSET`. Answers whether the session is reusable.
    async fn abort(&self, c: &mut Connection, in_data: bool) -> Result<bool, SessionError> {
        let timeout = self.opts.reply_timeout;
        if in_data {
            c.send(b".\r\n", timeout).await?;
            let _ignored = c.reply(timeout, "end of DATA").await?;
        }
        c.send(b"RSET\r\n", timeout).await?;
        Ok(c.reply(timeout, "RSET").await?.is_positive())
    }

    /// Connects, reads the greeting, says EHLO, and upgrades with STARTTLS when offered.
    async fn connect(&self) -> Result<Connection, SessionError> {
        match self.connect_once(self.tls.as_ref()).await {
            Err(SessionError::Tls(e)) if !self.opts.tls.required() => {
                warn!(relay = %self.relay, error = %e, "TLS handshake failed; retrying in plaintext (opportunistic TLS)");
                self.connect_once(None).await
            }
            other => other,
        }
    }

    async fn connect_once(&self, tls: Option<&TlsConnector>) -> Result<Connection, SessionError> {
        let addr = (self.opts.host.as_str(), self.opts.port);
        let tcp = tokio::time::timeout(self.opts.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SessionError::Timeout("connect"))?
            .map_err(SessionError::Connect)?;
        tcp.set_nodelay(self.opts.nodelay)
            .map_err(SessionError::Io)?;
        let mut c = Connection::new(Box::new(tcp));
        let timeout = self.opts.reply_timeout;
        let greeting = c.reply(timeout, "greeting").await?;
        if greeting.code != 220 {
            return Err(SessionError::Refused(greeting));
        }
        c.ehlo(&self.opts.helo, timeout).await?;
        if let Some(connector) = tls
            && c.caps.starttls
        {
            c.send(b"STARTTLS\r\n", timeout).await?;
            let reply = c.reply(timeout, "STARTTLS").await?;
            if reply.code == 220 {
                let name = ServerName::try_from(self.opts.host.clone())
                    .map_err(|e| SessionError::Tls(e.to_string()))?;
                // Anything the server sent after its 220 is discarded with the buffer.
                let io = c.stream.into_inner();
                let stream = tokio::time::timeout(timeout, connector.connect(name, io))
                    .await
                    .map_err(|_| SessionError::Timeout("TLS handshake"))?
                    .map_err(|e| SessionError::Tls(e.to_string()))?;
                c = Connection::new(Box::new(stream));
                c.tls = true;
                c.ehlo(&self.opts.helo, timeout).await?;
            } else if self.opts.tls.required() {
                return Err(SessionError::TlsRequired(format!(
                    "STARTTLS refused: {reply}"
                )));
            } else {
                warn!(relay = %self.relay, reply = %reply, "STARTTLS refused; continuing in plaintext");
            }
        } else if self.opts.tls.required() {
            return Err(SessionError::TlsRequired(
                "TLS is required, but the server does not offer STARTTLS".to_owned(),
            ));
        }
        debug!(relay = %self.relay, tls = c.tls, pipelining = c.caps.pipelining, "connected");
        Ok(c)
    }

    /// A refusal reply as a delivery error: 5xx permanent, anything else transient.
    fn reply_error(&self, reply: &Reply, scope: FailureScope, stage: &str) -> DeliveryError {
        let text = format!("host {} said: {reply} (in reply to {stage})", self.relay);
        let err = if (500..600).contains(&reply.code) {
            DeliveryError::permanent(scope, text)
        } else {
            DeliveryError::transient(scope, text)
        };
        let err = err.with_diagnostic(reply.to_string());
        match reply_status(reply) {
            Some(s) => err.with_status(s),
            None => err,
        }
    }

    /// A broken session: transient, scope `Destination`.
    fn session_error(&self, e: &SessionError) -> DeliveryError {
        let text = format!("{}: {e}", self.relay);
        let err = DeliveryError::transient(FailureScope::Destination, text);
        match e {
            SessionError::Refused(r) | SessionError::Closing(r) => {
                let err = err.with_diagnostic(r.to_string());
                match reply_status(r) {
                    Some(s) if s.class() == 4 => err.with_status(s),
                    _ => err.with_status(StatusCode::NO_ANSWER),
                }
            }
            SessionError::Connect(_) | SessionError::Timeout("connect" | "greeting") => {
                err.with_status(StatusCode::NO_ANSWER)
            }
            SessionError::TlsRequired(_) => err.with_status(status(4, 7, 4)),
            SessionError::Tls(_) => err.with_status(status(4, 7, 5)),
            _ => err.with_status(status(4, 4, 2)),
        }
    }
}

fn status(class: u8, subject: u16, detail: u16) -> StatusCode {
    StatusCode::new(class, subject, detail).unwrap_or(StatusCode::TRANSIENT)
}

/// The decisions of one transaction so far.
struct Txn {
    results: Vec<Option<DeliveryResult>>,
    accepted: Vec<usize>,
    mail_replied: bool,
}

impl Txn {
    /// Decides every recipient not decided yet.
    fn fill(&mut self, e: &DeliveryError) {
        for slot in &mut self.results {
            if slot.is_none() {
                *slot = Some(Err(e.clone()));
            }
        }
    }

    fn rcpt(&mut self, i: usize, reply: &Reply, inner: &Inner) {
        if reply.is_positive() {
            self.accepted.push(i);
        } else if let Some(slot) = self.results.get_mut(i) {
            *slot = Some(Err(inner.reply_error(
                reply,
                FailureScope::Recipient,
                "RCPT TO",
            )));
        }
    }
}

/// Why a session broke.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("lost connection: {0}")]
    Io(std::io::Error),
    #[error("timeout waiting for the {0}")]
    Timeout(&'static str),
    #[error("lost connection (closed by the server) while waiting for the {0}")]
    Closed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("{0}")]
    TlsRequired(String),
    #[error("refused to talk: {0}")]
    Refused(Reply),
    #[error("service closing: {0}")]
    Closing(Reply),
}

/// A reply from the next hop, read by the shared client-side reader of `ccgate-smtp`.
type Reply = ServerReply;

/// The RFC 3463 code at the start of a reply's text, if it agrees with the reply code.
fn reply_status(reply: &Reply) -> Option<StatusCode> {
    let first = reply.lines.first()?.split_whitespace().next()?;
    let s: StatusCode = first.parse().ok()?;
    (u16::from(s.class()) == reply.code / 100).then_some(s)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open session to the next hop.
struct Connection {
    stream: BufStream<Box<dyn Io>>,
    caps: Capabilities,
    tls: bool,
    idle_since: Instant,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("caps", &self.caps)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(io: Box<dyn Io>) -> Self {
        Self {
            stream: BufStream::new(io),
            caps: Capabilities::default(),
            tls: false,
            idle_since: Instant::now(),
        }
    }

    /// Writes `bytes` in one go (one segment when it fits) and flushes.
    async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), SessionError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| SessionError::Timeout("write"))?
            .map_err(SessionError::Io)
    }

    /// Reads one reply; a `421` is a [`SessionError::Closing`].
    async fn reply(
        &mut self,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<Reply, SessionError> {
        let reply = tokio::time::timeout(timeout, read_reply(&mut self.stream, stage))
            .await
            .map_err(|_| SessionError::Timeout(stage))??;
        if reply.code == 421 {
            return Err(SessionError::Closing(reply));
        }
        Ok(reply)
    }

    /// EHLO, or HELO when EHLO is refused.
    async fn ehlo(&mut self, helo: &str, timeout: Duration) -> Result<(), SessionError> {
        self.send(format!("EHLO {helo}\r\n").as_bytes(), timeout)
            .await?;
        let reply = self.reply(timeout, "EHLO").await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        self.send(format!("HELO {helo}\r\n").as_bytes(), timeout)
            .await?;
        let reply = self.reply(timeout, "HELO").await?;
        if reply.code != 250 {
            return Err(SessionError::Refused(reply));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    /// `QUIT`, a short wait for its reply, and close.
    async fn quit(mut self) {
        if self.send(b"QUIT\r\n", QUIT_TIMEOUT).await.is_ok() {
            let _ignored = self.reply(QUIT_TIMEOUT, "QUIT").await;
        }
        let _ignored = tokio::time::timeout(QUIT_TIMEOUT, self.stream.shutdown()).await;
    }
}

async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    stage: &'static str,
) -> Result<Reply, SessionError> {
    let mut reader = ReplyReader::new();
    loop {
        let mut raw = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(SessionError::Io)?;
        if !raw.ends_with(b"\n") {
            return Err(if n as u64 >= MAX_LINE {
                SessionError::Protocol(format!("reply line longer than {MAX_LINE} bytes"))
            } else {
                SessionError::Closed(stage)
            });
        }
        if let Some(reply) = reader
            .push_line(&raw)
            .map_err(|e| SessionError::Protocol(e.to_string()))?
        {
            return Ok(reply);
        }
    }
}

/// A client configuration for opportunistic STARTTLS: ring, any certificate.
fn opportunistic_tls() -> Option<TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| warn!(error = %e, "no TLS for SMTP delivery"))
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    Some(TlsConnector::from(Arc::new(config)))
}

/// A client configuration that verifies the server's certificate chain and name (ring),
/// trusting the CA certificates of `ca_file`, or the system's store without one.
fn verifying_tls(ca_file: Option<&std::path::Path>) -> Result<TlsConnector, ServerError> {
    let (source, certs) = match ca_file {
        Some(path) => {
            let bad = |reason: String| ServerError::Tls {
                path: path.to_path_buf(),
                reason,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            (path.to_path_buf(), certs)
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                warn!(error = %e, "reading the system's trusted certificates");
            }
            (PathBuf::from("(the system's trust store)"), found.certs)
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ServerError::Tls {
            path: source,
            reason: "no trusted CA certificate found (install ca-certificates or set modern.tls_ca_file)"
                .to_owned(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls {
            path: source,
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts any server certificate (opportunistic TLS: encryption against passive eavesdropping,
/// no authentication of the next hop). Handshake signatures are still verified.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_data(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        super::encode_data(body, &mut out);
        out
    }

    #[test]
    fn data_is_stuffed_and_crlf_only() {
        assert_eq!(encode_data(b""), b".\r\n");
        assert_eq!(encode_data(b"a\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(
            encode_data(b"\r\n.x\r\n..y\n.\r\nz\r.\r"),
            b"\r\n..x\r\n...y\r\n..\r\nz\r\n..\r\n.\r\n"
        );
        // In the header section a bare CR is a space (one header, as this gateway reads it).
        assert_eq!(
            encode_data(b"S: a\rB: b\r\n\r\nz\r\n"),
            b"S: a B: b\r\n\r\nz\r\n.\r\n"
        );
        assert_eq!(encode_data(b"a\r\n\r\nb\r\n"), b"a\r\n\r\nb\r\n.\r\n");
    }

    #[tokio::test]
    async fn replies_and_caps() {
        let mut input: &[u8] =
            b"250-mx.test hi\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n550 5.1.1 no such user\r\n";
        let r = read_reply(&mut input, "EHLO").await.unwrap();
        let caps = Capabilities::from_ehlo(&r);
        assert!(caps.pipelining && caps.starttls && !caps.smtputf8);
        assert_eq!(caps.size, Some(1000));
        let r = read_reply(&mut input, "RCPT").await.unwrap();
        assert_eq!(r.code, 550);
        assert_eq!(reply_status(&r).unwrap().to_string(), "5.1.1");
        assert!(matches!(
            read_reply(&mut input, "RCPT").await,
            Err(SessionError::Closed(_))
        ));
        let mut bad: &[u8] = b"25x nope\r\n";
        assert!(matches!(
            read_reply(&mut bad, "MAIL").await,
            Err(SessionError::Protocol(_))
        ));
    }
}
