//! The one TCP listener: HTTP/1.1 (REST) and HTTP/2 (gRPC) side by side, in
//! plaintext (h2c) or behind TLS, with a global connection limit, a
//! per-source connection quota, timeouts (see [`Timeouts`]), HTTP/2
//! keep-alive to notice vanished clients, and graceful shutdown. It serves
//! whatever router it is given and knows nothing of the APIs behind it.
//!
//! [`Timeouts`]: super::limits::Timeouts

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::connection::{self, Shared};
use super::limits::ConnectionLimits;
use super::quota::SourceQuota;
use super::refusals::{Refusal, Refusals};
use super::shutdown::Shutdown;
use crate::source::SourceKey;

/// HTTP/2 PING interval: a client that stops answering (its machine or NAT
/// went away) is dropped after interval + timeout, so its streams end and
/// its inbox stops keeping its lease alive.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes HTTP/2 buffers per stream for a client that reads slowly. Bounds the
/// memory a stalled watcher costs (hyper's default is 400 KiB); past it the
/// watch task waits, falls behind, and is resynced with a snapshot.
const H2_MAX_SEND_BUF: usize = 64 * 1024;
/// Pause after a failed accept (out of file descriptors and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

/// hyper's settings for both protocols.
fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeouts.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_send_buf_size(H2_MAX_SEND_BUF);
    builder
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until
/// `shutdown` fires, then stops accepting and waits (up to the grace
/// period) for open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    mut shutdown: Shutdown,
) {
    let shared = Arc::new(Shared {
        builder: builder(&limits),
        router,
        tls,
        timeouts: limits.timeouts,
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let quota = SourceQuota::new(limits.max_connections_per_source);
    let mut refusals = Refusals::default();
    let (stop, _) = watch::channel(false);
    let mut connections = JoinSet::new();

    loop {
        let accepted = tokio::select! {
            _ = shutdown.recv() => break,
            accepted = listener.accept() => accepted,
        };
        // Finished connections are reaped here, so the set holds live ones.
        while connections.try_join_next().is_some() {}
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refusals.record(remote, Refusal::ConnectionLimit(limits.max_connections));
            continue;
        };
        let source = SourceKey::from(remote.ip());
        let Some(slot) = quota.try_acquire(source) else {
            let limit = limits.max_connections_per_source;
            refusals.record(remote, Refusal::SourceQuota(source, limit));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, stop) = (shared.clone(), stop.subscribe());
        connections.spawn(async move {
            connection::run(stream, remote, shared, stop).await;
            drop((permit, slot));
        });
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        "shutting down: waiting for open connections"
    );
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?limits.shutdown_grace, open = connections.len(), "connections still open after the grace period; closing them");
        connections.shutdown().await;
    }
}
