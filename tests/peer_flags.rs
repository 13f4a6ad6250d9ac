//! The real `peer` binary refuses bad start-up input itself, in one clear
//! line, before it talks to any server.

#[path = "support/bins.rs"]
mod bins;
use bins::PEER;

use std::process::Command;

/// Runs `peer` with `args` and no server to reach (port 9 on loopback has
/// no listener); returns its exit code and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(PEER.path())
        .args(["--server", "http://127.0.0.1:9", "--ephemeral", "--plain"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_username_over_the_limit_is_a_usage_error_not_an_unreachable_server() {
    let long = "x".repeat(p2pchat::MAX_USERNAME_CHARS + 1);
    let (code, err) = run(&["--username", &long]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("at most 64 characters, got 65"), "{err}");
    assert!(!err.contains("unreachable"), "{err}");
}

#[test]
fn a_busy_chat_port_says_why_once() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) = run(&["--bind", "127.0.0.1", "--port", &port]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot bind UDP socket"), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}
