//! Slow readers against a real `signaling-server` process, shared by
//! tests/slow_readers.rs and benches/slow_readers.rs: start the binary,
//! fill its registry, read its resident memory, and hold HTTP/2 streams
//! (WatchPeers, `GET /peers`) whose flow-control window is never granted,
//! as an attacker that stops reading would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2pchat::proto::RegisterRequest;
use p2pchat::proto::signaling_client::SignalingClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// A running server process.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    drain: JoinHandle<()>,
}

impl ServerProcess {
    /// Starts `bin` on 127.0.0.1:0 without UDP, with `args` added. All the
    /// load comes from 127.0.0.1, so the per-source quotas are raised out
    /// of the way where the binary has them (a build from before issue 12
    /// has none, and would refuse the flags).
    pub async fn start(bin: &str, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--udp-listen", "off"])
            .args(quota_flags(bin))
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("server binary starts");
        let pid = child.id().expect("server pid");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("server stderr") {
                if let Some(rest) = line.split("local_addr=").nth(1) {
                    let addr = rest.split_whitespace().next().expect("an address");
                    return addr.parse::<SocketAddr>().expect("a socket address");
                }
            }
            panic!("server exited before logging its address");
        })
        .await
        .expect("address logged in time");
        // Keep reading its log, so a full pipe never blocks the server.
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ServerProcess {
            child,
            addr,
            pid,
            drain,
        }
    }

    /// The server's resident set size, in bytes (VmRSS).
    pub fn rss(&self) -> u64 {
        rss_of(self.pid)
    }

    /// The RSS once it has stopped moving (two reads 300 ms apart within
    /// 1%), or after `within`.
    pub async fn settled_rss(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        let mut last = self.rss();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.rss();
            if now.abs_diff(last) * 100 <= last || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.drain.abort();
    }
}

/// VmRSS of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// Flags lifting the per-source quotas, for the binaries that have them.
fn quota_flags(bin: &str) -> Vec<&'static str> {
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("server binary runs");
    if !String::from_utf8_lossy(&help.stdout).contains("--max-registrations-per-source") {
        return Vec::new();
    }
    vec![
        "--max-registrations-per-source",
        "1000000",
        "--max-watchers-per-source",
        "1000000",
        "--max-connections-per-source",
        "100000",
    ]
}

/// Registers `count` peers over gRPC, `concurrency` calls at a time.
pub async fn register_many(addr: SocketAddr, count: usize, concurrency: usize) {
    let client = SignalingClient::connect(format!("http://{addr}"))
        .await
        .expect("client connects");
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..count).step_by(concurrency) {
                client
                    .register(RegisterRequest {
                        peer_id: uuid::Uuid::new_v4().to_string(),
                        username: format!("peer{i}"),
                        udp_port: 1024 + (i % 60_000) as u32,
                        ..Default::default()
                    })
                    .await
                    .expect("registers");
            }
        }));
    }
    for task in tasks {
        task.await.expect("register worker");
    }
}

/// One HTTP/2 connection holding streams it never reads: the window it
/// grants is `window` bytes per stream and never more.
pub struct StalledConnection {
    streams: Vec<h2::RecvStream>,
    send: h2::client::SendRequest<Bytes>,
    conn: JoinHandle<()>,
}

impl StalledConnection {
    /// Connects with `window` bytes of stream and connection window.
    pub async fn connect(addr: SocketAddr, window: u32) -> StalledConnection {
        let tcp = TcpStream::connect(addr).await.expect("tcp connects");
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(window)
            .initial_connection_window_size(window.max(65_535))
            .handshake::<_, Bytes>(tcp)
            .await
            .expect("h2 handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        StalledConnection {
            streams: Vec::new(),
            send,
            conn,
        }
    }

    /// Opens `count` WatchPeers calls and waits for each response's
    /// headers (the server has started them), reading nothing.
    pub async fn watch(&mut self, addr: SocketAddr, count: usize) {
        for _ in 0..count {
            let request = http::Request::post(format!(
                "http://{addr}/p2pchat.signaling.v1.Signaling/WatchPeers"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("a request");
            let send = self.send.clone().ready().await.expect("stream slot");
            let mut send = send;
            let (response, mut body) = send.send_request(request, false).expect("request sent");
            // An empty WatchPeersRequest (uncompressed, length 0), then the
            // client half-closes, as every server-streaming call does.
            body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
                .expect("request body");
            self.keep(response).await;
        }
    }

    /// Sends `count` `GET path` requests and waits for each response's
    /// headers, reading no body.
    pub async fn get(&mut self, addr: SocketAddr, path: &str, count: usize) {
        for _ in 0..count {
            let request = http::Request::get(format!("http://{addr}{path}"))
                .body(())
                .expect("a request");
            let mut send = self.send.clone().ready().await.expect("stream slot");
            let (response, _) = send.send_request(request, true).expect("request sent");
            self.keep(response).await;
        }
    }

    async fn keep(&mut self, response: h2::client::ResponseFuture) {
        let response = tokio::time::timeout(Duration::from_secs(30), response)
            .await
            .unwrap_or_else(|_| panic!("response headers of stream {} in time", self.streams.len()))
            .expect("a response");
        assert_eq!(response.status(), 200, "{response:?}");
        self.streams.push(response.into_body());
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        self.streams.len()
    }
}

impl Drop for StalledConnection {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// `count` HTTP/1.1 connections that each send `GET path` and read only
/// the status line of the answer (so the server has made it), never the
/// rest.
pub async fn unread_http1(addr: SocketAddr, path: &str, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let mut tcp = TcpStream::connect(addr).await.expect("tcp connects");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.expect("request");
        let mut status = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(30), tcp.read_exact(&mut status))
            .await
            .expect("a status line in time")
            .expect("a status line");
        assert_eq!(&status, b"HTTP/1.1 200");
        sockets.push(tcp);
    }
    sockets
}
