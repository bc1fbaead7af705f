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

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
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
    scan: Arc<Mutex<()>>,
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
            scan: Arc::new(Mutex::new(())),
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
        // A client gets a short while to send its request: idle connections must not hold the
        // few admin slots the health probes need.
        let head_deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            match tokio::time::timeout_at(head_deadline, stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(_) => {
                    debug!("admin request head not sent in time");
                    return;
                }
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
        // The guard moves into the blocking task: if the request times out and this future is
        // dropped, the scan still runs to its end, and the next one still waits for it.
        let one = Arc::clone(&self.scan).lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let _one = one;
            work()
        })
        .await
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_capped_and_probes_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let spool =
            Arc::new(Spool::open(dir.path(), ccgate_queue::SpoolOptions::default()).unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let server = AdminServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Metrics::default()),
            Arc::clone(&spool),
            Arc::clone(&ready),
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let served = tokio::spawn(server.serve(stop_rx));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("SMTP listener"), "{not_ready}");
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("ccgate_spool_accepting 1"), "{metrics}");
        assert!(metrics.contains("ccgate_spool_status{reason=\"accepting\"} 1"));

        // Fill every slot with a client that says nothing; the next one is closed unanswered.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // Wait (generously) until the server has accepted them all and refuses the next.
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
        drop(idle);
        // Slots come back: answered again (eventually, as the idle ones are reaped).
        let mut answered = false;
        for _ in 0..200 {
            if get(addr, "/healthz").await.starts_with("HTTP/1.1 200") {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(answered);
        stop_tx.send(true).unwrap();
        served.await.unwrap();
    }
}
