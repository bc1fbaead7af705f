//! The SMTP listener: accept, bound the number of sessions, drive each session, queue durably.
//!
//! Memory per session is bounded: the input buffer holds what one read brings (a
//! [`BytesMut`], advanced without copying as the session consumes it), and message text is
//! counted against the server's [`MemoryBudget`]; a message that would go past it is read to
//! its end and refused with `452 4.3.1`. A complete message is handed to the spool as shared
//! [`Bytes`] (the `Received:` header and the text as received), never copied on the way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use ccgate_core::{EmailAddress, Envelope, QueueId};
use ccgate_queue::{BodyPart, Route, SpillFile, Spool};
use ccgate_smtp::{
    Error as SmtpError, Event, NotQueued, RcptVerdict, RecipientPolicy, Session, SessionConfig,
    for_error,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::ServerError;
use crate::limits::{ClientLimits, MemoryBudget, Network, Reservation};
use crate::metrics::{Event as MetricEvent, Metrics};
use crate::routing::Routing;
use crate::shutdown::stopped;
use crate::stream::Conn;

/// Room made in a session's input buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Message text held in memory before it is moved to the message's spill file: a large
/// message is streamed to the spool's folder as it arrives, so memory per session stays
/// about this much whatever the message size.
const SPILL_AT: usize = 256 * 1024;
/// Time allowed to send a last reply and close, when the session ends for a reason of ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the listener behaves (`[smtp]` of the config).
#[derive(Clone)]
pub struct SmtpSettings {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Greeting and `Received:` name.
    pub hostname: String,
    /// Largest message accepted, in bytes.
    pub max_message_size: u64,
    /// Most recipients per transaction.
    pub max_recipients: usize,
    /// Most concurrent sessions; one more gets `421 4.7.0`.
    pub max_connections: usize,
    /// STARTTLS, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A session that sends nothing for this long is closed (`421 4.4.2`).
    pub idle_timeout: Duration,
    /// No session lasts longer than this (slowloris).
    pub session_timeout: Duration,
    /// On shutdown, how long a session in a transaction may take to finish it.
    pub shutdown_grace: Duration,
    /// Longest message text line accepted, CR LF included (`usize::MAX`: no limit, the
    /// default, as in Postfix).
    pub max_line_length: usize,
    /// Most sessions at once from one client address (0: no limit); one more gets
    /// `421 4.7.0`.
    pub max_connections_per_client: usize,
    /// Most new sessions per minute from one client address (0: no limit, the default, as
    /// Postfix's `smtpd_client_connection_rate_limit`).
    pub max_connection_rate: u32,
    /// Clients the two per-client limits do not apply to (default: loopback, like
    /// Postfix's `$mynetworks` with `mynetworks_style = host`).
    pub client_limit_exceptions: Vec<Network>,
    /// Message text all sessions together may hold in memory (0: no limit); a message that
    /// would go past it gets `452 4.3.1` at its end.
    pub memory_budget: u64,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("listen", &self.listen)
            .field("hostname", &self.hostname)
            .field("max_message_size", &self.max_message_size)
            .field("max_recipients", &self.max_recipients)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("max_line_length", &self.max_line_length)
            .field(
                "max_connections_per_client",
                &self.max_connections_per_client,
            )
            .field("max_connection_rate", &self.max_connection_rate)
            .field("client_limit_exceptions", &self.client_limit_exceptions)
            .field("memory_budget", &self.memory_budget)
            .finish()
    }
}

impl SmtpSettings {
    /// Postfix-like defaults on the given addresses: 300 s idle (`smtpd_timeout`), 30 minutes
    /// per session, 30 s shutdown grace.
    pub fn new(listen: Vec<SocketAddr>, hostname: &str) -> Self {
        Self {
            listen,
            hostname: hostname.to_owned(),
            max_message_size: 25_000_000,
            max_recipients: 1000,
            max_connections: 1000,
            tls: None,
            idle_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            shutdown_grace: Duration::from_secs(30),
            max_line_length: ccgate_smtp::NO_LINE_LIMIT,
            max_connections_per_client: crate::limits::MAX_CONNECTIONS_PER_CLIENT,
            max_connection_rate: 0,
            client_limit_exceptions: Network::loopback(),
            memory_budget: crate::limits::MEMORY_BUDGET,
        }
    }
}

/// Everything a session task needs.
struct Shared {
    settings: SmtpSettings,
    /// Each new session starts from a copy; [`LiveLimits`] replaces the limits in it.
    session: Arc<std::sync::RwLock<SessionConfig>>,
    spool: Arc<Spool>,
    routing: Arc<dyn Routing>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
    clients: Arc<ClientLimits>,
    memory: Arc<MemoryBudget>,
}

/// The session's view of the router (refusals are counted) and of the spool (is it taking
/// mail, asked at MAIL FROM).
struct Policy(Arc<dyn Routing>, Arc<Metrics>, Arc<Spool>);

impl RecipientPolicy for Policy {
    fn check(&self, rcpt: &EmailAddress) -> RcptVerdict {
        let verdict = self.0.check(rcpt);
        let reason = match verdict {
            RcptVerdict::Accept => return verdict,
            RcptVerdict::Unknown => "unknown_user",
            RcptVerdict::RelayDenied => "relay_denied",
            RcptVerdict::TempFail => "temporary",
        };
        self.1.count(MetricEvent::Rejected, reason, 1);
        verdict
    }

    fn vouches_for(&self, rcpt: &EmailAddress) -> bool {
        self.0.vouches_for(rcpt)
    }

    fn accepts_mail(&self, declared_size: Option<u64>) -> Result<(), NotQueued> {
        match self.2.accepts(declared_size.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(e) if e.is_disk_full() => {
                info!(error = %e, "MAIL refused: the spool is short of space");
                Err(NotQueued::DiskFull)
            }
            // The free space could not be asked for: the message itself will tell.
            Err(ccgate_queue::QueueError::Io { .. }) => Ok(()),
            Err(e) => {
                info!(error = %e, "MAIL refused: the spool is not taking mail");
                Err(NotQueued::Temporary)
            }
        }
    }
}

/// The session limits a configuration reload may change while the listener runs
/// (`[smtp] max_message_size`, `max_recipients`): sessions started from then on use them,
/// sessions already open keep theirs.
/// It holds nothing else of the listener's (not the spool), so keeping it never delays the
/// shutdown.
#[derive(Debug, Clone)]
pub struct LiveLimits(Arc<std::sync::RwLock<SessionConfig>>);

impl LiveLimits {
    /// Puts new limits in service for new sessions (announced in their EHLO `SIZE`).
    pub fn set(&self, max_message_size: u64, max_recipients: usize) {
        let mut session = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        session.limits.max_message_size = max_message_size;
        session.limits.max_recipients = max_recipients;
    }
}

/// A bound SMTP listener.
pub struct SmtpServer {
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
}

impl SmtpServer {
    /// Binds every listening address.
    ///
    /// # Errors
    /// [`ServerError::Bind`] for an address that cannot be bound, [`ServerError::Settings`]
    /// for an invalid host name.
    pub async fn bind(
        settings: SmtpSettings,
        spool: Arc<Spool>,
        routing: Arc<dyn Routing>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let mut session = SessionConfig::new(&settings.hostname)
            .map_err(|e| ServerError::Settings(e.to_string()))?;
        session.limits.max_message_size = settings.max_message_size;
        session.limits.max_recipients = settings.max_recipients;
        session.limits.max_text_line = settings.max_line_length;
        session.tls_available = settings.tls.is_some();
        let mut listeners = Vec::with_capacity(settings.listen.len());
        for addr in &settings.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: *addr,
                    source,
                })?;
            listeners.push(listener);
        }
        let tls = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let clients = Arc::new(ClientLimits::new(
            settings.max_connections_per_client,
            settings.max_connection_rate,
            settings.client_limit_exceptions.clone(),
        ));
        let memory = MemoryBudget::new(settings.memory_budget);
        Ok(Self {
            listeners,
            shared: Arc::new(Shared {
                settings,
                session: Arc::new(std::sync::RwLock::new(session)),
                spool,
                routing,
                tls,
                metrics,
                clients,
                memory,
            }),
        })
    }

    /// The handle a configuration reload changes the session limits through.
    pub fn live_limits(&self) -> LiveLimits {
        LiveLimits(Arc::clone(&self.shared.session))
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `stop` fires; then accepts nothing more, lets sessions finish their
    /// transaction within the grace period, and returns when every session is gone.
    pub async fn serve(self, stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.shared.settings.max_connections.max(1)));
        let mut acceptors = JoinSet::new();
        for listener in self.listeners {
            let shared = Arc::clone(&self.shared);
            let permits = Arc::clone(&permits);
            let mut stop = stop.clone();
            // Each listener's task accepts and spawns the sessions itself (no hand-off to
            // another task per connection), then waits for its sessions once stopped.
            acceptors.spawn(async move {
                let mut sessions = JoinSet::new();
                loop {
                    let (stream, peer) = tokio::select! {
                        () = stopped(&mut stop) => break,
                        accepted = listener.accept() => match accepted {
                            Ok(conn) => conn,
                            Err(e) => {
                                // EMFILE and friends: back off instead of spinning (mini-redis).
                                warn!(error = %e, "accept failed; backing off");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        },
                    };
                    while sessions.try_join_next().is_some() {}
                    let client = match shared.clients.admit(peer.ip(), Instant::now().into_std()) {
                        Ok(client) => client,
                        Err(reason) => {
                            sessions.spawn(refuse(stream, peer, reason));
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        sessions.spawn(refuse(stream, peer, SmtpError::TooManyConnections));
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    let session_stop = stop.clone();
                    sessions.spawn(
                        async move {
                            handle(stream, peer, shared, session_stop).await;
                            drop(permit);
                            drop(client);
                        }
                        .instrument(info_span!("smtp", %peer)),
                    );
                }
                drop(listener);
                while sessions.join_next().await.is_some() {}
            });
        }
        while acceptors.join_next().await.is_some() {}
    }
}

/// Over a connection limit: one reply, then close.
async fn refuse(mut stream: TcpStream, peer: SocketAddr, reason: SmtpError) {
    info!(%peer, %reason, "refused");
    let mut wire = Vec::new();
    for_error(&reason).encode(&mut wire);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = stream.write_all(&wire).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// One SMTP session, from greeting to close.
async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::Plain(stream);
    let config = shared
        .session
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut session = Session::new(
        config,
        Some(peer.ip()),
        Policy(
            Arc::clone(&shared.routing),
            Arc::clone(&shared.metrics),
            Arc::clone(&shared.spool),
        ),
    );
    let started = Instant::now();
    let session_deadline = started + shared.settings.session_timeout;
    let mut grace_deadline: Option<Instant> = None;
    let mut wire = Vec::with_capacity(512);
    session.greeting().encode(&mut wire);
    let mut input = BytesMut::new();
    let mut reservation = Reservation::new(&shared.memory);
    // The spill file of the message being received, with the session's `data_count` it
    // belongs to (a refused message's file is dropped when the next one starts), and a copy of
    // its header section (for the trace's Message-ID; at most `TRACE_HEAD` octets).
    let mut spill: Option<(u64, SpillFile)> = None;
    let mut spilled_head: Vec<u8> = Vec::new();
    // Replies and reads may each take as long as the client may stay silent.
    let io_timeout = shared.settings.idle_timeout;
    info!("connect");
    loop {
        let out = session.feed(&input);
        input.advance(out.consumed.min(input.len()));
        if spill
            .as_ref()
            .is_some_and(|(n, _)| *n != session.data_count())
        {
            spill = None;
            spilled_head.clear();
        }
        if session.message_len() >= SPILL_AT {
            let text = session.take_message_text();
            let file = spill.take().map(|(_, f)| f);
            if file.is_none() {
                spilled_head = header_section(&text).to_vec();
            }
            match spill_text(&shared.spool, file, text).await {
                Ok(file) => spill = Some((session.data_count(), file)),
                Err(e) => {
                    warn!(error = %e, "message refused: its text could not be written to the spool's folder");
                    session.refuse_message(SmtpError::Queue(if e.is_disk_full() {
                        NotQueued::DiskFull
                    } else {
                        NotQueued::Temporary
                    }));
                }
            }
        }
        let held = u64::try_from(session.message_len()).unwrap_or(u64::MAX);
        if !reservation.cover(held) {
            warn!(
                size = held,
                "message refused: the memory budget for messages in transit is used up"
            );
            session.refuse_message(SmtpError::Queue(NotQueued::MemoryBudget));
            reservation.reset();
        }
        out.encode_replies(&mut wire);
        let mut fed_event = false;
        match out.event {
            Some(Event::MessageComplete {
                envelope,
                data,
                trace,
                ..
            }) => {
                let id = QueueId::generate();
                let header =
                    trace.received_header(&id, &ccgate_core::rfc5322_date_at(SystemTime::now()));
                let spilled = spill.take().map(|(_, f)| f);
                let head = std::mem::take(&mut spilled_head);
                let result = queue(&shared, id, envelope, header, (spilled, head), data).await;
                reservation.reset();
                if let Some(reply) = session.message_queued(result) {
                    reply.encode(&mut wire);
                }
                fed_event = true;
            }
            Some(Event::StartTls) => {
                if write_all(&mut conn, &mut wire, io_timeout).await.is_err() {
                    return;
                }
                let (Conn::Plain(tcp), Some(acceptor)) = (conn, shared.tls.as_ref()) else {
                    warn!("STARTTLS event without TLS configured or on a TLS connection");
                    return;
                };
                match tokio::time::timeout(shared.settings.idle_timeout, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => {
                        conn = Conn::Tls(Box::new(tls));
                        session.tls_established();
                        debug!("TLS established");
                    }
                    Ok(Err(e)) => {
                        info!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        info!("TLS handshake timed out");
                        return;
                    }
                }
                fed_event = true;
            }
            None => {}
        }
        if out.close || session.is_closed() {
            let _ = write_all(&mut conn, &mut wire, CLOSE_TIMEOUT).await;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.shutdown()).await;
            info!(seconds = started.elapsed().as_secs_f64(), "disconnect");
            return;
        }
        if fed_event {
            // Pipelined input after the message may already be buffered.
            continue;
        }
        if let Err(e) = write_all(&mut conn, &mut wire, io_timeout).await {
            info!(error = %e, "disconnect: write failed");
            return;
        }
        // Shutdown: an idle session is closed now; one in a transaction gets the grace period
        // to finish it, and is closed as soon as it has (no new transaction starts).
        if *stop.borrow() {
            if session.in_transaction() {
                grace_deadline
                    .get_or_insert_with(|| Instant::now() + shared.settings.shutdown_grace);
            } else {
                abort(&mut conn, &mut session, &SmtpError::ShuttingDown).await;
                return;
            }
        }
        let deadline = [
            Some(session_deadline),
            Some(Instant::now() + shared.settings.idle_timeout),
            grace_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(session_deadline);
        input.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, conn.read_buf(&mut input)) => r,
            () = stopped(&mut stop), if grace_deadline.is_none() => continue,
        };
        match read {
            Ok(Ok(0)) => {
                info!(
                    seconds = started.elapsed().as_secs_f64(),
                    "disconnect: client closed"
                );
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                info!(error = %e, "disconnect: read error");
                return;
            }
            Err(_) => {
                let reason = if grace_deadline.is_some() {
                    SmtpError::ShuttingDown
                } else {
                    SmtpError::Timeout
                };
                info!(reason = %reason, "closing session");
                abort(&mut conn, &mut session, &reason).await;
                return;
            }
        }
    }
}

async fn abort<P: RecipientPolicy>(conn: &mut Conn, session: &mut Session<P>, reason: &SmtpError) {
    let mut wire = Vec::new();
    session.abort(reason).encode(&mut wire);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = conn.write_all(&wire).await;
        let _ = conn.shutdown().await;
    })
    .await;
}

/// Sends the replies in `wire`; a client that does not read them within `timeout` is an
/// error (`TimedOut`), so no session waits on a full socket buffer for ever.
async fn write_all(conn: &mut Conn, wire: &mut Vec<u8>, timeout: Duration) -> std::io::Result<()> {
    if wire.is_empty() {
        return Ok(());
    }
    let result = match tokio::time::timeout(timeout, conn.write_all(wire)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not read its replies",
        )),
    };
    wire.clear();
    result
}

/// Routes and writes the message to the spool; the result decides the reply to DATA.
async fn queue(
    shared: &Arc<Shared>,
    id: QueueId,
    envelope: Envelope,
    header: String,
    (spilled, spilled_head): (Option<SpillFile>, Vec<u8>),
    data: Vec<u8>,
) -> Result<QueueId, NotQueued> {
    let routes: Vec<Route> = envelope
        .recipients
        .iter()
        .map(|r| shared.routing.route(&envelope.sender, r))
        .collect();
    // Not copied: the spool writes the parts from these buffers and the spill file.
    let size = header.len() as u64 + spilled.as_ref().map_or(0, SpillFile::len) + data.len() as u64;
    let traced = crate::TraceEvent::accepted(
        "smtp",
        &id,
        &envelope,
        &routes,
        (
            if spilled.is_none() {
                &data
            } else {
                &spilled_head
            },
            size,
        ),
        "",
    );
    let mut body = vec![BodyPart::Bytes(Bytes::from(header.into_bytes()))];
    body.extend(spilled.map(BodyPart::File));
    body.push(BodyPart::Bytes(Bytes::from(data)));
    let sender = envelope.sender.to_string();
    let n_rcpts = envelope.recipients.len();
    let joined = if body.iter().any(|p| matches!(p, BodyPart::File(_))) {
        // A spill file is read back for the checksum: off the async workers.
        let spool = Arc::clone(&shared.spool);
        tokio::task::spawn_blocking(move || {
            spool.enqueue_parts(id, &envelope, &routes, body, SystemTime::now())
        })
        .await
        .map_err(|e| e.to_string())
    } else {
        // In memory: handed to the spool's writer from here; its pass answers through the
        // channel once the message is durable (no thread parked per message meanwhile).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handed = shared.spool.enqueue_parts_then(
            id,
            &envelope,
            &routes,
            body,
            SystemTime::now(),
            move |result| {
                let _ = tx.send(result);
            },
        );
        match handed {
            Ok(()) => rx
                .await
                .map_err(|_| "the spool dropped the message's ticket".to_owned()),
            Err(e) => Ok(Err(e)),
        }
    };
    match joined {
        Ok(Ok(id)) => {
            info!(queue_id = %id, from = %sender, nrcpt = n_rcpts, size, "queued");
            shared.metrics.count(MetricEvent::Accepted, "smtp", 1);
            shared.metrics.trace(traced);
            Ok(id)
        }
        Ok(Err(e)) => {
            warn!(queue_id = %id, error = %e, "not queued");
            Err(if e.is_disk_full() {
                NotQueued::DiskFull
            } else {
                NotQueued::Temporary
            })
        }
        Err(e) => {
            warn!(queue_id = %id, error = %e, "not queued: the spool task failed");
            Err(NotQueued::Temporary)
        }
    }
}

/// The most of a spilled message's start kept for the trace.
const TRACE_HEAD: usize = 64 * 1024;

/// The header section at the start of `text` (through its blank line), at most `TRACE_HEAD`.
fn header_section(text: &[u8]) -> &[u8] {
    let end = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(text.len(), |p| p + 4)
        .min(TRACE_HEAD);
    text.get(..end).unwrap_or(text)
}

/// Appends `text` to the message's spill file (created on first use), off the async workers.
async fn spill_text(
    spool: &Arc<Spool>,
    file: Option<SpillFile>,
    text: Vec<u8>,
) -> Result<SpillFile, ccgate_queue::QueueError> {
    let spool = Arc::clone(spool);
    tokio::task::spawn_blocking(move || {
        let mut file = match file {
            Some(file) => file,
            None => spool.spill_file()?,
        };
        file.append(&text)?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| {
        Err(ccgate_queue::QueueError::Poisoned {
            reason: format!("the spill task failed: {e}"),
            disk_full: false,
        })
    })
}
