//! What one connection is doing, for its timeouts: how many requests are in
//! flight (a request is in flight from its head until its response body
//! ends or is dropped, so a WatchPeers or inbox stream counts for as long
//! as it is open) and since when it has been idle. The connection's
//! watchdog ([`Activity::expired`]) resolves when the connection has sat
//! idle too long: before its first request, `first_request` after the
//! connection became ready; after that, `idle` after its last request
//! ended.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

/// A connection's state as its watchdog sees it.
#[derive(Debug, Clone, Copy)]
struct State {
    in_flight: usize,
    /// Whether any request has started on the connection.
    served: bool,
    /// When the last request ended (or the connection became ready).
    idle_since: Instant,
}

/// The activity of one connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity {
    state: Arc<watch::Sender<State>>,
}

/// One request in flight; dropping it ends the request for the watchdog.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<watch::Sender<State>>,
}

impl Activity {
    /// A connection that is ready for its first request now.
    pub fn new() -> Activity {
        let state = State {
            in_flight: 0,
            served: false,
            idle_since: Instant::now(),
        };
        Activity {
            state: Arc::new(watch::Sender::new(state)),
        }
    }

    /// Marks a request as started.
    pub fn begin(&self) -> InFlight {
        self.state.send_modify(|s| {
            s.in_flight += 1;
            s.served = true;
        });
        InFlight {
            state: self.state.clone(),
        }
    }

    /// Resolves once the connection has had no request in flight for
    /// `first_request` (before any request) or `idle` (after one).
    pub async fn expired(&self, first_request: Duration, idle: Duration) {
        let mut rx = self.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            let deadline = if state.in_flight > 0 {
                None
            } else if state.served {
                Some(state.idle_since + idle)
            } else {
                Some(state.idle_since + first_request)
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {
                    // A request that began as the timer fired wins.
                    if !rx.has_changed().unwrap_or(false) {
                        return;
                    }
                }
                changed = rx.changed() => {
                    // The sender lives in `self`: this never fails.
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity::new()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.send_modify(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

/// A response body that keeps its request in flight until it ends or is
/// dropped (a closed stream, a reset, a finished response).
pub struct TrackedBody {
    inner: Body,
    in_flight: Option<InFlight>,
}

impl TrackedBody {
    /// Wraps `inner`, holding `in_flight` as long as it has frames to send.
    pub fn new(inner: Body, in_flight: InFlight) -> TrackedBody {
        TrackedBody {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // Ended: the connection is idle from now, not from the drop.
            self.in_flight = None;
        }
        polled
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

    const FIRST: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(120);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_expires_after_the_first_request_limit() {
        let activity = Activity::new();
        let start = Instant::now();
        activity.expired(FIRST, IDLE).await;
        assert_eq!(start.elapsed(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_never_expires_and_idle_counts_from_its_end() {
        let activity = Activity::new();
        let request = activity.begin();
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(FIRST, IDLE).await }
        });
        tokio::time::sleep(IDLE * 3).await;
        assert!(!watchdog.is_finished(), "a stream in flight is never idle");
        let ended = Instant::now();
        drop(request);
        watchdog.await.unwrap();
        assert_eq!(ended.elapsed(), IDLE);
    }
}
