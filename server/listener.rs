//! The one TCP listener: HTTP/1.1 (REST) and HTTP/2 (gRPC, h2c) side by side,
//! with a connection limit, HTTP/2 keep-alive to notice vanished clients, and
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, broadcast};
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tower::ServiceExt;

use super::RemoteAddr;
use super::config::ServerConfig;
use super::grpc::{GrpcLimits, SignalingService};
use super::registry::PeerRegistry;
use super::rest;
use super::shutdown::Shutdown;
use p2pchat::proto;
use p2pchat::proto::signaling_server::SignalingServer;

/// HTTP/2 PING interval: a client that stops answering (its machine or NAT
/// went away) is dropped after interval + timeout, so its streams end and
/// its inbox stops keeping its lease alive.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes HTTP/2 buffers per stream for a client that reads slowly. Bounds the
/// memory a stalled watcher costs (hyper's default is 400 KiB); past it the
/// watch task waits, falls behind, and is resynced with a snapshot.
const H2_MAX_SEND_BUF: usize = 64 * 1024;

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most TCP connections at once.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

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

/// The routes plus the health reporter, which flips to NOT_SERVING on
/// shutdown.
pub struct App {
    /// gRPC and REST routes together.
    pub router: Router,
    /// The grpc.health.v1 reporter.
    pub health: HealthReporter,
}

/// Builds the router: the Signaling service, grpc.health.v1, reflection
/// (v1 and v1alpha) and the REST shim.
/// `udp_port` is the bound STUN + relay port announced in Register
/// responses (0: none).
pub async fn app(
    config: &ServerConfig,
    registry: PeerRegistry,
    shutdown: broadcast::Sender<()>,
    udp_port: u16,
) -> std::io::Result<App> {
    let limits = GrpcLimits {
        udp_port,
        ..config.grpc_limits()
    };
    let signaling = SignalingServer::new(SignalingService::new(registry.clone(), limits, shutdown))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SignalingServer<SignalingService>>()
        .await;

    let reflection_v1 = reflection_builder()
        .build_v1()
        .map_err(std::io::Error::other)?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(std::io::Error::other)?;

    // Built from an empty router so tonic adds no fallback of its own: the
    // REST shim's fallback answers unknown paths for both protocols.
    let grpc = Routes::from(Router::new())
        .add_service(signaling)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router();
    let router = rest::router(registry)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .merge(grpc);
    Ok(App { router, health })
}

/// A reflection builder that knows every service on this port, both
/// reflection versions included, so `grpcurl list` shows them all whichever
/// version it speaks (grpcurl 1.8 speaks v1alpha).
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
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
