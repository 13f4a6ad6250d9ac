//! The memory store's deadlines: lease deadlines of online records and
//! purge deadlines of offline ones, each in a `BTreeSet` ordered by time,
//! swept by one task that sleeps until the earliest and is woken through a
//! `Notify` when an earlier one appears (mini-redis' `purge_expired_tasks`).

use std::sync::Arc;
use std::time::Duration;

use p2pchat::{PeerId, SessionToken};
use tokio::time::Instant;

use super::{Claim, Entry, MemoryStore, State};

/// Shortest time between two info lines about expired leases.
pub const EXPIRY_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Expired leases not yet reported at info.
struct ExpirySummary {
    pending: usize,
    last: Instant,
}

impl ExpirySummary {
    fn new(now: Instant) -> Self {
        Self {
            pending: 0,
            last: now,
        }
    }

    /// Adds `expired` and logs the summary when one is due; returns when
    /// the next is due, if any is pending.
    fn add(&mut self, expired: usize, now: Instant) -> Option<Instant> {
        self.pending += expired;
        if self.pending == 0 {
            return None;
        }
        let due = self.last + EXPIRY_SUMMARY_INTERVAL;
        if now < due {
            return Some(due);
        }
        tracing::info!(
            expired = self.pending,
            "leases expired since the last summary"
        );
        self.pending = 0;
        self.last = now;
        None
    }
}
use crate::store::{ChangeKind, LeftReason, PeerRecord, StoreError};

impl MemoryStore {
    /// Queues a lease deadline, waking the expiry task when it is the
    /// earliest.
    pub(super) fn schedule_lease(&self, state: &mut State, deadline: Instant, peer: PeerId) {
        let earliest = state.leases.first().map(|(d, _)| *d);
        state.leases.insert((deadline, peer));
        if earliest.is_none_or(|e| deadline < e) {
            self.shared.expiry_wake.notify_one();
        }
    }

    /// Expires due leases and purges due offline records. Returns the next
    /// deadline and how many leases ran out, or `None` when shutting down.
    fn expire_due(&self) -> Option<(Option<Instant>, usize)> {
        let mut expired = 0;
        let now = Instant::now();
        let mut guard = self.state();
        let state = &mut *guard;
        if state.shutdown {
            return None;
        }
        while let Some(&(deadline, id)) = state.leases.first() {
            if deadline > now {
                break;
            }
            state.leases.pop_first();
            let Some(entry) = state.peers.get_mut(&id) else {
                continue;
            };
            if entry.holder.is_some() {
                // An open inbox counts as alive.
                entry.deadline = now + self.config().lease;
                state.leases.insert((entry.deadline, id));
                continue;
            }
            state.claims.release(&id, &entry.claim);
            entry.deadline = now + self.config().offline_retention;
            state.purges.insert((entry.deadline, id));
            let mut info = (*entry.info).clone();
            info.online = false;
            info.inbox_open = false;
            entry.info = Arc::new(info);
            let info = entry.info.clone();
            state.version += 1;
            state.online -= 1;
            expired += 1;
            tracing::debug!(peer_id = %id, "lease expired");
            let reason = ChangeKind::Left(LeftReason::LeaseExpired);
            state.feed.publish(reason, info);
        }
        while let Some(&(deadline, id)) = state.purges.first() {
            if deadline > now {
                break;
            }
            state.purges.pop_first();
            if state.peers.remove(&id).is_some() {
                state.version += 1;
            }
        }
        let next_lease = state.leases.first().map(|(d, _)| *d);
        let next_purge = state.purges.first().map(|(d, _)| *d);
        let next = match (next_lease, next_purge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some((next, expired))
    }
}

impl State {
    /// Stores `info` as its peer's entry (new, or replacing the old one's
    /// record, token, claim and deadline), after unscheduling the old
    /// deadline. A takeover also drops the old holder.
    pub(super) fn put(
        &mut self,
        info: Arc<PeerRecord>,
        token: SessionToken,
        claim: Claim,
        deadline: Instant,
        took_over: bool,
    ) {
        let id = info.peer_id;
        match self.peers.get_mut(&id) {
            Some(entry) => {
                if entry.info.online {
                    self.leases.remove(&(entry.deadline, id));
                } else {
                    self.purges.remove(&(entry.deadline, id));
                }
                entry.info = info;
                entry.deadline = deadline;
                entry.token = token;
                entry.claim = claim;
                if took_over {
                    entry.holder = None;
                }
            }
            None => {
                let entry = Entry {
                    info,
                    token,
                    deadline,
                    holder: None,
                    claim,
                };
                self.peers.insert(id, entry);
            }
        }
        self.version += 1;
    }

    /// Removes a record's pending deadline (its lease when online, its
    /// purge when offline).
    pub(super) fn unschedule(&mut self, online: bool, deadline: Instant, peer: PeerId) {
        if online {
            self.leases.remove(&(deadline, peer));
        } else {
            self.purges.remove(&(deadline, peer));
        }
    }

    /// Makes room for a new record by evicting the offline record closest
    /// to its purge; refuses when every record is online.
    pub(super) fn evict_one(&mut self, limit: usize) -> Result<(), StoreError> {
        match self.purges.pop_first() {
            Some((_, evicted)) => {
                self.peers.remove(&evicted);
                self.version += 1;
                Ok(())
            }
            None => Err(StoreError::Full { limit }),
        }
    }
}

/// The sweeping task: runs until the store shuts down. Expiries are logged
/// at debug one by one and at info as one summary line per
/// [`EXPIRY_SUMMARY_INTERVAL`] at most, however many leases run out.
pub(super) async fn run(store: MemoryStore) {
    let mut summary = ExpirySummary::new(Instant::now());
    while let Some((next, expired)) = store.expire_due() {
        let summary_due = summary.add(expired, Instant::now());
        let next = match (next, summary_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            Some(when) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(when) => {}
                    _ = store.shared.expiry_wake.notified() => {}
                }
            }
            None => store.shared.expiry_wake.notified().await,
        }
    }
    tracing::debug!("store expiry task stopped");
}
