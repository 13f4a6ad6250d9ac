//! The registry's error type and, in one place, how each error reads over
//! gRPC (`tonic::Status`) and over HTTP (status code + FastAPI-style body).

use axum::http::StatusCode;

/// Everything the registry can refuse.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// A field failed validation.
    #[error("{message}")]
    InvalidArgument {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The peer the request is about is unknown.
    #[error("Peer not found")]
    NotFound,
    /// The caller's own registration has expired.
    #[error("Peer is offline; register again")]
    PeerOffline,
    /// The peer to connect to is unknown.
    #[error("Target peer not found")]
    TargetNotFound,
    /// The peer to connect to is offline.
    #[error("Target peer is offline")]
    TargetOffline,
    /// The caller does not own the peer_id.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// The registry holds as many peers as it may.
    #[error("registry is full: at most {limit} peers may be registered")]
    RegistryFull {
        /// The configured limit.
        limit: usize,
    },
    /// Too many WatchPeers streams are open.
    #[error("too many watchers: at most {limit} WatchPeers streams may be open")]
    TooManyWatchers {
        /// The configured limit.
        limit: usize,
    },
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
}

impl From<RegistryError> for tonic::Status {
    fn from(err: RegistryError) -> Self {
        let message = err.to_string();
        match err {
            RegistryError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            RegistryError::NotFound | RegistryError::TargetNotFound => {
                tonic::Status::not_found(message)
            }
            RegistryError::PeerOffline | RegistryError::TargetOffline => {
                tonic::Status::failed_precondition(message)
            }
            RegistryError::PermissionDenied(_) => tonic::Status::permission_denied(message),
            RegistryError::RegistryFull { .. } | RegistryError::TooManyWatchers { .. } => {
                tonic::Status::resource_exhausted(message)
            }
            RegistryError::ShuttingDown => tonic::Status::unavailable(message),
        }
    }
}

impl RegistryError {
    /// The HTTP status the REST shim answers with.
    pub fn http_status(&self) -> StatusCode {
        match self {
            RegistryError::InvalidArgument { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::NotFound | RegistryError::TargetNotFound => StatusCode::NOT_FOUND,
            RegistryError::PeerOffline | RegistryError::TargetOffline => StatusCode::NOT_FOUND,
            RegistryError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            RegistryError::RegistryFull { .. }
            | RegistryError::TooManyWatchers { .. }
            | RegistryError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The FastAPI-style `{"detail": ...}` body. Validation errors use
    /// FastAPI's list form with `loc`, `msg` and `type`.
    pub fn http_body(&self) -> serde_json::Value {
        match self {
            RegistryError::InvalidArgument { field, message } => serde_json::json!({
                "detail": [{"type": "value_error", "loc": ["body", field], "msg": message}]
            }),
            other => serde_json::json!({ "detail": other.to_string() }),
        }
    }
}
