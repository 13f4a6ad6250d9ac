//! The one TCP listener: HTTP/1.1 (REST) and HTTP/2 (gRPC, h2c) side by side,
//! with a connection limit, HTTP/2 keep-alive to notice vanished clients, and
//! graceful shutdown. It serves whatever router it is given and knows nothing
//! of the APIs behind it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::RemoteAddr;
use super::limits::ConnectionLimits;
use super::shutdown::Shutdown;

/// HTTP/2 PING interval: a client that stops answering (its machine or NAT
/// went away) is dropped after interval + timeout, so its streams end and
/// its inbox stops keeping its lease alive.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes HTTP/2 buffers per stream for a client that reads slowly. Bounds the
/// memory a stalled watcher costs (hyper's default is 400 KiB); past it the
/// watch task waits, falls behind, and is resynced with a snapshot.
const H2_MAX_SEND_BUF: usize = 64 * 1024;

/// Binds a TCP listener with SO_REUSEADDR, so a restarted server can take
/// the same port at once.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `router` on `listener` until `shutdown` fires, then stops
/// accepting and waits (up to the grace period) for open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut shutdown: Shutdown,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_send_buf_size(H2_MAX_SEND_BUF);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));

    loop {
        let accepted = tokio::select! {
            _ = shutdown.recv() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%remote, limit = limits.max_connections, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(RemoteAddr(remote));
                req
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%remote, %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for open connections");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the grace period; closing them");
    }
}
