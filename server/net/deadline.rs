//! The request-body deadline: a request's body must end within the body
//! timeout of its head arriving, or reading it fails (the REST handler
//! answers with an error and the connection is closed). Without it a
//! `Content-Length: 10000000000` with no body, or a body dripped a byte at a
//! time, holds a handler and a connection for ever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use thiserror::Error;
use tokio::time::{Instant, Sleep};

/// gRPC methods whose request is a long-lived client stream by design, so
/// the body deadline does not apply: server reflection (grpcurl keeps it
/// open while its call runs). Such streams are bounded by the per-connection
/// stream limit and the connection quotas instead.
pub const STREAMING_REQUEST_PATHS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Whether the body deadline applies to a request for `path`.
pub fn applies_to(path: &str) -> bool {
    !STREAMING_REQUEST_PATHS.contains(&path)
}

/// Reading a request body failed because it did not end in time.
#[derive(Debug, Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body that fails once its deadline has passed.
pub struct DeadlineBody {
    inner: Incoming,
    /// `None`: no deadline (a streaming request).
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
}

impl DeadlineBody {
    /// `inner`, which must end within `timeout` from now (`None`: no limit).
    pub fn new(inner: Incoming, timeout: Option<Duration>) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: timeout.map(|t| Box::pin(tokio::time::sleep_until(Instant::now() + t))),
            timeout: timeout.unwrap_or_default(),
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = self.timeout;
        let expired = self
            .deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Some(Err(BodyTimedOut(timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_streams_are_exempt_and_everything_else_is_not() {
        assert!(!applies_to(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(applies_to("/register"));
        assert!(applies_to("/p2pchat.signaling.v1.Signaling/Register"));
    }
}
