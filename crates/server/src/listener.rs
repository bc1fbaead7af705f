//! The SMTP listener: accept, bound the number of sessions, drive each session, queue durably.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ccgate_core::{EmailAddress, Envelope, QueueId};
use ccgate_queue::{Route, Spool};
use ccgate_smtp::{
    Error as SmtpError, Event, QueueError, RcptVerdict, RecipientPolicy, Session, SessionConfig,
    for_error,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::ServerError;
use crate::metrics::{Event as MetricEvent, Metrics};
use crate::routing::Routing;
use crate::shutdown::stopped;
use crate::stream::Conn;

/// Read buffer size per connection.
const READ_CHUNK: usize = 64 * 1024;

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
        }
    }
}

/// Everything a session task needs.
struct Shared {
    settings: SmtpSettings,
    session: SessionConfig,
    spool: Arc<Spool>,
    routing: Arc<dyn Routing>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
}

/// The session's view of the router; refusals are counted.
struct Policy(Arc<dyn Routing>, Arc<Metrics>);

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
        Ok(Self {
            listeners,
            shared: Arc::new(Shared {
                settings,
                session,
                spool,
                routing,
                tls,
                metrics,
            }),
        })
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
        let mut sessions = JoinSet::new();
        let mut acceptors = JoinSet::new();
        for listener in self.listeners {
            let shared = Arc::clone(&self.shared);
            let permits = Arc::clone(&permits);
            let stop_sessions = stop.clone();
            let mut stop = stop.clone();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(TcpStream, SocketAddr)>(64);
            acceptors.spawn(async move {
                loop {
                    tokio::select! {
                        () = stopped(&mut stop) => break,
                        accepted = listener.accept() => match accepted {
                            Ok(conn) => {
                                if tx.send(conn).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                // EMFILE and friends: back off instead of spinning (mini-redis).
                                warn!(error = %e, "accept failed; backing off");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        },
                    }
                }
            });
            let spawner = async move {
                let mut set = JoinSet::new();
                while let Some((stream, peer)) = rx.recv().await {
                    let shared = Arc::clone(&shared);
                    let stop = stop_sessions.clone();
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            set.spawn(
                                async move {
                                    handle(stream, peer, shared, stop).await;
                                    drop(permit);
                                }
                                .instrument(info_span!("smtp", %peer)),
                            );
                        }
                        Err(_) => {
                            set.spawn(refuse_busy(stream, peer));
                        }
                    }
                    while set.try_join_next().is_some() {}
                }
                while set.join_next().await.is_some() {}
            };
            sessions.spawn(spawner);
        }
        while acceptors.join_next().await.is_some() {}
        while sessions.join_next().await.is_some() {}
    }
}

/// Over `max_connections`: one reply, then close.
async fn refuse_busy(mut stream: TcpStream, peer: SocketAddr) {
    info!(%peer, "refused: too many connections");
    let mut wire = Vec::new();
    for_error(&SmtpError::TooManyConnections).encode(&mut wire);
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&wire)).await;
    let _ = stream.shutdown().await;
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
    let mut session = Session::new(
        shared.session.clone(),
        Some(peer.ip()),
        Policy(Arc::clone(&shared.routing), Arc::clone(&shared.metrics)),
    );
    let started = Instant::now();
    let session_deadline = started + shared.settings.session_timeout;
    let mut grace_deadline: Option<Instant> = None;
    let mut wire = Vec::with_capacity(512);
    session.greeting().encode(&mut wire);
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    info!("connect");
    loop {
        let out = session.feed(&input);
        input.drain(..out.consumed.min(input.len()));
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
                let result = queue(&shared, id, envelope, header, data).await;
                if let Some(reply) = session.message_queued(result) {
                    reply.encode(&mut wire);
                }
                fed_event = true;
            }
            Some(Event::StartTls) => {
                if write_all(&mut conn, &mut wire).await.is_err() {
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
            let _ = write_all(&mut conn, &mut wire).await;
            let _ = conn.shutdown().await;
            info!(seconds = started.elapsed().as_secs_f64(), "disconnect");
            return;
        }
        if fed_event {
            // Pipelined input after the message may already be buffered.
            continue;
        }
        if write_all(&mut conn, &mut wire).await.is_err() {
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
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, conn.read(&mut chunk)) => r,
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
            Ok(Ok(n)) => input.extend_from_slice(chunk.get(..n).unwrap_or_default()),
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
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.write_all(&wire)).await;
    let _ = conn.shutdown().await;
}

async fn write_all(conn: &mut Conn, wire: &mut Vec<u8>) -> std::io::Result<()> {
    if wire.is_empty() {
        return Ok(());
    }
    let result = conn.write_all(wire).await;
    wire.clear();
    result
}

/// Routes and writes the message to the spool; the result decides the reply to DATA.
async fn queue(
    shared: &Arc<Shared>,
    id: QueueId,
    envelope: Envelope,
    header: String,
    data: Vec<u8>,
) -> Result<QueueId, QueueError> {
    let routes: Vec<Route> = envelope
        .recipients
        .iter()
        .map(|r| shared.routing.route(&envelope.sender, r))
        .collect();
    let mut body = Vec::with_capacity(header.len() + data.len());
    body.extend_from_slice(header.as_bytes());
    body.extend_from_slice(&data);
    let size = body.len();
    let spool = Arc::clone(&shared.spool);
    let sender = envelope.sender.to_string();
    let n_rcpts = envelope.recipients.len();
    let traced = crate::TraceEvent::accepted("smtp", &id, &envelope, &routes, &body, "");
    let joined = tokio::task::spawn_blocking(move || {
        spool.enqueue_with_id(id, &envelope, &routes, &body, SystemTime::now())
    })
    .await;
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
                QueueError::DiskFull
            } else {
                QueueError::Temporary
            })
        }
        Err(e) => {
            warn!(queue_id = %id, error = %e, "not queued: the spool task failed");
            Err(QueueError::Temporary)
        }
    }
}
