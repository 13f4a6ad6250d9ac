//! The signaling service: one in-memory [`registry`] behind a gRPC service
//! ([`grpc`]) and a seed-compatible REST shim ([`rest`]), both served on one
//! TCP listener ([`listener`]); plus a UDP port ([`udp`]) answering STUN
//! ([`stun`]) and relaying between peers that cannot reach each other
//! directly ([`relay`]).
//!
//! [`start`] runs it all in the current tokio runtime; the
//! `signaling-server` binary is a thin wrapper around it.

pub mod config;
pub mod error;
pub mod grpc;
pub mod listener;
pub mod registry;
pub mod relay;
pub mod rest;
pub mod shutdown;
pub mod stun;
pub mod udp;
pub mod validate;

use std::net::SocketAddr;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use config::{ServerArgs, ServerConfig};
pub use error::RegistryError;
pub use registry::{PeerRegistry, RegistryConfig};

/// The address of the client a request came from, put into every request's
/// extensions by the listener. Both APIs record it as the peer's observed IP.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// A running server: its bound address and the means to stop it.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    registry: PeerRegistry,
    shutdown: broadcast::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// The address gRPC and REST are served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP address STUN and the relay are served on, if any.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The registry behind both APIs (for tests and embedding).
    pub fn registry(&self) -> PeerRegistry {
        self.registry.clone()
    }

    /// Stops accepting, ends every stream cleanly, lets in-flight requests
    /// finish (up to the configured grace period) and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        if let Err(err) = self.task.await {
            tracing::error!(%err, "server task failed");
        }
    }

    /// Waits until the server stops by itself (it only does after
    /// [`RunningServer::shutdown`] or a fatal error).
    pub async fn wait(self) {
        if let Err(err) = self.task.await {
            tracing::error!(%err, "server task failed");
        }
    }

    /// A handle that triggers shutdown from elsewhere (e.g. a signal task).
    pub fn shutdown_trigger(&self) -> broadcast::Sender<()> {
        self.shutdown.clone()
    }
}

/// Binds `config.listen` (and `config.udp_listen`) and serves gRPC + REST
/// (and STUN + relay) until shut down.
pub async fn start(config: ServerConfig) -> std::io::Result<RunningServer> {
    let tcp = listener::bind(config.listen)?;
    let local_addr = tcp.local_addr()?;
    let udp = match config.udp_listen {
        Some(addr) => {
            let socket = udp::bind(addr).map_err(|err| {
                std::io::Error::new(err.kind(), format!("cannot bind UDP {addr}: {err}"))
            })?;
            Some(socket)
        }
        None => None,
    };
    let udp_addr = match &udp {
        Some(socket) => Some(socket.local_addr()?),
        None => None,
    };
    let (shutdown_tx, _) = broadcast::channel(1);
    let (registry, registry_guard) = PeerRegistry::new(config.registry_config());
    let udp_port = udp_addr.map_or(0, |a| a.port());
    let app = listener::app(&config, registry.clone(), shutdown_tx.clone(), udp_port).await?;
    if let Some(socket) = udp {
        let udp_shutdown = shutdown::Shutdown::new(shutdown_tx.subscribe());
        tokio::spawn(udp::run(
            socket,
            registry.clone(),
            config.relay,
            udp_shutdown,
        ));
        if let Some(addr) = udp_addr {
            tracing::info!(%addr, "STUN + relay listening (UDP)");
        }
    }
    let serve_shutdown = shutdown::Shutdown::new(shutdown_tx.subscribe());
    let limits = config.connection_limits();
    // Health flips to NOT_SERVING as soon as shutdown starts, so load
    // balancers and clients on open connections stop sending new work.
    let health = app.health.clone();
    let mut health_shutdown = shutdown::Shutdown::new(shutdown_tx.subscribe());
    tokio::spawn(async move {
        health_shutdown.recv().await;
        health
            .set_not_serving::<p2pchat::proto::signaling_server::SignalingServer<grpc::SignalingService>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    });
    let task = tokio::spawn(async move {
        listener::serve(tcp, app.router, limits, serve_shutdown).await;
        // Stops the expiry task; the registry itself lives on in handles.
        drop(registry_guard);
    });
    tracing::info!(%local_addr, "signaling server listening (gRPC + REST)");
    Ok(RunningServer {
        local_addr,
        udp_addr,
        registry,
        shutdown: shutdown_tx,
        task,
    })
}
