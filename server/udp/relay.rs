//! The relay's session table: which pairs of peers may exchange datagrams
//! through the server, at which addresses, under which limits. Pure state
//! (no socket, no store): [`super::admission`] authenticates BIND and
//! RELEASE (the MAC under the sender's relay key) and checks the store, the
//! socket loop in [`super`] feeds frames in and sends what comes out.
//!
//! A session is the unordered pair {A, B}. Each side that BINDs gets a
//! random channel id; when both sides have a *route* (an address proven to
//! be theirs) the session is ready and DATA from one side's route address
//! with its channel is forwarded to the other side's route address,
//! re-labelled with the receiver's channel.
//!
//! # How a side gets and moves its route
//!
//! Every BIND and RELEASE the table sees has a valid MAC under the sender's
//! relay key (checked by the caller); the table adds freshness and
//! return routability:
//!
//! * **Counter.** Each side keeps the highest counter it accepted. A BIND or
//!   RELEASE whose counter is not above it is dropped without an answer
//!   ([`Denied::Replayed`]): a replay of any frame the relay already saw, or
//!   of any older one, from any address, changes nothing. The state lives in
//!   the side, so it is bounded by the table's limits and goes with the
//!   session.
//! * **Challenge.** A fresh BIND from an address that is not the side's
//!   route, or that does not echo the route's channel, does not move
//!   anything: it records a *challenge* (that address and a new random
//!   channel) and sends BOUND with that channel to that address only. The
//!   route moves there (or is first set there) when a later, fresher BIND
//!   *from that address* echoes that channel. Only the holder of the key can
//!   make that BIND, and only a receiver at the address learns the channel:
//!   the relay never sends a session's traffic to an address that did not
//!   prove both. Legitimate NAT rebinding takes one extra round trip and
//!   keeps working; while a move is pending, traffic keeps going to the old
//!   route. A BIND that matches the route again (the real peer is still
//!   there) drops a pending challenge. At most
//!   [`MAX_CHALLENGES_PER_SIDE_PER_SEC`] challenges go out per side, so
//!   even the key holder, sending fresh BINDs with a victim's source,
//!   makes the relay send that victim no more than a few 29-byte BOUNDs a
//!   second.
//!
//! # Why a binding that is gone accepts any counter
//!
//! When a session is freed (RELEASE, idle timeout, a peer leaving the
//! store) its counters go with it, so a frame captured long ago passes the
//! counter check of a session created later. That is safe:
//!
//! * A replayed BIND only creates or moves a *challenge*: BOUND goes to the
//!   replaying (or spoofed) source, and no traffic follows until a BIND from
//!   that address echoes the new channel under the key, which the replayer
//!   cannot make. The replayed frame's echo names a channel of the old
//!   session, never the new random one.
//! * The real peer's next BIND has a higher counter than anything captured
//!   from it (its counter only grows), so it replaces the replayer's
//!   challenge with its own; every older frame is dropped from then on.
//! * If the very first BIND of a binding is replayed (or raced, by someone
//!   who saw it on the way) from a spoofed or foreign source before the real
//!   one arrives, the real one is then dropped as not fresh; the peer
//!   retries after `BIND_RETRY` with a higher counter and gets its own
//!   challenge. The spoofed source gets one BOUND (29 bytes) per replayed
//!   84-byte BIND: no amplification, and no session traffic.
//! * A replayed RELEASE needs the sender's side to exist with a lower
//!   counter and to echo one of its current channels, which a frame from an
//!   old session does not: it frees nothing.
//! * The key lives as long as the token (until the peer unregisters or its
//!   record is purged); a captured frame is worth nothing more than this
//!   after that, and the token itself never travelled.
//!
//! What remains: someone on the path who *drops* the real frames and sends
//! them on from its own address is, to the relay, indistinguishable from a
//! NAT; it could also just drop or delay the traffic it carries. Payloads
//! are opaque to the relay; see `SECURITY.md`.

use super::bucket::Bucket;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::time::Instant;
use uuid::Uuid;

use p2pchat::proto::relay_frame::{MAX_RELAY_PAYLOAD, NO_CHANNEL, RefuseCode, RelayFrame};

/// Most relay sessions one peer may be part of (the peer itself opens at
/// most 32 chat sessions).
pub const MAX_SESSIONS_PER_PEER: usize = 32;

/// Most REFUSED frames the relay sends per second, whoever they are for. A
/// REFUSED only ever answers an authenticated, fresh BIND; the cap keeps the
/// relay from being a reflector even for someone replaying captured frames
/// against fresh bindings from spoofed sources.
pub const MAX_REFUSALS_PER_SEC: u32 = 100;

/// Most challenges (BOUND to an address that has not proven itself) per
/// side of a session per second, bursts of one second's worth. Only the key
/// holder makes fresh BINDs, but it can send them with any source: this
/// bounds what it can aim at someone else through the relay (a 29-byte
/// BOUND for each 84-byte BIND, and no more than this many). A peer retries
/// an unanswered BIND every 500 ms.
pub const MAX_CHALLENGES_PER_SIDE_PER_SEC: u32 = 4;

/// The UDP port's limits (the relay's, and STUN answers per source); each
/// is a server flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Most sessions at once.
    pub max_sessions: usize,
    /// A session without BIND or DATA from either side for this long is
    /// freed.
    pub idle: Duration,
    /// Datagrams per second one session may relay (both directions
    /// together; bursts up to one second's worth).
    pub rate_pps: u32,
    /// Payload bytes per second one session may relay.
    pub rate_bytes: u32,
    /// STUN answers per second one source (IPv4 address, IPv6 /64) gets;
    /// see [`super::stun_limit`].
    pub stun_rate: u32,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_sessions: 10_000,
            idle: Duration::from_secs(60),
            rate_pps: 2_000,
            rate_bytes: 1024 * 1024,
            stun_rate: super::stun_limit::DEFAULT_STUN_RATE,
        }
    }
}

/// A datagram to send.
pub type Outgoing = (SocketAddr, Vec<u8>);

/// Why a BIND did not act on the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Answer REFUSED with this code (the BIND authenticated and is fresh).
    Refuse(RefuseCode),
    /// The counter is not above the highest this binding accepted: a replay
    /// or a reordered duplicate. Dropped without an answer.
    Replayed,
    /// A challenge past [`MAX_CHALLENGES_PER_SIDE_PER_SEC`]: dropped without
    /// an answer, nothing changed.
    Throttled,
}

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// DATA frames forwarded.
    pub forwarded: u64,
    /// DATA dropped: unknown channel, wrong source address or not ready.
    pub dropped_unroutable: u64,
    /// DATA dropped by the rate limits.
    pub dropped_rate: u64,
    /// BIND or RELEASE dropped: unknown sender or bad MAC.
    pub dropped_unauthenticated: u64,
    /// BIND or RELEASE dropped: counter not above the binding's highest.
    pub dropped_replayed: u64,
    /// REFUSED not sent because of [`MAX_REFUSALS_PER_SEC`].
    pub refusals_suppressed: u64,
    /// Challenges not sent because of [`MAX_CHALLENGES_PER_SIDE_PER_SEC`].
    pub challenges_suppressed: u64,
}

/// An address and the channel the relay sent there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    addr: SocketAddr,
    channel: u64,
}

impl Route {
    fn is(&self, from: SocketAddr, echo: u64) -> bool {
        self.addr == from && self.channel == echo
    }
}

/// One peer's side of a session.
#[derive(Debug, Clone)]
struct Side {
    /// Where this side's traffic goes and may come from: an address that
    /// echoed the channel the relay sent there.
    route: Option<Route>,
    /// A channel sent to an address that has not echoed it yet.
    challenge: Option<Route>,
    /// The highest counter accepted from this side.
    highest: u64,
    /// Challenges this side may still be sent
    /// ([`MAX_CHALLENGES_PER_SIDE_PER_SEC`]).
    challenges: Bucket,
}

impl Side {
    fn knows(&self, echo: u64) -> bool {
        [self.route, self.challenge]
            .iter()
            .flatten()
            .any(|r| r.channel == echo)
    }
}

#[derive(Debug)]
struct Session {
    /// Side 0 is the peer with the smaller id.
    peers: [PeerId; 2],
    sides: [Option<Side>; 2],
    last_active: Instant,
    packets: Bucket,
    bytes: Bucket,
}

type PairKey = (PeerId, PeerId);

fn pair(a: PeerId, b: PeerId) -> (PairKey, usize) {
    if a < b { ((a, b), 0) } else { ((b, a), 1) }
}

/// What a fresh BIND does to its side.
enum Step {
    /// From the route's address, echoing its channel: a keep-alive.
    Refresh,
    /// From the challenged address, echoing its channel: the route is set
    /// (or moves) there.
    Confirm,
    /// Anything else: challenge the address (again, with `Some` channel
    /// when it is already the challenged one).
    Challenge(Option<u64>),
}

/// The table of relay sessions. See the module docs.
#[derive(Debug)]
pub struct RelayTable {
    limits: RelayLimits,
    sessions: HashMap<PairKey, Session>,
    /// Route and challenge channels, to their session and side.
    channels: HashMap<u64, (PairKey, usize)>,
    by_peer: HashMap<PeerId, HashSet<PairKey>>,
    refusals: Bucket,
    stats: RelayStats,
}

impl RelayTable {
    /// An empty table.
    pub fn new(limits: RelayLimits) -> RelayTable {
        RelayTable {
            limits,
            sessions: HashMap::new(),
            channels: HashMap::new(),
            by_peer: HashMap::new(),
            refusals: Bucket::new(MAX_REFUSALS_PER_SEC, Instant::now()),
            stats: RelayStats::default(),
        }
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Counts a BIND or RELEASE that did not authenticate.
    pub fn count_unauthenticated(&mut self) {
        self.stats.dropped_unauthenticated += 1;
    }

    /// Whether a BIND or RELEASE of `peer` towards `target` with `counter`
    /// is fresh: no side yet, or above its highest counter. A stale one is
    /// counted as replayed.
    pub fn check_fresh(&mut self, peer: PeerId, target: PeerId, counter: u64) -> bool {
        let (key, side) = pair(peer, target);
        let fresh = self
            .sessions
            .get(&key)
            .and_then(|s| s.sides[side].as_ref())
            .is_none_or(|s| counter > s.highest);
        if !fresh {
            self.stats.dropped_replayed += 1;
        }
        fresh
    }

    /// Whether a REFUSED may be sent now ([`MAX_REFUSALS_PER_SEC`]).
    pub fn may_refuse(&mut self, now: Instant) -> bool {
        let ok = self.refusals.take(1.0, now);
        if !ok {
            self.stats.refusals_suppressed += 1;
        }
        ok
    }

    /// An authenticated BIND from `from` by `peer` for `target` (known to
    /// be online), echoing `echo` with `counter`. Returns the BOUND answers:
    /// to `from`, and to the other side when this BIND made the session
    /// ready. See the module docs for when the route moves.
    pub fn bind(
        &mut self,
        peer: PeerId,
        target: PeerId,
        from: SocketAddr,
        echo: u64,
        counter: u64,
        now: Instant,
    ) -> Result<Vec<Outgoing>, Denied> {
        if peer == target {
            return Err(Denied::Refuse(RefuseCode::TargetOffline));
        }
        if !self.check_fresh(peer, target, counter) {
            return Err(Denied::Replayed);
        }
        let (key, side) = pair(peer, target);
        self.open_session(key, peer, target, now)?;
        let step = self.step_for(key, side, from, echo);
        let new_channel = match step {
            Step::Challenge(None) => Some(self.fresh_channel()),
            _ => None,
        };
        let Some(session) = self.sessions.get_mut(&key) else {
            return Ok(Vec::new());
        };
        session.last_active = now;
        let mine = session.sides[side].get_or_insert_with(|| Side {
            route: None,
            challenge: None,
            highest: 0,
            challenges: Bucket::new(MAX_CHALLENGES_PER_SIDE_PER_SEC, now),
        });
        if matches!(step, Step::Challenge(_)) && !mine.challenges.take(1.0, now) {
            self.stats.challenges_suppressed += 1;
            return Err(Denied::Throttled);
        }
        mine.highest = counter;
        let mut newly_routed = false;
        let (channel, routed) = match step {
            Step::Refresh => {
                if let Some(dropped) = mine.challenge.take() {
                    self.channels.remove(&dropped.channel);
                }
                (mine.route.map_or(NO_CHANNEL, |r| r.channel), true)
            }
            Step::Confirm => {
                let proven = mine.challenge.take();
                if let Some(old) = std::mem::replace(&mut mine.route, proven) {
                    self.channels.remove(&old.channel);
                } else {
                    newly_routed = true;
                }
                (mine.route.map_or(NO_CHANNEL, |r| r.channel), true)
            }
            Step::Challenge(Some(channel)) => (channel, false),
            Step::Challenge(None) => {
                let channel = new_channel.unwrap_or(NO_CHANNEL);
                let challenge = Route {
                    addr: from,
                    channel,
                };
                if let Some(old) = mine.challenge.replace(challenge) {
                    self.channels.remove(&old.channel);
                }
                self.channels.insert(channel, (key, side));
                (channel, false)
            }
        };
        let other = session.sides[1 - side].as_ref().and_then(|s| s.route);
        Ok(bound_answers(
            peer,
            target,
            from,
            channel,
            routed,
            newly_routed,
            other,
        ))
    }

    /// What a BIND from `from` echoing `echo` does to `side` of `key`.
    fn step_for(&self, key: PairKey, side: usize, from: SocketAddr, echo: u64) -> Step {
        match self.sessions.get(&key).and_then(|s| s.sides[side].as_ref()) {
            Some(s) if s.route.is_some_and(|r| r.is(from, echo)) => Step::Refresh,
            Some(s) if s.challenge.is_some_and(|c| c.is(from, echo)) => Step::Confirm,
            Some(Side {
                challenge: Some(c), ..
            }) if c.addr == from => Step::Challenge(Some(c.channel)),
            _ => Step::Challenge(None),
        }
    }

    /// A DATA frame from `from` on `channel`: the frame to forward, or
    /// `None` when it is dropped (unknown channel, not from the sender's
    /// route, session not ready, over the size or rate limits).
    pub fn data(
        &mut self,
        channel: u64,
        payload: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Option<Outgoing> {
        let route = self.channels.get(&channel).copied();
        let Some((key, side)) = route else {
            self.stats.dropped_unroutable += 1;
            return None;
        };
        let session = self.sessions.get_mut(&key)?;
        let mine = session.sides[side].as_ref().and_then(|s| s.route);
        let other = session.sides[1 - side].as_ref().and_then(|s| s.route);
        let (Some(mine), Some(other)) = (mine, other) else {
            self.stats.dropped_unroutable += 1;
            return None;
        };
        if !mine.is(from, channel) || payload.len() > MAX_RELAY_PAYLOAD {
            self.stats.dropped_unroutable += 1;
            return None;
        }
        let size = payload.len() as f64;
        session.packets.refill(now);
        session.bytes.refill(now);
        if session.packets.level < 1.0 || session.bytes.level < size {
            self.stats.dropped_rate += 1;
            return None;
        }
        session.packets.level -= 1.0;
        session.bytes.level -= size;
        session.last_active = now;
        self.stats.forwarded += 1;
        Some((
            other.addr,
            RelayFrame::Data {
                channel: other.channel,
                payload,
            }
            .to_bytes(),
        ))
    }

    /// A random channel id, never [`NO_CHANNEL`], not in use. Channels are
    /// guesses an attacker would need besides the route's source address,
    /// and the nonce a BIND echoes to prove it got BOUND.
    fn fresh_channel(&self) -> u64 {
        loop {
            let (high, low) = Uuid::new_v4().as_u64_pair();
            // The low half of a v4 UUID has the variant bits; mix both
            // halves so all 64 bits vary.
            let id = high ^ low.rotate_left(32);
            if id != NO_CHANNEL && !self.channels.contains_key(&id) {
                return id;
            }
        }
    }
}

/// The BOUND answers to a BIND: to `from`, and to the other side when
/// this BIND made the session ready.
fn bound_answers(
    peer: PeerId,
    target: PeerId,
    from: SocketAddr,
    channel: u64,
    routed: bool,
    newly_routed: bool,
    other: Option<Route>,
) -> Vec<Outgoing> {
    let ready = routed && other.is_some();
    let mut out = Vec::with_capacity(2);
    out.push((
        from,
        RelayFrame::Bound {
            target: *target.as_uuid(),
            channel,
            ready,
        }
        .to_bytes(),
    ));
    if let Some(other) = other
        && newly_routed
    {
        out.push((
            other.addr,
            RelayFrame::Bound {
                target: *peer.as_uuid(),
                channel: other.channel,
                ready: true,
            }
            .to_bytes(),
        ));
    }
    out
}

mod lifecycle;
#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
