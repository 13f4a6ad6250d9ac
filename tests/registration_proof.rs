//! Registration that proves possession of the key a peer id derives from,
//! against a real in-process server on 127.0.0.1:0: GetChallenge, Register
//! with a signature, the public key in every peer shape (GetPeer,
//! ListPeers, WatchPeers, inbox, REST), every refused proof with its code,
//! takeover by the key's owner, and the real signaling client.

mod support;

use p2pchat::PublicKey;
use p2pchat::proto::{
    GetPeerRequest, ListPeersRequest, OpenInboxRequest, PeerChangeKind, RegisterRequest,
    RequestConnectRequest, UnregisterRequest, WatchPeersRequest, inbox_message,
};
use p2pchat_client::identity::Identity;
use p2pchat_client::signaling::{PeerKey, Registration, SignalEvent, Signaling};
use p2pchat_server::challenge::{CHALLENGE_BYTES, CHALLENGE_TTL};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;
use tokio::sync::{mpsc, watch};
use tonic::Code;

#[tokio::test]
async fn get_challenge_hands_out_fresh_challenges() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let resp = c
        .get_challenge(p2pchat::proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.challenge.len(), CHALLENGE_BYTES);
    assert_eq!(u64::from(resp.expires_in_seconds), CHALLENGE_TTL.as_secs());
    assert_ne!(resp.challenge, challenge(&mut c).await, "one-time values");
    server.shutdown().await;
}

#[tokio::test]
async fn a_proven_key_is_carried_in_every_peer_shape() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let alice = Identity::generate();
    let key_bytes = alice.public_key().as_bytes().to_vec();

    // A watcher from before the registration sees the key in the change.
    let mut changes = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    read_snapshot(&mut changes).await;

    let ch = challenge(&mut c).await;
    let resp = c
        .register(signed_request(&alice, ch, "Alice", 5000))
        .await
        .unwrap()
        .into_inner();
    let id = alice.peer_id().to_string();
    let peer = resp.peer.unwrap();
    assert_eq!(peer.peer_id, id, "the id is the key's");
    assert_eq!(peer.public_key, key_bytes);

    let joined = next_change(&mut changes).await;
    assert_eq!(joined.kind, PeerChangeKind::Joined as i32);
    assert_eq!(joined.peer.unwrap().public_key, key_bytes);

    let got = c
        .get_peer(GetPeerRequest {
            peer_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert_eq!(got.public_key, key_bytes);

    // A seed-style peer alongside has no key.
    let (v4, _) = register(&mut c, "Seed", 5001).await;
    let list = c
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.peers.len(), 2);
    for p in &list.peers {
        let expected = if p.peer_id == id {
            key_bytes.clone()
        } else {
            Vec::new()
        };
        assert_eq!(p.public_key, expected, "{}", p.peer_id);
    }

    let mut snapshot = c
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (peers, _, _) = read_snapshot(&mut snapshot).await;
    let keyed = peers.iter().find(|p| p.peer_id == id).unwrap();
    assert_eq!(keyed.public_key, key_bytes);
    assert!(
        peers
            .iter()
            .find(|p| p.peer_id == v4)
            .unwrap()
            .public_key
            .is_empty()
    );

    // REST: base64 of the key, or null.
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.local_addr());
    let peers: Value = http
        .get(format!("{base}/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = |pid: &str| {
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == pid)
            .unwrap()
            .clone()
    };
    assert_eq!(
        entry(&id)["public_key"],
        json!(alice.public_key().to_base64())
    );
    assert_eq!(
        PublicKey::from_base64(entry(&id)["public_key"].as_str().unwrap()).unwrap(),
        alice.public_key()
    );
    assert_eq!(entry(&v4)["public_key"], Value::Null);
    let one: Value = http
        .get(format!("{base}/peer/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["public_key"], json!(alice.public_key().to_base64()));
    server.shutdown().await;
}

#[tokio::test]
async fn rendezvous_carries_both_keys() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let (alice_id, alice_token) = register_keyed(&mut c, &alice, "Alice", 6000).await;
    let (bob_id, bob_token) = register_keyed(&mut c, &bob, "Bob", 6001).await;
    let mut inbox = c
        .open_inbox(OpenInboxRequest {
            peer_id: alice_id.clone(),
            session_token: alice_token,
        })
        .await
        .unwrap()
        .into_inner();
    next(&mut inbox).await; // opened
    let resp = c
        .request_connect(RequestConnectRequest {
            peer_id: bob_id,
            session_token: bob_token,
            target_peer_id: alice_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.target_notified);
    assert_eq!(
        resp.target.unwrap().public_key,
        alice.public_key().as_bytes().to_vec()
    );
    match next(&mut inbox).await.message {
        Some(inbox_message::Message::ConnectRequested(req)) => {
            assert_eq!(
                req.from.unwrap().public_key,
                bob.public_key().as_bytes().to_vec()
            );
        }
        other => panic!("expected a connect request, got {other:?}"),
    }
    server.shutdown().await;
}

/// Asserts that `req` is refused with `code` and a message containing
/// `needle`.
async fn refused(
    c: &mut p2pchat::proto::signaling_client::SignalingClient<tonic::transport::Channel>,
    req: RegisterRequest,
    code: Code,
    needle: &str,
) {
    let err = c.register(req).await.unwrap_err();
    assert_eq!(err.code(), code, "{needle}: {err:?}");
    assert!(err.message().contains(needle), "{needle:?} in {err:?}");
}

#[tokio::test]
async fn bad_proofs_are_refused_with_their_codes() {
    let server = start_default().await;
    let other_server = start_default().await;
    let mut c = client(&server).await;
    let mut other = client(&other_server).await;
    let alice = Identity::generate();
    let mallory = Identity::generate();
    let id = alice.peer_id().to_string();

    // A key-derived id without a proof.
    let bare = RegisterRequest {
        peer_id: id.clone(),
        username: "Alice".into(),
        udp_port: 1,
        ..Default::default()
    };
    refused(
        &mut c,
        bare.clone(),
        Code::Unauthenticated,
        "proof of its key",
    )
    .await;

    // A signature over another challenge.
    let signed = signed_request(&alice, challenge(&mut c).await, "Alice", 1);
    let sent = RegisterRequest {
        challenge: challenge(&mut c).await,
        ..signed.clone()
    };
    refused(
        &mut c,
        sent,
        Code::Unauthenticated,
        "signature does not verify",
    )
    .await;
    // Over another username than the one signed.
    let renamed = RegisterRequest {
        username: "Alicf".into(),
        ..signed.clone()
    };
    refused(
        &mut c,
        renamed,
        Code::Unauthenticated,
        "signature does not verify",
    )
    .await;
    // Signed by another key.
    let forged = RegisterRequest {
        public_key: alice.public_key().as_bytes().to_vec(),
        ..signed_request(&mallory, signed.challenge.clone(), "Alice", 1)
    };
    let forged = RegisterRequest {
        peer_id: id.clone(),
        ..forged
    };
    refused(
        &mut c,
        forged,
        Code::Unauthenticated,
        "signature does not verify",
    )
    .await;

    // A challenge from another server instance.
    let foreign = signed_request(&alice, challenge(&mut other).await, "Alice", 1);
    refused(
        &mut c,
        foreign,
        Code::Unauthenticated,
        "not issued by this server",
    )
    .await;

    // A key that does not own the peer id: another key's id, or a v4 id.
    let stolen = RegisterRequest {
        peer_id: id.clone(),
        ..signed_request(&mallory, challenge(&mut c).await, "Alice", 1)
    };
    refused(
        &mut c,
        stolen,
        Code::PermissionDenied,
        "does not own peer_id",
    )
    .await;
    let v4 = RegisterRequest {
        peer_id: new_id(),
        ..signed_request(&mallory, challenge(&mut c).await, "M", 1)
    };
    refused(&mut c, v4, Code::PermissionDenied, "does not own peer_id").await;

    // Malformed fields.
    let ch = challenge(&mut c).await;
    let good = signed_request(&alice, ch.clone(), "Alice", 1);
    let cases = [
        (
            RegisterRequest {
                public_key: good.public_key[..31].to_vec(),
                ..good.clone()
            },
            "public_key must be a 32-byte Ed25519",
        ),
        (
            RegisterRequest {
                public_key: {
                    let mut identity_point = vec![0u8; 32];
                    identity_point[0] = 1;
                    identity_point
                },
                ..good.clone()
            },
            "not of small order",
        ),
        (
            RegisterRequest {
                signature: good.signature[..63].to_vec(),
                ..good.clone()
            },
            "signature must be a 64-byte",
        ),
        (
            RegisterRequest {
                challenge: ch[1..].to_vec(),
                ..good.clone()
            },
            "challenge must be",
        ),
        (
            RegisterRequest {
                challenge: Vec::new(),
                ..good.clone()
            },
            "challenge (from GetChallenge) is required",
        ),
        (
            RegisterRequest {
                public_key: Vec::new(),
                ..good.clone()
            },
            "public_key is required",
        ),
    ];
    for (req, needle) in cases {
        refused(&mut c, req, Code::InvalidArgument, needle).await;
    }

    // None of the failures spent the challenge; the good proof registers.
    let resp = c.register(good.clone()).await.unwrap().into_inner();
    assert_eq!(resp.peer.unwrap().public_key, good.public_key);

    // The same challenge again: a replay, even with the token.
    let replay = RegisterRequest {
        session_token: resp.session_token.clone(),
        ..good.clone()
    };
    refused(&mut c, replay, Code::Unauthenticated, "already used").await;
    refused(&mut c, good, Code::Unauthenticated, "already used").await;

    // Registered now: without a proof and without the token still refused.
    refused(&mut c, bare, Code::PermissionDenied, "session token").await;
    other_server.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_key_derived_id_over_rest_is_refused() {
    let server = start_default().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.local_addr());
    let id = Identity::generate().peer_id().to_string();
    let resp = http
        .post(format!("{base}/register"))
        .json(&json!({"peer_id": id, "username": "Mallory", "port": 4000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("key-derived"),
        "{body}"
    );
    let resp = http.get(format!("{base}/peer/{id}")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "nothing was registered"
    );

    // Nor can REST refresh a keyed registration, even with its token.
    let mut c = client(&server).await;
    let alice = Identity::generate();
    let (id, token) = register_keyed(&mut c, &alice, "Alice", 4001).await;
    let resp = http
        .post(format!("{base}/register"))
        .bearer_auth(&token)
        .json(&json!({"peer_id": id, "username": "Alice", "port": 4002}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    server.shutdown().await;
}

#[tokio::test]
async fn key_registered_peers_refresh_with_their_token() {
    let server = start_default().await;
    let mut c = client(&server).await;
    let alice = Identity::generate();
    let (id, token) = register_keyed(&mut c, &alice, "Alice", 7000).await;
    // A token-only refresh (new port) needs no new proof and keeps the key.
    let resp = c
        .register(RegisterRequest {
            peer_id: id.clone(),
            username: "Alice".into(),
            udp_port: 7001,
            session_token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.session_token, token);
    let peer = resp.peer.unwrap();
    assert_eq!(peer.udp_port, 7001);
    assert_eq!(peer.public_key, alice.public_key().as_bytes().to_vec());
    // A fresh proof with the token keeps the token.
    let ch = challenge(&mut c).await;
    let resp = c
        .register(RegisterRequest {
            session_token: token.clone(),
            ..signed_request(&alice, ch, "Alice", 7001)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.session_token, token);
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_client_with_the_same_key_takes_over() {
    let server = start_default().await;
    let mut first = client(&server).await;
    let mut second = client(&server).await;
    let alice = Identity::generate();
    let (id, old_token) = register_keyed(&mut first, &alice, "Alice", 8000).await;
    let mut old_inbox = first
        .open_inbox(OpenInboxRequest {
            peer_id: id.clone(),
            session_token: old_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    next(&mut old_inbox).await; // opened

    // Same key, no token: the owner of the key takes over.
    let (_, new_token) = register_keyed(&mut second, &alice, "Alice (laptop)", 8001).await;
    assert_ne!(new_token, old_token);

    // The old inbox ends; the old token no longer works anywhere.
    let end = tokio::time::timeout(WAIT, old_inbox.message())
        .await
        .expect("the old inbox ends in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    let refresh = RegisterRequest {
        peer_id: id.clone(),
        username: "Alice".into(),
        udp_port: 8000,
        session_token: old_token.clone(),
        ..Default::default()
    };
    let err = first.register(refresh).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = first
        .open_inbox(OpenInboxRequest {
            peer_id: id.clone(),
            session_token: old_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = first
        .unregister(UnregisterRequest {
            peer_id: id.clone(),
            session_token: old_token,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The new holder owns the record.
    let got = second
        .get_peer(GetPeerRequest {
            peer_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert_eq!(got.username, "Alice (laptop)");
    assert_eq!(got.udp_port, 8001);
    assert!(!got.inbox_open, "the old inbox no longer counts");
    second
        .unregister(UnregisterRequest {
            peer_id: id,
            session_token: new_token,
        })
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn the_signaling_client_registers_with_its_key_and_checks_others() {
    let server = start_default().await;
    let url = format!("http://{}", server.local_addr());
    let registration = |name: &str| Registration {
        username: name.into(),
        udp_port: 9000,
        endpoints: Vec::new(),
    };
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let (a, reg) = Signaling::register(&url, alice.clone(), registration("Alice"))
        .await
        .expect("registers");
    assert_eq!(reg.username, "Alice");
    assert_eq!(a.peer_id(), alice.peer_id(), "our id is our key's");
    assert_eq!(a.public_key(), alice.public_key());
    let stored = server.store().get(&alice.peer_id()).await.unwrap();
    assert_eq!(stored.public_key, Some(alice.public_key()));
    let (b, _) = Signaling::register(&url, bob.clone(), registration("Bob"))
        .await
        .expect("registers");
    // A seed-style peer over REST.
    let seed = new_id();
    let resp = reqwest::Client::new()
        .post(format!("{url}/register"))
        .json(&json!({"peer_id": seed, "username": "Seed", "port": 4000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let (events_tx, mut events) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(a.clone().run(reg.lease, events_tx, stop_rx));
    let peers = loop {
        match tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
            Some(SignalEvent::Snapshot(peers)) => break peers,
            Some(_) => continue,
            None => panic!("signaling task ended"),
        }
    };
    let key_of = |id: &str| {
        peers
            .iter()
            .find(|p| p.peer_id.to_string() == id)
            .map(|p| p.key)
    };
    assert_eq!(
        key_of(&bob.peer_id().to_string()),
        Some(PeerKey::Verified(bob.public_key()))
    );
    assert_eq!(
        key_of(&alice.peer_id().to_string()),
        Some(PeerKey::Verified(alice.public_key()))
    );
    assert_eq!(key_of(&seed), Some(PeerKey::Unverified));
    // The rendezvous answer is classified too.
    let (target, _) = b.request_connect(alice.peer_id()).await.unwrap();
    assert_eq!(target.key, PeerKey::Verified(alice.public_key()));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    server.shutdown().await;
}
