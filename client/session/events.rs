//! What a session tells its caller: the actions it wants carried out and
//! the events the user should learn about.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use super::{MAX_LINE_BYTES, PathKind};

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// We closed it (`/quit`, a new connection, shutdown).
    Local,
    /// The remote peer sent `disconnect`.
    RemoteDisconnect,
    /// Nothing heard from the peer for `missed_pong_limit` keep-alive intervals.
    Timeout,
    /// The signaling server reported the peer LEFT.
    Left,
    /// Every connect attempt went unanswered.
    Unreachable,
    /// The peer started a new session with us (a hello with a new session
    /// id), e.g. after it lost ours; a fresh session replaces this one.
    Reset,
    /// The Noise handshake could not complete with the peer's key.
    HandshakeFailed,
}

impl CloseReason {
    /// Name used in events and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Local => "local",
            CloseReason::RemoteDisconnect => "remote_disconnect",
            CloseReason::Timeout => "timeout",
            CloseReason::Left => "left",
            CloseReason::Unreachable => "unreachable",
            CloseReason::Reset => "reset",
            CloseReason::HandshakeFailed => "handshake_failed",
        }
    }
}

/// Something the user should learn about this session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A connect attempt (1-based) started probing.
    Probing {
        /// Which attempt.
        attempt: u32,
    },
    /// Hello/pong went both ways; chat can flow.
    Connected {
        /// The remote address that answered.
        addr: SocketAddr,
        /// What kind of path that is.
        path: PathKind,
        /// Whether acks and retransmission are in use (both sides announced
        /// [`crate::wire::Extension::Reliable`]).
        reliable: bool,
        /// Round trip of the probe that connected us, when we probed.
        rtt: Option<Duration>,
        /// Whether the session is end-to-end encrypted (false: a seed peer's
        /// plaintext).
        encrypted: bool,
    },
    /// A chat line arrived (raw text: sanitize before showing it).
    Message {
        /// The text, fragments reassembled.
        text: String,
        /// The sender's `timestamp` (Unix seconds, the sender's clock; of
        /// the first fragment for a long line).
        sent_at: f64,
    },
    /// Every fragment of line `line` was acknowledged.
    Delivered {
        /// The id [`super::Session::send_line`] returned.
        line: u64,
    },
    /// Line `line` will not be delivered (the session ended first).
    Undeliverable {
        /// The id [`super::Session::send_line`] returned.
        line: u64,
    },
    /// A keep-alive round trip completed; carries the smoothed RTT.
    Rtt {
        /// The smoothed RTT.
        rtt: Duration,
    },
    /// Probing found no direct path within `relay_after`: the engine should
    /// set up a relay and hand it over with [`super::Session::add_relay`].
    NeedRelay,
    /// The current path went quiet (a keep-alive went unanswered): the
    /// engine should refresh our public address and ask for a new
    /// rendezvous; meanwhile every candidate is probed again.
    Stale,
    /// The session moved to another path (a better one answered, or the old
    /// one died); nothing sent is lost, in-flight messages follow.
    PathChanged {
        /// The new address.
        addr: SocketAddr,
        /// Its kind.
        path: PathKind,
    },
    /// The session is over; it produces no more actions.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// An output of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this datagram.
    Send {
        /// Where to.
        to: SocketAddr,
        /// Encoded datagram, at most `MAX_SEND_DATAGRAM_BYTES`.
        bytes: Vec<u8>,
    },
    /// Send this datagram with IP TTL [`super::PRIME_TTL`] (a priming probe).
    Prime {
        /// Where to.
        to: SocketAddr,
        /// Encoded datagram.
        bytes: Vec<u8>,
    },
    /// Tell the user.
    Event(SessionEvent),
}

/// Why a line could not be queued.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SendError {
    /// The session is still probing or already closed.
    #[error("not connected")]
    NotConnected,
    /// The line is longer than [`MAX_LINE_BYTES`].
    #[error("message of {0} bytes is longer than the {MAX_LINE_BYTES}-byte limit")]
    TooLong(usize),
    /// More than [`super::MAX_QUEUED_FRAGMENTS`] fragments are waiting.
    #[error("too many unacknowledged messages; wait for the peer to catch up")]
    QueueFull,
}
