//! The admin listener (`[admin] listen`): a minimal HTTP/1.1 server, one request per
//! connection, GET or HEAD only.
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | Prometheus text format 0.0.4 |
//! | `/healthz` | `200 ok` unless the process cannot recover by itself (`503`: restart it) |
//! | `/readyz` | `200 ready` when the SMTP listener is up and the spool takes mail, else `503` with the reason |
//! | `/queue/summary` | the `ccgate queue summary` table as JSON |
//!
//! A full disk makes `/readyz` fail (the load balancer sends mail elsewhere) but not
//! `/healthz`: the spool resumes by itself when space returns, and a restart would not help.
//! Scans of the spool (`/metrics`, `/queue/summary`) run on the blocking pool, one at a time,
//! so a slow scrape never holds an async worker; at most [`MAX_CONNECTIONS`] connections are
//! served at once, more are closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ccgate_queue::Spool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, watch};
use tracing::{debug, warn};

use crate::ServerError;
use crate::metrics::Metrics;
use crate::shutdown::stopped;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Admin connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 32;

/// The admin HTTP listener.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
    spool: Arc<Spool>,
    ready: Arc<AtomicBool>,
    /// One spool scan at a time.
    scan: Mutex<()>,
    connections: Arc<Semaphore>,
}

impl AdminServer {
    /// Binds the admin address.
    ///
    /// # Errors
    /// [`ServerError::Bind`].
    pub async fn bind(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        spool: Arc<Spool>,
        ready: Arc<AtomicBool>,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            metrics,
            spool,
            ready,
            scan: Mutex::new(()),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` fires.
    pub async fn serve(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                accepted = this.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = Arc::clone(&this.connections).try_acquire_owned() else {
                            debug!(%peer, "admin connection refused: {MAX_CONNECTIONS} already open");
                            drop(stream);
                            continue;
                        };
                        let this = Arc::clone(&this);
                        tokio::spawn(async move {
                            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), this.answer(stream)).await {
                                debug!(error = %e, "admin request timed out");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    async fn answer(&self, mut stream: TcpStream) {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
            if head.len() > MAX_HEAD {
                let _ = respond(
                    &mut stream,
                    431,
                    "text/plain",
                    b"request header too large\n",
                    false,
                )
                .await;
                return;
            }
        }
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let head_only = method == "HEAD";
        if method != "GET" && !head_only {
            let _ = respond(
                &mut stream,
                405,
                "text/plain",
                b"only GET and HEAD\n",
                head_only,
            )
            .await;
            return;
        }
        let path = path.split('?').next().unwrap_or("");
        let (status, kind, body): (u16, &str, Vec<u8>) = match path {
            "/metrics" => {
                let (metrics, spool) = (Arc::clone(&self.metrics), Arc::clone(&self.spool));
                match self.scan(move || metrics.render(Some(&spool))).await {
                    Some(text) => (
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        text.into_bytes(),
                    ),
                    None => (503, "text/plain", b"scan failed\n".to_vec()),
                }
            }
            "/healthz" if self.spool.is_alive() => (200, "text/plain", b"ok\n".to_vec()),
            "/healthz" => (
                503,
                "text/plain",
                format!("failed: {}\n", self.spool.status()).into_bytes(),
            ),
            "/readyz" => {
                let spool = Arc::clone(&self.spool);
                let status = tokio::task::spawn_blocking(move || spool.status()).await;
                match status {
                    Ok(ccgate_queue::SpoolStatus::Accepting)
                        if self.ready.load(Ordering::Relaxed) =>
                    {
                        (200, "text/plain", b"ready\n".to_vec())
                    }
                    Ok(ccgate_queue::SpoolStatus::Accepting) => (
                        503,
                        "text/plain",
                        b"not ready: the SMTP listener is not up yet\n".to_vec(),
                    ),
                    Ok(status) => (
                        503,
                        "text/plain",
                        format!("not ready: {}: {status}\n", status.reason()).into_bytes(),
                    ),
                    Err(_) => (503, "text/plain", b"not ready\n".to_vec()),
                }
            }
            "/queue/summary" => {
                let spool = Arc::clone(&self.spool);
                let json = self
                    .scan(move || {
                        let summary = spool.summary(std::time::SystemTime::now());
                        serde_json::json!({ "columns": summary.columns, "rows": summary.rows })
                    })
                    .await;
                match json {
                    Some(json) => (200, "application/json", format!("{json}\n").into_bytes()),
                    None => (503, "text/plain", b"scan failed\n".to_vec()),
                }
            }
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        let _ = respond(&mut stream, status, kind, &body, head_only).await;
    }
}

impl AdminServer {
    /// Runs a scan of the spool on the blocking pool, one at a time (concurrent scrapes
    /// queue behind it rather than each holding the spool's lock and a thread).
    async fn scan<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _one = self.scan.lock().await;
        tokio::task::spawn_blocking(work).await.ok()
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    kind: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}
