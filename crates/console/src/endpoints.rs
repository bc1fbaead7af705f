//! The endpoints monitoring uses, as the admin listener served them before the console:
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
//! so a slow scrape never holds an async worker.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ccgate_queue::SpoolStatus;

use crate::Console;

/// GET `/metrics`: the counters, and the queue depth read from the spool now.
pub async fn metrics(State(console): State<Arc<Console>>) -> Response {
    let (metrics, spool) = (
        Arc::clone(&console.parts.metrics),
        Arc::clone(&console.parts.spool),
    );
    match console.scan(move || metrics.render(Some(&spool))).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => scan_failed(),
    }
}

fn scan_failed() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "scan failed\n").into_response()
}

/// GET `/healthz`: `ok` unless the spool failed beyond what it can recover from by itself.
pub async fn healthz(State(console): State<Arc<Console>>) -> Response {
    if console.parts.spool.is_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let status = console.parts.spool.status();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed: {status}\n"),
        )
            .into_response()
    }
}

/// GET `/readyz`: the SMTP listener is up and the spool takes mail; else why not.
pub async fn readyz(State(console): State<Arc<Console>>) -> Response {
    let spool = Arc::clone(&console.parts.spool);
    let status = tokio::task::spawn_blocking(move || spool.status()).await;
    let unavailable = |text: String| (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    match status {
        Ok(SpoolStatus::Accepting) if console.parts.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "ready\n").into_response()
        }
        Ok(SpoolStatus::Accepting) => {
            unavailable("not ready: the SMTP listener is not up yet\n".to_owned())
        }
        Ok(status) => unavailable(format!("not ready: {}: {status}\n", status.reason())),
        Err(_) => unavailable("not ready\n".to_owned()),
    }
}

/// GET `/queue/summary`: the qshape table as JSON.
pub async fn summary(State(console): State<Arc<Console>>) -> Response {
    let spool = Arc::clone(&console.parts.spool);
    match console.scan(move || spool.summary(SystemTime::now())).await {
        Ok(summary) => {
            let json = serde_json::json!({ "columns": summary.columns, "rows": summary.rows });
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!("{json}\n"),
            )
                .into_response()
        }
        Err(_) => scan_failed(),
    }
}

/// Any other path.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
