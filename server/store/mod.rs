//! Where peer records live: the [`PeerStore`] trait, the domain types it
//! speaks in, and [`StoreError`].
//!
//! A store holds records (who is registered, at which endpoints), the
//! session tokens that prove ownership, the leases that take silent peers
//! offline, and a revisioned change feed that watchers follow. It knows no
//! HTTP, gRPC or UDP: the API layer maps [`StoreError`] to its protocol.
//!
//! The trait is shaped so that a second backend (etcd v3: one global
//! revision, watch from a revision, leases with keep-alive, compare-and-swap
//! transactions) fits behind it: every method is asynchronous and returns a
//! boxed future so the server can hold an `Arc<dyn PeerStore>` picked at run
//! time, and [`PeerStore::watch`] returns a plain [`Stream`] of
//! [`WatchEvent`]s that says "resync, here is a snapshot" when it cannot
//! continue from where the watcher is.
//!
//! [`memory::MemoryStore`] is the embedded default.

pub mod memory;
pub mod names;

#[cfg(test)]
mod claims_tests;
mod feed;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2pchat::{PeerId, PublicKey, SessionToken};
use tokio_stream::Stream;

use crate::quota::{DEFAULT_REGISTRATIONS_PER_SOURCE, QuotaExceeded};
pub use memory::{MemoryStore, MemoryStoreGuard};

/// What every store method returns: a boxed, sendable future, so the trait
/// stays usable as `dyn PeerStore`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The change feed of one watcher. It ends only when the store can no longer
/// feed it (the store went away); the watcher then watches again from the
/// last revision it saw.
pub type WatchStream = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;

/// Everything a store can refuse.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// A request breaks one of the store's limits (e.g. too many endpoints).
    #[error("{message}")]
    InvalidArgument {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No record for this peer_id.
    #[error("Peer not found")]
    NotFound,
    /// The record exists but its lease has run out.
    #[error("Peer is offline; register again")]
    PeerOffline,
    /// The caller's token does not prove ownership of the peer_id.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// A key-derived (version 8) peer_id with neither a proof of its key
    /// nor the token of its existing registration.
    #[error("{}", KEY_REQUIRED)]
    KeyRequired,
    /// The store holds as many records as it may.
    #[error("registry is full: at most {limit} peers may be registered")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// The registration's source holds as many online records as it may
    /// ([`StoreConfig::registrations_per_source`]).
    #[error("{0}")]
    Quota(QuotaExceeded),
    /// Another online peer's name has the same confusable skeleton (or is
    /// the same name).
    #[error("username {name:?} is taken: it looks like the name of a peer online now")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// The store is shutting down and takes no new registrations or holds.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The backend could not be reached or failed (never from the memory
    /// store; an external store reports its outages here).
    #[error("peer store unavailable: {0}")]
    Unavailable(String),
}

/// The message of every token mismatch, as both APIs have always said it.
pub(crate) const TOKEN_MISMATCH: &str = "session token does not match this peer_id";

/// Why a key-derived id without a proof is refused.
pub(crate) const KEY_REQUIRED: &str = "peer_id is key-derived (UUID version 8): registering it \
     needs a proof of its key (public_key, challenge and signature, over gRPC)";

/// Why a key that does not derive the peer_id is refused.
pub(crate) const KEY_MISMATCH: &str =
    "public_key does not own peer_id (peer_id must be the version 8 id derived from the key)";

/// A session token as a request presented it. A malformed one is kept (not
/// refused at the edge) so the store answers it in the same order as a wrong
/// one: an unknown peer is [`StoreError::NotFound`], a known one
/// [`StoreError::PermissionDenied`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A well-formed token (it may still be the wrong one).
    Token(SessionToken),
    /// Text that is not 64 hex characters: matches no record.
    Malformed,
}

impl Credential {
    /// Parses the hex text a client sent, exactly as sent (any case, no
    /// surrounding whitespace).
    pub fn parse(text: &str) -> Credential {
        SessionToken::parse(text).map_or(Credential::Malformed, Credential::Token)
    }

    /// Whether this is `token`, compared in constant time.
    pub fn matches(&self, token: &SessionToken) -> bool {
        match self {
            Credential::Token(given) => token.matches_bytes(given.as_bytes()),
            Credential::Malformed => false,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets into logs.
        match self {
            Credential::Token(_) => f.write_str("Credential(..)"),
            Credential::Malformed => f.write_str("Credential(malformed)"),
        }
    }
}

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

/// What the store knows about one peer. Shared as `Arc<PeerRecord>` so
/// snapshots and change events never copy strings.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRecord {
    /// The peer's id.
    pub peer_id: PeerId,
    /// Display name (validated: NFC, 1-64 characters, no control or
    /// invisible characters, one script; unique by confusable skeleton
    /// among online peers).
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
    /// True while the peer holds its inbox open (see [`PeerStore::hold`]).
    pub inbox_open: bool,
    /// The key the peer proved it holds, which owns `peer_id`; `None` for
    /// peers registered without one (REST, seed-style; never a version 8
    /// id).
    pub public_key: Option<PublicKey>,
}

impl PeerRecord {
    /// `last_seen` in Unix seconds, as the seed's REST API reports it.
    pub fn last_seen_unix(&self) -> f64 {
        self.last_seen
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Whether two records differ in anything a watcher shows (not
    /// `last_seen`): only such differences are published as changes.
    pub fn same_visible(&self, other: &PeerRecord) -> bool {
        self.username == other.username
            && self.observed_ip == other.observed_ip
            && self.udp_port == other.udp_port
            && self.endpoints == other.endpoints
            && self.online == other.online
            && self.registered_via == other.registered_via
            && self.inbox_open == other.inbox_open
            && self.public_key == other.public_key
    }
}

/// The default username: `user_` and the first 8 characters of the id.
pub fn default_username(peer_id: &PeerId) -> String {
    format!("user_{}", peer_id.short())
}

/// A validated registration request.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The peer's id.
    pub peer_id: PeerId,
    /// Requested username; `None` means [`default_username`].
    pub username: Option<String>,
    /// UDP port the peer listens on.
    pub udp_port: u16,
    /// Endpoints the peer reports for itself.
    pub endpoints: Vec<Endpoint>,
    /// The token from an earlier registration, when re-registering.
    pub token: Option<Credential>,
    /// A key the caller proved it holds (the API checked the signature over
    /// a fresh challenge); it must own `peer_id`. A registration with a
    /// proven key takes over an existing record of the id without its
    /// token: the old token stops working and the old inbox no longer
    /// holds the lease. `None`: no proof, so a key-derived `peer_id` can
    /// only be re-registered with its token.
    pub public_key: Option<PublicKey>,
    /// The IP the request came from.
    pub observed_ip: IpAddr,
    /// Which API it came through.
    pub via: RegisteredVia,
}

/// The outcome of a successful registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The record as stored.
    pub peer: Arc<PeerRecord>,
    /// Secret proving ownership of the peer_id.
    pub token: SessionToken,
    /// Lease granted.
    pub lease: Duration,
    /// Store revision after the registration.
    pub revision: u64,
    /// Whether a proof of the key took over an existing registration whose
    /// token the caller did not present (the previous holder's token and
    /// inbox are void).
    pub took_over: bool,
}

/// The outcome of a successful [`PeerStore::hold`].
#[derive(Debug, Clone)]
pub struct Held {
    /// The record, `inbox_open` set.
    pub peer: Arc<PeerRecord>,
    /// The lease that applies again once the hold is released.
    pub lease: Duration,
    /// Store revision once the hold took effect: changes at or below it
    /// happened before the hold.
    pub revision: u64,
}

/// Identifies one holder of a peer's lease (one open inbox), so a late
/// release of a replaced holder does not end the newer one's hold.
pub type HoldId = u64;

/// The online peers at one revision, in peer_id order: an immutable view
/// shared (not copied) by every watcher that starts from it.
pub type PeerView = Arc<[Arc<PeerRecord>]>;

/// One page of [`PeerStore::list`].
#[derive(Debug, Clone, Copy)]
pub struct ListQuery {
    /// Start after this peer_id (ascending order); `None`: from the start.
    pub after: Option<PeerId>,
    /// Most records returned.
    pub limit: usize,
    /// Whether offline records (lease ran out, not yet purged) are included.
    pub include_offline: bool,
}

/// The answer to a [`ListQuery`].
#[derive(Debug, Clone)]
pub struct Page {
    /// The records, in ascending peer_id order.
    pub peers: Vec<Arc<PeerRecord>>,
    /// How many records match the query in the whole store.
    pub total: usize,
    /// The store's [`StoreCounts::version`] the page was read at.
    pub version: u64,
}

/// Record counts, for the status endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    /// All records, offline ones included.
    pub total: usize,
    /// Records with a valid lease.
    pub online: usize,
    /// A number that changes whenever any record does (every change the
    /// feed publishes, and also a refresh's `last_seen`, a purge or an
    /// eviction, which the feed does not publish), so a listing built at
    /// one version can be reused until it moves. Distinct across restarts.
    pub version: u64,
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
    /// Strictly increasing store revision.
    pub revision: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The peer after the change.
    pub peer: Arc<PeerRecord>,
}

/// Why a watcher is sent a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The watch started without a revision to resume from.
    Initial,
    /// The revision to resume from is no longer in the history.
    ResumeUnavailable,
    /// The watcher fell behind the feed; it starts over from this snapshot.
    Resync,
}

/// One item of a [`WatchStream`].
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// Every online peer at `revision`, in peer_id order. Replaces whatever
    /// the watcher knew; changes after it follow.
    Snapshot {
        /// Revision the snapshot reflects.
        revision: u64,
        /// The online peers (shared, see [`PeerView`]).
        peers: PeerView,
        /// Why it is sent.
        reason: SnapshotReason,
    },
    /// One change, newer than everything sent before it.
    Change(Arc<Change>),
}

/// Limits and timings every store honours. Every limit is explicit.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Lease of a gRPC registration without refresh.
    pub lease: Duration,
    /// Lease of a REST registration. Longer, because the seed's REST clients
    /// register once and never refresh.
    pub rest_lease: Duration,
    /// How long an offline record (lease ran out) is kept so `/status` and
    /// `include_offline` can show it and its owner can come back with its
    /// token. Oldest offline records are evicted first when the store is full.
    pub offline_retention: Duration,
    /// Most records (online and offline) held at once.
    pub max_peers: usize,
    /// Most endpoints one peer may register.
    pub max_endpoints: usize,
    /// Changes kept for watchers that resume after a reconnect.
    pub history_len: usize,
    /// Changes buffered per watcher before it is considered lagging.
    pub watch_buffer: usize,
    /// Most online records registered from one source (an IPv4 address or
    /// an IPv6 /64), so one client cannot fill `max_peers`.
    pub registrations_per_source: usize,
}

impl StoreConfig {
    /// The lease a registration through `via` gets.
    pub fn lease_for(&self, via: RegisteredVia) -> Duration {
        match via {
            RegisteredVia::Grpc => self.lease,
            RegisteredVia::Rest => self.rest_lease,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            rest_lease: Duration::from_secs(600),
            offline_retention: Duration::from_secs(300),
            max_peers: 100_000,
            max_endpoints: 16,
            history_len: 4096,
            watch_buffer: 1024,
            registrations_per_source: DEFAULT_REGISTRATIONS_PER_SOURCE,
        }
    }
}

/// The peer registry's storage, as the APIs, the rendezvous and the relay
/// use it. Implementations are cheap to share (`Arc<dyn PeerStore>`) and
/// never hold a lock across an `.await` of their caller.
pub trait PeerStore: Send + Sync + fmt::Debug + 'static {
    /// Registers a new peer, or re-registers a known one when
    /// `reg.token` proves ownership or `reg.public_key` (proven) owns the
    /// id. A key-derived (version 8) id needs one of the two
    /// ([`StoreError::KeyRequired`]). A re-registration that changes nothing
    /// visible is a pure refresh: the lease restarts, the revision does not
    /// move and no change is published. Refused past the source's quota
    /// ([`StoreError::Quota`]) and for a name that looks like another online
    /// peer's ([`StoreError::NameTaken`]).
    fn register(&self, reg: Registration) -> StoreFuture<'_, Registered>;

    /// Restarts an online peer's lease without changing its record (a
    /// keep-alive); returns the lease granted. No change is published.
    fn refresh<'a>(&'a self, peer: &'a PeerId, token: &'a Credential) -> StoreFuture<'a, Duration>;

    /// Removes a record; needs the peer's token. Returns the revision after.
    fn unregister<'a>(&'a self, peer: &'a PeerId, token: &'a Credential) -> StoreFuture<'a, u64>;

    /// A peer's record, online or offline.
    fn get<'a>(&'a self, peer: &'a PeerId) -> StoreFuture<'a, Arc<PeerRecord>>;

    /// One page of records in ascending peer_id order.
    fn list(&self, query: ListQuery) -> StoreFuture<'_, Page>;

    /// How many records there are, for the status endpoints.
    fn counts(&self) -> StoreFuture<'_, StoreCounts>;

    /// Checks that `token` is `peer`'s and returns its record (online or not:
    /// the caller decides whether offline is acceptable).
    fn verify<'a>(
        &'a self,
        peer: &'a PeerId,
        token: &'a Credential,
    ) -> StoreFuture<'a, Arc<PeerRecord>>;

    /// Keeps an online peer's lease from running out while `holder` (an open
    /// inbox) says the peer is there, and marks the record `inbox_open`.
    /// A newer holder replaces an older one without a change being published.
    fn hold<'a>(
        &'a self,
        peer: &'a PeerId,
        token: &'a Credential,
        holder: HoldId,
    ) -> StoreFuture<'a, Held>;

    /// Ends `holder`'s hold (if it is still the current one): the lease runs
    /// again from now and `inbox_open` is cleared.
    fn release<'a>(&'a self, peer: &'a PeerId, holder: HoldId) -> StoreFuture<'a, ()>;

    /// Follows the change feed. With `resume_from` still in the history the
    /// stream replays the changes after it; otherwise it starts with a
    /// snapshot ([`SnapshotReason::Initial`] or
    /// [`SnapshotReason::ResumeUnavailable`]). A watcher that falls behind
    /// gets a [`SnapshotReason::Resync`] snapshot instead of a gap.
    fn watch(&self, resume_from: Option<u64>) -> StoreFuture<'_, WatchStream>;
}
