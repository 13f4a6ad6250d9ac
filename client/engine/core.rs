//! The engine's decisions, without I/O: the session table (one rule for
//! new sessions, supersede, tombstones, answers to strangers), the focus,
//! the peer directory, relay bindings and STUN refreshes.
//!
//! [`Core`] takes inputs (a datagram, a request, a signaling event, a
//! rendezvous result, a timer) together with `now`, and leaves outputs:
//! datagrams to send and tasks to start ([`Core::take_outputs`]), and
//! events for the front end ([`Core::pop_event`]). The loop in
//! [`super::io`] does the sending, the timing and the tasks, so everything
//! here is tested with a fake clock (`tests.rs`).
//!
//! * [`report`]: session actions become sends and events; closed sessions
//!   are buried.
//! * [`paths`]: relay bindings, STUN refreshes, path classification.
//! * [`signals`]: what the signaling server says (peer list changes,
//!   connect requests) and rendezvous answers.

mod awaiting;
mod incoming;
pub mod paths;
mod report;
mod signals;
#[cfg(test)]
mod tests;
mod trust;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use p2pchat::datagram::{DatagramKind, classify};
use p2pchat::{PeerId, SessionToken};
use tokio::time::Instant;

use super::api::{Command, ErrorCode, Event, Request, RequestId};
use super::directory::Directory;
use super::focus::Focus;
use super::table::{
    MAX_HANDSHAKE_ANSWERS_PER_SEC, MAX_UNSOLICITED_PROBES_PER_SEC, ReplyBudget, Tombstones,
};
use crate::identity::{Identity, KnownPeers};
use crate::relay::RelayClient;
use crate::session::{Action, Phase, SendError, Session, SessionConfig};
use crate::signaling::RemotePeer;
use crate::wire::Datagram;
use incoming::PendingHandshake;
pub use incoming::{MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_PEER, PENDING_HANDSHAKE_TIMEOUT};
use paths::StunRefresh;

/// Most sessions at once: further hellos, connect requests and connects
/// are refused. Checked in one place, [`Core::may_open_session`].
pub const MAX_SESSIONS: usize = 32;

/// Events held for the front end while it does not read. Emitting never
/// waits, so keep-alives, pongs and acks go on whatever the front end
/// does. Once this many events wait, the engine stops taking in chat
/// lines: an incoming `message` datagram is dropped unacknowledged, so a
/// reliable sender retransmits it later (nothing vanishes; a seed-style
/// peer, which never retransmits, loses that line, logged as a warning),
/// and RTT updates are skipped (the next one supersedes them). Other events
/// (peers, sessions) are still queued: they come at the pace of the
/// network, not of a flood.
pub const MAX_QUEUED_EVENTS: usize = 8192;

/// Most connect requests held until the first peer list arrives (names
/// resolve only then); later ones are refused.
pub const MAX_DEFERRED_CONNECTS: usize = 16;

/// What the core starts in the background (the loop runs it and feeds the
/// answer back).
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Ask the server for a rendezvous with `target`.
    Rendezvous {
        /// The peer.
        target: RemotePeer,
        /// False for a repeat during a later attempt: the answer only adds
        /// endpoints to a session that still exists.
        create: bool,
        /// The connect request it serves, for errors.
        request: Option<RequestId>,
    },
    /// Register our new public address, then redo these rendezvous
    /// (`create: false`).
    Readdress {
        /// The STUN answer.
        reflexive: Option<SocketAddr>,
        /// Peers whose path went stale.
        peers: Vec<RemotePeer>,
    },
}

/// What a [`Task::Rendezvous`] brought back.
#[derive(Debug, Clone, PartialEq)]
pub struct RendezvousDone {
    /// The task's target.
    pub target: RemotePeer,
    /// The peer as the server knows it now, and whether it was notified;
    /// or why the request failed.
    pub result: Result<(RemotePeer, bool), String>,
    /// The task's `create`.
    pub create: bool,
    /// The task's `request`.
    pub request: Option<RequestId>,
}

/// Something for the loop to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a datagram.
    Send {
        /// Where.
        to: SocketAddr,
        /// What (already wrapped for the relay when it goes there).
        bytes: Vec<u8>,
    },
    /// Send a priming probe with a low TTL (`crate::session::PRIME_TTL`).
    Prime {
        /// Where.
        to: SocketAddr,
        /// What.
        bytes: Vec<u8>,
    },
    /// Start a background task.
    Task(Task),
}

/// Who we are and what the core starts with.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Our long-term key; our peer id is derived from it.
    pub identity: Arc<Identity>,
    /// Refuse seed-protocol (unencrypted) peers.
    pub require_encryption: bool,
    /// Trust-on-first-use pins.
    pub known_peers: KnownPeers,
    /// Our username as the server stored it.
    pub username: String,
    /// Session timings.
    pub session: SessionConfig,
    /// The relay's address, when the server offers one and it is wanted.
    pub relay: Option<SocketAddr>,
    /// Where STUN requests go.
    pub stun_server: Option<SocketAddr>,
    /// Our public address as STUN told us at start.
    pub reflexive: Option<SocketAddr>,
}

/// The sans-IO engine. See the module docs.
#[derive(Debug)]
pub struct Core {
    me: PeerId,
    identity: Arc<Identity>,
    require_encryption: bool,
    username: String,
    session_config: SessionConfig,
    sessions: HashMap<PeerId, Session>,
    /// Handshakes we answered, waiting for the initiator's proof.
    pending: Vec<PendingHandshake>,
    /// Trust-on-first-use pins.
    known_peers: KnownPeers,
    /// Sessions whose key was refused, closed after the report.
    refused: Vec<PeerId>,
    directory: Directory,
    focus: Focus,
    server_up: bool,
    /// Connect requests made before the first peer list arrived (true:
    /// one that waits for its peer to come online).
    deferred: Vec<(Option<RequestId>, String, bool)>,
    /// A start-up connect waiting for its peer to come online.
    awaited: Option<awaiting::Awaited>,
    tombstones: Tombstones,
    stranger_replies: ReplyBudget,
    handshake_answers: ReplyBudget,
    /// Probes to unanswered candidates of sessions peers asked for, over
    /// all of them ([`MAX_UNSOLICITED_PROBES_PER_SEC`]).
    unsolicited_probes: ReplyBudget,
    /// Actions of sessions replaced before `flush` could collect them.
    orphaned: Vec<(PeerId, Action)>,
    relay: Option<RelayClient>,
    /// Our session token, for relay frames (`None` until registered).
    relay_token: Option<SessionToken>,
    stun_server: Option<SocketAddr>,
    reflexive: Option<SocketAddr>,
    stun_refresh: Option<StunRefresh>,
    outputs: Vec<Output>,
    events: VecDeque<Event>,
    /// The front end went away: events are no longer kept.
    front_end_gone: bool,
}

impl Core {
    /// A core with no sessions and an empty directory.
    pub fn new(config: CoreConfig, now: Instant) -> Core {
        let me = config.identity.peer_id();
        Core {
            me,
            identity: config.identity,
            require_encryption: config.require_encryption,
            username: config.username,
            session_config: config.session,
            sessions: HashMap::new(),
            pending: Vec::new(),
            known_peers: config.known_peers,
            refused: Vec::new(),
            directory: Directory::new(me),
            focus: Focus::default(),
            server_up: true,
            deferred: Vec::new(),
            awaited: None,
            tombstones: Tombstones::default(),
            stranger_replies: ReplyBudget::new(now),
            handshake_answers: ReplyBudget::per_second(MAX_HANDSHAKE_ANSWERS_PER_SEC, now),
            unsolicited_probes: ReplyBudget::per_second(MAX_UNSOLICITED_PROBES_PER_SEC, now),
            orphaned: Vec::new(),
            relay: config.relay.map(RelayClient::new),
            relay_token: None,
            stun_server: config.stun_server,
            reflexive: config.reflexive,
            stun_refresh: None,
            outputs: Vec::new(),
            events: VecDeque::new(),
            front_end_gone: false,
        }
    }

    /// What the loop must do now (sends, tasks), in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// The oldest event for the front end.
    pub fn pop_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether events wait for the front end.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The front end went away: drop what waits and keep nothing more.
    pub fn front_end_gone(&mut self) {
        self.front_end_gone = true;
        self.events.clear();
    }

    /// Our session token changed (registration): relay frames carry it.
    pub fn set_token(&mut self, token: Option<SessionToken>) {
        self.relay_token = token;
    }

    /// The earliest timer of any session, the relay or a STUN refresh.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(Session::next_deadline)
            .chain(self.relay.as_ref().and_then(RelayClient::next_deadline))
            .chain(self.stun_refresh.as_ref().map(|r| r.deadline))
            .chain(self.awaited_deadline())
            .min()
    }

    /// Timers that are due.
    pub fn on_timer(&mut self, now: Instant) {
        for session in self.sessions.values_mut() {
            session.poll_timers(now);
        }
        self.expire_pending(now);
        self.retry_awaited(false, now);
        self.poll_relay(now);
        if self
            .stun_refresh
            .as_ref()
            .is_some_and(|r| now >= r.deadline)
        {
            self.finish_stun_refresh(None);
        }
        self.flush(now);
    }

    /// Closes every session (on quit).
    pub fn shutdown(&mut self, now: Instant) {
        for session in self.sessions.values_mut() {
            session.close();
        }
        self.flush(now);
    }

    /// A datagram on the chat socket: relay frame, STUN answer or chat.
    pub fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        match classify(bytes) {
            DatagramKind::Relay if self.relay.as_ref().is_some_and(|r| r.server() == from) => {
                self.on_relay_frame(bytes, from, now);
            }
            DatagramKind::Stun => self.on_stun(bytes, from),
            DatagramKind::Sealed => self.on_sealed(bytes, from, now),
            _ => match Datagram::decode(bytes) {
                Ok(dg) => self.on_chat(&dg, from, now),
                Err(err) => tracing::debug!(%from, %err, "dropping datagram"),
            },
        }
        self.flush(now);
    }

    /// A request from the front end (`Quit` is the loop's business).
    pub fn on_request(&mut self, request: Request, now: Instant) {
        let id = request.id;
        match request.command {
            Command::Connect(target) => self.connect_or_defer(id, target, false, now),
            Command::ConnectWhenOnline(target) => self.connect_or_defer(id, target, true, now),
            Command::Send(text) => self.send_line(id, &text, now),
            Command::Peers => {
                let peers = self.directory.list();
                self.emit(Event::Peers { id, peers });
            }
            Command::Status => {
                let event = self.status(id);
                self.emit(event);
            }
            Command::Leave => {
                if let Some(peer) = self.focus.leave() {
                    self.emit(Event::Focus { peer_id: None });
                    if let Some(session) = self.sessions.get_mut(&peer) {
                        session.close();
                    }
                }
            }
            Command::Trust(name) => self.trust(id, &name),
            Command::Quit => {}
        }
        self.flush(now);
    }

    fn send_line(&mut self, id: Option<RequestId>, text: &str, now: Instant) {
        let session = self
            .focus
            .active()
            .and_then(|peer| Some(peer).zip(self.sessions.get_mut(&peer)));
        let Some((peer, session)) = session else {
            self.emit(Event::Error {
                id,
                code: ErrorCode::NotConnected,
                message: "not connected to a peer".into(),
            });
            return;
        };
        let event = match session.send_line(text, now) {
            Ok(line) => Event::Sent {
                id,
                to: peer,
                line,
                reliable: session.reliable(),
            },
            Err(err) => Event::Error {
                id,
                code: match err {
                    SendError::NotConnected => ErrorCode::NotConnected,
                    _ => ErrorCode::SendFailed,
                },
                message: err.to_string(),
            },
        };
        self.emit(event);
    }

    /// Resolves `target` and starts the rendezvous.
    fn connect(&mut self, id: Option<RequestId>, target: &str) {
        let peer = match self.resolve_target(target) {
            Ok(peer) => peer,
            Err(err) => {
                self.emit(Event::Error {
                    id,
                    code: err.code(),
                    message: err.to_string(),
                });
                return;
            }
        };
        self.focus.asked(peer.peer_id);
        if let Some(session) = self.sessions.get(&peer.peer_id) {
            if session.phase() == Phase::Connected {
                if let Some(event) = self.connected_event(peer.peer_id) {
                    self.emit(event);
                }
                if let Some(change) = self.focus.chose(peer.peer_id) {
                    self.emit(Event::Focus { peer_id: change });
                }
            }
            return;
        }
        if !self.may_open_session() {
            self.session_limit(id, peer.peer_id);
            return;
        }
        self.outputs.push(Output::Task(Task::Rendezvous {
            target: peer,
            create: true,
            request: id,
        }));
    }

    fn session_limit(&mut self, id: Option<RequestId>, peer: PeerId) {
        let message = format!(
            "cannot connect to {}: already in {MAX_SESSIONS} sessions, the most at once",
            self.display_name(peer)
        );
        self.emit(Event::Error {
            id,
            code: ErrorCode::SessionLimit,
            message,
        });
    }

    /// The best name for a peer: the server's, the one its hello gave, or
    /// its short id.
    fn display_name(&self, id: PeerId) -> String {
        if let Some(name) = self.directory.username(id) {
            return name.to_owned();
        }
        if let Some(name) = self.sessions.get(&id).and_then(Session::remote_username)
            && !name.is_empty()
        {
            return name.to_owned();
        }
        format!("{}...", id.short())
    }

    /// Queues an event for the front end; never waits ([`MAX_QUEUED_EVENTS`]).
    fn emit(&mut self, event: Event) {
        if self.front_end_gone {
            return;
        }
        if matches!(event, Event::Rtt { .. }) && self.events.len() >= MAX_QUEUED_EVENTS {
            return;
        }
        self.events.push_back(event);
    }
}
