//! The server's UDP port end to end: STUN answers (checked with stun_codec
//! and with a standard STUN client, coturn's `turnutils_stunclient`), and
//! the relay with real gRPC registrations and real UDP sockets: pairing,
//! forwarding, authenticated BIND/RELEASE (replays, forgeries, old
//! counters), target checks, limits, freeing, rebinding, and the peer's own
//! relay client never putting its token on the wire.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use std::cell::Cell;

use bytecodec::{DecodeExt, EncodeExt};
use p2pchat::proto::relay_frame::{
    CLAIM_FRAME_BYTES, MAX_RELAY_PAYLOAD, NO_CHANNEL, RefuseCode, RelayFrame, RelayKey,
};
use p2pchat::proto::{RegisterRequest, UnregisterRequest};
use p2pchat::{PeerId, SessionToken};
use p2pchat_client::relay::{Credentials, RelayClient, RelayInput};
use p2pchat_server::udp::RelayLimits;
use p2pchat_server::{RunningServer, ServerConfig};
use stun_codec::rfc5389::attributes::XorMappedAddress;
use stun_codec::rfc5389::{Attribute, methods::BINDING};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use uuid::Uuid;

/// How long a test waits for a datagram that should come.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long a test listens for a datagram that must not come.
const SILENCE: Duration = Duration::from_millis(300);

async fn recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    recv_within(socket, ARRIVES).await
}

async fn recv_within(socket: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

fn binding_request(id: u8) -> Vec<u8> {
    let m = Message::<Attribute>::new(MessageClass::Request, BINDING, TransactionId::new([id; 12]));
    MessageEncoder::new().encode_into_bytes(m).unwrap()
}

#[tokio::test]
async fn stun_binding_gets_the_source_address_and_garbage_gets_nothing() {
    let server = support::start_default().await;
    let udp = server.udp_addr().expect("UDP enabled by default");
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for garbage in [
        &b""[..],
        b"\x00\x01",
        b"{\"type\":\"hello\"}",
        &[0u8; 20],
        b"PR",
    ] {
        client.send_to(garbage, udp).await.unwrap();
    }
    let request = binding_request(7);
    client
        .send_to(&request[..request.len() - 1], udp)
        .await
        .unwrap();
    assert!(
        recv_within(&client, SILENCE).await.is_none(),
        "no reply to garbage"
    );
    client.send_to(&request, udp).await.unwrap();
    let (bytes, from) = recv(&client).await.expect("STUN answer");
    assert_eq!(from, udp);
    let answer = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(&bytes)
        .unwrap()
        .unwrap();
    assert_eq!(answer.class(), MessageClass::SuccessResponse);
    assert_eq!(answer.transaction_id(), TransactionId::new([7; 12]));
    let mapped = answer
        .get_attribute::<XorMappedAddress>()
        .unwrap()
        .address();
    assert_eq!(mapped, client.local_addr().unwrap());
    server.shutdown().await;
}

/// True when `turnutils_stunclient` is on PATH; under CI its absence fails.
fn stunclient_available() -> bool {
    let found = std::process::Command::new("turnutils_stunclient")
        .arg("-h")
        .output()
        .is_ok();
    if !found {
        assert!(
            !std::env::var("CI")
                .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")),
            "turnutils_stunclient (Debian package coturn) is required under CI"
        );
        eprintln!("skipped: turnutils_stunclient not installed (apt install coturn)");
    }
    found
}

#[cfg_attr(
    missing_turnutils,
    ignore = "turnutils_stunclient (coturn) is not installed"
)]
#[tokio::test]
async fn a_standard_stun_client_gets_a_correct_answer() {
    if !stunclient_available() {
        return;
    }
    let server = support::start_default().await;
    let udp = server.udp_addr().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("turnutils_stunclient")
            .args(["-p", &udp.port().to_string(), "127.0.0.1"])
            .output(),
    )
    .await
    .expect("stun client finished in time")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // E.g. "0: : IPv4. UDP reflexive addr: 127.0.0.1:54540".
    let reflexive = text
        .lines()
        .find_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .unwrap_or_else(|| panic!("no reflexive address in: {text}"));
    let addr: SocketAddr = reflexive.trim().parse().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    server.shutdown().await;
}

/// A registered peer with its relay socket, speaking the frames by hand
/// (the peer's own `RelayClient` is tested against the server below).
struct RelayPeer {
    id: Uuid,
    token: SessionToken,
    key: RelayKey,
    socket: UdpSocket,
    /// The counter of the next BIND or RELEASE.
    counter: Cell<u64>,
    /// The channel of the last BOUND, echoed in the next BIND.
    channel: Cell<u64>,
}

async fn relay_peer(server: &RunningServer, name: &str) -> RelayPeer {
    let mut client = support::client(server).await;
    let (id, token) = support::register(&mut client, name, 40000).await;
    let token = SessionToken::parse(&token).unwrap();
    RelayPeer {
        id: Uuid::parse_str(&id).unwrap(),
        key: RelayKey::from_token(&token),
        token,
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        counter: Cell::new(1_700_000_000_000),
        channel: Cell::new(NO_CHANNEL),
    }
}

impl RelayPeer {
    /// The same peer (id, key, counter, channel) on a new socket: a NAT
    /// that gave it a new port.
    async fn moved(&self) -> RelayPeer {
        RelayPeer {
            id: self.id,
            token: self.token,
            key: self.key.clone(),
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            counter: Cell::new(self.counter.get()),
            channel: Cell::new(self.channel.get()),
        }
    }

    fn next_counter(&self) -> u64 {
        let counter = self.counter.get();
        self.counter.set(counter + 1);
        counter
    }

    async fn send_bytes(&self, server: &RunningServer, bytes: &[u8]) {
        self.socket
            .send_to(bytes, server.udp_addr().unwrap())
            .await
            .unwrap();
    }

    async fn send(&self, server: &RunningServer, frame: RelayFrame<'_>) {
        self.send_bytes(server, &frame.to_bytes()).await;
    }

    /// Sends a BIND towards `target` echoing the last channel; returns its
    /// bytes (what an eavesdropper captures).
    async fn bind(&self, server: &RunningServer, target: Uuid) -> Vec<u8> {
        let frame = RelayFrame::bind(
            &self.key,
            self.id,
            target,
            self.channel.get(),
            self.next_counter(),
        );
        let bytes = frame.to_bytes();
        self.send_bytes(server, &bytes).await;
        bytes
    }

    /// Sends a RELEASE of the binding with `target`; returns its bytes.
    async fn release(&self, server: &RunningServer, target: Uuid) -> Vec<u8> {
        let frame = RelayFrame::release(
            &self.key,
            self.id,
            target,
            self.channel.get(),
            self.next_counter(),
        );
        let bytes = frame.to_bytes();
        self.send_bytes(server, &bytes).await;
        bytes
    }

    /// The next frame from the server.
    async fn frame(&self) -> Vec<u8> {
        recv(&self.socket).await.expect("a frame from the relay").0
    }

    /// Expects BOUND for `target` and keeps its channel; returns (channel,
    /// ready).
    async fn bound(&self, target: Uuid) -> (u64, bool) {
        let bytes = self.frame().await;
        match RelayFrame::decode(&bytes) {
            Ok(RelayFrame::Bound {
                target: t,
                channel,
                ready,
            }) if t == target => {
                self.channel.set(channel);
                (channel, ready)
            }
            other => panic!("expected BOUND for {target}, got {other:?}"),
        }
    }

    /// BIND, the relay's challenge, the echo: bound at this socket's
    /// address. Returns the answer to the echo: (channel, ready).
    async fn prove(&self, server: &RunningServer, target: Uuid) -> (u64, bool) {
        self.bind(server, target).await;
        let (challenge, ready) = self.bound(target).await;
        assert!(!ready, "a challenge is never ready");
        self.bind(server, target).await;
        let (channel, ready) = self.bound(target).await;
        assert_eq!(channel, challenge, "the echo is accepted");
        (channel, ready)
    }

    async fn refused(&self) -> u8 {
        match RelayFrame::decode(&self.frame().await) {
            Ok(RelayFrame::Refused { code, .. }) => code,
            other => panic!("expected REFUSED, got {other:?}"),
        }
    }

    /// Expects DATA on `channel`; returns the payload.
    async fn data(&self, channel: u64) -> Vec<u8> {
        let bytes = self.frame().await;
        match RelayFrame::decode(&bytes) {
            Ok(RelayFrame::Data {
                channel: c,
                payload,
            }) if c == channel => payload.to_vec(),
            other => panic!("expected DATA on {channel}, got {other:?}"),
        }
    }

    async fn send_data(&self, server: &RunningServer, channel: u64, payload: &[u8]) {
        self.send(server, RelayFrame::Data { channel, payload })
            .await;
    }

    async fn quiet(&self) -> bool {
        recv_within(&self.socket, SILENCE).await.is_none()
    }
}

/// A and B bound to each other; returns their channels.
async fn paired(server: &RunningServer, a: &RelayPeer, b: &RelayPeer) -> (u64, u64) {
    let (ch_a, ready) = a.prove(server, b.id).await;
    assert!(!ready, "B has not bound yet");
    let (ch_b, ready) = b.prove(server, a.id).await;
    assert!(ready);
    assert_eq!(a.bound(b.id).await, (ch_a, true), "A is told it is ready");
    (ch_a, ch_b)
}

/// A socket that is not a peer: it replays what it captured.
async fn attacker() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Checks B's traffic still reaches A on `ch_a`, and not `attacker`.
async fn still_routed(
    server: &RunningServer,
    a: &RelayPeer,
    b: &RelayPeer,
    (ch_a, ch_b): (u64, u64),
    attacker: &UdpSocket,
    what: &str,
) {
    b.send_data(server, ch_b, what.as_bytes()).await;
    assert_eq!(a.data(ch_a).await, what.as_bytes(), "{what}");
    assert!(
        recv_within(attacker, SILENCE).await.is_none(),
        "the attacker got something: {what}"
    );
}

#[tokio::test]
async fn relay_pairs_two_peers_and_forwards_both_ways() {
    let server = support::start_default().await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let (ch_a, ch_b) = paired(&server, &a, &b).await;
    a.send_data(&server, ch_a, b"to bob").await;
    assert_eq!(b.data(ch_b).await, b"to bob");
    let max = vec![0x5a; MAX_RELAY_PAYLOAD];
    b.send_data(&server, ch_b, &max).await;
    assert_eq!(a.data(ch_a).await, max, "the largest payload passes");
    let over = vec![0x5a; MAX_RELAY_PAYLOAD + 1];
    b.send_data(&server, ch_b, &over).await;
    assert!(a.quiet().await, "one byte over the limit is dropped");

    // A third socket that learned A's channel cannot use it.
    let intruder = attacker().await;
    let frame = RelayFrame::Data {
        channel: ch_a,
        payload: b"spoof",
    }
    .to_bytes();
    intruder
        .send_to(&frame, server.udp_addr().unwrap())
        .await
        .unwrap();
    assert!(b.quiet().await, "foreign source address dropped");

    // A refresh from where A is keeps everything.
    a.bind(&server, b.id).await;
    assert_eq!(a.bound(b.id).await, (ch_a, true));
    server.shutdown().await;
}

#[tokio::test]
async fn a_legitimate_rebind_from_a_new_address_moves_the_binding_after_its_echo() {
    let server = support::start_default().await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let (ch_a, ch_b) = paired(&server, &a, &b).await;
    // A's NAT gave it a new port: its BIND (higher counter, current
    // channel) from there is challenged with a new channel...
    let moved = a.moved().await;
    moved.bind(&server, b.id).await;
    let (challenge, ready) = moved.bound(b.id).await;
    assert!(!ready);
    assert_ne!(challenge, ch_a);
    // ...and until the echo, traffic still goes to the old address.
    b.send_data(&server, ch_b, b"before").await;
    assert_eq!(a.data(ch_a).await, b"before");
    moved.bind(&server, b.id).await;
    assert_eq!(moved.bound(b.id).await, (challenge, true));
    b.send_data(&server, ch_b, b"moved").await;
    assert_eq!(moved.data(challenge).await, b"moved");
    assert!(a.quiet().await, "the old address gets nothing");
    moved
        .send_data(&server, challenge, b"from the new port")
        .await;
    assert_eq!(b.data(ch_b).await, b"from the new port");
    a.send_data(&server, ch_a, b"old port").await;
    assert!(b.quiet().await, "the old route is gone");
    server.shutdown().await;
}

#[tokio::test]
async fn a_captured_bind_replayed_from_another_socket_does_not_move_the_binding() {
    let server = support::start_default().await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    // Every BIND A sends is captured.
    let mut captured = Vec::new();
    captured.push(a.bind(&server, b.id).await);
    a.bound(b.id).await;
    captured.push(a.bind(&server, b.id).await);
    a.bound(b.id).await;
    let (ch_b, _) = b.prove(&server, a.id).await;
    let (ch_a, _) = a.bound(b.id).await;
    captured.push(a.bind(&server, b.id).await);
    assert_eq!(a.bound(b.id).await, (ch_a, true));

    let eve = attacker().await;
    let relay = server.udp_addr().unwrap();
    for bytes in captured.iter().chain(captured.iter().rev()) {
        eve.send_to(bytes, relay).await.unwrap();
    }
    assert!(
        recv_within(&eve, SILENCE).await.is_none(),
        "no BOUND, no REFUSED to a replay"
    );
    assert!(a.quiet().await && b.quiet().await);
    still_routed(&server, &a, &b, (ch_a, ch_b), &eve, "after the replay").await;
    // The same replays from A's own address change nothing either.
    for bytes in &captured {
        a.send_bytes(&server, bytes).await;
    }
    assert!(a.quiet().await, "a replay is not answered");
    still_routed(&server, &a, &b, (ch_a, ch_b), &eve, "after self-replay").await;
    // A's next real BIND still works.
    a.bind(&server, b.id).await;
    assert_eq!(a.bound(b.id).await, (ch_a, true));
    server.shutdown().await;
}

#[tokio::test]
async fn binds_with_a_bad_mac_an_old_counter_or_another_peers_id_are_dropped() {
    let server = support::start_default().await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let mallory = relay_peer(&server, "mallory").await;
    let channels = paired(&server, &a, &b).await;
    let (ch_a, _) = channels;
    let eve = attacker().await;
    let relay = server.udp_addr().unwrap();

    let mut forged: Vec<(&str, Vec<u8>)> = Vec::new();
    // A's fresh BIND with one MAC byte changed.
    let mut bad_mac = RelayFrame::bind(&a.key, a.id, b.id, ch_a, a.next_counter()).to_bytes();
    bad_mac[CLAIM_FRAME_BYTES - 1] ^= 1;
    forged.push(("bad MAC", bad_mac));
    // Correctly MACed, but older than what A already used.
    forged.push((
        "old counter",
        RelayFrame::bind(&a.key, a.id, b.id, ch_a, 1_700_000_000_000).to_bytes(),
    ));
    // A registered peer's own key, claiming to be A.
    forged.push((
        "another peer's id",
        RelayFrame::bind(&mallory.key, a.id, b.id, ch_a, u64::MAX).to_bytes(),
    ));
    // The old format, with a token in clear.
    let mut v1 = b"PR\x01\x01".to_vec();
    v1.extend_from_slice(a.id.as_bytes());
    v1.extend_from_slice(a.token.as_bytes());
    v1.extend_from_slice(b.id.as_bytes());
    forged.push(("version 1", v1));
    // An unregistered id.
    let nobody = RelayKey::from_token(&SessionToken::generate());
    forged.push((
        "unknown peer",
        RelayFrame::bind(&nobody, Uuid::new_v4(), b.id, NO_CHANNEL, 1).to_bytes(),
    ));
    // A RELEASE of A's session with Mallory's key.
    forged.push((
        "RELEASE under another key",
        RelayFrame::release(&mallory.key, a.id, b.id, ch_a, u64::MAX).to_bytes(),
    ));
    for (what, bytes) in &forged {
        eve.send_to(bytes, relay).await.unwrap();
        a.send_bytes(&server, bytes).await;
        assert!(
            recv_within(&eve, SILENCE).await.is_none(),
            "{what}: answered"
        );
        assert!(a.quiet().await, "{what}: answered to A's address");
        still_routed(&server, &a, &b, channels, &eve, what).await;
    }
    // Mallory, under her own id, may bind towards A: her own session.
    let (_, ready) = mallory.prove(&server, a.id).await;
    assert!(!ready);
    still_routed(&server, &a, &b, channels, &eve, "after Mallory bound").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_captured_release_replayed_does_nothing() {
    let server = support::start_default().await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let (ch_a, _) = paired(&server, &a, &b).await;
    let captured = a.release(&server, b.id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.send_data(&server, b.channel.get(), b"x").await;
    assert!(a.quiet().await, "released");
    a.send_data(&server, ch_a, b"x").await;
    assert!(b.quiet().await, "released both ways");

    // A new session; the captured RELEASE replayed from anywhere, again and
    // again, frees nothing.
    a.channel.set(NO_CHANNEL);
    b.channel.set(NO_CHANNEL);
    let channels = paired(&server, &a, &b).await;
    let eve = attacker().await;
    for _ in 0..3 {
        eve.send_to(&captured, server.udp_addr().unwrap())
            .await
            .unwrap();
        a.send_bytes(&server, &captured).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    still_routed(&server, &a, &b, channels, &eve, "after RELEASE replays").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_bind_replayed_after_the_binding_expired_never_gets_traffic() {
    let config = ServerConfig {
        relay: RelayLimits {
            idle: Duration::from_secs(1),
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = support::start(config).await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let mut captured = vec![a.bind(&server, b.id).await];
    a.bound(b.id).await;
    captured.push(a.bind(&server, b.id).await);
    a.bound(b.id).await;
    b.prove(&server, a.id).await;
    a.bound(b.id).await;
    // Both go quiet; the session idles out and its counters with it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    b.channel.set(NO_CHANNEL);
    let (ch_b, ready) = b.prove(&server, a.id).await;
    assert!(!ready, "the old session is gone");

    // Eve replays A's captured BINDs: the relay challenges her address,
    // which she cannot answer; B's traffic goes nowhere, least of all to her.
    let eve = attacker().await;
    for bytes in &captured {
        eve.send_to(bytes, server.udp_addr().unwrap())
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while let Some((bytes, _)) = recv_within(&eve, SILENCE).await {
        got.push(bytes);
    }
    assert!(got.len() <= captured.len());
    for bytes in &got {
        assert!(
            matches!(
                RelayFrame::decode(bytes),
                Ok(RelayFrame::Bound { ready: false, .. })
            ),
            "only a challenge: {bytes:?}"
        );
    }
    assert!(b.quiet().await, "B is not told A is there");
    b.send_data(&server, ch_b, b"for alice").await;
    assert!(
        recv_within(&eve, SILENCE).await.is_none(),
        "no traffic to Eve"
    );

    // The real A (counter higher than anything captured) takes its side.
    a.channel.set(NO_CHANNEL);
    let (ch_a, ready) = a.prove(&server, b.id).await;
    assert!(ready);
    assert_eq!(b.bound(a.id).await, (ch_b, true));
    still_routed(&server, &a, &b, (ch_a, ch_b), &eve, "A is back").await;
    server.shutdown().await;
}

#[tokio::test]
async fn relay_refuses_offline_targets_and_a_full_table_and_ignores_bad_keys() {
    let config = ServerConfig {
        relay: RelayLimits {
            max_sessions: 1,
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = support::start(config).await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let c = relay_peer(&server, "carol").await;
    // A wrong key proves nothing: not even a REFUSED comes back.
    let mut wrong = a.moved().await;
    wrong.key = RelayKey::from_token(&SessionToken::generate());
    wrong.bind(&server, b.id).await;
    assert!(wrong.quiet().await, "unauthenticated: no answer");
    a.bind(&server, Uuid::new_v4()).await;
    assert_eq!(a.refused().await, RefuseCode::TargetOffline as u8);
    // The one allowed session...
    paired(&server, &a, &b).await;
    // ...and the next one is refused at the edge.
    c.bind(&server, a.id).await;
    assert_eq!(c.refused().await, RefuseCode::Full as u8);
    server.shutdown().await;
}

#[tokio::test]
async fn relay_rate_limit_drops_the_excess_of_a_burst() {
    let config = ServerConfig {
        relay: RelayLimits {
            rate_pps: 20,
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = support::start(config).await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let (ch_a, ch_b) = paired(&server, &a, &b).await;
    for i in 0..100u8 {
        a.send_data(&server, ch_a, &[i]).await;
    }
    let mut got = 0;
    while let Some((bytes, _)) = recv_within(&b.socket, SILENCE).await {
        assert!(
            matches!(RelayFrame::decode(&bytes), Ok(RelayFrame::Data { channel, .. }) if channel == ch_b)
        );
        got += 1;
    }
    // A one-second bucket of 20, plus what refilled while sending.
    assert!((20..=40).contains(&got), "{got} of 100 passed");
    server.shutdown().await;
}

#[tokio::test]
async fn relay_sessions_end_on_release_unregister_and_idleness() {
    let config = ServerConfig {
        relay: RelayLimits {
            idle: Duration::from_secs(1),
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = support::start(config).await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let fresh = |p: &RelayPeer| p.channel.set(NO_CHANNEL);

    // RELEASE by either side ends it.
    let (ch_a, _) = paired(&server, &a, &b).await;
    b.release(&server, a.id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send_data(&server, ch_a, b"x").await;
    assert!(b.quiet().await);

    // Idle for longer than the limit: freed (a new BIND starts over).
    fresh(&a);
    fresh(&b);
    let (ch_a, _) = paired(&server, &a, &b).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.send_data(&server, ch_a, b"x").await;
    assert!(b.quiet().await, "idle session freed");

    // Unregistering one side frees it at once.
    fresh(&a);
    fresh(&b);
    let (ch_a, _) = paired(&server, &a, &b).await;
    let mut client = support::client(&server).await;
    client
        .unregister(UnregisterRequest {
            peer_id: b.id.to_string(),
            session_token: b.token.to_hex(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.send_data(&server, ch_a, b"x").await;
    assert!(b.quiet().await, "session of a departed peer freed");
    a.bind(&server, b.id).await;
    assert_eq!(a.refused().await, RefuseCode::TargetOffline as u8);
    // B's key went with its registration: its BINDs are not answered.
    b.bind(&server, a.id).await;
    assert!(b.quiet().await, "an unregistered peer is unauthenticated");
    server.shutdown().await;
}

/// The peer's own relay state (`p2pchat_client::relay::RelayClient`) over
/// real sockets against the real server: two clients pair, chat both ways,
/// release; no datagram either sends contains its session token.
#[tokio::test]
async fn the_peers_relay_client_pairs_and_never_sends_its_token() {
    let server = support::start_default().await;
    let relay = server.udp_addr().unwrap();
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let (id_a, id_b) = (PeerId::from(a.id), PeerId::from(b.id));
    let creds_a = Credentials::new(id_a, &a.token);
    let creds_b = Credentials::new(id_b, &b.token);
    let mut ca = RelayClient::new(relay);
    let mut cb = RelayClient::new(relay);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    ca.request(id_b, start);
    cb.request(id_a, start);
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
    while !(ca.is_ready(id_b) && cb.is_ready(id_a)) {
        assert!(start.elapsed() < support::WAIT, "pairing timed out");
        let now = Instant::now();
        for bytes in ca.poll(now, &creds_a) {
            a.socket.send_to(&bytes, relay).await.unwrap();
            sent.push(bytes);
        }
        for bytes in cb.poll(now, &creds_b) {
            b.socket.send_to(&bytes, relay).await.unwrap();
            sent.push(bytes);
        }
        tokio::select! {
            Ok((n, from)) = a.socket.recv_from(&mut buf_a) => {
                assert_eq!(from, relay);
                ca.on_frame(&buf_a[..n], Instant::now());
            }
            Ok((n, from)) = b.socket.recv_from(&mut buf_b) => {
                assert_eq!(from, relay);
                cb.on_frame(&buf_b[..n], Instant::now());
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let to_b = ca.wrap(id_b, b"hello bob").expect("ready");
    a.socket.send_to(&to_b, relay).await.unwrap();
    sent.push(to_b);
    let (bytes, _) = recv(&b.socket).await.expect("relayed");
    assert_eq!(
        cb.on_frame(&bytes, Instant::now()),
        RelayInput::Data(id_a, b"hello bob".to_vec())
    );
    let to_a = cb.wrap(id_a, b"hi alice").expect("ready");
    b.socket.send_to(&to_a, relay).await.unwrap();
    sent.push(to_a);
    let (bytes, _) = recv(&a.socket).await.expect("relayed");
    assert_eq!(
        ca.on_frame(&bytes, Instant::now()),
        RelayInput::Data(id_b, b"hi alice".to_vec())
    );
    let release = ca.release(id_b, &creds_a).expect("RELEASE");
    a.socket.send_to(&release, relay).await.unwrap();
    sent.push(release);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = cb.wrap(id_a, b"gone?").unwrap();
    b.socket.send_to(&late, relay).await.unwrap();
    assert!(a.quiet().await, "the RELEASE freed the session");

    assert!(sent.len() >= 6, "{} datagrams", sent.len());
    for token in [&a.token, &b.token] {
        let raw = token.as_bytes();
        let hex = token.to_hex();
        for bytes in &sent {
            for needle in [&raw[..], &raw[..16], &raw[16..]] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "token bytes on the wire"
                );
            }
            assert!(
                !bytes
                    .windows(32)
                    .any(|w| w.eq_ignore_ascii_case(&hex.as_bytes()[..32])),
                "token hex on the wire"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn register_response_announces_the_udp_port() {
    let server = support::start_default().await;
    let mut client = support::client(&server).await;
    let resp = client
        .register(RegisterRequest {
            peer_id: support::new_id(),
            username: "dora".into(),
            udp_port: 5000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.udp_port, u32::from(server.udp_addr().unwrap().port()));
    server.shutdown().await;

    let config = ServerConfig {
        udp_listen: None,
        ..ServerConfig::default()
    };
    let server = support::start(config).await;
    assert_eq!(server.udp_addr(), None);
    let mut client = support::client(&server).await;
    let resp = client
        .register(RegisterRequest {
            peer_id: support::new_id(),
            username: "dora".into(),
            udp_port: 5000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.udp_port, 0);
    server.shutdown().await;
}

/// Debian's `stun` (package stun-client) is an RFC 3489 client: no magic
/// cookie. It gets its mapped address too (RFC 5389 section 12.2).
#[cfg_attr(missing_stun, ignore = "stun (stun-client) is not installed")]
#[tokio::test]
async fn a_classic_rfc3489_stun_client_gets_its_mapped_address() {
    let found = std::process::Command::new("stun")
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            !std::env::var("CI")
                .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")),
            "`stun` (Debian package stun-client) is required under CI"
        );
        eprintln!("skipped: `stun` not installed (apt install stun-client)");
        return;
    }
    let server = support::start_default().await;
    let udp = server.udp_addr().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("stun")
            .args([&udp.to_string(), "1", "-v"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("stun finished in time")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let port = text
        .split("Opened port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("stun did not print its port:\n{text}"));
    assert!(
        text.contains(&format!("mappedAddr=127.0.0.1:{port}")),
        "{text}"
    );
    assert!(text.contains("ok=1"), "{text}");
    server.shutdown().await;
}
