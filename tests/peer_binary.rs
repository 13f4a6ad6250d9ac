//! Binary tests of `peer`: real processes against the `signaling-server`
//! binary on loopback. Two `peer --json` processes chat and exit cleanly; a
//! hand-written seed-protocol peer (plain UDP + the REST shim) chats with
//! ours both ways; a flood of malformed datagrams leaves a live session
//! untouched; an unreachable server gives one clear error line. Two of
//! ours are end-to-end encrypted and show the same safety number (in
//! `--json` and through the console's `/verify`); a seed peer's lines are
//! marked unencrypted, and `--require-encryption` refuses it both ways.

#[path = "support/bins.rs"]
mod bins;
use bins::{PEER, SERVER};

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UdpSocket;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(15);

struct Server {
    /// Held so the server is killed when the test ends (kill_on_drop).
    _child: Child,
    url: String,
}

async fn start_server() -> Server {
    start_server_on("127.0.0.1:0").await
}

async fn start_server_on(listen: &str) -> Server {
    let mut child = Command::new(SERVER.path())
        .args(["--listen", listen, "--udp-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("local_addr=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("server exited before logging its address");
    })
    .await
    .expect("server address logged");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        _child: child,
        url: format!("http://{addr}"),
    }
}

struct PeerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event seen so far, for assertions after the fact.
    seen: Vec<Value>,
}

impl PeerProc {
    async fn start(server: &Server, name: &str, extra: &[&str]) -> PeerProc {
        let mut child = Command::new(PEER.path())
            .args([
                "--json",
                "--server",
                &server.url,
                "--username",
                name,
                "--bind",
                "127.0.0.1",
                "--keepalive-secs",
                "0.5",
                // A fresh key per process: tests never touch $HOME.
                "--ephemeral",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line: {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        PeerProc {
            stdin: child.stdin.take(),
            child,
            events: rx,
            seen: Vec::new(),
        }
    }

    async fn line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let Some(event) = self.events.recv().await else {
                    panic!("peer exited while waiting for {what}; saw {:?}", self.seen);
                };
                self.seen.push(event.clone());
                if pred(&event) {
                    return event;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    async fn event(&mut self, name: &str) -> Value {
        self.wait(name, |e| e["event"] == name).await
    }

    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("peer exits in time")
            .unwrap();
        status.code().expect("exited, not killed by a signal")
    }
}

#[tokio::test]
async fn two_json_peers_chat_and_exit_cleanly() {
    let server = start_server().await;
    let mut alice = PeerProc::start(&server, "alice", &[]).await;
    let registered = alice.event("registered").await;
    let alice_id = registered["peer_id"].as_str().unwrap().to_owned();
    assert_eq!(registered["username"], "alice");
    assert_eq!(registered["observed_ip"], "127.0.0.1");
    assert!(registered["udp_port"].as_u64().unwrap() > 0);
    assert_eq!(alice.event("peers").await["peers"], json!([]));

    // Bob connects at start by a unique prefix of Alice's id.
    let prefix = &alice_id[..8];
    let mut bob = PeerProc::start(&server, "bob", &["--connect", prefix]).await;
    let connected = bob.event("connected").await;
    assert_eq!(connected["peer_id"], alice_id.as_str());
    assert_eq!(connected["path"], "lan");
    assert_eq!(connected["reliable"], true);
    // The handshake RTT is known to whichever side's probe was answered
    // first; the other side pings at once and reports it.
    assert!(connected["rtt_ms"].is_null() || connected["rtt_ms"].as_f64().is_some());
    bob.event("rtt").await;
    assert_eq!(connected["incoming"], false);
    let connected = alice.event("connected").await;
    assert_eq!(connected["username"], "bob");
    assert_eq!(connected["incoming"], true);

    bob.line("Hi Alice! How are you?").await;
    let msg = alice.event("message").await;
    assert_eq!(msg["text"], "Hi Alice! How are you?");
    assert_eq!(msg["username"], "bob");
    let sent = bob.event("sent").await;
    let delivered = bob.event("delivered").await;
    assert_eq!(sent["line"], delivered["line"]);

    alice.line("I'm good, thanks!").await;
    assert_eq!(bob.event("message").await["text"], "I'm good, thanks!");

    alice.line("/peers").await;
    let peers = alice.event("peers").await;
    assert_eq!(peers["peers"][0]["username"], "bob");
    alice.line("/status").await;
    let status = alice.event("status").await;
    assert_eq!(status["server_connected"], true);
    assert_eq!(status["sessions"][0]["username"], "bob");
    assert_eq!(status["sessions"][0]["state"], "connected");
    assert_eq!(status["sessions"][0]["active"], true);
    assert!(msg["sent_at"].as_f64().unwrap() > 1.7e9, "{msg}");
    alice.line("/bogus").await;
    assert_eq!(alice.event("error").await["code"], "invalid_command");

    // /quit: disconnect, unregister, exit 0.
    alice.line("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    let gone = bob.event("disconnected").await;
    assert_eq!(gone["reason"], "remote_disconnect");
    bob.wait("alice left", |e| {
        e["event"] == "peer_left" && e["peer_id"] == alice_id.as_str()
    })
    .await;
    // EOF on stdin: same clean exit.
    drop(bob.stdin.take());
    assert_eq!(bob.exit_code().await, 0);
    drop(server);
}

#[tokio::test]
async fn sigterm_and_ctrl_c_exit_cleanly_and_unregister() {
    let server = start_server().await;
    let mut alice = PeerProc::start(&server, "alice", &[]).await;
    alice.event("registered").await;
    let mut bob = PeerProc::start(&server, "bob", &[]).await;
    let bob_id = bob.event("registered").await["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.event("peer_joined").await;
    let pid = bob.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(bob.exit_code().await, 0);
    alice
        .wait("bob left", |e| {
            e["event"] == "peer_left" && e["peer_id"] == bob_id.as_str()
        })
        .await;
    // Ctrl+C (SIGINT) is the same clean exit.
    let pid = alice.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(alice.exit_code().await, 0);
}

#[tokio::test]
async fn unreachable_server_exits_non_zero_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(PEER.path())
        .args([
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--bind",
            "127.0.0.1",
            "--ephemeral",
        ])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("unreachable after 3 attempts"), "{err}");
    assert!(err.contains("refused"), "{err}");
}

/// A name already online is the server's answer, not an outage: the peer
/// says so at once instead of retrying and calling the server unreachable.
#[tokio::test]
async fn a_taken_name_is_refused_at_once_not_unreachable() {
    let server = start_server().await;
    let taken = reqwest::Client::new()
        .post(format!("{}/register", server.url))
        .json(&serde_json::json!({"peer_id": uuid::Uuid::new_v4().to_string(), "username": "Zed", "port": 40001}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), reqwest::StatusCode::OK);
    let out = Command::new(PEER.path())
        .args([
            "--server",
            &server.url,
            "--bind",
            "127.0.0.1",
            "--ephemeral",
            "--username",
            "Zed",
        ])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("refused the registration"), "{err}");
    assert!(err.contains("is taken"), "{err}");
    assert!(!err.contains("unreachable"), "{err}");
}

/// A peer that speaks only the seed's documented protocol: plain JSON
/// `{"type","from","timestamp","body"}` over a bare UDP socket, registered
/// through the REST shim, no stream, no acks, no ids.
struct SeedPeer {
    id: String,
    socket: UdpSocket,
}

impl SeedPeer {
    async fn register(server: &Server, name: &str) -> SeedPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        let port = socket.local_addr().unwrap().port();
        let resp: Value = reqwest::Client::new()
            .post(format!("{}/register", server.url))
            .json(&json!({"peer_id": id, "username": name, "port": port}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp["status"], "success", "{resp}");
        SeedPeer { id, socket }
    }

    async fn send(&self, kind: &str, body: &str, to: SocketAddr) {
        let dg =
            json!({"type": kind, "from": self.id, "timestamp": 1_768_478_400.123, "body": body});
        self.socket
            .send_to(dg.to_string().as_bytes(), to)
            .await
            .unwrap();
    }

    /// Receives datagrams until one matches `pred`, answering pings (as the
    /// seed does) along the way. Every datagram must be seed-parseable.
    async fn recv_until(
        &self,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> (Value, SocketAddr) {
        let mut buf = vec![0u8; 65536];
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let (n, from) = self.socket.recv_from(&mut buf).await.unwrap();
                assert!(n <= 1200, "datagram of {n} bytes");
                let v: Value = serde_json::from_slice(&buf[..n]).unwrap();
                for field in ["type", "from", "body"] {
                    assert!(v[field].is_string(), "seed field {field} in {v}");
                }
                assert!(v["timestamp"].is_number(), "{v}");
                if v["type"] == "ping" {
                    self.send("pong", "", from).await;
                }
                if pred(&v) {
                    return (v, from);
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("seed peer timed out waiting for {what}"))
    }
}

#[tokio::test]
async fn seed_protocol_peer_chats_with_ours_both_ways() {
    let server = start_server().await;
    let seed = SeedPeer::register(&server, "seedy").await;

    // Ours connects to the seed peer by username; it has no inbox, so ours
    // probes its registered address directly.
    let mut ours = PeerProc::start(&server, "rusty", &["--connect", "seedy"]).await;
    let ours_id = ours.event("registered").await["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (hello, ours_addr) = seed.recv_until("hello", |v| v["type"] == "hello").await;
    assert_eq!(hello["from"], ours_id.as_str());
    // The seed answers a hello with a hello.
    seed.send("hello", "", ours_addr).await;
    let connected = ours.event("connected").await;
    assert_eq!(
        connected["reliable"], false,
        "a seed peer gets the seed protocol"
    );
    assert_eq!(connected["username"], "seedy");
    assert_eq!(connected["encrypted"], false, "{connected}");
    assert!(connected["safety_number"].is_null(), "{connected}");

    // Seed -> ours.
    seed.send("message", "Hello from Python!", ours_addr).await;
    let msg = ours.event("message").await;
    assert_eq!(msg["text"], "Hello from Python!");
    assert_eq!(msg["from"], seed.id.as_str());
    assert_eq!(msg["encrypted"], false, "{msg}");

    // Ours -> seed: plain messages, no id, exactly once (no retransmission
    // although the seed never acks).
    ours.line("Hello seed!").await;
    let (msg, _) = seed.recv_until("message", |v| v["type"] == "message").await;
    assert_eq!(msg["body"], "Hello seed!");
    assert!(msg.get("id").is_none(), "{msg}");
    let sent = ours.event("sent").await;
    assert_eq!(sent["reliable"], false);
    // Over the next second only keep-alives arrive (answered by the seed).
    let quiet = tokio::time::timeout(
        Duration::from_millis(1500),
        seed.recv_until("no repeat", |v| v["type"] == "message"),
    )
    .await;
    assert!(quiet.is_err(), "message was sent again: {quiet:?}");
    // Keep-alive with a seed peer measures RTT from its nonce-less pong.
    ours.event("rtt").await;

    // The seed disconnects: ours reports it.
    seed.send("disconnect", "", ours_addr).await;
    assert_eq!(
        ours.event("disconnected").await["reason"],
        "remote_disconnect"
    );
    ours.line("/quit").await;
    assert_eq!(ours.exit_code().await, 0);
}

#[tokio::test]
async fn seed_protocol_peer_can_call_ours() {
    let server = start_server().await;
    let mut ours = PeerProc::start(&server, "rusty", &[]).await;
    let reg = ours.event("registered").await;
    let port = reg["udp_port"].as_u64().unwrap() as u16;
    let ours_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let seed = SeedPeer::register(&server, "seedy").await;

    // Seed style: look the peer up over REST and just send hello.
    let info: Value = reqwest::get(format!(
        "{}/peer/{}",
        server.url,
        reg["peer_id"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(info["port"].as_u64(), Some(u64::from(port)), "{info}");
    seed.send("hello", "", ours_addr).await;
    let connected = ours.event("connected").await;
    assert_eq!(connected["peer_id"], seed.id.as_str());
    assert_eq!(connected["reliable"], false);
    // Ours answered the hello (seed-parseable pong).
    seed.recv_until("answer", |v| v["type"] == "pong").await;

    seed.send("message", "hi there", ours_addr).await;
    assert_eq!(ours.event("message").await["text"], "hi there");
    ours.line("hi seed").await;
    let (msg, _) = seed.recv_until("message", |v| v["type"] == "message").await;
    assert_eq!(msg["body"], "hi seed");
    drop(ours.stdin.take());
    // A clean exit tells the seed peer.
    seed.recv_until("disconnect", |v| v["type"] == "disconnect")
        .await;
    assert_eq!(ours.exit_code().await, 0);
}

#[tokio::test]
async fn malformed_flood_does_not_disturb_a_live_session() {
    let server = start_server().await;
    let mut alice = PeerProc::start(&server, "alice", &[]).await;
    let reg = alice.event("registered").await;
    let alice_id = reg["peer_id"].as_str().unwrap().to_owned();
    let alice_addr: SocketAddr = ([127, 0, 0, 1], reg["udp_port"].as_u64().unwrap() as u16).into();
    let mut bob = PeerProc::start(&server, "bob", &["--connect", "alice"]).await;
    let bob_id = bob.event("registered").await["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.event("connected").await;
    alice.event("connected").await;
    // Only what the flood does counts: on a loaded machine a connect retry
    // can reset the fresh session once before the flood starts (seen as
    // `disconnected` `reset` then `connected` again), so let it settle and
    // forget what came before.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while alice.events.try_recv().is_ok() {}
    alice.seen.clear();

    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let oversized = format!(
        r#"{{"type":"message","from":"{bob_id}","timestamp":1,"body":"{}"}}"#,
        "x".repeat(9000)
    );
    let garbage: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"\x00\xff\xfe\x01".to_vec(),
        b"[1,2,3]".to_vec(),
        br#"{"type":"message"}"#.to_vec(),
        br#"{"type":"message","from":42,"timestamp":1,"body":"x"}"#.to_vec(),
        br#"{"type":"explode","from":"x","timestamp":1,"body":""}"#.to_vec(),
        br#"{"type":"message","from":"x","timestamp":"soon","body":"x"}"#.to_vec(),
        br#"{"type":"message","from":"x","timestamp":1,"body":{"nested":true}}"#.to_vec(),
        oversized.into_bytes(),
        // A stranger's chat message: not in a session, not a hello.
        br#"{"type":"message","from":"0badf00d-0000-4000-8000-000000000000","timestamp":1,"body":"spam"}"#.to_vec(),
        // Spoofed: Bob's id, but from the wrong address.
        format!(r#"{{"type":"message","from":"{bob_id}","timestamp":1,"body":"spoofed"}}"#).into_bytes(),
        format!(r#"{{"type":"disconnect","from":"{bob_id}","timestamp":1,"body":""}}"#).into_bytes(),
        format!(r#"{{"type":"ack","from":"{bob_id}","timestamp":1,"body":"","id":1,"upto":99}}"#).into_bytes(),
    ];
    for round in 0..50 {
        for g in &garbage {
            attacker.send_to(g, alice_addr).await.unwrap();
        }
        if round % 10 == 0 {
            bob.line(&format!("real {round}")).await;
        }
    }
    let mut texts = Vec::new();
    while texts.len() < 5 {
        let msg = alice.event("message").await;
        assert_eq!(msg["from"], bob_id.as_str());
        texts.push(msg["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        texts,
        ["real 0", "real 10", "real 20", "real 30", "real 40"]
    );
    alice.line("still fine").await;
    assert_eq!(bob.event("message").await["text"], "still fine");
    // The session is still up: nothing disconnected either side, and no
    // stray message (spam, spoofed) was shown.
    tokio::time::sleep(Duration::from_millis(700)).await;
    while let Ok(e) = alice.events.try_recv() {
        assert!(
            e["event"] != "disconnected" && e["event"] != "message",
            "{e}"
        );
    }
    let disconnected: Vec<_> = alice
        .seen
        .iter()
        .filter(|e| e["event"] == "disconnected")
        .collect();
    assert!(disconnected.is_empty(), "{disconnected:?}");
    alice.line("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    bob.wait("alice gone", |e| {
        e["event"] == "disconnected" && e["peer_id"] == alice_id.as_str()
    })
    .await;
    bob.line("/quit").await;
    assert_eq!(bob.exit_code().await, 0);
}

/// Reads a `--plain` peer's stdout until `pattern` shows up; returns all of
/// it so far.
async fn read_until(
    out: &mut tokio::process::ChildStdout,
    buf: &mut Vec<u8>,
    pattern: &str,
) -> String {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(buf).into_owned();
            if text.contains(pattern) {
                return text;
            }
            let mut chunk = [0u8; 4096];
            let n = out.read(&mut chunk).await.unwrap();
            assert!(n > 0, "peer closed stdout before {pattern:?}; got {text:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {pattern:?}; got {:?}",
            String::from_utf8_lossy(buf)
        )
    })
}

#[tokio::test]
async fn console_mode_is_seed_like_and_neutralises_escapes() {
    let server = start_server().await;
    let seed = SeedPeer::register(&server, "seedy").await;
    let mut child = Command::new(PEER.path())
        .args([
            "--server",
            &server.url,
            "--username",
            "carol",
            "--bind",
            "127.0.0.1",
            "--plain",
            "--ephemeral",
        ])
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = Vec::new();
    let text = read_until(&mut out, &mut buf, "Enter a peer number").await;
    assert!(text.contains("=== P2P Chat Client ==="), "{text}");
    assert!(text.contains("Username: carol"), "{text}");
    assert!(text.contains("Peer ID: "), "{text}");
    assert!(text.contains("Listening on port: "), "{text}");
    assert!(text.contains("Public address: 127.0.0.1:"), "{text}");
    assert!(
        text.contains("Available peers:\n  1. seedy (ID: "),
        "{text}"
    );

    // Seed style: pick the peer by its number.
    stdin.write_all(b"1\n").await.unwrap();
    let (_, ours_addr) = seed.recv_until("hello", |v| v["type"] == "hello").await;
    seed.send("hello", "", ours_addr).await;
    let text = read_until(&mut out, &mut buf, "--- Chat started.").await;
    assert!(
        text.contains(
            "Connected to seedy (NOT encrypted: seedy speaks the seed protocol; anyone on the \
             path can read and forge these lines)"
        ),
        "{text}"
    );

    // A hostile message: clear screen, bell, colour, CR. Marked: it came
    // in plaintext.
    seed.send("message", "\u{1b}[2J\u{7}evil\r\u{1b}[31mred", ours_addr)
        .await;
    let text = read_until(&mut out, &mut buf, "[31mred").await;
    assert!(
        text.contains(r"> [unencrypted] [seedy]: \x1b[2J\x07evil\x0d\x1b[31mred"),
        "{text:?}"
    );
    // /verify has no number to show for a plaintext session, and says so.
    stdin.write_all(b"/verify\n").await.unwrap();
    read_until(
        &mut out,
        &mut buf,
        "There is no encrypted session with seedy: it speaks the seed protocol",
    )
    .await;
    stdin.write_all(b"/status\n").await.unwrap();
    read_until(&mut out, &mut buf, "seed protocol, NOT encrypted)").await;
    assert!(
        !buf.contains(&0x1b) && !buf.contains(&0x07),
        "raw escape reached the terminal"
    );

    stdin.write_all(b"typed line\n").await.unwrap();
    let (msg, _) = seed.recv_until("message", |v| v["type"] == "message").await;
    assert_eq!(msg["body"], "typed line");
    stdin.write_all(b"/quit\n").await.unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    seed.recv_until("disconnect", |v| v["type"] == "disconnect")
        .await;
}

#[tokio::test]
async fn piped_input_faster_than_the_engine_never_deadlocks() {
    // More error events than the event channel holds, produced as fast as
    // stdin delivers lines: the front end must keep draining events.
    let server = start_server().await;
    let mut peer = PeerProc::start(&server, "flood", &[]).await;
    peer.event("registered").await;
    let lines = "x\n".repeat(6000);
    let mut stdin = peer.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        stdin.write_all(lines.as_bytes()).await.unwrap();
        // EOF afterwards: quit.
    });
    let mut errors = 0;
    while errors < 6000 {
        peer.wait("not_connected", |e| e["code"] == "not_connected")
            .await;
        errors += 1;
    }
    writer.await.unwrap();
    assert_eq!(peer.exit_code().await, 0);
}

#[tokio::test]
async fn help_lists_every_flag_with_its_env_var_and_bad_flags_fail() {
    let out = tokio::time::timeout(WAIT, Command::new(PEER.path()).arg("--help").output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--username", "P2PCHAT_USERNAME"),
        ("--server", "P2PCHAT_SERVER"),
        ("--connect", "P2PCHAT_CONNECT"),
        ("--port", "P2PCHAT_PORT"),
        ("--bind", "P2PCHAT_BIND"),
        ("--plain", "P2PCHAT_PLAIN"),
        ("--json", "P2PCHAT_JSON"),
        ("--keepalive-secs", "P2PCHAT_KEEPALIVE_SECS"),
        ("--missed-pongs", "P2PCHAT_MISSED_PONGS"),
        ("--probe-interval-ms", "P2PCHAT_PROBE_INTERVAL_MS"),
        ("--attempt-secs", "P2PCHAT_ATTEMPT_SECS"),
        ("--connect-attempts", "P2PCHAT_CONNECT_ATTEMPTS"),
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
        assert!(
            help.contains(&format!("env: {env}")),
            "{env} missing from --help"
        );
    }
    assert!(help.contains("http://localhost:8000"));
    for bad in [
        &["--keepalive-secs", "0"][..],
        &["--keepalive-secs", "nan"],
        &["--missed-pongs", "0"],
        &["--probe-interval-ms", "5"],
        &["--port", "70000"],
        &["--bind", "not-an-ip"],
        &["--json", "--plain"],
    ] {
        let out = tokio::time::timeout(WAIT, Command::new(PEER.path()).args(bad).output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?} accepted");
    }
    // The env-var fallback works: a bad value from the environment is
    // rejected the same way.
    let out = tokio::time::timeout(
        WAIT,
        Command::new(PEER.path())
            .env("P2PCHAT_MISSED_PONGS", "0")
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn server_killed_mid_chat_then_back_peers_re_register() {
    let mut server = start_server().await;
    let listen = server.url.trim_start_matches("http://").to_owned();
    let mut alice = PeerProc::start(&server, "alice", &[]).await;
    alice.event("registered").await;
    let mut bob = PeerProc::start(&server, "bob", &["--connect", "alice"]).await;
    bob.event("connected").await;
    alice.event("connected").await;

    // SIGKILL: no graceful stream ends, the connections just break.
    server._child.start_kill().unwrap();
    server._child.wait().await.unwrap();
    alice.event("server_lost").await;
    bob.event("server_lost").await;
    bob.line("the server is gone").await;
    assert_eq!(alice.event("message").await["text"], "the server is gone");
    alice.line("we carry on").await;
    assert_eq!(bob.event("message").await["text"], "we carry on");

    // Same address again; both re-register by themselves.
    let _server = start_server_on(&listen).await;
    alice.event("server_restored").await;
    bob.event("server_restored").await;
    // Bob shows up in Alice's live list again (he may re-register before
    // or after Alice's watch resumes, so ask until he is there).
    let mut listed = false;
    for _ in 0..50 {
        alice.line("/peers").await;
        let peers = alice.event("peers").await;
        if peers["peers"][0]["username"] == "bob" {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed, "bob never re-appeared");
    alice.line("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    bob.line("/quit").await;
    assert_eq!(bob.exit_code().await, 0);
}

/// The 60 digits of a safety number as 12 groups of 5.
fn assert_safety_number(number: &str) {
    let groups: Vec<&str> = number.split(' ').collect();
    assert_eq!(groups.len(), 12, "{number:?}");
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())),
        "{number:?}"
    );
}

#[tokio::test]
async fn json_peers_are_encrypted_and_agree_on_the_safety_number() {
    let server = start_server().await;
    let mut alice = PeerProc::start(&server, "alice", &[]).await;
    alice.event("registered").await;
    let mut bob = PeerProc::start(&server, "bob", &["--connect", "alice"]).await;
    let bob_connected = bob.event("connected").await;
    let alice_connected = alice.event("connected").await;
    for connected in [&bob_connected, &alice_connected] {
        assert_eq!(connected["encrypted"], true, "{connected}");
        // Present in the event, a number once the key is proven.
        assert!(connected.get("safety_number").is_some(), "{connected}");
    }
    let number = bob_connected["safety_number"]
        .as_str()
        .unwrap_or_else(|| panic!("no safety number: {bob_connected}"))
        .to_owned();
    assert_safety_number(&number);
    // The callee learned bob's key from the first handshake message.
    assert_eq!(
        alice_connected["safety_number"],
        number.as_str(),
        "both sides see the same digits"
    );

    bob.line("sealed hello").await;
    let msg = alice.event("message").await;
    assert_eq!(msg["text"], "sealed hello");
    assert_eq!(msg["encrypted"], true, "{msg}");
    alice.line("sealed reply").await;
    let msg = bob.event("message").await;
    assert_eq!(msg["encrypted"], true, "{msg}");

    // /verify in --json answers with a status: every session's number.
    for peer in [&mut alice, &mut bob] {
        peer.line("/verify").await;
        let status = peer.event("status").await;
        let session = &status["sessions"][0];
        assert_eq!(session["encrypted"], true, "{status}");
        assert_eq!(session["safety_number"], number.as_str(), "{status}");
    }
    alice.line("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    bob.line("/quit").await;
    assert_eq!(bob.exit_code().await, 0);
}

/// A `--plain --ephemeral` peer: its stdin and what it printed so far.
struct PlainPeer {
    child: Child,
    stdin: ChildStdin,
    out: tokio::process::ChildStdout,
    buf: Vec<u8>,
}

impl PlainPeer {
    async fn start(server: &Server, name: &str, extra: &[&str]) -> PlainPeer {
        PlainPeer::start_on(server, name, "127.0.0.1", extra).await
    }

    /// Bound to `bind` (`0.0.0.0`: every interface is a candidate, as for
    /// a user who gives no `--bind`).
    async fn start_on(server: &Server, name: &str, bind: &str, extra: &[&str]) -> PlainPeer {
        let mut child = Command::new(PEER.path())
            .args([
                "--server",
                &server.url,
                "--username",
                name,
                "--bind",
                bind,
                "--plain",
                "--ephemeral",
            ])
            .args(extra)
            .env("RUST_LOG", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        PlainPeer {
            stdin: child.stdin.take().unwrap(),
            out: child.stdout.take().unwrap(),
            child,
            buf: Vec::new(),
        }
    }

    async fn line(&mut self, text: &str) {
        self.stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Everything printed so far once `pattern` is in it.
    async fn until(&mut self, pattern: &str) -> String {
        read_until(&mut self.out, &mut self.buf, pattern).await
    }

    /// Forgets what was printed so far (the next `until` reads on).
    fn clear(&mut self) {
        self.buf.clear();
    }

    /// Types `/verify` and returns the safety number it prints (the rows
    /// after `Safety number with <peer>:`, joined).
    async fn verify(&mut self, peer: &str) -> String {
        self.clear();
        self.line("/verify").await;
        let text = self.until("Compare it with the number").await;
        let after = text
            .split(&format!("Safety number with {peer}:\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no safety number in {text:?}"));
        let rows: Vec<&str> = after.lines().take(3).map(str::trim).collect();
        let how = after.lines().nth(3).unwrap_or_default();
        assert!(how.starts_with("Compare it with the number"), "{text:?}");
        assert!(how.contains("out of band"), "{text:?}");
        rows.join(" ")
    }

    async fn quit(mut self) {
        self.line("/quit").await;
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("peer exits in time")
            .unwrap();
        assert_eq!(status.code(), Some(0));
    }
}

#[tokio::test]
async fn console_peers_say_encrypted_and_verify_the_same_number() {
    let server = start_server().await;
    let mut alice = PlainPeer::start(&server, "alice", &[]).await;
    alice.until("Username: alice").await;
    let mut bob = PlainPeer::start(&server, "bob", &["--connect", "alice"]).await;
    let text = bob.until("--- Chat started.").await;
    assert!(
        text.contains("Connected to alice (end-to-end encrypted; /verify shows the safety number)"),
        "{text}"
    );
    let text = alice.until("--- Chat started.").await;
    assert!(
        text.contains(
            "bob connected to us (end-to-end encrypted; /verify shows the safety number)"
        ),
        "{text}"
    );
    // Encrypted lines keep the seed's exact format: no mark.
    bob.line("hello alice").await;
    let text = alice.until("[bob]: hello alice").await;
    assert!(!text.contains("[unencrypted]"), "{text}");
    alice.line("hello bob").await;
    bob.until("> [alice]: hello bob").await;

    let on_bob = bob.verify("alice").await;
    let on_alice = alice.verify("bob").await;
    assert_safety_number(&on_bob);
    assert_eq!(on_bob, on_alice, "both sides must see the same digits");
    // /status lists the protection and the same number.
    bob.clear();
    bob.line("/status").await;
    let text = bob.until("safety number: ").await;
    let text = if text.contains(&on_bob) {
        text
    } else {
        bob.until(&on_bob).await
    };
    assert!(text.contains("end-to-end encrypted)"), "{text}");
    // By name too; an unknown name is answered after asking the engine.
    bob.clear();
    bob.line("/verify carol").await;
    bob.until("There is no encrypted session with carol").await;
    bob.quit().await;
    alice.quit().await;
}

#[tokio::test]
async fn require_encryption_refuses_a_seed_peer_both_ways() {
    let server = start_server().await;
    let seed = SeedPeer::register(&server, "seedy").await;
    // We call it: refused before a single datagram goes out.
    let mut ours = PeerProc::start(
        &server,
        "strict",
        &["--require-encryption", "--connect", "seedy"],
    )
    .await;
    let reg = ours.event("registered").await;
    let error = ours.event("error").await;
    assert_eq!(error["code"], "refused", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("seedy"), "{message}");
    assert!(message.contains("does not encrypt"), "{message}");
    assert!(message.contains("--require-encryption"), "{message}");
    // It calls us: its hellos are dropped, nothing answers them.
    let ours_addr: SocketAddr = ([127, 0, 0, 1], reg["udp_port"].as_u64().unwrap() as u16).into();
    for _ in 0..5 {
        seed.send("hello", "", ours_addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = tokio::time::timeout(
        Duration::from_millis(1500),
        seed.recv_until("any answer", |_| true),
    )
    .await;
    assert!(answer.is_err(), "a refused seed peer got {answer:?}");
    ours.line("/status").await;
    let status = ours.event("status").await;
    assert_eq!(status["sessions"], json!([]), "{status}");
    assert!(
        !ours.seen.iter().any(|e| e["event"] == "connected"),
        "{:?}",
        ours.seen
    );
    ours.line("/quit").await;
    assert_eq!(ours.exit_code().await, 0);
}

#[tokio::test]
async fn require_encryption_in_the_console_says_why() {
    let server = start_server().await;
    let _seed = SeedPeer::register(&server, "seedy").await;
    let mut ours = PlainPeer::start(&server, "strict", &["--require-encryption"]).await;
    ours.until("1. seedy (ID: ").await;
    ours.line("seedy").await;
    let text = ours.until("and --require-encryption is set").await;
    assert!(
        text.contains("Error: refusing to connect to seedy: it does not encrypt"),
        "{text}"
    );
    assert!(!text.contains("--- Chat started."), "{text}");
    ours.quit().await;
}

/// Issue 13: the caller says "Connecting to", the called side only that
/// the peer is connecting; the first path settling on a better address is
/// not announced as a change (all interfaces bound, so each peer has a
/// LAN address besides loopback where the machine has one); never `> > `.
#[tokio::test]
async fn console_connect_messages_say_who_calls_and_no_path_change() {
    let server = start_server().await;
    let mut alice = PlainPeer::start_on(&server, "alice", "0.0.0.0", &[]).await;
    alice.until("Username: alice").await;
    let mut bob = PlainPeer::start_on(&server, "bob", "0.0.0.0", &["--connect", "alice"]).await;
    let on_bob = bob.until("--- Chat started.").await;
    assert!(
        on_bob.contains("> Connecting to alice (attempt 1, probing "),
        "{on_bob}"
    );
    let on_alice = alice.until("--- Chat started.").await;
    assert!(on_alice.contains("> bob is connecting...\n"), "{on_alice}");
    assert!(on_alice.contains("bob connected to us"), "{on_alice}");
    assert!(!on_alice.contains("Connecting to bob"), "{on_alice}");
    // A round trip each way, then a keep-alive or two: any settling is over.
    bob.line("hi alice").await;
    alice.until("[bob]: hi alice").await;
    alice.line("hi bob").await;
    bob.until("[alice]: hi bob").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bob.line("/status").await;
    bob.until("Signaling server: connected").await;
    alice.line("/status").await;
    alice.until("Signaling server: connected").await;
    for (who, peer) in [("alice", &alice), ("bob", &bob)] {
        let text = String::from_utf8_lossy(&peer.buf);
        assert!(!text.contains("now uses the"), "{who}: {text}");
        assert!(!text.contains("> > "), "{who}: {text}");
    }
    bob.quit().await;
    alice.quit().await;
}

/// Issue 13: after `/leave` a chat line is not a peer name; naming
/// ourselves says it is us.
#[tokio::test]
async fn console_after_leave_and_connecting_to_ourselves() {
    let server = start_server().await;
    let mut alice = PlainPeer::start(&server, "alice", &[]).await;
    alice.until("Username: alice").await;
    let mut bob = PlainPeer::start(&server, "bob", &["--connect", "alice"]).await;
    bob.until("--- Chat started.").await;
    bob.line("/leave").await;
    bob.until("* Disconnected from alice.").await;
    bob.clear();
    bob.line("after leave").await;
    let text = bob
        .until("No chat is open: pick a peer with /connect <number, id or name>, or /peers")
        .await;
    assert!(!text.contains("no online peer matches"), "{text}");
    bob.line("/connect bob").await;
    let text = bob.until("is you").await;
    assert!(
        text.contains("Error: 'bob' is you; pick another peer (/peers lists who is online)"),
        "{text}"
    );
    // /peers asks for a peer again: a plain line picks one, seed style.
    bob.line("/peers").await;
    bob.until("Enter a peer number").await;
    bob.clear();
    bob.line("1").await;
    bob.until("--- Chat started.").await;
    bob.quit().await;
    alice.quit().await;
}

/// Issue 13: `--connect alice` started before alice registers waits for
/// her (with a message) and connects when she comes online.
#[tokio::test]
async fn console_connect_at_start_waits_for_the_peer_to_register() {
    let server = start_server().await;
    let mut bob = PlainPeer::start(&server, "bob", &["--connect", "alice"]).await;
    bob.until("alice is not online yet; waiting for it to come online (up to 3 attempts of 2s)...")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut alice = PlainPeer::start(&server, "alice", &[]).await;
    let text = bob.until("--- Chat started.").await;
    assert!(text.contains("Connected to alice"), "{text}");
    assert!(!text.contains("no online peer matches"), "{text}");
    alice.until("bob connected to us").await;
    bob.quit().await;
    alice.quit().await;
}
