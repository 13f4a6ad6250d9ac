//! The server's UDP port end to end: STUN answers (checked with stun_codec
//! and with a standard STUN client, coturn's `turnutils_stunclient`), and
//! the relay with real gRPC registrations and real UDP sockets: pairing,
//! forwarding, token and target checks, limits, freeing, rebinding.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytecodec::{DecodeExt, EncodeExt};
use p2pchat::proto::relay_frame::{MAX_RELAY_PAYLOAD, RefuseCode, RelayFrame};
use p2pchat::proto::{RegisterRequest, UnregisterRequest};
use p2pchat_server::udp::RelayLimits;
use p2pchat_server::{RunningServer, ServerConfig};
use stun_codec::rfc5389::attributes::XorMappedAddress;
use stun_codec::rfc5389::{Attribute, methods::BINDING};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use tokio::net::UdpSocket;
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
            std::env::var_os("CI").is_none(),
            "turnutils_stunclient (Debian package coturn) is required under CI"
        );
        eprintln!("skipped: turnutils_stunclient not installed (apt install coturn)");
    }
    found
}

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

/// A registered peer with its relay socket.
struct RelayPeer {
    id: Uuid,
    token: [u8; 32],
    socket: UdpSocket,
}

fn token_bytes(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

async fn relay_peer(server: &RunningServer, name: &str) -> RelayPeer {
    let mut client = support::client(server).await;
    let (id, token) = support::register(&mut client, name, 40000).await;
    RelayPeer {
        id: Uuid::parse_str(&id).unwrap(),
        token: token_bytes(&token),
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    }
}

impl RelayPeer {
    async fn send(&self, server: &RunningServer, frame: RelayFrame<'_>) {
        self.socket
            .send_to(&frame.to_bytes(), server.udp_addr().unwrap())
            .await
            .unwrap();
    }

    async fn bind(&self, server: &RunningServer, target: Uuid) {
        self.send(
            server,
            RelayFrame::Bind {
                peer_id: self.id,
                token: self.token,
                target,
            },
        )
        .await;
    }

    /// The next frame from the server.
    async fn frame(&self) -> Vec<u8> {
        recv(&self.socket).await.expect("a frame from the relay").0
    }

    /// Expects BOUND for `target`; returns (channel, ready).
    async fn bound(&self, target: Uuid) -> (u64, bool) {
        let bytes = self.frame().await;
        match RelayFrame::decode(&bytes) {
            Ok(RelayFrame::Bound {
                target: t,
                channel,
                ready,
            }) if t == target => (channel, ready),
            other => panic!("expected BOUND for {target}, got {other:?}"),
        }
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

    async fn quiet(&self) -> bool {
        recv_within(&self.socket, SILENCE).await.is_none()
    }
}

/// A and B bound to each other; returns their channels.
async fn paired(server: &RunningServer, a: &RelayPeer, b: &RelayPeer) -> (u64, u64) {
    a.bind(server, b.id).await;
    let (ch_a, ready) = a.bound(b.id).await;
    assert!(!ready, "B has not bound yet");
    b.bind(server, a.id).await;
    let (ch_b, ready) = b.bound(a.id).await;
    assert!(ready);
    assert_eq!(a.bound(b.id).await, (ch_a, true), "A is told it is ready");
    (ch_a, ch_b)
}

#[tokio::test]
async fn relay_pairs_two_peers_and_forwards_both_ways() {
    let server = support::start_default().await;
    let a = relay_peer(&server, "alice").await;
    let b = relay_peer(&server, "bob").await;
    let (ch_a, ch_b) = paired(&server, &a, &b).await;
    a.send(
        &server,
        RelayFrame::Data {
            channel: ch_a,
            payload: b"to bob",
        },
    )
    .await;
    assert_eq!(b.data(ch_b).await, b"to bob");
    let max = vec![0x5a; MAX_RELAY_PAYLOAD];
    b.send(
        &server,
        RelayFrame::Data {
            channel: ch_b,
            payload: &max,
        },
    )
    .await;
    assert_eq!(a.data(ch_a).await, max, "the largest payload passes");
    let over = vec![0x5a; MAX_RELAY_PAYLOAD + 1];
    b.send(
        &server,
        RelayFrame::Data {
            channel: ch_b,
            payload: &over,
        },
    )
    .await;
    assert!(a.quiet().await, "one byte over the limit is dropped");

    // A third socket that learned A's channel cannot use it.
    let intruder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
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

    // Rebinding from a new socket (a NAT that changed our port) moves A.
    let moved = RelayPeer {
        id: a.id,
        token: a.token,
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    };
    moved.bind(&server, b.id).await;
    assert_eq!(moved.bound(b.id).await, (ch_a, true), "same channel");
    b.send(
        &server,
        RelayFrame::Data {
            channel: ch_b,
            payload: b"moved",
        },
    )
    .await;
    assert_eq!(moved.data(ch_a).await, b"moved");
    assert!(a.quiet().await, "the old address gets nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn relay_refuses_bad_tokens_offline_targets_and_a_full_table() {
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
    let wrong = RelayPeer {
        id: a.id,
        token: [0u8; 32],
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    };
    wrong.bind(&server, b.id).await;
    assert_eq!(wrong.refused().await, RefuseCode::Unauthorized as u8);
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
        a.send(
            &server,
            RelayFrame::Data {
                channel: ch_a,
                payload: &[i],
            },
        )
        .await;
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

    // RELEASE by either side ends it.
    let (ch_a, _) = paired(&server, &a, &b).await;
    b.send(
        &server,
        RelayFrame::Release {
            peer_id: b.id,
            token: b.token,
            target: a.id,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send(
        &server,
        RelayFrame::Data {
            channel: ch_a,
            payload: b"x",
        },
    )
    .await;
    assert!(b.quiet().await);

    // Idle for longer than the limit: freed (a new BIND starts over).
    let (ch_a, _) = paired(&server, &a, &b).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.send(
        &server,
        RelayFrame::Data {
            channel: ch_a,
            payload: b"x",
        },
    )
    .await;
    assert!(b.quiet().await, "idle session freed");

    // Unregistering one side frees it at once.
    let (ch_a, _) = paired(&server, &a, &b).await;
    let mut client = support::client(&server).await;
    let hex: String = b.token.iter().map(|x| format!("{x:02x}")).collect();
    client
        .unregister(UnregisterRequest {
            peer_id: b.id.to_string(),
            session_token: hex,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.send(
        &server,
        RelayFrame::Data {
            channel: ch_a,
            payload: b"x",
        },
    )
    .await;
    assert!(b.quiet().await, "session of a departed peer freed");
    a.bind(&server, b.id).await;
    assert_eq!(a.refused().await, RefuseCode::TargetOffline as u8);
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
            std::env::var_os("CI").is_none(),
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
