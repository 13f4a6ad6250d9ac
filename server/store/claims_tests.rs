//! The store's per-source registrations quota and its lookalike-name index,
//! through `dyn PeerStore` as the server uses them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use p2pchat::PeerId;

use super::*;
use crate::quota::Quota;

const A: [u8; 4] = [192, 0, 2, 1];
const B: [u8; 4] = [192, 0, 2, 2];

fn store_with(per_source: usize, lease: Duration) -> (Arc<dyn PeerStore>, MemoryStoreGuard) {
    let (store, guard) = MemoryStore::new(StoreConfig {
        lease,
        registrations_per_source: per_source,
        ..StoreConfig::default()
    });
    (Arc::new(store), guard)
}

fn reg(id: PeerId, name: &str, ip: [u8; 4], token: Option<Credential>) -> Registration {
    Registration {
        peer_id: id,
        username: Some(name.into()),
        udp_port: 4000,
        endpoints: Vec::new(),
        token,
        public_key: None,
        observed_ip: IpAddr::from(ip),
        via: RegisteredVia::Grpc,
    }
}

async fn join(
    store: &dyn PeerStore,
    name: &str,
    ip: [u8; 4],
) -> Result<(PeerId, Credential), StoreError> {
    let id = PeerId::random();
    let done = store.register(reg(id, name, ip, None)).await?;
    Ok((id, Credential::Token(done.token)))
}

fn is_quota(err: &StoreError) -> bool {
    matches!(err, StoreError::Quota(q) if q.quota == Quota::Registrations && q.limit == 3)
}

#[tokio::test(start_paused = true)]
async fn a_source_holds_n_registrations_and_not_one_more() {
    let (store, _guard) = store_with(3, Duration::from_secs(60));
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(
            join(&*store, &format!("a{i}"), A)
                .await
                .expect("within the quota"),
        );
    }
    let refused = join(&*store, "a3", A).await.unwrap_err();
    assert!(is_quota(&refused), "{refused:?}");
    join(&*store, "b0", B)
        .await
        .expect("another source is unaffected");

    // A refresh of one's own registration is not a new one.
    let (id, token) = held[0];
    store
        .register(reg(id, "a0", A, Some(token)))
        .await
        .expect("a refresh at the quota");
    // Unregistering gives the slot back.
    store.unregister(&id, &token).await.unwrap();
    let (id, token) = join(&*store, "a3", A).await.expect("a slot came back");
    held[0] = (id, token);
    assert!(is_quota(&join(&*store, "a4", A).await.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn expired_leases_give_their_slots_back() {
    let (store, _guard) = store_with(3, Duration::from_secs(10));
    for i in 0..3 {
        join(&*store, &format!("a{i}"), A).await.unwrap();
    }
    assert!(is_quota(&join(&*store, "late", A).await.unwrap_err()));
    tokio::time::sleep(Duration::from_secs(11)).await;
    for i in 0..3 {
        join(&*store, &format!("b{i}"), A)
            .await
            .expect("the expired three no longer count");
    }
}

#[tokio::test(start_paused = true)]
async fn moving_to_another_source_counts_there() {
    let (store, _guard) = store_with(3, Duration::from_secs(60));
    for i in 0..3 {
        join(&*store, &format!("b{i}"), B).await.unwrap();
    }
    let (id, token) = join(&*store, "mover", A).await.unwrap();
    let refused = store.register(reg(id, "mover", B, Some(token))).await;
    assert!(is_quota(&refused.unwrap_err()), "B is full");
    for i in 0..2 {
        join(&*store, &format!("a{i}"), A).await.unwrap();
    }
    assert!(is_quota(&join(&*store, "a2", A).await.unwrap_err()));
    // Leaving A for a source with room frees the slot at A.
    store
        .register(reg(id, "mover", [192, 0, 2, 3], Some(token)))
        .await
        .expect("moved");
    join(&*store, "a2", A)
        .await
        .expect("the mover's slot at A is free");
}

#[tokio::test(start_paused = true)]
async fn online_names_are_unique_by_skeleton() {
    let (store, _guard) = store_with(64, Duration::from_secs(10));
    let (alice, token) = join(&*store, "Alice", A).await.unwrap();
    for lookalike in [
        "Alice",
        "\u{ff21}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
        "AIice",
        "A1ice",
    ] {
        let refused = join(&*store, lookalike, B).await.unwrap_err();
        assert_eq!(
            refused,
            StoreError::NameTaken {
                name: lookalike.into()
            }
        );
    }
    join(&*store, "alice", B).await.expect("another name");
    // The same id re-registering keeps its name.
    store
        .register(reg(alice, "Alice", A, Some(token)))
        .await
        .expect("re-registered");
    // Renaming frees the old name.
    store
        .register(reg(alice, "Alice2", A, Some(token)))
        .await
        .expect("renamed");
    let (bob, _) = join(&*store, "Alice", B).await.expect("free again");
    // Once a peer is offline its name is free.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(!store.get(&bob).await.unwrap().online);
    join(&*store, "AIice", B).await.expect("Alice went offline");
}

#[tokio::test(start_paused = true)]
async fn default_names_are_claimed_too() {
    let (store, _guard) = store_with(64, Duration::from_secs(60));
    let id = PeerId::random();
    let mut anonymous = reg(id, "", A, None);
    anonymous.username = None;
    store.register(anonymous).await.unwrap();
    let refused = join(&*store, &default_username(&id), B).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::NameTaken { .. }),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lookalikes_at_once_cannot_both_register() {
    let (store, _guard) = store_with(64, Duration::from_secs(60));
    for round in 0..20 {
        let names = [format!("Carol{round}"), format!("CaroI{round}")];
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                let store = store.clone();
                tokio::spawn(async move { join(&*store, &name, A).await.is_ok() })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            won += usize::from(task.await.unwrap());
        }
        assert_eq!(won, 1, "round {round}");
    }
}
