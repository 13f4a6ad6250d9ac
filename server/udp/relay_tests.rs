//! Unit tests of the relay's session table: forwarding, the challenge that
//! proves an address, counters against replays, rebinding, limits at their
//! edges, and every way a session is freed.

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 9], port))
}

fn bound(bytes: &[u8]) -> (PeerId, u64, bool) {
    match RelayFrame::decode(bytes) {
        Ok(RelayFrame::Bound {
            target,
            channel,
            ready,
        }) => (PeerId::from(target), channel, ready),
        other => panic!("not BOUND: {other:?}"),
    }
}

/// A test peer's counter source: strictly increasing across the table.
struct Clock(u64);

impl Clock {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// BIND, BOUND(channel), BIND(echo): `peer`'s side routed at `at`. Returns
/// the channel and the answers to the confirming BIND.
fn bind_proven(
    t: &mut RelayTable,
    c: &mut Clock,
    peer: PeerId,
    target: PeerId,
    at: SocketAddr,
    now: Instant,
) -> (u64, Vec<Outgoing>) {
    let first = t
        .bind(peer, target, at, NO_CHANNEL, c.next(), now)
        .expect("bind");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, at, "BOUND goes to the source only");
    let (to, channel, ready) = bound(&first[0].1);
    assert_eq!((to, ready), (target, false), "a challenge is never ready");
    assert_ne!(channel, NO_CHANNEL);
    let second = t
        .bind(peer, target, at, channel, c.next(), now)
        .expect("confirm");
    assert_eq!(bound(&second[0].1).1, channel);
    (channel, second)
}

fn ready_pair(t: &mut RelayTable, c: &mut Clock, now: Instant) -> (PeerId, PeerId, u64, u64) {
    let (a, b) = (PeerId::random(), PeerId::random());
    let (ch_a, answers) = bind_proven(t, c, a, b, addr(1), now);
    assert_eq!(answers.len(), 1);
    assert_eq!(bound(&answers[0].1), (b, ch_a, false), "B not there yet");
    let (ch_b, answers) = bind_proven(t, c, b, a, addr(2), now);
    assert_eq!(answers.len(), 2, "both sides hear it is ready");
    assert_eq!(bound(&answers[0].1), (a, ch_b, true));
    assert_eq!(answers[1].0, addr(1));
    assert_eq!(bound(&answers[1].1), (b, ch_a, true));
    (a, b, ch_a, ch_b)
}

#[test]
fn forwards_between_proven_routes_only() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(0);
    let (_, _, ch_a, ch_b) = ready_pair(&mut t, &mut c, now);
    let (to, bytes) = t.data(ch_a, b"hi", addr(1), now).expect("forwarded");
    assert_eq!(to, addr(2));
    assert_eq!(
        RelayFrame::decode(&bytes),
        Ok(RelayFrame::Data {
            channel: ch_b,
            payload: b"hi"
        })
    );
    assert!(
        t.data(ch_a, b"hi", addr(3), now).is_none(),
        "foreign source"
    );
    assert!(
        t.data(ch_a ^ 1, b"hi", addr(1), now).is_none(),
        "unknown channel"
    );
    assert!(t.data(ch_b, b"back", addr(2), now).is_some());
    assert_eq!(t.stats().forwarded, 2);
    assert_eq!(t.stats().dropped_unroutable, 2);
}

#[test]
fn an_unproven_side_gets_no_traffic() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(0);
    let (a, b) = (PeerId::random(), PeerId::random());
    // B is proven; A only challenged (e.g. a BIND replayed from elsewhere).
    let (ch_b, _) = bind_proven(&mut t, &mut c, b, a, addr(2), now);
    let out = t.bind(a, b, addr(66), NO_CHANNEL, c.next(), now).unwrap();
    let (_, ch_a, ready) = bound(&out[0].1);
    assert!(!ready);
    assert_eq!(out.len(), 1, "B is not told anything");
    // B's traffic has nowhere to go, and the challenged channel carries
    // nothing either.
    assert!(t.data(ch_b, b"x", addr(2), now).is_none());
    assert!(t.data(ch_a, b"x", addr(66), now).is_none());
    // An echo of the wrong channel, or from another address, does not
    // prove anything.
    let out = t.bind(a, b, addr(66), ch_a ^ 1, c.next(), now).unwrap();
    assert_eq!(bound(&out[0].1), (b, ch_a, false), "same challenge again");
    let out = t.bind(a, b, addr(67), ch_a, c.next(), now).unwrap();
    let (_, moved, ready) = bound(&out[0].1);
    assert!(!ready);
    assert_ne!(moved, ch_a, "a new address gets a new challenge");
    assert!(t.data(moved, b"x", addr(67), now).is_none());
}

#[test]
fn old_counters_are_dropped_without_an_answer() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(100);
    let (a, b, ch_a, _) = ready_pair(&mut t, &mut c, now);
    // A's last BIND had counter 102; a replay of it, or anything older,
    // from anywhere, is refused without an answer and moves nothing.
    for (counter, from) in [(102, addr(9)), (102, addr(1)), (101, addr(9)), (0, addr(9))] {
        assert_eq!(
            t.bind(a, b, from, ch_a, counter, now),
            Err(Denied::Replayed),
            "{counter} from {from}"
        );
    }
    assert_eq!(t.stats().dropped_replayed, 4);
    assert!(
        t.data(ch_a, b"x", addr(1), now).is_some(),
        "route unchanged"
    );
    assert!(!t.release(a, b, ch_a, 102), "an old RELEASE neither");
    assert_eq!(t.len(), 1);
    // Freshness is per side: B's counters are B's.
    assert!(t.check_fresh(b, a, 105));
    assert!(!t.check_fresh(a, b, 102));
}

#[test]
fn rebinding_needs_the_new_address_to_echo_its_challenge() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(0);
    let (a, b, ch_a, ch_b) = ready_pair(&mut t, &mut c, now);
    // A's NAT moved it to port 7: the BIND echoes its channel, but from a
    // new address. Challenged; traffic still goes to the proven route.
    let out = t.bind(a, b, addr(7), ch_a, c.next(), now).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(7));
    let (_, ch_new, ready) = bound(&out[0].1);
    assert!(!ready);
    assert_ne!(ch_new, ch_a);
    let (to, _) = t.data(ch_b, b"y", addr(2), now).unwrap();
    assert_eq!(to, addr(1), "not moved yet");
    // The echo from port 7 moves it.
    let out = t.bind(a, b, addr(7), ch_new, c.next(), now).unwrap();
    assert_eq!(out.len(), 1, "B was ready already");
    assert_eq!(bound(&out[0].1), (b, ch_new, true));
    assert!(t.data(ch_a, b"x", addr(1), now).is_none(), "old route");
    assert!(t.data(ch_new, b"x", addr(1), now).is_none(), "old address");
    assert!(t.data(ch_new, b"x", addr(7), now).is_some(), "new route");
    let (to, bytes) = t.data(ch_b, b"y", addr(2), now).unwrap();
    assert_eq!(to, addr(7));
    assert!(matches!(
        RelayFrame::decode(&bytes),
        Ok(RelayFrame::Data { channel, .. }) if channel == ch_new
    ));
    assert_eq!(t.channels.len(), 2, "old channels freed");
}

#[test]
fn a_refresh_from_the_route_drops_a_pending_challenge() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(0);
    let (a, b, ch_a, _) = ready_pair(&mut t, &mut c, now);
    // Someone raced A's frame from elsewhere: a challenge there...
    let raced = t.bind(a, b, addr(66), ch_a, c.next(), now).unwrap();
    let (_, ch_raced, _) = bound(&raced[0].1);
    // ...which A's next refresh from its route voids.
    let out = t.bind(a, b, addr(1), ch_a, c.next(), now).unwrap();
    assert_eq!(bound(&out[0].1), (b, ch_a, true));
    let late = t.bind(a, b, addr(66), ch_raced, c.next(), now).unwrap();
    let (_, ch_late, ready) = bound(&late[0].1);
    assert!(
        !ready && ch_late != ch_raced,
        "the voided challenge proves nothing"
    );
    assert!(t.data(ch_a, b"x", addr(1), now).is_some());
}

#[test]
fn release_needs_a_fresh_counter_and_a_current_channel() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(0);
    let (a, b, ch_a, _) = ready_pair(&mut t, &mut c, now);
    assert!(!t.release(a, b, NO_CHANNEL, c.next()), "no channel");
    assert!(!t.release(a, b, ch_a ^ 1, c.next()), "another channel");
    let release = c.next();
    assert!(t.release(a, b, ch_a, release));
    assert!(t.is_empty() && t.channels.is_empty() && t.by_peer.is_empty());
    // The same RELEASE again (a replay) has nothing to free, and in a new
    // session its counter is old and its channel unknown.
    assert!(!t.release(a, b, ch_a, release));
    let (ch_a2, _) = bind_proven(&mut t, &mut c, a, b, addr(1), now);
    assert!(!t.release(a, b, ch_a, release));
    assert_eq!(t.len(), 1);
    // A session where A has no side: a RELEASE of A frees nothing.
    let (x, y) = (PeerId::random(), PeerId::random());
    bind_proven(&mut t, &mut c, y, x, addr(3), now);
    assert!(!t.release(x, y, ch_a2, c.next()));
    assert_eq!(t.len(), 2);
}

#[test]
fn channels_are_never_zero_and_unique() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(0);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let (_, _, ch_a, ch_b) = ready_pair(&mut t, &mut c, now);
        for ch in [ch_a, ch_b] {
            assert_ne!(ch, NO_CHANNEL);
            assert!(seen.insert(ch));
        }
    }
}

#[test]
fn session_limits_at_the_edge() {
    let now = Instant::now();
    let limits = RelayLimits {
        max_sessions: 2,
        ..RelayLimits::default()
    };
    let mut t = RelayTable::new(limits);
    let mut c = Clock(0);
    ready_pair(&mut t, &mut c, now);
    ready_pair(&mut t, &mut c, now);
    assert_eq!(t.len(), 2);
    let refused = t.bind(
        PeerId::random(),
        PeerId::random(),
        addr(5),
        NO_CHANNEL,
        c.next(),
        now,
    );
    assert_eq!(refused, Err(Denied::Refuse(RefuseCode::Full)));
    let me = PeerId::random();
    assert_eq!(
        t.bind(me, me, addr(5), NO_CHANNEL, c.next(), now),
        Err(Denied::Refuse(RefuseCode::TargetOffline))
    );

    let mut t = RelayTable::new(RelayLimits::default());
    let busy = PeerId::random();
    for i in 0..MAX_SESSIONS_PER_PEER {
        t.bind(
            busy,
            PeerId::random(),
            addr(i as u16),
            NO_CHANNEL,
            c.next(),
            now,
        )
        .expect("within the per-peer limit");
    }
    assert_eq!(
        t.bind(busy, PeerId::random(), addr(999), NO_CHANNEL, c.next(), now),
        Err(Denied::Refuse(RefuseCode::Full))
    );
}

#[test]
fn refusals_are_capped_per_second() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let sent = (0..MAX_REFUSALS_PER_SEC * 2)
        .filter(|_| t.may_refuse(now))
        .count();
    assert_eq!(sent, MAX_REFUSALS_PER_SEC as usize);
    assert_eq!(
        t.stats().refusals_suppressed,
        u64::from(MAX_REFUSALS_PER_SEC)
    );
    let later = now + Duration::from_millis(100);
    let sent = (0..MAX_REFUSALS_PER_SEC)
        .filter(|_| t.may_refuse(later))
        .count();
    assert_eq!(sent, MAX_REFUSALS_PER_SEC as usize / 10);
}

#[test]
fn payload_and_rate_limits_at_the_edge() {
    let now = Instant::now();
    let limits = RelayLimits {
        rate_pps: 10,
        rate_bytes: 1_000_000,
        ..RelayLimits::default()
    };
    let mut t = RelayTable::new(limits);
    let mut c = Clock(0);
    let (_, _, ch_a, _) = ready_pair(&mut t, &mut c, now);
    let max = vec![0u8; MAX_RELAY_PAYLOAD];
    assert!(t.data(ch_a, &max, addr(1), now).is_some());
    let over = vec![0u8; MAX_RELAY_PAYLOAD + 1];
    assert!(t.data(ch_a, &over, addr(1), now).is_none());
    // 10 per second: 9 more pass now, the 11th is dropped.
    let passed = (0..20)
        .filter(|_| t.data(ch_a, b"x", addr(1), now).is_some())
        .count();
    assert_eq!(passed, 9);
    assert_eq!(t.stats().dropped_rate, 11);
    // Half a second later, five more.
    let later = now + Duration::from_millis(500);
    let passed = (0..20)
        .filter(|_| t.data(ch_a, b"x", addr(1), later).is_some())
        .count();
    assert_eq!(passed, 5);

    let limits = RelayLimits {
        rate_pps: 1_000,
        rate_bytes: 100,
        ..RelayLimits::default()
    };
    let mut t = RelayTable::new(limits);
    let (_, _, ch_a, _) = ready_pair(&mut t, &mut c, now);
    assert!(t.data(ch_a, &[0u8; 100], addr(1), now).is_some());
    assert!(t.data(ch_a, &[0u8; 1], addr(1), now).is_none());
}

#[test]
fn sessions_are_freed_by_release_departure_idleness_and_sweeps() {
    let now = Instant::now();
    let limits = RelayLimits {
        idle: Duration::from_secs(5),
        ..RelayLimits::default()
    };
    let mut t = RelayTable::new(limits);
    let mut c = Clock(0);
    let (a, b, ch_a, ch_b) = ready_pair(&mut t, &mut c, now);
    assert!(t.release(b, a, ch_b, c.next()));
    assert!(t.data(ch_a, b"x", addr(1), now).is_none());
    assert!(t.is_empty());

    let (a, _, _, _) = ready_pair(&mut t, &mut c, now);
    ready_pair(&mut t, &mut c, now);
    assert_eq!(t.peer_left(a), 1);
    assert_eq!(t.len(), 1);

    assert_eq!(t.expire(now + Duration::from_secs(4)), 0);
    assert_eq!(t.expire(now + Duration::from_secs(5)), 1);
    assert!(t.is_empty());

    // A challenge-only session idles out too, its channel with it.
    t.bind(
        PeerId::random(),
        PeerId::random(),
        addr(8),
        NO_CHANNEL,
        c.next(),
        now,
    )
    .unwrap();
    assert_eq!(t.expire(now + Duration::from_secs(5)), 1);

    let (a, _, _, _) = ready_pair(&mut t, &mut c, now);
    assert_eq!(t.retain_online(|p| *p != a), 1);
    assert!(t.is_empty());
    assert!(t.channels.is_empty() && t.by_peer.is_empty());
}

#[test]
fn a_fresh_session_accepts_any_counter_but_only_challenges() {
    // After a session is gone its counters are gone: a BIND captured long
    // ago passes the counter check, and only earns a challenge.
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(1000);
    let (a, b, ch_a, _) = ready_pair(&mut t, &mut c, now);
    assert_eq!(t.expire(now + Duration::from_secs(60)), 1);
    // B comes back and proves itself; A's old confirming BIND is replayed
    // from elsewhere.
    bind_proven(&mut t, &mut c, b, a, addr(2), now);
    let out = t.bind(a, b, addr(66), ch_a, 1002, now).unwrap();
    let (_, challenge, ready) = bound(&out[0].1);
    assert!(!ready && challenge != ch_a);
    assert_eq!(out.len(), 1, "B hears nothing");
    // The real A, counter higher, takes its side back.
    let (_, answers) = bind_proven(&mut t, &mut c, a, b, addr(1), now);
    assert_eq!(answers.len(), 2, "now B is told it is ready");
    assert_eq!(answers[1].0, addr(2));
    assert_eq!(
        t.bind(a, b, addr(66), ch_a, 1002, now),
        Err(Denied::Replayed)
    );
}

#[test]
fn challenges_are_capped_per_side_and_refreshes_are_not() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let mut c = Clock(0);
    let (a, b, ch_a, ch_b) = ready_pair(&mut t, &mut c, now);
    // The key holder sends fresh BINDs from other addresses (spoofed
    // sources): its side already spent one challenge on its own route, so
    // MAX - 1 more are answered in this second, then nothing.
    let max = MAX_CHALLENGES_PER_SIDE_PER_SEC as u16;
    for port in 0..max - 1 {
        let out = t.bind(a, b, addr(100 + port), ch_a, c.next(), now).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, addr(100 + port));
    }
    assert_eq!(
        t.bind(a, b, addr(200), ch_a, c.next(), now),
        Err(Denied::Throttled)
    );
    assert_eq!(t.stats().challenges_suppressed, 1);
    // A refresh from the route is no challenge: still answered, and
    // traffic still flows.
    let out = t.bind(a, b, addr(1), ch_a, c.next(), now).unwrap();
    assert_eq!(bound(&out[0].1), (b, ch_a, true));
    assert!(t.data(ch_b, b"x", addr(2), now).is_some());
    // The other side has its own budget.
    let out = t.bind(b, a, addr(201), ch_b, c.next(), now).unwrap();
    assert_eq!(out[0].0, addr(201));
    // A quarter second later one challenge more.
    let later = now + Duration::from_millis(250);
    assert!(t.bind(a, b, addr(202), ch_a, c.next(), later).is_ok());
    assert_eq!(
        t.bind(a, b, addr(203), ch_a, c.next(), later),
        Err(Denied::Throttled)
    );
}
