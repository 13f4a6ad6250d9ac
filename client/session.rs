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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use thiserror::Error;
use tokio::time::Instant;

use super::protocol::{
    Datagram, Extension, Kind, MAX_FRAGMENT_BODY_BYTES, Part, our_extensions, split_for_datagrams,
};

/// Longest chat line a user may send, in bytes of UTF-8.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Most fragments a received line may have. A [`MAX_LINE_BYTES`] line of the
/// worst-escaping characters needs 110; anything above this is refused.
pub const MAX_FRAGMENTS_PER_LINE: u32 = 128;

/// Reliable-delivery window: the sender never has a message in flight whose
/// id is this far past the oldest unacknowledged one, and the receiver
/// buffers out-of-order messages only this far ahead of the next expected id.
pub const WINDOW: u64 = 64;

/// Most fragments waiting behind the window before `send_line` refuses more
/// (the user is typing faster than the peer acknowledges).
pub const MAX_QUEUED_FRAGMENTS: usize = 1024;

/// Most addresses probed for one peer; the rest of a longer list (which a
/// sane server never sends) is ignored.
pub const MAX_CANDIDATES: usize = 16;

/// Lower bound of the retransmission timeout, so loopback's microsecond RTTs
/// do not cause spurious retransmissions.
pub const MIN_RTO: Duration = Duration::from_millis(100);

/// Upper bound of the retransmission timeout, backoff included.
pub const MAX_RTO: Duration = Duration::from_secs(4);

/// Retransmission timeout before the first RTT sample.
pub const INITIAL_RTO: Duration = Duration::from_millis(500);

/// First pause between two background probes for a better path (relayed ->
/// direct -> LAN) while connected; it doubles up to [`UPGRADE_PROBE_MAX`].
pub const UPGRADE_PROBE_MIN: Duration = Duration::from_secs(1);

/// Longest pause between two background probes for a better path.
pub const UPGRADE_PROBE_MAX: Duration = Duration::from_secs(15);

/// IP TTL of "priming" probes. Linux NAT (conntrack) gives an outgoing
/// packet a new public port when an unanswered packet *from* its
/// destination arrived first, which breaks hole punching whenever one
/// peer's probe reaches the other's NAT before that NAT saw the other
/// peer's own outgoing probe. So the first probe round goes out with a TTL
/// that passes our own NAT (one or two hops away) but expires before the
/// far one: it opens our mapping without touching theirs, and the full
/// probes that follow find mappings open on both sides.
pub const PRIME_TTL: u32 = 2;

/// Most addresses a connected session remembers as answering (validated
/// paths it accepts traffic from).
pub const MAX_VALIDATED_PATHS: usize = 8;

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

/// How the session's datagrams travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// To a private, link-local or loopback address: same LAN or host.
    Lan,
    /// To a public address, directly (hole punched).
    Direct,
    /// Through the signaling server's relay.
    Relayed,
}

impl PathKind {
    /// Classifies the address the session settled on.
    pub fn of(addr: SocketAddr) -> PathKind {
        let private = match addr.ip() {
            std::net::IpAddr::V4(ip) => {
                ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified()
            }
            std::net::IpAddr::V6(ip) => {
                ip.is_loopback()
                    || ip.is_unspecified()
                    || (ip.segments()[0] & 0xfe00) == 0xfc00
                    || (ip.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        if private {
            PathKind::Lan
        } else {
            PathKind::Direct
        }
    }

    /// Name used in events and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Lan => "lan",
            PathKind::Direct => "direct",
            PathKind::Relayed => "relayed",
        }
    }

    /// Preference order: lower is better (LAN, then direct, then relayed).
    fn rank(self) -> u8 {
        match self {
            PathKind::Lan => 0,
            PathKind::Direct => 1,
            PathKind::Relayed => 2,
        }
    }
}

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
        /// [`Extension::Reliable`]).
        reliable: bool,
        /// Round trip of the probe that connected us, when we probed.
        rtt: Option<Duration>,
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
        /// The id [`Session::send_line`] returned.
        line: u64,
    },
    /// Line `line` will not be delivered (the session ended first).
    Undeliverable {
        /// The id [`Session::send_line`] returned.
        line: u64,
    },
    /// A keep-alive round trip completed; carries the smoothed RTT.
    Rtt {
        /// The smoothed RTT.
        rtt: Duration,
    },
    /// Probing found no direct path within `relay_after`: the engine should
    /// set up a relay and hand it over with [`Session::add_relay`].
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
    /// Send this datagram with IP TTL [`PRIME_TTL`] (a priming probe).
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
    /// More than [`MAX_QUEUED_FRAGMENTS`] fragments are waiting.
    #[error("too many unacknowledged messages; wait for the peer to catch up")]
    QueueFull,
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

/// Smoothed RTT and retransmission timeout as in RFC 6298.
#[derive(Debug, Clone, Default)]
struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    fn rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(MIN_RTO, MAX_RTO),
        }
    }
}

/// A reliable message sent but not acknowledged yet.
#[derive(Debug)]
struct InFlight {
    line: u64,
    bytes: Vec<u8>,
    sent_at: Instant,
    retransmits: u32,
    deadline: Instant,
}

/// A fragment waiting for room in the window.
#[derive(Debug)]
struct Queued {
    line: u64,
    id: u64,
    datagram: Datagram,
}

/// A line being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    count: u32,
    pieces: Vec<String>,
    bytes: usize,
    sent_at: f64,
}

/// One session with one remote peer. See the module docs.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    local_id: PeerId,
    local_name: String,
    remote_id: PeerId,
    phase: Phase,
    /// Addresses to probe while [`Phase::Probing`].
    candidates: Vec<SocketAddr>,
    /// The relay's address, once the engine set one up (also a candidate).
    relay: Option<SocketAddr>,
    /// The address the session settled on.
    addr: Option<SocketAddr>,
    /// Addresses that answered our probes: traffic from them is accepted.
    validated: Vec<SocketAddr>,
    /// When probing started (for `relay_after`).
    probing_since: Instant,
    /// Hello rounds sent while probing.
    probe_rounds: u32,
    relay_requested: bool,
    /// Next background probe for a better path, and the pause after it.
    next_upgrade: Instant,
    upgrade_pause: Duration,
    /// Background upgrade rounds so far (the first one only primes).
    upgrade_rounds: u32,
    /// While set, every candidate is probed each `probe_interval` (the path
    /// went stale or the peer asked for a new rendezvous).
    recover_until: Option<Instant>,
    attempt: u32,
    attempt_deadline: Instant,
    next_probe: Instant,
    last_probe: Option<Instant>,
    /// `None` until the remote announced (or visibly used) its extensions.
    remote_extensions: Option<Vec<Extension>>,
    remote_username: Option<String>,
    /// Random id of this session object, announced in hello and pong.
    local_session: u64,
    /// The remote's session id, once announced.
    remote_session: Option<u64>,
    last_heard: Instant,
    last_ping: Option<(u64, Instant)>,
    next_ping: Instant,
    missed: u32,
    rtt: RttEstimator,
    next_line: u64,
    next_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    queue: VecDeque<Queued>,
    /// Unacknowledged fragment count per line.
    line_fragments: HashMap<u64, u32>,
    next_expected: u64,
    reorder: BTreeMap<u64, Datagram>,
    partial: Option<Partial>,
    actions: Vec<Action>,
}

impl Session {
    fn blank(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        remote_id: PeerId,
        now: Instant,
    ) -> Session {
        Session {
            local_id,
            local_name: local_name.to_owned(),
            remote_id,
            phase: Phase::Probing,
            candidates: Vec::new(),
            relay: None,
            addr: None,
            validated: Vec::new(),
            probing_since: now,
            probe_rounds: 0,
            relay_requested: false,
            next_upgrade: now + UPGRADE_PROBE_MIN,
            upgrade_pause: UPGRADE_PROBE_MIN,
            upgrade_rounds: 0,
            recover_until: None,
            attempt: 1,
            attempt_deadline: now + config.attempt_duration,
            next_probe: now,
            last_probe: None,
            remote_extensions: None,
            remote_username: None,
            local_session: random_u64(),
            remote_session: None,
            last_heard: now,
            last_ping: None,
            next_ping: now + config.keepalive_interval,
            missed: 0,
            rtt: RttEstimator::default(),
            next_line: 1,
            next_id: 1,
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
            line_fragments: HashMap::new(),
            next_expected: 1,
            reorder: BTreeMap::new(),
            partial: None,
            actions: Vec::new(),
            config,
        }
    }

    /// Starts connecting to `remote_id`: probes every candidate address at
    /// once, right away (the first round is in the returned actions).
    pub fn connect(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        remote_id: PeerId,
        candidates: Vec<SocketAddr>,
        now: Instant,
    ) -> Session {
        let mut s = Session::blank(config, local_id, local_name, remote_id, now);
        s.candidates = dedup(candidates);
        s.emit(SessionEvent::Probing { attempt: 1 });
        s.poll_timers(now);
        s
    }

    /// Accepts a session opened by a remote `hello` that arrived from `addr`
    /// (seed style: no rendezvous needed). Answers it and is connected.
    pub fn accept(
        config: SessionConfig,
        local_id: PeerId,
        local_name: &str,
        hello: &Datagram,
        addr: SocketAddr,
        now: Instant,
    ) -> Session {
        let mut s = Session::blank(config, local_id, local_name, hello.from, now);
        s.candidates = vec![addr];
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
        hello.kind == Kind::Hello
            && hello.from == self.remote_id
            && self.addr == Some(addr)
            && matches!((self.remote_session, hello.session), (Some(old), Some(new)) if old != new)
    }

    /// Ends this session because the peer started a new one.
    pub fn reset(&mut self) {
        self.finish(CloseReason::Reset);
    }

    /// Adds probe targets (e.g. endpoints from a later rendezvous).
    pub fn add_candidates(&mut self, candidates: impl IntoIterator<Item = SocketAddr>) {
        self.candidates.extend(candidates);
        self.candidates = dedup(std::mem::take(&mut self.candidates));
        // The relay is never crowded out by a long list.
        if let Some(relay) = self.relay
            && !self.candidates.contains(&relay)
        {
            self.candidates.push(relay);
        }
    }

    /// The engine set up a relay for this session at `relay` (the server's
    /// relay address; the engine wraps and unwraps the frames). It becomes
    /// a candidate like any other, ranked last; probing gets a fresh
    /// attempt window so the relay has time to answer.
    pub fn add_relay(&mut self, relay: SocketAddr, now: Instant) {
        self.relay = Some(relay);
        self.add_candidates([relay]);
        match self.phase {
            Phase::Probing => {
                self.attempt_deadline = self
                    .attempt_deadline
                    .max(now + self.config.attempt_duration);
                self.next_probe = now;
            }
            Phase::Connected => {
                if self.recover_until.is_some() {
                    self.next_probe = now;
                }
            }
            Phase::Closed => {}
        }
    }

    /// The relay went away (refused or released): stop using it as a
    /// candidate. A session currently relayed keeps trying it until its
    /// keep-alive notices, which then recovers over any other path.
    pub fn drop_relay(&mut self) {
        if let Some(relay) = self.relay.take() {
            self.candidates.retain(|a| *a != relay);
            self.validated.retain(|a| *a != relay);
        }
    }

    /// The peer asked for a new rendezvous while we are connected (its path
    /// went stale, e.g. its NAT mapping changed): probe every candidate for
    /// one attempt window so both NATs open towards the new addresses.
    pub fn reprobe(&mut self, now: Instant) {
        if self.phase == Phase::Connected {
            self.recover_until = Some(now + self.config.attempt_duration);
            self.next_probe = now;
            self.poll_timers(now);
        }
    }

    /// The kind of path `addr` is for this session.
    pub fn path_of(&self, addr: SocketAddr) -> PathKind {
        if self.relay == Some(addr) {
            PathKind::Relayed
        } else {
            PathKind::of(addr)
        }
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
        self.addr
    }

    /// The addresses probed while connecting.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// Hello rounds sent before the session connected (0 when the peer's
    /// hello reached us first).
    pub fn probe_rounds(&self) -> u32 {
        self.probe_rounds
    }

    /// The smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.srtt
    }

    /// Whether acks and retransmissions are in use.
    pub fn reliable(&self) -> bool {
        self.uses(Extension::Reliable)
    }

    /// Lines sent but not yet acknowledged (reliable mode).
    pub fn pending_lines(&self) -> usize {
        self.line_fragments.len()
    }

    /// Collects the actions produced since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The earliest instant at which [`Session::poll_timers`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            Phase::Probing => {
                let mut at = self.next_probe.min(self.attempt_deadline);
                if !self.relay_requested {
                    at = at.min(self.probing_since + self.config.relay_after);
                }
                Some(at)
            }
            Phase::Connected => {
                let mut at = self.next_ping;
                if let Some(r) = self.in_flight.values().map(|f| f.deadline).min() {
                    at = at.min(r);
                }
                if self.recover_until.is_some() {
                    at = at.min(self.next_probe);
                } else if self.wants_upgrade() {
                    at = at.min(self.next_upgrade);
                }
                Some(at)
            }
        }
    }

    /// Candidates ranked better than the current path.
    fn better_candidates(&self) -> Vec<SocketAddr> {
        let Some(current) = self.addr else {
            return Vec::new();
        };
        let rank = self.path_of(current).rank();
        self.candidates
            .iter()
            .copied()
            .filter(|a| *a != current && self.path_of(*a).rank() < rank)
            .collect()
    }

    /// Whether background probing for a better path makes sense: only with
    /// peers that speak our extensions (a seed peer answers from one
    /// address only) and only while a better-ranked candidate exists.
    fn wants_upgrade(&self) -> bool {
        self.reliable() && !self.better_candidates().is_empty()
    }

    /// Moves the session to `addr`: in-flight messages are resent there at
    /// once (the receiver drops duplicates by id), the RTT is measured anew.
    fn switch_path(&mut self, addr: SocketAddr, now: Instant) {
        let from = self.addr;
        self.addr = Some(addr);
        self.recover_until = None;
        self.missed = 0;
        self.last_ping = None;
        self.rtt = RttEstimator::default();
        self.next_ping = now;
        self.upgrade_pause = UPGRADE_PROBE_MIN;
        self.next_upgrade = now + UPGRADE_PROBE_MIN;
        for f in self.in_flight.values_mut() {
            f.deadline = now;
            // The old path's timing says nothing about the new one.
            f.retransmits = f.retransmits.max(1);
        }
        let path = self.path_of(addr);
        tracing::info!(?from, to = %addr, path = path.as_str(), "session path changed");
        self.emit(SessionEvent::PathChanged { addr, path });
        self.poll_retransmits(now);
    }

    fn mark_validated(&mut self, addr: SocketAddr) {
        if !self.validated.contains(&addr) {
            if self.validated.len() >= MAX_VALIDATED_PATHS {
                self.validated.remove(0);
            }
            self.validated.push(addr);
        }
    }

    /// Handles one decoded datagram from `addr` whose `from` is this
    /// session's remote peer.
    pub fn handle_datagram(&mut self, dg: &Datagram, addr: SocketAddr, now: Instant) {
        if self.phase == Phase::Closed || dg.from != self.remote_id {
            return;
        }
        if self.phase == Phase::Connected && Some(addr) != self.addr {
            let same_session = match (self.remote_session, dg.session) {
                (Some(known), Some(got)) => known == got,
                _ => true,
            };
            match dg.kind {
                Kind::Hello => {
                    // The peer probes us over another path: answer, and
                    // probe back (a triggered check) when that path would
                    // be better or ours went quiet, so both NATs open.
                    self.send_control(Kind::Pong, addr, None);
                    if same_session && self.reliable() {
                        self.add_candidates([addr]);
                        let better = self.addr.is_some_and(|cur| {
                            self.path_of(addr).rank() < self.path_of(cur).rank()
                        });
                        if better || self.missed > 0 {
                            self.send_hello(addr);
                        }
                    }
                    return;
                }
                Kind::Pong if same_session && self.reliable() => {
                    // A round trip over `addr` works.
                    self.mark_validated(addr);
                    let better = self
                        .addr
                        .is_some_and(|cur| self.path_of(addr).rank() < self.path_of(cur).rank());
                    if better || self.missed > 0 {
                        self.switch_path(addr, now);
                    }
                    self.last_heard = now;
                    return;
                }
                _ if self.validated.contains(&addr) || self.relay == Some(addr) => {
                    // Traffic over a path that works but is not (or no
                    // longer) ours: e.g. the peer switched before us.
                }
                _ => {
                    tracing::debug!(%addr, kind = ?dg.kind, "dropping datagram from unexpected address");
                    return;
                }
            }
        }
        if self.phase == Phase::Probing
            && !self.candidates.contains(&addr)
            && !matches!(dg.kind, Kind::Hello | Kind::Pong)
        {
            // From an address we did not probe, only the handshake itself
            // may open the path (the peer's NAT may map it elsewhere).
            tracing::debug!(%addr, kind = ?dg.kind, "dropping non-handshake datagram from unprobed address");
            return;
        }
        if self.phase == Phase::Probing && dg.kind == Kind::Disconnect {
            self.finish(CloseReason::RemoteDisconnect);
            return;
        }
        // Liveness is the current path's: traffic over another validated
        // path (e.g. the relay, while the peer has not switched yet) must not
        // hide that ours went dead.
        if self.phase == Phase::Probing || Some(addr) == self.addr {
            self.last_heard = now;
            self.missed = 0;
        }
        if let Some(ext) = dg.announced_extensions() {
            self.remote_extensions = Some(ext);
        } else if dg.kind == Kind::Hello {
            // A hello without the field: a seed peer; plain messages only.
            self.remote_extensions = Some(Vec::new());
        }
        if let Some(name) = &dg.username {
            self.remote_username = Some(name.clone());
        }
        if matches!(dg.kind, Kind::Hello | Kind::Ping | Kind::Pong) && dg.session.is_some() {
            self.remote_session = dg.session;
        }
        if self.phase == Phase::Probing {
            self.phase = Phase::Connected;
            self.addr = Some(addr);
            self.mark_validated(addr);
            self.next_upgrade = now + UPGRADE_PROBE_MIN;
            // A pong answers our latest probe round: a first RTT estimate.
            if dg.kind == Kind::Pong
                && let Some(sent) = self.last_probe
            {
                self.rtt.sample(now.saturating_duration_since(sent));
            }
            // Without an RTT yet (we were the one probed), ping at once so
            // the user sees one promptly.
            self.next_ping = if self.rtt.srtt.is_some() {
                now + self.config.keepalive_interval
            } else {
                now
            };
            // Message ids prove the sender negotiated reliability with us.
            if dg.id.is_some() && dg.kind == Kind::Message && self.remote_extensions.is_none() {
                self.remote_extensions = Some(vec![Extension::Reliable, Extension::Fragments]);
            }
            let reliable = self.reliable();
            let rtt = self.rtt.srtt;
            let path = self.path_of(addr);
            self.emit(SessionEvent::Connected {
                addr,
                path,
                reliable,
                rtt,
            });
        }
        match dg.kind {
            Kind::Hello => self.send_control(Kind::Pong, addr, None),
            Kind::Ping => self.send_control(Kind::Pong, addr, dg.nonce),
            Kind::Pong => {
                // Our peers echo the nonce; a seed peer's pong has neither
                // nonce nor extensions and answers the outstanding ping.
                let seed_pong = dg.nonce.is_none() && dg.extensions.is_none();
                if let Some((nonce, sent)) = self.last_ping
                    && (seed_pong || dg.nonce == Some(nonce))
                {
                    self.last_ping = None;
                    self.rtt.sample(now.saturating_duration_since(sent));
                    // Reported per keep-alive round only; ack samples refine
                    // the estimate silently (they come per message).
                    if let Some(rtt) = self.rtt.srtt {
                        self.emit(SessionEvent::Rtt { rtt });
                    }
                }
            }
            Kind::Message => self.receive_message(dg, addr),
            Kind::Ack => self.receive_ack(dg, now),
            Kind::Disconnect => self.finish(CloseReason::RemoteDisconnect),
        }
    }

    /// Queues a chat line; returns its line id (for `Delivered` /
    /// `Undeliverable`). Towards a seed peer the line is sent at once, split
    /// into several plain messages if it does not fit one datagram.
    pub fn send_line(&mut self, text: &str, now: Instant) -> Result<u64, SendError> {
        if self.phase != Phase::Connected {
            return Err(SendError::NotConnected);
        }
        if text.len() > MAX_LINE_BYTES {
            return Err(SendError::TooLong(text.len()));
        }
        let Some(addr) = self.addr else {
            return Err(SendError::NotConnected);
        };
        let pieces = split_for_datagrams(text, MAX_FRAGMENT_BODY_BYTES);
        let line = self.next_line;
        if !self.reliable() {
            self.next_line += 1;
            for piece in pieces {
                let dg = Datagram::new(Kind::Message, self.local_id, piece);
                self.send(&dg, addr);
            }
            return Ok(line);
        }
        let fragmented = pieces.len() > 1 && self.uses(Extension::Fragments);
        if self.queue.len() + pieces.len() > MAX_QUEUED_FRAGMENTS {
            return Err(SendError::QueueFull);
        }
        self.next_line += 1;
        let count = pieces.len() as u32;
        self.line_fragments.insert(line, count);
        for (index, piece) in pieces.into_iter().enumerate() {
            let mut dg = Datagram::new(Kind::Message, self.local_id, piece);
            let id = self.next_id;
            self.next_id += 1;
            dg.id = Some(id);
            if fragmented {
                dg.part = Some(Part {
                    index: index as u32,
                    count,
                });
            }
            self.queue.push_back(Queued {
                line,
                id,
                datagram: dg,
            });
        }
        self.fill_window(now);
        Ok(line)
    }

    /// Ends the session from our side: tells the peer, reports pending lines
    /// as undeliverable.
    pub fn close(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        let targets: Vec<SocketAddr> = match self.addr {
            Some(addr) => vec![addr],
            None => self.candidates.clone(),
        };
        for addr in targets {
            self.send_control(Kind::Disconnect, addr, None);
        }
        self.finish(CloseReason::Local);
    }

    /// The signaling server reported the peer LEFT: it is gone for good.
    pub fn peer_left(&mut self) {
        self.finish(CloseReason::Left);
    }

    /// Runs every timer that is due at `now`: probes, attempts, keep-alive,
    /// retransmissions.
    pub fn poll_timers(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::Probing => {
                if now >= self.attempt_deadline {
                    if self.attempt >= self.config.connect_attempts {
                        self.finish(CloseReason::Unreachable);
                        return;
                    }
                    self.attempt += 1;
                    self.attempt_deadline = now + self.config.attempt_duration;
                    self.next_probe = now;
                    let attempt = self.attempt;
                    self.emit(SessionEvent::Probing { attempt });
                }
                if !self.relay_requested && now >= self.probing_since + self.config.relay_after {
                    self.relay_requested = true;
                    self.emit(SessionEvent::NeedRelay);
                }
                if now >= self.next_probe {
                    self.probe_all(now);
                }
            }
            Phase::Connected => {
                self.poll_keepalive(now);
                if self.phase != Phase::Connected {
                    return;
                }
                self.poll_retransmits(now);
                if let Some(until) = self.recover_until {
                    if now >= until {
                        self.recover_until = None;
                    } else if now >= self.next_probe {
                        self.probe_all(now);
                    }
                } else if now >= self.next_upgrade && self.wants_upgrade() {
                    // Both sides run this schedule from about the same
                    // moment; priming alone in the first round means the
                    // other side's full probes of later rounds find our
                    // mapping open (see PRIME_TTL).
                    for addr in self.better_candidates() {
                        self.prime_hello(addr);
                        if self.upgrade_rounds > 0 {
                            self.send_hello(addr);
                        }
                    }
                    self.upgrade_rounds += 1;
                    self.upgrade_pause = (self.upgrade_pause * 2).min(UPGRADE_PROBE_MAX);
                    self.next_upgrade = now + self.upgrade_pause;
                }
            }
        }
    }

    /// Sends one hello round to every candidate.
    fn probe_all(&mut self, now: Instant) {
        // The first round of a connect only primes our own NAT; the other
        // side, told by the same rendezvous, primes its own meanwhile.
        let prime_only = self.phase == Phase::Probing && self.probe_rounds == 0;
        if self.phase == Phase::Probing {
            self.probe_rounds += 1;
        }
        for addr in self.candidates.clone() {
            if prime_only && self.relay != Some(addr) {
                self.prime_hello(addr);
            } else {
                self.send_hello(addr);
            }
        }
        self.next_probe = now + self.config.probe_interval;
        self.last_probe = Some(now);
    }

    fn hello(&self) -> Datagram {
        let mut hello = Datagram::new(Kind::Hello, self.local_id, "");
        hello.extensions = Some(our_extensions());
        hello.username = Some(self.local_name.clone());
        hello.session = Some(self.local_session);
        hello
    }

    fn send_hello(&mut self, addr: SocketAddr) {
        let hello = self.hello();
        self.send(&hello, addr);
    }

    /// A hello with a low TTL (see [`PRIME_TTL`]).
    fn prime_hello(&mut self, to: SocketAddr) {
        match self.hello().encode() {
            Ok(bytes) => self.actions.push(Action::Prime { to, bytes }),
            Err(err) => tracing::error!(%err, "cannot encode datagram"),
        }
    }

    fn poll_keepalive(&mut self, now: Instant) {
        if now < self.next_ping {
            return;
        }
        if let Some((_, sent)) = self.last_ping
            && self.last_heard < sent
        {
            self.missed += 1;
            if self.missed >= self.config.missed_pong_limit {
                self.finish(CloseReason::Timeout);
                return;
            }
            if self.missed == 1 && self.reliable() {
                // Recover before the limit: probe every path (the relay
                // included, once there is one) and let the engine refresh
                // the rendezvous; any path that answers takes over.
                self.recover_until =
                    Some(now + self.config.keepalive_interval * self.config.missed_pong_limit);
                self.next_probe = now;
                self.emit(SessionEvent::Stale);
            }
        }
        let Some(addr) = self.addr else { return };
        let nonce = self.last_ping.map_or(1, |(n, _)| n + 1);
        let mut ping = Datagram::new(Kind::Ping, self.local_id, "");
        ping.nonce = Some(nonce);
        // Announced on every control datagram, so whichever of them reaches
        // a still-probing peer first tells it what we speak.
        ping.extensions = Some(our_extensions());
        ping.session = Some(self.local_session);
        self.send(&ping, addr);
        self.last_ping = Some((nonce, now));
        self.next_ping = now + self.config.keepalive_interval;
    }

    fn poll_retransmits(&mut self, now: Instant) {
        let Some(addr) = self.addr else { return };
        let rto = self.rtt.rto();
        let mut resend = Vec::new();
        for (id, f) in self.in_flight.iter_mut() {
            if f.deadline <= now {
                f.retransmits += 1;
                let backoff = rto.saturating_mul(1 << f.retransmits.min(6)).min(MAX_RTO);
                f.deadline = now + backoff;
                resend.push((*id, f.bytes.clone()));
            }
        }
        for (id, bytes) in resend {
            tracing::trace!(id, "retransmitting");
            self.actions.push(Action::Send { to: addr, bytes });
        }
    }

    fn fill_window(&mut self, now: Instant) {
        let Some(addr) = self.addr else { return };
        while let Some(front) = self.queue.front() {
            let oldest = self.in_flight.keys().next().copied().unwrap_or(front.id);
            if front.id >= oldest + WINDOW {
                break;
            }
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            match q.datagram.encode() {
                Ok(bytes) => {
                    self.actions.push(Action::Send {
                        to: addr,
                        bytes: bytes.clone(),
                    });
                    self.in_flight.insert(
                        q.id,
                        InFlight {
                            line: q.line,
                            bytes,
                            sent_at: now,
                            retransmits: 0,
                            deadline: now + self.rtt.rto(),
                        },
                    );
                }
                Err(err) => {
                    // Cannot happen: fragments are sized to fit. Report the
                    // line rather than stall the stream.
                    tracing::error!(%err, "cannot encode fragment");
                    if self.line_fragments.remove(&q.line).is_some() {
                        self.emit(SessionEvent::Undeliverable { line: q.line });
                    }
                }
            }
        }
    }

    fn receive_ack(&mut self, dg: &Datagram, now: Instant) {
        let mut acked: Vec<u64> = Vec::new();
        if let Some(upto) = dg.upto {
            acked.extend(self.in_flight.range(..=upto).map(|(id, _)| *id));
        }
        if let Some(id) = dg.id
            && self.in_flight.contains_key(&id)
        {
            acked.push(id);
        }
        for id in acked {
            let Some(f) = self.in_flight.remove(&id) else {
                continue;
            };
            // Karn's rule: only unambiguous (never retransmitted) samples.
            if f.retransmits == 0 && dg.id == Some(id) {
                self.rtt.sample(now.saturating_duration_since(f.sent_at));
            }
            if let Some(left) = self.line_fragments.get_mut(&f.line) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.line_fragments.remove(&f.line);
                    self.emit(SessionEvent::Delivered { line: f.line });
                }
            }
        }
        self.fill_window(now);
    }

    fn receive_message(&mut self, dg: &Datagram, addr: SocketAddr) {
        let Some(id) = dg.id else {
            // Plain (seed) message: no ordering, no ack.
            let text = dg.body.clone();
            let sent_at = dg.timestamp;
            self.emit(SessionEvent::Message { text, sent_at });
            return;
        };
        if self.remote_extensions.is_none() {
            self.remote_extensions = Some(vec![Extension::Reliable, Extension::Fragments]);
        }
        if id >= self.next_expected + WINDOW {
            tracing::debug!(id, "message beyond the receive window dropped");
            return;
        }
        if id >= self.next_expected && !self.reorder.contains_key(&id) {
            self.reorder.insert(id, dg.clone());
        }
        while let Some(next) = self.reorder.remove(&self.next_expected) {
            self.next_expected += 1;
            self.deliver_in_order(next);
        }
        let mut ack = Datagram::new(Kind::Ack, self.local_id, "");
        ack.id = Some(id);
        ack.upto = Some(self.next_expected - 1);
        self.send(&ack, addr);
    }

    fn deliver_in_order(&mut self, dg: Datagram) {
        let Some(part) = dg.part else {
            if self.partial.take().is_some() {
                tracing::debug!("unfinished fragmented line discarded");
            }
            self.emit(SessionEvent::Message {
                text: dg.body,
                sent_at: dg.timestamp,
            });
            return;
        };
        if part.count > MAX_FRAGMENTS_PER_LINE {
            tracing::debug!(count = part.count, "line with too many fragments discarded");
            self.partial = None;
            return;
        }
        if part.index == 0 {
            if self.partial.is_some() {
                tracing::debug!("unfinished fragmented line discarded");
            }
            self.partial = Some(Partial {
                count: part.count,
                pieces: Vec::new(),
                bytes: 0,
                sent_at: dg.timestamp,
            });
        }
        let Some(partial) = self.partial.as_mut() else {
            tracing::debug!("fragment without its start discarded");
            return;
        };
        if partial.count != part.count || partial.pieces.len() as u32 != part.index {
            tracing::debug!("out-of-sequence fragment; line discarded");
            self.partial = None;
            return;
        }
        partial.bytes += dg.body.len();
        if partial.bytes > MAX_LINE_BYTES {
            tracing::debug!("reassembled line over the limit discarded");
            self.partial = None;
            return;
        }
        partial.pieces.push(dg.body);
        if partial.pieces.len() as u32 == partial.count {
            let text = partial.pieces.concat();
            let sent_at = partial.sent_at;
            self.partial = None;
            self.emit(SessionEvent::Message { text, sent_at });
        }
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.in_flight.clear();
        self.queue.clear();
        let mut lines: Vec<u64> = self.line_fragments.drain().map(|(l, _)| l).collect();
        lines.sort_unstable();
        for line in lines {
            self.emit(SessionEvent::Undeliverable { line });
        }
        self.emit(SessionEvent::Closed { reason });
    }

    fn uses(&self, ext: Extension) -> bool {
        self.remote_extensions
            .as_ref()
            .is_some_and(|list| list.contains(&ext))
    }

    fn send_control(&mut self, kind: Kind, addr: SocketAddr, nonce: Option<u64>) {
        let mut dg = Datagram::new(kind, self.local_id, "");
        if kind == Kind::Pong {
            dg.extensions = Some(our_extensions());
            dg.nonce = nonce;
            dg.session = Some(self.local_session);
        }
        self.send(&dg, addr);
    }

    fn send(&mut self, dg: &Datagram, to: SocketAddr) {
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

/// Removes repeats, keeps the first [`MAX_CANDIDATES`] in order.
fn dedup(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs.truncate(MAX_CANDIDATES);
    addrs
}

#[cfg(test)]
mod tests;
