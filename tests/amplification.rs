//! No amplification, no reflection (issue 12), against the real server's
//! UDP port with real sockets on loopback addresses (127.0.0.2 and
//! 127.0.0.3 stand for other hosts: Linux answers for all of 127/8):
//!
//! * STUN: one source beyond `--stun-rate` gets no answer while another
//!   source still does; a request with an unknown comprehension-required
//!   attribute gets no error response; a success is no larger than it must
//!   be.
//! * Relay: a captured BIND sent from a victim's address sends the victim
//!   nothing, and the real peers' session keeps working.
//!
//! * A real `peer` process, asked by one `RequestConnect` to connect to a
//!   caller that registered 15 endpoints of victims (sockets on 127.0.0.2
//!   to 127.0.0.16), sends them at most 20 times the request's bytes over
//!   the whole connect attempt (the engine-level test, with exact counts,
//!   is `client/engine/core/tests/amplification.rs`).

#[path = "support/bins.rs"]
mod bins;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytecodec::EncodeExt;
use p2pchat::SessionToken;
use p2pchat::proto::relay_frame::{NO_CHANNEL, RelayFrame, RelayKey};
use p2pchat_server::udp::RelayLimits;
use p2pchat_server::{RunningServer, ServerConfig};
use stun_codec::rfc5389::{Attribute, methods::BINDING};
use stun_codec::{Message, MessageClass, MessageEncoder, TransactionId};
use tokio::net::UdpSocket;
use uuid::Uuid;

/// How long a test waits for a datagram that should come.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long a test listens for datagrams that must not come.
const SILENCE: Duration = Duration::from_millis(500);

fn binding_request(n: u32) -> Vec<u8> {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&n.to_be_bytes());
    let m = Message::<Attribute>::new(MessageClass::Request, BINDING, TransactionId::new(id));
    MessageEncoder::new().encode_into_bytes(m).unwrap()
}

/// Every datagram `socket` receives until it has been quiet for `quiet`
/// (at most `max` of them, so the loop is bounded).
async fn drain(socket: &UdpSocket, quiet: Duration, max: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while got.len() < max {
        match tokio::time::timeout(quiet, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => got.push(buf[..n].to_vec()),
            _ => break,
        }
    }
    got
}

async fn server_with_stun_rate(rate: u32) -> RunningServer {
    support::start(ServerConfig {
        relay: RelayLimits {
            stun_rate: rate,
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    })
    .await
}

#[tokio::test]
async fn stun_beyond_the_rate_one_source_gets_no_answer_another_still_does() {
    const RATE: u32 = 10;
    let server = server_with_stun_rate(RATE).await;
    let udp = server.udp_addr().unwrap();
    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Three times the burst, sent at once: the bucket (one second's worth)
    // answers RATE of them, plus what refills while they are sent.
    let sent = 3 * RATE;
    let started = tokio::time::Instant::now();
    for n in 0..sent {
        flooder.send_to(&binding_request(n), udp).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let answers = drain(&flooder, SILENCE, sent as usize).await;
    let refill = (elapsed * f64::from(RATE)).ceil() as usize;
    assert!(
        answers.len() >= RATE as usize && answers.len() <= RATE as usize + refill,
        "{} answers to {sent} requests at {RATE}/s (sent in {elapsed:.3} s)",
        answers.len()
    );
    // The flooder is still limited; another source (another host) is not.
    flooder.send_to(&binding_request(99), udp).await.unwrap();
    let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    other.send_to(&binding_request(100), udp).await.unwrap();
    let got = drain(&other, ARRIVES, 1).await;
    assert_eq!(got.len(), 1, "the other source is answered");
    assert_eq!(got[0].len(), 32, "XOR-MAPPED-ADDRESS only");
    // Every answer is 32 bytes to a 20-byte request (1.6x, bounded in
    // count): never more than a Binding success needs.
    assert!(answers.iter().all(|a| a.len() == 32));
    // A quiet second later the flooder is answered again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    drain(&flooder, Duration::from_millis(10), sent as usize).await;
    flooder.send_to(&binding_request(101), udp).await.unwrap();
    assert_eq!(drain(&flooder, ARRIVES, 1).await.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn stun_unknown_comprehension_required_attribute_gets_no_error_response() {
    let server = support::start_default().await;
    let udp = server.udp_addr().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // The 24-byte request: a Binding request with an empty
    // attribute of the comprehension-required type 0x7f01. It used to get a
    // 92-byte 420 error response.
    let mut request = binding_request(1);
    request.extend_from_slice(&[0x7f, 0x01, 0x00, 0x00]);
    request[2..4].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(request.len(), 24);
    socket.send_to(&request, udp).await.unwrap();
    assert!(
        drain(&socket, SILENCE, 4).await.is_empty(),
        "no answer at all"
    );
    // A plain request from the same socket is answered (so the silence
    // above is the drop, not a dead port).
    socket.send_to(&binding_request(2), udp).await.unwrap();
    assert_eq!(drain(&socket, ARRIVES, 1).await.len(), 1);
    server.shutdown().await;
}

/// A registered peer with its relay key, bound on `socket`.
struct Peer {
    id: Uuid,
    key: RelayKey,
    socket: UdpSocket,
    counter: u64,
    channel: u64,
}

impl Peer {
    async fn register(server: &RunningServer, name: &str) -> Peer {
        let mut client = support::client(server).await;
        let (id, token) = support::register(&mut client, name, 40000).await;
        Peer {
            id: Uuid::parse_str(&id).unwrap(),
            key: RelayKey::from_token(&SessionToken::parse(&token).unwrap()),
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            counter: 1_700_000_000_000,
            channel: NO_CHANNEL,
        }
    }

    /// Sends a BIND towards `target`; returns its bytes (what an
    /// eavesdropper captures).
    async fn bind(&mut self, relay: SocketAddr, target: Uuid) -> Vec<u8> {
        self.counter += 1;
        let frame = RelayFrame::bind(&self.key, self.id, target, self.channel, self.counter);
        let bytes = frame.to_bytes();
        self.socket.send_to(&bytes, relay).await.unwrap();
        bytes
    }

    /// The next BOUND; keeps its channel. Returns ready.
    async fn bound(&mut self) -> bool {
        let got = drain(&self.socket, ARRIVES, 1).await;
        match got.first().map(|b| RelayFrame::decode(b)) {
            Some(Ok(RelayFrame::Bound { channel, ready, .. })) => {
                self.channel = channel;
                ready
            }
            other => panic!("expected BOUND, got {other:?}"),
        }
    }

    /// BIND, challenge, echo: bound at this socket's address.
    async fn prove(&mut self, relay: SocketAddr, target: Uuid) -> Vec<Vec<u8>> {
        let first = self.bind(relay, target).await;
        assert!(!self.bound().await, "a challenge is never ready");
        let echo = self.bind(relay, target).await;
        self.bound().await;
        vec![first, echo]
    }

    async fn send_data(&self, relay: SocketAddr, payload: &[u8]) {
        let frame = RelayFrame::Data {
            channel: self.channel,
            payload,
        };
        self.socket.send_to(&frame.to_bytes(), relay).await.unwrap();
    }

    async fn data(&self) -> Vec<u8> {
        let got = drain(&self.socket, ARRIVES, 1).await;
        match got.first().map(|b| RelayFrame::decode(b)) {
            Some(Ok(RelayFrame::Data { payload, .. })) => payload.to_vec(),
            other => panic!("expected DATA, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_bind_sent_from_a_victims_address_sends_the_victim_nothing() {
    let server = support::start_default().await;
    let relay = server.udp_addr().unwrap();
    let mut a = Peer::register(&server, "alice").await;
    let mut b = Peer::register(&server, "bob").await;
    let mut captured = a.prove(relay, b.id).await;
    b.prove(relay, a.id).await;
    assert!(a.bound().await, "A is told the session is ready");
    captured.push(a.bind(relay, b.id).await);
    assert!(a.bound().await);

    // The victim: another host. Every captured BIND of A's, sent with the
    // victim's address as its source (here: from a socket bound there),
    // in order and reversed, several times.
    let victim = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    for _ in 0..5 {
        for bytes in captured.iter().chain(captured.iter().rev()) {
            victim.send_to(bytes, relay).await.unwrap();
        }
    }
    // Meanwhile the session carries traffic both ways.
    b.send_data(relay, b"to alice").await;
    assert_eq!(a.data().await, b"to alice");
    a.send_data(relay, b"to bob").await;
    assert_eq!(b.data().await, b"to bob");
    let got = drain(&victim, SILENCE, 64).await;
    let bytes: usize = got.iter().map(Vec::len).sum();
    assert_eq!(bytes, 0, "the victim received {} datagrams", got.len());
    // And the real peer's next BIND still refreshes its binding.
    a.bind(relay, b.id).await;
    assert!(a.bound().await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_key_holder_binding_from_a_victims_address_gets_it_a_few_small_bounds_only() {
    use p2pchat_server::udp::relay::MAX_CHALLENGES_PER_SIDE_PER_SEC;
    let server = support::start_default().await;
    let relay = server.udp_addr().unwrap();
    // Mallory holds her own key and sends fresh BINDs (counters going up)
    // with the victim's address as the source.
    let mut mallory = Peer::register(&server, "mallory").await;
    let bob = Peer::register(&server, "bob").await;
    mallory.socket = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let victim = &mallory.socket;
    let sent = 50;
    let mut sent_bytes = 0;
    for _ in 0..sent {
        mallory.counter += 1;
        let frame = RelayFrame::bind(
            &mallory.key,
            mallory.id,
            bob.id,
            NO_CHANNEL,
            mallory.counter,
        );
        let bytes = frame.to_bytes();
        sent_bytes += bytes.len();
        victim.send_to(&bytes, relay).await.unwrap();
    }
    let got = drain(victim, SILENCE, sent).await;
    let bytes: usize = got.iter().map(Vec::len).sum();
    // A burst of one second's worth of challenges, plus what refills while
    // they are sent; each smaller than the BIND.
    assert!(
        !got.is_empty() && got.len() <= MAX_CHALLENGES_PER_SIDE_PER_SEC as usize + 1,
        "{} BOUNDs to {sent} BINDs",
        got.len()
    );
    assert!(got.iter().all(|b| b.len() == 29));
    assert!(
        bytes * 10 < sent_bytes,
        "{bytes} bytes out for {sent_bytes} in"
    );
    server.shutdown().await;
}

/// Bytes of a `RequestConnect` as gRPC carries it: the protobuf message
/// (three strings, each a tag byte, a length byte and the text) behind the
/// 5-byte message prefix; HTTP/2 and TCP headers come on top, so this is
/// the smallest the request can be.
fn request_connect_bytes(request: &p2pchat::proto::RequestConnectRequest) -> usize {
    let field = |text: &str| 2 + text.len();
    5 + field(&request.peer_id) + field(&request.session_token) + field(&request.target_peer_id)
}

#[tokio::test]
async fn one_request_connect_with_15_endpoints_makes_a_real_peer_send_at_most_20x() {
    use p2pchat::proto::{Endpoint, EndpointKind, ListPeersRequest, RegisterRequest};
    let server = support::start_default().await;
    let mut victims = Vec::new();
    for i in 2..=16u8 {
        victims.push(
            UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, i), 0))
                .await
                .unwrap(),
        );
    }
    let mut peer = tokio::process::Command::new(bins::PEER.path())
        .args([
            "--json",
            "--server",
            &format!("http://{}", server.local_addr()),
        ])
        .args(["--username", "victim", "--bind", "127.0.0.1", "--ephemeral"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut client = support::client(&server).await;
    // The peer registers; bounded wait.
    let mut target = None;
    for _ in 0..100 {
        let peers = client
            .list_peers(ListPeersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .peers;
        target = peers.into_iter().find(|p| p.username == "victim");
        if target.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let target = target.expect("the peer registered").peer_id;
    // Mallory registers the victims' addresses as her endpoints.
    let mallory = support::new_id();
    let endpoints = victims
        .iter()
        .map(|v| {
            let at = v.local_addr().unwrap();
            Endpoint {
                ip: at.ip().to_string(),
                port: u32::from(at.port()),
                kind: EndpointKind::ServerReflexive as i32,
            }
        })
        .collect();
    let token = client
        .register(RegisterRequest {
            peer_id: mallory.clone(),
            username: "mallory".into(),
            udp_port: 45000,
            endpoints,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let request = p2pchat::proto::RequestConnectRequest {
        peer_id: mallory,
        session_token: token,
        target_peer_id: target,
    };
    let request_bytes = request_connect_bytes(&request);
    client.request_connect(request).await.unwrap();
    // The whole connect attempt (3 attempts of 2 s, then it gives up).
    let mut sent = 0usize;
    let mut datagrams = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut buf = vec![0u8; 4096];
    while tokio::time::Instant::now() < deadline {
        for v in &victims {
            while let Ok((n, _)) = v.try_recv_from(&mut buf) {
                sent += n;
                datagrams += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{datagrams} datagrams, {sent} bytes to the 15 endpoints for a {request_bytes}-byte request ({:.1}x)",
        sent as f64 / request_bytes as f64
    );
    assert!(sent > 0, "the peer did probe (the test measures something)");
    assert!(
        sent <= 20 * request_bytes,
        "{sent} bytes for a {request_bytes}-byte request"
    );
    peer.kill().await.unwrap();
    server.shutdown().await;
}
