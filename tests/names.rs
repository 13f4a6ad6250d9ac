//! Input rules of registrations against the real server on 127.0.0.1:0,
//! over both APIs: usernames (NFC, no invisible characters, one script, no
//! lookalike of an online peer's name), unicast endpoints only, and JSON-only
//! REST bodies (the seed's Python client, `requests` with `json=`, still
//! works).

mod support;

use std::io::Write;
use std::process::Command;

use p2pchat::proto::{self, RegisterRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{client, new_id, start_default};
use tonic::Code;

async fn grpc_register(
    c: &mut proto::signaling_client::SignalingClient<tonic::transport::Channel>,
    peer_id: &str,
    name: &str,
    token: &str,
) -> Result<proto::RegisterResponse, tonic::Status> {
    c.register(RegisterRequest {
        peer_id: peer_id.into(),
        username: name.into(),
        udp_port: 4000,
        session_token: token.into(),
        ..Default::default()
    })
    .await
    .map(tonic::Response::into_inner)
}

async fn rest_register(base: &str, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn lookalike_and_invisible_names_are_refused() {
    let server = start_default().await;
    let base = format!("http://{}", server.local_addr());
    let mut c = client(&server).await;
    let alice = new_id();
    let token = grpc_register(&mut c, &alice, "Alice", "")
        .await
        .unwrap()
        .session_token;

    let invalid = [
        "\u{410}lice",   // Cyrillic А + Latin: mixed scripts
        "Alice\u{200b}", // zero-width space
        "\u{202e}ecilA", // right-to-left override
    ];
    for name in invalid {
        let err = grpc_register(&mut c, &new_id(), name, "")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}: {err:?}");
        let (status, body) = rest_register(
            &base,
            json!({"peer_id": new_id(), "username": name, "port": 4000}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "username"]));
    }
    // Lookalikes of (and the same name as) the online Alice.
    for name in ["\u{ff21}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", "Alice", "AIice"] {
        let err = grpc_register(&mut c, &new_id(), name, "")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{name:?}: {err:?}");
        let (status, body) = rest_register(
            &base,
            json!({"peer_id": new_id(), "username": name, "port": 4000}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{name:?}");
        assert!(body["detail"].as_str().unwrap().contains("taken"), "{body}");
    }
    // Alice herself re-registers under her name.
    grpc_register(&mut c, &alice, "Alice", &token)
        .await
        .expect("the same id keeps its name");
    // Once she leaves, the name is free.
    c.unregister(proto::UnregisterRequest {
        peer_id: alice,
        session_token: token,
    })
    .await
    .unwrap();
    grpc_register(&mut c, &new_id(), "Alice", "")
        .await
        .expect("free once Alice is gone");
    server.shutdown().await;
}

#[tokio::test]
async fn ordinary_names_in_other_scripts_work_and_are_nfc() {
    let server = start_default().await;
    let base = format!("http://{}", server.local_addr());
    let mut c = client(&server).await;
    for name in ["José", "Мария", "太郎", "山田 太郎", "Ζωή"] {
        let resp = grpc_register(&mut c, &new_id(), name, "")
            .await
            .expect(name);
        assert_eq!(resp.peer.unwrap().username, name);
    }
    for name in ["Zoë", "Ελένη"] {
        let (status, body) = rest_register(
            &base,
            json!({"peer_id": new_id(), "username": name, "port": 4000}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    // A decomposed "é" (e + U+0301) is stored precomposed.
    let resp = grpc_register(&mut c, &new_id(), "Rene\u{301}", "")
        .await
        .unwrap();
    assert_eq!(resp.peer.unwrap().username, "Ren\u{e9}");
    server.shutdown().await;
}

#[tokio::test]
async fn non_unicast_endpoints_are_refused() {
    let server = start_default().await;
    let base = format!("http://{}", server.local_addr());
    let mut c = client(&server).await;
    let refused = [
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "240.0.0.1",
        "0.1.2.3",
    ];
    for ip in refused {
        let err = c
            .register(RegisterRequest {
                peer_id: new_id(),
                udp_port: 4000,
                endpoints: vec![proto::Endpoint {
                    ip: ip.into(),
                    port: 4000,
                    kind: proto::EndpointKind::Local as i32,
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{ip}: {err:?}");
        assert!(err.message().contains("unicast"), "{ip}: {err:?}");
        let (status, body) = rest_register(
            &base,
            json!({"peer_id": new_id(), "port": 4000, "endpoints": [{"ip": ip, "port": 4000}]}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{ip}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "endpoints.ip"]));
    }
    let (status, body) = rest_register(
        &base,
        json!({"peer_id": new_id(), "port": 4000, "endpoints": [{"ip": "192.0.2.7", "port": 4000}, {"ip": "2001:db8::7", "port": 4000}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "unicast endpoints: {body}");
    server.shutdown().await;
}

#[tokio::test]
async fn register_takes_only_json_bodies() {
    let server = start_default().await;
    let url = format!("http://{}/register", server.local_addr());
    let http = reqwest::Client::new();
    let body = || json!({"peer_id": new_id(), "port": 4000}).to_string();
    let cases: [(Option<&str>, StatusCode); 6] = [
        (Some("text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            Some("application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("multipart/form-data; boundary=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("application/json; charset=utf-8"), StatusCode::OK),
        (Some("Application/JSON"), StatusCode::OK),
    ];
    for (content_type, expected) in cases {
        let mut req = http.post(&url).body(body());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), expected, "{content_type:?}");
    }
    server.shutdown().await;
}

/// Whether python3 with `requests` can run; under CI its absence fails.
fn python_requests_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let ci = std::env::var("CI")
            .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
            .unwrap_or(false);
        assert!(
            !ci,
            "python3 with requests is required under CI (apt-get install python3-requests)"
        );
        let _ = writeln!(std::io::stderr(), "skipped: python3 requests not installed");
    }
    found
}

/// The seed's client registers with `requests.post(url, json=...)`.
#[cfg_attr(missing_requests, ignore = "python3 requests is not installed")]
#[tokio::test]
async fn the_seed_python_client_still_registers() {
    if !python_requests_available() {
        return;
    }
    let server = start_default().await;
    let url = format!("http://{}/register", server.local_addr());
    let id = new_id();
    let script = format!(
        "import requests, sys\n\
         r = requests.post({url:?}, json={{'peer_id': {id:?}, 'username': 'Seed', 'port': 4000}}, timeout=10)\n\
         print(r.status_code)\n\
         sys.exit(0 if r.status_code == 200 and r.json()['status'] == 'success' else 1)\n"
    );
    let out =
        tokio::task::spawn_blocking(move || Command::new("python3").args(["-c", &script]).output())
            .await
            .unwrap()
            .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let peer = server
        .store()
        .get(&p2pchat::PeerId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(peer.username, "Seed");
    server.shutdown().await;
}
