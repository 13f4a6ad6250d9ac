//! Library tests of NAT traversal on loopback: STUN through the server's UDP
//! port, relay fallback when direct datagrams cannot pass, and the upgrade
//! back to a direct path without losing or repeating a message. "Cannot
//! pass" is a socket wrapper that drops every datagram not exchanged with
//! the server's UDP port, like a pair of NATs that never let a hole punch
//! through. The NAT lab (tests/nat_lab.rs) covers real NAT behaviour.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use p2pchat::PeerId;
use p2pchat_client::engine::{self, Command, EngineConfig, EngineHandle, ErrorCode, Event, Path};
use p2pchat_client::session::SessionConfig;
use p2pchat_client::transport::{BoxFuture, Transport};
use p2pchat_server::{self as server, RunningServer, ServerConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::Receiver;

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

/// A UDP socket that, while `blocked`, only talks to the server's UDP port.
struct Firewalled {
    socket: UdpSocket,
    server_udp: SocketAddr,
    blocked: Arc<AtomicBool>,
}

impl Transport for Firewalled {
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(async move {
            if self.blocked.load(Ordering::SeqCst) && to != self.server_udp {
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
                if self.blocked.load(Ordering::SeqCst) && from != self.server_udp {
                    continue;
                }
                return Ok((n, from));
            }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

struct Peer {
    handle: EngineHandle,
    events: Receiver<Event>,
    /// Every event received so far.
    seen: Vec<Event>,
}

impl Peer {
    async fn start(server: &RunningServer, name: &str, blocked: Arc<AtomicBool>) -> Peer {
        Peer::start_with(server, name, blocked, true).await
    }

    async fn start_with(
        server: &RunningServer,
        name: &str,
        blocked: Arc<AtomicBool>,
        relay: bool,
    ) -> Peer {
        let mut config = EngineConfig::new(format!("http://{}", server.local_addr()), name);
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.relay = relay;
        config.session = SessionConfig {
            keepalive_interval: Duration::from_millis(500),
            missed_pong_limit: 4,
            probe_interval: Duration::from_millis(100),
            attempt_duration: Duration::from_millis(1500),
            connect_attempts: 3,
            relay_after: Duration::from_millis(800),
        };
        let socket = Firewalled {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server_udp: server.udp_addr().expect("server has a UDP port"),
            blocked,
        };
        let (handle, events) = engine::start_with(config, Arc::new(socket)).await.unwrap();
        Peer {
            handle,
            events,
            seen: Vec::new(),
        }
    }

    fn id(&self) -> PeerId {
        self.handle.started().peer_id
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

    /// The first event so far matching `pred`, or the next one to come.
    async fn saw_or_wait(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        self.wait(what, pred).await
    }

    /// Waits until `peer` is in the list (so a name resolves).
    async fn sees(&mut self, peer: PeerId) {
        self.wait("peer in list", |e| match e {
            Event::Peers { peers, .. } => peers.iter().any(|p| p.peer_id == peer),
            Event::PeerJoined { peer_id, .. } => *peer_id == peer,
            _ => false,
        })
        .await;
    }

    async fn quit(self) {
        self.cmd(Command::Quit).await;
        tokio::time::timeout(WAIT, self.handle.join())
            .await
            .unwrap();
    }
}

async fn start_server() -> RunningServer {
    server::start(ServerConfig::default()).await.unwrap()
}

/// Receives message events until `n` texts arrived; returns them in order.
async fn receive(peer: &mut Peer, n: usize) -> Vec<String> {
    let mut texts = Vec::new();
    while texts.len() < n {
        if let Event::Message { text, .. } = peer
            .wait("message", |e| matches!(e, Event::Message { .. }))
            .await
        {
            texts.push(text);
        }
    }
    texts
}

fn path_of(event: &Event) -> Path {
    match event {
        Event::Connected { path, .. } | Event::PathChanged { path, .. } => *path,
        other => panic!("not a path event: {other:?}"),
    }
}

#[tokio::test]
async fn stun_answer_is_registered_as_our_public_address() {
    let server = start_server().await;
    let mut a = Peer::start(&server, "alice", Arc::new(AtomicBool::new(false))).await;
    let local = a.handle.started().local_addr;
    match a
        .wait("registered", |e| matches!(e, Event::Registered { .. }))
        .await
    {
        Event::Registered {
            public_addr,
            stun,
            candidates,
            ..
        } => {
            assert!(stun, "STUN through the server's UDP port answered");
            assert_eq!(public_addr, local.to_string());
            assert!(candidates.contains(&local.to_string()), "{candidates:?}");
        }
        _ => unreachable!(),
    }
    // The server stores it as a server-reflexive endpoint.
    let peer = server.store().get(&a.id()).await.unwrap();
    assert!(
        peer.endpoints
            .iter()
            .any(|e| e.addr == local
                && e.kind == p2pchat_server::store::EndpointKind::ServerReflexive),
        "{:?}",
        peer.endpoints
    );
    a.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn blocked_direct_path_falls_back_to_the_relay_then_upgrades_without_loss() {
    let server = start_server().await;
    let blocked = Arc::new(AtomicBool::new(true));
    let mut a = Peer::start(&server, "alice", blocked.clone()).await;
    let mut b = Peer::start(&server, "bob", blocked.clone()).await;
    a.sees(b.id()).await;
    a.cmd(Command::Connect("bob".into())).await;
    let a_up = a
        .wait("a connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    let b_up = b
        .wait("b connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    assert_eq!(path_of(&a_up), Path::Relayed, "{a_up:?}");
    assert_eq!(path_of(&b_up), Path::Relayed, "{b_up:?}");
    let relay = server.udp_addr().unwrap().to_string();
    assert!(matches!(&a_up, Event::Connected { addr, .. } if *addr == relay));

    // Chat over the relay both ways.
    a.cmd(Command::Send("over the relay".into())).await;
    assert_eq!(receive(&mut b, 1).await, ["over the relay"]);
    b.cmd(Command::Send("relayed back".into())).await;
    assert_eq!(receive(&mut a, 1).await, ["relayed back"]);

    // Lines keep flowing both ways while the direct path opens; every one
    // arrives once, in order, and both sides move to the direct path.
    let total = 60;
    for i in 0..total / 2 {
        a.cmd(Command::Send(format!("a{i}"))).await;
        b.cmd(Command::Send(format!("b{i}"))).await;
    }
    blocked.store(false, Ordering::SeqCst);
    for i in total / 2..total {
        a.cmd(Command::Send(format!("a{i}"))).await;
        b.cmd(Command::Send(format!("b{i}"))).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expect_a: Vec<String> = (0..total).map(|i| format!("a{i}")).collect();
    let expect_b: Vec<String> = (0..total).map(|i| format!("b{i}")).collect();
    assert_eq!(receive(&mut b, total).await, expect_a);
    assert_eq!(receive(&mut a, total).await, expect_b);
    let a_moved = a
        .saw_or_wait("a path changed", |e| matches!(e, Event::PathChanged { .. }))
        .await;
    let b_moved = b
        .saw_or_wait("b path changed", |e| matches!(e, Event::PathChanged { .. }))
        .await;
    // Loopback addresses count as LAN.
    assert_eq!(path_of(&a_moved), Path::Lan, "{a_moved:?}");
    assert_eq!(path_of(&b_moved), Path::Lan, "{b_moved:?}");
    a.cmd(Command::Status).await;
    match a
        .wait("status", |e| matches!(e, Event::Status { .. }))
        .await
    {
        Event::Status { sessions, .. } => {
            assert_eq!(sessions.len(), 1);
            assert_eq!(sessions[0].path, Some(Path::Lan));
        }
        _ => unreachable!(),
    }
    // Nothing more arrives: no duplicates were delivered late.
    b.cmd(Command::Send("last".into())).await;
    assert_eq!(receive(&mut a, 1).await, ["last"]);
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_relay_a_blocked_path_is_unreachable() {
    let server = start_server().await;
    let blocked = Arc::new(AtomicBool::new(true));
    let mut a = Peer::start_with(&server, "alice", blocked.clone(), false).await;
    let b = Peer::start_with(&server, "bob", blocked.clone(), false).await;
    a.sees(b.id()).await;
    a.cmd(Command::Connect("bob".into())).await;
    let err = a
        .wait(
            "unreachable",
            |e| matches!(e, Event::Error { code, .. } if *code == ErrorCode::Unreachable),
        )
        .await;
    assert!(matches!(err, Event::Error { .. }));
    assert_eq!(
        server.store().counts().await.unwrap().online,
        2,
        "both still registered"
    );
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn relayed_session_recovers_when_the_relay_path_dies_and_direct_opens() {
    // Connected over the relay, then the direct path opens and the session
    // moves there; when the direct path is blocked again, keep-alives go
    // unanswered and the session falls back to the relay it kept bound.
    let server = start_server().await;
    let blocked = Arc::new(AtomicBool::new(true));
    let mut a = Peer::start(&server, "alice", blocked.clone()).await;
    let mut b = Peer::start(&server, "bob", blocked.clone()).await;
    a.sees(b.id()).await;
    a.cmd(Command::Connect("bob".into())).await;
    a.wait(
        "a relayed",
        |e| matches!(e, Event::Connected { path, .. } if *path == Path::Relayed),
    )
    .await;
    b.wait(
        "b relayed",
        |e| matches!(e, Event::Connected { path, .. } if *path == Path::Relayed),
    )
    .await;
    blocked.store(false, Ordering::SeqCst);
    a.wait(
        "a direct",
        |e| matches!(e, Event::PathChanged { path, .. } if *path == Path::Lan),
    )
    .await;
    blocked.store(true, Ordering::SeqCst);
    a.wait(
        "a back on the relay",
        |e| matches!(e, Event::PathChanged { path, .. } if *path == Path::Relayed),
    )
    .await;
    a.cmd(Command::Send("still here".into())).await;
    assert_eq!(receive(&mut b, 1).await, ["still here"]);
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
}
