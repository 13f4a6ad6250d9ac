//! Deterministic tests of the session state machine over a simulated link.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::wire::{Announce, Datagram, Header, Kind, MAX_SEND_DATAGRAM_BYTES, Message, Part, Pong};
use p2pchat::datagram::{DatagramKind, classify};
use std::sync::Arc;

mod secure;

/// A message from `from` with the given stream id and part.
fn message(from: PeerId, body: &str, id: Option<u64>, part: Option<Part>) -> Datagram {
    Message {
        header: Header::now(from),
        body: body.to_owned(),
        id,
        part,
    }
    .into()
}

/// A hello from A announcing `session` (and nothing else).
fn hello_from_a(session: Option<u64>) -> Datagram {
    crate::wire::Hello {
        header: Header::now(A_ID),
        announce: Announce {
            extensions: None,
            session,
            handshake: None,
        },
        username: None,
    }
    .into()
}

/// The chat messages among `seen`.
fn chat_messages(seen: &[Datagram]) -> Vec<&Message> {
    seen.iter()
        .filter_map(|d| match d {
            Datagram::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

const A_ID: PeerId = PeerId::from_uuid(uuid::uuid!("aaaaaaaa-0000-4000-8000-000000000001"));
const B_ID: PeerId = PeerId::from_uuid(uuid::uuid!("bbbbbbbb-0000-4000-8000-000000000002"));

fn a_addr() -> SocketAddr {
    "127.0.0.1:1001".parse().unwrap()
}
fn b_addr() -> SocketAddr {
    "127.0.0.1:1002".parse().unwrap()
}

fn fast() -> SessionConfig {
    SessionConfig {
        keepalive_interval: Duration::from_millis(500),
        missed_pong_limit: 3,
        probe_interval: Duration::from_millis(100),
        attempt_duration: Duration::from_millis(600),
        connect_attempts: 3,
        relay_after: Duration::from_secs(3600),
    }
}

/// Tiny deterministic PRNG (xorshift64*), so failures reproduce exactly.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Loss, duplication and reordering applied to every datagram.
#[derive(Clone, Copy)]
struct Link {
    drop_pct: u64,
    dup_pct: u64,
    /// Extra random delay up to this many ms, which reorders datagrams.
    jitter_ms: u64,
}

const CLEAN: Link = Link {
    drop_pct: 0,
    dup_pct: 0,
    jitter_ms: 0,
};

/// Two endpoints A and B joined by a simulated network.
struct Net {
    now: Instant,
    rng: Rng,
    link: Link,
    /// Delivery time -> (sequence, destination, source, bytes).
    wire: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    a: Option<Session>,
    b: Option<Session>,
    /// Whether B accepts incoming hellos (false: B is "dead").
    b_alive: bool,
    a_events: Vec<SessionEvent>,
    b_events: Vec<SessionEvent>,
    /// Every datagram B received, decoded (to check what a seed peer sees).
    b_seen: Vec<Datagram>,
    /// B speaks only the seed protocol (handled by hand, not by a Session).
    b_seed: bool,
    /// Datagrams A put on the wire (before loss).
    a_sent: usize,
    a_primed: usize,
    /// A's and B's keys when the session is encrypted (their ids are then
    /// the keys' ids).
    noise: Option<(
        Arc<crate::identity::Identity>,
        Arc<crate::identity::Identity>,
    )>,
    /// Every datagram either side put on the wire (for capture checks).
    captured: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
}

impl Net {
    fn new(link: Link, seed: u64) -> Net {
        Net {
            now: Instant::now(),
            rng: Rng(seed),
            link,
            wire: BTreeMap::new(),
            seq: 0,
            a: None,
            b: None,
            b_alive: true,
            a_events: Vec::new(),
            b_events: Vec::new(),
            b_seen: Vec::new(),
            b_seed: false,
            a_sent: 0,
            a_primed: 0,
            noise: None,
            captured: Vec::new(),
        }
    }

    /// A net whose sessions are end-to-end encrypted (IK: A has B's key).
    fn encrypted(link: Link, seed: u64) -> Net {
        let mut net = Net::new(link, seed);
        net.noise = Some((
            Arc::new(crate::identity::Identity::generate()),
            Arc::new(crate::identity::Identity::generate()),
        ));
        net
    }

    fn a_id(&self) -> PeerId {
        self.noise.as_ref().map_or(A_ID, |(a, _)| a.peer_id())
    }

    fn b_id(&self) -> PeerId {
        self.noise.as_ref().map_or(B_ID, |(_, b)| b.peer_id())
    }

    fn protection(&self, a_side: bool, role: Role) -> Protection {
        match &self.noise {
            None => Protection::Plaintext,
            Some((a, b)) => Protection::Noise {
                identity: if a_side { a.clone() } else { b.clone() },
                index: if a_side { 0xa } else { 0xb },
                role,
            },
        }
    }

    fn connect_a(&mut self) {
        let key = self.noise.as_ref().map(|(_, b)| b.public_key());
        let protection = self.protection(true, Role::Initiate(key));
        let (a_id, b_id) = (self.a_id(), self.b_id());
        let s = Session::connect(
            fast(),
            a_id,
            "alice",
            b_id,
            vec![b_addr()],
            protection,
            self.now,
        );
        self.a = Some(s);
        self.collect();
    }

    fn put(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        assert!(bytes.len() <= MAX_SEND_DATAGRAM_BYTES);
        self.captured.push((from, to, bytes.clone()));
        if self.rng.chance(self.link.drop_pct) {
            return;
        }
        let copies = if self.rng.chance(self.link.dup_pct) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.link.jitter_ms > 0 {
                self.rng.next() % self.link.jitter_ms
            } else {
                0
            };
            let at = self.now + Duration::from_millis(1 + jitter);
            self.seq += 1;
            self.wire.insert((at, self.seq), (to, from, bytes.clone()));
        }
    }

    fn collect(&mut self) {
        let mut sends = Vec::new();
        if let Some(a) = self.a.as_mut() {
            for action in a.take_actions() {
                match action {
                    Action::Send { to, bytes } => {
                        self.a_sent += 1;
                        sends.push((a_addr(), to, bytes))
                    }
                    // The simulated link is one hop, like a LAN: a priming
                    // probe's low TTL still gets it there.
                    Action::Prime { to, bytes } => {
                        self.a_sent += 1;
                        self.a_primed += 1;
                        sends.push((a_addr(), to, bytes))
                    }
                    Action::Event(e) => self.a_events.push(e),
                }
            }
        }
        if let Some(b) = self.b.as_mut() {
            for action in b.take_actions() {
                match action {
                    Action::Send { to, bytes } => sends.push((b_addr(), to, bytes)),
                    Action::Prime { to, bytes } => sends.push((b_addr(), to, bytes)),
                    Action::Event(e) => self.b_events.push(e),
                }
            }
        }
        for (from, to, bytes) in sends {
            self.put(from, to, bytes);
        }
    }

    fn deliver(&mut self, to: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        if classify(bytes) == DatagramKind::Sealed {
            let now = self.now;
            match (to == a_addr(), self.a.as_mut(), self.b.as_mut()) {
                (true, Some(a), _) => a.handle_bytes(bytes, from, now),
                (false, _, Some(b)) if self.b_alive => b.handle_bytes(bytes, from, now),
                _ => {}
            }
            self.collect();
            return;
        }
        let dg = Datagram::decode(bytes).unwrap();
        if to == a_addr() {
            if let Some(a) = self.a.as_mut() {
                a.handle_datagram(&dg, from, self.now);
            }
        } else if self.b_alive {
            self.b_seen.push(dg.clone());
            if self.b_seed {
                // A seed peer: answers hello with hello, ping with pong.
                let reply = match dg.kind() {
                    Kind::Hello => Some(Kind::Hello),
                    Kind::Ping => Some(Kind::Pong),
                    _ => None,
                };
                if let Some(kind) = reply {
                    let raw = format!(
                        r#"{{"type":"{}","from":"{B_ID}","timestamp":1.0,"body":""}}"#,
                        serde_json::to_value(kind).unwrap().as_str().unwrap()
                    );
                    self.put(b_addr(), from, raw.into_bytes());
                }
                return;
            }
            match self.b.as_mut() {
                Some(b) => b.handle_datagram(&dg, from, self.now),
                None if dg.kind() == Kind::Hello => {
                    let protection = self.protection(false, Role::Respond);
                    let b_id = self.b_id();
                    self.b = Some(Session::accept(
                        fast(),
                        b_id,
                        "bob",
                        &dg,
                        from,
                        protection,
                        self.now,
                    ));
                }
                None => {}
            }
        }
        self.collect();
    }

    /// Advances simulated time by `total`, in 5 ms steps.
    fn run(&mut self, total: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.now += Duration::from_millis(5);
            while let Some((&(at, seq), _)) = self.wire.iter().next() {
                if at > self.now {
                    break;
                }
                let (to, from, bytes) = self.wire.remove(&(at, seq)).unwrap();
                self.deliver(to, from, &bytes);
            }
            let now = self.now;
            if let Some(a) = self.a.as_mut() {
                a.poll_timers(now);
            }
            if let Some(b) = self.b.as_mut()
                && self.b_alive
            {
                b.poll_timers(now);
            }
            self.collect();
        }
    }

    fn a_send(&mut self, text: &str) -> Result<u64, SendError> {
        let now = self.now;
        self.a().send_line(text, now)
    }
    fn b_send(&mut self, text: &str) -> Result<u64, SendError> {
        let now = self.now;
        self.b().send_line(text, now)
    }
    fn a(&mut self) -> &mut Session {
        self.a.as_mut().unwrap()
    }
    fn b(&mut self) -> &mut Session {
        self.b.as_mut().unwrap()
    }
}

fn messages(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn delivered(events: &[SessionEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Delivered { line } => Some(*line),
            _ => None,
        })
        .collect()
}

fn closed(events: &[SessionEvent]) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        SessionEvent::Closed { reason } => Some(*reason),
        _ => None,
    })
}

#[test]
fn connects_and_negotiates_reliability() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    assert_eq!(net.a().phase(), Phase::Connected);
    assert_eq!(net.b().phase(), Phase::Connected);
    assert!(net.a().reliable() && net.b().reliable());
    assert_eq!(net.b().remote_username(), Some("alice"));
    assert!(net.a_events.iter().any(|e| matches!(
        e,
        SessionEvent::Connected {
            path: PathKind::Lan,
            reliable: true,
            rtt: Some(_),
            ..
        }
    )));
    let line = net.a_send("hello bob").unwrap();
    let back = net.b_send("hi alice").unwrap();
    net.run(Duration::from_millis(50));
    assert_eq!(messages(&net.b_events), vec!["hello bob"]);
    assert_eq!(messages(&net.a_events), vec!["hi alice"]);
    assert_eq!(delivered(&net.a_events), vec![line]);
    assert_eq!(delivered(&net.b_events), vec![back]);
    assert_eq!(net.a().pending_lines(), 0);
}

#[test]
fn send_before_connect_is_refused() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    assert_eq!(net.a_send("x"), Err(SendError::NotConnected));
}

#[test]
fn exactly_once_in_order_under_loss_duplication_and_reordering() {
    for seed in [3, 17, 99, 12345] {
        let link = Link {
            drop_pct: 20,
            dup_pct: 10,
            jitter_ms: 40,
        };
        let mut net = Net::new(link, seed);
        net.connect_a();
        net.run(Duration::from_secs(3));
        assert_eq!(net.a().phase(), Phase::Connected, "seed {seed}");
        assert_eq!(net.b().phase(), Phase::Connected, "seed {seed}");
        let sent: Vec<String> = (0..200).map(|i| format!("msg {i}")).collect();
        let replies: Vec<String> = (0..200).map(|i| format!("reply {i}")).collect();
        for (m, r) in sent.iter().zip(&replies) {
            net.a_send(m).unwrap();
            net.b_send(r).unwrap();
            net.run(Duration::from_millis(5));
        }
        net.run(Duration::from_secs(20));
        assert_eq!(messages(&net.b_events), sent, "seed {seed}");
        assert_eq!(messages(&net.a_events), replies, "seed {seed}");
        assert_eq!(delivered(&net.a_events).len(), 200, "seed {seed}");
        assert_eq!(net.a().pending_lines(), 0);
        assert_eq!(net.a().phase(), Phase::Connected);
    }
}

#[test]
fn long_line_is_fragmented_and_reassembled_under_loss() {
    let link = Link {
        drop_pct: 20,
        dup_pct: 10,
        jitter_ms: 30,
    };
    let mut net = Net::new(link, 7);
    net.connect_a();
    net.run(Duration::from_secs(2));
    let long: String = (0..MAX_LINE_BYTES / 10)
        .map(|i| format!("{:09}\u{1}", i))
        .collect::<String>();
    assert!(long.len() <= MAX_LINE_BYTES);
    let line = net.a_send(&long).unwrap();
    net.a_send("after").unwrap();
    net.run(Duration::from_secs(20));
    assert_eq!(messages(&net.b_events), vec![long, "after".to_owned()]);
    assert!(delivered(&net.a_events).contains(&line));
}

#[test]
fn line_length_limit_edge() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    let max = "a".repeat(MAX_LINE_BYTES);
    assert!(net.a_send(&max).is_ok());
    let over = "a".repeat(MAX_LINE_BYTES + 1);
    assert_eq!(
        net.a_send(&over),
        Err(SendError::TooLong(MAX_LINE_BYTES + 1))
    );
    // The worst-escaping full-length line stays within the fragment limit.
    let worst = "\u{1}".repeat(MAX_LINE_BYTES);
    let pieces = split_for_datagrams(&worst, MAX_FRAGMENT_BODY_BYTES);
    assert!(pieces.len() as u32 <= MAX_FRAGMENTS_PER_LINE);
    net.run(Duration::from_secs(2));
    assert_eq!(messages(&net.b_events), vec![max]);
}

#[test]
fn window_and_queue_limits() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    // B goes silent: nothing is acked, so everything past the window queues.
    net.b_alive = false;
    let now = net.now;
    let mut sends = 0;
    for i in 0..(WINDOW as usize + MAX_QUEUED_FRAGMENTS) {
        net.a().send_line(&format!("m{i}"), now).unwrap();
        sends += net
            .a()
            .take_actions()
            .iter()
            .filter(|a| matches!(a, Action::Send { .. }))
            .count();
    }
    assert_eq!(
        sends as u64, WINDOW,
        "only a window's worth goes on the wire"
    );
    assert_eq!(
        net.a().send_line("one too many", now),
        Err(SendError::QueueFull)
    );
}

#[test]
fn window_edge_at_receiver() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    let from = a_addr();
    let now = net.now;
    let far = message(A_ID, "too far", Some(1 + WINDOW), None);
    net.b().handle_datagram(&far, from, now);
    let acted = net.b().take_actions();
    assert!(acted.is_empty(), "beyond the window: dropped, not acked");
    let edge = message(A_ID, "edge", Some(WINDOW), None);
    net.b().handle_datagram(&edge, from, now);
    assert!(
        net.b()
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::Send { .. })),
        "last id inside the window is buffered and acked"
    );
}

#[test]
fn offline_after_missed_pongs_reports_undeliverable() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    net.b_alive = false;
    let line = net.a_send("into the void").unwrap();
    // 3 missed intervals of 500 ms, plus one to notice.
    net.run(Duration::from_millis(1200));
    assert_eq!(closed(&net.a_events), None, "too early to give up");
    net.run(Duration::from_millis(1000));
    assert_eq!(closed(&net.a_events), Some(CloseReason::Timeout));
    assert!(net.a_events.contains(&SessionEvent::Undeliverable { line }));
    assert_eq!(net.a().next_deadline(), None);
}

#[test]
fn keepalive_keeps_idle_session_up_and_measures_rtt() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_secs(5));
    assert_eq!(net.a().phase(), Phase::Connected);
    assert_eq!(net.b().phase(), Phase::Connected);
    assert!(
        net.a_events
            .iter()
            .filter(|e| matches!(e, SessionEvent::Rtt { .. }))
            .count()
            >= 5
    );
    assert!(net.a().rtt().unwrap() < Duration::from_millis(20));
}

#[test]
fn unreachable_after_three_attempts() {
    let mut net = Net::new(CLEAN, 1);
    net.b_alive = false;
    net.connect_a();
    net.run(Duration::from_millis(1700));
    assert_eq!(closed(&net.a_events), None);
    net.run(Duration::from_millis(200));
    assert_eq!(closed(&net.a_events), Some(CloseReason::Unreachable));
    let attempts: Vec<u32> = net
        .a_events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Probing { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    // Paced probes: one every 100 ms over three 600 ms attempts.
    // The first round only primes (low TTL); the rest are full probes.
    assert_eq!(net.a_primed, 1);
    assert!((16..=20).contains(&net.a_sent), "{} probes", net.a_sent);
}

#[test]
fn disconnect_ends_both_sides() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    net.a().close();
    net.collect();
    net.run(Duration::from_millis(50));
    assert_eq!(closed(&net.a_events), Some(CloseReason::Local));
    assert_eq!(closed(&net.b_events), Some(CloseReason::RemoteDisconnect));
    assert_eq!(net.b().phase(), Phase::Closed);
}

#[test]
fn peer_left_closes_at_once() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    net.a().peer_left();
    net.collect();
    assert_eq!(closed(&net.a_events), Some(CloseReason::Left));
}

#[test]
fn seed_peer_gets_plain_messages_and_no_retransmissions() {
    let mut net = Net::new(CLEAN, 1);
    net.b_seed = true;
    net.connect_a();
    net.run(Duration::from_millis(50));
    assert_eq!(net.a().phase(), Phase::Connected);
    assert!(!net.a().reliable());
    net.a_send("plain hello").unwrap();
    let long = "x".repeat(2000);
    net.a_send(&long).unwrap();
    net.run(Duration::from_secs(3));
    let bodies: Vec<&Message> = chat_messages(&net.b_seen);
    assert_eq!(bodies.len(), 4, "one plain line + a long one split in 3");
    assert!(bodies.iter().all(|d| d.id.is_none() && d.part.is_none()));
    assert_eq!(bodies[0].body, "plain hello");
    assert_eq!(
        bodies[1..]
            .iter()
            .map(|d| d.body.as_str())
            .collect::<String>(),
        long
    );
    // Keep-alive against a seed peer works (its pong has no nonce).
    assert!(net.a().rtt().is_some());
    assert_eq!(net.a().phase(), Phase::Connected);
    assert!(delivered(&net.a_events).is_empty());
}

#[test]
fn accepts_seed_hello_and_plain_messages() {
    let now = Instant::now();
    let hello = Datagram::decode(
        format!(r#"{{"type":"hello","from":"{B_ID}","timestamp":1.0,"body":""}}"#).as_bytes(),
    )
    .unwrap();
    let mut s = Session::accept(
        fast(),
        A_ID,
        "alice",
        &hello,
        b_addr(),
        Protection::Plaintext,
        now,
    );
    assert_eq!(s.phase(), Phase::Connected);
    assert!(!s.reliable());
    let actions = s.take_actions();
    let reply = actions
        .iter()
        .find_map(|a| match a {
            Action::Send { to, bytes } => Some((*to, Datagram::decode(bytes).unwrap())),
            _ => None,
        })
        .unwrap();
    assert_eq!(reply.0, b_addr());
    assert_eq!(reply.1.kind(), Kind::Pong);
    let msg: Datagram = Message::plain(B_ID, "hi from seed").into();
    s.handle_datagram(&msg, b_addr(), now);
    assert!(s.take_actions().iter().any(
        |a| matches!(a, Action::Event(SessionEvent::Message { text, .. }) if text == "hi from seed")
    ));
    // From another address: not accepted.
    s.handle_datagram(&msg, a_addr(), now);
    assert!(s.take_actions().is_empty());
}

#[test]
fn rto_bounds() {
    let mut r = RttEstimator::default();
    assert_eq!(r.rto(), INITIAL_RTO);
    r.sample(Duration::from_micros(50));
    assert_eq!(r.rto(), MIN_RTO);
    for _ in 0..50 {
        r.sample(Duration::from_secs(10));
    }
    assert_eq!(r.rto(), MAX_RTO);
}

/// Feeds B the fragments of one line with `count` parts, in order.
fn feed_fragments(net: &mut Net, first_id: u64, count: u32) -> Vec<Action> {
    let now = net.now;
    let mut actions = Vec::new();
    for index in 0..count {
        let id = Some(first_id + u64::from(index));
        let dg = message(A_ID, "ab", id, Some(Part { index, count }));
        net.b().handle_datagram(&dg, a_addr(), now);
        actions.extend(net.b().take_actions());
    }
    actions
}

#[test]
fn fragment_count_limit_edge_at_receiver() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    net.b().take_actions();
    // Exactly the limit: one reassembled line.
    let actions = feed_fragments(&mut net, 1, MAX_FRAGMENTS_PER_LINE);
    let lines: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(SessionEvent::Message { text, .. }) => Some(text.len()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, vec![2 * MAX_FRAGMENTS_PER_LINE as usize]);
    // One over: discarded, but every fragment is still acked so the stream
    // does not stall, and the next line gets through.
    let next = 1 + u64::from(MAX_FRAGMENTS_PER_LINE);
    let actions = feed_fragments(&mut net, next, MAX_FRAGMENTS_PER_LINE + 1);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Event(SessionEvent::Message { .. })))
    );
    let acks = actions
        .iter()
        .filter(|a| matches!(a, Action::Send { .. }))
        .count();
    assert_eq!(acks, MAX_FRAGMENTS_PER_LINE as usize + 1);
    let id = Some(next + u64::from(MAX_FRAGMENTS_PER_LINE) + 1);
    let after = message(A_ID, "after", id, None);
    let now = net.now;
    net.b().handle_datagram(&after, a_addr(), now);
    assert!(net.b().take_actions().iter().any(
        |a| matches!(a, Action::Event(SessionEvent::Message { text, .. }) if text == "after")
    ));
}

#[test]
fn reassembled_line_byte_limit_edge() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    net.b().take_actions();
    let now = net.now;
    let piece = MAX_LINE_BYTES / 4;
    let send = |net: &mut Net, first: u64, last_len: usize| {
        let mut got = Vec::new();
        for index in 0..4u32 {
            let len = if index == 3 { last_len } else { piece };
            let id = Some(first + u64::from(index));
            let dg = message(A_ID, &"x".repeat(len), id, Some(Part { index, count: 4 }));
            net.b().handle_datagram(&dg, a_addr(), now);
            got.extend(net.b().take_actions().into_iter().filter_map(|a| match a {
                Action::Event(SessionEvent::Message { text, .. }) => Some(text.len()),
                _ => None,
            }));
        }
        got
    };
    assert_eq!(send(&mut net, 1, piece), vec![MAX_LINE_BYTES]);
    assert_eq!(send(&mut net, 5, piece + 1), Vec::<usize>::new());
}

#[test]
fn candidate_list_is_capped() {
    let now = Instant::now();
    let many: Vec<SocketAddr> = (0..MAX_CANDIDATES as u16 + 5)
        .chain(0..3) // repeats are dropped first
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 2000 + i)))
        .collect();
    let mut s = Session::connect(
        fast(),
        A_ID,
        "alice",
        B_ID,
        many,
        Protection::Plaintext,
        now,
    );
    assert_eq!(s.candidates().len(), MAX_CANDIDATES);
    let probes = s
        .take_actions()
        .iter()
        .filter(|a| matches!(a, Action::Prime { .. }))
        .count();
    assert_eq!(
        probes, MAX_CANDIDATES,
        "the first round primes every candidate"
    );
    s.add_candidates([SocketAddr::from(([127, 0, 0, 1], 9999))]);
    assert_eq!(s.candidates().len(), MAX_CANDIDATES);
}

#[test]
fn probing_side_that_hears_a_ping_first_still_negotiates() {
    // A's hello reaches B, B's pong is lost, B's first ping reaches A: A must
    // connect with the extensions the ping announces, not fall back to the
    // seed protocol.
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    // Deliver A's first hello to B by hand, dropping whatever B answers.
    let (&key, _) = net.wire.iter().next().unwrap();
    let (to, from, bytes) = net.wire.remove(&key).unwrap();
    assert_eq!(to, b_addr());
    let hello = Datagram::decode(&bytes).unwrap();
    let now = net.now;
    net.b = Some(Session::accept(
        fast(),
        B_ID,
        "bob",
        &hello,
        from,
        Protection::Plaintext,
        now,
    ));
    let answer = net.b().take_actions();
    assert!(answer.iter().any(|a| matches!(a, Action::Send { .. })));
    net.wire.clear();
    // B pings at once (it has no RTT yet).
    net.b().poll_timers(now);
    let ping = net
        .b()
        .take_actions()
        .into_iter()
        .find_map(|a| match a {
            Action::Send { bytes, .. } => Some(Datagram::decode(&bytes).unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ping.kind(), Kind::Ping);
    net.a().handle_datagram(&ping, b_addr(), now);
    assert_eq!(net.a().phase(), Phase::Connected);
    assert!(net.a().reliable());
}

#[test]
fn only_a_new_hello_from_the_session_address_supersedes_it() {
    let mut net = Net::new(CLEAN, 1);
    net.connect_a();
    net.run(Duration::from_millis(50));
    let hello = hello_from_a(Some(12345));
    assert!(net.b().is_superseded_by(&hello, a_addr()));
    let elsewhere: SocketAddr = "127.0.0.1:4444".parse().unwrap();
    assert!(!net.b().is_superseded_by(&hello, elsewhere));
    // The same session id again is just a repeated probe.
    let own = hello_from_a(Some(net.a().local_session));
    assert!(!net.b().is_superseded_by(&own, a_addr()));
    // A seed hello (no session id) never supersedes.
    let seed = hello_from_a(None);
    assert!(!net.b().is_superseded_by(&seed, a_addr()));
    net.b().reset();
    assert_eq!(net.b().phase(), Phase::Closed);
}

#[test]
fn probing_accepts_handshake_from_unprobed_address_but_nothing_else() {
    let now = Instant::now();
    let elsewhere: SocketAddr = "127.0.0.1:4444".parse().unwrap();
    let mut s = Session::connect(
        fast(),
        A_ID,
        "alice",
        B_ID,
        vec![b_addr()],
        Protection::Plaintext,
        now,
    );
    s.take_actions();
    let msg: Datagram = Message::plain(B_ID, "sneaky").into();
    s.handle_datagram(&msg, elsewhere, now);
    assert_eq!(s.phase(), Phase::Probing);
    assert!(s.take_actions().is_empty());
    // A pong from a NAT-mapped address (peer reflexive) connects there.
    let pong: Datagram = Pong {
        header: Header::now(B_ID),
        nonce: None,
        announce: Announce {
            extensions: Some(crate::wire::our_extensions()),
            session: None,
            handshake: None,
        },
    }
    .into();
    s.handle_datagram(&pong, elsewhere, now);
    assert_eq!(s.phase(), Phase::Connected);
    assert_eq!(s.addr(), Some(elsewhere));
}

#[test]
fn a_plaintext_session_takes_no_sealed_bytes() {
    let now = Instant::now();
    let mut s = Session::connect(
        fast(),
        A_ID,
        "alice",
        B_ID,
        vec![b_addr()],
        Protection::Plaintext,
        now,
    );
    s.take_actions();
    s.handle_bytes(b"not a datagram", b_addr(), now);
    assert!(s.take_actions().is_empty());
    assert_eq!(s.phase(), Phase::Probing);
    // Sealed bytes are for Noise sessions; plaintext goes through
    // handle_datagram, never through the sealed path.
    let hello = format!(r#"{{"type":"hello","from":"{B_ID}","timestamp":1.0,"body":""}}"#);
    s.handle_bytes(hello.as_bytes(), b_addr(), now);
    assert_eq!(s.phase(), Phase::Probing);
    s.handle_datagram(&Datagram::decode(hello.as_bytes()).unwrap(), b_addr(), now);
    assert_eq!(s.phase(), Phase::Connected);
}
