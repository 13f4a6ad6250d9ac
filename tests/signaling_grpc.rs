//! The gRPC service against a real in-process server on 127.0.0.1:0: every
//! RPC, its error paths, WatchPeers ordering/expiry/lag/resume, inbox
//! rendezvous, limits at their edge and graceful shutdown.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use p2pchat::proto::{
    self, Endpoint, EndpointKind, GetPeerRequest, ListPeersRequest, OpenInboxRequest,
    PeerChangeKind, RegisterRequest, RequestConnectRequest, SnapshotReason, UnregisterRequest,
    WatchPeersRequest, inbox_message, watch_peers_response,
};
use p2pchat_server::ServerConfig;
use support::*;
use tonic::Code;

fn register_req(peer_id: &str, username: &str, port: u32) -> RegisterRequest {
    RegisterRequest {
        peer_id: peer_id.into(),
        username: username.into(),
        udp_port: port,
        ..Default::default()
    }
}

#[tokio::test]
async fn register_get_list_unregister() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let id = new_id();
    let resp = c
        .register(RegisterRequest {
            peer_id: id.clone(),
            username: "Alice".into(),
            udp_port: 54321,
            endpoints: vec![Endpoint {
                ip: "10.0.1.2".into(),
                port: 54321,
                kind: EndpointKind::Local as i32,
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.session_token.len(), 64);
    assert!(resp.session_token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(resp.observed_ip, "127.0.0.1");
    assert_eq!(resp.lease_seconds, 60);
    let peer = resp.peer.unwrap();
    assert_eq!(peer.peer_id, id);
    assert!(peer.online);
    // The peer's own endpoint first, then the observed one added by the server.
    let eps: Vec<_> = peer
        .endpoints
        .iter()
        .map(|e| (e.ip.as_str(), e.port, e.kind))
        .collect();
    assert_eq!(
        eps,
        vec![
            ("10.0.1.2", 54321, EndpointKind::Local as i32),
            ("127.0.0.1", 54321, EndpointKind::Observed as i32)
        ]
    );

    let got = c
        .get_peer(GetPeerRequest {
            peer_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert_eq!(got.username, "Alice");
    assert_eq!(got.observed_ip, "127.0.0.1");
    assert_eq!(got.udp_port, 54321);
    assert_eq!(got.registered_via, proto::RegisteredVia::Grpc as i32);
    assert!(got.last_seen_unix > 1.7e9);

    let list = c
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_count, 1);
    assert_eq!(list.peers[0].peer_id, id);
    assert!(list.next_page_token.is_empty());

    c.unregister(UnregisterRequest {
        peer_id: id.clone(),
        session_token: resp.session_token,
    })
    .await
    .unwrap();
    let err = c
        .get_peer(GetPeerRequest { peer_id: id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn default_username_and_uppercase_id() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let resp = c
        .register(register_req(
            "A1B2C3D4-5678-90AB-CDEF-1234567890AB",
            "",
            9000,
        ))
        .await
        .unwrap()
        .into_inner();
    let peer = resp.peer.unwrap();
    assert_eq!(peer.peer_id, "a1b2c3d4-5678-90ab-cdef-1234567890ab");
    assert_eq!(peer.username, "user_a1b2c3d4");
    server.shutdown().await;
}

#[tokio::test]
async fn register_validation_errors_at_the_edges() {
    let config = ServerConfig::default();
    let max_endpoints = config.registry.max_endpoints;
    let server = start(config).await;
    let mut c = client(&server).await;

    let cases: Vec<(RegisterRequest, &str)> = vec![
        (register_req("not-a-uuid", "x", 1), "peer_id must be a UUID"),
        (
            register_req(&new_id(), "x", 0),
            "udp_port must be between 1 and 65535",
        ),
        (
            register_req(&new_id(), "x", 65536),
            "udp_port must be between 1 and 65535",
        ),
        (
            register_req(&new_id(), &"a".repeat(65), 1),
            "at most 64 characters",
        ),
        (
            register_req(&new_id(), "evil\u{1b}[2J", 1),
            "control characters",
        ),
        (
            RegisterRequest {
                endpoints: vec![Endpoint {
                    ip: "not-an-ip".into(),
                    port: 1,
                    kind: 1,
                }],
                ..register_req(&new_id(), "x", 1)
            },
            "IPv4 or IPv6",
        ),
        (
            RegisterRequest {
                endpoints: (0..=max_endpoints as u32)
                    .map(|i| Endpoint {
                        ip: "10.0.0.1".into(),
                        port: 1000 + i,
                        kind: 1,
                    })
                    .collect(),
                ..register_req(&new_id(), "x", 1)
            },
            "at most 16 endpoints",
        ),
    ];
    for (req, needle) in cases {
        let err = c.register(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{needle:?} in {err:?}");
    }

    // The accepted edges.
    c.register(register_req(&new_id(), &"é".repeat(64), 1))
        .await
        .unwrap();
    c.register(register_req(&new_id(), "x", 65535))
        .await
        .unwrap();
    c.register(RegisterRequest {
        endpoints: (0..max_endpoints as u32)
            .map(|i| Endpoint {
                ip: "10.0.0.1".into(),
                port: 1000 + i,
                kind: 1,
            })
            .collect(),
        // Another name: two online peers cannot share one.
        ..register_req(&new_id(), "y", 1)
    })
    .await
    .unwrap();
    // Nothing invalid got in.
    let list = c
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_count, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn ownership_is_enforced() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let (id, token) = register(&mut c, "Alice", 5000).await;

    // Impersonation: same id, no token / wrong token.
    let err = c
        .register(register_req(&id, "Mallory", 6000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .register(RegisterRequest {
            session_token: "0".repeat(64),
            ..register_req(&id, "Mallory", 6000)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Kicking: unregister with a wrong token.
    let err = c
        .unregister(UnregisterRequest {
            peer_id: id.clone(),
            session_token: "wrong".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Still Alice.
    let peer = c
        .get_peer(GetPeerRequest {
            peer_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert_eq!((peer.username.as_str(), peer.udp_port), ("Alice", 5000));

    // The owner refreshes and updates with its token and keeps the token.
    let resp = c
        .register(RegisterRequest {
            session_token: token.clone(),
            ..register_req(&id, "Alice2", 5001)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.session_token, token);
    assert_eq!(resp.peer.unwrap().username, "Alice2");

    let err = c
        .unregister(UnregisterRequest {
            peer_id: new_id(),
            session_token: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    c.unregister(UnregisterRequest {
        peer_id: id,
        session_token: token,
    })
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn get_peer_errors() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let err = c
        .get_peer(GetPeerRequest { peer_id: new_id() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "Peer not found");
    let err = c
        .get_peer(GetPeerRequest {
            peer_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test]
async fn list_peers_paginates_in_id_order() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(register(&mut c, &format!("p{i}"), 1000 + i).await.0);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_peers(ListPeersRequest {
                page_size: 10,
                page_token: token.clone(),
                include_offline: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert_eq!(page.total_count, 25);
        assert!(page.peers.len() <= 10);
        seen.extend(page.peers.into_iter().map(|p| p.peer_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    // The page size limit, at its edge.
    let max = ServerConfig::default().max_page_size as u32;
    let page = c
        .list_peers(ListPeersRequest {
            page_size: max,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.peers.len(), 25);
    let err = c
        .list_peers(ListPeersRequest {
            page_size: max + 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .list_peers(ListPeersRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test]
async fn watch_sends_snapshot_then_ordered_changes() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let (alice, _) = register(&mut c, "Alice", 5000).await;
    let mut watch = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (peers, snap_rev, reason) = read_snapshot(&mut watch).await;
    assert_eq!(reason, SnapshotReason::Initial as i32);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id, alice);

    let (bob, bob_token) = register(&mut c, "Bob", 5001).await;
    let joined = next_change(&mut watch).await;
    assert_eq!(joined.kind, PeerChangeKind::Joined as i32);
    assert_eq!(joined.peer.as_ref().unwrap().peer_id, bob);
    assert!(joined.revision > snap_rev);

    c.register(RegisterRequest {
        session_token: bob_token.clone(),
        ..register_req(&bob, "Bobby", 5001)
    })
    .await
    .unwrap();
    let updated = next_change(&mut watch).await;
    assert_eq!(updated.kind, PeerChangeKind::Updated as i32);
    assert_eq!(updated.peer.as_ref().unwrap().username, "Bobby");
    assert!(updated.revision > joined.revision);

    c.unregister(UnregisterRequest {
        peer_id: bob.clone(),
        session_token: bob_token,
    })
    .await
    .unwrap();
    let left = next_change(&mut watch).await;
    assert_eq!(left.kind, PeerChangeKind::Left as i32);
    assert_eq!(left.left_reason, proto::LeftReason::Unregistered as i32);
    assert!(!left.peer.as_ref().unwrap().online);
    assert!(left.revision > updated.revision);
    server.shutdown().await;
}

#[tokio::test]
async fn lease_expiry_emits_left_and_keeps_offline_record() {
    let server = start(ServerConfig {
        lease: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut c = client(&server).await;
    let mut watch = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    read_snapshot(&mut watch).await;
    let (id, token) = register(&mut c, "Short", 5000).await;
    assert_eq!(
        next_change(&mut watch).await.kind,
        PeerChangeKind::Joined as i32
    );
    let started = tokio::time::Instant::now();
    let left = next_change(&mut watch).await;
    assert_eq!(left.kind, PeerChangeKind::Left as i32);
    assert_eq!(left.left_reason, proto::LeftReason::LeaseExpired as i32);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    let peer = c
        .get_peer(GetPeerRequest {
            peer_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert!(!peer.online);
    let online = c
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(online.total_count, 0);
    let all = c
        .list_peers(ListPeersRequest {
            include_offline: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.total_count, 1);

    // The owner comes back with its token: JOINED again.
    c.register(RegisterRequest {
        session_token: token,
        ..register_req(&id, "Short", 5000)
    })
    .await
    .unwrap();
    let back = next_change(&mut watch).await;
    assert_eq!(back.kind, PeerChangeKind::Joined as i32);
    server.shutdown().await;
}

#[tokio::test]
async fn open_inbox_keeps_the_lease_alive() {
    let server = start(ServerConfig {
        lease: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut c = client(&server).await;
    let (id, token) = register(&mut c, "Holder", 5000).await;
    let mut inbox = c
        .open_inbox(OpenInboxRequest {
            peer_id: id.clone(),
            session_token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    match next(&mut inbox).await.message {
        Some(inbox_message::Message::Opened(o)) => assert_eq!(o.lease_seconds, 1),
        other => panic!("expected Opened, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let peer = c
        .get_peer(GetPeerRequest {
            peer_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert!(peer.online, "open inbox must keep the peer online");
    assert!(peer.inbox_open);

    drop(inbox);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let peer = c
        .get_peer(GetPeerRequest { peer_id: id })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert!(!peer.online, "lease runs out once the inbox closes");
    server.shutdown().await;
}

#[tokio::test]
async fn request_connect_pushes_to_the_target_inbox() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let (alice, alice_token) = register(&mut c, "Alice", 5000).await;
    let (bob, bob_token) = register(&mut c, "Bob", 5001).await;

    // Bob holds no inbox yet: the call works but nobody was told.
    let resp = c
        .request_connect(RequestConnectRequest {
            peer_id: alice.clone(),
            session_token: alice_token.clone(),
            target_peer_id: bob.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resp.target_notified);
    assert_eq!(resp.target.unwrap().udp_port, 5001);

    let mut inbox = c
        .open_inbox(OpenInboxRequest {
            peer_id: bob.clone(),
            session_token: bob_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    next(&mut inbox).await; // Opened
    let resp = c
        .request_connect(RequestConnectRequest {
            peer_id: alice.clone(),
            session_token: alice_token.clone(),
            target_peer_id: bob.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.target_notified);
    let target = resp.target.unwrap();
    assert_eq!(target.peer_id, bob);
    assert!(target.inbox_open);
    match next(&mut inbox).await.message {
        Some(inbox_message::Message::ConnectRequested(req)) => {
            assert_eq!(req.connect_id, resp.connect_id);
            let from = req.from.unwrap();
            assert_eq!(from.peer_id, alice);
            assert_eq!(from.udp_port, 5000);
            assert!(!from.endpoints.is_empty());
        }
        other => panic!("expected ConnectRequested, got {other:?}"),
    }

    // Error paths.
    let call = |peer_id: &str, token: &str, target: &str| RequestConnectRequest {
        peer_id: peer_id.into(),
        session_token: token.into(),
        target_peer_id: target.into(),
    };
    let err = c
        .request_connect(call(&alice, "wrong", &bob))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .request_connect(call(&alice, &alice_token, &new_id()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .request_connect(call(&alice, &alice_token, &alice))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Opening someone else's inbox needs their token.
    let err = c
        .open_inbox(OpenInboxRequest {
            peer_id: bob.clone(),
            session_token: alice_token,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Unregistering ends the inbox stream.
    c.unregister(UnregisterRequest {
        peer_id: bob,
        session_token: bob_token,
    })
    .await
    .unwrap();
    let end = tokio::time::timeout(WAIT, inbox.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    server.shutdown().await;
}

/// Applies a watch stream to a local map, as a client would.
fn apply(
    map: &mut BTreeMap<String, proto::Peer>,
    msg: proto::WatchPeersResponse,
    saw_resync: &mut bool,
) -> u64 {
    match msg.update {
        Some(watch_peers_response::Update::Snapshot(s)) => {
            if s.first_chunk {
                map.clear();
            }
            if s.reason == SnapshotReason::Resync as i32 {
                *saw_resync = true;
            }
            for p in s.peers {
                map.insert(p.peer_id.clone(), p);
            }
            s.revision
        }
        Some(watch_peers_response::Update::Change(c)) => {
            let p = c.peer.unwrap();
            if c.kind == PeerChangeKind::Left as i32 {
                map.remove(&p.peer_id);
            } else {
                map.insert(p.peer_id.clone(), p);
            }
            c.revision
        }
        None => panic!("empty watch message"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_gets_a_fresh_snapshot_and_ends_consistent() {
    let mut config = ServerConfig::default();
    config.registry.watch_buffer = 4;
    // Every registration comes from 127.0.0.1.
    config.quotas.registrations_per_source = 2_000;
    let server = start(config).await;
    // A small receive window, so the unread stream backs up into the server.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr()))
            .unwrap()
            .initial_stream_window_size(16 * 1024)
            .initial_connection_window_size(16 * 1024)
            .connect()
            .await
            .unwrap();
    let mut c = p2pchat::proto::signaling_client::SignalingClient::new(channel);
    let mut watch = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut map = BTreeMap::new();
    let mut resync = false;
    let mut last = 0;
    // Read the initial snapshot, then stop reading while many changes happen.
    let first = next(&mut watch).await;
    apply(&mut map, first, &mut resync);
    let mut registrar = client(&server).await;
    let mut expected = Vec::new();
    for i in 0..2000 {
        expected.push(
            register(&mut registrar, &format!("p{i}"), 1000 + (i % 60000))
                .await
                .0,
        );
    }
    let resp = registrar
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.total_count, 2000);
    // The revision after the last registration is what the watcher must reach.
    let mut current = server.store().watch(None).await.unwrap();
    let target_revision = match tokio_stream::StreamExt::next(&mut current).await {
        Some(p2pchat_server::store::WatchEvent::Snapshot { revision, .. }) => revision,
        other => panic!("{other:?}"),
    };
    let mut mid_snapshot = false;
    while last < target_revision || mid_snapshot {
        let msg = next(&mut watch).await;
        if let Some(watch_peers_response::Update::Snapshot(s)) = &msg.update {
            mid_snapshot = !s.last_chunk;
        }
        let rev = apply(&mut map, msg, &mut resync);
        assert!(rev >= last, "revisions never go back: {rev} after {last}");
        last = rev;
    }
    assert!(resync, "the lagging watcher must have been resynced");
    expected.sort();
    let got: Vec<String> = map.keys().cloned().collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "watcher's view differs from the registry");
    server.shutdown().await;
}

#[tokio::test]
async fn watch_resumes_from_a_revision() {
    let mut config = ServerConfig::default();
    config.registry.history_len = 8;
    let server = start(config).await;
    let mut c = client(&server).await;
    let mut watch = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (_, rev, _) = read_snapshot(&mut watch).await;
    drop(watch);
    let (a, _) = register(&mut c, "A", 1).await;
    let (b, _) = register(&mut c, "B", 2).await;

    // Within the history: exactly the missed changes, no snapshot.
    let mut resumed = c
        .watch_peers(WatchPeersRequest {
            resume_from_revision: rev,
        })
        .await
        .unwrap()
        .into_inner();
    let first = next_change(&mut resumed).await;
    let second = next_change(&mut resumed).await;
    assert_eq!(first.peer.unwrap().peer_id, a);
    assert_eq!(second.peer.unwrap().peer_id, b);
    assert_eq!(second.revision, first.revision + 1);
    // Live changes continue after the replay.
    let (cc, _) = register(&mut c, "C", 3).await;
    let third = next_change(&mut resumed).await;
    assert_eq!(third.peer.unwrap().peer_id, cc);
    assert_eq!(third.revision, second.revision + 1);

    // Too old for the history (8 kept): a snapshot saying so.
    for i in 0..10 {
        register(&mut c, &format!("x{i}"), 10 + i).await;
    }
    let mut old = c
        .watch_peers(WatchPeersRequest {
            resume_from_revision: rev,
        })
        .await
        .unwrap()
        .into_inner();
    let (peers, _, reason) = read_snapshot(&mut old).await;
    assert_eq!(reason, SnapshotReason::ResumeUnavailable as i32);
    assert_eq!(peers.len(), 13);
    server.shutdown().await;
}

#[tokio::test]
async fn max_peers_limit_at_its_edge() {
    let mut config = ServerConfig {
        lease: Duration::from_secs(1),
        ..Default::default()
    };
    config.registry.max_peers = 3;
    let server = start(config).await;
    let mut c = client(&server).await;
    for i in 0..3 {
        register(&mut c, &format!("p{i}"), 1000 + i).await;
    }
    let err = c
        .register(register_req(&new_id(), "p3", 1003))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("at most 3 peers"), "{err:?}");
    // Reads still work for everyone.
    assert_eq!(
        c.list_peers(ListPeersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .total_count,
        3
    );
    // Once leases run out, offline records make way for newcomers.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    register(&mut c, "late", 2000).await;
    server.shutdown().await;
}

#[tokio::test]
async fn max_watchers_limit_at_its_edge() {
    let server = start(ServerConfig {
        max_watchers: 2,
        ..Default::default()
    })
    .await;
    let mut c = client(&server).await;
    let mut w1 = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let _w2 = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    read_snapshot(&mut w1).await;
    let err = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    drop(w1);
    // The slot frees once the server notices the client left.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match c.watch_peers(WatchPeersRequest::default()).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_message_is_refused_and_server_keeps_serving() {
    let server = start(ServerConfig {
        max_message_bytes: 4096,
        ..Default::default()
    })
    .await;
    let mut c = client(&server).await;
    let err = c
        .register(RegisterRequest {
            endpoints: vec![
                Endpoint {
                    ip: "x".repeat(5000),
                    port: 1,
                    kind: 1
                };
                1
            ],
            ..register_req(&new_id(), "big", 1)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    register(&mut c, "small", 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_streams_cleanly() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let (id, token) = register(&mut c, "A", 1).await;
    let mut watch = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    read_snapshot(&mut watch).await;
    let mut inbox = c
        .open_inbox(OpenInboxRequest {
            peer_id: id,
            session_token: token,
        })
        .await
        .unwrap()
        .into_inner();
    next(&mut inbox).await;
    next_change(&mut watch).await; // inbox_open UPDATED
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown completes in time");
    let end = tokio::time::timeout(WAIT, watch.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "watch ends cleanly: {end:?}");
    let end = tokio::time::timeout(WAIT, inbox.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "inbox ends cleanly: {end:?}");
}

#[tokio::test]
async fn pages_and_snapshot_chunks_fit_the_message_limit() {
    let limit = 8 * 1024;
    let mut config = ServerConfig {
        max_message_bytes: limit,
        ..Default::default()
    };
    // Every registration comes from 127.0.0.1.
    config.quotas.registrations_per_source = 300;
    let server = start(config).await;
    let mut c = client(&server).await;
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(register(&mut c, &format!("{i:0>64}"), 1000 + i).await.0);
    }
    ids.sort();
    // A client that refuses anything over the limit proves every message fits.
    let mut strict = client(&server).await.max_decoding_message_size(limit);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = strict
            .list_peers(ListPeersRequest {
                page_size: 1000,
                page_token: token,
                include_offline: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.peers.len() < 300, "a page this big cannot fit 8 KiB");
        seen.extend(page.peers.into_iter().map(|p| p.peer_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(seen == ids, "every peer exactly once, in order");

    let mut watch = strict
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (peers, _, _) = read_snapshot(&mut watch).await;
    let mut got: Vec<_> = peers.into_iter().map(|p| p.peer_id).collect();
    got.sort();
    assert!(got == ids, "snapshot holds every peer exactly once");
    server.shutdown().await;
}
