//! The endpoints monitoring uses, as the admin listener served them before the console:
//! `/metrics` (Prometheus text format 0.0.4), `/healthz`, `/readyz`, `/queue/summary`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Console;

/// GET `/metrics`: the counters, and the queue depth read from the spool now.
pub async fn metrics(State(console): State<Arc<Console>>) -> Response {
    let (metrics, spool) = (
        Arc::clone(&console.parts.metrics),
        Arc::clone(&console.parts.spool),
    );
    match console.blocking(move || metrics.render(Some(&spool))).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// GET `/healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// GET `/readyz`: the SMTP listener is up and the spool can write.
pub async fn readyz(State(console): State<Arc<Console>>) -> Response {
    if console.parts.ready.load(Ordering::Relaxed) && console.parts.spool.is_healthy() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// GET `/queue/summary`: the qshape table as JSON.
pub async fn summary(State(console): State<Arc<Console>>) -> Response {
    let spool = Arc::clone(&console.parts.spool);
    match console
        .blocking(move || spool.summary(SystemTime::now()))
        .await
    {
        Ok(summary) => {
            let json = serde_json::json!({ "columns": summary.columns, "rows": summary.rows });
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!("{json}\n"),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Any other path.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
