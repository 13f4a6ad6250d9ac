//! Attacks on the engine's end-to-end encryption, with real keys on both
//! sides: two (or three) sans-IO cores with their own identities exchange
//! datagrams by hand under a fake clock, and an attacker who can send any
//! datagram from any address (and replay anything it captured) tries to
//! get past them. Every test checks what the front end would see: no
//! `Message` that was not sealed by the peer, no `Disconnected` or
//! `PathChanged` caused by plaintext, nothing shown twice, and refusals
//! with a reason.

use std::collections::HashSet;

use p2pchat::proto::relay_frame::RelayFrame;
use p2pchat::{PublicKey, SessionToken};

use super::*;
use crate::engine::MAX_HANDSHAKE_ANSWERS_PER_SEC;
use crate::identity::{Identity, KnownPeers};
use crate::secure::{Handshake, LocalParams, Prologue};
use crate::signaling::PeerKey;
use crate::wire::{
    Ack, Announce, Header, Hello, Message as WireMessage, Ping, Pong, our_extensions,
};

/// One datagram on the simulated wire.
#[derive(Debug, Clone)]
struct Captured {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl Captured {
    fn kind(&self) -> DatagramKind {
        classify(&self.bytes)
    }
}

/// A core with its own key, as one peer's engine.
struct Node {
    core: Core,
    identity: Arc<Identity>,
    name: &'static str,
    addr: SocketAddr,
    /// Every event the front end got, in order.
    seen: Vec<Event>,
    /// Background tasks the core asked for, not yet answered.
    tasks: Vec<Task>,
}

fn session_config() -> SessionConfig {
    SessionConfig {
        keepalive_interval: Duration::from_secs(30),
        ..SessionConfig::default()
    }
}

impl Node {
    fn new(name: &'static str, port: u16, now: Instant) -> Node {
        Node::build(name, port, false, None, now)
    }

    fn build(
        name: &'static str,
        port: u16,
        require_encryption: bool,
        relay: Option<SocketAddr>,
        now: Instant,
    ) -> Node {
        let identity = Arc::new(Identity::generate());
        let config = CoreConfig {
            identity: identity.clone(),
            require_encryption,
            known_peers: KnownPeers::in_memory(),
            username: name.into(),
            session: session_config(),
            relay,
            stun_server: None,
            reflexive: None,
        };
        Node {
            core: Core::new(config, now),
            identity,
            name,
            addr: addr(port),
            seen: Vec::new(),
            tasks: Vec::new(),
        }
    }

    fn id(&self) -> PeerId {
        self.identity.peer_id()
    }

    fn key(&self) -> PublicKey {
        self.identity.public_key()
    }

    /// How the signaling server describes this peer (honestly).
    fn info(&self) -> RemotePeer {
        RemotePeer {
            peer_id: self.id(),
            username: self.name.into(),
            endpoints: vec![self.addr],
            inbox_open: true,
            via_rest: false,
            local_endpoints: vec![],
            key: PeerKey::Verified(self.key()),
        }
    }

    /// The events since the last call (also kept in `seen`).
    fn events(&mut self) -> Vec<Event> {
        let new: Vec<Event> = std::iter::from_fn(|| self.core.pop_event()).collect();
        self.seen.extend(new.iter().cloned());
        new
    }

    /// Answers every rendezvous the core asked for as the server would
    /// (the target as `server_says`, or as asked).
    fn serve_rendezvous(&mut self, server_says: Option<&RemotePeer>, now: Instant) {
        for task in std::mem::take(&mut self.tasks) {
            if let Task::Rendezvous {
                target,
                create,
                request,
            } = task
            {
                let answer = server_says.cloned().unwrap_or_else(|| target.clone());
                self.core.on_rendezvous(
                    RendezvousDone {
                        target,
                        result: Ok((answer, true)),
                        create,
                        request,
                    },
                    now,
                );
            }
        }
    }

    fn messages(&self) -> Vec<(String, bool)> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Message {
                    text, encrypted, ..
                } => Some((text.clone(), *encrypted)),
                _ => None,
            })
            .collect()
    }

    fn connected(&self) -> Vec<&Event> {
        self.seen
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .collect()
    }

    fn says(&mut self, text: &str, now: Instant) {
        self.core.on_request(Command::Send(text.into()).into(), now);
    }
}

/// Moves every queued datagram to the node it is addressed to (and the
/// replies, and theirs) until nothing is left; datagrams to addresses no
/// node has are captured and dropped. Returns everything sent. Bounded.
fn pump(nodes: &mut [&mut Node], now: Instant) -> Vec<Captured> {
    let mut captured = Vec::new();
    for _ in 0..500 {
        let mut queue = Vec::new();
        for node in nodes.iter_mut() {
            for out in node.core.take_outputs() {
                match out {
                    Output::Send { to, bytes } | Output::Prime { to, bytes } => {
                        queue.push(Captured {
                            from: node.addr,
                            to,
                            bytes,
                        })
                    }
                    Output::Task(task) => node.tasks.push(task),
                }
            }
        }
        if queue.is_empty() {
            for node in nodes.iter_mut() {
                node.events();
            }
            return captured;
        }
        for c in queue {
            if let Some(node) = nodes.iter_mut().find(|n| n.addr == c.to) {
                node.core.on_datagram(&c.bytes, c.from, now);
            }
            captured.push(c);
        }
    }
    panic!("the cores never went quiet");
}

/// Lets `total` pass on the fake clock in steps of `step`, firing timers
/// and moving datagrams.
fn run(
    nodes: &mut [&mut Node],
    now: &mut Instant,
    total: Duration,
    step: Duration,
) -> Vec<Captured> {
    let mut captured = Vec::new();
    let end = *now + total;
    while *now < end {
        *now += step;
        for node in nodes.iter_mut() {
            node.core.on_timer(*now);
        }
        captured.extend(pump(nodes, *now));
    }
    captured
}

/// `a` connects to `b` by name, through a rendezvous the server answers
/// (B hears of it as a connect request), and both come up. Returns the
/// datagrams of the handshake.
fn connect(a: &mut Node, b: &mut Node, now: Instant) -> Vec<Captured> {
    a.core.on_signal(SignalEvent::Snapshot(vec![b.info()]), now);
    b.core.on_signal(SignalEvent::Snapshot(vec![a.info()]), now);
    a.events();
    b.events();
    a.core
        .on_request(Command::Connect(b.name.into()).with_id(1), now);
    let mut captured = pump(&mut [a, b], now);
    a.serve_rendezvous(None, now);
    b.core
        .on_signal(SignalEvent::ConnectRequested { from: a.info() }, now);
    captured.extend(pump(&mut [a, b], now));
    assert_eq!(
        a.core.sessions.get(&b.id()).map(Session::phase),
        Some(Phase::Connected),
        "a connected: {:?}",
        a.seen
    );
    assert_eq!(
        b.core.sessions.get(&a.id()).map(Session::phase),
        Some(Phase::Connected),
        "b connected: {:?}",
        b.seen
    );
    captured
}

/// A pair of nodes, connected, with a line each way delivered.
fn chatting(now: Instant) -> (Node, Node) {
    let mut a = Node::new("alice", 31001, now);
    let mut b = Node::new("bob", 31002, now);
    connect(&mut a, &mut b, now);
    a.says("hi bob", now);
    b.says("hi alice", now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(b.messages(), [("hi bob".to_string(), true)]);
    assert_eq!(a.messages(), [("hi alice".to_string(), true)]);
    (a, b)
}

/// A hello carrying a first handshake message, from `from`.
fn hello_with(from: PeerId, session: u64, handshake: Vec<u8>) -> Vec<u8> {
    let hello: Datagram = Hello {
        header: Header::now(from),
        announce: Announce::with_handshake(session, Some(handshake)),
        username: Some("stranger".into()),
    }
    .into();
    hello.encode().unwrap()
}

/// A valid IK first message from a fresh identity to `to`: a stranger who
/// knows our key from the registry.
fn stranger_msg1(stranger: &Identity, to: &PublicKey, session: u64) -> Vec<u8> {
    let extensions = our_extensions();
    let prologue = Prologue {
        initiator: stranger.peer_id(),
        responder: to.peer_id(),
        extensions: &extensions,
    };
    let local = LocalParams {
        session,
        index: session as u32,
    };
    let now_ms = (crate::wire::unix_now() * 1000.0) as u64;
    let (_, msg1) = Handshake::initiate(stranger, Some(to), &prologue, local, now_ms).unwrap();
    msg1
}

/// Garbage that passes as a first message by its tag byte only.
fn garbage_msg1(seed: u64) -> Vec<u8> {
    let mut out = vec![0x01];
    let mut x = seed | 1;
    for _ in 0..96 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

fn sends_to(captured: &[Captured], to: SocketAddr) -> usize {
    captured.iter().filter(|c| c.to == to).count()
}

fn no_path_change_or_disconnect(events: &[Event]) {
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::PathChanged { .. } | Event::Disconnected { .. } | Event::Message { .. }
        )),
        "{events:?}"
    );
}

// ------------------------------------------------------------- (a) flood --

#[test]
fn a_burst_of_first_messages_is_read_at_most_the_budget_per_second() {
    // Garbage with the right tag byte is free to send and costs us a key
    // exchange to refuse: at most MAX_HANDSHAKE_ANSWERS_PER_SEC first
    // messages are examined a second, garbage included.
    let t0 = Instant::now();
    let mut a = Node::new("alice", 31001, t0);
    let attacker = addr(40000);
    let a_key = a.key();
    for i in 0..100u64 {
        let stranger = Identity::generate();
        a.core.on_datagram(
            &hello_with(stranger.peer_id(), i + 1, garbage_msg1(i + 1)),
            attacker,
            t0,
        );
        assert!(pump(&mut [&mut a], t0).is_empty(), "garbage answered");
    }
    assert!(a.core.pending.is_empty());
    // The budget is spent: a valid first message is not even read now,
    // though the pending table is empty...
    let stranger = Identity::generate();
    let valid = hello_with(stranger.peer_id(), 7, stranger_msg1(&stranger, &a_key, 7));
    a.core.on_datagram(&valid, attacker, t0);
    assert!(pump(&mut [&mut a], t0).is_empty(), "read past the budget");
    assert!(a.core.pending.is_empty());
    // ...a peer the server announces is not counted against it...
    let mut b = Node::new("bob", 31002, t0);
    connect(&mut b, &mut a, t0);
    assert_eq!(a.connected().len(), 1);
    // ...and a second later the budget is back.
    let now = t0 + Duration::from_secs(1);
    a.core.on_datagram(&valid, attacker, now);
    assert_eq!(sends_to(&pump(&mut [&mut a], now), attacker), 1);
    assert_eq!(a.core.pending.len(), 1);
    assert_eq!(a.core.sessions.len(), 1, "only bob");
    // At its edge, in the next second: MAX_HANDSHAKE_ANSWERS_PER_SEC
    // first messages are examined, the next one is not.
    let later = now + Duration::from_secs(1);
    let mut answered = 0;
    for i in 0..MAX_HANDSHAKE_ANSWERS_PER_SEC as u64 {
        let stranger = Identity::generate();
        let msg1 = stranger_msg1(&stranger, &a_key, 100 + i);
        // Garbage and valid alike count (the pending table would fill
        // with valid ones first, so the rest is garbage).
        let bytes = if i < 8 {
            hello_with(stranger.peer_id(), 100 + i, msg1)
        } else {
            hello_with(stranger.peer_id(), 100 + i, garbage_msg1(i + 1))
        };
        a.core.on_datagram(&bytes, attacker, later);
        answered += sends_to(&pump(&mut [&mut a], later), attacker);
    }
    assert_eq!(answered, 8);
    let stranger = Identity::generate();
    let msg1 = stranger_msg1(&stranger, &a_key, 999);
    a.core
        .on_datagram(&hello_with(stranger.peer_id(), 999, msg1), attacker, later);
    assert!(
        pump(&mut [&mut a], later).is_empty(),
        "first message {} of the second was read",
        MAX_HANDSHAKE_ANSWERS_PER_SEC + 1
    );
    assert_eq!(a.core.pending.len(), 1 + 8);
}

#[test]
fn a_flood_of_stranger_handshakes_opens_no_session_and_pending_stays_bounded() {
    // 100 hellos from made-up key-derived ids, one every 60 ms (within
    // the per-second budget), half garbage, half valid first messages of
    // strangers who know our key.
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Node::new("alice", 31001, now);
    let mut b = Node::new("bob", 31002, now);
    b.core.on_signal(SignalEvent::Snapshot(vec![a.info()]), now);
    let attacker = addr(40000);
    let a_key = a.key();
    let (mut valid, mut answered) = (0, 0);
    for i in 0..100u64 {
        now = t0 + Duration::from_millis(60 * i);
        for node in [&mut a, &mut b] {
            node.core.on_timer(now);
        }
        pump(&mut [&mut a, &mut b], now);
        let stranger = Identity::generate();
        let msg1 = if i % 2 == 0 {
            garbage_msg1(i + 1)
        } else {
            valid += 1;
            stranger_msg1(&stranger, &a_key, 1000 + i)
        };
        a.core.on_datagram(
            &hello_with(stranger.peer_id(), 1000 + i, msg1),
            attacker,
            now,
        );
        let out = pump(&mut [&mut a, &mut b], now);
        answered += sends_to(&out, attacker);
        assert!(
            a.core.sessions.is_empty(),
            "a session before any handshake completed"
        );
        // Garbage is never answered; a valid first message once while
        // there is room: the 17th and later are refused unanswered.
        let expect = usize::from(i % 2 == 1 && valid <= MAX_PENDING_HANDSHAKES);
        assert_eq!(sends_to(&out, attacker), expect, "hello {i}: {out:?}");
        assert_eq!(
            a.core.pending.len(),
            valid.min(MAX_PENDING_HANDSHAKES),
            "hello {i}"
        );
        if i == 32 {
            // The table is full. A real peer calling us directly (no
            // connect request through the server, e.g. our inbox is
            // reconnecting) is refused like any 17th...
            b.core
                .on_request(Command::Connect("alice".into()).into(), now);
            pump(&mut [&mut a, &mut b], now);
            b.serve_rendezvous(None, now);
            let out = pump(&mut [&mut a, &mut b], now);
            assert!(sends_to(&out, a.addr) > 0, "b probes");
            assert_eq!(sends_to(&out, b.addr), 0, "answered past the limit");
        }
    }
    assert_eq!(valid, 50);
    assert_eq!(answered, MAX_PENDING_HANDSHAKES);
    assert!(a.events().is_empty(), "the front end heard of strangers");
    // ...and its connect attempts (3 x 2 s) end before the strangers'
    // handshakes expire (PENDING_HANDSHAKE_TIMEOUT after each was
    // answered): unreachable.
    let first_since = a.core.pending.iter().map(|p| p.since).min().unwrap();
    assert_eq!(first_since, t0 + Duration::from_millis(60));
    let left = t0 + Duration::from_millis(8500) - now;
    run(
        &mut [&mut a, &mut b],
        &mut now,
        left,
        Duration::from_millis(50),
    );
    b.tasks.clear();
    assert!(a.core.sessions.is_empty());
    assert_eq!(a.core.pending.len(), MAX_PENDING_HANDSHAKES);
    assert!(
        b.seen.iter().any(|e| matches!(
            e,
            Event::Error {
                code: ErrorCode::Unreachable,
                ..
            }
        )),
        "{:?}",
        b.seen
    );

    // The edge: B tries again shortly before the first stranger expires.
    // Its probes are refused until PENDING_HANDSHAKE_TIMEOUT after that
    // stranger was answered, and the first probe after that gets in.
    let edge = first_since + PENDING_HANDSHAKE_TIMEOUT;
    now = edge - Duration::from_millis(400);
    b.core
        .on_request(Command::Connect("alice".into()).into(), now);
    pump(&mut [&mut a, &mut b], now);
    b.serve_rendezvous(None, now);
    pump(&mut [&mut a, &mut b], now);
    let until_edge = Duration::from_millis(400) - Duration::from_millis(1);
    run(
        &mut [&mut a, &mut b],
        &mut now,
        until_edge,
        Duration::from_millis(1),
    );
    assert_eq!(now, edge - Duration::from_millis(1));
    assert!(a.core.sessions.is_empty(), "in before a stranger expired");
    assert_eq!(a.core.pending.len(), MAX_PENDING_HANDSHAKES);
    assert_eq!(
        b.core.sessions.get(&a.id()).map(Session::phase),
        Some(Phase::Probing)
    );
    run(
        &mut [&mut a, &mut b],
        &mut now,
        Duration::from_millis(200),
        Duration::from_millis(1),
    );
    assert_eq!(
        a.core.sessions.get(&b.id()).map(Session::phase),
        Some(Phase::Connected),
        "{:?}",
        a.seen
    );
    assert!(
        !a.core
            .pending
            .iter()
            .any(|p| p.session.remote_id() == b.id()),
        "b still pending"
    );
    assert_eq!(a.connected().len(), 1);
    assert_eq!(b.connected().len(), 1);
    b.says("made it", now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(a.messages(), [("made it".to_string(), true)]);
}

#[test]
fn a_real_peer_announced_by_the_server_gets_in_past_a_full_pending_table() {
    let now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let a_key = a.key();
    // Strangers fill the pending table and spend this second's budget.
    for i in 0..100u64 {
        let stranger = Identity::generate();
        let msg1 = stranger_msg1(&stranger, &a_key, i + 1);
        a.core.on_datagram(
            &hello_with(stranger.peer_id(), i + 1, msg1),
            addr(40000),
            now,
        );
    }
    pump(&mut [&mut a], now);
    assert_eq!(a.core.pending.len(), MAX_PENDING_HANDSHAKES);
    // B goes through the server: A hears of it as a connect request and
    // holds a session waiting for B's first message, outside the pending
    // table and the handshake budget.
    let mut b = Node::new("bob", 31002, now);
    connect(&mut b, &mut a, now);
    assert_eq!(a.core.pending.len(), MAX_PENDING_HANDSHAKES);
    assert_eq!(a.connected().len(), 1);
}

#[test]
fn one_stranger_id_holds_at_most_two_pending_handshakes() {
    let now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let a_key = a.key();
    let stranger = Identity::generate();
    for session in 1..=10u64 {
        let msg1 = stranger_msg1(&stranger, &a_key, session);
        a.core.on_datagram(
            &hello_with(stranger.peer_id(), session, msg1),
            addr(40000),
            now,
        );
    }
    pump(&mut [&mut a], now);
    assert_eq!(a.core.pending.len(), MAX_PENDING_PER_PEER);
    assert!(a.core.sessions.is_empty());
    // A first message naming another responder (a replay of one meant for
    // someone else) is refused outright.
    let other = Identity::generate();
    let msg1 = stranger_msg1(&stranger, &other.public_key(), 99);
    let another = Identity::generate();
    a.core
        .on_datagram(&hello_with(another.peer_id(), 99, msg1), addr(40001), now);
    let out = pump(&mut [&mut a], now);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(a.core.pending.len(), MAX_PENDING_PER_PEER);
}

// ------------------------------------------------- (b) forged plaintext --

#[test]
fn forged_plaintext_claiming_a_connected_peer_changes_nothing() {
    let mut now = Instant::now();
    let (mut a, mut b) = chatting(now);
    let b_id = b.id();
    let seen_before = a.seen.len();
    let forged: Vec<Datagram> = vec![
        Pong {
            header: Header::now(b_id),
            nonce: None,
            announce: Announce::ours(7),
        }
        .into(),
        Ping {
            header: Header::now(b_id),
            nonce: Some(1),
            announce: Announce::ours(7),
        }
        .into(),
        WireMessage {
            header: Header::now(b_id),
            body: "injected".into(),
            id: None,
            part: None,
        }
        .into(),
        WireMessage {
            header: Header::now(b_id),
            body: "injected".into(),
            id: Some(2),
            part: None,
        }
        .into(),
        Ack {
            header: Header::now(b_id),
            id: Some(1),
            upto: Some(50),
        }
        .into(),
        Hello {
            header: Header::now(b_id),
            announce: Announce::ours(7),
            username: Some("bob".into()),
        }
        .into(),
        Datagram::disconnect(b_id),
    ];
    let attacker = addr(40000);
    for from in [attacker, b.addr] {
        for dg in &forged {
            a.core.on_datagram(&dg.encode().unwrap(), from, now);
            // Not even answered.
            let out = a.core.take_outputs();
            assert!(out.is_empty(), "{dg:?} from {from}: {out:?}");
        }
    }
    a.events();
    no_path_change_or_disconnect(&a.seen[seen_before..]);
    let session = &a.core.sessions[&b_id];
    assert_eq!(session.phase(), Phase::Connected);
    assert_eq!(session.addr(), Some(b.addr));
    // The session carries on: both ways, and B's line 2 is the real one
    // (the forged message id 2 did not take its place).
    run(
        &mut [&mut a, &mut b],
        &mut now,
        Duration::from_millis(500),
        Duration::from_millis(100),
    );
    b.says("real two", now);
    a.says("still here", now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(
        a.messages(),
        [
            ("hi alice".to_string(), true),
            ("real two".to_string(), true)
        ]
    );
    assert_eq!(b.messages().last().unwrap().0, "still here");
}

#[test]
fn a_replayed_or_forged_first_message_for_a_connected_peer_moves_nothing() {
    let now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let mut b = Node::new("bob", 31002, now);
    let handshake = connect(&mut a, &mut b, now);
    let seen_before = b.seen.len();
    // A's first message, captured on the wire.
    let msg1 = handshake
        .iter()
        .find(|c| {
            c.from == a.addr
                && Datagram::decode(&c.bytes)
                    .ok()
                    .and_then(|d| d.handshake().map(<[u8]>::to_vec))
                    .is_some()
        })
        .expect("a hello with msg1")
        .bytes
        .clone();
    // A stranger's first message claiming A's id (signed with its own key).
    let stranger = Identity::generate();
    let forged = hello_with(a.id(), 5, stranger_msg1(&stranger, &b.key(), 5));
    let attacker = addr(40000);
    for from in [attacker, a.addr] {
        b.core.on_datagram(&msg1, from, now);
        b.core.on_datagram(&forged, from, now);
    }
    // The replay may be answered (only A could read the answer); nothing
    // else happens to the session.
    let out = b.core.take_outputs();
    assert!(out.len() <= 2, "{out:?}");
    b.events();
    assert!(
        !b.seen[seen_before..].iter().any(|e| matches!(
            e,
            Event::Connected { .. } | Event::Disconnected { .. } | Event::PathChanged { .. }
        )),
        "{:?}",
        &b.seen[seen_before..]
    );
    assert_eq!(b.core.sessions.len(), 1);
    let session = &b.core.sessions[&a.id()];
    assert_eq!(session.phase(), Phase::Connected);
    assert_eq!(session.addr(), Some(a.addr));
    // Chat goes on.
    a.says("after the replay", now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(b.messages().last().unwrap().0, "after the replay");
}

// --------------------------------------------------------- (c) replays --

#[test]
fn replayed_sealed_datagrams_are_shown_once_and_move_no_path() {
    let mut now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let mut b = Node::new("bob", 31002, now);
    let mut wire = connect(&mut a, &mut b, now);
    for i in 0..5 {
        b.says(&format!("line {i}"), now);
        wire.extend(pump(&mut [&mut a, &mut b], now));
    }
    wire.extend(run(
        &mut [&mut a, &mut b],
        &mut now,
        Duration::from_secs(1),
        Duration::from_millis(100),
    ));
    let expect: Vec<(String, bool)> = (0..5).map(|i| (format!("line {i}"), true)).collect();
    assert_eq!(a.messages(), expect);
    let to_a: Vec<Vec<u8>> = wire
        .iter()
        .filter(|c| c.to == a.addr && c.kind() == DatagramKind::Sealed)
        .map(|c| c.bytes.clone())
        .collect();
    assert!(to_a.len() >= 5, "{}", to_a.len());
    let seen_before = a.seen.len();
    let elsewhere = addr(40000);
    for _ in 0..3 {
        for bytes in &to_a {
            a.core.on_datagram(bytes, b.addr, now);
            a.core.on_datagram(bytes, elsewhere, now);
        }
    }
    // A replay is dropped before the session sees it: no acks, no pongs.
    let answers = a.core.take_outputs();
    assert!(answers.is_empty(), "{answers:?}");
    a.events();
    no_path_change_or_disconnect(&a.seen[seen_before..]);
    assert_eq!(a.messages(), expect);
    assert_eq!(a.core.sessions[&b.id()].addr(), Some(b.addr));
    // Replayed to B (A's datagrams), the same.
    let to_b: Vec<Vec<u8>> = wire
        .iter()
        .filter(|c| c.to == b.addr && c.kind() == DatagramKind::Sealed)
        .map(|c| c.bytes.clone())
        .collect();
    let b_before = b.seen.len();
    for bytes in &to_b {
        b.core.on_datagram(bytes, elsewhere, now);
    }
    assert!(b.core.take_outputs().is_empty());
    b.events();
    no_path_change_or_disconnect(&b.seen[b_before..]);
    assert_eq!(b.core.sessions[&a.id()].addr(), Some(a.addr));
}

#[test]
fn a_sealed_datagram_altered_or_for_another_index_is_dropped() {
    let now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let mut b = Node::new("bob", 31002, now);
    connect(&mut a, &mut b, now);
    b.says("genuine", now);
    // Hold B's datagram back, tamper with copies, then deliver the real one.
    let out = b.core.take_outputs();
    let Some(Output::Send { bytes, .. }) = out.iter().find(
        |o| matches!(o, Output::Send { bytes, .. } if classify(bytes) == DatagramKind::Sealed),
    ) else {
        panic!("no sealed datagram: {out:?}")
    };
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut body = bytes.clone();
    body[20] ^= 0x80;
    let mut index = bytes.clone();
    index[3] ^= 0xff;
    let truncated = bytes[..bytes.len() - 3].to_vec();
    for bad in [&flipped, &body, &index, &truncated] {
        a.core.on_datagram(bad, b.addr, now);
    }
    assert!(a.core.take_outputs().is_empty());
    assert!(a.events().is_empty());
    a.core.on_datagram(bytes, b.addr, now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(a.messages(), [("genuine".to_string(), true)]);
}

// ------------------------------------------------- (d) substituted key --

#[test]
fn a_key_the_server_substituted_is_refused_with_the_reason() {
    let now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let b = Node::new("bob", 31002, now);
    let mut forged = b.info();
    forged.key = PeerKey::Forged;
    a.core
        .on_signal(SignalEvent::Snapshot(vec![forged.clone()]), now);
    a.events();
    a.core
        .on_request(Command::Connect("bob".into()).with_id(9), now);
    pump(&mut [&mut a], now);
    a.serve_rendezvous(Some(&forged), now);
    let out = pump(&mut [&mut a], now);
    assert!(out.is_empty(), "something sent to a forged peer: {out:?}");
    assert!(a.core.sessions.is_empty());
    let got = a.events();
    let refused: Vec<&Event> = a
        .seen
        .iter()
        .filter(|e| matches!(e, Event::Error { .. }))
        .collect();
    match refused.as_slice() {
        [
            Event::Error {
                id,
                code: ErrorCode::Refused,
                message,
            },
        ] => {
            assert!(message.contains("bob"), "{message}");
            assert!(
                message.contains("public key that does not belong to its id"),
                "{message}"
            );
            assert!(message.contains("impersonate"), "{message}");
            assert_eq!(*id, Some(9), "the error answers the connect request");
        }
        other => panic!("{other:?} / {got:?}"),
    }
    // The same when the forged peer asks the server to connect to us.
    a.core
        .on_signal(SignalEvent::ConnectRequested { from: forged }, now);
    assert!(pump(&mut [&mut a], now).is_empty());
    assert!(a.core.sessions.is_empty());
    assert!(a.seen.iter().any(|e| matches!(
        e,
        Event::Error {
            code: ErrorCode::Refused,
            id: None,
            ..
        }
    )));
    assert!(a.connected().is_empty());
}

#[test]
fn a_key_of_another_peer_under_the_right_id_never_connects() {
    // The server gives B's id with C's key: the client classifies that as
    // forged (the key does not derive the id), so it is the case above.
    // With a key that does derive the id the server cannot lie; what is
    // left is the server naming a whole other peer (id and key) "bob",
    // which the TOFU pin catches (below).
    let b = Identity::generate();
    let c = Identity::generate();
    assert!(matches!(
        PeerKey::classify(&b.peer_id(), c.public_key().as_bytes()),
        PeerKey::Forged
    ));
    assert!(matches!(
        PeerKey::classify(&b.peer_id(), &[]),
        PeerKey::Forged
    ));
    assert!(matches!(
        PeerKey::classify(&b.peer_id(), b.public_key().as_bytes()),
        PeerKey::Verified(_)
    ));
}

// ---------------------------------------------------------------- (e) TOFU --

#[test]
fn a_changed_key_under_a_pinned_name_is_refused_until_trusted() {
    let mut now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let mut b1 = Node::new("bob", 31002, now);
    connect(&mut a, &mut b1, now);
    let pinned = a.core.known_peers.pinned_name("bob").map(|p| p.key);
    assert_eq!(pinned, Some(b1.key()), "first key pinned");
    a.core.on_request(Command::Leave.into(), now);
    pump(&mut [&mut a, &mut b1], now);
    a.core.on_signal(SignalEvent::Left(b1.info()), now);

    // Another key under the same name (a new device, or an impostor the
    // server lists as bob).
    let mut b2 = Node::new("bob", 31003, now);
    a.core.on_signal(SignalEvent::Joined(b2.info()), now);
    now += Duration::from_secs(1);
    let seen_before = a.seen.len();
    a.core
        .on_request(Command::Connect("bob".into()).with_id(2), now);
    pump(&mut [&mut a, &mut b2], now);
    a.serve_rendezvous(None, now);
    b2.core
        .on_signal(SignalEvent::Snapshot(vec![a.info()]), now);
    b2.core
        .on_signal(SignalEvent::ConnectRequested { from: a.info() }, now);
    pump(&mut [&mut a, &mut b2], now);
    let events = &a.seen[seen_before..];
    assert!(
        !events.iter().any(|e| matches!(e, Event::Connected { .. })),
        "{events:?}"
    );
    let message = events
        .iter()
        .find_map(|e| match e {
            Event::Error {
                code: ErrorCode::Refused,
                message,
                ..
            } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refusal: {events:?}"));
    assert!(message.contains("/trust bob"), "{message}");
    assert!(message.contains("different key"), "{message}");
    assert!(!a.core.sessions.contains_key(&b2.id()), "session kept");
    assert_eq!(
        a.core.known_peers.pinned_name("bob").map(|p| p.key),
        Some(b1.key()),
        "the pin stays"
    );
    // The refused session is reported closed (never connected), and B2
    // is told with a sealed disconnect, so it does not chat into the void.
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Disconnected { peer_id, reason: crate::engine::api::DisconnectReason::HandshakeFailed, .. }
                if *peer_id == b2.id()
        )),
        "{events:?}"
    );
    assert!(!b2.core.sessions.contains_key(&a.id()), "{:?}", b2.seen);
    assert!(
        b2.seen.iter().any(|e| matches!(
            e,
            Event::Disconnected {
                reason: crate::engine::api::DisconnectReason::RemoteDisconnect,
                ..
            }
        )),
        "{:?}",
        b2.seen
    );

    // Trusting the new key: the next connection succeeds and pins it.
    a.core
        .on_request(Command::Trust("bob".into()).with_id(3), now);
    let got = a.events();
    assert!(
        matches!(got.as_slice(), [Event::Info { message }] if message.contains("bob")),
        "{got:?}"
    );
    assert!(a.core.known_peers.pinned_name("bob").is_none());
    now += Duration::from_secs(31); // past the tombstones of the refused try
    let mut b2 = Node::new_with_identity("bob", 31004, b2.identity.clone(), now);
    a.core.on_signal(SignalEvent::Updated(b2.info()), now);
    let seen_before = a.seen.len();
    connect(&mut a, &mut b2, now);
    assert!(
        a.seen[seen_before..]
            .iter()
            .any(|e| matches!(e, Event::Connected { peer_id, encrypted: true, .. } if *peer_id == b2.id())),
        "{:?}",
        &a.seen[seen_before..]
    );
    assert_eq!(
        a.core.known_peers.pinned_name("bob").map(|p| p.key),
        Some(b2.key()),
        "the new key pinned"
    );
    b2.says("it is me", now);
    pump(&mut [&mut a, &mut b2], now);
    assert_eq!(a.messages().last().unwrap().0, "it is me");
}

#[test]
fn a_changed_key_calling_us_is_refused_too() {
    let now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    let mut b1 = Node::new("bob", 31002, now);
    connect(&mut a, &mut b1, now);
    a.core.on_request(Command::Leave.into(), now);
    pump(&mut [&mut a, &mut b1], now);
    a.core.on_signal(SignalEvent::Left(b1.info()), now);
    // B2 ("bob", another key) calls A.
    let mut b2 = Node::new("bob", 31003, now);
    let seen_before = a.seen.len();
    a.core.on_signal(SignalEvent::Joined(b2.info()), now);
    b2.core
        .on_signal(SignalEvent::Snapshot(vec![a.info()]), now);
    b2.core
        .on_request(Command::Connect("alice".into()).into(), now);
    pump(&mut [&mut a, &mut b2], now);
    b2.serve_rendezvous(None, now);
    a.core
        .on_signal(SignalEvent::ConnectRequested { from: b2.info() }, now);
    pump(&mut [&mut a, &mut b2], now);
    let events = &a.seen[seen_before..];
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Connected { .. } | Event::Message { .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Error { code: ErrorCode::Refused, message, .. } if message.contains("/trust bob"))),
        "{events:?}"
    );
    assert!(!a.core.sessions.contains_key(&b2.id()));
}

impl Node {
    fn new_with_identity(
        name: &'static str,
        port: u16,
        identity: Arc<Identity>,
        now: Instant,
    ) -> Node {
        let mut node = Node::new(name, port, now);
        let config = CoreConfig {
            identity: identity.clone(),
            require_encryption: false,
            known_peers: KnownPeers::in_memory(),
            username: name.into(),
            session: session_config(),
            relay: None,
            stun_server: None,
            reflexive: None,
        };
        node.core = Core::new(config, now);
        node.identity = identity;
        node
    }
}

// -------------------------------------------------- (f) seed peers --

/// A seed-protocol hello (a version 4 id, no key, no handshake).
fn seed_hello(peer: &str) -> Vec<u8> {
    hello(peer, 1)
}

fn seed_peer_info(port: u16) -> RemotePeer {
    RemotePeer {
        key: PeerKey::Unverified,
        ..info(CAROL, "carol", port)
    }
}

#[test]
fn require_encryption_drops_seed_hellos_and_refuses_seed_peers() {
    let now = Instant::now();
    let mut a = Node::build("alice", 31001, true, None, now);
    a.core.on_datagram(&seed_hello(CAROL), addr(30003), now);
    a.core
        .on_datagram(&message(CAROL, 1, "plaintext"), addr(30003), now);
    let out = pump(&mut [&mut a], now);
    assert!(out.is_empty(), "answered a seed peer: {out:?}");
    assert!(a.core.sessions.is_empty());
    assert!(a.seen.is_empty(), "{:?}", a.seen);
    // Connecting to one is refused, with the reason.
    a.core
        .on_signal(SignalEvent::Snapshot(vec![seed_peer_info(30003)]), now);
    a.core
        .on_request(Command::Connect("carol".into()).with_id(4), now);
    pump(&mut [&mut a], now);
    a.serve_rendezvous(None, now);
    let out = pump(&mut [&mut a], now);
    assert!(out.is_empty(), "probed a seed peer: {out:?}");
    assert!(a.core.sessions.is_empty());
    assert!(
        a.seen.iter().any(|e| matches!(
            e,
            Event::Error { id: Some(4), code: ErrorCode::Refused, message }
                if message.contains("--require-encryption") && message.contains("carol")
        )),
        "{:?}",
        a.seen
    );
    // A connect request from one too.
    a.core.on_signal(
        SignalEvent::ConnectRequested {
            from: seed_peer_info(30003),
        },
        now,
    );
    assert!(pump(&mut [&mut a], now).is_empty());
    assert!(a.core.sessions.is_empty());
    // Encrypted peers still connect.
    let mut b = Node::new("bob", 31002, now);
    connect(&mut a, &mut b, now);
}

#[test]
fn without_require_encryption_a_seed_peer_connects_marked_unencrypted() {
    let now = Instant::now();
    let mut a = Node::new("alice", 31001, now);
    a.core.on_datagram(&seed_hello(CAROL), addr(30003), now);
    let out = pump(&mut [&mut a], now);
    // The seed's plaintext both ways.
    assert!(!out.is_empty());
    assert!(out.iter().all(|c| c.kind() == DatagramKind::Other));
    a.core
        .on_datagram(&message(CAROL, 1, "hello in clear"), addr(30003), now);
    pump(&mut [&mut a], now);
    assert!(
        a.seen.iter().any(|e| matches!(
            e,
            Event::Connected { peer_id, encrypted: false, safety_number: None, .. }
                if *peer_id == id(CAROL)
        )),
        "{:?}",
        a.seen
    );
    assert_eq!(a.messages(), [("hello in clear".to_string(), false)]);
    a.core.on_request(Command::Status.into(), now);
    let status = a.events();
    assert!(
        matches!(status.as_slice(), [Event::Status { sessions, .. }] if !sessions[0].encrypted),
        "{status:?}"
    );
    // And an encrypted session next to it says so.
    let mut b = Node::new("bob", 31002, now);
    connect(&mut a, &mut b, now);
    assert!(a.seen.iter().any(|e| matches!(
        e,
        Event::Connected { peer_id, encrypted: true, safety_number: Some(_), .. } if *peer_id == b.id()
    )));
}

// -------------------------------------------------------- (g) the relay --

/// The relay's side of one binding: answers the core's BIND frames until
/// the binding is ready, returns the channel the relay gave the core.
fn bind_relay(node: &mut Node, relay: SocketAddr, peer: PeerId, channel: u64, now: Instant) {
    node.core.set_token(Some(SessionToken::from_bytes([7; 32])));
    node.core.request_relay(peer, now);
    for ready in [false, true] {
        let binds: Vec<Vec<u8>> = node
            .core
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { to, bytes } if to == relay => Some(bytes),
                _ => None,
            })
            .collect();
        assert!(
            binds
                .iter()
                .any(|b| matches!(RelayFrame::decode(b), Ok(RelayFrame::Bind(_)))),
            "no BIND"
        );
        let bound = RelayFrame::Bound {
            target: *peer.as_uuid(),
            channel,
            ready,
        }
        .to_bytes();
        node.core.on_datagram(&bound, relay, now);
    }
    assert!(node.core.relay.as_ref().unwrap().is_ready(peer));
}

fn relayed(channel: u64, payload: &[u8]) -> Vec<u8> {
    RelayFrame::Data { channel, payload }.to_bytes()
}

#[test]
fn sealed_datagrams_through_the_relay_are_routed_by_index() {
    let now = Instant::now();
    let relay = addr(3478);
    let mut a = Node::build("alice", 31001, false, Some(relay), now);
    let mut b = Node::new("bob", 31002, now);
    let mut c = Node::new("carol", 31003, now);
    connect(&mut a, &mut b, now);
    connect(&mut a, &mut c, now);
    bind_relay(&mut a, relay, b.id(), 0xb0b, now);
    bind_relay(&mut a, relay, c.id(), 0xca401, now);
    a.core.take_outputs();
    let seen_before = a.seen.len();

    // B's sealed line, as the relay forwards it on B's channel.
    b.says("via the relay", now);
    let sealed: Vec<Vec<u8>> = b
        .core
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } if classify(&bytes) == DatagramKind::Sealed => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(sealed.len(), 1);
    a.core.on_datagram(&relayed(0xb0b, &sealed[0]), relay, now);
    // The ack goes back through the relay, wrapped for B's channel, sealed.
    let acks: Vec<Vec<u8>> = a
        .core
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes } if to == relay => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    match RelayFrame::decode(&acks[0]) {
        Ok(RelayFrame::Data { channel, payload }) => {
            assert_eq!(channel, 0xb0b);
            assert_eq!(classify(payload), DatagramKind::Sealed);
            b.core.on_datagram(payload, relay, now);
        }
        other => panic!("{other:?}"),
    }
    a.events();
    assert_eq!(
        a.messages().last().unwrap(),
        &("via the relay".to_string(), true)
    );
    let from_b = a.seen[seen_before..]
        .iter()
        .filter(|e| matches!(e, Event::Message { from, .. } if *from == b.id()))
        .count();
    assert_eq!(from_b, 1);
    no_path_change_or_disconnect(
        &a.seen[seen_before..]
            .iter()
            .filter(|e| !matches!(e, Event::Message { .. }))
            .cloned()
            .collect::<Vec<_>>(),
    );

    // The same datagram relayed again, or on C's channel: the index names
    // B's session, whose replay window drops it.
    a.core.on_datagram(&relayed(0xb0b, &sealed[0]), relay, now);
    a.core
        .on_datagram(&relayed(0xca401, &sealed[0]), relay, now);
    let out = a.core.take_outputs();
    assert!(out.is_empty(), "{out:?}");
    // C's own line on B's channel: routed by its index to C's session (the
    // keys say who sent it, not the relay's channel).
    c.says("carol here", now);
    let from_c: Vec<Vec<u8>> = c
        .core
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } if classify(&bytes) == DatagramKind::Sealed => Some(bytes),
            _ => None,
        })
        .collect();
    a.core.on_datagram(&relayed(0xb0b, &from_c[0]), relay, now);
    a.events();
    let texts: Vec<(PeerId, String)> = a.seen[seen_before..]
        .iter()
        .filter_map(|e| match e {
            Event::Message { from, text, .. } => Some((*from, text.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        [
            (b.id(), "via the relay".to_string()),
            (c.id(), "carol here".to_string())
        ]
    );
    // Plaintext through the relay claiming B: handshake traffic only, and
    // a relayed datagram naming another sender than the binding's is
    // dropped before that.
    let forged = WireMessage {
        header: Header::now(b.id()),
        body: "forged via relay".into(),
        id: Some(9),
        part: None,
    };
    let forged: Datagram = forged.into();
    let bytes = forged.encode().unwrap();
    a.core.take_outputs();
    a.core.on_datagram(&relayed(0xb0b, &bytes), relay, now);
    a.core.on_datagram(&relayed(0xca401, &bytes), relay, now);
    assert!(a.core.take_outputs().is_empty());
    a.events();
    assert_eq!(a.messages().len(), 2, "{:?}", a.messages());
    // Relay frames from anywhere but the relay are not relay frames.
    a.core
        .on_datagram(&relayed(0xb0b, &sealed[0]), addr(40000), now);
    assert!(a.core.take_outputs().is_empty());
    let distinct: HashSet<String> = a.messages().into_iter().map(|(t, _)| t).collect();
    assert_eq!(distinct.len(), a.messages().len(), "shown twice");
}
