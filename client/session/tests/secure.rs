//! Encrypted sessions over the simulated link: the handshake in hello and
//! pong, sealed traffic, and what an attacker who can send any datagram
//! from any address gets (nothing).

use super::*;
use crate::identity::Identity;

fn connected(net: &mut Net) {
    net.connect_a();
    net.run(Duration::from_millis(50));
    assert_eq!(net.a().phase(), Phase::Connected);
    assert_eq!(net.b().phase(), Phase::Connected);
}

fn sealed(bytes: &[u8]) -> bool {
    classify(bytes) == DatagramKind::Sealed
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn ik_connects_in_one_round_trip_and_seals_everything_after() {
    let mut net = Net::encrypted(CLEAN, 1);
    connected(&mut net);
    let (a_key, b_key) = {
        let (a, b) = net.noise.as_ref().unwrap();
        (a.public_key(), b.public_key())
    };
    // A connected on B's answer, with a probe RTT, as a plaintext session.
    assert!(net.a_events.iter().any(|e| matches!(
        e,
        SessionEvent::Connected {
            encrypted: true,
            reliable: true,
            rtt: Some(_),
            ..
        }
    )));
    assert_eq!(net.a().probe_rounds(), 1);
    let (a_sec, b_sec) = (net.a().security(), net.b().security());
    assert_eq!(a_sec.remote_key, Some(b_key));
    assert_eq!(b_sec.remote_key, Some(a_key));
    assert!(a_sec.handshake_hash.is_some());
    assert_eq!(a_sec.handshake_hash, b_sec.handshake_hash);
    let handshake = net.captured.len();
    let line = net.a_send("hello bob, the secret is 42").unwrap();
    net.b_send("hi alice").unwrap();
    net.run(Duration::from_millis(50));
    assert_eq!(messages(&net.b_events), vec!["hello bob, the secret is 42"]);
    assert_eq!(messages(&net.a_events), vec!["hi alice"]);
    assert_eq!(delivered(&net.a_events), vec![line]);
    for (_, _, bytes) in &net.captured {
        assert!(!contains(bytes, "secret"), "a chat line in clear");
        assert!(!contains(bytes, "hi alice"), "a chat line in clear");
    }
    assert!(
        net.captured[handshake..].iter().all(|(_, _, b)| sealed(b)),
        "plaintext after the handshake"
    );
}

#[test]
fn encrypted_exactly_once_in_order_under_loss_duplication_and_reordering() {
    for seed in [3, 17, 99] {
        let link = Link {
            drop_pct: 20,
            dup_pct: 10,
            jitter_ms: 40,
        };
        let mut net = Net::encrypted(link, seed);
        net.connect_a();
        net.run(Duration::from_secs(3));
        assert_eq!(net.a().phase(), Phase::Connected, "seed {seed}");
        assert_eq!(net.b().phase(), Phase::Connected, "seed {seed}");
        let sent: Vec<String> = (0..100).map(|i| format!("msg {i}")).collect();
        for m in &sent {
            net.a_send(m).unwrap();
            net.run(Duration::from_millis(5));
        }
        net.run(Duration::from_secs(20));
        assert_eq!(messages(&net.b_events), sent, "seed {seed}");
        assert_eq!(delivered(&net.a_events).len(), 100, "seed {seed}");
    }
}

#[test]
fn forged_plaintext_claiming_the_peer_changes_nothing() {
    let mut net = Net::encrypted(CLEAN, 1);
    connected(&mut net);
    let b_id = net.b_id();
    let attacker: SocketAddr = "192.168.1.66:4000".parse().unwrap();
    let forged: Vec<Datagram> = vec![
        Pong {
            header: Header::now(b_id),
            nonce: None,
            announce: Announce::ours(1),
        }
        .into(),
        message(b_id, "injected", None, None),
        message(b_id, "injected", Some(1), None),
        Datagram::disconnect(b_id),
    ];
    let events_before = net.a_events.len();
    for from in [attacker, b_addr()] {
        for dg in &forged {
            let bytes = dg.encode().unwrap();
            net.deliver(a_addr(), from, &bytes);
        }
    }
    net.run(Duration::from_millis(50));
    assert_eq!(net.a().phase(), Phase::Connected);
    assert_eq!(net.a().addr(), Some(b_addr()));
    assert!(messages(&net.a_events).is_empty());
    assert!(!net.a_events[events_before..].iter().any(|e| matches!(
        e,
        SessionEvent::PathChanged { .. } | SessionEvent::Closed { .. }
    )));
    // Chat still flows.
    net.b_send("real").unwrap();
    net.run(Duration::from_millis(50));
    assert_eq!(messages(&net.a_events), vec!["real"]);
}

#[test]
fn replayed_ciphertext_is_shown_once_and_moves_nothing() {
    let mut net = Net::encrypted(CLEAN, 1);
    connected(&mut net);
    net.b_send("once").unwrap();
    net.run(Duration::from_millis(50));
    let to_a: Vec<Vec<u8>> = net
        .captured
        .iter()
        .filter(|(from, _, b)| *from == b_addr() && sealed(b))
        .map(|(_, _, b)| b.clone())
        .collect();
    assert!(!to_a.is_empty());
    let elsewhere: SocketAddr = "10.9.9.9:9".parse().unwrap();
    for bytes in &to_a {
        net.deliver(a_addr(), b_addr(), bytes);
        net.deliver(a_addr(), elsewhere, bytes);
    }
    net.run(Duration::from_millis(50));
    assert_eq!(messages(&net.a_events), vec!["once"]);
    assert_eq!(net.a().addr(), Some(b_addr()));
    assert_eq!(net.a().phase(), Phase::Connected);
}

#[test]
fn a_replayed_first_message_never_shows_a_connected_peer() {
    let mut net = Net::encrypted(CLEAN, 1);
    connected(&mut net);
    let (_, first) = net
        .captured
        .iter()
        .find(|(from, _, _)| *from == a_addr())
        .map(|(f, _, b)| (*f, b.clone()))
        .unwrap();
    let hello = Datagram::decode(&first).unwrap();
    assert!(hello.handshake().is_some());
    // Bob's device, a new session: the replay gets an answer, no session.
    let b = net.noise.as_ref().unwrap().1.clone();
    let attacker: SocketAddr = "10.6.6.6:6".parse().unwrap();
    let mut victim = Session::accept(
        fast(),
        b.peer_id(),
        "bob",
        &hello,
        attacker,
        Protection::Noise {
            identity: b,
            index: 77,
            role: Role::Respond,
        },
        net.now,
    );
    assert_eq!(victim.phase(), Phase::Probing);
    let actions = victim.take_actions();
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Event(SessionEvent::Connected { .. })))
    );
    assert_eq!(actions.len(), 1, "one answer, nothing more: {actions:?}");
}

#[test]
fn xx_without_the_peers_key_connects_and_learns_it() {
    let mut net = Net::encrypted(CLEAN, 2);
    let protection = net.protection(true, Role::Initiate(None));
    let (a_id, b_id) = (net.a_id(), net.b_id());
    net.a = Some(Session::connect(
        fast(),
        a_id,
        "alice",
        b_id,
        vec![b_addr()],
        protection,
        net.now,
    ));
    net.collect();
    net.run(Duration::from_millis(100));
    assert_eq!(net.a().phase(), Phase::Connected);
    assert_eq!(net.b().phase(), Phase::Connected);
    let b_key = net.noise.as_ref().unwrap().1.public_key();
    assert_eq!(net.a().security().remote_key, Some(b_key));
    net.a_send("over xx").unwrap();
    net.run(Duration::from_millis(50));
    assert_eq!(messages(&net.b_events), vec!["over xx"]);
}

#[test]
fn both_sides_calling_at_once_agree_on_one_handshake() {
    let mut net = Net::encrypted(CLEAN, 3);
    let (a_key, b_key) = {
        let (a, b) = net.noise.as_ref().unwrap();
        (a.public_key(), b.public_key())
    };
    let (a_id, b_id) = (net.a_id(), net.b_id());
    let pa = net.protection(true, Role::Initiate(Some(b_key)));
    let pb = net.protection(false, Role::Initiate(Some(a_key)));
    net.a = Some(Session::connect(
        fast(),
        a_id,
        "alice",
        b_id,
        vec![b_addr()],
        pa,
        net.now,
    ));
    net.b = Some(Session::connect(
        fast(),
        b_id,
        "bob",
        a_id,
        vec![a_addr()],
        pb,
        net.now,
    ));
    net.collect();
    net.run(Duration::from_millis(200));
    assert_eq!(net.a().phase(), Phase::Connected);
    assert_eq!(net.b().phase(), Phase::Connected);
    let (ha, hb) = (
        net.a().security().handshake_hash,
        net.b().security().handshake_hash,
    );
    assert!(ha.is_some());
    assert_eq!(ha, hb);
    net.a_send("one").unwrap();
    net.b_send("two").unwrap();
    net.run(Duration::from_millis(50));
    assert_eq!(messages(&net.b_events), vec!["one"]);
    assert_eq!(messages(&net.a_events), vec!["two"]);
}

#[test]
fn a_substituted_key_never_connects() {
    let mut net = Net::encrypted(CLEAN, 4);
    // The registry lied about B's key: B cannot read the first message.
    let wrong = Identity::generate().public_key();
    let protection = net.protection(true, Role::Initiate(Some(wrong)));
    let (a_id, b_id) = (net.a_id(), net.b_id());
    net.a = Some(Session::connect(
        fast(),
        a_id,
        "alice",
        b_id,
        vec![b_addr()],
        protection,
        net.now,
    ));
    net.collect();
    net.run(Duration::from_secs(3));
    assert_ne!(net.a().phase(), Phase::Connected);
    assert!(net.b.as_ref().is_none_or(|b| b.phase() != Phase::Connected));
    assert!(
        !net.a_events
            .iter()
            .any(|e| matches!(e, SessionEvent::Connected { .. }))
    );
}
