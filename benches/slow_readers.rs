//! What slow readers cost a real `signaling-server` process, at full size:
//! the server's RSS (/proc/PID/status VmRSS) with WatchPeers streams and
//! `GET /peers` responses whose HTTP/2 window is never granted.
//!
//! ```text
//! cargo bench --bench slow_readers -- --server /work/baseline-bin/signaling-server \
//!     --server target/release/signaling-server --peers 100000 --watchers 1000 --readers 100
//! ```
//!
//! Each `--server` binary is started in turn on 127.0.0.1:0 (UDP off) and
//! measured the same way: register `--peers` peers over gRPC; then
//! `--watchers` WatchPeers streams on one HTTP/2 connection granting 64 KiB
//! of window and never more (RSS while stalled, and after the client
//! leaves); then `--readers` unread `GET /peers` on one HTTP/2 connection
//! and as many over HTTP/1.1 (fresh server). Every loop is bounded by its
//! count; every wait by a timeout; only 127.0.0.1 is used.

#[path = "../tests/support/slow.rs"]
mod slow;

use std::time::Duration;

use slow::{ServerProcess, StalledConnection, register_many, unread_http1};

const MIB: f64 = 1024.0 * 1024.0;
const SETTLE: Duration = Duration::from_secs(20);

struct Args {
    servers: Vec<String>,
    peers: usize,
    watchers: usize,
    readers: usize,
}

fn args() -> Args {
    let mut args = Args {
        servers: Vec::new(),
        peers: 100_000,
        watchers: 1_000,
        readers: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--server" => args.servers.push(value()),
            "--peers" => args.peers = value().parse().expect("a count"),
            "--watchers" => args.watchers = value().parse().expect("a count"),
            "--readers" => args.readers = value().parse().expect("a count"),
            _ => {} // cargo bench passes --bench
        }
    }
    assert!(!args.servers.is_empty(), "give at least one --server PATH");
    args
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB)
}

async fn watchers(bin: &str, a: &Args) {
    let max = a.watchers.to_string();
    let server = ServerProcess::start(bin, &["--max-watchers", &max]).await;
    let started = std::time::Instant::now();
    register_many(server.addr, a.peers, 32).await;
    let registered = started.elapsed();
    let before = server.settled_rss(SETTLE).await;
    println!(
        "{bin}: {} peers registered in {:.1} s; RSS {} idle",
        a.peers,
        registered.as_secs_f64(),
        mib(before)
    );
    // A second round shows whether what stays held after the first is
    // reused (allocator free lists) or leaked (it would add up).
    for round in 1..=2 {
        let mut stalled = StalledConnection::connect(server.addr, 65_535).await;
        stalled.watch(server.addr, a.watchers).await;
        let during = server.settled_rss(SETTLE).await;
        drop(stalled);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = server.settled_rss(SETTLE).await;
        let each = during.saturating_sub(before) as f64 / a.watchers as f64 / 1024.0;
        println!(
            "  round {round}: RSS {} with {} stalled watchers (+{each:.0} KiB each over idle), \
             {} after they left",
            mib(during),
            a.watchers,
            mib(after)
        );
    }
}

async fn readers(bin: &str, a: &Args) {
    let server = ServerProcess::start(bin, &[]).await;
    register_many(server.addr, a.peers, 32).await;
    let url = format!("http://{}/peers", server.addr);
    let body = reqwest::get(&url).await.expect("GET /peers");
    let size = body.bytes().await.expect("a body").len() as u64;
    let before = server.settled_rss(SETTLE).await;
    let mut h2 = StalledConnection::connect(server.addr, 65_535).await;
    h2.get(server.addr, "/peers", a.readers).await;
    let with_h2 = server.settled_rss(SETTLE).await;
    let h1 = unread_http1(server.addr, "/peers", a.readers).await;
    let with_h1 = server.settled_rss(SETTLE).await;
    println!(
        "{bin}: /peers body {}; RSS {} idle, {} with {} unread on one HTTP/2 connection, \
         {} with {} more over HTTP/1.1",
        mib(size),
        mib(before),
        mib(with_h2),
        a.readers,
        mib(with_h1),
        a.readers
    );
    drop((h2, h1));
}

#[tokio::main]
async fn main() {
    let a = args();
    for bin in &a.servers {
        watchers(bin, &a).await;
        readers(bin, &a).await;
    }
}
