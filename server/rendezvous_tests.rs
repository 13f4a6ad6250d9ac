//! Unit tests of inbox routing over the memory store: delivery, refusals in
//! the order clients see them, replaced inboxes, and inboxes ending when
//! their peer leaves.

use std::net::IpAddr;
use std::time::Duration;

use p2pchat::SessionToken;
use tokio::sync::broadcast;

use super::*;
use crate::store::{MemoryStore, MemoryStoreGuard, RegisteredVia, Registration, StoreConfig};

fn setup() -> (Rendezvous, Arc<dyn PeerStore>, MemoryStoreGuard) {
    let (store, guard) = MemoryStore::new(StoreConfig::default());
    let store: Arc<dyn PeerStore> = Arc::new(store);
    (Rendezvous::new(store.clone()), store, guard)
}

async fn register(store: &dyn PeerStore) -> (PeerId, Credential) {
    let peer_id = PeerId::random();
    let reg = Registration {
        peer_id,
        username: None,
        udp_port: 4000,
        endpoints: Vec::new(),
        token: None,
        public_key: None,
        observed_ip: IpAddr::from([192, 0, 2, 7]),
        via: RegisteredVia::Grpc,
    };
    let registered = store.register(reg).await.expect("registers");
    (peer_id, Credential::Token(registered.token))
}

async fn recv(inbox: &mut Inbox) -> Option<ConnectRequest> {
    tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .expect("inbox answers in time")
}

#[tokio::test]
async fn a_request_reaches_the_open_inbox_of_the_target() {
    let (rendezvous, store, _guard) = setup();
    let (alice, alice_token) = register(&*store).await;
    let (bob, bob_token) = register(&*store).await;
    let unheard = rendezvous
        .request_connect(&alice, &alice_token, &bob)
        .await
        .expect("connects");
    assert!(!unheard.target_notified, "bob holds no inbox yet");

    let mut inbox = rendezvous.open(&bob, &bob_token).await.expect("opens");
    assert!(store.get(&bob).await.expect("known").inbox_open);
    let outcome = rendezvous
        .request_connect(&alice, &alice_token, &bob)
        .await
        .expect("connects");
    assert!(outcome.target_notified);
    assert_eq!(outcome.target.peer_id, bob);
    let request = recv(&mut inbox).await.expect("a request");
    assert_eq!(request.connect_id, outcome.connect_id);
    assert_eq!(request.from.peer_id, alice);

    rendezvous.close(inbox).await;
    assert!(!store.get(&bob).await.expect("known").inbox_open);
    let after = rendezvous
        .request_connect(&alice, &alice_token, &bob)
        .await
        .expect("connects");
    assert!(!after.target_notified, "a closed inbox hears nothing");
}

#[tokio::test]
async fn refusals_come_in_the_order_clients_see_them() {
    let (rendezvous, store, _guard) = setup();
    let (alice, alice_token) = register(&*store).await;
    let stranger = PeerId::random();
    let wrong = Credential::Token(SessionToken::generate());
    let refused = |r: Result<ConnectOutcome, RendezvousError>| r.err();
    assert_eq!(
        refused(rendezvous.request_connect(&stranger, &wrong, &alice).await),
        Some(RendezvousError::Store(StoreError::NotFound))
    );
    assert!(matches!(
        refused(rendezvous.request_connect(&alice, &wrong, &stranger).await),
        Some(RendezvousError::Store(StoreError::PermissionDenied(_)))
    ));
    assert_eq!(
        refused(
            rendezvous
                .request_connect(&alice, &alice_token, &alice)
                .await
        ),
        Some(RendezvousError::SelfConnect)
    );
    assert_eq!(
        refused(
            rendezvous
                .request_connect(&alice, &alice_token, &stranger)
                .await
        ),
        Some(RendezvousError::TargetNotFound)
    );
    assert!(matches!(
        rendezvous.open(&alice, &wrong).await.err(),
        Some(RendezvousError::Store(StoreError::PermissionDenied(_)))
    ));
}

#[tokio::test]
async fn a_newer_inbox_replaces_the_older_one() {
    let (rendezvous, store, _guard) = setup();
    let (alice, alice_token) = register(&*store).await;
    let (bob, bob_token) = register(&*store).await;
    let mut first = rendezvous.open(&bob, &bob_token).await.expect("opens");
    let mut second = rendezvous.open(&bob, &bob_token).await.expect("opens");
    assert!(recv(&mut first).await.is_none(), "the older inbox ends");
    rendezvous.close(first).await;
    assert!(
        store.get(&bob).await.expect("known").inbox_open,
        "closing the older inbox leaves the newer one open"
    );
    let outcome = rendezvous
        .request_connect(&alice, &alice_token, &bob)
        .await
        .expect("connects");
    assert!(outcome.target_notified);
    assert!(recv(&mut second).await.is_some());
}

#[tokio::test]
async fn an_inbox_ends_when_its_peer_unregisters() {
    let (rendezvous, store, _guard) = setup();
    let (shutdown_tx, _) = broadcast::channel(1);
    let task = tokio::spawn(
        rendezvous
            .clone()
            .run(Shutdown::new(shutdown_tx.subscribe())),
    );
    // Let the task start following the feed before the peer leaves.
    tokio::task::yield_now().await;
    let (bob, bob_token) = register(&*store).await;
    let mut inbox = rendezvous.open(&bob, &bob_token).await.expect("opens");
    store
        .unregister(&bob, &bob_token)
        .await
        .expect("unregisters");
    assert!(recv(&mut inbox).await.is_none(), "the inbox ends");
    rendezvous.close(inbox).await;
    let _ = shutdown_tx.send(());
    task.await.expect("the rendezvous task ends on shutdown");
}

#[tokio::test]
async fn a_target_is_sent_at_most_its_rate_and_strangers_spend_none_of_it() {
    let (store, _guard) = MemoryStore::new(StoreConfig::default());
    let store: Arc<dyn PeerStore> = Arc::new(store);
    let rendezvous = Rendezvous::with_target_rate(store.clone(), 3);
    let (alice, alice_token) = register(&*store).await;
    let (bob, _) = register(&*store).await;
    let (carol, _) = register(&*store).await;
    let stranger = Credential::Token(SessionToken::generate());
    for _ in 0..10 {
        let refused = rendezvous.request_connect(&alice, &stranger, &bob).await;
        assert!(matches!(refused, Err(RendezvousError::Store(_))));
    }
    for i in 0..3 {
        rendezvous
            .request_connect(&alice, &alice_token, &bob)
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
    }
    let refused = rendezvous
        .request_connect(&alice, &alice_token, &bob)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RendezvousError::Quota(q) if q.limit == 3),
        "{refused:?}"
    );
    rendezvous
        .request_connect(&alice, &alice_token, &carol)
        .await
        .expect("another target has its own rate");
}
