//! The engine: sessions, the UDP socket, the signaling client and the user,
//! tied together.
//!
//! Front ends (the line console, `--json`, the full-screen UI) all drive
//! the same engine: they send [`Request`]s (a [`Command`], maybe with an
//! id) and render [`Event`]s ([`api`]).
//!
//! * [`core`]: every decision, sans I/O: the session table and its limits,
//!   tombstones, answers to strangers, focus, relay bindings, STUN
//!   refreshes; unit-tested with a fake clock.
//! * [`io`]: the thin select loop that owns the socket, timers, channels
//!   and tracked background tasks.
//! * [`directory`]: who is online, resync diffs, name resolution.
//! * [`focus`]: which conversation is active (the engine alone decides).
//! * [`table`]: tombstones and the budget for answering strangers.
//! * [`bootstrap`]: registration, STUN and candidates at start.
//! * this file: the configuration, [`start`] and the [`EngineHandle`].

pub mod api;
mod bootstrap;
pub mod core;
pub mod directory;
mod focus;
pub mod io;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use p2pchat::PeerId;
use thiserror::Error;

use crate::identity::{Identity, KnownPeers};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub use self::api::{
    Command, DisconnectReason, ErrorCode, Event, Path, PeerSummary, Request, RequestId,
    SessionState, SessionStatus, Via,
};
pub use self::core::paths::STUN_REFRESH_TIMEOUT;
pub use self::core::{
    MAX_DEFERRED_CONNECTS, MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_PEER, MAX_QUEUED_EVENTS,
    MAX_SESSIONS, PENDING_HANDSHAKE_TIMEOUT,
};
pub use self::directory::{ResolveError, resolve};
use self::io::{AbortOnDrop, Io};
pub use self::io::{FINAL_EVENTS_TIMEOUT, MAX_BACKGROUND_TASKS, UNREGISTER_TIMEOUT};
pub use self::table::{
    MAX_HANDSHAKE_ANSWERS_PER_SEC, MAX_STRANGER_REPLIES_PER_SEC, MAX_TOMBSTONES,
    MAX_UNSOLICITED_PROBES_PER_SEC, TOMBSTONE_TTL,
};
use crate::session::SessionConfig;
use crate::signaling::{ServerTrust, SignalingError};
use crate::transport::{self, Transport};

/// Default capacity of the event channel to the front end
/// ([`EngineConfig::event_buffer`]). The engine never waits for room in it:
/// events wait in its own queue ([`MAX_QUEUED_EVENTS`]).
pub const EVENT_BUFFER: usize = 4096;

/// Capacity of the command channel from the front end.
pub const COMMAND_BUFFER: usize = 256;

/// Capacity of the channel from the signaling task.
const SIGNAL_BUFFER: usize = 256;

/// Everything the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Signaling server URL, e.g. `http://localhost:8000`.
    pub server: String,
    /// The certificates an `https://` server may present.
    pub server_trust: ServerTrust,
    /// Requested username; empty lets the server pick one.
    pub username: String,
    /// Our long-term key; our peer id is derived from it.
    pub identity: Arc<Identity>,
    /// Refuse peers that do not encrypt (seed-protocol peers).
    pub require_encryption: bool,
    /// Trust-on-first-use pins (in memory for an ephemeral identity).
    pub known_peers: KnownPeers,
    /// Address for the chat socket (`0.0.0.0:0`: any interface, any port).
    pub bind: SocketAddr,
    /// Session timings.
    pub session: SessionConfig,
    /// STUN server (`host:port`) to learn our public address from; `None`:
    /// the signaling server's own UDP port.
    pub stun: Option<String>,
    /// Whether to fall back to the server's relay when no direct path
    /// answers.
    pub relay: bool,
    /// Capacity of the event channel to the front end (at least 1).
    pub event_buffer: usize,
}

impl EngineConfig {
    /// A config with a fresh (ephemeral) key and default timings.
    pub fn new(server: impl Into<String>, username: impl Into<String>) -> EngineConfig {
        EngineConfig {
            server: server.into(),
            server_trust: ServerTrust::default(),
            username: username.into(),
            identity: Arc::new(Identity::generate()),
            require_encryption: false,
            known_peers: KnownPeers::in_memory(),
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            session: SessionConfig::default(),
            stun: None,
            relay: true,
            event_buffer: EVENT_BUFFER,
        }
    }
}

/// Errors that stop the engine from starting.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The chat socket could not be bound.
    #[error("cannot bind UDP socket on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Registration failed.
    #[error(transparent)]
    Signaling(#[from] SignalingError),
}

/// Our identity after start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Our full peer id.
    pub peer_id: PeerId,
    /// Our username as stored by the server.
    pub username: String,
    /// The chat socket's address.
    pub local_addr: SocketAddr,
}

/// The front end's side of a running engine.
#[derive(Debug)]
pub struct EngineHandle {
    commands: mpsc::Sender<Request>,
    task: JoinHandle<()>,
    started: Started,
}

impl EngineHandle {
    /// Our identity.
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// A sender for requests (cloneable, e.g. for a Ctrl+C task).
    pub fn commands(&self) -> mpsc::Sender<Request> {
        self.commands.clone()
    }

    /// Sends one command (or a [`Request`] with an id); false if the
    /// engine has stopped.
    pub async fn command(&self, command: impl Into<Request>) -> bool {
        self.commands.send(command.into()).await.is_ok()
    }

    /// Waits for the engine to stop (after [`Command::Quit`]).
    pub async fn join(self) {
        drop(self.commands);
        if let Err(err) = self.task.await {
            tracing::error!(%err, "engine task failed");
        }
    }

    /// Stops the engine abruptly: no disconnect, no unregister (as if the
    /// process was killed). For tests of offline detection.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Binds a UDP socket on `config.bind` and starts the engine on it.
pub async fn start(
    config: EngineConfig,
) -> Result<(EngineHandle, mpsc::Receiver<Event>), EngineError> {
    let socket = transport::bind_addr(config.bind)
        .await
        .map_err(|source| EngineError::Bind {
            addr: config.bind,
            source,
        })?;
    start_with(config, Arc::new(socket)).await
}

/// Starts the engine on the given transport (tests pass a lossy one):
/// registers (with retries), then runs the event loop in a task.
pub async fn start_with(
    config: EngineConfig,
    transport: Arc<dyn Transport>,
) -> Result<(EngineHandle, mpsc::Receiver<Event>), EngineError> {
    let local_addr = transport.local_addr().map_err(|source| EngineError::Bind {
        addr: config.bind,
        source,
    })?;
    let me = config.identity.peer_id();
    let boot = bootstrap::bootstrap(
        &config.server,
        &config.server_trust,
        (*config.identity).clone(),
        &config.username,
        config.stun.as_deref(),
        transport.as_ref(),
        local_addr,
    )
    .await?;
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer.max(1));
    let (command_tx, command_rx) = mpsc::channel(COMMAND_BUFFER);
    let (signal_tx, signal_rx) = mpsc::channel(SIGNAL_BUFFER);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Started {
        peer_id: me,
        username: boot.registration.username.clone(),
        local_addr,
    };
    // The first event; the channel is empty, so this cannot fail for room.
    let _ = event_tx.try_send(boot.registered);
    let signal_task = tokio::spawn(boot.signaling.clone().run(
        boot.registration.lease,
        signal_tx,
        stop_rx,
    ));
    let core = self::core::Core::new(
        self::core::CoreConfig {
            identity: config.identity.clone(),
            require_encryption: config.require_encryption,
            known_peers: config.known_peers,
            username: boot.registration.username,
            session: config.session,
            relay: boot.server_udp.filter(|_| config.relay),
            stun_server: boot.stun_server,
            reflexive: boot.reflexive,
        },
        Instant::now(),
    );
    let io = Io {
        core,
        transport,
        signaling: boot.signaling,
        events: event_tx,
        stop: stop_tx,
        signal_task: AbortOnDrop(signal_task),
        tasks: JoinSet::new(),
    };
    let task = tokio::spawn(io.run(command_rx, signal_rx));
    Ok((
        EngineHandle {
            commands: command_tx,
            task,
            started,
        },
        event_rx,
    ))
}
