//! Small bounded records the session table keeps: closed sessions
//! (tombstones) and the budget for answering strangers.

use std::collections::HashMap;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::time::Instant;

/// How long a closed session's remote session id is remembered, so a hello
/// of that old session still in flight (crossing our `disconnect`) does
/// not open a new one.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(30);

/// Most closed sessions remembered ([`TOMBSTONE_TTL`]).
pub const MAX_TOMBSTONES: usize = 256;

/// Most `disconnect` answers per second to seed-protocol datagrams from
/// peers we have no session with (they tell a half-open peer to close at
/// once; bounded so a flood of spoofed datagrams cannot turn us into a
/// reflector).
pub const MAX_STRANGER_REPLIES_PER_SEC: u32 = 20;

/// Recently closed sessions: peer -> (its session id then, until when).
#[derive(Debug, Default)]
pub struct Tombstones {
    closed: HashMap<PeerId, (Option<u64>, Instant)>,
}

impl Tombstones {
    /// Remembers a closed session for [`TOMBSTONE_TTL`] (within
    /// [`MAX_TOMBSTONES`]).
    pub fn bury(&mut self, peer: PeerId, remote_session: Option<u64>, now: Instant) {
        self.closed.retain(|_, (_, until)| *until > now);
        if self.closed.len() < MAX_TOMBSTONES {
            self.closed
                .insert(peer, (remote_session, now + TOMBSTONE_TTL));
        }
    }

    /// Whether a hello with `session` belongs to a session with `peer` we
    /// closed recently.
    pub fn is_buried(&self, peer: PeerId, session: Option<u64>, now: Instant) -> bool {
        self.closed
            .get(&peer)
            .is_some_and(|(old, until)| now < *until && old.is_some() && *old == session)
    }
}

/// Most probes per second, over all sessions together, to candidates of
/// sessions peers asked for (connect requests) that have not answered.
/// Each such session already has its own budget
/// (`session::MAX_PROBES_PER_CANDIDATE` for each of at most
/// `session::MAX_UNSOLICITED_CANDIDATES`, 12 probes); this one bounds many
/// callers at once: at most 64 x `session::MAX_PROBE_HELLO_BYTES` (about
/// 15 KB) a second. Five simultaneous connect requests fit in full.
pub const MAX_UNSOLICITED_PROBES_PER_SEC: u32 = 64;

/// Most first handshake messages from strangers examined per second (each
/// costs a key exchange and, if valid, one answer): bounds the CPU and the
/// reflection a flood of them can get out of us.
pub const MAX_HANDSHAKE_ANSWERS_PER_SEC: u32 = 64;

/// A per-second budget of answers to strangers.
#[derive(Debug)]
pub struct ReplyBudget {
    since: Instant,
    used: u32,
    per_sec: u32,
}

impl ReplyBudget {
    /// A full budget of [`MAX_STRANGER_REPLIES_PER_SEC`] from `now`.
    pub fn new(now: Instant) -> ReplyBudget {
        ReplyBudget::per_second(MAX_STRANGER_REPLIES_PER_SEC, now)
    }

    /// A full budget of `per_sec` answers a second from `now`.
    pub fn per_second(per_sec: u32, now: Instant) -> ReplyBudget {
        ReplyBudget {
            since: now,
            used: 0,
            per_sec,
        }
    }

    /// Takes one answer; false when this second's are used up.
    pub fn take(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.since) >= Duration::from_secs(1) {
            self.since = now;
            self.used = 0;
        }
        if self.used >= self.per_sec {
            return false;
        }
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_expire_and_match_only_the_old_session() {
        let now = Instant::now();
        let peer = PeerId::random();
        let mut graves = Tombstones::default();
        graves.bury(peer, Some(7), now);
        assert!(graves.is_buried(peer, Some(7), now));
        assert!(!graves.is_buried(peer, Some(8), now), "a new session");
        assert!(!graves.is_buried(peer, Some(7), now + TOMBSTONE_TTL));
        graves.bury(PeerId::random(), None, now);
        assert!(!graves.is_buried(peer, None, now));
    }

    #[test]
    fn the_graveyard_is_bounded_and_frees_expired_graves() {
        let now = Instant::now();
        let mut graves = Tombstones::default();
        let buried: Vec<PeerId> = (0..MAX_TOMBSTONES).map(|_| PeerId::random()).collect();
        for peer in &buried {
            graves.bury(*peer, Some(1), now);
        }
        let late = PeerId::random();
        graves.bury(late, Some(1), now);
        assert!(!graves.is_buried(late, Some(1), now), "one past the limit");
        assert!(buried.iter().all(|p| graves.is_buried(*p, Some(1), now)));
        // Once the old graves expire there is room again.
        graves.bury(late, Some(1), now + TOMBSTONE_TTL);
        assert!(graves.is_buried(late, Some(1), now + TOMBSTONE_TTL));
    }

    #[test]
    fn the_handshake_budget_is_its_own_at_its_edge() {
        let now = Instant::now();
        let mut budget = ReplyBudget::per_second(MAX_HANDSHAKE_ANSWERS_PER_SEC, now);
        for _ in 0..MAX_HANDSHAKE_ANSWERS_PER_SEC {
            assert!(budget.take(now));
        }
        assert!(!budget.take(now + Duration::from_millis(999)));
        assert!(budget.take(now + Duration::from_secs(1)));
    }

    #[test]
    fn the_reply_budget_refills_every_second() {
        let now = Instant::now();
        let mut budget = ReplyBudget::new(now);
        for _ in 0..MAX_STRANGER_REPLIES_PER_SEC {
            assert!(budget.take(now));
        }
        assert!(!budget.take(now));
        assert!(budget.take(now + Duration::from_secs(1)));
    }
}
