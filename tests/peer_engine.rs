//! Library tests of the peer: two engines and the signaling server, all in
//! this process, on loopback. Covers connect, chat both ways, exactly-once
//! ordered delivery through a lossy socket, offline detection, disconnect and
//! a server restart mid-chat.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pchat::PeerId;
use p2pchat_client::engine::{
    self, Command, DisconnectReason, EngineConfig, EngineHandle, ErrorCode, Event, Path,
    SessionState,
};
use p2pchat_client::session::SessionConfig;
use p2pchat_client::transport::{BoxFuture, Transport};
use p2pchat_server::{self as server, RunningServer, ServerConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::Receiver;

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(15);

async fn start_server(listen: SocketAddr, lease: Duration) -> RunningServer {
    let config = ServerConfig {
        listen,
        lease,
        ..ServerConfig::default()
    };
    server::start(config).await.unwrap()
}

fn fast_session() -> SessionConfig {
    SessionConfig {
        keepalive_interval: Duration::from_millis(300),
        missed_pong_limit: 3,
        probe_interval: Duration::from_millis(100),
        attempt_duration: Duration::from_millis(1500),
        connect_attempts: 3,
        relay_after: Duration::from_secs(3600),
    }
}

fn config(server: &RunningServer, name: &str) -> EngineConfig {
    let mut config = EngineConfig::new(format!("http://{}", server.local_addr()), name);
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.session = fast_session();
    config
}

struct Peer {
    handle: EngineHandle,
    events: Receiver<Event>,
}

impl Peer {
    async fn start(config: EngineConfig) -> Peer {
        let (handle, events) = engine::start(config).await.unwrap();
        Peer { handle, events }
    }

    async fn start_lossy(config: EngineConfig, seed: u64) -> Peer {
        let socket = LossySocket::bind(seed).await;
        let (handle, events) = engine::start_with(config, Arc::new(socket)).await.unwrap();
        Peer { handle, events }
    }

    fn id(&self) -> PeerId {
        self.handle.started().peer_id
    }

    async fn cmd(&self, command: Command) {
        assert!(self.handle.command(command).await, "engine stopped");
    }

    /// Waits for the first event matching `pred`, skipping others.
    async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let result = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(e) if pred(&e) => return e,
                    Some(_) => {}
                    None => panic!("engine stopped while waiting for {what}"),
                }
            }
        })
        .await;
        result.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Collects the texts of the next `n` messages.
    async fn messages(&mut self, n: usize) -> Vec<String> {
        let mut texts = Vec::new();
        while texts.len() < n {
            if let Event::Message { text, .. } = self
                .wait("message", |e| matches!(e, Event::Message { .. }))
                .await
            {
                texts.push(text);
            }
        }
        texts
    }

    async fn quit(self) {
        self.cmd(Command::Quit).await;
        tokio::time::timeout(WAIT, self.handle.join())
            .await
            .unwrap();
    }
}

/// Starts A and B on `server` and connects A to B (by username).
async fn connected_pair(a: Peer, b: Peer) -> (Peer, Peer) {
    let (mut a, mut b) = (a, b);
    let b_id = b.id();
    // A must see B in its peer list before a name can resolve.
    a.wait("b in list", |e| match e {
        Event::Peers { peers, .. } => peers.iter().any(|p| p.peer_id == b_id),
        Event::PeerJoined { peer_id, .. } => *peer_id == b_id,
        _ => false,
    })
    .await;
    a.cmd(Command::Connect("bob".into())).await;
    let a_connected = a
        .wait("a connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    let b_connected = b
        .wait("b connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    match (&a_connected, &b_connected) {
        (
            Event::Connected {
                peer_id: to_b,
                path,
                reliable: true,
                ..
            },
            Event::Connected {
                peer_id: to_a,
                reliable: true,
                ..
            },
        ) => {
            assert_eq!(*to_b, b_id);
            assert_eq!(*to_a, a.id());
            assert_eq!(*path, Path::Lan);
        }
        other => panic!("unexpected connect events {other:?}"),
    }
    (a, b)
}

#[tokio::test]
async fn two_peers_connect_and_chat_both_ways() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let a = Peer::start(config(&server, "alice")).await;
    let b = Peer::start(config(&server, "bob")).await;
    let (mut a, mut b) = connected_pair(a, b).await;

    a.cmd(Command::Send("hello bob".into())).await;
    assert_eq!(b.messages(1).await, vec!["hello bob"]);
    let sent = a.wait("sent", |e| matches!(e, Event::Sent { .. })).await;
    let Event::Sent {
        line,
        reliable: true,
        ..
    } = sent
    else {
        panic!("{sent:?}")
    };
    a.wait(
        "delivered",
        |e| matches!(e, Event::Delivered { line: l, .. } if *l == line),
    )
    .await;

    b.cmd(Command::Send("hi alice".into())).await;
    let got = a
        .wait("reply", |e| matches!(e, Event::Message { .. }))
        .await;
    assert!(
        matches!(got, Event::Message { ref text, ref username, .. } if text == "hi alice" && username == "bob")
    );

    // A long line crosses as one message.
    let long = "λ".repeat(5000);
    a.cmd(Command::Send(long.clone())).await;
    assert_eq!(b.messages(1).await, vec![long]);
    a.wait(
        "long line delivered",
        |e| matches!(e, Event::Delivered { line, .. } if *line == 2),
    )
    .await;

    a.cmd(Command::Status).await;
    let status = a
        .wait("status", |e| matches!(e, Event::Status { .. }))
        .await;
    let Event::Status {
        server_connected: true,
        sessions,
        ..
    } = status
    else {
        panic!("{status:?}")
    };
    assert_eq!(sessions.len(), 1);
    let st = &sessions[0];
    assert_eq!(
        (st.username.as_str(), st.state, st.active),
        ("bob", SessionState::Connected, true)
    );
    assert_eq!(
        (st.path, st.reliable, st.pending),
        (Some(Path::Lan), true, 0)
    );
    assert!(st.rtt_ms.is_some());

    // Keep-alive reports RTT.
    a.wait(
        "rtt",
        |e| matches!(e, Event::Rtt { rtt_ms, .. } if *rtt_ms < 100.0),
    )
    .await;

    let a_id = a.id();
    a.quit().await;
    b.wait("remote disconnect", |e| {
        matches!(e, Event::Disconnected { reason: DisconnectReason::RemoteDisconnect, peer_id, .. } if *peer_id == a_id)
    })
    .await;
    // Unregistered on quit: B hears A left.
    b.wait(
        "a left",
        |e| matches!(e, Event::PeerLeft { peer_id, .. } if *peer_id == a_id),
    )
    .await;
    // Typing into a closed session is reported, not lost silently.
    b.cmd(Command::Send("anyone?".into())).await;
    b.wait("not connected", |e| {
        matches!(
            e,
            Event::Error {
                code: ErrorCode::NotConnected,
                ..
            }
        )
    })
    .await;
    b.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_and_ambiguous_targets_are_reported() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let mut a = Peer::start(config(&server, "alice")).await;
    // Two online peers cannot share a name (the server refuses the second
    // "bob"), but "bob" and "Bob" can, and "BOB" matches both.
    let b1 = Peer::start(config(&server, "bob")).await;
    let b2 = Peer::start(config(&server, "Bob")).await;
    let mut seen = 0;
    a.wait("two bobs", |e| {
        match e {
            Event::Peers { peers, .. } => seen = peers.len(),
            Event::PeerJoined { .. } => seen += 1,
            _ => {}
        }
        seen >= 2
    })
    .await;
    a.cmd(Command::Connect("BOB".into())).await;
    a.wait("ambiguous", |e| {
        matches!(
            e,
            Event::Error {
                code: ErrorCode::AmbiguousPeer,
                ..
            }
        )
    })
    .await;
    a.cmd(Command::Connect("nobody".into())).await;
    a.wait("unknown", |e| {
        matches!(
            e,
            Event::Error {
                code: ErrorCode::UnknownPeer,
                ..
            }
        )
    })
    .await;
    // A unique prefix works.
    let prefix: String = b1.id().to_string().chars().take(8).collect();
    a.cmd(Command::Connect(prefix)).await;
    a.wait("connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    for p in [a, b1, b2] {
        p.quit().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn exactly_once_in_order_through_a_lossy_socket() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let a = Peer::start_lossy(config(&server, "alice"), 11).await;
    let b = Peer::start_lossy(config(&server, "bob"), 23).await;
    let (mut a, mut b) = connected_pair(a, b).await;
    const N: usize = 150;
    for i in 0..N {
        a.cmd(Command::Send(format!("a{i}"))).await;
        b.cmd(Command::Send(format!("b{i}"))).await;
    }
    let want_a: Vec<String> = (0..N).map(|i| format!("a{i}")).collect();
    let want_b: Vec<String> = (0..N).map(|i| format!("b{i}")).collect();
    assert_eq!(b.messages(N).await, want_a);
    assert_eq!(a.messages(N).await, want_b);
    // And nothing more arrives (no duplicates trailing behind).
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(e) = a.events.try_recv() {
        assert!(!matches!(e, Event::Message { .. }), "duplicate {e:?}");
    }
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn killed_peer_is_declared_offline_and_pending_lines_reported() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(60)).await;
    let a = Peer::start(config(&server, "alice")).await;
    let b = Peer::start(config(&server, "bob")).await;
    let (mut a, b) = connected_pair(a, b).await;
    let b_id = b.id();
    // Killed: no disconnect, no unregister; its lease outlives the test.
    b.handle.abort();
    let started = tokio::time::Instant::now();
    a.cmd(Command::Send("are you there?".into())).await;
    a.wait("undeliverable", |e| {
        matches!(e, Event::Undeliverable { .. })
    })
    .await;
    a.wait(
        "offline",
        |e| matches!(e, Event::Disconnected { reason: DisconnectReason::Timeout, peer_id, .. } if *peer_id == b_id),
    )
    .await;
    // 3 missed intervals of 300 ms (plus the interval that noticed).
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "too soon: {took:?}");
    assert!(took <= Duration::from_secs(3), "too late: {took:?}");
    a.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn peer_reported_left_by_server_ends_session_at_once() {
    // Short lease, long keep-alive: only the server's LEFT can end it soon.
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(1)).await;
    let mut ca = config(&server, "alice");
    ca.session.keepalive_interval = Duration::from_secs(60);
    let a = Peer::start(ca).await;
    let b = Peer::start(config(&server, "bob")).await;
    let (mut a, b) = connected_pair(a, b).await;
    let b_id = b.id();
    b.handle.abort();
    a.wait(
        "left",
        |e| matches!(e, Event::Disconnected { reason: DisconnectReason::Left, peer_id, .. } if *peer_id == b_id),
    )
    .await;
    a.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn chat_survives_server_restart_and_peers_re_register() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let addr = server.local_addr();
    let a = Peer::start(config(&server, "alice")).await;
    let b = Peer::start(config(&server, "bob")).await;
    let (mut a, mut b) = connected_pair(a, b).await;
    server.shutdown().await;
    a.wait("server lost", |e| matches!(e, Event::ServerLost { .. }))
        .await;
    b.wait("server lost", |e| matches!(e, Event::ServerLost { .. }))
        .await;

    a.cmd(Command::Status).await;
    let status = a
        .wait("status", |e| matches!(e, Event::Status { .. }))
        .await;
    assert!(
        matches!(status, Event::Status { server_connected: false, ref sessions, .. } if sessions.len() == 1)
    );

    // Peer to peer carries on without the server.
    a.cmd(Command::Send("still here".into())).await;
    assert_eq!(b.messages(1).await, vec!["still here"]);
    b.cmd(Command::Send("me too".into())).await;
    assert_eq!(a.messages(1).await, vec!["me too"]);

    let server = start_server(addr, Duration::from_secs(30)).await;
    a.wait("restored", |e| matches!(e, Event::ServerRestored {}))
        .await;
    b.wait("restored", |e| matches!(e, Event::ServerRestored {}))
        .await;
    // The watch resyncs with a snapshot, and the whole list is reported.
    a.wait("peer list after the resync", |e| {
        matches!(e, Event::Peers { .. })
    })
    .await;
    // Both are registered again: the new registry lists them.
    let store = server.store();
    let a_id = a.id();
    let b_id = b.id();
    tokio::time::timeout(WAIT, async {
        loop {
            let online = async |id: p2pchat::PeerId| store.get(&id).await.is_ok_and(|p| p.online);
            if online(a_id).await && online(b_id).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both peers re-registered");
    // The session was never interrupted.
    a.cmd(Command::Send("after restart".into())).await;
    assert_eq!(b.messages(1).await, vec!["after restart"]);
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn unreachable_server_fails_after_retries() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = EngineConfig::new(format!("http://127.0.0.1:{port}"), "x");
    config.bind = "127.0.0.1:0".parse().unwrap();
    let started = tokio::time::Instant::now();
    let err = engine::start(config).await.unwrap_err().to_string();
    assert!(err.contains("unreachable after 3 attempts"), "{err}");
    assert!(!err.contains('\n'));
    // Backoff 300 ms + 600 ms between the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// A UDP socket that drops, duplicates and delays (reorders) what it sends,
/// deterministically from a seed. Test-only.
struct LossySocket {
    inner: Arc<UdpSocket>,
    rng: Mutex<u64>,
}

impl LossySocket {
    async fn bind(seed: u64) -> LossySocket {
        LossySocket {
            inner: Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
            rng: Mutex::new(seed.max(1)),
        }
    }

    fn roll(&self) -> u64 {
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % 100
    }
}

impl Transport for LossySocket {
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(async move {
            // 20% dropped, 10% duplicated, 10% delayed behind later ones.
            if self.roll() < 20 {
                return Ok(buf.len());
            }
            if self.roll() < 10 {
                self.inner.send_to(buf, to).await?;
            }
            if self.roll() < 10 {
                let socket = self.inner.clone();
                let bytes = buf.to_vec();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let _ = socket.send_to(&bytes, to).await;
                });
                return Ok(buf.len());
            }
            self.inner.send_to(buf, to).await
        })
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(self.inner.recv_from(buf))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[tokio::test]
async fn incoming_sessions_are_capped() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let mut config = config(&server, "alice");
    // Keep the strangers' sessions alive through the test.
    config.session.keepalive_interval = Duration::from_secs(30);
    let mut a = Peer::start(config).await;
    let target = a.handle.started().local_addr;
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..=engine::MAX_SESSIONS {
        let hello = format!(
            r#"{{"type":"hello","from":"00000000-0000-4000-8000-{i:012}","timestamp":1,"body":""}}"#
        );
        caller.send_to(hello.as_bytes(), target).await.unwrap();
    }
    let mut connected = std::collections::HashSet::new();
    while connected.len() < engine::MAX_SESSIONS {
        if let Event::Connected { peer_id, .. } = a
            .wait("connected", |e| matches!(e, Event::Connected { .. }))
            .await
        {
            connected.insert(peer_id);
        }
    }
    // The one over the limit is ignored.
    let extra = tokio::time::timeout(
        Duration::from_millis(500),
        a.wait("extra", |e| matches!(e, Event::Connected { .. })),
    )
    .await;
    assert!(extra.is_err(), "session limit exceeded: {extra:?}");
    let last = PeerId::parse(&format!(
        "00000000-0000-4000-8000-{:012}",
        engine::MAX_SESSIONS
    ))
    .unwrap();
    assert!(!connected.contains(&last));
    a.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_starts_over_is_not_mistaken_for_duplicates() {
    // A peer that lost its session (e.g. our disconnect never reached it, or
    // it restarted the session) says hello with a new session id; its
    // message ids restart at 1 and must be shown, not dropped as repeats.
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let mut a = Peer::start(config(&server, "alice")).await;
    let target = a.handle.started().local_addr;
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let id = "0000beef-0000-4000-8000-000000000001";
    let send = |raw: String| {
        let other = &other;
        async move { other.send_to(raw.as_bytes(), target).await.unwrap() }
    };
    let hello = |session: u64| {
        format!(
            r#"{{"type":"hello","from":"{id}","timestamp":1,"body":"","extensions":["reliable/1"],"session":{session}}}"#
        )
    };
    let msg = |n: u64, body: &str| {
        format!(r#"{{"type":"message","from":"{id}","timestamp":1,"body":"{body}","id":{n}}}"#)
    };
    send(hello(1)).await;
    a.wait("connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    send(msg(1, "first")).await;
    send(msg(2, "second")).await;
    assert_eq!(a.messages(2).await, ["first", "second"]);
    // A repeat within the same session is a duplicate...
    send(msg(1, "first")).await;
    // ...but after a new hello, id 1 is a new message.
    send(hello(2)).await;
    a.wait("reset", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Reset,
                ..
            }
        )
    })
    .await;
    a.wait("reconnected", |e| matches!(e, Event::Connected { .. }))
        .await;
    send(msg(1, "fresh start")).await;
    assert_eq!(a.messages(1).await, ["fresh start"]);
    // The new session is the active one: a reply goes out.
    a.cmd(Command::Send("welcome back".into())).await;
    a.wait("sent", |e| matches!(e, Event::Sent { .. })).await;
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(WAIT, async {
        loop {
            let (n, _) = other.recv_from(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains("welcome back") {
                return text;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        got.contains(r#""id":1"#),
        "new session numbers from 1: {got}"
    );
    a.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn unreachable_peer_is_reported_after_three_attempts() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(60)).await;
    let mut ca = config(&server, "alice");
    ca.session.attempt_duration = Duration::from_millis(300);
    let mut a = Peer::start(ca).await;
    let b = Peer::start(config(&server, "bob")).await;
    let b_id = b.id();
    a.wait("bob listed", |e| match e {
        Event::Peers { peers, .. } => peers.iter().any(|p| p.peer_id == b_id),
        Event::PeerJoined { peer_id, .. } => *peer_id == b_id,
        _ => false,
    })
    .await;
    // Bob's process dies but his registration lives on (lease 60 s).
    b.handle.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.cmd(Command::Connect("bob".into())).await;
    let mut attempts = Vec::new();
    let err = a
        .wait("unreachable", |e| {
            if let Event::Connecting { attempt, .. } = e {
                attempts.push(*attempt);
            }
            matches!(
                e,
                Event::Error {
                    code: ErrorCode::Unreachable,
                    ..
                }
            )
        })
        .await;
    assert_eq!(attempts, [1, 2, 3]);
    let Event::Error { message, .. } = err else {
        unreachable!()
    };
    assert_eq!(message, "could not reach peer bob after 3 attempts");
    a.wait("closed", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Unreachable,
                ..
            }
        )
    })
    .await;
    // The user can go on: another command is served.
    a.cmd(Command::Peers).await;
    a.wait("peers", |e| matches!(e, Event::Peers { .. })).await;
    a.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_hello_of_a_closed_session_does_not_reopen_it_and_strangers_are_told() {
    // When we leave, our `disconnect` can cross a probe of the peer's old
    // session. That hello must not open a half-open session on our side;
    // the sender is told `disconnect` instead, as is anyone who sends chat
    // without a session.
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let mut a = Peer::start(config(&server, "alice")).await;
    let target = a.handle.started().local_addr;
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let id = "0000beef-0000-4000-8000-000000000002";
    let hello = |session: u64| {
        format!(
            r#"{{"type":"hello","from":"{id}","timestamp":1,"body":"","extensions":["reliable/1"],"session":{session}}}"#
        )
    };
    // Waits for a datagram of `kind` from Alice.
    let expect = |kind: &'static str| {
        let other = &other;
        async move {
            let mut buf = [0u8; 2048];
            tokio::time::timeout(WAIT, async {
                loop {
                    let (n, _) = other.recv_from(&mut buf).await.unwrap();
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.contains(&format!(r#""type":"{kind}""#)) {
                        return text;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("no {kind} from alice"))
        }
    };
    other.send_to(hello(7).as_bytes(), target).await.unwrap();
    a.wait("connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    a.cmd(Command::Leave).await;
    a.wait("disconnected", |e| matches!(e, Event::Disconnected { .. }))
        .await;
    expect("disconnect").await;
    // The old session's probe arrives late: ignored, answered with
    // disconnect.
    other.send_to(hello(7).as_bytes(), target).await.unwrap();
    expect("disconnect").await;
    let reopened = tokio::time::timeout(
        Duration::from_millis(500),
        a.wait("connected again", |e| matches!(e, Event::Connected { .. })),
    )
    .await;
    assert!(
        reopened.is_err(),
        "old hello reopened a session: {reopened:?}"
    );
    // Chat without a session gets a disconnect too.
    let msg = format!(r#"{{"type":"message","from":"{id}","timestamp":1,"body":"hi","id":1}}"#);
    other.send_to(msg.as_bytes(), target).await.unwrap();
    expect("disconnect").await;
    // A genuinely new session (new id) is accepted.
    other.send_to(hello(8).as_bytes(), target).await.unwrap();
    a.wait("new session", |e| matches!(e, Event::Connected { .. }))
        .await;
    a.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn connecting_past_the_session_limit_is_refused() {
    // Regression: the rendezvous path used not to check MAX_SESSIONS, so a
    // peer full of incoming sessions could still start more (33 seen).
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let mut config = config(&server, "alice");
    config.session.keepalive_interval = Duration::from_secs(30);
    let mut a = Peer::start(config).await;
    let mut b = Peer::start(self::config(&server, "bob")).await;
    let b_id = b.id();
    a.wait("bob listed", |e| match e {
        Event::Peers { peers, .. } => peers.iter().any(|p| p.peer_id == b_id),
        Event::PeerJoined { peer_id, .. } => *peer_id == b_id,
        _ => false,
    })
    .await;
    let target = a.handle.started().local_addr;
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..engine::MAX_SESSIONS {
        let hello = format!(
            r#"{{"type":"hello","from":"00000000-0000-4000-8000-{i:012}","timestamp":1,"body":""}}"#
        );
        caller.send_to(hello.as_bytes(), target).await.unwrap();
    }
    let mut up = 0;
    while up < engine::MAX_SESSIONS {
        a.wait("connected", |e| matches!(e, Event::Connected { .. }))
            .await;
        up += 1;
    }
    a.cmd(Command::Connect("bob".into())).await;
    let refused = a
        .wait("refused", |e| {
            matches!(e, Event::Error { .. } | Event::Connected { .. })
        })
        .await;
    assert!(
        matches!(
            refused,
            Event::Error {
                code: ErrorCode::SessionLimit,
                ..
            }
        ),
        "{refused:?}"
    );
    let reached = tokio::time::timeout(
        Duration::from_millis(800),
        b.wait("connected", |e| matches!(e, Event::Connected { .. })),
    )
    .await;
    assert!(reached.is_err(), "a session past the limit: {reached:?}");
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_front_end_does_not_stop_keepalives() {
    // Regression: the engine used to wait for room in the event channel from
    // the task that answers pings, so a front end that stopped reading made
    // the peer look dead. Now events wait in the engine's queue; chat lines
    // that arrive meanwhile are all there once it reads again.
    let server = start_server("127.0.0.1:0".parse().unwrap(), Duration::from_secs(30)).await;
    let a = Peer::start(config(&server, "alice")).await;
    let mut cb = config(&server, "bob");
    cb.event_buffer = 1;
    let b = Peer::start(cb).await;
    let (mut a, mut b) = connected_pair(a, b).await;
    // Bob's front end stops reading; Alice chats on for several offline
    // timeouts (3 x 300 ms).
    let mut lines = Vec::new();
    for i in 0..10 {
        let text = format!("line {i}");
        a.cmd(Command::Send(text.clone())).await;
        lines.push(text);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut delivered = 0;
    let mut rtts = 0;
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match a.events.recv().await {
                Some(Event::Disconnected { .. }) => return,
                Some(Event::Delivered { .. }) => delivered += 1,
                Some(Event::Rtt { .. }) => rtts += 1,
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "alice lost bob while bob's UI stalled");
    assert_eq!(delivered, 10, "bob's engine acknowledged every line");
    assert!(rtts > 0, "bob answered keep-alives");
    // Bob reads again: every line is there, in order.
    assert_eq!(b.messages(10).await, lines);
    a.quit().await;
    b.quit().await;
    server.shutdown().await;
}
