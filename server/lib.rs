//! The signaling service. Layers, each in the module named after it, each
//! using only the ones listed before it:
//!
//! * [`quota`]: the per-source quotas' pure accounting (counts held,
//!   token buckets) and the source key (IPv4 address, IPv6 /64).
//! * [`store`]: where peer records live: the async [`PeerStore`] trait
//!   (records, tokens, leases, a revisioned change feed) and the embedded
//!   in-memory [`MemoryStore`].
//! * [`source`]: who a per-source quota counts against (an IPv4 address,
//!   an IPv6 /64), for the listener, the API quotas and STUN alike.
//! * [`net`]: the one TCP listener (HTTP/1.1 and HTTP/2, plaintext or
//!   TLS), its limits, timeouts and per-source connection quota, the
//!   shutdown signal and the set of tracked tasks.
//! * [`rendezvous`]: routing a connect request to the target's open inbox.
//! * [`challenge`]: the one-time, stateless registration challenges a peer
//!   signs to prove it holds the key its id derives from.
//! * [`api`]: the gRPC service and the seed-compatible REST shim over the
//!   store, and the one place where refusals become `tonic::Status` and HTTP
//!   codes.
//! * [`udp`]: the UDP port: STUN answers and the relay, with relay
//!   admission checked against the store.
//! * [`config`]: the command line and the [`ServerConfig`] everything runs on.
//!
//! [`start`] runs it all in the current tokio runtime; the
//! `signaling-server` binary is a thin wrapper around it.

#![warn(missing_docs)]

pub mod api;
pub mod challenge;
pub mod config;
pub mod net;
pub mod quota;
pub mod rendezvous;
pub mod source;
pub mod store;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use config::{ServerArgs, ServerConfig};
pub use net::RemoteAddr;
pub use rendezvous::Rendezvous;
pub use store::{MemoryStore, PeerStore, StoreConfig, StoreError};

use net::shutdown::Shutdown;
use net::tasks::Tasks;

/// A running server: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    store: Arc<dyn PeerStore>,
    shutdown: broadcast::Sender<()>,
    /// The accept loop; it ends once shutdown has drained the connections.
    serve: JoinHandle<()>,
    /// Every other task (UDP, health, rendezvous, each stream); each ends
    /// on the shutdown signal.
    tasks: Tasks,
    /// How long the tasks get to end after the accept loop has.
    grace: Duration,
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

    /// The store behind both APIs (for tests and embedding).
    pub fn store(&self) -> Arc<dyn PeerStore> {
        self.store.clone()
    }

    /// Stops accepting, ends every stream cleanly, lets in-flight requests
    /// finish (up to the configured grace period) and returns once every
    /// task of the server has ended.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        self.finish().await;
    }

    /// Waits until the server stops by itself (it only does after
    /// [`RunningServer::shutdown`], a [`shutdown_trigger`] or a fatal error).
    ///
    /// [`shutdown_trigger`]: RunningServer::shutdown_trigger
    pub async fn wait(self) {
        self.finish().await;
    }

    /// A handle that triggers shutdown from elsewhere (e.g. a signal task).
    pub fn shutdown_trigger(&self) -> broadcast::Sender<()> {
        self.shutdown.clone()
    }

    /// Waits for the accept loop (which stops the embedded store when it
    /// ends), then for every other task, aborting those still running after
    /// the grace period.
    async fn finish(self) {
        if let Err(err) = self.serve.await {
            tracing::error!(%err, "server task failed");
        }
        // The accept loop may also have ended on its own: stop the rest.
        let _ = self.shutdown.send(());
        self.tasks.join(self.grace).await;
    }
}

/// Binds `config.listen` (and `config.udp_listen`) and serves gRPC + REST
/// (and STUN + relay) over the embedded in-memory store until shut down.
pub async fn start(config: ServerConfig) -> std::io::Result<RunningServer> {
    let (store, guard) = MemoryStore::new(config.store_config());
    launch(config, Arc::new(store), Some(guard)).await
}

/// Like [`start`], over a store the caller made (its `registry` settings are
/// then the caller's business, and so is stopping it).
pub async fn start_with_store(
    config: ServerConfig,
    store: Arc<dyn PeerStore>,
) -> std::io::Result<RunningServer> {
    launch(config, store, None).await
}

/// Binds the STUN + relay socket, naming the address in the error.
fn bind_udp(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    udp::bind(addr)
        .map_err(|err| std::io::Error::new(err.kind(), format!("cannot bind UDP {addr}: {err}")))
}

/// The TLS acceptor for `files`; a file problem is `InvalidInput`, with
/// the file and the reason in the message.
fn load_tls(files: &net::tls::TlsFiles) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    net::tls::acceptor(files)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))
}

/// Binds, spawns every task, and stops `store_guard`'s store once the
/// accept loop has ended (as long as the server runs, its store does, even
/// when the [`RunningServer`] handle is dropped).
async fn launch(
    config: ServerConfig,
    store: Arc<dyn PeerStore>,
    store_guard: Option<store::MemoryStoreGuard>,
) -> std::io::Result<RunningServer> {
    // Bad TLS files stop the server before anything is bound.
    let tls = config.tls.as_ref().map(load_tls).transpose()?;
    let tcp = net::listener::bind(config.listen).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on TCP {}: {err}", config.listen),
        )
    })?;
    let local_addr = tcp.local_addr()?;
    let udp = config.udp_listen.map(bind_udp).transpose()?;
    let udp_addr = udp.as_ref().map(|s| s.local_addr()).transpose()?;
    // With the relay on, registrations teach it each peer's relay key (the
    // MAC key of its BIND frames, derived from its token).
    let relay_keys = udp.as_ref().map(|_| udp::RelayKeys::new());
    let store: Arc<dyn PeerStore> = match &relay_keys {
        Some(keys) => Arc::new(udp::KeyedStore::new(store, keys.clone())),
        None => store,
    };
    let (shutdown_tx, _) = broadcast::channel(1);
    let signal = || Shutdown::new(shutdown_tx.subscribe());
    let rendezvous = Rendezvous::with_target_rate(store.clone(), config.quotas.connects_per_target);
    let tasks = Tasks::new();
    let limits = config.grpc_limits(udp_addr.map_or(0, |a| a.port()));
    // Challenges bound to this process (its secret) and its address.
    let challenges = Arc::new(challenge::Challenges::new(local_addr.to_string()));
    let app = api::app(
        store.clone(),
        rendezvous.clone(),
        challenges,
        limits,
        config.max_body_bytes,
        shutdown_tx.clone(),
        tasks.clone(),
    )
    .await?;

    tasks.spawn(rendezvous.run(signal()));
    if let (Some(socket), Some(addr), Some(keys)) = (udp, udp_addr, relay_keys) {
        tasks.spawn(udp::run(
            socket,
            store.clone(),
            keys,
            config.relay,
            signal(),
        ));
        tracing::info!(%addr, "STUN + relay listening (UDP)");
    }
    // Health flips to NOT_SERVING as soon as shutdown starts, so load
    // balancers and clients on open connections stop sending new work.
    let health = app.health.clone();
    let mut health_shutdown = signal();
    tasks.spawn(async move {
        health_shutdown.recv().await;
        api::set_not_serving(&health).await;
    });
    let serve = tokio::spawn({
        let serving =
            net::listener::serve(tcp, app.router, config.connection_limits(), tls, signal());
        async move {
            serving.await;
            if let Some(guard) = store_guard {
                guard.stop().await;
            }
        }
    });
    let tls = config.tls.is_some();
    tracing::info!(%local_addr, tls, "signaling server listening (gRPC + REST)");
    Ok(RunningServer {
        local_addr,
        udp_addr,
        store,
        shutdown: shutdown_tx,
        serve,
        tasks,
        grace: config.shutdown_grace,
    })
}
