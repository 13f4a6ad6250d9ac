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
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot serve on {addr}")), "{err}");
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

#[tokio::test]
async fn serves_then_exits_cleanly_on_sigterm() {
    let mut child = Command::new(BIN.path())
        .args(["--listen", "127.0.0.1:0", "--udp-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
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

    let body: serde_json::Value = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "running");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
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
