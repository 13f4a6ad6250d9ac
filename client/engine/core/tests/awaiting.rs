//! Who is connecting to whom, naming ourselves, and a start-up connect
//! that waits for its peer to come online.

use super::*;

fn rendezvous_targets(core: &mut Core) -> Vec<PeerId> {
    core.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Task(Task::Rendezvous { target, .. }) => Some(target.peer_id),
            _ => None,
        })
        .collect()
}

#[test]
fn the_called_side_says_the_peer_is_connecting_not_that_it_calls() {
    let mut now = Instant::now();
    let mut core = core(now);
    core.on_signal(SignalEvent::Snapshot(vec![]), now);
    events(&mut core);
    core.on_signal(
        SignalEvent::ConnectRequested {
            from: info(BOB, "bob", 30002),
        },
        now,
    );
    // Through the first attempt and into the next: one line, no
    // "Connecting to bob".
    let mut got = events(&mut core);
    for _ in 0..40 {
        now += Duration::from_millis(100);
        core.on_timer(now);
        got.extend(events(&mut core));
    }
    assert!(
        !got.iter().any(|e| matches!(e, Event::Connecting { .. })),
        "{got:?}"
    );
    let infos: Vec<&Event> = got
        .iter()
        .filter(|e| matches!(e, Event::Info { .. }))
        .collect();
    assert_eq!(
        infos,
        [&Event::Info {
            message: "bob is connecting...".into()
        }],
        "{got:?}"
    );
}

#[test]
fn naming_ourselves_says_it_is_us() {
    let now = Instant::now();
    let mut core = core(now);
    core.on_signal(
        SignalEvent::Snapshot(vec![info(ALICE, "alice", 30001)]),
        now,
    );
    events(&mut core);
    let mine = core.me.to_string();
    for (n, target) in ["me", "ME", &mine[..8], &mine].into_iter().enumerate() {
        core.on_request(Command::Connect(target.into()).with_id(n as u64), now);
        let got = events(&mut core);
        let [Event::Error { message, code, .. }] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert_eq!(*code, ErrorCode::UnknownPeer);
        assert_eq!(
            *message,
            format!("'{target}' is you; pick another peer (/peers lists who is online)")
        );
    }
    core.on_request(Command::Connect("nobody".into()).into(), now);
    assert!(matches!(
        events(&mut core).as_slice(),
        [Event::Error { message, .. }] if message == "no online peer matches 'nobody'"
    ));
}

#[test]
fn a_start_up_connect_waits_for_its_peer_to_come_online() {
    let mut now = Instant::now();
    let mut core = core(now);
    let step = core.session_config.attempt_duration;
    // Asked before the list arrived: held, then waiting.
    core.on_request(Command::ConnectWhenOnline("alice".into()).with_id(1), now);
    core.on_signal(SignalEvent::Snapshot(vec![info(BOB, "bob", 30002)]), now);
    let got = events(&mut core);
    assert!(
        got.iter().any(|e| matches!(e, Event::Info { message }
            if message == "alice is not online yet; waiting for it to come online (up to 3 attempts of 2s)...")),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|e| matches!(e, Event::Error { .. })),
        "{got:?}"
    );
    assert!(rendezvous_targets(&mut core).is_empty());
    assert!(core.next_deadline().is_some_and(|d| d <= now + step));
    // A second later, someone else joins: still waiting. Then alice.
    now += Duration::from_secs(1);
    core.on_signal(SignalEvent::Joined(info(CAROL, "carol", 30003)), now);
    assert!(rendezvous_targets(&mut core).is_empty());
    now += Duration::from_secs(1);
    core.on_timer(now);
    core.on_signal(SignalEvent::Joined(info(ALICE, "alice", 30001)), now);
    assert_eq!(rendezvous_targets(&mut core), [id(ALICE)]);
    assert!(
        !events(&mut core)
            .iter()
            .any(|e| matches!(e, Event::Error { .. }))
    );
}

#[test]
fn a_waiting_connect_gives_up_after_the_attempt_limit() {
    let mut now = Instant::now();
    let mut core = core(now);
    let attempts = core.session_config.connect_attempts;
    let step = core.session_config.attempt_duration;
    core.on_signal(SignalEvent::Snapshot(vec![]), now);
    core.on_request(Command::ConnectWhenOnline("alice".into()).with_id(4), now);
    events(&mut core);
    // Just before the last attempt ends: still waiting, nothing said.
    let end = now + step * attempts;
    while now + step <= end - Duration::from_millis(1) {
        now += step;
        core.on_timer(now);
    }
    core.on_timer(end - Duration::from_millis(1));
    assert!(events(&mut core).is_empty());
    core.on_timer(end);
    let got = events(&mut core);
    assert!(
        matches!(got.as_slice(), [Event::Error { id: Some(4), code: ErrorCode::UnknownPeer, message }]
            if message == "no online peer matches 'alice' (waited 3 attempts of 2s)"),
        "{got:?}"
    );
    // It is over: alice joining later connects nothing.
    core.on_signal(SignalEvent::Joined(info(ALICE, "alice", 30001)), end);
    assert!(rendezvous_targets(&mut core).is_empty());
}

#[test]
fn picking_a_peer_stops_a_waiting_connect() {
    let now = Instant::now();
    let mut core = core(now);
    core.on_signal(SignalEvent::Snapshot(vec![info(BOB, "bob", 30002)]), now);
    core.on_request(Command::ConnectWhenOnline("alice".into()).into(), now);
    core.on_request(Command::Connect("bob".into()).into(), now);
    assert_eq!(rendezvous_targets(&mut core), [id(BOB)]);
    core.on_signal(SignalEvent::Joined(info(ALICE, "alice", 30001)), now);
    assert!(rendezvous_targets(&mut core).is_empty());
}
