//! The console's errors.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What went wrong serving the console.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The admin address could not be bound.
    #[error("admin.listen {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A read could not be scheduled (the runtime is stopping).
    #[error("the console is stopping or overloaded; try again")]
    Busy,
    /// The request named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request was malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The action could not be carried out now (a file could not be written).
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Busy | Self::Bind { .. } | Self::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, format!("{self}\n")).into_response()
    }
}
