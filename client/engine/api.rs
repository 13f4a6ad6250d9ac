//! The front-end API: the [`Command`]s a front end sends (wrapped in a
//! [`Request`] that may carry an id) and the [`Event`]s it renders.
//!
//! [`Event`] is also the `--json` output format: one object per event,
//! tagged by `"event"`. Its typed fields serialize to the same snake_case
//! words the format always used, and an echoed request id is left out when
//! the request had none, so the stream stays the same for scripts.

use std::fmt;

use p2pchat::PeerId;
use serde::Serialize;

use crate::session::{CloseReason, PathKind};

/// Chosen by the front end to pair answers with what it asked; the engine
/// only echoes it.
pub type RequestId = u64;

/// What the user asks the engine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Connect to a peer given by full id, unique id prefix or unique
    /// username; it becomes the active peer.
    Connect(String),
    /// [`Command::Connect`], but a peer not online yet is waited for (with
    /// an `info` saying so), up to the connect-attempt limit, one attempt
    /// duration apart: `--connect` at start, when the peer may register a
    /// moment later.
    ConnectWhenOnline(String),
    /// Send a line to the active peer.
    Send(String),
    /// Report the current peer list (an [`Event::Peers`]).
    Peers,
    /// End the session with the active peer.
    Leave,
    /// Report server and session state (an [`Event::Status`]).
    Status,
    /// Accept a peer's new key: forget the key pinned for this username
    /// (the next connect pins the one it presents).
    Trust(String),
    /// Disconnect everyone, unregister and stop.
    Quit,
}

impl Command {
    /// This command with an id its answers echo.
    pub fn with_id(self, id: RequestId) -> Request {
        Request {
            id: Some(id),
            command: self,
        }
    }
}

/// A command as the engine receives it. The answers to it (`sent`,
/// `error`, `peers`, `status`) carry its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Echoed by the answering events; `None`: nothing to echo.
    pub id: Option<RequestId>,
    /// What to do.
    pub command: Command,
}

impl From<Command> for Request {
    fn from(command: Command) -> Request {
        Request { id: None, command }
    }
}

/// Declares a field enum that serializes as snake_case words and shows as
/// the same word.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The word used in `--json` and on screen.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// How chat reaches a peer.
    Path {
        /// A private, link-local or loopback address, or one of the peer's
        /// own interface addresses: same LAN or host.
        Lan => "lan",
        /// A public address, hole punched.
        Direct => "direct",
        /// Through the signaling server's relay.
        Relayed => "relayed",
    }
}

impl From<PathKind> for Path {
    fn from(kind: PathKind) -> Path {
        match kind {
            PathKind::Lan => Path::Lan,
            PathKind::Direct => Path::Direct,
            PathKind::Relayed => Path::Relayed,
        }
    }
}

words! {
    /// Where a session stands.
    SessionState {
        /// Sending hellos, no answer yet.
        Probing => "probing",
        /// Up.
        Connected => "connected",
        /// Ended (only seen for a moment).
        Closed => "closed",
    }
}

words! {
    /// Why a session ended.
    DisconnectReason {
        /// We closed it (`/leave`, `/quit`).
        Local => "local",
        /// The peer sent `disconnect`.
        RemoteDisconnect => "remote_disconnect",
        /// No answer to keep-alives.
        Timeout => "timeout",
        /// The signaling server reported the peer offline.
        Left => "left",
        /// Every connect attempt went unanswered.
        Unreachable => "unreachable",
        /// The peer started a new session; `connected` follows.
        Reset => "reset",
        /// The handshake failed, or the peer's key was refused (e.g. it
        /// changed since we pinned it).
        HandshakeFailed => "handshake_failed",
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(reason: CloseReason) -> DisconnectReason {
        match reason {
            CloseReason::Local => DisconnectReason::Local,
            CloseReason::RemoteDisconnect => DisconnectReason::RemoteDisconnect,
            CloseReason::Timeout => DisconnectReason::Timeout,
            CloseReason::Left => DisconnectReason::Left,
            CloseReason::Unreachable => DisconnectReason::Unreachable,
            CloseReason::Reset => DisconnectReason::Reset,
            CloseReason::HandshakeFailed => DisconnectReason::HandshakeFailed,
        }
    }
}

words! {
    /// What went wrong, for machines.
    ErrorCode {
        /// Nobody online matches the connect target (or it is us).
        UnknownPeer => "unknown_peer",
        /// Several peers match the connect target.
        AmbiguousPeer => "ambiguous_peer",
        /// A line was typed with no session up.
        NotConnected => "not_connected",
        /// The peer could not be reached.
        Unreachable => "unreachable",
        /// The session refused the line (e.g. too long, window full).
        SendFailed => "send_failed",
        /// The front end could not parse the input.
        InvalidCommand => "invalid_command",
        /// Already in `MAX_SESSIONS` sessions.
        SessionLimit => "session_limit",
        /// We refuse to talk to the peer: its key is wrong or changed, or
        /// it does not encrypt and `--require-encryption` is set.
        Refused => "refused",
    }
}

words! {
    /// How a peer registered.
    Via {
        /// Over gRPC (this client).
        Grpc => "grpc",
        /// Over the REST shim (a seed-style peer).
        Rest => "rest",
    }
}

/// One entry of the peer list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSummary {
    /// Full peer id.
    pub peer_id: PeerId,
    /// Username (raw).
    pub username: String,
    /// How it registered.
    pub via: Via,
}

/// One session in an [`Event::Status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionStatus {
    /// The peer.
    pub peer_id: PeerId,
    /// Its username.
    pub username: String,
    /// Probing or connected.
    pub state: SessionState,
    /// Whether typed lines go to this peer.
    pub active: bool,
    /// The address chat flows to, once connected.
    pub addr: Option<String>,
    /// The path, once connected.
    pub path: Option<Path>,
    /// Smoothed RTT in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
    /// Whether acks/retransmission are in use.
    pub reliable: bool,
    /// Lines sent and not yet acknowledged.
    pub pending: usize,
    /// Whether the session is end-to-end encrypted.
    pub encrypted: bool,
    /// The safety number of both keys, once the handshake proved the
    /// peer's key.
    pub safety_number: Option<String>,
}

/// Everything a front end shows. Serialized as one JSON object per event
/// for `--json`, tagged by `"event"`. Text fields are raw network input:
/// sanitize before printing to a terminal (see `crate::text`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Registered with the server; our identity.
    Registered {
        /// Our full peer id.
        peer_id: PeerId,
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
        /// The `/peers` request answered, if it had an id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// Everyone online except us.
        peers: Vec<PeerSummary>,
    },
    /// A peer came online.
    PeerJoined {
        /// Its id.
        peer_id: PeerId,
        /// Its username.
        username: String,
    },
    /// A peer went offline.
    PeerLeft {
        /// Its id.
        peer_id: PeerId,
        /// Its username.
        username: String,
    },
    /// Probing a peer (one event per attempt).
    Connecting {
        /// The peer.
        peer_id: PeerId,
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
        peer_id: PeerId,
        /// Its username.
        username: String,
        /// The address chat flows to (the relay's, when relayed).
        addr: String,
        /// The path.
        path: Path,
        /// Handshake round trip in milliseconds, when measured.
        rtt_ms: Option<f64>,
        /// Whether acks/retransmission are in use (false for a seed peer).
        reliable: bool,
        /// True when the other side started it (rendezvous or hello), false
        /// when we asked to connect.
        incoming: bool,
        /// Hello rounds we sent before it came up.
        probe_rounds: u32,
        /// Whether the session is end-to-end encrypted (false: a seed
        /// peer's plaintext; mark every line of it unencrypted).
        encrypted: bool,
        /// The 60-digit safety number of both keys (compare it with the
        /// peer's out of band), for an encrypted session.
        safety_number: Option<String>,
    },
    /// A session moved to another path (e.g. relayed -> direct); nothing
    /// is lost or repeated.
    PathChanged {
        /// The peer.
        peer_id: PeerId,
        /// The new address chat flows to.
        addr: String,
        /// The new path.
        path: Path,
    },
    /// A chat line arrived.
    Message {
        /// Sender's peer id.
        from: PeerId,
        /// Sender's username.
        username: String,
        /// The line.
        text: String,
        /// When the sender sent it: its `timestamp`, Unix seconds by the
        /// sender's clock.
        sent_at: f64,
        /// Whether it came end-to-end encrypted (false: a seed peer's
        /// plaintext, which anyone on the path can read or forge).
        encrypted: bool,
    },
    /// A line of ours went out (not yet acknowledged).
    Sent {
        /// The send request, if it had an id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// The peer.
        to: PeerId,
        /// Line id, used by `delivered` / `undeliverable`.
        line: u64,
        /// Whether a `delivered` event will follow.
        reliable: bool,
    },
    /// The peer acknowledged a line.
    Delivered {
        /// The peer.
        to: PeerId,
        /// The line id from `sent`.
        line: u64,
    },
    /// A line could not be delivered (the session ended first).
    Undeliverable {
        /// The peer.
        to: PeerId,
        /// The line id from `sent`.
        line: u64,
    },
    /// A keep-alive round trip completed.
    Rtt {
        /// The peer.
        peer_id: PeerId,
        /// Smoothed RTT in milliseconds.
        rtt_ms: f64,
    },
    /// A session ended.
    Disconnected {
        /// The peer.
        peer_id: PeerId,
        /// Its username.
        username: String,
        /// Why.
        reason: DisconnectReason,
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
        /// The `/status` request answered, if it had an id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// Whether we are registered with the server right now.
        server_connected: bool,
        /// Every session, connected or still probing.
        sessions: Vec<SessionStatus>,
    },
    /// The conversation typed lines go to changed. The engine alone decides
    /// it; front ends show it. Not part of the `--json` output (a script
    /// knows whom it talks to from `connected`).
    Focus {
        /// The active peer, `None` when there is none.
        peer_id: Option<PeerId>,
    },
    /// A notice for the user (e.g. the `/help` text).
    Info {
        /// The text.
        message: String,
    },
    /// Something the user should know went wrong.
    Error {
        /// The request that failed, if it had an id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        /// Machine-readable.
        code: ErrorCode,
        /// Human-readable, without front-end syntax (no command names).
        message: String,
    },
}

impl Event {
    /// A `peers` event that answers nothing in particular.
    pub fn peers(peers: Vec<PeerSummary>) -> Event {
        Event::Peers { id: None, peers }
    }

    /// An error that answers nothing in particular.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Event {
        Event::Error {
            id: None,
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_shape() {
        let peer = PeerId::parse("aaaa1111-0000-4000-8000-000000000001").unwrap();
        let event = Event::Connected {
            peer_id: peer,
            username: "u".into(),
            addr: "127.0.0.1:1".into(),
            path: Path::Lan,
            rtt_ms: Some(1.5),
            reliable: true,
            incoming: false,
            probe_rounds: 2,
            encrypted: true,
            safety_number: None,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"connected","peer_id":"aaaa1111-0000-4000-8000-000000000001","username":"u","addr":"127.0.0.1:1","path":"lan","rtt_ms":1.5,"reliable":true,"incoming":false,"probe_rounds":2,"encrypted":true,"safety_number":null}"#
        );
        assert_eq!(
            serde_json::to_string(&Event::ServerRestored {}).unwrap(),
            r#"{"event":"server_restored"}"#
        );
    }

    #[test]
    fn request_ids_are_echoed_only_when_given() {
        let peer = PeerId::parse("aaaa1111-0000-4000-8000-000000000001").unwrap();
        let sent = |id| Event::Sent {
            id,
            to: peer,
            line: 3,
            reliable: true,
        };
        assert_eq!(
            serde_json::to_string(&sent(None)).unwrap(),
            r#"{"event":"sent","to":"aaaa1111-0000-4000-8000-000000000001","line":3,"reliable":true}"#
        );
        assert_eq!(
            serde_json::to_string(&sent(Some(7))).unwrap(),
            r#"{"event":"sent","id":7,"to":"aaaa1111-0000-4000-8000-000000000001","line":3,"reliable":true}"#
        );
        let error = Event::error(ErrorCode::SessionLimit, "full");
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"event":"error","code":"session_limit","message":"full"}"#
        );
        let reason = DisconnectReason::from(CloseReason::RemoteDisconnect);
        assert_eq!(
            serde_json::to_string(&reason).unwrap(),
            r#""remote_disconnect""#
        );
        assert_eq!(reason.to_string(), "remote_disconnect");
        assert_eq!(serde_json::to_string(&Via::Rest).unwrap(), r#""rest""#);
        assert_eq!(
            serde_json::to_string(&SessionState::Probing).unwrap(),
            r#""probing""#
        );
    }
}
