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
