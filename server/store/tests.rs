//! Unit tests of the [`PeerStore`] contract on the memory store, called
//! through `dyn PeerStore` as the server does. Time is tokio's paused clock,
//! so leases run out exactly when the test says.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use p2pchat::PeerId;
use tokio_stream::StreamExt;

use super::*;

fn store_with(config: StoreConfig) -> (Arc<dyn PeerStore>, MemoryStoreGuard) {
    let (store, guard) = MemoryStore::new(config);
    (Arc::new(store), guard)
}

fn registration(peer_id: PeerId, username: &str, token: Option<Credential>) -> Registration {
    Registration {
        peer_id,
        username: Some(username.into()),
        udp_port: 4000,
        endpoints: Vec::new(),
        token,
        public_key: None,
        observed_ip: IpAddr::from([192, 0, 2, 1]),
        via: RegisteredVia::Grpc,
    }
}

async fn register(store: &dyn PeerStore, username: &str) -> (PeerId, Credential, u64) {
    let id = PeerId::random();
    let reg = store
        .register(registration(id, username, None))
        .await
        .expect("registers");
    (id, Credential::Token(reg.token), reg.revision)
}

async fn next(feed: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(1), feed.next())
        .await
        .expect("an event in time")
        .expect("the feed goes on")
}

fn change(event: WatchEvent) -> Arc<Change> {
    match event {
        WatchEvent::Change(change) => change,
        other => panic!("not a change: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_pure_refresh_keeps_the_revision_and_a_change_bumps_it() {
    let (store, _guard) = store_with(StoreConfig::default());
    let (id, token, first) = register(&*store, "alice").await;
    let mut feed = store.watch(Some(first)).await.expect("watch");

    let same = store
        .register(registration(id, "alice", Some(token)))
        .await
        .expect("re-registers");
    assert_eq!(same.revision, first, "nothing visible changed");
    assert_eq!(Credential::Token(same.token), token, "the token stays");

    let renamed = store
        .register(registration(id, "alicia", Some(token)))
        .await
        .expect("re-registers");
    assert_eq!(renamed.revision, first + 1);
    let update = change(next(&mut feed).await);
    assert_eq!(update.kind, ChangeKind::Updated);
    assert_eq!(update.revision, first + 1);
    assert_eq!(update.peer.username, "alicia");
}

#[tokio::test(start_paused = true)]
async fn re_registering_needs_the_token() {
    let (store, _guard) = store_with(StoreConfig::default());
    let (id, _, _) = register(&*store, "alice").await;
    let without = store.register(registration(id, "x", None)).await;
    assert!(matches!(without, Err(StoreError::PermissionDenied(_))));
    let wrong = Credential::Token(p2pchat::SessionToken::generate());
    let with_wrong = store.register(registration(id, "x", Some(wrong))).await;
    assert_eq!(
        with_wrong.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
    let malformed = store
        .register(registration(id, "x", Some(Credential::parse("zz"))))
        .await;
    assert_eq!(
        malformed.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
}

#[tokio::test(start_paused = true)]
async fn verify_checks_the_token_after_the_peer() {
    let (store, _guard) = store_with(StoreConfig::default());
    let (id, token, _) = register(&*store, "alice").await;
    let record = store.verify(&id, &token).await.expect("verified");
    assert_eq!(record.peer_id, id);
    let wrong = Credential::Token(p2pchat::SessionToken::generate());
    assert_eq!(
        store.verify(&id, &wrong).await.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
    let malformed = Credential::parse("not hex");
    assert_eq!(
        store.verify(&id, &malformed).await.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
    if let Credential::Token(t) = token {
        let padded = Credential::parse(&format!("{} ", t.to_hex()));
        assert_eq!(padded, Credential::Malformed, "tokens are taken as sent");
        let upper = Credential::parse(&t.to_hex().to_uppercase());
        assert!(store.verify(&id, &upper).await.is_ok(), "hex in any case");
    }
    let stranger = PeerId::random();
    assert_eq!(
        store.verify(&stranger, &malformed).await.err(),
        Some(StoreError::NotFound),
        "an unknown peer is not found whatever the token"
    );
}

#[tokio::test(start_paused = true)]
async fn leases_expire_and_refresh_restarts_them() {
    let config = StoreConfig {
        lease: Duration::from_secs(10),
        ..StoreConfig::default()
    };
    let (store, _guard) = store_with(config);
    let (id, token, _) = register(&*store, "alice").await;
    let mut feed = store.watch(None).await.expect("watch");
    assert!(matches!(next(&mut feed).await, WatchEvent::Snapshot { .. }));

    tokio::time::sleep(Duration::from_secs(8)).await;
    let lease = store.refresh(&id, &token).await.expect("refreshed");
    assert_eq!(lease, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        store.get(&id).await.expect("known").online,
        "refreshed at 8 s"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = change(next(&mut feed).await);
    assert_eq!(left.kind, ChangeKind::Left(LeftReason::LeaseExpired));
    let record = store.get(&id).await.expect("kept while offline");
    assert!(!record.online);
    assert_eq!(
        store.refresh(&id, &token).await.err(),
        Some(StoreError::PeerOffline)
    );
    assert_eq!(store.counts().await.expect("counts").online, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hold_keeps_the_lease_and_only_its_holder_releases_it() {
    let config = StoreConfig {
        lease: Duration::from_secs(5),
        ..StoreConfig::default()
    };
    let (store, _guard) = store_with(config);
    let (id, token, _) = register(&*store, "alice").await;
    let held = store.hold(&id, &token, 1).await.expect("held");
    assert!(held.peer.inbox_open);
    let replaced = store.hold(&id, &token, 2).await.expect("held again");
    assert_eq!(
        replaced.revision, held.revision,
        "a newer inbox is no change"
    );

    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(store.get(&id).await.expect("known").online, "held alive");
    store.release(&id, 1).await.expect("stale release");
    assert!(
        store.get(&id).await.expect("known").inbox_open,
        "holder 2 holds"
    );
    store.release(&id, 2).await.expect("release");
    assert!(!store.get(&id).await.expect("known").inbox_open);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        store.get(&id).await.expect("known").online,
        "lease from release"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!store.get(&id).await.expect("known").online);
}

#[tokio::test(start_paused = true)]
async fn watch_resumes_from_a_revision_in_the_history() {
    let (store, _guard) = store_with(StoreConfig::default());
    let (_, _, first) = register(&*store, "a").await;
    let (b, _, second) = register(&*store, "b").await;
    let mut feed = store.watch(Some(first)).await.expect("watch");
    let replayed = change(next(&mut feed).await);
    assert_eq!((replayed.revision, replayed.peer.peer_id), (second, b));
    assert_eq!(replayed.kind, ChangeKind::Joined);
    let (c, c_token, _) = register(&*store, "c").await;
    let live = change(next(&mut feed).await);
    assert_eq!((live.revision, live.peer.peer_id), (second + 1, c));
    store.unregister(&c, &c_token).await.expect("unregisters");
    let left = change(next(&mut feed).await);
    assert_eq!(left.kind, ChangeKind::Left(LeftReason::Unregistered));
    assert!(!left.peer.online);
    assert_eq!(store.get(&c).await.err(), Some(StoreError::NotFound));
}

#[tokio::test(start_paused = true)]
async fn a_revision_no_longer_in_the_history_gets_a_snapshot() {
    let config = StoreConfig {
        history_len: 2,
        ..StoreConfig::default()
    };
    let (store, _guard) = store_with(config);
    let (_, _, first) = register(&*store, "a").await;
    for name in ["b", "c", "d"] {
        register(&*store, name).await;
    }
    for from in [first, first + 100] {
        let mut feed = store.watch(Some(from)).await.expect("watch");
        match next(&mut feed).await {
            WatchEvent::Snapshot {
                revision,
                peers,
                reason,
            } => {
                assert_eq!(reason, SnapshotReason::ResumeUnavailable);
                assert_eq!(revision, first + 3);
                assert_eq!(peers.len(), 4);
                assert!(peers.windows(2).all(|w| w[0].peer_id < w[1].peer_id));
            }
            other => panic!("not a snapshot: {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_lagging_watcher_is_resynced_with_a_snapshot() {
    let config = StoreConfig {
        watch_buffer: 2,
        ..StoreConfig::default()
    };
    let (store, _guard) = store_with(config);
    let mut feed = store.watch(None).await.expect("watch");
    match next(&mut feed).await {
        WatchEvent::Snapshot { peers, reason, .. } => {
            assert_eq!(reason, SnapshotReason::Initial);
            assert!(peers.is_empty());
        }
        other => panic!("not a snapshot: {other:?}"),
    }
    let mut last = 0;
    for name in ["a", "b", "c", "d", "e"] {
        last = register(&*store, name).await.2;
    }
    match next(&mut feed).await {
        WatchEvent::Snapshot {
            revision,
            peers,
            reason,
        } => {
            assert_eq!(reason, SnapshotReason::Resync);
            assert_eq!(revision, last);
            assert_eq!(peers.len(), 5);
        }
        other => panic!("not a resync: {other:?}"),
    }
    let (f, _, _) = register(&*store, "f").await;
    let after = change(next(&mut feed).await);
    assert_eq!((after.revision, after.peer.peer_id), (last + 1, f));
}

#[tokio::test(start_paused = true)]
async fn a_full_store_evicts_offline_records_first() {
    let config = StoreConfig {
        lease: Duration::from_secs(5),
        max_peers: 2,
        ..StoreConfig::default()
    };
    let (store, _guard) = store_with(config);
    let (old, _, _) = register(&*store, "old").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    register(&*store, "b").await;
    register(&*store, "c").await;
    assert_eq!(store.get(&old).await.err(), Some(StoreError::NotFound));
    let refused = store
        .register(registration(PeerId::random(), "d", None))
        .await;
    assert_eq!(refused.err(), Some(StoreError::Full { limit: 2 }));
    let page = store
        .list(ListQuery {
            after: None,
            limit: 10,
            include_offline: true,
        })
        .await
        .expect("lists");
    assert_eq!(page.total, 2);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_store_refuses_registrations() {
    let (store, guard) = store_with(StoreConfig::default());
    guard.stop().await;
    let refused = store
        .register(registration(PeerId::random(), "late", None))
        .await;
    assert_eq!(refused.err(), Some(StoreError::ShuttingDown));
}

fn key(seed: u8) -> p2pchat::PublicKey {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    p2pchat::PublicKey::from(&signing.verifying_key())
}

fn keyed(key: p2pchat::PublicKey, username: &str, token: Option<Credential>) -> Registration {
    Registration {
        public_key: Some(key),
        ..registration(key.peer_id(), username, token)
    }
}

#[tokio::test(start_paused = true)]
async fn key_derived_ids_need_their_key_or_their_token() {
    let (store, _guard) = store_with(StoreConfig::default());
    let alice = key(1);
    let id = alice.peer_id();
    // No proof, no record: refused, with or without a (stale) token.
    let stale = Credential::Token(p2pchat::SessionToken::generate());
    for token in [None, Some(stale)] {
        let refused = store.register(registration(id, "alice", token)).await;
        assert_eq!(refused.err(), Some(StoreError::KeyRequired));
    }
    // A key that does not own the id.
    let refused = store
        .register(Registration {
            public_key: Some(key(2)),
            ..registration(id, "alice", None)
        })
        .await;
    assert_eq!(
        refused.err(),
        Some(StoreError::PermissionDenied(KEY_MISMATCH))
    );
    // With the key: registered, and the record carries it.
    let first = store
        .register(keyed(alice, "alice", None))
        .await
        .expect("registers");
    assert_eq!(first.peer.public_key, Some(alice));
    assert!(!first.took_over);
    let token = Credential::Token(first.token);
    // A refresh with the token needs no proof and keeps the key.
    let refreshed = store
        .register(registration(id, "alice", Some(token)))
        .await
        .expect("refresh");
    assert_eq!(refreshed.token, first.token);
    assert_eq!(refreshed.peer.public_key, Some(alice));
    assert_eq!(
        refreshed.revision, first.revision,
        "nothing visible changed"
    );
    // Without proof and without the token: refused as before.
    let refused = store.register(registration(id, "mallory", None)).await;
    assert!(matches!(refused, Err(StoreError::PermissionDenied(_))));
    let refused = store
        .register(registration(id, "mallory", Some(stale)))
        .await;
    assert_eq!(
        refused.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
    // Version 4 ids are unchanged: no key needed, none recorded.
    let (v4, _, _) = register(&*store, "seed").await;
    assert_eq!(store.get(&v4).await.unwrap().public_key, None);
}

#[tokio::test(start_paused = true)]
async fn a_proof_of_the_key_takes_a_registration_over() {
    let (store, _guard) = store_with(StoreConfig::default());
    let alice = key(3);
    let id = alice.peer_id();
    let first = store
        .register(keyed(alice, "alice", None))
        .await
        .expect("registers");
    let old = Credential::Token(first.token);
    let held = store.hold(&id, &old, 7).await.expect("inbox held");
    assert!(held.peer.inbox_open);
    // A proof with the right token is a plain re-registration.
    let same = store
        .register(keyed(alice, "alice", Some(old)))
        .await
        .expect("re-registers");
    assert_eq!(same.token, first.token);
    assert!(!same.took_over);
    // A proof without it takes over: new token, the old one is void, the
    // old inbox no longer holds the lease.
    let new = store
        .register(keyed(alice, "alice2", None))
        .await
        .expect("takes over");
    assert!(new.took_over);
    assert_ne!(new.token, first.token);
    assert!(!new.peer.inbox_open);
    assert_eq!(new.peer.public_key, Some(alice));
    assert_eq!(
        store.verify(&id, &old).await.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
    assert_eq!(
        store.refresh(&id, &old).await.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
    let token = Credential::Token(new.token);
    assert!(store.verify(&id, &token).await.is_ok());
    // The old holder's late release changes nothing; the new owner holds.
    store.release(&id, 7).await.unwrap();
    let held = store.hold(&id, &token, 8).await.expect("new inbox");
    assert!(held.peer.inbox_open);
    assert_eq!(
        store.unregister(&id, &old).await.err(),
        Some(StoreError::PermissionDenied(TOKEN_MISMATCH))
    );
    store.unregister(&id, &token).await.expect("unregisters");
}
