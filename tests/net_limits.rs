//! The listener's defences against slow and greedy clients, against the
//! real server on 127.0.0.1:0 with small limits: 300 idle sockets (silent,
//! a half-sent HTTP/1 head, an HTTP/2 preface alone) are closed by the
//! header timeout while normal REST and gRPC requests are served; a
//! `Content-Length: 10000000000` with no body is answered and closed within
//! the body timeout; an idle HTTP/2 keep-alive connection is closed after
//! the idle timeout while an open WatchPeers stream survives it; and one
//! source at its connection quota is refused its next connection while
//! another source (127.0.0.2) is served. Every loop is bounded.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use p2pchat::proto::{self, ListPeersRequest};
use p2pchat_server::net::limits::Timeouts;
use p2pchat_server::{RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(15);
/// Slack allowed past a timeout before its close counts as late (a loaded
/// CI machine runs many tests at once).
const SLACK: Duration = Duration::from_secs(5);

async fn start(timeouts: Timeouts, per_source: usize) -> RunningServer {
    support::start(ServerConfig {
        timeouts,
        max_connections_per_source: per_source,
        udp_listen: None,
        ..ServerConfig::default()
    })
    .await
}

/// A connection to `server` from the loopback address `from`.
async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// Sends a keep-alive `GET path` and reads one response; returns its status
/// line and body. Panics when the server closes without answering.
async fn get(conn: &mut TcpStream, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    read_response(conn).await.expect("an HTTP response")
}

/// One HTTP/1 response with a Content-Length; `None` if the connection
/// closes (or resets) before a whole one arrives.
async fn read_response(conn: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    let status = head.lines().next().unwrap_or("").to_owned();
                    return Some((status, body.to_owned()));
                }
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("response or close in time")
}

/// Waits until the server closes `conn` (EOF or reset), within [`WAIT`].
async fn closed(conn: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match conn.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_sockets_are_closed_by_the_header_timeout_while_requests_are_served() {
    let header = Duration::from_secs(2);
    let timeouts = Timeouts {
        header_read: header,
        ..Timeouts::default()
    };
    let server = start(timeouts, 1_000).await;
    let addr = server.local_addr();
    let opened = Instant::now();
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => conn
                .write_all(b"GET /peers HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap(),
            _ => conn
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap(),
        }
        idle.push(conn);
    }
    // With all 300 open, a normal REST request and a gRPC call are served.
    let mut normal = TcpStream::connect(addr).await.unwrap();
    let (status, body) = get(&mut normal, "/peers").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let mut grpc = support::client(&server).await;
    grpc.list_peers(ListPeersRequest::default()).await.unwrap();
    let served = opened.elapsed();
    assert!(
        served < header,
        "served while the idle sockets were open ({served:?})"
    );

    for conn in &mut idle {
        closed(conn).await;
    }
    let all_closed = opened.elapsed();
    assert!(
        all_closed >= header && all_closed < header + SLACK,
        "300 idle sockets closed {all_closed:?} after opening (header timeout {header:?})"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_huge_content_length_without_a_body_is_answered_within_the_body_timeout() {
    let body_timeout = Duration::from_secs(1);
    let timeouts = Timeouts {
        body_read: body_timeout,
        ..Timeouts::default()
    };
    let server = start(timeouts, 64).await;
    let addr = server.local_addr();
    let started = Instant::now();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 10000000000\r\n\r\n{\"peer_id\"",
    )
    .await
    .unwrap();
    if let Some((status, _)) = read_response(&mut conn).await {
        assert!(status.starts_with("HTTP/1.1 4"), "{status}");
    }
    closed(&mut conn).await;
    let took = started.elapsed();
    assert!(
        took >= body_timeout && took < body_timeout + SLACK,
        "answered and closed after {took:?}"
    );

    // At the edge: a body that arrives within the timeout is served.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let body = format!(
        "{{\"peer_id\": \"{}\", \"username\": \"slow\", \"port\": 5000}}",
        uuid::Uuid::new_v4()
    );
    let head = format!(
        "POST /register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(body_timeout / 2).await;
    conn.write_all(body.as_bytes()).await.unwrap();
    let (status, text) = read_response(&mut conn).await.expect("answered");
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_while_an_open_watch_stream_survives() {
    let idle = Duration::from_millis(800);
    let header = Duration::from_millis(600);
    let timeouts = Timeouts {
        idle,
        header_read: header,
        ..Timeouts::default()
    };
    let server = start(timeouts, 64).await;
    let addr = server.local_addr();
    let mut watcher = support::client(&server).await;
    let mut watch = watcher
        .watch_peers(proto::WatchPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    support::read_snapshot(&mut watch).await;

    // An HTTP/2 connection that made one call and then sits idle.
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, h2) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    let h2 = tokio::spawn(h2);
    let request = hyper::Request::get(format!("http://{addr}/peers"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    // The server's idle clock starts once it has answered, so after this
    // instant: the measured wait can only be longer than the timeout.
    let idle_from = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    // An HTTP/1 keep-alive connection after one response: the header
    // timeout bounds its wait for the next request.
    let mut h1 = TcpStream::connect(addr).await.unwrap();
    let h1_idle_from = Instant::now();
    assert_eq!(get(&mut h1, "/peers").await.0, "HTTP/1.1 200 OK");

    tokio::time::timeout(WAIT, h2)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    let took = idle_from.elapsed();
    assert!(
        took >= idle && took < idle + SLACK,
        "HTTP/2 idle closed after {took:?}"
    );
    closed(&mut h1).await;
    let took = h1_idle_from.elapsed();
    assert!(
        took >= header && took < header + SLACK,
        "HTTP/1 idle closed after {took:?}"
    );

    // Well past the idle timeout the watch stream is alive and delivers.
    tokio::time::sleep(idle * 2).await;
    let mut other = support::client(&server).await;
    let (peer_id, _) = support::register(&mut other, "late", 5000).await;
    let change = support::next_change(&mut watch).await;
    assert_eq!(change.peer.map(|p| p.peer_id), Some(peer_id));
    server.shutdown().await;
}

#[tokio::test]
async fn one_source_at_its_connection_quota_is_refused_while_another_is_served() {
    const QUOTA: usize = 8;
    let server = start(Timeouts::default(), QUOTA).await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..QUOTA - 1 {
        held.push(connect_from([127, 0, 0, 1], addr).await);
    }
    // The QUOTA-th connection from 127.0.0.1 is served...
    let mut last = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(get(&mut last, "/peers").await.0, "HTTP/1.1 200 OK");
    // ...the next one is closed without an answer...
    let mut refused = connect_from([127, 0, 0, 1], addr).await;
    let _ = refused
        .write_all(b"GET /peers HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(read_response(&mut refused).await, None, "QUOTA + 1 refused");
    // ...while another source is unaffected.
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(get(&mut other, "/peers").await.0, "HTTP/1.1 200 OK");
    // The quota holds over time: the held connections still count.
    assert_eq!(get(&mut last, "/peers").await.0, "HTTP/1.1 200 OK");

    // A closed connection frees its slot (within a bounded wait).
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = connect_from([127, 0, 0, 1], addr).await;
        let _ = again
            .write_all(b"GET /peers HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        if read_response(&mut again).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}
