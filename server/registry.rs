//! The in-memory peer registry: records, leases, ownership tokens, the ordered
//! change feed behind `WatchPeers`, and the inboxes used for rendezvous.
//!
//! One [`PeerRegistry`] sits behind both the gRPC service and the REST shim.
//! It knows nothing of either: it speaks in domain types and [`RegistryError`].
//!
//! Shape (after mini-redis' `db.rs`): a cheap-to-clone handle around
//! `Arc<Shared>`; the state sits behind a `std::sync::Mutex` that is never
//! held across an `.await`; one background task sleeps until the next lease
//! or retention deadline and is woken through a `Notify` when an earlier one
//! appears.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::Instant;
use uuid::Uuid;

use super::error::RegistryError;
use super::validate::{self, SessionToken};

/// Where a UDP endpoint of a peer was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// An address of one of the peer's own interfaces.
    Local,
    /// The peer's public address as learned through STUN.
    ServerReflexive,
    /// The IP the server saw the registration come from, with the peer's port.
    Observed,
}

/// One UDP address at which a peer may be reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub addr: SocketAddr,
    /// How it was learned.
    pub kind: EndpointKind,
}

/// Which API a registration came through. REST registrations get the longer
/// REST lease because the seed's clients never refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisteredVia {
    /// The gRPC service.
    Grpc,
    /// The REST shim.
    Rest,
}

/// What the registry knows about one peer. Shared as `Arc<PeerInfo>` so
/// snapshots and change events never copy strings.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The peer's UUID.
    pub peer_id: Uuid,
    /// Display name (validated: 1-64 characters, no control characters).
    pub username: String,
    /// The IP the registration came from.
    pub observed_ip: IpAddr,
    /// The UDP port the peer listens on.
    pub udp_port: u16,
    /// Endpoints to probe, the observed one included.
    pub endpoints: Vec<Endpoint>,
    /// True while the lease is valid.
    pub online: bool,
    /// When the server last heard from the peer.
    pub last_seen: SystemTime,
    /// Which API registered it.
    pub registered_via: RegisteredVia,
    /// True while the peer holds its inbox open.
    pub inbox_open: bool,
}

impl PeerInfo {
    /// `last_seen` in Unix seconds, as the seed's REST API reports it.
    pub fn last_seen_unix(&self) -> f64 {
        self.last_seen
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// A validated registration request.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The peer's UUID.
    pub peer_id: Uuid,
    /// Requested username; `None` means the default `user_<first 8 of id>`.
    pub username: Option<String>,
    /// UDP port the peer listens on.
    pub udp_port: u16,
    /// Endpoints the peer reports for itself.
    pub endpoints: Vec<Endpoint>,
    /// The token from an earlier registration, when refreshing.
    pub token: Option<String>,
    /// The IP the request came from.
    pub observed_ip: IpAddr,
    /// Which API it came through.
    pub via: RegisteredVia,
}

/// The outcome of a successful registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The record as stored.
    pub peer: Arc<PeerInfo>,
    /// Secret proving ownership of the peer_id.
    pub token: String,
    /// Lease granted.
    pub lease: Duration,
    /// Registry revision after the registration.
    pub revision: u64,
}

/// What happened to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The peer came online.
    Joined,
    /// The peer's details changed.
    Updated,
    /// The peer went offline.
    Left(LeftReason),
}

/// Why a peer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// It unregistered.
    Unregistered,
    /// Its lease ran out.
    LeaseExpired,
}

/// One entry of the ordered change feed.
#[derive(Debug, Clone)]
pub struct Change {
    /// Strictly increasing registry revision.
    pub revision: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The peer after the change.
    pub peer: Arc<PeerInfo>,
}

/// How a watch starts: with a snapshot, or with a replay of changes the
/// client missed since the revision it resumes from.
#[derive(Debug)]
pub enum WatchStart {
    /// Online peers at `revision`, in peer_id order.
    Snapshot {
        /// Revision the snapshot reflects.
        revision: u64,
        /// The online peers.
        peers: Vec<Arc<PeerInfo>>,
        /// True when a resume was asked for but could not be served.
        resume_unavailable: bool,
    },
    /// Changes after the client's revision, oldest first.
    Replay(Vec<Arc<Change>>),
}

/// A live subscription to the change feed.
#[derive(Debug)]
pub struct Watch {
    /// Where to start.
    pub start: WatchStart,
    /// Changes after the start, in order. Changes at or below the start
    /// revision never appear here (the subscription is taken under the same
    /// lock as the snapshot).
    pub changes: broadcast::Receiver<Arc<Change>>,
}

/// A connect request pushed to a peer's inbox.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// Identifies the rendezvous; both sides see the same id.
    pub connect_id: Uuid,
    /// The peer asking to connect.
    pub from: Arc<PeerInfo>,
}

/// The result of a connect request, for the caller.
#[derive(Debug, Clone)]
pub struct ConnectOutcome {
    /// Identifies the rendezvous.
    pub connect_id: Uuid,
    /// The target, with its endpoints.
    pub target: Arc<PeerInfo>,
    /// True when the target was told on its open inbox.
    pub target_notified: bool,
}

/// An open inbox. Dropping it closes the inbox and starts the peer's lease
/// running again.
#[derive(Debug)]
pub struct Inbox {
    /// Connect requests for this peer.
    pub requests: mpsc::Receiver<ConnectRequest>,
    guard: InboxGuard,
}

impl Inbox {
    /// Lease length that applies again once the inbox closes.
    pub fn lease(&self) -> Duration {
        self.guard.lease
    }
}

#[derive(Debug)]
struct InboxGuard {
    registry: PeerRegistry,
    peer_id: Uuid,
    inbox_id: u64,
    lease: Duration,
}

impl Drop for InboxGuard {
    fn drop(&mut self) {
        self.registry.close_inbox(self.peer_id, self.inbox_id);
    }
}

/// Limits and timings of the registry. Every limit is explicit.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Lease of a gRPC registration without refresh.
    pub lease: Duration,
    /// Lease of a REST registration. Longer, because the seed's REST clients
    /// register once and never refresh.
    pub rest_lease: Duration,
    /// How long an offline record (lease ran out) is kept so `/status` and
    /// `include_offline` can show it and its owner can come back with its
    /// token. Oldest offline records are evicted first when the registry is full.
    pub offline_retention: Duration,
    /// Most records (online and offline) held at once.
    pub max_peers: usize,
    /// Most endpoints one peer may register.
    pub max_endpoints: usize,
    /// Changes kept for watchers that resume after a reconnect.
    pub history_len: usize,
    /// Changes buffered per watcher before it is considered lagging.
    pub watch_buffer: usize,
    /// Connect requests buffered per inbox.
    pub inbox_buffer: usize,
}

impl RegistryConfig {
    /// The lease a registration through `via` gets.
    pub fn lease_for(&self, via: RegisteredVia) -> Duration {
        match via {
            RegisteredVia::Grpc => self.lease,
            RegisteredVia::Rest => self.rest_lease,
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            rest_lease: Duration::from_secs(600),
            offline_retention: Duration::from_secs(300),
            max_peers: 100_000,
            max_endpoints: 16,
            history_len: 4096,
            watch_buffer: 1024,
            inbox_buffer: 16,
        }
    }
}

/// Counts for the status endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryCounts {
    /// All records, offline ones included.
    pub total: usize,
    /// Records with a valid lease.
    pub online: usize,
}

/// Handle to the shared registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerRegistry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: RegistryConfig,
    state: Mutex<State>,
    /// Wakes the expiry task when an earlier deadline appears or on shutdown.
    expiry_wake: Notify,
    changes: broadcast::Sender<Arc<Change>>,
}

#[derive(Debug)]
struct State {
    peers: BTreeMap<Uuid, Entry>,
    /// Lease deadlines of online peers.
    leases: BTreeSet<(Instant, Uuid)>,
    /// Purge deadlines of offline peers.
    purges: BTreeSet<(Instant, Uuid)>,
    online: usize,
    revision: u64,
    history: VecDeque<Arc<Change>>,
    next_inbox_id: u64,
    shutdown: bool,
}

#[derive(Debug)]
struct Entry {
    info: Arc<PeerInfo>,
    token: SessionToken,
    /// Lease deadline when online, purge deadline when offline.
    deadline: Instant,
    inbox: Option<(u64, mpsc::Sender<ConnectRequest>)>,
}

impl PeerRegistry {
    /// Creates a registry and starts its expiry task on the current tokio
    /// runtime. Keep the returned guard alive as long as the registry is used:
    /// dropping it stops the task.
    pub fn new(config: RegistryConfig) -> (PeerRegistry, RegistryDropGuard) {
        let (changes, _) = broadcast::channel(config.watch_buffer.max(1));
        // Revisions start at the start time in microseconds, so they keep
        // increasing across server restarts: a client resuming with a revision
        // from an earlier run is always older than this run's history.
        let revision = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                peers: BTreeMap::new(),
                leases: BTreeSet::new(),
                purges: BTreeSet::new(),
                online: 0,
                revision,
                history: VecDeque::new(),
                next_inbox_id: 1,
                shutdown: false,
            }),
            expiry_wake: Notify::new(),
            changes,
        });
        tokio::spawn(expire_task(shared.clone()));
        let registry = PeerRegistry { shared };
        let guard = RegistryDropGuard {
            registry: registry.clone(),
        };
        (registry, guard)
    }

    /// The registry's limits and timings.
    pub fn config(&self) -> &RegistryConfig {
        &self.shared.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than stopping the server would.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new peer or refreshes/updates an existing one.
    pub fn register(&self, reg: Registration) -> Result<Registered, RegistryError> {
        if reg.endpoints.len() > self.shared.config.max_endpoints {
            return Err(RegistryError::InvalidArgument {
                field: "endpoints",
                message: format!(
                    "at most {} endpoints per peer, got {}",
                    self.shared.config.max_endpoints,
                    reg.endpoints.len()
                ),
            });
        }
        let lease = self.shared.config.lease_for(reg.via);
        let now = Instant::now();
        let mut state = self.state();
        if state.shutdown {
            return Err(RegistryError::ShuttingDown);
        }

        let existing = state.peers.get(&reg.peer_id);
        let token = match (existing, reg.token.as_deref()) {
            (Some(entry), Some(given)) if entry.token.matches(given) => entry.token,
            (Some(_), Some(_)) => {
                return Err(RegistryError::PermissionDenied(
                    "session token does not match this peer_id",
                ));
            }
            (Some(_), None) => {
                return Err(RegistryError::PermissionDenied(
                    "peer_id is already registered; re-registering needs its session token",
                ));
            }
            // No record (never registered, unregistered or purged): the id is
            // free, and a stale token proves nothing.
            (None, _) => SessionToken::generate(),
        };
        let previous = existing.map(|e| (e.info.clone(), e.inbox.is_some()));

        if previous.is_none() && state.peers.len() >= self.shared.config.max_peers {
            // Make room by evicting the offline record closest to its purge.
            match state.purges.pop_first() {
                Some((_, evicted)) => {
                    state.peers.remove(&evicted);
                }
                None => {
                    return Err(RegistryError::RegistryFull {
                        limit: self.shared.config.max_peers,
                    });
                }
            }
        }

        let username = reg
            .username
            .unwrap_or_else(|| validate::default_username(&reg.peer_id));
        let mut endpoints = reg.endpoints;
        let observed = Endpoint {
            addr: SocketAddr::new(reg.observed_ip, reg.udp_port),
            kind: EndpointKind::Observed,
        };
        if !endpoints.iter().any(|e| e.addr == observed.addr) {
            endpoints.push(observed);
        }

        let was_online = previous.as_ref().is_some_and(|(info, _)| info.online);
        let inbox_open = previous.as_ref().is_some_and(|(_, inbox)| *inbox);
        let info = Arc::new(PeerInfo {
            peer_id: reg.peer_id,
            username,
            observed_ip: reg.observed_ip,
            udp_port: reg.udp_port,
            endpoints,
            online: true,
            last_seen: SystemTime::now(),
            registered_via: reg.via,
            inbox_open,
        });
        let changed_visibly = match &previous {
            Some((old, _)) => !same_visible(old, &info),
            None => true,
        };
        let deadline = now + lease;

        let state = &mut *state;
        match state.peers.get_mut(&reg.peer_id) {
            Some(entry) => {
                if entry.info.online {
                    state.leases.remove(&(entry.deadline, reg.peer_id));
                } else {
                    state.purges.remove(&(entry.deadline, reg.peer_id));
                }
                entry.info = info.clone();
                entry.deadline = deadline;
            }
            None => {
                state.peers.insert(
                    reg.peer_id,
                    Entry {
                        info: info.clone(),
                        token,
                        deadline,
                        inbox: None,
                    },
                );
            }
        }
        let earliest = state.leases.first().map(|(d, _)| *d);
        state.leases.insert((deadline, reg.peer_id));
        if !was_online {
            state.online += 1;
            self.publish(state, ChangeKind::Joined, info.clone());
        } else if changed_visibly {
            self.publish(state, ChangeKind::Updated, info.clone());
        }
        if earliest.is_none_or(|e| deadline < e) {
            self.shared.expiry_wake.notify_one();
        }
        Ok(Registered {
            peer: info,
            token: token.to_hex(),
            lease,
            revision: state.revision,
        })
    }

    /// Looks up a peer, online or offline.
    pub fn get(&self, peer_id: &Uuid) -> Result<Arc<PeerInfo>, RegistryError> {
        self.state()
            .peers
            .get(peer_id)
            .map(|e| e.info.clone())
            .ok_or(RegistryError::NotFound)
    }

    /// One page of peers in ascending peer_id order, starting after `after`.
    /// Returns the page and the number of matching peers in the registry.
    pub fn list(
        &self,
        after: Option<Uuid>,
        limit: usize,
        include_offline: bool,
    ) -> (Vec<Arc<PeerInfo>>, usize) {
        use std::ops::Bound;
        let state = self.state();
        let lower = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let page = state
            .peers
            .range((lower, Bound::Unbounded))
            .map(|(_, e)| &e.info)
            .filter(|info| include_offline || info.online)
            .take(limit)
            .cloned()
            .collect();
        let total = if include_offline {
            state.peers.len()
        } else {
            state.online
        };
        (page, total)
    }

    /// Numbers of records, for the status endpoints.
    pub fn counts(&self) -> RegistryCounts {
        let state = self.state();
        RegistryCounts {
            total: state.peers.len(),
            online: state.online,
        }
    }

    /// Checks that `peer_id` is online and `token` (raw bytes) is its session
    /// token: the relay's admission check.
    pub fn verify_online(&self, peer_id: &Uuid, token: &[u8; 32]) -> Result<(), RegistryError> {
        let state = self.state();
        let entry = state.peers.get(peer_id).ok_or(RegistryError::NotFound)?;
        if !entry.token.matches_bytes(token) {
            return Err(RegistryError::PermissionDenied(
                "session token does not match this peer_id",
            ));
        }
        if !entry.info.online {
            return Err(RegistryError::PeerOffline);
        }
        Ok(())
    }

    /// Whether `peer_id` is registered and online.
    pub fn is_online(&self, peer_id: &Uuid) -> bool {
        self.state()
            .peers
            .get(peer_id)
            .is_some_and(|e| e.info.online)
    }

    /// Removes a registration. Needs the peer's token.
    pub fn unregister(&self, peer_id: &Uuid, token: &str) -> Result<u64, RegistryError> {
        let mut state = self.state();
        let entry = state.peers.get(peer_id).ok_or(RegistryError::NotFound)?;
        if !entry.token.matches(token) {
            return Err(RegistryError::PermissionDenied(
                "session token does not match this peer_id",
            ));
        }
        let state = &mut *state;
        let Some(entry) = state.peers.remove(peer_id) else {
            return Err(RegistryError::NotFound);
        };
        if entry.info.online {
            state.leases.remove(&(entry.deadline, *peer_id));
            state.online -= 1;
            let mut info = (*entry.info).clone();
            info.online = false;
            info.inbox_open = false;
            self.publish(
                state,
                ChangeKind::Left(LeftReason::Unregistered),
                Arc::new(info),
            );
        } else {
            state.purges.remove(&(entry.deadline, *peer_id));
        }
        // Dropping the entry drops the inbox sender: an open inbox stream ends.
        Ok(state.revision)
    }

    /// Starts a watch: a snapshot (or a replay when `resume_from` is still
    /// in the history) plus a subscription to later changes.
    pub fn watch(&self, resume_from: Option<u64>) -> Watch {
        let state = self.state();
        let changes = self.shared.changes.subscribe();
        if let Some(from) = resume_from {
            let oldest_kept = state
                .history
                .front()
                .map_or(state.revision + 1, |c| c.revision);
            // Resumable when nothing after `from` has been forgotten.
            if from <= state.revision && from + 1 >= oldest_kept {
                let replay = state
                    .history
                    .iter()
                    .filter(|c| c.revision > from)
                    .cloned()
                    .collect();
                return Watch {
                    start: WatchStart::Replay(replay),
                    changes,
                };
            }
        }
        Watch {
            start: WatchStart::Snapshot {
                revision: state.revision,
                peers: online_peers(&state),
                resume_unavailable: resume_from.is_some(),
            },
            changes,
        }
    }

    /// Opens the inbox of a peer (closing any earlier one). While it is open
    /// the peer's lease does not run out.
    pub fn open_inbox(&self, peer_id: &Uuid, token: &str) -> Result<Inbox, RegistryError> {
        let (tx, rx) = mpsc::channel(self.shared.config.inbox_buffer.max(1));
        let mut state = self.state();
        if state.shutdown {
            return Err(RegistryError::ShuttingDown);
        }
        let inbox_id = state.next_inbox_id;
        state.next_inbox_id += 1;
        let state = &mut *state;
        let entry = state
            .peers
            .get_mut(peer_id)
            .ok_or(RegistryError::NotFound)?;
        if !entry.token.matches(token) {
            return Err(RegistryError::PermissionDenied(
                "session token does not match this peer_id",
            ));
        }
        if !entry.info.online {
            return Err(RegistryError::PeerOffline);
        }
        let reopened = entry.inbox.is_some();
        entry.inbox = Some((inbox_id, tx));
        let lease = self.shared.config.lease_for(entry.info.registered_via);
        if !reopened {
            let mut info = (*entry.info).clone();
            info.inbox_open = true;
            info.last_seen = SystemTime::now();
            let info = Arc::new(info);
            entry.info = info.clone();
            self.publish(state, ChangeKind::Updated, info);
        }
        Ok(Inbox {
            requests: rx,
            guard: InboxGuard {
                registry: self.clone(),
                peer_id: *peer_id,
                inbox_id,
                lease,
            },
        })
    }

    fn close_inbox(&self, peer_id: Uuid, inbox_id: u64) {
        let mut state = self.state();
        let state = &mut *state;
        let Some(entry) = state.peers.get_mut(&peer_id) else {
            return;
        };
        if entry.inbox.as_ref().is_none_or(|(id, _)| *id != inbox_id) {
            return; // replaced by a newer inbox, or already closed
        }
        entry.inbox = None;
        if !entry.info.online {
            return;
        }
        // The stream kept the peer alive until now; its lease runs from here.
        let lease = self.shared.config.lease_for(entry.info.registered_via);
        state.leases.remove(&(entry.deadline, peer_id));
        entry.deadline = Instant::now() + lease;
        state.leases.insert((entry.deadline, peer_id));
        let mut info = (*entry.info).clone();
        info.inbox_open = false;
        info.last_seen = SystemTime::now();
        let info = Arc::new(info);
        entry.info = info.clone();
        self.publish(state, ChangeKind::Updated, info);
    }

    /// Asks `target` to connect with `from`: pushes the request to the
    /// target's inbox (if open) and returns the target's record.
    pub fn request_connect(
        &self,
        from: &Uuid,
        token: &str,
        target: &Uuid,
    ) -> Result<ConnectOutcome, RegistryError> {
        let state = self.state();
        let caller = state.peers.get(from).ok_or(RegistryError::NotFound)?;
        if !caller.token.matches(token) {
            return Err(RegistryError::PermissionDenied(
                "session token does not match this peer_id",
            ));
        }
        if !caller.info.online {
            return Err(RegistryError::PeerOffline);
        }
        if from == target {
            return Err(RegistryError::InvalidArgument {
                field: "target_peer_id",
                message: "a peer cannot connect to itself".into(),
            });
        }
        let callee = state
            .peers
            .get(target)
            .ok_or(RegistryError::TargetNotFound)?;
        if !callee.info.online {
            return Err(RegistryError::TargetOffline);
        }
        let connect_id = Uuid::new_v4();
        let target_notified = match &callee.inbox {
            Some((_, tx)) => tx
                .try_send(ConnectRequest {
                    connect_id,
                    from: caller.info.clone(),
                })
                .is_ok(),
            None => false,
        };
        Ok(ConnectOutcome {
            connect_id,
            target: callee.info.clone(),
            target_notified,
        })
    }

    /// Stops the expiry task and refuses new registrations and inboxes.
    pub fn shutdown(&self) {
        self.state().shutdown = true;
        self.shared.expiry_wake.notify_one();
    }

    /// Appends a change to the history and sends it to watchers. Called with
    /// the state lock held so revision order equals delivery order.
    fn publish(&self, state: &mut State, kind: ChangeKind, peer: Arc<PeerInfo>) {
        state.revision += 1;
        let change = Arc::new(Change {
            revision: state.revision,
            kind,
            peer,
        });
        if self.shared.config.history_len > 0 {
            if state.history.len() >= self.shared.config.history_len {
                state.history.pop_front();
            }
            state.history.push_back(change.clone());
        }
        // No receivers is fine: nobody is watching.
        let _ = self.shared.changes.send(change);
    }

    /// Expires due leases and purges due offline records. Returns the next
    /// deadline, or `None` when shutting down.
    fn expire_due(&self) -> Option<Option<Instant>> {
        let now = Instant::now();
        let mut state = self.state();
        if state.shutdown {
            return None;
        }
        let state = &mut *state;
        while let Some(&(deadline, id)) = state.leases.first() {
            if deadline > now {
                break;
            }
            state.leases.pop_first();
            let Some(entry) = state.peers.get_mut(&id) else {
                continue;
            };
            if entry.inbox.as_ref().is_some_and(|(_, tx)| !tx.is_closed()) {
                // An open inbox stream counts as alive.
                entry.deadline = now + self.shared.config.lease;
                state.leases.insert((entry.deadline, id));
                continue;
            }
            entry.inbox = None;
            entry.deadline = now + self.shared.config.offline_retention;
            state.purges.insert((entry.deadline, id));
            let mut info = (*entry.info).clone();
            info.online = false;
            info.inbox_open = false;
            let info = Arc::new(info);
            entry.info = info.clone();
            state.online -= 1;
            self.publish(state, ChangeKind::Left(LeftReason::LeaseExpired), info);
        }
        while let Some(&(deadline, id)) = state.purges.first() {
            if deadline > now {
                break;
            }
            state.purges.pop_first();
            state.peers.remove(&id);
        }
        let next_lease = state.leases.first().map(|(d, _)| *d);
        let next_purge = state.purges.first().map(|(d, _)| *d);
        Some(match (next_lease, next_purge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

fn online_peers(state: &State) -> Vec<Arc<PeerInfo>> {
    state
        .peers
        .values()
        .filter(|e| e.info.online)
        .map(|e| e.info.clone())
        .collect()
}

/// Whether two records differ in anything a watcher shows (not last_seen).
fn same_visible(a: &PeerInfo, b: &PeerInfo) -> bool {
    a.username == b.username
        && a.observed_ip == b.observed_ip
        && a.udp_port == b.udp_port
        && a.endpoints == b.endpoints
        && a.online == b.online
        && a.registered_via == b.registered_via
        && a.inbox_open == b.inbox_open
}

async fn expire_task(shared: Arc<Shared>) {
    let registry = PeerRegistry { shared };
    while let Some(next) = registry.expire_due() {
        match next {
            Some(when) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(when) => {}
                    _ = registry.shared.expiry_wake.notified() => {}
                }
            }
            None => registry.shared.expiry_wake.notified().await,
        }
    }
    tracing::debug!("registry expiry task stopped");
}

/// Stops the registry's background task when dropped (mini-redis'
/// `DbDropGuard`).
#[derive(Debug)]
pub struct RegistryDropGuard {
    registry: PeerRegistry,
}

impl RegistryDropGuard {
    /// The guarded registry.
    pub fn registry(&self) -> PeerRegistry {
        self.registry.clone()
    }
}

impl Drop for RegistryDropGuard {
    fn drop(&mut self) {
        self.registry.shutdown();
    }
}
