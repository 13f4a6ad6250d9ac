//! What one connect request can make us send (issue 12): the caller of a
//! rendezvous registers the endpoints it likes (here 15 addresses of
//! victims), asks the server to connect to us, and never answers. Driven
//! under a fake clock through the whole connect attempt, every byte we send
//! to those addresses is counted against the bytes of the attacker's
//! request.

use std::collections::HashMap;

use super::*;
use crate::identity::Identity;
use crate::session::{MAX_PROBE_HELLO_BYTES, MAX_PROBES_PER_CANDIDATE, MAX_UNSOLICITED_CANDIDATES};
use crate::signaling::PeerKey;

/// The amplification one connect request may cost at most (issue 12).
const MAX_FACTOR: usize = 20;

/// Bytes of the attacker's `RequestConnect` as gRPC carries it: the
/// protobuf message (three strings: the caller's id, its 64-hex-digit
/// token, our id; each a tag byte, a length byte and the text) behind the
/// 5-byte gRPC message prefix. HTTP/2 and TCP/IP headers come on top, so
/// this is the smallest the request can be.
fn request_bytes() -> usize {
    let field = |len: usize| 1 + 1 + len;
    5 + field(36) + field(64) + field(36)
}

/// Fifteen attacker-chosen endpoints: public, private and loopback ones.
fn victims() -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = (1..=5)
        .map(|i| SocketAddr::from(([198, 51, 100, i], 4000)))
        .collect();
    out.extend((1..=5).map(|i| SocketAddr::from(([192, 168, 1, i], 4000))));
    out.extend((1..=5u16).map(|i| SocketAddr::from(([127, 0, 0, 1], 40_000 + i))));
    out
}

fn attacker(key: PeerKey, peer_id: PeerId) -> RemotePeer {
    RemotePeer {
        peer_id,
        username: "mallory".into(),
        endpoints: victims(),
        inbox_open: true,
        via_rest: false,
        local_endpoints: vec![],
        key,
    }
}

/// One connect request from `from`, then 10 s (past the last attempt) on
/// the fake clock, rendezvous tasks answered as the server would. Returns
/// the bytes sent to each victim.
fn one_connect_request(
    core: &mut Core,
    from: &RemotePeer,
    now: &mut Instant,
) -> HashMap<SocketAddr, (usize, usize)> {
    let victims = victims();
    let mut sent: HashMap<SocketAddr, (usize, usize)> = HashMap::new();
    core.on_signal(SignalEvent::ConnectRequested { from: from.clone() }, *now);
    let end = *now + Duration::from_secs(10);
    while *now < end {
        for out in core.take_outputs() {
            match out {
                Output::Send { to, bytes } | Output::Prime { to, bytes } => {
                    assert!(
                        bytes.len() <= MAX_PROBE_HELLO_BYTES,
                        "a {}-byte probe",
                        bytes.len()
                    );
                    if victims.contains(&to) {
                        let entry = sent.entry(to).or_default();
                        entry.0 += 1;
                        entry.1 += bytes.len();
                    }
                }
                Output::Task(Task::Rendezvous {
                    target,
                    create,
                    request,
                }) => core.on_rendezvous(
                    RendezvousDone {
                        result: Ok((target.clone(), true)),
                        target,
                        create,
                        request,
                    },
                    *now,
                ),
                Output::Task(_) => {}
            }
        }
        *now += Duration::from_millis(25);
        core.on_timer(*now);
    }
    sent
}

fn check_bounded(sent: &HashMap<SocketAddr, (usize, usize)>, what: &str) -> usize {
    let total: usize = sent.values().map(|(_, b)| b).sum();
    let factor = total as f64 / request_bytes() as f64;
    assert!(
        total <= MAX_FACTOR * request_bytes(),
        "{what}: {total} bytes for a {}-byte request ({factor:.1}x)",
        request_bytes()
    );
    // At its edge: exactly the budget to the first candidates, nothing to
    // the rest.
    assert_eq!(sent.len(), MAX_UNSOLICITED_CANDIDATES, "{what}: {sent:?}");
    for (to, (datagrams, _)) in sent {
        assert_eq!(
            *datagrams, MAX_PROBES_PER_CANDIDATE as usize,
            "{what}: {to}"
        );
    }
    // Public candidates come first.
    for i in 1..=4 {
        assert!(sent.contains_key(&SocketAddr::from(([198, 51, 100, i], 4000))));
    }
    total
}

#[test]
fn one_connect_request_with_15_endpoints_costs_at_most_20x_its_bytes() {
    let mut now = Instant::now();
    // A key-derived caller: we answer its handshake, and meanwhile prime.
    let mallory = Identity::generate();
    let encrypted = attacker(PeerKey::Verified(mallory.public_key()), mallory.peer_id());
    let mut core = core(now);
    let sent = one_connect_request(&mut core, &encrypted, &mut now);
    let total = check_bounded(&sent, "encrypted caller");
    eprintln!(
        "encrypted caller: {total} bytes to victims for a {}-byte request ({:.1}x)",
        request_bytes(),
        total as f64 / request_bytes() as f64
    );
    // A seed-protocol caller (no key): plaintext hellos, same bound.
    let mut core = super::core(now);
    let plain = attacker(
        PeerKey::Unverified,
        id("dddd0000-0000-4000-8000-000000000004"),
    );
    let sent = one_connect_request(&mut core, &plain, &mut now);
    let total = check_bounded(&sent, "plaintext caller");
    eprintln!(
        "plaintext caller: {total} bytes ({:.1}x)",
        total as f64 / request_bytes() as f64
    );
}

#[test]
fn a_second_connect_request_is_a_new_rendezvous_with_its_own_budget() {
    let mut now = Instant::now();
    let mallory = Identity::generate();
    let from = attacker(PeerKey::Verified(mallory.public_key()), mallory.peer_id());
    let mut core = core(now);
    core.on_signal(SignalEvent::ConnectRequested { from: from.clone() }, now);
    let count = |core: &mut Core| {
        core.take_outputs()
            .iter()
            .filter(|o| matches!(o, Output::Send { .. } | Output::Prime { .. }))
            .count()
    };
    let mut first = count(&mut core);
    for _ in 0..40 {
        now += Duration::from_millis(50);
        core.on_timer(now);
        first += count(&mut core);
    }
    assert_eq!(
        first,
        MAX_UNSOLICITED_CANDIDATES * MAX_PROBES_PER_CANDIDATE as usize
    );
    // The caller asks again (its next attempt): one budget more, no more.
    core.on_signal(SignalEvent::ConnectRequested { from }, now);
    let mut second = count(&mut core);
    for _ in 0..40 {
        now += Duration::from_millis(50);
        core.on_timer(now);
        second += count(&mut core);
    }
    assert_eq!(
        second,
        MAX_UNSOLICITED_CANDIDATES * MAX_PROBES_PER_CANDIDATE as usize
    );
}

#[test]
fn many_callers_at_once_share_one_probe_budget_per_second() {
    use crate::engine::MAX_UNSOLICITED_PROBES_PER_SEC;
    let mut now = Instant::now();
    let mut core = core(now);
    // Six callers at the same instant: 6 x 12 probes wanted in the first
    // 300 ms, more than the shared budget.
    let callers = 6;
    assert!(
        callers * MAX_UNSOLICITED_CANDIDATES * MAX_PROBES_PER_CANDIDATE as usize
            > MAX_UNSOLICITED_PROBES_PER_SEC as usize
    );
    for _ in 0..callers {
        let mallory = Identity::generate();
        let from = attacker(PeerKey::Verified(mallory.public_key()), mallory.peer_id());
        core.on_signal(SignalEvent::ConnectRequested { from }, now);
    }
    let count = |core: &mut Core| {
        core.take_outputs()
            .iter()
            .filter(|o| matches!(o, Output::Send { .. } | Output::Prime { .. }))
            .count()
    };
    let mut first_second = count(&mut core);
    for _ in 0..19 {
        now += Duration::from_millis(50);
        core.on_timer(now);
        first_second += count(&mut core);
    }
    assert_eq!(first_second, MAX_UNSOLICITED_PROBES_PER_SEC as usize);
}

/// The probes of a requested session with our name `name`, decoded.
fn probes_named(name: &str) -> Vec<(usize, Option<String>)> {
    let now = Instant::now();
    let mut core = core(now);
    core.username = name.into();
    let mallory = Identity::generate();
    let from = attacker(PeerKey::Verified(mallory.public_key()), mallory.peer_id());
    core.on_signal(SignalEvent::ConnectRequested { from }, now);
    core.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } | Output::Prime { bytes, .. } => Some(bytes),
            Output::Task(_) => None,
        })
        .map(|bytes| match Datagram::decode(&bytes) {
            Ok(Datagram::Hello(h)) => (bytes.len(), h.username),
            other => panic!("not a hello: {other:?}"),
        })
        .collect()
}

#[test]
fn probe_hellos_stay_within_the_cap_and_drop_a_long_name() {
    let short = probes_named("alice");
    assert_eq!(short.len(), MAX_UNSOLICITED_CANDIDATES);
    assert!(
        short
            .iter()
            .all(|(len, name)| *len <= MAX_PROBE_HELLO_BYTES && name.as_deref() == Some("alice"))
    );
    // 64 four-byte characters: the name alone is 256 bytes.
    let long: String = "\u{1F600}".repeat(64);
    let capped = probes_named(&long);
    assert!(
        capped
            .iter()
            .all(|(len, name)| *len <= MAX_PROBE_HELLO_BYTES && name.is_none())
    );
}
