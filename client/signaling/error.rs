//! What can go wrong talking to the signaling server, and how it reads in
//! one line: a refusal (the server answered) is told apart from a server
//! that cannot be reached.

use thiserror::Error;

/// Errors of the signaling client.
#[derive(Debug, Error)]
pub enum SignalingError {
    /// The server URL cannot be used.
    #[error("invalid server URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Every start-up attempt failed.
    #[error("signaling server {url} unreachable after {attempts} attempts: {last}")]
    Unreachable {
        /// The server URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The server answered the registration with a refusal (a taken name,
    /// an invalid field, a quota): retrying would not help.
    #[error("signaling server {url} refused the registration: {reason}")]
    Refused {
        /// The server URL.
        url: String,
        /// What the server said, with its retry hint if it gave one.
        reason: String,
    },
    /// The server answered with an error.
    #[error("signaling server refused: {0}")]
    Rpc(#[from] tonic::Status),
    /// The call did not finish within [`RPC_TIMEOUT`](super::RPC_TIMEOUT).
    #[error("signaling server did not answer in time")]
    Timeout,
}

/// Whether `code` is the server's answer to this request rather than a
/// transport failure or an unavailable server.
pub(super) fn is_refusal(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument
            | AlreadyExists
            | PermissionDenied
            | Unauthenticated
            | FailedPrecondition
            | ResourceExhausted
    )
}

/// The server's message, plus "try again in N s" from a quota refusal's
/// `retry-after` metadata.
pub(super) fn refusal_text(status: &tonic::Status) -> String {
    let retry = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match retry {
        Some(secs) => format!("{} (try again in {secs} s)", status.message()),
        None => status.message().to_owned(),
    }
}

/// A one-line description of `err`: for transport failures the status
/// message plus the root cause (e.g. "connection refused"), without the
/// nested debug output tonic's own `Display` carries.
pub fn brief(err: &SignalingError) -> String {
    let text = match err {
        SignalingError::Rpc(status) => {
            let mut root: Option<&dyn std::error::Error> = std::error::Error::source(status);
            let mut deepest = None;
            while let Some(e) = root {
                deepest = Some(e);
                root = e.source();
            }
            match deepest {
                Some(cause) => format!("{}: {cause}", status.message()),
                None => format!("{} ({:?})", status.message(), status.code()),
            }
        }
        other => other.to_string(),
    };
    text.replace(['\n', '\r'], " ")
}
