//! One accepted connection, from TLS handshake to close: the handshake gets
//! its own timeout, then hyper serves HTTP/1.1 or HTTP/2 on it while a
//! watchdog closes it gracefully when it has sat idle too long (see
//! [`Activity`]) or the server shuts down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

use super::RemoteAddr;
use super::activity::{Activity, TrackedBody};
use super::deadline::{self, DeadlineBody};
use super::limits::Timeouts;

/// How long a connection closed for idleness gets to say goodbye (HTTP/2
/// GOAWAY) before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every connection of one listener shares.
pub(super) struct Shared {
    /// hyper's HTTP/1 + HTTP/2 settings.
    pub builder: auto::Builder<TokioExecutor>,
    /// The APIs.
    pub router: Router,
    /// `Some`: connections must speak TLS.
    pub tls: Option<TlsAcceptor>,
    /// The timeouts.
    pub timeouts: Timeouts,
}

/// Serves one connection until it closes, times out, or `stop` turns true
/// (and the connection finishes gracefully).
pub(super) async fn run(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = &shared.tls else {
        return serve(TokioIo::new(stream), remote, &shared, stop).await;
    };
    let handshake = tokio::time::timeout(shared.timeouts.tls_handshake, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            // Plaintext to the TLS port, a bad client, a scanner: debug
            // only, since anyone can make as many as they like.
            Ok(Err(err)) => {
                tracing::debug!(%remote, %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, timeout = ?shared.timeouts.tls_handshake, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|s| *s) => return,
    };
    serve(TokioIo::new(stream), remote, &shared, stop).await;
}

/// Runs hyper on `io` with the idle watchdog.
async fn serve<I>(io: TokioIo<I>, remote: SocketAddr, shared: &Shared, stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let service = tracked(
        shared.router.clone(),
        remote,
        activity.clone(),
        shared.timeouts.body_read,
    );
    let conn = shared
        .builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let mut stop = stop;
    let timeouts = shared.timeouts;
    let mut closing = false;
    let mut drop_at: Option<tokio::time::Instant> = None;
    loop {
        let drop_now = async {
            match drop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(err) = done {
                    tracing::debug!(%remote, %err, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = activity.expired(timeouts.header_read, timeouts.idle), if !closing => {
                tracing::debug!(%remote, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
                drop_at = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
            }
            () = drop_now => {
                tracing::debug!(%remote, "idle connection did not close in time; dropping it");
                return;
            }
        }
    }
}

/// The router as one connection's service: each request carries the
/// client's address and a body deadline, and counts as in flight (for the
/// idle watchdog) until its response body ends.
fn tracked(
    router: Router,
    remote: SocketAddr,
    activity: Activity,
    body_timeout: Duration,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    router
        .map_request(move |req: Request<Incoming>| {
            let timeout = deadline::applies_to(req.uri().path()).then_some(body_timeout);
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(RemoteAddr(remote));
            Request::from_parts(parts, Body::new(DeadlineBody::new(body, timeout)))
        })
        .map_future(move |response| {
            let in_flight = activity.begin();
            async move {
                let response: Response<Body> = response.await?;
                Ok(response.map(|body| Body::new(TrackedBody::new(body, in_flight))))
            }
        })
}
