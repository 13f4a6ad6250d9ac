//! Rendezvous: routing a `RequestConnect` to the target's open inbox.
//!
//! An inbox is a peer saying "tell me when someone wants to connect". While
//! it is open the store holds the peer's lease ([`PeerStore::hold`]); when it
//! closes the inbox is released explicitly (no drop guard calling back), and
//! the lease runs again. Which inboxes are open is this process's business,
//! not the store's: with several servers behind one store, each routes to the
//! inboxes its own clients hold.
//!
//! [`Rendezvous::run`] follows the store's change feed so an inbox ends as
//! soon as its peer leaves, whichever server took the peer out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use p2pchat::PeerId;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use uuid::Uuid;

use crate::net::shutdown::Shutdown;
use crate::quota::{DEFAULT_CONNECTS_PER_TARGET, Quota, QuotaExceeded, Rates};
use crate::store::{ChangeKind, Credential, HoldId, PeerRecord, PeerStore, StoreError, WatchEvent};

/// Connect requests buffered per inbox; past it a request is not delivered
/// (the caller learns `target_notified: false` and the target still finds
/// the caller through WatchPeers).
pub const INBOX_BUFFER: usize = 16;

/// How long [`Rendezvous::run`] waits before watching again when the store
/// cannot be watched.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Everything a connect request or an inbox can be refused for.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RendezvousError {
    /// The store refused (unknown caller, wrong token, offline caller...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A peer asked to connect to itself.
    #[error("a peer cannot connect to itself")]
    SelfConnect,
    /// The peer to connect to is unknown.
    #[error("Target peer not found")]
    TargetNotFound,
    /// The peer to connect to is offline.
    #[error("Target peer is offline")]
    TargetOffline,
    /// The target was sent as many connect requests as it may be this
    /// second.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
}

/// A connect request pushed to a peer's inbox.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// Identifies the rendezvous; both sides see the same id.
    pub connect_id: Uuid,
    /// The peer asking to connect.
    pub from: Arc<PeerRecord>,
}

/// The result of a connect request, for the caller.
#[derive(Debug, Clone)]
pub struct ConnectOutcome {
    /// Identifies the rendezvous.
    pub connect_id: Uuid,
    /// The target, with its endpoints.
    pub target: Arc<PeerRecord>,
    /// True when the target was told on its open inbox.
    pub target_notified: bool,
}

/// An open inbox. Hand it back to [`Rendezvous::close`] when its stream
/// ends; until then the peer's lease is held.
#[derive(Debug)]
pub struct Inbox {
    peer: PeerId,
    id: HoldId,
    lease: Duration,
    requests: mpsc::Receiver<ConnectRequest>,
}

impl Inbox {
    /// Lease length that applies again once the inbox closes.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The next connect request; `None` once the inbox was replaced by a
    /// newer one or its peer left.
    pub async fn recv(&mut self) -> Option<ConnectRequest> {
        self.requests.recv().await
    }
}

/// Routes connect requests to open inboxes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Rendezvous {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn PeerStore>,
    inboxes: Mutex<HashMap<PeerId, Slot>>,
    next_id: AtomicU64,
    /// Connect requests per second each target may be sent.
    per_target: Rates<PeerId>,
}

#[derive(Debug)]
struct Slot {
    id: HoldId,
    /// Store revision when the inbox opened: a departure at or below it is
    /// an earlier life of the peer and does not close this inbox.
    since: u64,
    sender: mpsc::Sender<ConnectRequest>,
}

impl Rendezvous {
    /// Routes through the inboxes of peers in `store`, with the default
    /// per-target rate.
    pub fn new(store: Arc<dyn PeerStore>) -> Rendezvous {
        Rendezvous::with_target_rate(store, DEFAULT_CONNECTS_PER_TARGET)
    }

    /// Routes through the inboxes of peers in `store`; each target may be
    /// sent `per_second` connect requests a second (also the burst), so a
    /// flood of callers cannot make one peer send without bound.
    pub fn with_target_rate(store: Arc<dyn PeerStore>, per_second: u32) -> Rendezvous {
        Rendezvous {
            shared: Arc::new(Shared {
                store,
                inboxes: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                per_target: Rates::new(Quota::ConnectsPerTarget, per_second),
            }),
        }
    }

    fn inboxes(&self) -> MutexGuard<'_, HashMap<PeerId, Slot>> {
        // The map stays consistent whatever panicked while holding it.
        self.shared
            .inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens the inbox of `peer` (replacing any earlier one, whose stream
    /// then ends). Needs the peer's token; the peer must be online.
    pub async fn open(&self, peer: &PeerId, token: &Credential) -> Result<Inbox, RendezvousError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let held = self.shared.store.hold(peer, token, id).await?;
        let (sender, requests) = mpsc::channel(INBOX_BUFFER);
        let slot = Slot {
            id,
            since: held.revision,
            sender,
        };
        // Dropping a replaced slot's sender ends the older inbox's stream.
        self.inboxes().insert(*peer, slot);
        Ok(Inbox {
            peer: *peer,
            id,
            lease: held.lease,
            requests,
        })
    }

    /// Closes an inbox whose stream ended: the peer's lease runs again.
    pub async fn close(&self, inbox: Inbox) {
        {
            let mut inboxes = self.inboxes();
            if inboxes.get(&inbox.peer).is_some_and(|s| s.id == inbox.id) {
                inboxes.remove(&inbox.peer);
            }
        }
        // The store ignores the release of a holder it no longer knows.
        if let Err(err) = self.shared.store.release(&inbox.peer, inbox.id).await {
            tracing::warn!(peer = %inbox.peer, %err, "cannot release the inbox's lease");
        }
    }

    /// Asks `target` to connect with `from`: pushes the request to the
    /// target's inbox (if open here) and returns the target's record.
    pub async fn request_connect(
        &self,
        from: &PeerId,
        token: &Credential,
        target: &PeerId,
    ) -> Result<ConnectOutcome, RendezvousError> {
        let store = &self.shared.store;
        let caller = store.verify(from, token).await?;
        if !caller.online {
            return Err(StoreError::PeerOffline.into());
        }
        if from == target {
            return Err(RendezvousError::SelfConnect);
        }
        let callee = match store.get(target).await {
            Ok(callee) => callee,
            Err(StoreError::NotFound) => return Err(RendezvousError::TargetNotFound),
            Err(err) => return Err(err.into()),
        };
        if !callee.online {
            return Err(RendezvousError::TargetOffline);
        }
        // Counted only for requests that pass every other check, so
        // refused strangers do not spend the target's budget.
        self.shared.per_target.check(*target)?;
        let connect_id = Uuid::new_v4();
        let target_notified = self.inboxes().get(target).is_some_and(|slot| {
            slot.sender
                .try_send(ConnectRequest {
                    connect_id,
                    from: caller.clone(),
                })
                .is_ok()
        });
        Ok(ConnectOutcome {
            connect_id,
            target: callee,
            target_notified,
        })
    }

    /// Ends the inboxes of peers that leave the store until `shutdown`
    /// fires. Spawn it once per server.
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            let mut feed = match self.shared.store.watch(None).await {
                Ok(feed) => feed,
                Err(err) => {
                    tracing::warn!(%err, "rendezvous cannot follow the store; retrying");
                    tokio::select! {
                        _ = shutdown.recv() => return,
                        _ = tokio::time::sleep(REWATCH_DELAY) => continue,
                    }
                }
            };
            loop {
                let event = tokio::select! {
                    _ = shutdown.recv() => return,
                    event = feed.next() => event,
                };
                match event {
                    None => break,
                    Some(WatchEvent::Change(change)) => {
                        if matches!(change.kind, ChangeKind::Left(_)) {
                            self.peer_left(&change.peer.peer_id, change.revision);
                        }
                    }
                    Some(WatchEvent::Snapshot {
                        revision, peers, ..
                    }) => self.retain_online(revision, &peers),
                }
            }
        }
    }

    /// Ends the inbox of a peer whose registration was taken over (a proof
    /// of its key, without the old token) at `revision`: it belongs to the
    /// previous holder. An inbox opened after the takeover stays.
    pub fn taken_over(&self, peer: &PeerId, revision: u64) {
        let mut inboxes = self.inboxes();
        if inboxes.get(peer).is_some_and(|s| s.since <= revision) {
            inboxes.remove(peer);
        }
    }

    /// Ends the inbox of a peer that left at `revision`.
    fn peer_left(&self, peer: &PeerId, revision: u64) {
        let mut inboxes = self.inboxes();
        if inboxes.get(peer).is_some_and(|s| s.since < revision) {
            inboxes.remove(peer);
        }
    }

    /// Ends the inboxes, opened at or before `revision`, of peers not among
    /// the online `peers` of that revision (departures a lagging feed missed).
    fn retain_online(&self, revision: u64, peers: &[Arc<PeerRecord>]) {
        let mut inboxes = self.inboxes();
        inboxes.retain(|id, slot| {
            slot.since > revision || peers.binary_search_by(|p| p.peer_id.cmp(id)).is_ok()
        });
    }
}

#[cfg(test)]
#[path = "rendezvous_tests.rs"]
mod tests;
