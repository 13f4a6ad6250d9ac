//! The REST shim over HTTP/1.1 on the same port as gRPC: the seed's response
//! shapes field by field, FastAPI-style errors, token checks, limits, and
//! one registry shared with gRPC.

mod support;

use std::time::Duration;

use p2pchat::proto::{
    GetPeerRequest, ListPeersRequest, PeerChangeKind, RegisteredVia, WatchPeersRequest,
};
use p2pchat_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

struct Rest {
    base: String,
    http: reqwest::Client,
}

impl Rest {
    fn new(server: &p2pchat_server::RunningServer) -> Self {
        Rest {
            base: format!("http://{}", server.local_addr()),
            http: reqwest::Client::builder().timeout(WAIT).build().unwrap(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn register(&self, body: Value) -> (StatusCode, Value) {
        self.post_raw("/register", body.to_string()).await
    }

    async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.delete(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap())
    }
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[tokio::test]
async fn seed_shapes_field_by_field() {
    let server = start_default().await;
    let rest = Rest::new(&server);

    let (status, root) = rest.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        root,
        json!({"service": "P2P Chat Signaling Server", "status": "running", "peers_online": 0})
    );

    let id = new_id();
    let (status, reg) = rest
        .register(json!({"peer_id": id, "username": "Alice", "port": 54321}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&reg),
        [
            "status",
            "message",
            "peer_id",
            "public_ip",
            "token",
            "lease_seconds"
        ]
    );
    assert_eq!(reg["status"], "success");
    assert_eq!(reg["message"], "Peer registered successfully");
    assert_eq!(reg["peer_id"], id.as_str());
    assert_eq!(reg["public_ip"], "127.0.0.1");
    assert_eq!(reg["lease_seconds"], 600);
    let token = reg["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);

    let (status, peer) = rest.get(&format!("/peer/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        peer,
        json!({"peer_id": id, "username": "Alice", "ip": "127.0.0.1", "port": 54321, "public_key": null}),
        "the seed's fields, and the key (none for a REST peer)"
    );

    let (status, peers) = rest.get("/peers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&peers), ["peers", "count"]);
    assert_eq!(peers["count"], 1);
    let entry = &peers["peers"][0];
    assert_eq!(
        keys(entry),
        [
            "peer_id",
            "username",
            "ip",
            "port",
            "online",
            "last_seen",
            "public_key"
        ]
    );
    assert_eq!(entry["public_key"], Value::Null);
    assert_eq!(entry["peer_id"], id.as_str());
    assert_eq!(entry["username"], "Alice");
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(entry["port"], 54321);
    assert_eq!(entry["online"], true);
    let last_seen = entry["last_seen"].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last_seen).abs() < 60.0, "{last_seen} vs {now}");

    let (status, st) = rest.get("/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&st),
        ["status", "total_peers", "online_peers", "peer_list"]
    );
    assert_eq!(st["status"], "running");
    assert_eq!(st["total_peers"], 1);
    assert_eq!(st["online_peers"], 1);
    assert_eq!(
        st["peer_list"],
        json!([{"peer_id": id, "username": "Alice", "online": true}])
    );

    let (status, del) = rest.delete(&format!("/peer/{id}"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        del,
        json!({"status": "success", "message": "Peer unregistered"})
    );
    let (status, body) = rest.get(&format!("/peer/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Peer not found"}));
    server.shutdown().await;
}

#[tokio::test]
async fn username_is_optional_like_the_seed() {
    let server = start_default().await;
    let rest = Rest::new(&server);
    let id = "b9c8d7e6-f5e4-d3c2-b1a0-9876543210ab";
    let (status, _) = rest.register(json!({"peer_id": id, "port": 9})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, peer) = rest.get(&format!("/peer/{id}")).await;
    assert_eq!(peer["username"], "user_b9c8d7e6");
    let (status, _) = rest
        .register(json!({"peer_id": new_id(), "username": null, "port": 9}))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn validation_errors_are_fastapi_style_422() {
    let server = start_default().await;
    let rest = Rest::new(&server);

    let (status, body) = rest.post_raw("/register", "{not json").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "json_invalid");

    let (status, body) = rest.post_raw("/register", "[1, 2]").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "model_attributes_type");

    // Every missing field is reported at once.
    let (status, body) = rest.register(json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"detail": [
            {"type": "missing", "loc": ["body", "peer_id"], "msg": "Field required"},
            {"type": "missing", "loc": ["body", "port"], "msg": "Field required"},
        ]})
    );

    let (status, body) = rest
        .register(json!({"peer_id": 5, "username": [], "port": "80"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let types: Vec<_> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["string_type", "string_type", "int_type"]);

    let cases = [
        (
            json!({"peer_id": "nope", "port": 1}),
            "peer_id",
            "must be a UUID",
        ),
        (
            json!({"peer_id": new_id(), "port": 0}),
            "port",
            "between 1 and 65535",
        ),
        (
            json!({"peer_id": new_id(), "port": 65536}),
            "port",
            "between 1 and 65535",
        ),
        (
            json!({"peer_id": new_id(), "port": 1, "username": "x".repeat(65)}),
            "username",
            "at most 64 characters",
        ),
        (
            json!({"peer_id": new_id(), "port": 1, "username": "\u{7}bell"}),
            "username",
            "control characters",
        ),
    ];
    for (body, field, needle) in cases {
        let (status, resp) = rest.register(body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
        assert_eq!(resp["detail"][0]["loc"], json!(["body", field]));
        let msg = resp["detail"][0]["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle:?} in {msg:?}");
    }
    // Every bad value is reported at once too, not only the first.
    let (status, resp) = rest
        .register(json!({"peer_id": "x", "port": 0, "username": "\u{7}bell"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    let fields: Vec<_> = resp["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"][1].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["peer_id", "username", "port"], "{resp}");
    // The accepted edges: 64 characters and port 65535.
    let (status, _) = rest
        .register(json!({"peer_id": new_id(), "port": 65535, "username": "x".repeat(64)}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Nothing invalid was stored.
    let (_, st) = rest.get("/status").await;
    assert_eq!(st["total_peers"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_guard_reregister_and_delete() {
    let server = start_default().await;
    let rest = Rest::new(&server);
    let id = new_id();
    let (_, reg) = rest
        .register(json!({"peer_id": id, "username": "Alice", "port": 1000}))
        .await;
    let token = reg["token"].as_str().unwrap().to_owned();

    let (status, body) = rest
        .register(json!({"peer_id": id, "username": "Mallory", "port": 6666}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["detail"].as_str().unwrap().contains("session token"));

    let (status, _) = rest.delete(&format!("/peer/{id}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = rest.delete(&format!("/peer/{id}"), Some("bad")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = rest
        .delete(&format!("/peer/{}", new_id()), Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, peer) = rest.get(&format!("/peer/{id}")).await;
    assert_eq!(peer["username"], "Alice");

    // The owner refreshes with its token in the body, then via the header.
    let (status, again) = rest
        .register(json!({"peer_id": id, "username": "Alice", "port": 1001, "token": token}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["token"], token.as_str());
    let resp = rest
        .http
        .post(format!("{}/register", rest.base))
        .bearer_auth(&token)
        .json(&json!({"peer_id": id, "port": 1002}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, peer) = rest.get(&format!("/peer/{id}")).await;
    assert_eq!(peer["port"], 1002);

    // DELETE also takes ?token= for simple clients.
    let resp = rest
        .http
        .delete(format!("{}/peer/{id}?token={token}", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn body_size_limit_at_its_edge() {
    let limit = 1024;
    let server = start(ServerConfig {
        max_body_bytes: limit,
        ..Default::default()
    })
    .await;
    let rest = Rest::new(&server);
    let body = |len: usize| {
        let core = json!({"peer_id": new_id(), "port": 7}).to_string();
        // Pad with whitespace inside the object: still valid JSON.
        let pad = " ".repeat(len - core.len());
        format!("{}{pad}}}", &core[..core.len() - 1])
    };
    let exact = body(limit);
    assert_eq!(exact.len(), limit);
    let (status, _) = rest.post_raw("/register", exact).await;
    assert_eq!(status, StatusCode::OK);
    let (status, resp) = rest.post_raw("/register", body(limit + 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        resp["detail"]
            .as_str()
            .unwrap()
            .contains("--max-body-bytes")
    );
    let (_, st) = rest.get("/status").await;
    assert_eq!(st["total_peers"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn full_registry_answers_503_and_keeps_serving() {
    let mut config = ServerConfig::default();
    config.registry.max_peers = 2;
    let server = start(config).await;
    let rest = Rest::new(&server);
    for port in [1, 2] {
        let (status, _) = rest
            .register(json!({"peer_id": new_id(), "port": port}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = rest.register(json!({"peer_id": new_id(), "port": 3})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["detail"],
        "registry is full: at most 2 peers may be registered"
    );
    let (status, peers) = rest.get("/peers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(peers["count"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let server = start_default().await;
    let rest = Rest::new(&server);
    let (status, body) = rest.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Not Found"}));
    let (status, body) = rest.get("/peer/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Peer not found"}));
    let resp = rest
        .http
        .put(format!("{}/peers", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Method Not Allowed"}));
    server.shutdown().await;
}

#[tokio::test]
async fn rest_lease_outlives_grpc_lease_and_expiry_goes_offline() {
    let mut config = ServerConfig {
        lease: Duration::from_secs(1),
        ..Default::default()
    };
    config.registry.rest_lease = Duration::from_secs(2);
    let server = start(config).await;
    let rest = Rest::new(&server);
    let id = new_id();
    rest.register(json!({"peer_id": id, "port": 5})).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Past the gRPC lease, still inside the REST one.
    let (status, _) = rest.get(&format!("/peer/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = rest.get(&format!("/peer/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Peer is offline"}));
    let (_, peers) = rest.get("/peers").await;
    assert_eq!(peers["count"], 0);
    let (_, st) = rest.get("/status").await;
    assert_eq!(
        (st["total_peers"].clone(), st["online_peers"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(st["peer_list"][0]["online"], false);
    server.shutdown().await;
}

#[tokio::test]
async fn rest_and_grpc_share_one_registry() {
    let server = start_default().await;
    let rest = Rest::new(&server);
    let mut grpc = client(&server).await;
    let mut watch = grpc
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    read_snapshot(&mut watch).await;

    // REST -> gRPC (GetPeer, ListPeers, WatchPeers).
    let seed_id = new_id();
    rest.register(json!({"peer_id": seed_id, "username": "Seed", "port": 4000}))
        .await;
    let joined = next_change(&mut watch).await;
    assert_eq!(joined.kind, PeerChangeKind::Joined as i32);
    let p = joined.peer.unwrap();
    assert_eq!(p.peer_id, seed_id);
    assert_eq!(p.registered_via, RegisteredVia::Rest as i32);
    let got = grpc
        .get_peer(GetPeerRequest {
            peer_id: seed_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert_eq!((got.username.as_str(), got.udp_port), ("Seed", 4000));

    // gRPC -> REST.
    let (grpc_id, _) = register(&mut grpc, "Native", 4001).await;
    let (_, peer) = rest.get(&format!("/peer/{grpc_id}")).await;
    assert_eq!(peer["username"], "Native");
    let list = grpc
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_count, 2);
    let (_, peers) = rest.get("/peers").await;
    assert_eq!(peers["count"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_at_its_edge() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(ServerConfig {
        max_connections: 2,
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two connections are served and held open (keep-alive).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(conn);
    }
    // The third is closed without an answer.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(request).await;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, third.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection past the limit must be closed");
    // Freeing a slot lets a new client in.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = conn.write_all(request).await;
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        if n > 0 {
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}
