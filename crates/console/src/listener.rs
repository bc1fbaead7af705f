//! The admin listener's connections: at most [`MAX_CONNECTIONS`] at once (more are closed
//! unanswered, as the admin listener always did), and a request must arrive within
//! [`READ_TIMEOUT`] of the accept and the whole exchange end within [`CONNECTION_TIMEOUT`]
//! (a cutover of many people may take longer than a scrape), so slow or idle clients cannot
//! hold the console (nor take anything from SMTP).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep, sleep_until};

/// Connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 32;
/// Reading stops this long after the accept (the request must be in by then): idle
/// connections must not hold the few admin slots the health probes need.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection is closed this long after the accept, answered or not.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// A listener that caps connections and bounds their time.
pub struct Capped {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

impl Capped {
    /// Caps `listener`.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

/// One accepted connection with its permit and deadlines.
pub struct Conn {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    read_deadline: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "admin connection timed out")
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read_deadline.as_mut().poll(cx).is_ready()
            || self.deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for Capped {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                        tracing::debug!(peer = %addr, "admin connection refused: {MAX_CONNECTIONS} already open");
                        drop(stream);
                        continue;
                    };
                    let permit = Some(permit);
                    let now = Instant::now();
                    return (
                        Conn {
                            stream,
                            _permit: permit,
                            read_deadline: Box::pin(sleep_until(now + READ_TIMEOUT)),
                            deadline: Box::pin(sleep_until(now + CONNECTION_TIMEOUT)),
                        },
                        addr,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The peer address of a request (axum's connect info for [`Capped`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Capped>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Capped>) -> Self {
        Self(*stream.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use ccgate_queue::{Spool, SpoolOptions};
    use ccgate_router::{Directory, DirectoryHandle, RouterConfig, State};
    use ccgate_server::{DirectoryRouting, Metrics};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;

    use super::*;
    use crate::{ConsoleServer, CutoverReport, CutoverRequest, DirectoryEditor, Parts};

    /// No cutover in these tests.
    struct NoEditor;

    impl DirectoryEditor for NoEditor {
        fn set_state(&self, _: &CutoverRequest) -> CutoverReport {
            CutoverReport::default()
        }
        fn describe(&self) -> String {
            String::new()
        }
    }

    /// One request; what came back ("" when the connection was closed or reset unanswered).
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    // The admin listener's rules, kept by the console (see: issue 12, issue 14).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_capped_idle_ones_reaped_and_probes_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(DirectoryHandle::new(Directory::empty()));
        let parts = Parts {
            spool: Arc::clone(&spool),
            metrics: Arc::new(Metrics::default()),
            routing: Arc::new(DirectoryRouting::new(handle, RouterConfig::default())),
            ready: Arc::clone(&ready),
            token: None,
            quarantine_dir: dir.path().join("quarantine"),
            pickup_dir: dir.path().join("pickup"),
            trace: None,
            editor: Arc::new(NoEditor),
            facts: Vec::new(),
            schedule_file: None,
        };
        let server = ConsoleServer::bind("127.0.0.1:0".parse().unwrap(), parts)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let served = tokio::spawn(server.serve(stop_rx));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.0 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.0 503"), "{not_ready}");
        assert!(not_ready.contains("SMTP listener"), "{not_ready}");
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.0 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("ccgate_queue_messages"), "{metrics}");
        let page = get(addr, "/").await;
        assert!(page.contains(&State::Migrated.to_string()), "{page}");

        // Fill every slot with a client that says nothing; the next one is closed unanswered.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut refused = false;
        for _ in 0..100 {
            let mut extra = TcpStream::connect(addr).await.unwrap();
            let _ = extra.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await;
            let mut out = Vec::new();
            let _ = extra.read_to_end(&mut out).await;
            if out.is_empty() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "a connection beyond {MAX_CONNECTIONS} was served");
        // The idle clients are closed once their time to send a request is up, and the
        // probes are answered again, with the idle sockets still open on our side.
        let mut answered = false;
        for _ in 0..500 {
            if get(addr, "/healthz").await.starts_with("HTTP/1.0 200") {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(answered, "idle connections were never reaped");
        let mut closed = 0;
        for s in &mut idle {
            let mut buf = [0u8; 1];
            if matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                closed += 1;
            }
        }
        assert_eq!(closed, MAX_CONNECTIONS, "every idle client was closed");
        stop_tx.send(true).unwrap();
        served.await.unwrap();
    }
}
