//! One chat session with one remote peer, as a pure state machine.
//!
//! A [`Session`] is driven by three kinds of input: a datagram arrived
//! ([`Session::handle_datagram`]), time passed ([`Session::poll_timers`]) and
//! the user did something ([`Session::send_line`], [`Session::close`]). It
//! never touches a socket or a clock: every input carries `now`, and the
//! results are [`Action`]s (send these bytes there, tell the user this) that
//! the caller collects with [`Session::take_actions`]. This keeps hole
//! punching, keep-alive, retransmission and reassembly deterministic and
//! testable without a network, and lets every front end share one engine.
//!
//! The session composes layers, each a sans-IO state machine of its own:
//! * `path.rs`: candidates, probing, validated paths, upgrade and recovery;
//! * `liveness.rs`: keep-alive, missed answers, the RTT estimator;
//! * `reliable.rs`: numbered streams (chat is [`StreamId::CHAT`]) with the
//!   send window, retransmission, reordering and acks;
//! * `fragment.rs`: splitting lines to fit datagrams and reassembling them;
//! * `channel.rs`: the seam where typed datagrams become bytes
//!   ([`Plaintext`] today; an encryption layer slots in here).
//!
//! This file holds the session's public face; `open.rs` starts outgoing
//! sessions (capped ones for connect requests), `receive.rs` dispatches
//! incoming datagrams by kind, `timers.rs` runs the schedules and
//! `chat.rs` carries chat lines over the chat stream.

mod channel;
mod chat;
mod events;
mod fragment;
mod liveness;
mod open;
mod path;
mod receive;
mod reliable;
mod secure;
mod timers;

use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::time::Instant;

use crate::wire::{Datagram, Extension, Negotiated};

pub use channel::{Channel, ChannelError, MAX_SEALED_PLAINTEXT_BYTES, Plaintext, SealedChannel};
pub use events::{Action, CloseReason, SendError, SessionEvent};
pub use fragment::{
    MAX_FRAGMENT_BODY_BYTES, MAX_FRAGMENTS_PER_LINE, MAX_LINE_BYTES, split_for_datagrams,
};
pub use liveness::{INITIAL_RTO, MAX_RTO, MIN_RTO, RttEstimator};
pub use path::{
    MAX_CANDIDATES, MAX_PROBES_PER_CANDIDATE, MAX_UNSOLICITED_CANDIDATES, MAX_VALIDATED_PATHS,
    PathKind, UPGRADE_PROBE_MAX, UPGRADE_PROBE_MIN,
};
pub use reliable::{MAX_BACKOFF_DOUBLINGS, MAX_QUEUED_FRAGMENTS, StreamId, WINDOW};
pub use secure::{Protection, Role, SecurityInfo};

use fragment::{Outstanding, Reassembler};
use liveness::Liveness;
use path::Path;
use reliable::{RecvStream, SendStream};
use secure::Security;

/// IP TTL of "priming" probes. Linux NAT (conntrack) gives an outgoing
/// packet a new public port when an unanswered packet *from* its
/// destination arrived first, which breaks hole punching whenever one
/// peer's probe reaches the other's NAT before that NAT saw the other
/// peer's own outgoing probe. So the first probe round goes out with a TTL
/// that passes our own NAT (one or two hops away) but expires before the
/// far one: it opens our mapping without touching theirs, and the full
/// probes that follow find mappings open on both sides.
pub const PRIME_TTL: u32 = 2;

/// Largest probe hello of a session a peer asked for (plain JSON, no
/// handshake: the caller sends the first message). Ours is about 190 bytes
/// with a five-letter name; with a name too long for the cap the probes go
/// without it.
pub const MAX_PROBE_HELLO_BYTES: usize = 240;

/// Timings and limits of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Keep-alive ping interval (the seed's 15 s).
    pub keepalive_interval: Duration,
    /// The peer is declared offline after this many keep-alive intervals in
    /// a row without hearing anything from it.
    pub missed_pong_limit: u32,
    /// Pause between two rounds of hello probes.
    pub probe_interval: Duration,
    /// How long one connect attempt probes before the next one starts.
    pub attempt_duration: Duration,
    /// Connect attempts before giving up ("could not reach peer").
    pub connect_attempts: u32,
    /// Probing this long without an answer asks for a relay
    /// ([`SessionEvent::NeedRelay`]).
    pub relay_after: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            keepalive_interval: Duration::from_secs(15),
            missed_pong_limit: 3,
            probe_interval: Duration::from_millis(150),
            attempt_duration: Duration::from_secs(2),
            connect_attempts: 3,
            relay_after: Duration::from_secs(3),
        }
    }
}

/// The lifecycle of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sending hello probes, waiting for an answer.
    Probing,
    /// Chatting.
    Connected,
    /// Ended.
    Closed,
}

/// One session with one remote peer. See the module docs.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    local_id: PeerId,
    local_name: String,
    remote_id: PeerId,
    phase: Phase,
    path: Path,
    liveness: Liveness,
    /// What the remote speaks.
    negotiated: Negotiated,
    remote_username: Option<String>,
    /// Random id of this session object, announced in hello, ping and pong.
    local_session: u64,
    /// The remote's session id, once announced.
    remote_session: Option<u64>,
    /// Id of the next chat line [`Session::send_line`] queues.
    next_line: u64,
    /// Sent lines with unacknowledged fragments.
    lines: Outstanding,
    /// The chat stream, both directions.
    send: SendStream,
    recv: RecvStream,
    reassembly: Reassembler,
    /// Typed datagrams to bytes (and back).
    channel: Box<dyn Channel>,
    /// Plaintext (seed) or Noise, and the handshake's progress.
    security: Security,
    /// The `now` of the latest input (the channel's rekey clock).
    clock: Instant,
    actions: Vec<Action>,
}

impl Session {
    fn blank(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        remote_id: PeerId,
        candidates: Vec<SocketAddr>,
        protection: Protection,
        now: Instant,
    ) -> Session {
        Session {
            local_id,
            local_name: local_name.to_owned(),
            remote_id,
            phase: Phase::Probing,
            path: Path::new(&config, candidates, now),
            liveness: Liveness::new(config.keepalive_interval, config.missed_pong_limit, now),
            negotiated: Negotiated::default(),
            remote_username: None,
            local_session: random_u64(),
            remote_session: None,
            next_line: 1,
            lines: Outstanding::default(),
            send: SendStream::new(StreamId::CHAT),
            recv: RecvStream::new(StreamId::CHAT),
            reassembly: Reassembler::default(),
            channel: Box::new(Plaintext),
            security: Security::new(protection),
            clock: now,
            actions: Vec::new(),
            config,
        }
    }

    /// Accepts a session opened by a remote `hello` that arrived from `addr`
    /// (no rendezvous needed). A plaintext session answers it and is
    /// connected; a Noise session answers its handshake and connects once
    /// the initiator proves it holds the keys.
    pub fn accept(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        hello: &Datagram,
        addr: SocketAddr,
        protection: Protection,
        now: Instant,
    ) -> Session {
        let mut s = Session::blank(
            config,
            local_id,
            local_name,
            hello.from(),
            vec![addr],
            protection,
            now,
        );
        s.handle_datagram(hello, addr, now);
        s
    }

    /// Whether `hello` comes from a new session of our peer (its session id
    /// differs from the one it announced before). The caller then calls
    /// [`Session::reset`] and accepts the hello as a fresh session: carrying
    /// on would treat the new session's message ids as duplicates.
    ///
    /// Only a hello from the session's own address counts: anyone can claim
    /// a peer id, and a stranger elsewhere must not be able to end a session.
    pub fn is_superseded_by(&self, hello: &Datagram, addr: SocketAddr) -> bool {
        !self.is_encrypted()
            && matches!(hello, Datagram::Hello(_))
            && hello.from() == self.remote_id
            && self.path.addr() == Some(addr)
            && matches!((self.remote_session, hello.session_id()), (Some(old), Some(new)) if old != new)
    }

    /// Ends this session because the peer started a new one.
    pub fn reset(&mut self) {
        self.finish(CloseReason::Reset);
    }

    /// Adds probe targets (e.g. endpoints from a later rendezvous).
    pub fn add_candidates(&mut self, candidates: impl IntoIterator<Item = SocketAddr>) {
        self.path.add_candidates(candidates);
    }

    /// The engine set up a relay for this session at `relay` (the server's
    /// relay address; the engine wraps and unwraps the frames). It becomes
    /// a candidate like any other, ranked last; probing gets a fresh
    /// attempt window so the relay has time to answer.
    pub fn add_relay(&mut self, relay: SocketAddr, now: Instant) {
        self.clock = now;
        self.path.add_relay(relay, now);
    }

    /// The relay went away (refused or released): stop using it as a
    /// candidate. A session currently relayed keeps trying it until its
    /// keep-alive notices, which then recovers over any other path.
    pub fn drop_relay(&mut self) {
        self.path.drop_relay();
    }

    /// The peer asked for a new rendezvous while we are connected (its path
    /// went stale, e.g. its NAT mapping changed): probe every candidate for
    /// one attempt window so both NATs open towards the new addresses.
    pub fn reprobe(&mut self, now: Instant) {
        self.clock = now;
        self.path.new_rendezvous();
        if self.phase == Phase::Connected {
            self.path.recover(now, self.config.attempt_duration);
            self.poll_timers(now);
        }
    }

    /// Ends the session from our side: tells the peer, reports pending lines
    /// as undeliverable.
    pub fn close(&mut self) {
        self.end(CloseReason::Local);
    }

    /// Ends the session because we refuse the peer's key (it differs from
    /// the one pinned for its name).
    pub fn refuse(&mut self) {
        self.end(CloseReason::HandshakeFailed);
    }

    fn end(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        let targets: Vec<SocketAddr> = match self.path.addr() {
            Some(addr) => vec![addr],
            None => self.path.candidates().to_vec(),
        };
        for addr in targets {
            self.send(&Datagram::disconnect(self.local_id), addr);
        }
        self.finish(reason);
    }

    /// The signaling server reported the peer LEFT: it is gone for good.
    pub fn peer_left(&mut self) {
        self.finish(CloseReason::Left);
    }

    /// A sealed datagram for this session from `addr` (the engine routes
    /// them by [`Session::local_index`]). Only what authenticates with the
    /// session's keys gets past the channel; then it counts as a trusted
    /// datagram of this peer on whatever path it came.
    pub fn handle_bytes(&mut self, bytes: &[u8], addr: SocketAddr, now: Instant) {
        self.clock = now;
        if self.phase == Phase::Closed || !self.is_encrypted() {
            return;
        }
        match self.channel.open(bytes, now) {
            Ok(dg) if dg.from() == self.remote_id => {
                self.authenticated();
                self.process(&dg, addr, now, true);
            }
            Ok(dg) => {
                tracing::debug!(%addr, from = %dg.from(), "sealed datagram names another sender")
            }
            Err(err) => tracing::debug!(%addr, %err, "dropping sealed datagram"),
        }
    }

    /// The kind of path `addr` is for this session.
    pub fn path_of(&self, addr: SocketAddr) -> PathKind {
        self.path.kind_of(addr)
    }

    /// The remote peer's id.
    pub fn remote_id(&self) -> PeerId {
        self.remote_id
    }

    /// The session id the remote announced, if any.
    pub fn remote_session_id(&self) -> Option<u64> {
        self.remote_session
    }

    /// The username the remote announced in its hello, if any (raw).
    pub fn remote_username(&self) -> Option<&str> {
        self.remote_username.as_deref()
    }

    /// Where the session is in its lifecycle.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The address chat flows to, once connected.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.path.addr()
    }

    /// The addresses probed while connecting.
    pub fn candidates(&self) -> &[SocketAddr] {
        self.path.candidates()
    }

    /// Whether probing is capped ([`Session::connect_requested`]).
    pub fn probes_capped(&self) -> bool {
        self.path.is_capped()
    }

    /// Whether `addr` is a path known to work (it answered, or it is the
    /// relay).
    pub fn knows_path(&self, addr: SocketAddr) -> bool {
        self.path.is_known(addr)
    }

    /// Hello rounds sent before the session connected (0 when the peer's
    /// hello reached us first).
    pub fn probe_rounds(&self) -> u32 {
        self.path.probe_rounds()
    }

    /// The smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.liveness.srtt()
    }

    /// Whether acks and retransmissions are in use.
    pub fn reliable(&self) -> bool {
        self.negotiated.uses(Extension::Reliable)
    }

    /// Lines sent but not yet acknowledged (reliable mode).
    pub fn pending_lines(&self) -> usize {
        self.lines.len()
    }

    /// Collects the actions produced since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.send.clear();
        for line in self.lines.drain() {
            self.emit(SessionEvent::Undeliverable { line });
        }
        self.emit(SessionEvent::Closed { reason });
    }

    /// A probe: a hello (carrying our first handshake message while we
    /// initiate).
    fn send_hello(&mut self, addr: SocketAddr) {
        let hello = self.probe_hello();
        if self.probes_in_plaintext() {
            self.send_plain(&hello, addr);
        } else {
            self.send(&hello, addr);
        }
    }

    /// A hello with a low TTL (see [`PRIME_TTL`]).
    fn prime_hello(&mut self, to: SocketAddr) {
        match self.channel.seal(&self.probe_hello(), self.clock) {
            Ok(bytes) => self.actions.push(Action::Prime { to, bytes }),
            Err(err) => tracing::error!(%err, "cannot encode datagram"),
        }
    }

    /// Seals `dg` and sends it to `to`; false if it could not be sealed.
    fn send(&mut self, dg: &Datagram, to: SocketAddr) -> bool {
        match self.channel.seal(dg, self.clock) {
            Ok(bytes) => {
                self.actions.push(Action::Send { to, bytes });
                true
            }
            Err(err) => {
                tracing::error!(%err, "cannot encode datagram");
                false
            }
        }
    }

    /// Sends `dg` as plaintext JSON whatever the channel (handshake
    /// messages, which carry their own protection).
    fn send_plain(&mut self, dg: &Datagram, to: SocketAddr) {
        match dg.encode() {
            Ok(bytes) => self.actions.push(Action::Send { to, bytes }),
            Err(err) => tracing::error!(%err, "cannot encode datagram"),
        }
    }

    fn emit(&mut self, event: SessionEvent) {
        self.actions.push(Action::Event(event));
    }
}

/// A random number from the OS RNG (via a v4 UUID, already a dependency).
fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests;
