//! Deterministic tests of the path layer.

use super::*;

fn lan(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 168, 1, 2], port))
}
fn public(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 7], port))
}
fn config() -> SessionConfig {
    SessionConfig {
        probe_interval: Duration::from_millis(100),
        attempt_duration: Duration::from_millis(600),
        connect_attempts: 2,
        relay_after: Duration::from_millis(250),
        ..SessionConfig::default()
    }
}

#[test]
fn connecting_primes_first_then_probes_asks_for_relay_and_gives_up() {
    let t0 = Instant::now();
    let mut p = Path::new(&config(), vec![public(1), public(1), lan(2)], t0);
    assert_eq!(p.candidates(), &[public(1), lan(2)]);
    assert_eq!(
        p.poll_connecting(t0),
        vec![Probe::Prime(public(1)), Probe::Prime(lan(2))]
    );
    assert_eq!(
        p.next_deadline(false),
        Some(t0 + Duration::from_millis(100))
    );
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(
        p.poll_connecting(t1),
        vec![Probe::Hello(public(1)), Probe::Hello(lan(2))]
    );
    let t3 = t0 + Duration::from_millis(300);
    assert_eq!(p.poll_connecting(t3)[0], Probe::NeedRelay);
    let t6 = t0 + Duration::from_millis(600);
    assert_eq!(p.poll_connecting(t6)[0], Probe::Attempt(2));
    assert_eq!(p.probe_rounds(), 4);
    assert_eq!(
        p.poll_connecting(t6 + Duration::from_millis(600)),
        vec![Probe::GiveUp]
    );
}

#[test]
fn relay_ranks_last_and_upgrade_probes_back_off() {
    let t0 = Instant::now();
    let relay = public(3478);
    let mut p = Path::new(&config(), vec![lan(2)], t0);
    p.add_relay(relay, t0);
    assert_eq!(p.kind_of(relay), PathKind::Relayed);
    assert_eq!(p.connected(relay, false, t0), None);
    assert!(p.is_better(lan(2)) && !p.is_better(relay));
    assert!(p.is_known(relay) && !p.is_known(lan(2)));
    assert_eq!(
        p.next_deadline(false),
        None,
        "a seed peer is never upgraded"
    );
    let mut at = t0 + UPGRADE_PROBE_MIN;
    assert_eq!(p.next_deadline(true), Some(at));
    assert_eq!(p.poll_connected(at, true), vec![Probe::Prime(lan(2))]);
    for pause in [4, 8, 15, 15] {
        at = p.next_deadline(true).unwrap();
        assert_eq!(
            p.poll_connected(at, true),
            vec![Probe::Prime(lan(2)), Probe::Hello(lan(2))]
        );
        assert_eq!(p.next_deadline(true), Some(at + Duration::from_secs(pause)));
    }
    p.switch(lan(2), at);
    assert_eq!(p.next_deadline(true), None, "nothing better than the LAN");
    p.drop_relay();
    assert!(!p.is_known(relay) && !p.candidates().contains(&relay));
}

#[test]
fn recovery_probes_everything_for_its_window() {
    let t0 = Instant::now();
    let mut p = Path::new(&config(), vec![lan(2), public(1)], t0);
    p.connected(lan(2), false, t0);
    p.recover(t0, Duration::from_millis(150));
    assert_eq!(p.poll_connected(t0, true).len(), 2);
    assert!(
        p.poll_connected(t0 + Duration::from_millis(50), true)
            .is_empty()
    );
    assert_eq!(
        p.poll_connected(t0 + Duration::from_millis(100), true)
            .len(),
        2
    );
    assert!(
        p.poll_connected(t0 + Duration::from_millis(150), true)
            .is_empty()
    );
    assert_eq!(p.next_deadline(true), None);
}

#[test]
fn candidate_and_validated_limits_edge() {
    let t0 = Instant::now();
    let many = (0..MAX_CANDIDATES as u16 + 1).map(public).collect();
    let mut p = Path::new(&config(), many, t0);
    assert_eq!(p.candidates().len(), MAX_CANDIDATES);
    // The relay is never crowded out.
    p.add_relay(lan(9), t0);
    assert_eq!(p.candidates().len(), MAX_CANDIDATES + 1);
    for port in 0..MAX_VALIDATED_PATHS as u16 {
        p.mark_validated(public(port));
    }
    assert!(p.is_known(public(0)));
    p.mark_validated(public(100));
    assert!(!p.is_known(public(0)), "oldest forgotten past the limit");
    assert!(p.is_known(public(1)) && p.is_known(public(100)));
}
