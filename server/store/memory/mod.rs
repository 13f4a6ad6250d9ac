//! The embedded [`PeerStore`]: records, tokens, leases and the change feed
//! in this process's memory.
//!
//! Shape (after mini-redis' `db.rs`): a cheap-to-clone handle around
//! `Arc<Shared>`; the state sits behind a `std::sync::Mutex` that is never
//! held across an `.await`; one background task sleeps until the next lease
//! or retention deadline and is woken through a `Notify` when an earlier one
//! appears; a [`MemoryStoreGuard`] stops that task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2pchat::{PeerId, SessionToken};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod claims;
mod expiry;
mod record;

use super::feed::Feed;
use super::{
    ChangeKind, Credential, Held, HoldId, KEY_MISMATCH, LeftReason, ListQuery, Page, PeerRecord,
    PeerStore, PeerView, Registered, Registration, StoreConfig, StoreCounts, StoreError,
    StoreFuture, TOKEN_MISMATCH, WatchStream, default_username,
};
use claims::{Claim, Claims};
use record::{record_for, subscribe, token_for};

/// Handle to the in-memory store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: StoreConfig,
    state: Mutex<State>,
    /// Wakes the expiry task when an earlier deadline appears or on shutdown.
    expiry_wake: Notify,
}

#[derive(Debug)]
struct State {
    peers: BTreeMap<PeerId, Entry>,
    /// Lease deadlines of online peers.
    leases: BTreeSet<(Instant, PeerId)>,
    /// Purge deadlines of offline peers.
    purges: BTreeSet<(Instant, PeerId)>,
    online: usize,
    /// Source slots and name skeletons of online records.
    claims: Claims,
    feed: Feed,
    /// See [`StoreCounts::version`]: bumped wherever a record is inserted,
    /// replaced or removed.
    version: u64,
    /// The online peers at `version`, built once and shared by every
    /// watcher that starts before the next change.
    online_view: Option<(u64, PeerView)>,
    shutdown: bool,
}

#[derive(Debug)]
struct Entry {
    info: Arc<PeerRecord>,
    token: SessionToken,
    /// Lease deadline when online, purge deadline when offline.
    deadline: Instant,
    /// The open inbox keeping the lease alive, if any.
    holder: Option<HoldId>,
    /// What the record claims while online (source slot, name skeleton).
    claim: Claim,
}

/// Stops the store's expiry task when dropped or [`stopped`](Self::stop)
/// (mini-redis' `DbDropGuard`); the store then refuses new registrations.
#[derive(Debug)]
pub struct MemoryStoreGuard {
    store: MemoryStore,
    task: Option<JoinHandle<()>>,
}

impl MemoryStoreGuard {
    /// Stops the expiry task and waits for it to end.
    pub async fn stop(mut self) {
        self.store.shutdown();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::error!(%err, "store expiry task failed");
        }
    }
}

impl Drop for MemoryStoreGuard {
    fn drop(&mut self) {
        self.store.shutdown();
    }
}

impl MemoryStore {
    /// Creates a store and starts its expiry task on the current tokio
    /// runtime. Keep the guard alive as long as the store is used.
    pub fn new(config: StoreConfig) -> (MemoryStore, MemoryStoreGuard) {
        // Revisions start at the start time in microseconds, so they keep
        // increasing across server restarts: a client resuming with a revision
        // from an earlier run is always older than this run's history.
        let revision = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let feed = Feed::new(revision, config.history_len, config.watch_buffer);
        let claims = Claims::new(config.registrations_per_source);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                peers: BTreeMap::new(),
                leases: BTreeSet::new(),
                purges: BTreeSet::new(),
                online: 0,
                claims,
                feed,
                version: revision,
                online_view: None,
                shutdown: false,
            }),
            expiry_wake: Notify::new(),
        });
        let store = MemoryStore { shared };
        let task = tokio::spawn(expiry::run(store.clone()));
        let guard = MemoryStoreGuard {
            store: store.clone(),
            task: Some(task),
        };
        (store, guard)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than stopping the server would.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// See [`PeerStore::register`].
    fn register_now(&self, reg: Registration) -> Result<Registered, StoreError> {
        let max_endpoints = self.config().max_endpoints;
        if reg.endpoints.len() > max_endpoints {
            return Err(StoreError::InvalidArgument {
                field: "endpoints",
                message: format!(
                    "at most {max_endpoints} endpoints per peer, got {}",
                    reg.endpoints.len()
                ),
            });
        }
        let lease = self.config().lease_for(reg.via);
        let mut guard = self.state();
        let state = &mut *guard;
        if state.shutdown {
            return Err(StoreError::ShuttingDown);
        }
        if reg.public_key.is_some_and(|key| !key.owns(&reg.peer_id)) {
            return Err(StoreError::PermissionDenied(KEY_MISMATCH));
        }
        let existing = state.peers.get(&reg.peer_id);
        let (token, took_over) = token_for(existing, &reg)?;
        let previous = existing.map(|e| e.info.clone());
        // Only an online record holds a claim; an offline one comes back
        // as a new registration of its source and name.
        let current = existing.filter(|e| e.info.online).map(|e| e.claim.clone());
        let username = reg
            .username
            .clone()
            .unwrap_or_else(|| default_username(&reg.peer_id));
        let claim = Claim::of(reg.observed_ip, &username);
        state
            .claims
            .check(&reg.peer_id, current.as_ref(), &claim, &username)?;
        if previous.is_none() && state.peers.len() >= self.config().max_peers {
            state.evict_one(self.config().max_peers)?;
        }
        let mut info = record_for(reg, previous.as_deref());
        if took_over {
            // The previous holder's inbox no longer speaks for the peer.
            info.inbox_open = false;
        }
        state.claims.replace(info.peer_id, current.as_ref(), &claim);
        let info = Arc::new(info);
        let deadline = Instant::now() + lease;
        state.put(info.clone(), token, claim, deadline, took_over);
        self.schedule_lease(state, deadline, info.peer_id);
        match previous {
            Some(old) if old.online => {
                if !old.same_visible(&info) {
                    state.feed.publish(ChangeKind::Updated, info.clone());
                }
            }
            _ => {
                state.online += 1;
                state.feed.publish(ChangeKind::Joined, info.clone());
            }
        }
        Ok(Registered {
            peer: info,
            token,
            lease,
            revision: state.feed.revision(),
            took_over,
        })
    }

    /// See [`PeerStore::refresh`].
    fn refresh_now(&self, peer: &PeerId, token: &Credential) -> Result<Duration, StoreError> {
        let mut guard = self.state();
        let state = &mut *guard;
        let entry = state.peers.get_mut(peer).ok_or(StoreError::NotFound)?;
        if !token.matches(&entry.token) {
            return Err(StoreError::PermissionDenied(TOKEN_MISMATCH));
        }
        if !entry.info.online {
            return Err(StoreError::PeerOffline);
        }
        let lease = self.config().lease_for(entry.info.registered_via);
        let old = std::mem::replace(&mut entry.deadline, Instant::now() + lease);
        let deadline = entry.deadline;
        state.leases.remove(&(old, *peer));
        self.schedule_lease(state, deadline, *peer);
        Ok(lease)
    }

    /// See [`PeerStore::get`].
    fn get_now(&self, peer: &PeerId) -> Result<Arc<PeerRecord>, StoreError> {
        self.state()
            .peers
            .get(peer)
            .map(|e| e.info.clone())
            .ok_or(StoreError::NotFound)
    }

    /// See [`PeerStore::list`].
    fn list_now(&self, query: ListQuery) -> Page {
        use std::ops::Bound;
        let state = self.state();
        let lower = match query.after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let peers = state
            .peers
            .range((lower, Bound::Unbounded))
            .map(|(_, e)| &e.info)
            .filter(|info| query.include_offline || info.online)
            .take(query.limit)
            .cloned()
            .collect();
        let total = if query.include_offline {
            state.peers.len()
        } else {
            state.online
        };
        Page {
            peers,
            total,
            version: state.version,
        }
    }

    /// See [`PeerStore::counts`].
    fn counts_now(&self) -> StoreCounts {
        let state = self.state();
        StoreCounts {
            total: state.peers.len(),
            online: state.online,
            version: state.version,
        }
    }

    /// See [`PeerStore::verify`].
    fn verify_now(&self, peer: &PeerId, token: &Credential) -> Result<Arc<PeerRecord>, StoreError> {
        let state = self.state();
        let entry = state.peers.get(peer).ok_or(StoreError::NotFound)?;
        if !token.matches(&entry.token) {
            return Err(StoreError::PermissionDenied(TOKEN_MISMATCH));
        }
        Ok(entry.info.clone())
    }

    /// See [`PeerStore::unregister`].
    fn unregister_now(&self, peer: &PeerId, token: &Credential) -> Result<u64, StoreError> {
        let mut guard = self.state();
        let state = &mut *guard;
        let entry = state.peers.get(peer).ok_or(StoreError::NotFound)?;
        if !token.matches(&entry.token) {
            return Err(StoreError::PermissionDenied(TOKEN_MISMATCH));
        }
        let Some(entry) = state.peers.remove(peer) else {
            return Err(StoreError::NotFound);
        };
        state.unschedule(entry.info.online, entry.deadline, *peer);
        state.version += 1;
        if entry.info.online {
            state.claims.release(peer, &entry.claim);
            state.online -= 1;
            let mut info = (*entry.info).clone();
            info.online = false;
            info.inbox_open = false;
            let reason = ChangeKind::Left(LeftReason::Unregistered);
            state.feed.publish(reason, Arc::new(info));
        }
        Ok(state.feed.revision())
    }

    /// See [`PeerStore::hold`].
    fn hold_now(
        &self,
        peer: &PeerId,
        token: &Credential,
        holder: HoldId,
    ) -> Result<Held, StoreError> {
        let mut guard = self.state();
        let state = &mut *guard;
        if state.shutdown {
            return Err(StoreError::ShuttingDown);
        }
        let entry = state.peers.get_mut(peer).ok_or(StoreError::NotFound)?;
        if !token.matches(&entry.token) {
            return Err(StoreError::PermissionDenied(TOKEN_MISMATCH));
        }
        if !entry.info.online {
            return Err(StoreError::PeerOffline);
        }
        let lease = self.config().lease_for(entry.info.registered_via);
        // A newer inbox replacing an older one changes nothing visible.
        let replaced = entry.holder.replace(holder).is_some();
        if !replaced {
            let mut info = (*entry.info).clone();
            info.inbox_open = true;
            info.last_seen = SystemTime::now();
            entry.info = Arc::new(info);
            state.feed.publish(ChangeKind::Updated, entry.info.clone());
            state.version += 1;
        }
        Ok(Held {
            peer: entry.info.clone(),
            lease,
            revision: state.feed.revision(),
        })
    }

    /// See [`PeerStore::release`].
    fn release_now(&self, peer: &PeerId, holder: HoldId) {
        let mut guard = self.state();
        let state = &mut *guard;
        let Some(entry) = state.peers.get_mut(peer) else {
            return;
        };
        if entry.holder != Some(holder) {
            return; // replaced by a newer holder, or already released
        }
        entry.holder = None;
        if !entry.info.online {
            return;
        }
        // The hold kept the peer alive until now; its lease runs from here.
        let lease = self.config().lease_for(entry.info.registered_via);
        let old = std::mem::replace(&mut entry.deadline, Instant::now() + lease);
        let deadline = entry.deadline;
        let mut info = (*entry.info).clone();
        info.inbox_open = false;
        info.last_seen = SystemTime::now();
        entry.info = Arc::new(info);
        let info = entry.info.clone();
        state.version += 1;
        state.leases.remove(&(old, *peer));
        self.schedule_lease(state, deadline, *peer);
        state.feed.publish(ChangeKind::Updated, info);
    }

    /// See [`PeerStore::watch`].
    fn watch_now(&self, resume_from: Option<u64>) -> WatchStream {
        let mut state = self.state();
        let sub = subscribe(&mut state);
        let store = self.clone();
        let resubscribe = Box::new(move || subscribe(&mut store.state()));
        state.feed.watch(resume_from, sub, resubscribe)
    }

    /// Stops the expiry task and refuses new registrations and holds.
    fn shutdown(&self) {
        self.state().shutdown = true;
        self.shared.expiry_wake.notify_one();
    }
}

/// The memory store answers at once: every future is already complete.
impl PeerStore for MemoryStore {
    fn register(&self, reg: Registration) -> StoreFuture<'_, Registered> {
        Box::pin(std::future::ready(self.register_now(reg)))
    }

    fn refresh<'a>(&'a self, peer: &'a PeerId, token: &'a Credential) -> StoreFuture<'a, Duration> {
        Box::pin(std::future::ready(self.refresh_now(peer, token)))
    }

    fn unregister<'a>(&'a self, peer: &'a PeerId, token: &'a Credential) -> StoreFuture<'a, u64> {
        Box::pin(std::future::ready(self.unregister_now(peer, token)))
    }

    fn get<'a>(&'a self, peer: &'a PeerId) -> StoreFuture<'a, Arc<PeerRecord>> {
        Box::pin(std::future::ready(self.get_now(peer)))
    }

    fn list(&self, query: ListQuery) -> StoreFuture<'_, Page> {
        Box::pin(std::future::ready(Ok(self.list_now(query))))
    }

    fn counts(&self) -> StoreFuture<'_, StoreCounts> {
        Box::pin(std::future::ready(Ok(self.counts_now())))
    }

    fn verify<'a>(
        &'a self,
        peer: &'a PeerId,
        token: &'a Credential,
    ) -> StoreFuture<'a, Arc<PeerRecord>> {
        Box::pin(std::future::ready(self.verify_now(peer, token)))
    }

    fn hold<'a>(
        &'a self,
        peer: &'a PeerId,
        token: &'a Credential,
        holder: HoldId,
    ) -> StoreFuture<'a, Held> {
        Box::pin(std::future::ready(self.hold_now(peer, token, holder)))
    }

    fn release<'a>(&'a self, peer: &'a PeerId, holder: HoldId) -> StoreFuture<'a, ()> {
        self.release_now(peer, holder);
        Box::pin(std::future::ready(Ok(())))
    }

    fn watch(&self, resume_from: Option<u64>) -> StoreFuture<'_, WatchStream> {
        Box::pin(std::future::ready(Ok(self.watch_now(resume_from))))
    }
}
