//! The memory store's deadlines: lease deadlines of online records and
//! purge deadlines of offline ones, each in a `BTreeSet` ordered by time,
//! swept by one task that sleeps until the earliest and is woken through a
//! `Notify` when an earlier one appears (mini-redis' `purge_expired_tasks`).

use std::sync::Arc;

use p2pchat::PeerId;
use tokio::time::Instant;

use super::{MemoryStore, State};
use crate::store::{ChangeKind, LeftReason, StoreError};

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
    /// deadline, or `None` when shutting down.
    fn expire_due(&self) -> Option<Option<Instant>> {
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
            entry.deadline = now + self.config().offline_retention;
            state.purges.insert((entry.deadline, id));
            let mut info = (*entry.info).clone();
            info.online = false;
            info.inbox_open = false;
            entry.info = Arc::new(info);
            let info = entry.info.clone();
            state.version += 1;
            state.online -= 1;
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
        Some(match (next_lease, next_purge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

impl State {
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

/// The sweeping task: runs until the store shuts down.
pub(super) async fn run(store: MemoryStore) {
    while let Some(next) = store.expire_due() {
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
