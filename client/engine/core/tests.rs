//! The core driven by hand with a fake clock: no sockets, no server.

use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::time::Instant;

use super::*;
use crate::engine::api::Path;
use crate::signaling::SignalEvent;

const ALICE: &str = "aaaa0000-0000-4000-8000-000000000001";
const BOB: &str = "bbbb0000-0000-4000-8000-000000000002";
const CAROL: &str = "cccc0000-0000-4000-8000-000000000003";

fn id(text: &str) -> PeerId {
    PeerId::parse(text).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn core(now: Instant) -> Core {
    let config = CoreConfig {
        identity: Arc::new(crate::identity::Identity::generate()),
        require_encryption: false,
        known_peers: crate::identity::KnownPeers::in_memory(),
        username: "me".into(),
        session: SessionConfig {
            keepalive_interval: Duration::from_secs(30),
            ..SessionConfig::default()
        },
        relay: None,
        stun_server: None,
        reflexive: None,
    };
    Core::new(config, now)
}

fn info(peer: &str, name: &str, port: u16) -> RemotePeer {
    RemotePeer {
        peer_id: id(peer),
        username: name.into(),
        endpoints: vec![addr(port)],
        inbox_open: true,
        via_rest: false,
        local_endpoints: vec![],
        key: crate::signaling::PeerKey::Unverified,
    }
}

/// A hello of a reliable session (`session` is its id).
fn hello(peer: &str, session: u64) -> Vec<u8> {
    format!(
        r#"{{"type":"hello","from":"{peer}","timestamp":1,"body":"","extensions":["reliable/1"],"session":{session}}}"#
    )
    .into_bytes()
}

fn message(peer: &str, n: u64, body: &str) -> Vec<u8> {
    format!(r#"{{"type":"message","from":"{peer}","timestamp":1,"body":"{body}","id":{n}}}"#)
        .into_bytes()
}

fn events(core: &mut Core) -> Vec<Event> {
    std::iter::from_fn(|| core.pop_event()).collect()
}

fn sent_kinds(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } => Datagram::decode(bytes)
                .ok()
                .map(|d| format!("{:?}", d.kind()).to_lowercase()),
            _ => None,
        })
        .collect()
}

/// A core with MAX_SESSIONS incoming sessions, all up.
fn full_core(now: Instant) -> Core {
    let mut core = core(now);
    for i in 0..MAX_SESSIONS {
        let peer = format!("00000000-0000-4000-8000-{i:012}");
        core.on_datagram(&hello(&peer, 1), addr(20000 + i as u16), now);
    }
    assert_eq!(core.sessions.len(), MAX_SESSIONS);
    core.on_signal(
        SignalEvent::Snapshot(vec![info(ALICE, "alice", 30001)]),
        now,
    );
    core.take_outputs();
    events(&mut core);
    core
}

#[test]
fn a_rendezvous_past_the_session_limit_opens_no_session() {
    let now = Instant::now();
    let mut core = full_core(now);
    // The answer to a rendezvous started before the table filled up.
    core.on_rendezvous(
        RendezvousDone {
            target: info(ALICE, "alice", 30001),
            result: Ok((info(ALICE, "alice", 30001), true)),
            create: true,
            request: Some(7),
        },
        now,
    );
    assert_eq!(core.sessions.len(), MAX_SESSIONS, "33 sessions");
    let got = events(&mut core);
    assert!(
        matches!(
            got.as_slice(),
            [Event::Error {
                id: Some(7),
                code: ErrorCode::SessionLimit,
                ..
            }]
        ),
        "{got:?}"
    );
    // A connect is refused before any rendezvous starts.
    core.on_request(Command::Connect("alice".into()).with_id(8), now);
    assert!(core.take_outputs().is_empty(), "no rendezvous task");
    assert!(matches!(
        events(&mut core).as_slice(),
        [Event::Error {
            id: Some(8),
            code: ErrorCode::SessionLimit,
            ..
        }]
    ));
    // A connect request and a hello are refused the same way.
    core.on_signal(
        SignalEvent::ConnectRequested {
            from: info(BOB, "bob", 30002),
        },
        now,
    );
    core.on_datagram(&hello(CAROL, 1), addr(30003), now);
    assert_eq!(core.sessions.len(), MAX_SESSIONS);
}

#[test]
fn the_engine_alone_decides_the_active_peer() {
    // With C active, the user asks for A, then B; A comes up first. Typed
    // lines keep going to C, and the front ends are told nothing else.
    let now = Instant::now();
    let mut core = core(now);
    core.on_signal(
        SignalEvent::Snapshot(vec![info(ALICE, "alice", 30001), info(BOB, "bob", 30002)]),
        now,
    );
    core.on_datagram(&hello(CAROL, 1), addr(30003), now);
    let got = events(&mut core);
    assert!(
        got.contains(&Event::Focus {
            peer_id: Some(id(CAROL))
        }),
        "{got:?}"
    );
    core.on_request(Command::Connect("alice".into()).into(), now);
    core.on_request(Command::Connect("bob".into()).into(), now);
    for task in core.take_outputs() {
        let Output::Task(Task::Rendezvous { target, .. }) = task else {
            continue;
        };
        core.on_rendezvous(
            RendezvousDone {
                result: Ok((target.clone(), true)),
                target,
                create: true,
                request: None,
            },
            now,
        );
    }
    events(&mut core);
    core.on_datagram(&hello(ALICE, 1), addr(30001), now);
    let got = events(&mut core);
    assert!(
        got.iter().any(|e| matches!(e, Event::Connected { peer_id, incoming: false, .. } if *peer_id == id(ALICE))),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|e| matches!(e, Event::Focus { .. })),
        "A is not the one asked for last: {got:?}"
    );
    core.on_request(Command::Send("hi".into()).with_id(3), now);
    assert!(matches!(
        events(&mut core).as_slice(),
        [Event::Sent { id: Some(3), to, .. }] if *to == id(CAROL)
    ));
    core.on_datagram(&hello(BOB, 1), addr(30002), now);
    let got = events(&mut core);
    assert!(
        matches!(got.last(), Some(Event::Focus { peer_id: Some(p) }) if *p == id(BOB)),
        "{got:?}"
    );
    let Event::Status { sessions, .. } = core.status(None) else {
        unreachable!()
    };
    let active: Vec<PeerId> = sessions
        .iter()
        .filter(|s| s.active)
        .map(|s| s.peer_id)
        .collect();
    assert_eq!(active, [id(BOB)]);
    // Leaving ends B and says so once.
    core.on_request(Command::Leave.into(), now);
    let got = events(&mut core);
    assert_eq!(
        got.iter()
            .filter(|e| matches!(e, Event::Focus { .. }))
            .count(),
        1,
        "{got:?}"
    );
}

#[test]
fn a_front_end_that_does_not_read_never_stops_pongs_and_loses_no_line() {
    let now = Instant::now();
    let mut core = core(now);
    core.on_datagram(&hello(CAROL, 1), addr(30003), now);
    core.take_outputs();
    // Nobody reads: fill the queue to its limit.
    while core.events.len() < MAX_QUEUED_EVENTS {
        core.on_request(Command::Peers.into(), now);
    }
    // A chat line waits unacknowledged (the sender retransmits it)...
    core.on_datagram(&message(CAROL, 1, "hello"), addr(30003), now);
    assert_eq!(sent_kinds(&core.take_outputs()), Vec::<String>::new());
    assert_eq!(core.events.len(), MAX_QUEUED_EVENTS);
    // ...while keep-alives are answered.
    let ping = format!(r#"{{"type":"ping","from":"{CAROL}","timestamp":1,"body":""}}"#);
    core.on_datagram(ping.as_bytes(), addr(30003), now);
    assert_eq!(sent_kinds(&core.take_outputs()), ["pong"]);
    // The front end catches up; the retransmission is taken and shown.
    events(&mut core);
    core.on_datagram(&message(CAROL, 1, "hello"), addr(30003), now);
    assert_eq!(sent_kinds(&core.take_outputs()), ["ack"]);
    assert!(matches!(
        events(&mut core).as_slice(),
        [Event::Message { text, .. }] if text == "hello"
    ));
}

#[test]
fn strangers_get_a_disconnect_and_old_hellos_stay_buried() {
    let now = Instant::now();
    let mut core = core(now);
    core.on_datagram(&message(CAROL, 1, "hi"), addr(30003), now);
    assert_eq!(sent_kinds(&core.take_outputs()), ["disconnect"]);
    core.on_datagram(&hello(CAROL, 5), addr(30003), now);
    assert!(matches!(
        events(&mut core).as_slice(),
        [
            Event::Connected {
                path: Path::Lan,
                incoming: true,
                ..
            },
            Event::Focus { .. }
        ]
    ));
    core.on_request(Command::Leave.into(), now);
    core.take_outputs();
    core.on_datagram(&hello(CAROL, 5), addr(30003), now);
    assert!(!core.sessions.contains_key(&id(CAROL)), "reopened");
    assert_eq!(sent_kinds(&core.take_outputs()), ["disconnect"]);
    core.on_datagram(&hello(CAROL, 6), addr(30003), now);
    assert!(core.sessions.contains_key(&id(CAROL)), "a new session");
}

#[test]
fn connects_before_the_peer_list_are_held_up_to_the_limit() {
    let now = Instant::now();
    let mut core = core(now);
    for i in 0..MAX_DEFERRED_CONNECTS {
        core.on_request(Command::Connect(format!("peer{i}")).with_id(i as u64), now);
    }
    assert!(events(&mut core).is_empty(), "held, not answered");
    let past = MAX_DEFERRED_CONNECTS as u64;
    core.on_request(Command::Connect("one too many".into()).with_id(past), now);
    assert!(matches!(
        events(&mut core).as_slice(),
        [Event::Error { id: Some(n), code: ErrorCode::UnknownPeer, .. }] if *n == past
    ));
    // The list arrives: every held connect is resolved (none of these
    // names is online), in order, each answered under its own id.
    core.on_signal(
        SignalEvent::Snapshot(vec![info(ALICE, "alice", 30001)]),
        now,
    );
    let answered: Vec<u64> = events(&mut core)
        .iter()
        .filter_map(|e| match e {
            Event::Error { id: Some(n), .. } => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(answered, (0..past).collect::<Vec<_>>());
}

mod amplification;
mod attacks;
mod awaiting;
