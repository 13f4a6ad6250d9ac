//! The real `signaling-server` binary: flags documented in --help with their
//! env vars, serving on a port it logs, and a clean exit on SIGTERM.

#[path = "support/bins.rs"]
mod bins;
use bins::SERVER as BIN;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[test]
fn help_documents_every_flag_with_its_env_var() {
    let out = std::process::Command::new(BIN.path())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "P2PCHAT_LISTEN"),
        ("--lease-secs", "P2PCHAT_LEASE_SECS"),
        ("--rest-lease-secs", "P2PCHAT_REST_LEASE_SECS"),
        ("--offline-retention-secs", "P2PCHAT_OFFLINE_RETENTION_SECS"),
        ("--max-peers", "P2PCHAT_MAX_PEERS"),
        ("--max-endpoints", "P2PCHAT_MAX_ENDPOINTS"),
        ("--max-watchers", "P2PCHAT_MAX_WATCHERS"),
        ("--watch-buffer", "P2PCHAT_WATCH_BUFFER"),
        ("--history-len", "P2PCHAT_HISTORY_LEN"),
        ("--max-body-bytes", "P2PCHAT_MAX_BODY_BYTES"),
        ("--max-message-bytes", "P2PCHAT_MAX_MESSAGE_BYTES"),
        ("--max-connections", "P2PCHAT_MAX_CONNECTIONS"),
        (
            "--max-streams-per-connection",
            "P2PCHAT_MAX_STREAMS_PER_CONNECTION",
        ),
        ("--max-page-size", "P2PCHAT_MAX_PAGE_SIZE"),
        ("--shutdown-grace-secs", "P2PCHAT_SHUTDOWN_GRACE_SECS"),
        ("--udp-listen", "P2PCHAT_UDP_LISTEN"),
        ("--relay-max-sessions", "P2PCHAT_RELAY_MAX_SESSIONS"),
        ("--relay-idle-secs", "P2PCHAT_RELAY_IDLE_SECS"),
        ("--relay-rate-pps", "P2PCHAT_RELAY_RATE_PPS"),
        ("--relay-rate-bytes", "P2PCHAT_RELAY_RATE_BYTES"),
        ("--stun-rate", "P2PCHAT_STUN_RATE"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(help.contains(&format!("env: {env}")), "--help lacks {env}");
    }
}

#[test]
fn bad_flag_values_are_refused_clearly() {
    let out = std::process::Command::new(BIN.path())
        .args(["--lease-secs", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lease-secs"), "{err}");
    let out = std::process::Command::new(BIN.path())
        .args(["--listen", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = std::process::Command::new(BIN.path())
        .args(["--listen", &addr.to_string()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on TCP {addr}")),
        "{err}"
    );
    // A user's error, not a bug: no backtrace even when asked for one.
    assert!(!err.contains("backtrace"), "{err}");
    assert!(!err.contains("Stack"), "{err}");
}

#[test]
fn busy_udp_port_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = std::process::Command::new(BIN.path())
        .args(["--listen", "127.0.0.1:0", "--udp-listen", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot bind UDP {addr}")), "{err}");
    let out = std::process::Command::new(BIN.path())
        .args(["--udp-listen", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("or 'off'"), "{err}");
}

type StderrLines = tokio::io::Lines<BufReader<tokio::process::ChildStderr>>;

/// Starts the real binary on loopback ports with `extra` flags and `RUST_LOG`
/// = `log`, and returns it, its stderr lines and the REST/gRPC address it
/// logged.
async fn spawn_server(extra: &[&str], log: &str) -> (tokio::process::Child, StderrLines, String) {
    let mut child = Command::new(BIN.path())
        .args(["--listen", "127.0.0.1:0", "--udp-listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", log)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("local_addr=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("server exited before logging its address");
    })
    .await
    .expect("address logged in time");
    (child, lines, addr)
}

/// Sends `signal` (e.g. "-TERM") to the child.
fn send_signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[tokio::test]
async fn serves_then_exits_cleanly_on_sigterm() {
    let (mut child, mut lines, addr) = spawn_server(&[], "info").await;
    let body: serde_json::Value = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "running");

    send_signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits in time after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(
        rest.iter().any(|l| l.contains("signaling server stopped")),
        "{rest:?}"
    );
}

/// `signaling-server 2>&1 | tee log` with `tee` gone: every later log write
/// fails with EPIPE. Before, tracing-subscriber reported that with a
/// panicking `eprintln!`, which killed request tasks and the signal task.
#[tokio::test]
async fn a_closed_log_pipe_neither_fails_requests_nor_blocks_shutdown() {
    let (mut child, lines, addr) = spawn_server(&[], "debug").await;
    drop(lines); // the reader goes away: stderr is now a broken pipe
    let http = reqwest::Client::new();
    for n in 0..5 {
        let id = uuid::Uuid::new_v4().to_string();
        let resp = http
            .post(format!("http://{addr}/register"))
            .json(&serde_json::json!({"peer_id": id, "username": format!("pipe{n}"), "port": 40000 + n}))
            .send()
            .await
            .expect("the server still answers");
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "registration {n}");
    }
    let peers: serde_json::Value = http
        .get(format!("http://{addr}/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(peers["count"], 5, "{peers}");

    send_signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("SIGTERM still stops the server")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A client holding a connection open makes the graceful shutdown wait (up
/// to the grace period); a second signal does not.
#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (mut child, mut lines, addr) =
        spawn_server(&["--shutdown-grace-secs", "120"], "info").await;
    // A request whose body never arrives keeps its connection busy.
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let partial = "POST /register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                   Content-Length: 100\r\n\r\n{";
    tokio::io::AsyncWriteExt::write_all(&mut held, partial.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_signal(&child, "-INT");
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("shutdown signal received") {
                return;
            }
        }
    })
    .await
    .expect("the first signal starts the shutdown");
    let waited = tokio::time::timeout(Duration::from_millis(1500), child.wait()).await;
    assert!(
        waited.is_err(),
        "the graceful shutdown waits for the open connection"
    );
    send_signal(&child, "-INT");
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("the second signal exits at once")
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    drop(held);
}
