//! How refusals read on the wire, in one place: every [`ApiError`] (input
//! validation, store and rendezvous refusals, API limits) maps to a
//! `tonic::Status` for gRPC and to an HTTP status plus a FastAPI-style body
//! for the REST shim. Nothing below the API layer knows either protocol.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::challenge::ChallengeError;
use crate::quota::QuotaExceeded;
use crate::quota::rate::retry_after_secs;
use crate::rendezvous::RendezvousError;
use crate::store::{KEY_REQUIRED, StoreError};

/// Everything either API can refuse, with the messages clients have always
/// seen.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
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
    /// The caller does not own the peer_id (wrong token, or a key that
    /// does not derive it).
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// A key-derived (version 8) peer_id came without a proof of its key
    /// (or over REST, which cannot carry one).
    #[error("{}", KEY_REQUIRED)]
    ProofRequired,
    /// The registration's challenge is not one this server can accept
    /// (malformed, another server's, expired, used), or the server
    /// remembers as many spent challenges as it may.
    #[error("{0}")]
    Challenge(ChallengeError),
    /// The proof's signature does not verify under its public key.
    #[error(
        "signature does not verify: sign p2pchat::keys::registration_message(challenge, public_key, username)"
    )]
    BadSignature,
    /// The store holds as many peers as it may.
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
    /// The caller's address went past a per-source quota.
    #[error("{0}")]
    Quota(QuotaExceeded),
    /// The username looks like (or is) the name of another online peer.
    #[error("username {name:?} is taken: it looks like the name of a peer online now")]
    NameTaken {
        /// The name asked for (normalised).
        name: String,
    },
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The store's backend failed; the request may be retried.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidArgument { field, message } => {
                ApiError::InvalidArgument { field, message }
            }
            StoreError::NotFound => ApiError::NotFound,
            StoreError::PeerOffline => ApiError::PeerOffline,
            StoreError::PermissionDenied(why) => ApiError::PermissionDenied(why),
            StoreError::KeyRequired => ApiError::ProofRequired,
            StoreError::Full { limit } => ApiError::RegistryFull { limit },
            StoreError::Quota(exceeded) => ApiError::Quota(exceeded),
            StoreError::NameTaken { name } => ApiError::NameTaken { name },
            StoreError::ShuttingDown => ApiError::ShuttingDown,
            other @ StoreError::Unavailable(_) => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<RendezvousError> for ApiError {
    fn from(err: RendezvousError) -> Self {
        match err {
            RendezvousError::Store(err) => err.into(),
            RendezvousError::SelfConnect => ApiError::InvalidArgument {
                field: "target_peer_id",
                message: err.to_string(),
            },
            RendezvousError::TargetNotFound => ApiError::TargetNotFound,
            RendezvousError::TargetOffline => ApiError::TargetOffline,
            RendezvousError::Quota(exceeded) => ApiError::Quota(exceeded),
        }
    }
}

impl From<ChallengeError> for ApiError {
    fn from(err: ChallengeError) -> Self {
        match err {
            ChallengeError::Malformed => ApiError::InvalidArgument {
                field: "challenge",
                message: err.to_string(),
            },
            other => ApiError::Challenge(other),
        }
    }
}

impl From<QuotaExceeded> for ApiError {
    fn from(err: QuotaExceeded) -> Self {
        ApiError::Quota(err)
    }
}

impl From<StoreError> for tonic::Status {
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<RendezvousError> for tonic::Status {
    fn from(err: RendezvousError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        let mut status = status_of(&err);
        if let Some(wait) = err.retry_after() {
            // The same hint REST gives in its header, for gRPC clients
            // that look.
            status
                .metadata_mut()
                .insert("retry-after", retry_after_secs(wait).into());
        }
        status
    }
}

/// The gRPC status of `err`.
fn status_of(err: &ApiError) -> tonic::Status {
    let message = err.to_string();
    match err {
        ApiError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
        ApiError::NotFound | ApiError::TargetNotFound => tonic::Status::not_found(message),
        ApiError::PeerOffline | ApiError::TargetOffline => {
            tonic::Status::failed_precondition(message)
        }
        ApiError::PermissionDenied(_) => tonic::Status::permission_denied(message),
        ApiError::ProofRequired | ApiError::BadSignature => tonic::Status::unauthenticated(message),
        ApiError::Challenge(ChallengeError::Exhausted { .. })
        | ApiError::RegistryFull { .. }
        | ApiError::TooManyWatchers { .. }
        | ApiError::Quota(_) => tonic::Status::resource_exhausted(message),
        ApiError::NameTaken { .. } => tonic::Status::already_exists(message),
        ApiError::Challenge(ChallengeError::Malformed) => tonic::Status::invalid_argument(message),
        ApiError::Challenge(_) => tonic::Status::unauthenticated(message),
        ApiError::ShuttingDown | ApiError::Unavailable(_) => tonic::Status::unavailable(message),
    }
}

impl ApiError {
    /// The HTTP status the REST shim answers with.
    pub fn http_status(&self) -> StatusCode {
        match self {
            ApiError::InvalidArgument { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound | ApiError::TargetNotFound => StatusCode::NOT_FOUND,
            ApiError::PeerOffline | ApiError::TargetOffline => StatusCode::NOT_FOUND,
            ApiError::PermissionDenied(_) | ApiError::ProofRequired => StatusCode::FORBIDDEN,
            ApiError::Challenge(ChallengeError::Malformed) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Challenge(ChallengeError::Exhausted { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Challenge(_) | ApiError::BadSignature => StatusCode::UNAUTHORIZED,
            ApiError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NameTaken { .. } => StatusCode::CONFLICT,
            ApiError::RegistryFull { .. }
            | ApiError::TooManyWatchers { .. }
            | ApiError::ShuttingDown
            | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The FastAPI-style `{"detail": ...}` body. Validation errors use
    /// FastAPI's list form with `loc`, `msg` and `type`.
    pub fn http_body(&self) -> Value {
        match self {
            ApiError::InvalidArgument { field, message } => json!({
                "detail": [{"type": "value_error", "loc": ["body", field], "msg": message}]
            }),
            other => json!({ "detail": other.to_string() }),
        }
    }

    /// How long the client should wait before retrying (HTTP
    /// `Retry-After`), for refusals that say.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Quota(exceeded) => Some(exceeded.retry_after),
            _ => None,
        }
    }
}

/// A REST error response: a status, a FastAPI-style `{"detail": ...}` body
/// and, for 429, a `Retry-After` in whole seconds.
#[derive(Debug)]
pub struct HttpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
    /// Sent as `Retry-After` (rounded up to whole seconds) when set.
    pub retry_after: Option<Duration>,
}

impl HttpError {
    /// An error with this status and body.
    pub fn new(status: StatusCode, body: Value) -> HttpError {
        HttpError {
            status,
            body,
            retry_after: None,
        }
    }

    /// An error with a plain-text detail.
    pub fn detail(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError::new(status, json!({ "detail": message.into() }))
    }

    /// A 415 for a body that is not `application/json`.
    pub fn unsupported_media_type() -> HttpError {
        HttpError::detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request body must be JSON: send 'Content-Type: application/json'",
        )
    }

    /// A 422 listing FastAPI/pydantic-style validation errors.
    pub fn unprocessable(errors: Vec<Value>) -> HttpError {
        HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "detail": errors }),
        )
    }
}

impl From<ApiError> for HttpError {
    fn from(err: ApiError) -> Self {
        HttpError {
            status: err.http_status(),
            body: err.http_body(),
            retry_after: err.retry_after(),
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        response
    }
}

/// The answer to a gRPC call of a method this server does not have
/// (UNIMPLEMENTED), for the router's shared fallback.
pub fn unknown_grpc_method() -> Response {
    tonic::Status::unimplemented("unknown gRPC method").into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KEY_MISMATCH;

    #[test]
    fn registration_refusals_map_to_their_codes() {
        let cases = [
            (
                ApiError::ProofRequired,
                tonic::Code::Unauthenticated,
                StatusCode::FORBIDDEN,
            ),
            (
                ApiError::BadSignature,
                tonic::Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
            ),
            (
                ApiError::PermissionDenied(KEY_MISMATCH),
                tonic::Code::PermissionDenied,
                StatusCode::FORBIDDEN,
            ),
            (
                ChallengeError::Malformed.into(),
                tonic::Code::InvalidArgument,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                ChallengeError::NotOurs.into(),
                tonic::Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
            ),
            (
                ChallengeError::Expired.into(),
                tonic::Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
            ),
            (
                ChallengeError::Used.into(),
                tonic::Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
            ),
            (
                ChallengeError::Exhausted { limit: 1 }.into(),
                tonic::Code::ResourceExhausted,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                StoreError::KeyRequired.into(),
                tonic::Code::Unauthenticated,
                StatusCode::FORBIDDEN,
            ),
        ];
        for (err, code, http) in cases {
            assert_eq!(err.http_status(), http, "{err:?}");
            assert_eq!(tonic::Status::from(err.clone()).code(), code, "{err:?}");
        }
    }

    #[test]
    fn quotas_are_429_with_retry_after_and_resource_exhausted() {
        use crate::quota::{Quota, QuotaExceeded};
        let err = ApiError::from(QuotaExceeded {
            quota: Quota::ConnectsPerCaller,
            limit: 10,
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(
            tonic::Status::from(err.clone()).code(),
            tonic::Code::ResourceExhausted
        );
        let status = tonic::Status::from(err.clone());
        assert_eq!(status.metadata().get("retry-after").unwrap(), "2");
        let response = HttpError::from(err).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let taken = ApiError::NameTaken {
            name: "Alice".into(),
        };
        assert_eq!(taken.http_status(), StatusCode::CONFLICT);
        assert_eq!(
            tonic::Status::from(taken).code(),
            tonic::Code::AlreadyExists
        );
    }
}
