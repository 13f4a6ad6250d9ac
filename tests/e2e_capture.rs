//! What an eavesdropper on the wire (the LAN, the relay operator) sees of
//! an encrypted chat: the real signaling server on 127.0.0.1:0 and two real
//! engines whose sockets record every datagram they send and receive. Each
//! side sends a line carrying a unique marker (and a long one that goes in
//! fragments), once over the direct path and once forced through the
//! server's relay; the marker must appear in no datagram, every datagram
//! between the peers from the first chat line on must be sealed (or a relay
//! frame whose payload is sealed), and before that only the handshake
//! (hello/pong) may be plaintext.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pchat::PeerId;
use p2pchat::datagram::{DatagramKind, classify};
use p2pchat::proto::relay_frame::RelayFrame;
use p2pchat_client::engine::{self, Command, EngineConfig, EngineHandle, Event, Path};
use p2pchat_client::session::SessionConfig;
use p2pchat_client::transport::{BoxFuture, Transport};
use p2pchat_client::wire::Datagram;
use p2pchat_server::{self as server, RunningServer, ServerConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::Receiver;

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

/// One datagram a peer's socket sent or received.
#[derive(Debug, Clone)]
struct Record {
    /// Sent by the recording peer (else received).
    #[allow(dead_code)] // shown in failure messages
    sent: bool,
    /// The recording peer's socket.
    local: SocketAddr,
    /// The other end.
    remote: SocketAddr,
    bytes: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Record>>>;

/// A UDP socket that records every datagram, and, when `relay_only`, lets
/// through only what is exchanged with the server's UDP port (as two NATs
/// that never let a hole punch through; recorded all the same: what the
/// engine tried to send is what an eavesdropper on its link would see).
struct Recording {
    socket: UdpSocket,
    local: SocketAddr,
    server_udp: SocketAddr,
    relay_only: bool,
    log: Log,
}

impl Transport for Recording {
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(async move {
            self.log.lock().unwrap().push(Record {
                sent: true,
                local: self.local,
                remote: to,
                bytes: buf.to_vec(),
            });
            if self.relay_only && to != self.server_udp {
                return Ok(buf.len());
            }
            self.socket.send_to(buf, to).await
        })
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(async move {
            loop {
                let (n, from) = self.socket.recv_from(buf).await?;
                if self.relay_only && from != self.server_udp {
                    continue;
                }
                self.log.lock().unwrap().push(Record {
                    sent: false,
                    local: self.local,
                    remote: from,
                    bytes: buf[..n].to_vec(),
                });
                return Ok((n, from));
            }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

struct Peer {
    handle: EngineHandle,
    events: Receiver<Event>,
    /// Every event so far.
    seen: Vec<Event>,
}

impl Peer {
    async fn start(server: &RunningServer, name: &str, relay_only: bool, log: Log) -> Peer {
        let mut config = EngineConfig::new(format!("http://{}", server.local_addr()), name);
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.session = SessionConfig {
            keepalive_interval: Duration::from_millis(500),
            missed_pong_limit: 4,
            probe_interval: Duration::from_millis(100),
            attempt_duration: Duration::from_millis(1500),
            connect_attempts: 3,
            relay_after: Duration::from_millis(800),
        };
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let transport = Recording {
            socket,
            local,
            server_udp: server.udp_addr().expect("the server has a UDP port"),
            relay_only,
            log,
        };
        let (handle, events) = engine::start_with(config, Arc::new(transport))
            .await
            .unwrap();
        Peer {
            handle,
            events,
            seen: Vec::new(),
        }
    }

    fn id(&self) -> PeerId {
        self.handle.started().peer_id
    }

    fn addr(&self) -> SocketAddr {
        self.handle.started().local_addr
    }

    async fn cmd(&self, command: Command) {
        assert!(self.handle.command(command).await, "engine stopped");
    }

    async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let result = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(e) => {
                        self.seen.push(e.clone());
                        if pred(&e) {
                            return e;
                        }
                    }
                    None => panic!("engine stopped while waiting for {what}"),
                }
            }
        })
        .await;
        result.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    async fn receive(&mut self, text: &str) {
        let got = self
            .wait("message", |e| matches!(e, Event::Message { .. }))
            .await;
        match got {
            Event::Message {
                text: got,
                encrypted: true,
                ..
            } => assert_eq!(got, text),
            other => panic!("expected the encrypted line {text:?}, got {other:?}"),
        }
    }

    /// Waits until `count` lines were delivered in all.
    async fn delivered(&mut self, count: usize) {
        let is_delivered = |e: &Event| matches!(e, Event::Delivered { .. });
        while self.seen.iter().filter(|e| is_delivered(e)).count() < count {
            self.wait("delivered", is_delivered).await;
        }
    }

    async fn quit(self) {
        self.cmd(Command::Quit).await;
        tokio::time::timeout(WAIT, self.handle.join())
            .await
            .unwrap();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `payload` was sent (directly, or inside a relay DATA frame) by
/// a recorded peer in `log`.
fn sent_before(log: &[Record], payload: &[u8]) -> bool {
    log.iter().filter(|r| r.sent).any(|r| {
        r.bytes == payload
            || matches!(RelayFrame::decode(&r.bytes), Ok(RelayFrame::Data { payload: p, .. }) if p == payload)
    })
}

/// What an eavesdropper got, summed up per kind.
#[derive(Debug, Default)]
struct Seen {
    sealed_direct: usize,
    sealed_relayed: usize,
    plaintext_handshake: usize,
}

/// Checks every recorded datagram; `chat_from` is the log index from which
/// the chat lines were sent: every datagram sent between the peers from
/// there on must be sealed, and a plaintext one received after it must be a
/// late copy of one sent before (a probe still in flight, e.g. through the
/// relay). The first violation is the error.
fn check_wire(
    log: &[Record],
    chat_from: usize,
    peers: [SocketAddr; 2],
    server_udp: SocketAddr,
    markers: &[&str],
) -> Result<Seen, String> {
    let mut seen = Seen::default();
    for (i, r) in log.iter().enumerate() {
        if markers.iter().any(|m| contains(&r.bytes, m.as_bytes())) {
            return Err(format!("datagram {i} carries a chat line in clear: {r:?}"));
        }
        let chat = i >= chat_from && r.sent;
        let between_peers = peers.contains(&r.local) && peers.contains(&r.remote);
        if !between_peers && r.remote != server_udp {
            return Err(format!("datagram {i} to a stranger: {r:?}"));
        }
        // The chat datagram itself: sent directly, or a relay DATA payload.
        let chat_bytes: Option<&[u8]> = if between_peers {
            Some(&r.bytes)
        } else {
            match classify(&r.bytes) {
                DatagramKind::Stun => None,
                DatagramKind::Relay => match RelayFrame::decode(&r.bytes) {
                    Ok(RelayFrame::Data { payload, .. }) => Some(payload),
                    Ok(_) => None,
                    Err(err) => return Err(format!("datagram {i}: a bad relay frame ({err})")),
                },
                other => return Err(format!("datagram {i} to the server is {other:?}: {r:?}")),
            }
        };
        let Some(bytes) = chat_bytes else {
            continue;
        };
        match classify(bytes) {
            DatagramKind::Sealed if between_peers => seen.sealed_direct += 1,
            DatagramKind::Sealed => seen.sealed_relayed += 1,
            _ if chat => {
                return Err(format!(
                    "datagram {i} after the handshake is not sealed ({} {} {} {}): {:?}",
                    if r.sent { "sent by" } else { "received by" },
                    r.local,
                    if r.sent { "to" } else { "from" },
                    r.remote,
                    String::from_utf8_lossy(bytes)
                ));
            }
            // Sent before the chat, and received late: only the handshake
            // and hole punching.
            _ if i >= chat_from && !sent_before(&log[..chat_from], bytes) => {
                return Err(format!(
                    "datagram {i}: plaintext received after the handshake that nobody \
                     sent before it: {:?}",
                    String::from_utf8_lossy(bytes)
                ));
            }
            _ => match Datagram::decode(bytes) {
                Ok(Datagram::Hello(_) | Datagram::Pong(_)) => seen.plaintext_handshake += 1,
                other => {
                    return Err(format!(
                        "datagram {i}: plaintext other than hello/pong: {other:?}"
                    ));
                }
            },
        }
    }
    Ok(seen)
}

/// Connects A to B, chats both ways with markers (and a long line), quits
/// both, and checks the wire. Returns the summary and the paths.
async fn chat_and_capture(relay_only: bool) -> (Seen, Path, Path) {
    let server = server::start(ServerConfig::default()).await.unwrap();
    let server_udp = server.udp_addr().unwrap();
    let log: Log = Arc::default();
    let mut a = Peer::start(&server, "alice", relay_only, log.clone()).await;
    let mut b = Peer::start(&server, "bob", relay_only, log.clone()).await;
    let b_id = b.id();
    a.wait("b in list", |e| match e {
        Event::Peers { peers, .. } => peers.iter().any(|p| p.peer_id == b_id),
        Event::PeerJoined { peer_id, .. } => *peer_id == b_id,
        _ => false,
    })
    .await;
    a.cmd(Command::Connect("bob".into())).await;
    let path_of = |e: &Event| match e {
        Event::Connected {
            path,
            encrypted: true,
            safety_number: Some(_),
            ..
        } => *path,
        other => panic!("not an encrypted connect: {other:?}"),
    };
    let a_path = path_of(
        &a.wait("a connected", |e| matches!(e, Event::Connected { .. }))
            .await,
    );
    let b_path = path_of(
        &b.wait("b connected", |e| matches!(e, Event::Connected { .. }))
            .await,
    );
    let chat_from = log.lock().unwrap().len();

    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let to_b = format!("MARKER-A2B-{nonce}");
    let to_a = format!("MARKER-B2A-{nonce}");
    // Longer than one datagram: it goes in fragments, each sealed.
    let long = format!("{to_b} ").repeat(150);
    a.cmd(Command::Send(to_b.clone())).await;
    b.receive(&to_b).await;
    b.cmd(Command::Send(to_a.clone())).await;
    a.receive(&to_a).await;
    a.cmd(Command::Send(long.clone())).await;
    b.receive(&long).await;
    a.delivered(2).await;
    b.delivered(1).await;
    let (a_addr, b_addr) = (a.addr(), b.addr());
    // The disconnects are sealed too.
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
    let log = log.lock().unwrap().clone();
    let seen = check_wire(
        &log,
        chat_from,
        [a_addr, b_addr],
        server_udp,
        &[&to_b, &to_a, &nonce],
    )
    .unwrap_or_else(|err| panic!("{err}"));
    (seen, a_path, b_path)
}

#[tokio::test]
async fn direct_chat_is_sealed_on_the_wire() {
    let (seen, a_path, b_path) = chat_and_capture(false).await;
    println!("direct: {seen:?}");
    assert_eq!((a_path, b_path), (Path::Lan, Path::Lan));
    // Lines, fragments, acks and disconnects, all sealed.
    assert!(seen.sealed_direct >= 8, "{seen:?}");
    assert!(seen.plaintext_handshake >= 2, "{seen:?}");
}

#[tokio::test]
async fn relayed_chat_is_sealed_and_the_relay_never_sees_a_line() {
    let (seen, a_path, b_path) = chat_and_capture(true).await;
    println!("relayed: {seen:?}");
    assert_eq!((a_path, b_path), (Path::Relayed, Path::Relayed));
    // The chat went through the relay, sealed inside its DATA frames.
    assert!(seen.sealed_relayed >= 8, "{seen:?}");
    assert_eq!(seen.sealed_direct, 0, "{seen:?}");
}

/// The checker itself: a chat line in clear, or plaintext other than the
/// handshake, is caught.
#[test]
fn the_checker_catches_plaintext() {
    let (a, b, relay): (SocketAddr, SocketAddr, SocketAddr) = (
        "127.0.0.1:1001".parse().unwrap(),
        "127.0.0.1:1002".parse().unwrap(),
        "127.0.0.1:3478".parse().unwrap(),
    );
    let id = PeerId::random();
    let record = |remote, bytes: Vec<u8>| Record {
        sent: true,
        local: a,
        remote,
        bytes,
    };
    let line = |body: &str| {
        Datagram::Message(p2pchat_client::wire::Message::plain(id, body))
            .encode()
            .unwrap()
    };
    let sealed = record(
        b,
        b"S\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00sixteen bytes of tag".to_vec(),
    );
    let run = |log: Vec<Record>| check_wire(&log, 1, [a, b], relay, &["secret"]).is_ok();
    assert!(run(vec![sealed.clone(), sealed.clone()]));
    // The line in clear, directly or inside a relay frame.
    assert!(!run(vec![record(b, line("the secret"))]));
    let framed = RelayFrame::Data {
        channel: 5,
        payload: &line("a secret"),
    }
    .to_bytes();
    assert!(!run(vec![record(relay, framed)]));
    // Plaintext after the handshake, even without the marker.
    assert!(!run(vec![sealed.clone(), record(b, line("hello"))]));
    let framed = RelayFrame::Data {
        channel: 5,
        payload: &line("hello"),
    }
    .to_bytes();
    assert!(!run(vec![sealed.clone(), record(relay, framed)]));
    // Plaintext other than hello/pong before it.
    assert!(!run(vec![record(b, line("hello")), sealed.clone()]));
    // A hello received after it: fine if it was sent before (late), not if
    // nobody sent it.
    let hello = Datagram::Hello(p2pchat_client::wire::Hello {
        header: p2pchat_client::wire::Header::now(id),
        announce: p2pchat_client::wire::Announce::ours(1),
        username: None,
    })
    .encode()
    .unwrap();
    let received = Record {
        sent: false,
        local: b,
        remote: a,
        bytes: hello.clone(),
    };
    assert!(run(vec![record(b, hello), received.clone()]));
    assert!(!run(vec![sealed, received]));
}
