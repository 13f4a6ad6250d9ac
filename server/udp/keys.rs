//! The relay keys of registered peers: what the relay checks BIND and
//! RELEASE MACs with. A peer's relay key is derived from its session token
//! ([`RelayKey::from_token`]); the relay learns it at the one moment the
//! server holds the token in hand, a successful registration, and keeps
//! only the derived key.
//!
//! [`KeyedStore`] wraps the server's [`PeerStore`]: every call goes straight
//! through, and a successful `register` (gRPC or REST) teaches
//! [`RelayKeys`] the peer's key, a successful `unregister` makes it forget.
//! The UDP task forgets the keys of peers that leave the store otherwise
//! (lease expiry) as it follows the change feed, so the map holds about one
//! key per online peer: it is bounded by the store's `--max-peers`.
//!
//! The keys live in this process. A store shared by several server
//! processes (a future external backend) would have to hand out relay keys
//! itself (a `PeerStore` method returning the derived key); this wrapper is
//! the seam where that call would go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use p2pchat::proto::relay_frame::RelayKey;
use p2pchat::{PeerId, SessionToken};

use crate::store::{
    Credential, Held, HoldId, ListQuery, Page, PeerRecord, PeerStore, Registered, Registration,
    StoreCounts, StoreFuture, WatchStream,
};

#[derive(Debug)]
struct Learned {
    key: RelayKey,
    /// The store revision right after the registration it was learned
    /// from: a departure at or below it is older than the key.
    revision: u64,
}

/// The relay keys of registered peers, shared between the store wrapper
/// (which learns them) and the UDP task (which uses and forgets them).
#[derive(Debug, Clone, Default)]
pub struct RelayKeys {
    inner: Arc<Mutex<HashMap<PeerId, Learned>>>,
}

impl RelayKeys {
    /// An empty set.
    pub fn new() -> RelayKeys {
        RelayKeys::default()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<PeerId, Learned>> {
        // Nothing panics while holding the lock; a poisoned map is still
        // consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `peer`'s relay key, if it is registered.
    pub fn get(&self, peer: &PeerId) -> Option<RelayKey> {
        self.map().get(peer).map(|l| l.key.clone())
    }

    /// Learns `peer`'s key from the token a registration at `revision`
    /// returned.
    pub fn learn(&self, peer: PeerId, token: &SessionToken, revision: u64) {
        let key = RelayKey::from_token(token);
        self.map().insert(peer, Learned { key, revision });
    }

    /// Forgets `peer`'s key (it unregistered).
    pub fn forget(&self, peer: &PeerId) {
        self.map().remove(peer);
    }

    /// `peer` left the store at `revision`: forgets its key unless a later
    /// registration taught it again.
    pub fn left(&self, peer: &PeerId, revision: u64) {
        let mut map = self.map();
        if map.get(peer).is_some_and(|l| l.revision < revision) {
            map.remove(peer);
        }
    }

    /// Keeps only the keys of peers `online` at `revision` (a snapshot of
    /// the store) and of those registered after it. Returns how many were
    /// forgotten.
    pub fn retain_online(&self, online: impl Fn(&PeerId) -> bool, revision: u64) -> usize {
        let mut map = self.map();
        let before = map.len();
        map.retain(|peer, l| l.revision > revision || online(peer));
        before - map.len()
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// A [`PeerStore`] that teaches [`RelayKeys`] the key of every peer that
/// registers through it. See the module docs.
#[derive(Debug)]
pub struct KeyedStore {
    inner: Arc<dyn PeerStore>,
    keys: RelayKeys,
}

impl KeyedStore {
    /// Wraps `inner`, teaching `keys`.
    pub fn new(inner: Arc<dyn PeerStore>, keys: RelayKeys) -> KeyedStore {
        KeyedStore { inner, keys }
    }
}

impl PeerStore for KeyedStore {
    fn register(&self, reg: Registration) -> StoreFuture<'_, Registered> {
        Box::pin(async move {
            let done = self.inner.register(reg).await?;
            self.keys
                .learn(done.peer.peer_id, &done.token, done.revision);
            Ok(done)
        })
    }

    fn refresh<'a>(&'a self, peer: &'a PeerId, token: &'a Credential) -> StoreFuture<'a, Duration> {
        self.inner.refresh(peer, token)
    }

    fn unregister<'a>(&'a self, peer: &'a PeerId, token: &'a Credential) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let revision = self.inner.unregister(peer, token).await?;
            self.keys.forget(peer);
            Ok(revision)
        })
    }

    fn get<'a>(&'a self, peer: &'a PeerId) -> StoreFuture<'a, Arc<PeerRecord>> {
        self.inner.get(peer)
    }

    fn list(&self, query: ListQuery) -> StoreFuture<'_, Page> {
        self.inner.list(query)
    }

    fn counts(&self) -> StoreFuture<'_, StoreCounts> {
        self.inner.counts()
    }

    fn verify<'a>(
        &'a self,
        peer: &'a PeerId,
        token: &'a Credential,
    ) -> StoreFuture<'a, Arc<PeerRecord>> {
        self.inner.verify(peer, token)
    }

    fn hold<'a>(
        &'a self,
        peer: &'a PeerId,
        token: &'a Credential,
        holder: HoldId,
    ) -> StoreFuture<'a, Held> {
        self.inner.hold(peer, token, holder)
    }

    fn release<'a>(&'a self, peer: &'a PeerId, holder: HoldId) -> StoreFuture<'a, ()> {
        self.inner.release(peer, holder)
    }

    fn watch(&self, resume_from: Option<u64>) -> StoreFuture<'_, WatchStream> {
        self.inner.watch(resume_from)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::store::{MemoryStore, RegisteredVia, StoreConfig};

    fn registration(peer_id: PeerId, token: Option<Credential>) -> Registration {
        Registration {
            peer_id,
            username: None,
            udp_port: 4000,
            endpoints: Vec::new(),
            token,
            observed_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            via: RegisteredVia::Grpc,
            public_key: None,
        }
    }

    #[tokio::test]
    async fn keys_are_learned_on_registration_and_forgotten_on_departure() {
        let (memory, _guard) = MemoryStore::new(StoreConfig::default());
        let keys = RelayKeys::new();
        let store = KeyedStore::new(Arc::new(memory), keys.clone());
        let id = PeerId::random();
        let done = store.register(registration(id, None)).await.unwrap();
        let key = keys.get(&id).expect("learned");
        // It is the key derived from the token the registration returned.
        let frame = p2pchat::proto::relay_frame::RelayFrame::bind(
            &RelayKey::from_token(&done.token),
            *id.as_uuid(),
            uuid::Uuid::from_u128(9),
            0,
            1,
        );
        let (kind, claim) = frame.claim().unwrap();
        assert!(claim.verify(kind, &key));

        // A departure older than the key's registration keeps it; a newer
        // one forgets it.
        keys.left(&id, done.revision);
        assert!(keys.get(&id).is_some());
        keys.left(&id, done.revision + 1);
        assert!(keys.get(&id).is_none());

        // Re-registering with the token teaches it again; a snapshot without
        // the peer at a later revision forgets it, at an earlier one not.
        let again = store
            .register(registration(id, Some(Credential::Token(done.token))))
            .await
            .unwrap();
        assert_eq!(again.token, done.token);
        assert!(keys.get(&id).is_some());
        assert_eq!(keys.retain_online(|_| false, again.revision - 1), 0);
        assert_eq!(keys.retain_online(|_| true, again.revision + 5), 0);
        assert_eq!(keys.retain_online(|_| false, again.revision), 1);
        assert!(keys.is_empty());

        // Unregistering forgets at once; a refused unregister does not.
        store
            .register(registration(id, Some(Credential::Token(done.token))))
            .await
            .unwrap();
        let wrong = Credential::Token(SessionToken::generate());
        assert!(store.unregister(&id, &wrong).await.is_err());
        assert_eq!(keys.len(), 1);
        store
            .unregister(&id, &Credential::Token(done.token))
            .await
            .unwrap();
        assert!(keys.is_empty());
    }
}
