#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod delivery_log;
mod directory_routing;
mod error;
mod lane;
mod ledger;
mod legacy;
mod limits;
mod listener;
mod maildir;
mod metrics;
mod pickup;
mod private;
mod refuse;
mod routing;
mod shutdown;
mod smtp_client;
mod stream;
mod tls;
mod trace;

pub use directory_routing::DirectoryRouting;
pub use error::ServerError;
pub use ledger::Ledger;
pub use legacy::{
    DEFAULT_IMPORT_BATCH, ImportCommand, ImportHandle, LegacyAgent, LegacyCodec, MAX_BATCH_BYTES,
};
pub use limits::{MAX_CONNECTIONS_PER_CLIENT, MEMORY_BUDGET, Network};
pub use listener::{LiveLimits, SmtpServer, SmtpSettings};
pub use maildir::MaildirAgent;
pub use metrics::{DirectoryStatus, Event as MetricEvent, Metrics};
pub use pickup::{Accepted, CLAIM_DIR, MAX_FILE_FAILURES, PickupAgent, PickupCodec, PickupReport};
pub use refuse::{RefuseAgent, SuppressAgent};
pub use routing::{DomainRouting, Routing, route_unrouted};
pub use shutdown::Shutdown;
pub use smtp_client::{LineFitter, SMTP_MAX_LINE, SmtpAgent, SmtpClientOptions, TlsPolicy};
pub use tls::load_tls;
pub use trace::{DEFAULT_TRACE_SIZE, TRACE_FILE, TraceEvent, TraceLog, TraceQuery, message_id};
