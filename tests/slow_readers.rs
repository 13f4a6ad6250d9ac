//! Slow readers cost bounded memory: WatchPeers streams and `GET /peers`
//! responses whose HTTP/2 window is never granted, against the real
//! `signaling-server` binary (its RSS read from /proc), and the shared REST
//! listing bodies (ETag, 304, gzip) against a real server on 127.0.0.1:0.
//!
//! `P2PCHAT_SLOW_READERS_SERVER` points the memory tests at another binary
//! (e.g. /work/baseline-bin/signaling-server, which fails them).

#[path = "support/bins.rs"]
mod bins;
#[path = "support/slow.rs"]
mod slow;
mod support;

use std::io::Read;
use std::time::Duration;

use p2pchat::proto::WatchPeersRequest;
use p2pchat::proto::signaling_client::SignalingClient;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH, VARY};
use serde_json::{Value, json};
use slow::{ServerProcess, StalledConnection, register_many, unread_http1};
use support::start_default;

const PEERS: usize = 20_000;
const MIB: u64 = 1024 * 1024;

fn server_bin() -> String {
    std::env::var("P2PCHAT_SLOW_READERS_SERVER").unwrap_or_else(|_| bins::SERVER.path().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watchers_at_20k_peers_add_less_than_1_mb_each() {
    const WATCHERS: usize = 300;
    let max = WATCHERS.to_string();
    let server = ServerProcess::start(&server_bin(), &["--max-watchers", &max]).await;
    register_many(server.addr, PEERS, 16).await;
    // One watcher read to its end first, so what is measured below is what
    // stalled watchers add (not the first snapshot view or warm-up).
    let mut client = SignalingClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let mut warm = client
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (peers, _, _) = support::read_snapshot(&mut warm).await;
    assert_eq!(peers.len(), PEERS);
    drop(warm);
    let before = server.settled_rss(Duration::from_secs(5)).await;

    let mut stalled = StalledConnection::connect(server.addr, 65_535).await;
    stalled.watch(server.addr, WATCHERS - 1).await;
    // The limit at its edge: the last slot is taken, one more is refused.
    let _last = client
        .watch_peers(WatchPeersRequest::default())
        .await
        .unwrap();
    let refused = client.watch_peers(WatchPeersRequest::default()).await;
    assert_eq!(
        refused.unwrap_err().code(),
        tonic::Code::ResourceExhausted,
        "watcher {} of {WATCHERS}",
        WATCHERS + 1
    );
    let during = server.settled_rss(Duration::from_secs(10)).await;
    let each = during.saturating_sub(before) / stalled.len() as u64;
    eprintln!(
        "RSS {} MiB before, {} MiB with {} stalled watchers: {} KiB each",
        before / MIB,
        during / MIB,
        stalled.len(),
        each / 1024
    );
    assert!(each < MIB, "a stalled watcher adds {each} bytes (>= 1 MiB)");

    // Leaving frees the slots (and the memory of the streams).
    drop(stalled);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.watch_peers(WatchPeersRequest::default()).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "slots never freed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let after = server.settled_rss(Duration::from_secs(5)).await;
    eprintln!("RSS {} MiB after the stalled client left", after / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_peers_responses_hold_about_one_copy_of_the_body() {
    const READERS: usize = 100;
    let server = ServerProcess::start(&server_bin(), &[]).await;
    register_many(server.addr, PEERS, 16).await;
    let url = format!("http://{}/peers", server.addr);
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let size = body.len() as u64;
    assert!(size > 2 * MIB, "a body worth measuring: {size} bytes");
    let before = server.settled_rss(Duration::from_secs(5)).await;

    let mut h2 = StalledConnection::connect(server.addr, 65_535).await;
    h2.get(server.addr, "/peers", READERS).await;
    let with_h2 = server.settled_rss(Duration::from_secs(10)).await;
    let h1 = unread_http1(server.addr, "/peers", READERS).await;
    let with_h1 = server.settled_rss(Duration::from_secs(10)).await;
    eprintln!(
        "body {} KiB; RSS {} MiB before, {} MiB with {READERS} unread on one HTTP/2 connection, \
         {} MiB with {READERS} more over HTTP/1.1",
        size / 1024,
        before / MIB,
        with_h2 / MIB,
        with_h1 / MIB
    );
    // One copy is shared; 100 copies would be 100x the body.
    assert!(
        with_h2.saturating_sub(before) < 3 * size,
        "{READERS} unread HTTP/2 responses hold {} bytes",
        with_h2 - before
    );
    assert!(
        with_h1.saturating_sub(with_h2) < 3 * size,
        "{READERS} unread HTTP/1.1 responses hold {} bytes",
        with_h1 - with_h2
    );
    drop((h2, h1));
}

async fn register_rest(base: &str, name: &str) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    reqwest::Client::new()
        .post(format!("{base}/register"))
        .json(&json!({ "peer_id": id, "username": name, "port": 4000 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()[ETAG].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn listings_have_an_etag_and_answer_if_none_match_with_304() {
    let server = start_default().await;
    let base = format!("http://{}", server.local_addr());
    register_rest(&base, "alice").await;
    let http = reqwest::Client::new();
    for path in ["/peers", "/status"] {
        let first = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[VARY], "accept-encoding");
        let tag = etag(&first);
        let body = first.bytes().await.unwrap();
        let again = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(etag(&again), tag, "{path}: same version, same tag");
        assert_eq!(again.bytes().await.unwrap(), body);

        let cached = http
            .get(format!("{base}{path}"))
            .header(IF_NONE_MATCH, &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(etag(&cached), tag);
        assert!(cached.bytes().await.unwrap().is_empty());

        let other = http
            .get(format!("{base}{path}"))
            .header(IF_NONE_MATCH, "\"1\", W/\"2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK, "{path}: another tag");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn gzip_bodies_decompress_to_the_plain_ones() {
    let server = start_default().await;
    let base = format!("http://{}", server.local_addr());
    for i in 0..50 {
        register_rest(&base, &format!("peer{i}")).await;
    }
    let http = reqwest::Client::new();
    for path in ["/peers", "/status"] {
        let plain = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        let plain_tag = etag(&plain);
        let plain = plain.bytes().await.unwrap();
        let zipped = http
            .get(format!("{base}{path}"))
            .header(ACCEPT_ENCODING, "gzip, deflate")
            .send()
            .await
            .unwrap();
        assert_eq!(zipped.headers()[CONTENT_ENCODING], "gzip", "{path}");
        let zipped_tag = etag(&zipped);
        assert_ne!(zipped_tag, plain_tag, "each encoding has its own tag");
        let zipped = zipped.bytes().await.unwrap();
        assert!(zipped.len() < plain.len(), "{path}: gzip is smaller");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(
            unzipped, plain,
            "{path}: decompressed body equals the plain one"
        );

        // Either tag names this version.
        let cached = http
            .get(format!("{base}{path}"))
            .header(ACCEPT_ENCODING, "gzip")
            .header(IF_NONE_MATCH, &plain_tag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(etag(&cached), zipped_tag);
        let refused = http
            .get(format!("{base}{path}"))
            .header(ACCEPT_ENCODING, "gzip;q=0")
            .send()
            .await
            .unwrap();
        assert!(refused.headers().get(CONTENT_ENCODING).is_none());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_registration_or_refresh_changes_the_body_and_its_etag() {
    let server = start_default().await;
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    let alice = register_rest(&base, "alice").await;
    let get = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            let tag = etag(&r);
            (tag, r.json::<Value>().await.unwrap())
        }
    };
    let (peers_tag, peers) = get("/peers").await;
    let (status_tag, _) = get("/status").await;
    assert_eq!(peers["count"], 1);

    register_rest(&base, "bob").await;
    let (new_tag, peers) = get("/peers").await;
    assert_ne!(new_tag, peers_tag, "a registration makes a new version");
    assert_eq!(peers["count"], 2);
    let names: Vec<&str> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"bob"), "{names:?}");
    let (new_status_tag, status) = get("/status").await;
    assert_ne!(new_status_tag, status_tag);
    assert_eq!(status["total_peers"], 2);
    let stale = http
        .get(format!("{base}/peers"))
        .header(IF_NONE_MATCH, &peers_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "an old tag gets the new body"
    );

    // A refresh moves last_seen but not the feed's revision: still a new
    // body.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let refresh = json!({
        "peer_id": alice["peer_id"], "username": "alice", "port": 4000, "token": alice["token"],
    });
    let refreshed = http
        .post(format!("{base}/register"))
        .json(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let (refreshed_tag, _) = get("/peers").await;
    assert_ne!(refreshed_tag, new_tag, "last_seen changed");
    server.shutdown().await;
}
