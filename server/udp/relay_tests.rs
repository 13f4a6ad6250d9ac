//! Unit tests of the relay's session table: forwarding, rebinding, limits
//! at their edges, and every way a session is freed.

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

fn ready_pair(table: &mut RelayTable, now: Instant) -> (PeerId, PeerId, u64, u64) {
    let (a, b) = (PeerId::random(), PeerId::random());
    let first = table.bind(a, b, addr(1), now).expect("bind a");
    assert_eq!(first.len(), 1);
    let (target, ch_a, ready) = bound(&first[0].1);
    assert_eq!((target, ready), (b, false));
    let second = table.bind(b, a, addr(2), now).expect("bind b");
    assert_eq!(second.len(), 2, "both sides hear it is ready");
    let (_, ch_b, ready_b) = bound(&second[0].1);
    assert!(ready_b);
    assert_eq!(second[1].0, addr(1));
    assert_eq!(bound(&second[1].1), (b, ch_a, true));
    (a, b, ch_a, ch_b)
}

#[test]
fn forwards_between_bound_sides_only() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let (_, _, ch_a, ch_b) = ready_pair(&mut t, now);
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
fn rebinding_moves_a_side_and_keeps_its_channel() {
    let now = Instant::now();
    let mut t = RelayTable::new(RelayLimits::default());
    let (a, b, ch_a, _) = ready_pair(&mut t, now);
    let again = t.bind(a, b, addr(7), now).expect("rebind");
    assert_eq!(again.len(), 1);
    assert_eq!(bound(&again[0].1), (b, ch_a, true));
    assert!(t.data(ch_a, b"x", addr(1), now).is_none(), "old address");
    assert!(t.data(ch_a, b"x", addr(7), now).is_some(), "new address");
}

#[test]
fn session_limits_at_the_edge() {
    let now = Instant::now();
    let limits = RelayLimits {
        max_sessions: 2,
        ..RelayLimits::default()
    };
    let mut t = RelayTable::new(limits);
    ready_pair(&mut t, now);
    ready_pair(&mut t, now);
    assert_eq!(t.len(), 2);
    let refused = t.bind(PeerId::random(), PeerId::random(), addr(5), now);
    assert_eq!(refused, Err(RefuseCode::Full));
    let me = PeerId::random();
    assert_eq!(t.bind(me, me, addr(5), now), Err(RefuseCode::TargetOffline));

    let mut t = RelayTable::new(RelayLimits::default());
    let busy = PeerId::random();
    for i in 0..MAX_SESSIONS_PER_PEER {
        t.bind(busy, PeerId::random(), addr(i as u16), now)
            .expect("within the per-peer limit");
    }
    assert_eq!(
        t.bind(busy, PeerId::random(), addr(999), now),
        Err(RefuseCode::Full)
    );
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
    let (_, _, ch_a, _) = ready_pair(&mut t, now);
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
    let (_, _, ch_a, _) = ready_pair(&mut t, now);
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
    let (a, b, ch_a, _) = ready_pair(&mut t, now);
    assert!(t.release(b, a));
    assert!(t.data(ch_a, b"x", addr(1), now).is_none());
    assert!(t.is_empty());

    let (a, _, _, _) = ready_pair(&mut t, now);
    ready_pair(&mut t, now);
    assert_eq!(t.peer_left(a), 1);
    assert_eq!(t.len(), 1);

    assert_eq!(t.expire(now + Duration::from_secs(4)), 0);
    assert_eq!(t.expire(now + Duration::from_secs(5)), 1);
    assert!(t.is_empty());

    let (a, _, _, _) = ready_pair(&mut t, now);
    assert_eq!(t.retain_online(|p| *p != a), 1);
    assert!(t.is_empty());
    assert!(t.channels.is_empty() && t.by_peer.is_empty());
}
