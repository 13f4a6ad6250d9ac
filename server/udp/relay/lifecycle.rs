//! A relay session's life: created on its first BIND, freed by RELEASE,
//! when a peer leaves, when idle, or by a sweep after missed store changes.

use p2pchat::PeerId;
use tokio::time::Instant;

use super::{Bucket, Denied, MAX_SESSIONS_PER_PEER, PairKey, RelayTable, Session, pair};
use crate::udp::relay::RefuseCode;

impl RelayTable {
    /// Creates the session of `key` on its first BIND, within the limits.
    pub(super) fn open_session(
        &mut self,
        key: PairKey,
        peer: PeerId,
        target: PeerId,
        now: Instant,
    ) -> Result<(), Denied> {
        if self.sessions.contains_key(&key) {
            return Ok(());
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(Denied::Refuse(RefuseCode::Full));
        }
        let crowded = |p: &PeerId| {
            self.by_peer
                .get(p)
                .is_some_and(|s| s.len() >= MAX_SESSIONS_PER_PEER)
        };
        if crowded(&peer) || crowded(&target) {
            return Err(Denied::Refuse(RefuseCode::Full));
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
        Ok(())
    }

    /// An authenticated RELEASE by `peer` of its session with `target`,
    /// echoing `echo` with `counter`: frees the session if `peer`'s side
    /// exists, the counter is fresh and the echo is one of the side's
    /// channels. True if it did.
    pub fn release(&mut self, peer: PeerId, target: PeerId, echo: u64, counter: u64) -> bool {
        let (key, side) = pair(peer, target);
        let Some(mine) = self.sessions.get(&key).and_then(|s| s.sides[side].as_ref()) else {
            return false;
        };
        if counter <= mine.highest {
            self.stats.dropped_replayed += 1;
            return false;
        }
        if !mine.knows(echo) {
            return false;
        }
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

    pub(super) fn remove(&mut self, key: PairKey) -> bool {
        let Some(session) = self.sessions.remove(&key) else {
            return false;
        };
        for side in session.sides.iter().flatten() {
            for route in [side.route, side.challenge].iter().flatten() {
                self.channels.remove(&route.channel);
            }
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
}
