//! The relay's session table: which pairs of peers may exchange datagrams
//! through the server, at which addresses, under which limits. Pure state
//! (no socket, no store): [`super::admission`] checks tokens against the
//! store, the socket loop in [`super`] feeds frames in and sends what comes
//! out.
//!
//! A session is the unordered pair {A, B}. Each side that BINDs (with its
//! token, checked by the caller) gets a random channel id and has its source
//! address recorded; when both sides are bound the session is ready and
//! DATA from one side's address with its channel is forwarded to the other
//! side, re-labelled with the receiver's channel. A repeated BIND refreshes
//! the side and moves it to the new source address (NAT rebinding).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::time::Instant;
use uuid::Uuid;

use p2pchat::proto::relay_frame::{MAX_RELAY_PAYLOAD, RefuseCode, RelayFrame};

/// Most relay sessions one peer may be part of (the peer itself opens at
/// most 32 chat sessions).
pub const MAX_SESSIONS_PER_PEER: usize = 32;

/// The relay's limits; each is a server flag.
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
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_sessions: 10_000,
            idle: Duration::from_secs(60),
            rate_pps: 2_000,
            rate_bytes: 1024 * 1024,
        }
    }
}

/// A datagram to send.
pub type Outgoing = (SocketAddr, Vec<u8>);

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// DATA frames forwarded.
    pub forwarded: u64,
    /// DATA dropped: unknown channel, wrong source address or not ready.
    pub dropped_unroutable: u64,
    /// DATA dropped by the rate limits.
    pub dropped_rate: u64,
}

/// A token bucket refilled continuously, holding at most one second's rate.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            level: f64::from(rate),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + secs * self.rate).min(self.rate);
        self.at = now;
    }
}

#[derive(Debug, Clone)]
struct Side {
    addr: SocketAddr,
    channel: u64,
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

/// The table of relay sessions. See the module docs.
#[derive(Debug)]
pub struct RelayTable {
    limits: RelayLimits,
    sessions: HashMap<PairKey, Session>,
    channels: HashMap<u64, (PairKey, usize)>,
    by_peer: HashMap<PeerId, HashSet<PairKey>>,
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

    /// A BIND from `from` by `peer` (token already verified) for `target`
    /// (known to be online). Returns the BOUND answers: to `from`, and to
    /// the other side when this BIND made the session ready.
    pub fn bind(
        &mut self,
        peer: PeerId,
        target: PeerId,
        from: SocketAddr,
        now: Instant,
    ) -> Result<Vec<Outgoing>, RefuseCode> {
        if peer == target {
            return Err(RefuseCode::TargetOffline);
        }
        let (key, side) = pair(peer, target);
        if !self.sessions.contains_key(&key) {
            if self.sessions.len() >= self.limits.max_sessions {
                return Err(RefuseCode::Full);
            }
            let crowded = |p: &PeerId| {
                self.by_peer
                    .get(p)
                    .is_some_and(|s| s.len() >= MAX_SESSIONS_PER_PEER)
            };
            if crowded(&peer) || crowded(&target) {
                return Err(RefuseCode::Full);
            }
            self.sessions.insert(
                key,
                Session {
                    peers: [key.0, key.1],
                    sides: [None, None],
                    last_active: now,
                    packets: Bucket::new(self.limits.rate_pps, now),
                    bytes: Bucket::new(self.limits.rate_bytes, now),
                },
            );
            for p in [peer, target] {
                self.by_peer.entry(p).or_default().insert(key);
            }
        }
        let channel = match self.sessions.get(&key).and_then(|s| s.sides[side].as_ref()) {
            Some(existing) => existing.channel,
            None => self.fresh_channel(),
        };
        let Some(session) = self.sessions.get_mut(&key) else {
            return Ok(Vec::new());
        };
        let newly_bound = session.sides[side].is_none();
        if newly_bound {
            self.channels.insert(channel, (key, side));
        }
        session.sides[side] = Some(Side {
            addr: from,
            channel,
        });
        session.last_active = now;
        let mut out = Vec::with_capacity(2);
        let other = session.sides[1 - side].clone();
        let ready = other.is_some();
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
            && newly_bound
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
        Ok(out)
    }

    /// A DATA frame from `from` on `channel`: the frame to forward, or
    /// `None` when it is dropped (unknown channel, foreign source address,
    /// session not ready, over the size or rate limits).
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
        let (Some(mine), Some(other)) = (&session.sides[side], &session.sides[1 - side]) else {
            self.stats.dropped_unroutable += 1;
            return None;
        };
        if mine.addr != from || payload.len() > MAX_RELAY_PAYLOAD {
            self.stats.dropped_unroutable += 1;
            return None;
        }
        let (to, their_channel) = (other.addr, other.channel);
        session.packets.refill(now);
        session.bytes.refill(now);
        let size = payload.len() as f64;
        if session.packets.level < 1.0 || session.bytes.level < size {
            self.stats.dropped_rate += 1;
            return None;
        }
        session.packets.level -= 1.0;
        session.bytes.level -= size;
        session.last_active = now;
        self.stats.forwarded += 1;
        Some((
            to,
            RelayFrame::Data {
                channel: their_channel,
                payload,
            }
            .to_bytes(),
        ))
    }

    /// Frees the session between `peer` and `target` (RELEASE, token
    /// already verified). True if there was one.
    pub fn release(&mut self, peer: PeerId, target: PeerId) -> bool {
        let (key, _) = pair(peer, target);
        self.remove(key)
    }

    /// Frees every session of a peer that left the store.
    pub fn peer_left(&mut self, peer: PeerId) -> usize {
        let keys: Vec<PairKey> = self
            .by_peer
            .get(&peer)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        keys.into_iter().filter(|k| self.remove(*k)).count()
    }

    /// Frees sessions idle for longer than the limit; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let idle = self.limits.idle;
        let stale: Vec<PairKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_active) >= idle)
            .map(|(k, _)| *k)
            .collect();
        stale.into_iter().filter(|k| self.remove(*k)).count()
    }

    /// Frees sessions for which `online` says a peer is gone (a sweep after
    /// missed store changes).
    pub fn retain_online(&mut self, online: impl Fn(&PeerId) -> bool) -> usize {
        let gone: Vec<PairKey> = self
            .sessions
            .values()
            .filter(|s| !s.peers.iter().all(&online))
            .map(|s| (s.peers[0], s.peers[1]))
            .collect();
        gone.into_iter().filter(|k| self.remove(*k)).count()
    }

    fn remove(&mut self, key: PairKey) -> bool {
        let Some(session) = self.sessions.remove(&key) else {
            return false;
        };
        for side in session.sides.iter().flatten() {
            self.channels.remove(&side.channel);
        }
        for p in session.peers {
            if let Some(set) = self.by_peer.get_mut(&p) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_peer.remove(&p);
                }
            }
        }
        true
    }

    /// A random channel id not in use (ids are guesses an attacker would
    /// need, besides the bound source address).
    fn fresh_channel(&self) -> u64 {
        loop {
            let id = Uuid::new_v4().as_u64_pair().0;
            if !self.channels.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
