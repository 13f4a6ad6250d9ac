//! Per-source quotas against the real server on 127.0.0.1:0: one source
//! (clients bound to 127.0.0.1) goes past each quota and is refused (HTTP
//! 429 with Retry-After, RESOURCE_EXHAUSTED) while a client bound to another
//! loopback address (127.0.0.2, ...) is unaffected. Includes scaled-down
//! versions of issue 12's attacks. Every loop is bounded in count and time.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use p2pchat::proto::signaling_client::SignalingClient;
use p2pchat::proto::{self, RegisterRequest};
use p2pchat_server::ServerConfig;
use p2pchat_server::quota::{
    DEFAULT_CONNECTS_PER_CALLER, DEFAULT_CONNECTS_PER_TARGET, DEFAULT_REGISTRATIONS_PER_SOURCE,
    DEFAULT_WATCHERS_PER_SOURCE,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{WAIT, new_id, read_snapshot, register, start, start_default};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A gRPC client whose TCP socket is bound to `from`.
async fn grpc_from(
    server: &p2pchat_server::RunningServer,
    from: IpAddr,
) -> SignalingClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .local_address(Some(from))
        .connect()
        .await
        .expect("connects from another loopback address");
    SignalingClient::new(channel)
}

/// A REST client whose TCP sockets are bound to `from`.
fn rest_from(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap()
}

async fn rest_register(
    http: &reqwest::Client,
    server: &p2pchat_server::RunningServer,
    body: Value,
) -> reqwest::Response {
    http.post(format!("http://{}/register", server.local_addr()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A 429 with a whole-seconds Retry-After of at least 1.
fn assert_429(resp: &reqwest::Response) -> u64 {
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(secs >= 1);
    secs
}

async fn grpc_register(
    c: &mut SignalingClient<Channel>,
    name: &str,
) -> Result<(String, String), tonic::Status> {
    let peer_id = new_id();
    let resp = c
        .register(RegisterRequest {
            peer_id: peer_id.clone(),
            username: name.into(),
            udp_port: 4000,
            ..Default::default()
        })
        .await?;
    Ok((peer_id, resp.into_inner().session_token))
}

#[tokio::test]
async fn registrations_per_source_at_the_default_edge_rest_and_grpc_together() {
    let server = start_default().await;
    let n = DEFAULT_REGISTRATIONS_PER_SOURCE;
    let http = rest_from(loopback(1));
    let mut grpc = grpc_from(&server, loopback(1)).await;
    let mut first = None;
    for i in 0..n {
        if i % 2 == 0 {
            let resp = rest_register(
                &http,
                &server,
                json!({"peer_id": new_id(), "username": format!("r{i}"), "port": 4000}),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::OK, "registration {i}");
        } else {
            let reg = grpc_register(&mut grpc, &format!("g{i}"))
                .await
                .expect("within the quota");
            first.get_or_insert(reg);
        }
    }
    // N + 1: refused over both APIs.
    let resp = rest_register(&http, &server, json!({"peer_id": new_id(), "port": 4000})).await;
    assert_429(&resp);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("at most 64"),
        "{body}"
    );
    let err = grpc_register(&mut grpc, "one-too-many").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // A refresh of one's own registration is not a new one.
    let (id, token) = first.expect("a gRPC registration");
    grpc.register(RegisterRequest {
        peer_id: id.clone(),
        username: "g1".into(),
        udp_port: 4001,
        session_token: token.clone(),
        ..Default::default()
    })
    .await
    .expect("a refresh at the quota");

    // Another address is unaffected, over both APIs.
    let other = rest_from(loopback(2));
    let resp = rest_register(&other, &server, json!({"peer_id": new_id(), "port": 4000})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut other_grpc = grpc_from(&server, loopback(2)).await;
    grpc_register(&mut other_grpc, "other")
        .await
        .expect("another source registers");

    // Unregistering gives a slot back.
    grpc.unregister(proto::UnregisterRequest {
        peer_id: id,
        session_token: token,
    })
    .await
    .unwrap();
    grpc_register(&mut grpc, "after-unregister")
        .await
        .expect("a slot came back");
    server.shutdown().await;
}

/// Issue 12: "100k registrations in 4.5 s (then every new peer gets 503)".
/// Scaled down: a registry of 300 and one source trying 1,000 times.
#[tokio::test]
async fn one_source_cannot_fill_the_registry() {
    let mut config = ServerConfig::default();
    config.registry.max_peers = 300;
    let server = start(config).await;
    let http = rest_from(loopback(1));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..1_000 {
        assert!(Instant::now() < deadline, "the flood is bounded in time");
        let resp = rest_register(&http, &server, json!({"peer_id": new_id(), "port": 4000})).await;
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    println!("1,000 registrations from one source: {ok} accepted, {limited} refused (429)");
    assert_eq!(ok, DEFAULT_REGISTRATIONS_PER_SOURCE);
    assert_eq!(limited, 1_000 - DEFAULT_REGISTRATIONS_PER_SOURCE);
    // A real peer elsewhere still gets in: the registry is far from full.
    let mut c = grpc_from(&server, loopback(2)).await;
    grpc_register(&mut c, "Real").await.expect("not 503");
    server.shutdown().await;
}

/// Opens a WatchPeers stream; Ok once its first message arrived.
async fn open_watch(
    c: &mut SignalingClient<Channel>,
) -> Result<tonic::Streaming<proto::WatchPeersResponse>, tonic::Status> {
    let mut stream = c
        .watch_peers(proto::WatchPeersRequest::default())
        .await?
        .into_inner();
    read_snapshot(&mut stream).await;
    Ok(stream)
}

#[tokio::test]
async fn watch_streams_per_source_at_the_default_edge() {
    let server = start_default().await;
    let n = DEFAULT_WATCHERS_PER_SOURCE;
    let mut c = grpc_from(&server, loopback(1)).await;
    let mut open = Vec::new();
    for _ in 0..n {
        open.push(open_watch(&mut c).await.expect("within the quota"));
    }
    let err = open_watch(&mut c).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at most 16"), "{err:?}");

    let mut other = grpc_from(&server, loopback(2)).await;
    let _theirs = open_watch(&mut other)
        .await
        .expect("another source watches");

    // Closing one gives its slot back once the server sees it end.
    open.pop();
    let deadline = Instant::now() + WAIT;
    loop {
        match open_watch(&mut c).await {
            Ok(stream) => {
                open.push(stream);
                break;
            }
            Err(err) => assert_eq!(err.code(), Code::ResourceExhausted),
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

/// Issue 12: "10 connections x 1,000 streams take all watcher slots (real
/// peers never get a list)". Scaled down: 10 connections x 30 streams
/// against 100 global slots.
#[tokio::test]
async fn one_source_cannot_take_every_watcher_slot() {
    let server = start(ServerConfig {
        max_watchers: 100,
        ..Default::default()
    })
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let mut c = grpc_from(&server, loopback(1)).await;
        for _ in 0..30 {
            match open_watch(&mut c).await {
                Ok(stream) => held.push(stream),
                Err(err) => {
                    assert_eq!(err.code(), Code::ResourceExhausted);
                    refused += 1;
                }
            }
        }
    }
    println!(
        "10 connections x 30 streams: {} open, {refused} refused",
        held.len()
    );
    assert_eq!(held.len(), DEFAULT_WATCHERS_PER_SOURCE);
    assert_eq!(refused, 300 - DEFAULT_WATCHERS_PER_SOURCE);
    // A real peer from elsewhere gets its list.
    let mut real = grpc_from(&server, loopback(2)).await;
    grpc_register(&mut real, "Real").await.unwrap();
    let mut stream = real
        .watch_peers(proto::WatchPeersRequest::default())
        .await
        .expect("a slot is left")
        .into_inner();
    let (peers, _, _) = read_snapshot(&mut stream).await;
    assert!(peers.iter().any(|p| p.username == "Real"));
    server.shutdown().await;
}

/// A registered peer with an open inbox; returns (id, inbox stream).
async fn victim(
    c: &mut SignalingClient<Channel>,
) -> (String, tonic::Streaming<proto::InboxMessage>) {
    let (id, token) = register(c, "Victim", 5000).await;
    let mut inbox = c
        .open_inbox(proto::OpenInboxRequest {
            peer_id: id.clone(),
            session_token: token,
        })
        .await
        .unwrap()
        .into_inner();
    support::next(&mut inbox).await; // InboxOpened
    (id, inbox)
}

/// Reads `inbox` (so its buffer never fills) until `until`; the task's
/// result is how many connect requests it delivered.
fn count_deliveries(
    mut inbox: tonic::Streaming<proto::InboxMessage>,
    until: Instant,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let until = tokio::time::Instant::from_std(until);
        let mut count = 0;
        while let Ok(Ok(Some(_))) = tokio::time::timeout_at(until, inbox.message()).await {
            count += 1;
            assert!(count < 100_000);
        }
        count
    })
}

/// Calls RequestConnect from `caller` to `target` until `until`, at most
/// `max` times; returns (accepted, refused as RESOURCE_EXHAUSTED).
async fn flood(
    c: &mut SignalingClient<Channel>,
    caller: &(String, String),
    target: &str,
    until: Instant,
    max: usize,
) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..max {
        if Instant::now() >= until {
            break;
        }
        let result = c
            .request_connect(proto::RequestConnectRequest {
                peer_id: caller.0.clone(),
                session_token: caller.1.clone(),
                target_peer_id: target.into(),
            })
            .await;
        match result {
            Ok(_) => ok += 1,
            Err(err) if err.code() == Code::ResourceExhausted => limited += 1,
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    (ok, limited)
}

/// Issue 12: "RequestConnect has no rate limit (15,306 calls in 10 s, all
/// delivered to the victim)". Scaled down to 2 s: one caller is held to its
/// rate, and a second caller elsewhere still gets through.
#[tokio::test]
async fn a_request_connect_flood_from_one_caller_is_bounded() {
    let server = start_default().await;
    let mut v = grpc_from(&server, loopback(2)).await;
    let (target, inbox) = victim(&mut v).await;
    let mut c = grpc_from(&server, loopback(1)).await;
    let caller = register(&mut c, "Flooder", 5001).await;

    let started = Instant::now();
    let deliveries = count_deliveries(inbox, started + Duration::from_secs(4));
    let (ok, limited) = flood(
        &mut c,
        &caller,
        &target,
        started + Duration::from_secs(2),
        20_000,
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    println!("one caller's flood: {ok} accepted, {limited} refused in {secs:.2} s");
    let rate = f64::from(DEFAULT_CONNECTS_PER_CALLER);
    assert!(
        ok as f64 <= rate * (1.0 + secs) + 1.0,
        "{ok} in {secs:.2} s"
    );
    assert!(
        ok >= DEFAULT_CONNECTS_PER_CALLER as usize,
        "the burst passes: {ok}"
    );
    assert!(limited > 0, "the flood went past the rate");

    // A caller from another address is unaffected by the first one's flood.
    let mut other = grpc_from(&server, loopback(3)).await;
    let friend = register(&mut other, "Friend", 5002).await;
    let (friend_ok, _) = flood(&mut other, &friend, &target, Instant::now() + WAIT, 1).await;
    assert_eq!(friend_ok, 1);
    let delivered = deliveries.await.unwrap();
    assert_eq!(delivered, ok + 1, "each accepted request is delivered once");
    server.shutdown().await;
}

/// Five sources, each within its own rate, aim at one victim: it receives
/// at most the per-target rate.
#[tokio::test]
async fn a_victim_receives_at_most_the_per_target_rate() {
    let server = start_default().await;
    let mut v = grpc_from(&server, loopback(10)).await;
    let (target, inbox) = victim(&mut v).await;
    let mut callers = Vec::new();
    for i in 1..=5 {
        let mut c = grpc_from(&server, loopback(i)).await;
        let reg = register(&mut c, &format!("Caller{i}"), 6000 + u32::from(i)).await;
        callers.push((c, reg));
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(2);
    let deliveries = count_deliveries(inbox, until + Duration::from_secs(1));
    let floods = callers.into_iter().map(|(mut c, reg)| {
        let target = target.clone();
        tokio::spawn(async move { flood(&mut c, &reg, &target, until, 20_000).await })
    });
    // Spawned now, all five at once.
    let floods: Vec<_> = floods.collect();
    let mut accepted = 0;
    for f in floods {
        accepted += f.await.unwrap().0;
    }
    let secs = started.elapsed().as_secs_f64();
    let delivered = deliveries.await.unwrap();
    println!("five callers at one victim: {delivered} delivered in {secs:.2} s");
    let bound = f64::from(DEFAULT_CONNECTS_PER_TARGET) * (1.0 + secs) + 1.0;
    assert!(delivered as f64 <= bound, "{delivered} in {secs:.2} s");
    assert_eq!(delivered, accepted);
    assert!(
        delivered >= DEFAULT_CONNECTS_PER_TARGET as usize,
        "the target's burst is delivered: {delivered}"
    );
    // More than one caller's rate got through: the per-target rate is what
    // bounds the victim here, not the callers' own.
    assert!(
        delivered as f64 > f64::from(DEFAULT_CONNECTS_PER_CALLER) * (1.0 + secs) + 1.0,
        "{delivered}"
    );
    server.shutdown().await;
}
