//! Errors of the server.

use std::io;
use std::path::PathBuf;

/// What stops the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The TLS certificate or key could not be read or used.
    #[error("{}: {reason}", path.display())]
    Tls {
        /// The file concerned.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The SMTP settings are invalid (e.g. the host name).
    #[error("invalid SMTP settings: {0}")]
    Settings(String),
    /// A file or folder of a delivery agent.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The spool failed.
    #[error(transparent)]
    Queue(#[from] ccgate_queue::QueueError),
}
