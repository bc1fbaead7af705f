//! The migration console: what `ccgate run` serves on the admin listener (`[admin] listen`).
//!
//! Server-rendered pages (axum and maud, checked at compile time) for the people who run a
//! migration, beside the endpoints monitoring uses:
//!
//! | path | what |
//! |---|---|
//! | `/` | overview: mail flow, queue by lane and state (qshape ages), health, migration progress |
//! | `/people`, `/person` | the directory: search, one person with routes and mail |
//! | `/trace` | message trace: the gateway's event log by address, queue id, Message-ID, time |
//! | `/queue`, `/message` | the queue with the `queue list` filters; one message; actions |
//! | `/quarantine` | legacy messages set aside by the pickup, and quarantined queue messages |
//! | `/cutover` | move people to `migrating` or `migrated` |
//! | `/metrics`, `/healthz`, `/readyz`, `/queue/summary` | Prometheus, probes, the qshape table |
//!
//! Reading is open on loopback; every action needs the token of `[admin] token_file`
//! ([`auth`]). Spool and file reads run off the async workers, a few at a time
//! ([`Console::blocking`]), so the console never slows the SMTP listener.

#![forbid(unsafe_code)]

pub mod auth;
mod cutover;
mod endpoints;
mod error;
mod flow;
mod form;
mod layout;
mod listener;
mod overview;
mod people;
mod quarantine;
mod queue;
mod schedule;
mod trace;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::routing::{get, post};
use ccgate_queue::Spool;
use ccgate_server::{DirectoryRouting, Metrics, TraceLog};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use cutover::{CutoverOutcome, CutoverReport, CutoverRequest, DirectoryEditor};
pub use error::ConsoleError;
pub use layout::{parse_utc, utc};
pub use schedule::FILE_NAME as SCHEDULE_FILE;

/// At most this many spool or file reads run at once for the console.
const MAX_READS: usize = 2;

/// What the console reads and acts on.
pub struct Parts {
    /// The spool (owned by this process).
    pub spool: Arc<Spool>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The directory in service and the router's settings.
    pub routing: Arc<DirectoryRouting>,
    /// True once the SMTP listener is up.
    pub ready: Arc<AtomicBool>,
    /// The token of `[admin] token_file`; `None` disables every action.
    pub token: Option<String>,
    /// Where the legacy pickup sets messages aside.
    pub quarantine_dir: PathBuf,
    /// The pickup folder (a released quarantined file goes back there).
    pub pickup_dir: PathBuf,
    /// The event log of the message trace.
    pub trace: Option<Arc<TraceLog>>,
    /// Changes people's migration state in the directory source.
    pub editor: Arc<dyn DirectoryEditor>,
    /// Lines for the health table: part, state, detail.
    pub facts: Vec<(String, String)>,
    /// Where scheduled cutovers are kept (`data_dir/cutovers.json`); `None`: in memory only.
    pub schedule_file: Option<PathBuf>,
}

/// The console's shared state.
pub struct Console {
    parts: Parts,
    reads: Arc<Semaphore>,
    scans: Arc<tokio::sync::Mutex<()>>,
    sessions: auth::Sessions,
    flow: flow::Flow,
    loopback_only: bool,
    schedule: schedule::Schedule,
    /// Set when the schedule file could not be read (nothing is scheduled from it).
    schedule_error: Option<String>,
}

impl Console {
    /// The console over `parts`, for a listener on `listen`.
    pub fn new(parts: Parts, listen: SocketAddr) -> Self {
        let flow = flow::Flow::default();
        let (schedule, schedule_error) = match schedule::Schedule::open(parts.schedule_file.clone())
        {
            Ok(schedule) => (schedule, None),
            Err(e) => {
                tracing::error!(error = %e, "scheduled cutovers cannot be read: none will run until the file is fixed and the gateway restarted");
                (schedule::Schedule::unsaved(), Some(e.to_string()))
            }
        };
        Self {
            parts,
            reads: Arc::new(Semaphore::new(MAX_READS)),
            scans: Arc::new(tokio::sync::Mutex::new(())),
            sessions: auth::Sessions::default(),
            flow,
            loopback_only: listen.ip().is_loopback(),
            schedule,
            schedule_error,
        }
    }

    /// Runs `work` on the blocking pool, at most two at a time.
    ///
    /// # Errors
    /// [`ConsoleError::Busy`] when the task could not run.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ConsoleError> {
        // The permit moves into the blocking task: if the request is dropped (a timeout), the
        // work still runs to its end and still counts against the bound.
        let permit = Arc::clone(&self.reads)
            .acquire_owned()
            .await
            .map_err(|_| ConsoleError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| ConsoleError::Busy)
    }
}

impl Console {
    /// Runs a whole-spool scan (`/metrics`, `/queue/summary`, the overview, a queue listing,
    /// a person's mail) on the blocking pool, one at a time and within the read bound:
    /// concurrent scans queue behind it rather than each holding the spool's lock and a thread.
    ///
    /// # Errors
    /// [`ConsoleError::Busy`] when the task could not run.
    pub async fn scan<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ConsoleError> {
        // As the permit: the guard lives as long as the scan, not as the request.
        let one = Arc::clone(&self.scans).lock_owned().await;
        self.blocking(move || {
            let _one = one;
            work()
        })
        .await
    }
}

/// The admin listener with the console.
pub struct ConsoleServer {
    listener: TcpListener,
    console: Arc<Console>,
}

impl ConsoleServer {
    /// Binds `addr`.
    ///
    /// # Errors
    /// [`ConsoleError::Bind`].
    pub async fn bind(addr: SocketAddr, parts: Parts) -> Result<Self, ConsoleError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ConsoleError::Bind { addr, source })?;
        Ok(Self {
            listener,
            console: Arc::new(Console::new(parts, addr)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` fires.
    pub async fn serve(self, mut stop: watch::Receiver<bool>) {
        let console = Arc::clone(&self.console);
        for entry in console.schedule.entries() {
            cutover::spawn(&console, &entry);
        }
        let sampler = tokio::spawn(flow::sample(Arc::clone(&console), stop.clone()));
        let app = router(console).into_make_service_with_connect_info::<listener::Peer>();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener::Capped::new(self.listener), app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "admin listener failed");
        }
        sampler.abort();
    }
}

/// One request per connection, as the admin listener always answered (`Connection: close`):
/// a scraper or script that reads to the end of the stream gets its end; and the security
/// headers every page carries.
async fn one_request(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Every route of the admin listener.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/people", get(people::search))
        .route("/person", get(people::person))
        .route("/trace", get(trace::page))
        .route("/queue", get(queue::list))
        .route("/message", get(queue::show))
        .route("/queue/action", post(queue::action))
        .route("/quarantine", get(quarantine::list))
        .route("/quarantine/file", get(quarantine::show))
        .route("/quarantine/action", post(quarantine::action))
        .route("/cutover", get(cutover::page).post(cutover::action))
        .route("/cutover/cancel", post(cutover::cancel))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/metrics", get(endpoints::metrics))
        .route("/healthz", get(endpoints::healthz))
        .route("/readyz", get(endpoints::readyz))
        .route("/queue/summary", get(endpoints::summary))
        .route("/console.css", get(layout::css))
        .route("/console.js", get(layout::script))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .fallback(endpoints::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(form::MAX_FORM))
        .layer(axum::middleware::map_response(one_request))
        .with_state(console)
}
