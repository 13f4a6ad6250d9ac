//! The engine: sessions, the UDP socket, the signaling client and the user,
//! tied together in one event loop.
//!
//! Front ends (the line console, `--json`, later a full-screen UI) all drive
//! the same engine: they send [`Command`]s and render [`Event`]s. The engine
//! owns the socket and the timers, feeds datagrams and deadlines to the
//! [`Session`] state machines, and turns their actions into sends and events.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use p2pchat::PeerId;

use super::protocol::{Datagram, Kind, MAX_RECV_DATAGRAM_BYTES};
use super::relay::{Credentials, RelayClient, RelayInput};
use super::session::{
    Action, CloseReason, PRIME_TTL, PathKind, Phase, Session, SessionConfig, SessionEvent,
};
use super::signaling::{Identity, PeerInfo, SignalEvent, Signaling, SignalingError};
use super::stun;
use super::transport::{self, Transport};
use p2pchat::datagram::{DatagramKind, classify};

/// Most sessions at once; further incoming hellos are ignored.
pub const MAX_SESSIONS: usize = 32;

/// Default capacity of the event channel to the front end
/// ([`EngineConfig::event_buffer`]). The engine never waits for room in it:
/// events wait in the engine's own queue ([`MAX_QUEUED_EVENTS`]).
pub const EVENT_BUFFER: usize = 4096;

/// Events held in the engine's own queue while the front end does not read.
/// Emitting never waits, so keep-alives, pongs and acks go on whatever the
/// front end does. Once this many events wait, the engine stops taking in
/// chat lines: an incoming `message` datagram is dropped unacknowledged, so
/// a reliable sender retransmits it later (nothing vanishes; a seed-style
/// peer, which never retransmits, loses that line, logged as a warning), and
/// RTT updates are skipped (the next one supersedes them). Other events
/// (peers, sessions) are still queued: they come at the pace of the network,
/// not of a flood.
pub const MAX_QUEUED_EVENTS: usize = 8192;

/// Capacity of the command channel from the front end.
pub const COMMAND_BUFFER: usize = 256;

/// Capacity of the channel from the signaling task.
const SIGNAL_BUFFER: usize = 256;

/// How long a clean exit waits for Unregister.
pub const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a closed session's remote session id is remembered, so a hello
/// of that old session still in flight (crossing our `disconnect`) does
/// not open a new one.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(30);

/// Most closed sessions remembered ([`TOMBSTONE_TTL`]).
pub const MAX_TOMBSTONES: usize = 256;

/// Most `disconnect` answers per second to datagrams from peers we have no
/// session with (they tell a half-open peer to close at once; bounded so a
/// flood of spoofed datagrams cannot turn us into a reflector).
pub const MAX_STRANGER_REPLIES_PER_SEC: u32 = 20;

/// How long a STUN refresh (after a path went stale) waits for its answer.
pub const STUN_REFRESH_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Signaling server URL, e.g. `http://localhost:8000`.
    pub server: String,
    /// Requested username; empty lets the server pick one.
    pub username: String,
    /// Our peer id (a fresh UUID per run).
    pub peer_id: PeerId,
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
    /// A config with a fresh peer id and default timings.
    pub fn new(server: impl Into<String>, username: impl Into<String>) -> EngineConfig {
        EngineConfig {
            server: server.into(),
            username: username.into(),
            peer_id: PeerId::random(),
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
pub enum EngineError {
    /// The chat socket could not be bound.
    #[error("cannot bind UDP socket on {addr}: {source}")]
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

/// What the user asks the engine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Connect to a peer given by full id, unique id prefix or unique
    /// username; it becomes the active peer.
    Connect(String),
    /// Send a line to the active peer.
    Send(String),
    /// Report the current peer list (an [`Event::Peers`]).
    Peers,
    /// End the session with the active peer.
    Leave,
    /// Report server and session state (an [`Event::Status`]).
    Status,
    /// Disconnect everyone, unregister and stop.
    Quit,
}

/// One entry of the peer list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSummary {
    /// Full peer id.
    pub peer_id: String,
    /// Username (raw).
    pub username: String,
    /// `grpc` or `rest` (a seed-style peer).
    pub via: &'static str,
}

/// One session in an [`Event::Status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionStatus {
    /// The peer.
    pub peer_id: String,
    /// Its username.
    pub username: String,
    /// `probing` or `connected`.
    pub state: &'static str,
    /// Whether typed lines go to this peer.
    pub active: bool,
    /// The address chat flows to, once connected.
    pub addr: Option<String>,
    /// `lan`, `direct` or `relayed`, once connected.
    pub path: Option<&'static str>,
    /// Smoothed RTT in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
    /// Whether acks/retransmission are in use.
    pub reliable: bool,
    /// Lines sent and not yet acknowledged.
    pub pending: usize,
}

/// Everything a front end shows. Serialized as one JSON object per event
/// for `--json`, tagged by `"event"`. Text fields are raw network input:
/// sanitize before printing to a terminal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Registered with the server; our identity.
    Registered {
        /// Our full peer id.
        peer_id: String,
        /// Our username as the server stored it.
        username: String,
        /// Our UDP port.
        udp_port: u16,
        /// The IP the server saw us come from.
        observed_ip: String,
        /// Our public address as peers will probe it: the STUN answer, or
        /// `observed_ip:udp_port` when STUN got none.
        public_addr: String,
        /// Whether `public_addr` came from STUN.
        stun: bool,
        /// The addresses we registered for peers to probe.
        candidates: Vec<String>,
        /// The server URL.
        server: String,
    },
    /// The current list of online peers (at start, after every resync
    /// with the server, and on `/peers`).
    Peers {
        /// Everyone online except us.
        peers: Vec<PeerSummary>,
    },
    /// A peer came online.
    PeerJoined {
        /// Its id.
        peer_id: String,
        /// Its username.
        username: String,
    },
    /// A peer went offline.
    PeerLeft {
        /// Its id.
        peer_id: String,
        /// Its username.
        username: String,
    },
    /// Probing a peer (one event per attempt).
    Connecting {
        /// The peer.
        peer_id: String,
        /// Its username.
        username: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// The addresses being probed.
        endpoints: Vec<String>,
    },
    /// A session is up.
    Connected {
        /// The peer.
        peer_id: String,
        /// Its username.
        username: String,
        /// The address chat flows to (the relay's, when relayed).
        addr: String,
        /// `lan`, `direct` or `relayed`.
        path: &'static str,
        /// Handshake round trip in milliseconds, when measured.
        rtt_ms: Option<f64>,
        /// Whether acks/retransmission are in use (false for a seed peer).
        reliable: bool,
        /// True when the other side started it (rendezvous or hello), false
        /// when we asked to connect.
        incoming: bool,
        /// Hello rounds we sent before it came up.
        probe_rounds: u32,
    },
    /// A session moved to another path (e.g. relayed -> direct); nothing
    /// is lost or repeated.
    PathChanged {
        /// The peer.
        peer_id: String,
        /// The new address chat flows to.
        addr: String,
        /// `lan`, `direct` or `relayed`.
        path: &'static str,
    },
    /// A chat line arrived.
    Message {
        /// Sender's peer id.
        from: String,
        /// Sender's username.
        username: String,
        /// The line.
        text: String,
        /// When the sender sent it: its `timestamp`, Unix seconds by the
        /// sender's clock.
        sent_at: f64,
    },
    /// A line of ours went out (not yet acknowledged).
    Sent {
        /// The peer.
        to: String,
        /// Line id, used by `delivered` / `undeliverable`.
        line: u64,
        /// Whether a `delivered` event will follow.
        reliable: bool,
    },
    /// The peer acknowledged a line.
    Delivered {
        /// The peer.
        to: String,
        /// The line id from `sent`.
        line: u64,
    },
    /// A line could not be delivered (the session ended first).
    Undeliverable {
        /// The peer.
        to: String,
        /// The line id from `sent`.
        line: u64,
    },
    /// A keep-alive round trip completed.
    Rtt {
        /// The peer.
        peer_id: String,
        /// Smoothed RTT in milliseconds.
        rtt_ms: f64,
    },
    /// A session ended.
    Disconnected {
        /// The peer.
        peer_id: String,
        /// Its username.
        username: String,
        /// `local`, `remote_disconnect`, `timeout`, `left`, `unreachable`
        /// or `reset` (the peer started a new session; `connected` follows).
        reason: &'static str,
    },
    /// The signaling server connection broke; chat goes on, we retry.
    ServerLost {
        /// What went wrong.
        error: String,
    },
    /// Re-registered after a loss.
    ServerRestored {},
    /// Server and session state (on `/status`).
    Status {
        /// Whether we are registered with the server right now.
        server_connected: bool,
        /// Every session, connected or still probing.
        sessions: Vec<SessionStatus>,
    },
    /// The conversation typed lines go to changed (the engine alone
    /// decides it; front ends show it). Not part of the `--json` output.
    Focus {
        /// The active peer, `None` when there is none.
        peer_id: Option<String>,
    },
    /// A notice for the user (e.g. the `/help` text).
    Info {
        /// The text.
        message: String,
    },
    /// Something the user should know went wrong.
    Error {
        /// Machine-readable: `unknown_peer`, `ambiguous_peer`,
        /// `not_connected`, `unreachable`, `send_failed`,
        /// `invalid_command`, `session_limit` (already in
        /// [`MAX_SESSIONS`] sessions).
        code: &'static str,
        /// Human-readable.
        message: String,
    },
}

/// Our identity after start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Our full peer id.
    pub peer_id: String,
    /// Our username as stored by the server.
    pub username: String,
    /// The chat socket's address.
    pub local_addr: SocketAddr,
}

/// The front end's side of a running engine.
#[derive(Debug)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    started: Started,
}

impl EngineHandle {
    /// Our identity.
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// A sender for commands (cloneable, e.g. for a Ctrl+C task).
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    /// Sends one command; false if the engine has stopped.
    pub async fn command(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
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
    let local = transport::local_endpoints(local_addr);
    let identity = Identity {
        peer_id: config.peer_id.to_string(),
        username: config.username.clone(),
        udp_port: local_addr.port(),
        endpoints: local.clone(),
    };
    let (signaling, registration) = Signaling::register(&config.server, identity).await?;
    let server_udp = server_udp_addr(&signaling, registration.udp_port).await;
    let stun_server = match &config.stun {
        Some(target) => resolve_v4(target).await,
        None => server_udp,
    };
    let mut reflexive = None;
    match stun_server {
        Some(server) => match stun::discover(transport.as_ref(), server).await {
            Ok(addr) => {
                tracing::info!(%server, public = %addr, "STUN: learned our public address");
                reflexive = Some(addr);
                if let Err(err) = signaling.set_reflexive(Some(addr)).await {
                    tracing::warn!(%err, "could not register the STUN address");
                }
            }
            Err(err) => tracing::warn!(
                %err,
                "STUN failed; peers will probe the server-observed IP with our local port"
            ),
        },
        None => tracing::warn!(
            "no STUN server (the signaling server offers no UDP port and --stun is not set); \
             peers will probe the server-observed IP with our local port"
        ),
    }
    let public_addr = reflexive.map_or_else(
        || format!("{}:{}", registration.observed_ip, local_addr.port()),
        |a| a.to_string(),
    );
    let mut candidates: Vec<String> = local.iter().map(|a| a.to_string()).collect();
    candidates.extend(reflexive.map(|a| a.to_string()));
    let observed = format!("{}:{}", registration.observed_ip, local_addr.port());
    if !candidates.contains(&observed) {
        candidates.push(observed);
    }
    let relay = match (config.relay, server_udp) {
        (true, Some(addr)) => Some(RelayClient::new(addr)),
        _ => None,
    };
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer.max(1));
    let (command_tx, command_rx) = mpsc::channel(COMMAND_BUFFER);
    let (signal_tx, signal_rx) = mpsc::channel(SIGNAL_BUFFER);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (internal_tx, internal_rx) = mpsc::channel(COMMAND_BUFFER);
    let started = Started {
        peer_id: config.peer_id.to_string(),
        username: registration.username.clone(),
        local_addr,
    };
    // The first event; the channel is empty, so this cannot block.
    let _ = event_tx
        .send(Event::Registered {
            peer_id: config.peer_id.to_string(),
            username: registration.username.clone(),
            udp_port: local_addr.port(),
            public_addr,
            stun: reflexive.is_some(),
            candidates,
            observed_ip: registration.observed_ip.clone(),
            server: config.server.clone(),
        })
        .await;
    tokio::spawn(
        signaling
            .clone()
            .run(registration.lease, signal_tx, stop_rx),
    );
    let engine = Engine {
        username: registration.username,
        config,
        transport,
        signaling,
        events: Some(event_tx),
        queue: std::collections::VecDeque::new(),
        directory: BTreeMap::new(),
        have_snapshot: false,
        deferred: Vec::new(),
        sessions: HashMap::new(),
        active: None,
        wanted: None,
        outgoing: std::collections::HashSet::new(),
        server_up: true,
        orphaned: Vec::new(),
        internal_tx,
        stop: stop_tx,
        relay,
        stun_server,
        reflexive,
        stun_refresh: None,
        tombstones: HashMap::new(),
        outbox: Vec::new(),
        stranger_replies: (Instant::now(), 0),
    };
    let task = tokio::spawn(engine.run(command_rx, signal_rx, internal_rx));
    Ok((
        EngineHandle {
            commands: command_tx,
            task,
            started,
        },
        event_rx,
    ))
}

/// The server's UDP (STUN + relay) address: its URL's host with the port
/// it announced. IPv4 only, like the chat socket.
async fn server_udp_addr(signaling: &Signaling, port: u16) -> Option<SocketAddr> {
    if port == 0 {
        return None;
    }
    let host = signaling.server_host()?;
    resolve_v4(&format!("{host}:{port}")).await
}

/// Resolves `host:port` to its first IPv4 address.
async fn resolve_v4(target: &str) -> Option<SocketAddr> {
    match tokio::net::lookup_host(target).await {
        Ok(mut addrs) => addrs.find(SocketAddr::is_ipv4),
        Err(err) => {
            tracing::warn!(%target, %err, "cannot resolve");
            None
        }
    }
}

/// A STUN request in flight after a path went stale.
#[derive(Debug)]
struct StunRefresh {
    tid: stun_codec::TransactionId,
    deadline: Instant,
    /// Peers whose rendezvous waits for the answer.
    peers: Vec<String>,
}

/// Results of background work, fed back into the loop.
#[derive(Debug)]
enum Internal {
    Rendezvous {
        target: PeerInfo,
        result: Result<(PeerInfo, bool), String>,
        /// False for a repeat during a later attempt: only adds endpoints
        /// to a session that still exists, never starts a new one.
        create: bool,
    },
}

struct Engine {
    config: EngineConfig,
    username: String,
    transport: Arc<dyn Transport>,
    signaling: Signaling,
    /// The channel to the front end; `None` once it is gone.
    events: Option<mpsc::Sender<Event>>,
    /// Events waiting for room in `events` ([`MAX_QUEUED_EVENTS`]).
    queue: std::collections::VecDeque<Event>,
    /// Online peers by id, from WatchPeers.
    directory: BTreeMap<String, PeerInfo>,
    have_snapshot: bool,
    /// Connect requests made before the first peer list arrived.
    deferred: Vec<String>,
    sessions: HashMap<String, Session>,
    /// The peer typed lines go to.
    active: Option<String>,
    /// The peer the user last asked to connect to (becomes active when up).
    wanted: Option<String>,
    /// Peers the user asked to connect to (their sessions are not
    /// "incoming"); forgotten when the session ends.
    outgoing: std::collections::HashSet<String>,
    server_up: bool,
    /// Actions of sessions replaced before `flush` could collect them.
    orphaned: Vec<(String, Action)>,
    internal_tx: mpsc::Sender<Internal>,
    stop: watch::Sender<bool>,
    /// Relay bindings, when the server offers a relay.
    relay: Option<RelayClient>,
    /// Where STUN requests go.
    stun_server: Option<SocketAddr>,
    /// Our last known server-reflexive address.
    reflexive: Option<SocketAddr>,
    stun_refresh: Option<StunRefresh>,
    /// Closed sessions: peer -> (its session id then, until when).
    tombstones: HashMap<String, (Option<u64>, Instant)>,
    /// Engine-level datagrams (answers to strangers) for the next flush.
    outbox: Vec<(String, SocketAddr, Vec<u8>)>,
    /// Start of the current second and answers to strangers in it.
    stranger_replies: (Instant, u32),
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut signals: mpsc::Receiver<SignalEvent>,
        mut internal: mpsc::Receiver<Internal>,
    ) {
        // One byte more than the limit, so an oversized datagram is seen as
        // such instead of silently truncated to a valid-looking size.
        let mut buf = vec![0u8; MAX_RECV_DATAGRAM_BYTES + 1];
        let transport = self.transport.clone();
        let events = self.events.clone();
        loop {
            self.forward_events();
            let deadline = self
                .sessions
                .values()
                .filter_map(Session::next_deadline)
                .chain(self.relay.as_ref().and_then(RelayClient::next_deadline))
                .chain(self.stun_refresh.as_ref().map(|r| r.deadline))
                .min();
            tokio::select! {
                received = transport.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.on_datagram(&buf[..n], from),
                    Err(err) => {
                        // E.g. ICMP errors surfacing on some platforms; the
                        // socket itself stays usable.
                        tracing::debug!(%err, "UDP receive error");
                    }
                },
                command = commands.recv() => match command {
                    Some(Command::Quit) | None => break,
                    Some(command) => self.on_command(command).await,
                },
                Some(signal) = signals.recv() => self.on_signal(signal).await,
                Some(msg) = internal.recv() => self.on_internal(msg).await,
                permit = reserve(events.as_ref()), if !self.queue.is_empty() => match permit {
                    Some(permit) => {
                        if let Some(event) = self.queue.pop_front() {
                            permit.send(event);
                        }
                    }
                    None => {
                        self.events = None;
                        self.queue.clear();
                    }
                },
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    for session in self.sessions.values_mut() {
                        session.poll_timers(now);
                    }
                    self.poll_relay(now).await;
                    if self.stun_refresh.as_ref().is_some_and(|r| now >= r.deadline) {
                        self.finish_stun_refresh(None);
                    }
                }
            }
            self.flush().await;
        }
        self.shutdown().await;
        // The last events (our own disconnects) still reach a front end
        // that reads, but a stalled one cannot hold up the exit.
        let rest = async {
            if let Some(tx) = &self.events {
                for event in std::mem::take(&mut self.queue) {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(UNREGISTER_TIMEOUT, rest)
            .await
            .is_err()
        {
            tracing::warn!("front end not reading; last events dropped");
        }
    }

    async fn shutdown(&mut self) {
        for session in self.sessions.values_mut() {
            session.close();
        }
        self.flush().await;
        let _ = self.stop.send(true);
        match tokio::time::timeout(UNREGISTER_TIMEOUT, self.signaling.unregister()).await {
            Ok(Ok(())) => tracing::info!("unregistered"),
            Ok(Err(err)) => tracing::warn!(%err, "unregister failed"),
            Err(_) => tracing::warn!("unregister timed out"),
        }
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        match classify(bytes) {
            DatagramKind::Relay if self.relay.as_ref().is_some_and(|r| r.server() == from) => {
                self.on_relay_frame(bytes, from);
            }
            DatagramKind::Stun => {
                if let Some(refresh) = &self.stun_refresh
                    && Some(from) == self.stun_server
                    && let Some(addr) = stun::parse_binding_response(bytes, refresh.tid)
                {
                    self.finish_stun_refresh(Some(addr));
                }
            }
            _ => self.on_chat_datagram(bytes, from),
        }
    }

    /// A frame from the relay: a binding's state, or a relayed datagram.
    fn on_relay_frame(&mut self, bytes: &[u8], relay_addr: SocketAddr) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        match relay.on_frame(bytes) {
            RelayInput::Ready(peer) => {
                tracing::info!(%peer, "relay ready");
                if let Some(session) = self.sessions.get_mut(&peer) {
                    session.add_relay(relay_addr, Instant::now());
                }
            }
            RelayInput::Waiting(peer) => {
                tracing::debug!(%peer, "relay bound; waiting for the other side");
            }
            RelayInput::Refused(peer, code) => {
                tracing::warn!(%peer, code, "relay refused the binding");
                if let Some(session) = self.sessions.get_mut(&peer) {
                    session.drop_relay();
                }
            }
            RelayInput::Data(peer, payload) => {
                // The relay vouches for the sender: only a datagram that
                // claims to be from the peer it is bound to goes on.
                match Datagram::decode(&payload) {
                    Ok(dg) if dg.from() == peer.as_str() => self.on_chat(dg, relay_addr),
                    Ok(_) => tracing::debug!(%peer, "relayed datagram with a foreign id dropped"),
                    Err(err) => tracing::debug!(%peer, %err, "relayed datagram dropped"),
                }
            }
            RelayInput::Ignored => {}
        }
    }

    fn on_chat_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        let dg = match Datagram::decode(bytes) {
            Ok(dg) => dg,
            Err(err) => {
                tracing::debug!(%from, %err, "dropping datagram");
                return;
            }
        };
        self.on_chat(dg, from);
    }

    fn on_chat(&mut self, dg: Datagram, from: SocketAddr) {
        let peer = dg.from().to_string();
        if dg.from() == self.config.peer_id {
            tracing::debug!(%from, "dropping datagram claiming our own id");
            return;
        }
        let now = Instant::now();
        if let Some(session) = self.sessions.get_mut(&peer) {
            if dg.kind() == Kind::Message && self.queue.len() >= MAX_QUEUED_EVENTS {
                // Unacknowledged: a reliable sender retransmits it once the
                // front end caught up (see MAX_QUEUED_EVENTS).
                let level_seed = !session.reliable();
                if level_seed {
                    tracing::warn!(%peer, "front end not reading; a seed-protocol line is lost");
                } else {
                    tracing::debug!(%peer, "front end not reading; chat line left for retransmission");
                }
                return;
            }
            if !session.is_superseded_by(&dg, from) {
                session.handle_datagram(&dg, from, now);
                return;
            }
            // The peer started over: end the old session (reporting its
            // pending lines) and accept the hello as a new one below.
            tracing::info!(%peer, "peer started a new session");
            session.reset();
            let actions = session.take_actions();
            self.orphaned
                .extend(actions.into_iter().map(|a| (peer.clone(), a)));
            self.sessions.remove(&peer);
        }
        if dg.kind() != Kind::Hello {
            tracing::debug!(%from, kind = ?dg.kind(), "dropping datagram from a stranger");
            // A peer that still thinks it has a session with us: tell it
            // to close now rather than after its keep-alive gives up.
            if matches!(dg.kind(), Kind::Message | Kind::Ping) {
                self.answer_stranger(&peer, from, now);
            }
            return;
        }
        if let Some((old, until)) = self.tombstones.get(&peer)
            && now < *until
            && old.is_some()
            && *old == dg.session_id()
        {
            // A probe of the session we just closed, crossing our
            // disconnect: not a new session.
            tracing::debug!(%from, %peer, "hello of a closed session ignored");
            self.answer_stranger(&peer, from, now);
            return;
        }
        if !self.may_open_session() {
            tracing::debug!(%from, "session limit reached; hello ignored");
            return;
        }
        tracing::info!(%from, %peer, "incoming hello");
        let mut session = Session::accept(
            self.config.session.clone(),
            self.config.peer_id,
            &self.username,
            &dg,
            from,
            now,
        );
        if self.relay.as_ref().is_some_and(|r| r.server() == from) {
            session.add_relay(from, now);
        }
        self.sessions.insert(peer, session);
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Connect(target) => {
                if self.have_snapshot {
                    self.connect(&target).await;
                } else {
                    self.deferred.push(target);
                }
            }
            Command::Send(text) => self.send_line(&text).await,
            Command::Peers => {
                let peers = self.peer_list();
                self.emit(Event::Peers { peers });
            }
            Command::Status => {
                let event = self.status();
                self.emit(event);
            }
            Command::Leave => {
                if let Some(id) = self.active.clone() {
                    self.set_active(None);
                    if let Some(session) = self.sessions.get_mut(&id) {
                        session.close();
                    }
                }
            }
            Command::Quit => {}
        }
    }

    async fn send_line(&mut self, text: &str) {
        let Some(id) = self.active.clone() else {
            self.error(
                "not_connected",
                "not connected to a peer; use /connect <peer>",
            );
            return;
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            self.error(
                "not_connected",
                "not connected to a peer; use /connect <peer>",
            );
            return;
        };
        match session.send_line(text, Instant::now()) {
            Ok(line) => {
                let reliable = session.reliable();
                self.emit(Event::Sent {
                    to: id,
                    line,
                    reliable,
                });
            }
            Err(err) => {
                let code = match err {
                    super::session::SendError::NotConnected => "not_connected",
                    _ => "send_failed",
                };
                self.error(code, &err.to_string());
            }
        }
    }

    /// Resolves `target` and starts the rendezvous.
    async fn connect(&mut self, target: &str) {
        let peer = match resolve(&self.directory, &self.config.peer_id.to_string(), target) {
            Ok(peer) => peer.clone(),
            Err(err) => {
                self.error(err.code(), &err.to_string());
                return;
            }
        };
        self.wanted = Some(peer.peer_id.clone());
        self.outgoing.insert(peer.peer_id.clone());
        if let Some(session) = self.sessions.get(&peer.peer_id) {
            if session.phase() == Phase::Connected {
                let event = self.connected_event(&peer.peer_id);
                if let Some(event) = event {
                    self.emit(event);
                }
                self.set_active(Some(peer.peer_id.clone()));
            }
            return;
        }
        if !self.may_open_session() {
            self.session_limit_error(&peer.peer_id);
            return;
        }
        self.spawn_rendezvous(peer, true);
    }

    /// The one rule for whether another session may start (a hello, a
    /// rendezvous answer or a connect request): at most [`MAX_SESSIONS`].
    fn may_open_session(&self) -> bool {
        self.sessions.len() < MAX_SESSIONS
    }

    fn session_limit_error(&mut self, peer: &str) {
        let message = format!(
            "cannot connect to {}: already in {MAX_SESSIONS} sessions, the most at once",
            self.display_name(peer)
        );
        self.error("session_limit", &message);
    }

    /// The one constructor of sessions we start (after a rendezvous or a
    /// connect request); callers checked [`Engine::may_open_session`].
    fn open_outgoing(&mut self, peer: &str, endpoints: Vec<SocketAddr>) {
        let Ok(remote) = PeerId::parse(peer) else {
            tracing::warn!(%peer, "the server sent a peer id that is not a UUID");
            return;
        };
        let session = Session::connect(
            self.config.session.clone(),
            self.config.peer_id,
            &self.username,
            remote,
            endpoints,
            Instant::now(),
        );
        self.sessions.insert(peer.to_owned(), session);
    }

    /// Asks the server for a rendezvous with `peer` in the background; the
    /// answer comes back as [`Internal::Rendezvous`].
    fn spawn_rendezvous(&self, peer: PeerInfo, create: bool) {
        let signaling = self.signaling.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let result = signaling
                .request_connect(&peer.peer_id)
                .await
                .map_err(|e| e.to_string());
            let _ = tx
                .send(Internal::Rendezvous {
                    target: peer,
                    result,
                    create,
                })
                .await;
        });
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Rendezvous {
                target,
                result,
                create,
            } => {
                let (peer, notified) = match result {
                    Ok(found) => found,
                    Err(err) => {
                        // Probe what we know anyway: a seed-style peer
                        // accepts hellos without a rendezvous.
                        tracing::warn!(%err, "connect request failed; probing known endpoints");
                        (target, false)
                    }
                };
                tracing::info!(peer = %peer.peer_id, notified, endpoints = ?peer.endpoints, "rendezvous");
                if let Some(session) = self.sessions.get_mut(&peer.peer_id) {
                    session.add_candidates(peer.endpoints.iter().copied());
                    return;
                }
                if !create {
                    return;
                }
                if peer.endpoints.is_empty() {
                    self.error(
                        "unreachable",
                        &format!(
                            "could not reach peer {}: it has no known address",
                            self.display_name(&peer.peer_id)
                        ),
                    );
                    return;
                }
                if !self.may_open_session() {
                    self.session_limit_error(&peer.peer_id);
                    return;
                }
                self.directory
                    .entry(peer.peer_id.clone())
                    .or_insert_with(|| peer.clone());
                self.open_outgoing(&peer.peer_id, peer.endpoints.clone());
            }
        }
    }

    async fn on_signal(&mut self, signal: SignalEvent) {
        match signal {
            SignalEvent::Registered(_) => {
                if !self.server_up {
                    self.server_up = true;
                    self.emit(Event::ServerRestored {});
                }
            }
            SignalEvent::Lost { error } => {
                if self.server_up {
                    self.server_up = false;
                    self.emit(Event::ServerLost { error });
                }
            }
            SignalEvent::Snapshot(peers) => {
                let fresh: BTreeMap<String, PeerInfo> = peers
                    .into_iter()
                    .filter(|p| self.config.peer_id != p.peer_id.as_str())
                    .map(|p| (p.peer_id.clone(), p))
                    .collect();
                let old = std::mem::replace(&mut self.directory, fresh);
                if !self.have_snapshot {
                    self.have_snapshot = true;
                    let peers = self.peer_list();
                    self.emit(Event::Peers { peers });
                    for target in std::mem::take(&mut self.deferred) {
                        self.connect(&target).await;
                    }
                    return;
                }
                // A resync: report the difference. Sessions are not closed
                // for a peer missing here (after a server restart it may
                // simply not have re-registered yet); only LEFT does that.
                for (id, p) in &old {
                    if !self.directory.contains_key(id) {
                        let event = Event::PeerLeft {
                            peer_id: id.clone(),
                            username: p.username.clone(),
                        };
                        self.emit(event);
                    }
                }
                let joined: Vec<Event> = self
                    .directory
                    .iter()
                    .filter(|(id, _)| !old.contains_key(*id))
                    .map(|(id, p)| Event::PeerJoined {
                        peer_id: id.clone(),
                        username: p.username.clone(),
                    })
                    .collect();
                for event in joined {
                    self.emit(event);
                }
                // Then the whole list, so a front end that keeps one can
                // replace it and drop anything it got wrong meanwhile.
                let peers = self.peer_list();
                self.emit(Event::Peers { peers });
            }
            SignalEvent::Joined(peer) | SignalEvent::Updated(peer) => {
                if self.config.peer_id == peer.peer_id.as_str() {
                    return;
                }
                if let Some(session) = self.sessions.get_mut(&peer.peer_id)
                    && session.phase() == Phase::Probing
                {
                    session.add_candidates(peer.endpoints.iter().copied());
                }
                let event = Event::PeerJoined {
                    peer_id: peer.peer_id.clone(),
                    username: peer.username.clone(),
                };
                if self.directory.insert(peer.peer_id.clone(), peer).is_none() {
                    self.emit(event);
                }
            }
            SignalEvent::Left(peer) => {
                if self.config.peer_id == peer.peer_id.as_str() {
                    return;
                }
                if let Some(session) = self.sessions.get_mut(&peer.peer_id) {
                    session.peer_left();
                }
                if self.directory.remove(&peer.peer_id).is_some() {
                    self.emit(Event::PeerLeft {
                        peer_id: peer.peer_id,
                        username: peer.username,
                    });
                }
            }
            SignalEvent::ConnectRequested { from, .. } => {
                if self.config.peer_id == from.peer_id.as_str() {
                    return;
                }
                tracing::info!(peer = %from.peer_id, "connect requested");
                self.directory
                    .entry(from.peer_id.clone())
                    .or_insert_with(|| from.clone());
                if let Some(session) = self.sessions.get_mut(&from.peer_id) {
                    // The peer asks again while we have a session: its path
                    // went stale (e.g. its NAT mapping changed). Probe its
                    // fresh endpoints so our NAT opens towards them.
                    session.add_candidates(from.endpoints.iter().copied());
                    session.reprobe(Instant::now());
                    return;
                }
                if !self.may_open_session() {
                    tracing::warn!("session limit reached; connect request ignored");
                    return;
                }
                self.open_outgoing(&from.peer_id, from.endpoints.clone());
            }
        }
    }

    /// Sends what the sessions want sent and reports what they report.
    async fn flush(&mut self) {
        let mut sends = Vec::new();
        let mut reports = Vec::new();
        let mut closed = Vec::new();
        let mut primes = Vec::new();
        for (id, action) in std::mem::take(&mut self.orphaned) {
            match action {
                Action::Send { to, bytes } => sends.push((id, to, bytes)),
                Action::Prime { to, bytes } => primes.push((to, bytes)),
                Action::Event(event) => reports.push((id, event)),
            }
        }
        for (id, session) in self.sessions.iter_mut() {
            for action in session.take_actions() {
                match action {
                    Action::Send { to, bytes } => sends.push((id.clone(), to, bytes)),
                    Action::Prime { to, bytes } => primes.push((to, bytes)),
                    Action::Event(event) => reports.push((id.clone(), event)),
                }
            }
            if session.phase() == Phase::Closed {
                closed.push(id.clone());
            }
        }
        sends.splice(0..0, std::mem::take(&mut self.outbox));
        if !primes.is_empty() {
            self.send_primes(&primes).await;
        }
        let relay_addr = self.relay.as_ref().map(RelayClient::server);
        for (id, to, bytes) in sends {
            let wrapped;
            let bytes = if Some(to) == relay_addr {
                match self.relay.as_ref().and_then(|r| r.wrap(&id, &bytes)) {
                    Some(frame) => {
                        wrapped = frame;
                        &wrapped
                    }
                    None => {
                        tracing::debug!(peer = %id, "relay not ready; datagram dropped");
                        continue;
                    }
                }
            } else {
                &bytes
            };
            if let Err(err) = self.transport.send_to(bytes, to).await {
                tracing::debug!(%to, %err, "UDP send failed");
            }
        }
        for (id, event) in reports {
            self.report(&id, event).await;
        }
        for id in closed {
            if let Some(session) = self.sessions.remove(&id) {
                self.bury(&id, session.remote_session_id());
            }
            self.release_relay(&id).await;
            if self.active.as_deref() == Some(id.as_str()) {
                self.set_active(None);
            }
            if self.wanted.as_deref() == Some(id.as_str()) {
                self.wanted = None;
            }
            self.outgoing.remove(&id);
        }
    }

    async fn report(&mut self, id: &str, event: SessionEvent) {
        let username = self.display_name(id);
        let out = match event {
            SessionEvent::Probing { attempt } => {
                if attempt > 1 && self.server_up {
                    // A fresh rendezvous per attempt: the target may have
                    // missed the first one (e.g. its inbox was reconnecting)
                    // or moved; its answer adds any new endpoints.
                    if let Some(peer) = self.directory.get(id).cloned() {
                        self.spawn_rendezvous(peer, false);
                    }
                }
                Event::Connecting {
                    peer_id: id.to_owned(),
                    username,
                    attempt,
                    endpoints: self
                        .sessions
                        .get(id)
                        .map(|s| s.candidates().iter().map(|a| a.to_string()).collect())
                        .unwrap_or_default(),
                }
            }
            SessionEvent::Connected { .. } => {
                if let Some(event) = self.connected_event(id) {
                    self.emit(event);
                }
                // What the user asked for last becomes active; anything
                // else only when nothing is.
                if self.active.is_none() || self.wanted.as_deref() == Some(id) {
                    self.set_active(Some(id.to_owned()));
                }
                return;
            }
            SessionEvent::Message { text, sent_at } => Event::Message {
                from: id.to_owned(),
                username,
                text,
                sent_at,
            },
            SessionEvent::Delivered { line } => Event::Delivered {
                to: id.to_owned(),
                line,
            },
            SessionEvent::Undeliverable { line } => Event::Undeliverable {
                to: id.to_owned(),
                line,
            },
            SessionEvent::Rtt { rtt } => Event::Rtt {
                peer_id: id.to_owned(),
                rtt_ms: millis(rtt),
            },
            SessionEvent::NeedRelay => {
                self.request_relay(id).await;
                return;
            }
            SessionEvent::Stale => {
                tracing::info!(peer = %id, "path went quiet; refreshing the rendezvous");
                self.request_relay(id).await;
                self.refresh_path(id).await;
                return;
            }
            SessionEvent::PathChanged { addr, .. } => Event::PathChanged {
                peer_id: id.to_owned(),
                addr: addr.to_string(),
                path: self.path_of(id, addr).as_str(),
            },
            SessionEvent::Closed { reason } => {
                if reason == CloseReason::Unreachable {
                    let message = format!(
                        "could not reach peer {username} after {} attempts",
                        self.config.session.connect_attempts
                    );
                    self.error("unreachable", &message);
                }
                Event::Disconnected {
                    peer_id: id.to_owned(),
                    username,
                    reason: reason.as_str(),
                }
            }
        };
        self.emit(out);
    }

    fn connected_event(&self, id: &str) -> Option<Event> {
        let session = self.sessions.get(id)?;
        let addr = session.addr()?;
        Some(Event::Connected {
            peer_id: id.to_owned(),
            username: self.display_name(id),
            addr: addr.to_string(),
            path: self.path_of(id, addr).as_str(),
            rtt_ms: session.rtt().map(millis),
            reliable: session.reliable(),
            incoming: !self.outgoing.contains(id),
            probe_rounds: session.probe_rounds(),
        })
    }

    fn status(&self) -> Event {
        let mut sessions: Vec<SessionStatus> = self
            .sessions
            .iter()
            .map(|(id, s)| SessionStatus {
                peer_id: id.clone(),
                username: self.display_name(id),
                state: match s.phase() {
                    Phase::Probing => "probing",
                    Phase::Connected => "connected",
                    Phase::Closed => "closed",
                },
                active: self.active.as_deref() == Some(id.as_str()),
                addr: s.addr().map(|a| a.to_string()),
                path: s.addr().map(|a| self.path_of(id, a).as_str()),
                rtt_ms: s.rtt().map(millis),
                reliable: s.reliable(),
                pending: s.pending_lines(),
            })
            .collect();
        sessions.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Event::Status {
            server_connected: self.server_up,
            sessions,
        }
    }

    /// Relayed through the server's relay; LAN when the address is
    /// private/loopback or one the peer registered as its own interface
    /// address; direct otherwise.
    fn path_of(&self, id: &str, addr: SocketAddr) -> PathKind {
        let kind = self
            .sessions
            .get(id)
            .map_or_else(|| PathKind::of(addr), |s| s.path_of(addr));
        let own_interface = self
            .directory
            .get(id)
            .is_some_and(|p| p.local_endpoints.contains(&addr));
        if kind != PathKind::Relayed && own_interface {
            PathKind::Lan
        } else {
            kind
        }
    }

    /// Remembers a closed session's remote session id for
    /// [`TOMBSTONE_TTL`].
    fn bury(&mut self, peer: &str, remote_session: Option<u64>) {
        let now = Instant::now();
        self.tombstones.retain(|_, (_, until)| *until > now);
        if self.tombstones.len() >= MAX_TOMBSTONES {
            return;
        }
        self.tombstones
            .insert(peer.to_owned(), (remote_session, now + TOMBSTONE_TTL));
    }

    /// Queues a `disconnect` to a peer we have no session with, within
    /// [`MAX_STRANGER_REPLIES_PER_SEC`].
    fn answer_stranger(&mut self, peer: &str, to: SocketAddr, now: Instant) {
        let (since, count) = &mut self.stranger_replies;
        if now.saturating_duration_since(*since) >= Duration::from_secs(1) {
            *since = now;
            *count = 0;
        }
        if *count >= MAX_STRANGER_REPLIES_PER_SEC {
            return;
        }
        *count += 1;
        match Datagram::disconnect(self.config.peer_id).encode() {
            Ok(bytes) => self.outbox.push((peer.to_owned(), to, bytes)),
            Err(err) => tracing::error!(%err, "cannot encode disconnect"),
        }
    }

    /// Sends priming probes with a low TTL (see [`PRIME_TTL`]), then puts
    /// the socket's TTL back.
    async fn send_primes(&self, primes: &[(SocketAddr, Vec<u8>)]) {
        let normal = self.transport.ttl().unwrap_or(64);
        if let Err(err) = self.transport.set_ttl(PRIME_TTL) {
            tracing::debug!(%err, "cannot lower the TTL; priming skipped");
            return;
        }
        for (to, bytes) in primes {
            if let Err(err) = self.transport.send_to(bytes, *to).await {
                tracing::debug!(%to, %err, "UDP send failed");
            }
        }
        if let Err(err) = self.transport.set_ttl(normal) {
            tracing::warn!(%err, "cannot restore the socket TTL");
        }
    }

    /// Our identity towards the relay (needs a token from the server).
    fn relay_credentials(&self) -> Option<Credentials> {
        Some(Credentials {
            peer_id: *self.config.peer_id.as_uuid(),
            token: self.signaling.token_bytes()?,
        })
    }

    /// Starts a relay binding with `peer` (no-op without a relay).
    async fn request_relay(&mut self, peer: &str) {
        let Some(relay) = self.relay.as_mut() else {
            tracing::info!(%peer, "no direct path yet and no relay available");
            return;
        };
        let now = Instant::now();
        if relay.is_ready(peer) {
            let addr = relay.server();
            if let Some(session) = self.sessions.get_mut(peer) {
                session.add_relay(addr, now);
            }
            return;
        }
        if relay.request(peer, now) {
            tracing::info!(%peer, "asking the server to relay");
        }
        self.poll_relay(now).await;
    }

    /// Sends the BINDs that are due.
    async fn poll_relay(&mut self, now: Instant) {
        let Some(creds) = self.relay_credentials() else {
            return;
        };
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let to = relay.server();
        for frame in relay.poll(now, creds) {
            if let Err(err) = self.transport.send_to(&frame, to).await {
                tracing::debug!(%to, %err, "relay send failed");
            }
        }
    }

    /// Frees the relay binding with `peer`, if any.
    async fn release_relay(&mut self, peer: &str) {
        let Some(creds) = self.relay_credentials() else {
            return;
        };
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let to = relay.server();
        if let Some(frame) = relay.release(peer, creds)
            && let Err(err) = self.transport.send_to(&frame, to).await
        {
            tracing::debug!(%to, %err, "relay release failed");
        }
    }

    /// A session's path went quiet: ask STUN whether our own public address
    /// changed (then register the new one), and ask for a new rendezvous so
    /// the peer probes us again.
    async fn refresh_path(&mut self, peer: &str) {
        let Some(server) = self.stun_server else {
            self.rendezvous_again(peer);
            return;
        };
        if let Some(refresh) = self.stun_refresh.as_mut() {
            if !refresh.peers.iter().any(|p| p == peer) {
                refresh.peers.push(peer.to_owned());
            }
            return;
        }
        let (tid, request) = stun::binding_request();
        if let Err(err) = self.transport.send_to(&request, server).await {
            tracing::debug!(%err, "STUN refresh send failed");
        }
        self.stun_refresh = Some(StunRefresh {
            tid,
            deadline: Instant::now() + STUN_REFRESH_TIMEOUT,
            peers: vec![peer.to_owned()],
        });
    }

    /// The STUN refresh ended (`answer` is `None` on timeout): register a
    /// changed address, then redo the rendezvous of the waiting peers.
    fn finish_stun_refresh(&mut self, answer: Option<SocketAddr>) {
        let Some(refresh) = self.stun_refresh.take() else {
            return;
        };
        let changed = answer.is_some() && answer != self.reflexive;
        if !changed {
            for peer in refresh.peers {
                self.rendezvous_again(&peer);
            }
            return;
        }
        tracing::info!(old = ?self.reflexive, new = ?answer, "our public address changed");
        self.reflexive = answer;
        let signaling = self.signaling.clone();
        let peers: Vec<PeerInfo> = refresh
            .peers
            .iter()
            .filter_map(|p| self.directory.get(p).cloned())
            .collect();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            if let Err(err) = signaling.set_reflexive(answer).await {
                tracing::warn!(%err, "could not register our new public address");
            }
            for peer in peers {
                let result = signaling
                    .request_connect(&peer.peer_id)
                    .await
                    .map_err(|e| e.to_string());
                let msg = Internal::Rendezvous {
                    target: peer,
                    result,
                    create: false,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }

    /// A fresh rendezvous with a peer we already have a session with.
    fn rendezvous_again(&self, peer: &str) {
        if !self.server_up {
            return;
        }
        if let Some(info) = self.directory.get(peer).cloned() {
            self.spawn_rendezvous(info, false);
        }
    }

    fn display_name(&self, id: &str) -> String {
        if let Some(peer) = self.directory.get(id)
            && !peer.username.is_empty()
        {
            return peer.username.clone();
        }
        if let Some(name) = self.sessions.get(id).and_then(Session::remote_username)
            && !name.is_empty()
        {
            return name.to_owned();
        }
        format!("{}...", id.chars().take(8).collect::<String>())
    }

    fn peer_list(&self) -> Vec<PeerSummary> {
        self.directory
            .values()
            .map(|p| PeerSummary {
                peer_id: p.peer_id.clone(),
                username: p.username.clone(),
                via: if p.via_rest { "rest" } else { "grpc" },
            })
            .collect()
    }

    fn error(&mut self, code: &'static str, message: &str) {
        self.emit(Event::Error {
            code,
            message: message.to_owned(),
        });
    }

    /// The one place the active conversation changes; front ends learn it
    /// from [`Event::Focus`].
    fn set_active(&mut self, peer: Option<String>) {
        if self.active != peer {
            self.active = peer.clone();
            self.emit(Event::Focus { peer_id: peer });
        }
    }

    /// Queues an event for the front end; never waits ([`MAX_QUEUED_EVENTS`]).
    fn emit(&mut self, event: Event) {
        if self.events.is_none() {
            return;
        }
        if matches!(event, Event::Rtt { .. }) && self.queue.len() >= MAX_QUEUED_EVENTS {
            return;
        }
        self.queue.push_back(event);
    }

    /// Moves queued events into the channel while it has room.
    fn forward_events(&mut self) {
        let Some(tx) = &self.events else {
            self.queue.clear();
            return;
        };
        while let Some(event) = self.queue.pop_front() {
            match tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.queue.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::debug!("front end gone; events dropped");
                    self.events = None;
                    self.queue.clear();
                    return;
                }
            }
        }
    }
}

/// Waits for room in the event channel; `None` when it is closed (or was
/// never there).
async fn reserve(tx: Option<&mpsc::Sender<Event>>) -> Option<mpsc::Permit<'_, Event>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// Why a connect target could not be resolved.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Nothing matches.
    #[error("no online peer matches '{0}'")]
    Unknown(String),
    /// More than one peer matches.
    #[error("'{input}' is ambiguous: it matches {matches}")]
    Ambiguous {
        /// What the user typed.
        input: String,
        /// The candidates, `username (id)`, comma separated.
        matches: String,
    },
    /// The user named themselves.
    #[error("that is you; pick another peer")]
    Myself,
}

impl ResolveError {
    fn code(&self) -> &'static str {
        match self {
            ResolveError::Unknown(_) => "unknown_peer",
            ResolveError::Ambiguous { .. } => "ambiguous_peer",
            ResolveError::Myself => "unknown_peer",
        }
    }
}

/// Finds the peer `input` names: a full id, a unique id prefix, or a unique
/// username (exact, then case-insensitive).
pub fn resolve<'a>(
    directory: &'a BTreeMap<String, PeerInfo>,
    me: &str,
    input: &str,
) -> Result<&'a PeerInfo, ResolveError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(ResolveError::Unknown(String::new()));
    }
    let lower = input.to_lowercase();
    if lower == me {
        return Err(ResolveError::Myself);
    }
    if let Some(peer) = directory.get(&lower) {
        return Ok(peer);
    }
    let by_prefix: Vec<&PeerInfo> = directory
        .values()
        .filter(|p| p.peer_id.starts_with(&lower))
        .collect();
    let by_name: Vec<&PeerInfo> = directory.values().filter(|p| p.username == input).collect();
    let by_name_ci: Vec<&PeerInfo> = directory
        .values()
        .filter(|p| p.username.to_lowercase() == lower)
        .collect();
    let mut all: Vec<&PeerInfo> = Vec::new();
    for list in [&by_prefix, &by_name] {
        for p in list.iter() {
            if !all.iter().any(|q| q.peer_id == p.peer_id) {
                all.push(p);
            }
        }
    }
    if all.is_empty() {
        all = by_name_ci;
    }
    match all.as_slice() {
        [] => Err(ResolveError::Unknown(input.to_owned())),
        [one] => Ok(one),
        many => Err(ResolveError::Ambiguous {
            input: input.to_owned(),
            matches: many
                .iter()
                .map(|p| format!("{} ({})", p.username, p.peer_id))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, name: &str) -> PeerInfo {
        PeerInfo {
            peer_id: id.into(),
            username: name.into(),
            endpoints: vec![],
            inbox_open: true,
            via_rest: false,
            local_endpoints: vec![],
        }
    }

    #[test]
    fn resolves_ids_prefixes_and_names() {
        let dir: BTreeMap<String, PeerInfo> = [
            peer("aaaa1111-0000-4000-8000-000000000001", "alice"),
            peer("aaaa2222-0000-4000-8000-000000000002", "bob"),
            peer("bbbb3333-0000-4000-8000-000000000003", "Carol"),
            peer("cccc4444-0000-4000-8000-000000000004", "bob"),
        ]
        .into_iter()
        .map(|p| (p.peer_id.clone(), p))
        .collect();
        let me = "ffff0000-0000-4000-8000-000000000000";
        let id = |r: Result<&PeerInfo, ResolveError>| r.map(|p| p.peer_id.clone());
        assert_eq!(
            id(resolve(&dir, me, "aaaa1111-0000-4000-8000-000000000001")).unwrap(),
            "aaaa1111-0000-4000-8000-000000000001"
        );
        assert_eq!(
            id(resolve(&dir, me, "AAAA1")).unwrap(),
            "aaaa1111-0000-4000-8000-000000000001"
        );
        assert_eq!(
            id(resolve(&dir, me, "alice")).unwrap(),
            "aaaa1111-0000-4000-8000-000000000001"
        );
        assert_eq!(
            id(resolve(&dir, me, "carol")).unwrap(),
            "bbbb3333-0000-4000-8000-000000000003"
        );
        assert_eq!(
            id(resolve(&dir, me, " b ")).unwrap(),
            "bbbb3333-0000-4000-8000-000000000003"
        );
        assert!(matches!(
            resolve(&dir, me, "aaaa"),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve(&dir, me, "bob"),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve(&dir, me, "zed"),
            Err(ResolveError::Unknown(_))
        ));
        assert!(matches!(
            resolve(&dir, me, ""),
            Err(ResolveError::Unknown(_))
        ));
        assert_eq!(resolve(&dir, me, me).unwrap_err(), ResolveError::Myself);
    }

    #[test]
    fn event_json_shape() {
        let event = Event::Connected {
            peer_id: "p".into(),
            username: "u".into(),
            addr: "127.0.0.1:1".into(),
            path: "lan",
            rtt_ms: Some(1.5),
            reliable: true,
            incoming: false,
            probe_rounds: 2,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"connected","peer_id":"p","username":"u","addr":"127.0.0.1:1","path":"lan","rtt_ms":1.5,"reliable":true,"incoming":false,"probe_rounds":2}"#
        );
        assert_eq!(
            serde_json::to_string(&Event::ServerRestored {}).unwrap(),
            r#"{"event":"server_restored"}"#
        );
    }
}
