//! Signaling server benchmarks, each measured against a baseline in the same
//! run (shared 2-core machines are noisy; ratios travel, absolute numbers do
//! not).
//!
//! ```text
//! cargo bench --bench signaling -- grpc-unary      # GetPeer/Register/ListPeers vs a constant tonic handler
//! cargo bench --bench signaling -- rest            # GET /peer/{id}, GET /peers vs a constant axum handler
//! cargo bench --bench signaling -- watch-fanout    # 10,000 WatchPeers streams: delivery p99, memory per watcher
//! cargo bench --bench signaling -- registry-scale  # 1,000,000 peers: RSS, ListPeers p99, Register throughput
//! ```
//!
//! Options after the scenario: `--runs N` (default 5; the median is
//! reported), `--secs S` (seconds per load run, default 3), `--peers N`
//! (registry-scale, default 1000000), `--watchers N` (watch-fanout, default
//! 10000). Every load loop is bounded in time and count and only talks to
//! 127.0.0.1.

#[path = "../tests/support/bins.rs"]
mod bins;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use p2pchat::proto::signaling_client::SignalingClient;
use p2pchat::proto::signaling_server::{Signaling, SignalingServer};
use p2pchat::proto::{self, GetPeerRequest, ListPeersRequest, RegisterRequest, WatchPeersRequest};
use p2pchat_server::{self as server, ServerConfig};
use tokio::sync::broadcast;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Concurrent callers for the unary and REST loads.
const CALLERS: usize = 64;
/// Connections the callers share (16 callers per HTTP/2 connection).
const CONNECTIONS: usize = 4;
/// Upper bound on requests per caller per run, so a run always ends.
const MAX_REQUESTS_PER_CALLER: usize = 2_000_000;

struct Options {
    scenario: String,
    runs: usize,
    secs: u64,
    peers: usize,
    watchers: usize,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut o = Options {
        scenario: String::new(),
        runs: 5,
        secs: 3,
        peers: 1_000_000,
        watchers: 10_000,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--runs" => o.runs = value("--runs").max(1),
            "--secs" => o.secs = value("--secs").max(1) as u64,
            "--peers" => o.peers = value("--peers"),
            "--watchers" => o.watchers = value("--watchers"),
            other if !other.starts_with('-') => o.scenario = other.to_owned(),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "machine: {} cores, {} MiB memory; {} runs x {} s, median reported",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        total_memory_mib(),
        o.runs,
        o.secs
    );
    match o.scenario.as_str() {
        "grpc-unary" => rt.block_on(grpc_unary(&o)),
        "rest" => rt.block_on(rest(&o)),
        "watch-fanout" => rt.block_on(watch_fanout(&o)),
        "registry-scale" => rt.block_on(registry_scale(&o)),
        "" => {
            println!("scenarios: grpc-unary, rest, watch-fanout, registry-scale");
        }
        other => panic!("unknown scenario {other}"),
    }
}

// ---------------------------------------------------------------- helpers --

/// Latency samples of one load run.
struct RunStats {
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl RunStats {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile_us(&mut self, p: f64) -> u32 {
        percentile(&mut self.latencies_us, p)
    }
}

fn percentile(samples: &mut [u32], p: f64) -> u32 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `CALLERS` concurrent loops of `call` for `secs` seconds.
async fn load<F, Fut>(secs: u64, call: F) -> RunStats
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let call = call.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..MAX_REQUESTS_PER_CALLER {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                let ok = call(caller, i).await;
                assert!(ok, "request failed during load");
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("load task"));
    }
    RunStats {
        requests: latencies_us.len(),
        elapsed: started.elapsed(),
        latencies_us,
    }
}

async fn channels(addr: SocketAddr) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        out.push(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect"),
        );
    }
    out
}

fn total_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

fn print_row(name: &str, rps: f64, p50: f64, p99: f64, baseline_rps: Option<f64>) {
    let ratio = baseline_rps.map_or("-".to_owned(), |b| format!("{:.0}%", 100.0 * rps / b));
    println!("| {name} | {rps:.0} | {p50:.0} | {p99:.0} | {ratio} |");
}

/// Repeats a load `runs` times and returns median (rps, p50 us, p99 us).
async fn repeat<F, Fut>(runs: usize, mut one: F) -> (f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = RunStats>,
{
    let (mut rps, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut s = one().await;
        rps.push(s.rps());
        p50.push(s.percentile_us(0.50) as f64);
        p99.push(s.percentile_us(0.99) as f64);
    }
    (median(rps), median(p50), median(p99))
}

// ------------------------------------------------------------ grpc-unary --

/// The baseline: the same service trait, codec, transport and listener, but
/// handlers that return a prepared response without touching a registry.
#[derive(Clone)]
struct ConstantSignaling {
    peer: proto::Peer,
    page: Vec<proto::Peer>,
}

#[tonic::async_trait]
impl Signaling for ConstantSignaling {
    async fn get_challenge(
        &self,
        _: Request<proto::GetChallengeRequest>,
    ) -> Result<Response<proto::GetChallengeResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn register(
        &self,
        _: Request<RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        Ok(Response::new(proto::RegisterResponse {
            session_token: "0".repeat(64),
            observed_ip: "127.0.0.1".into(),
            lease_seconds: 60,
            peer: Some(self.peer.clone()),
            revision: 1,
            udp_port: 0,
        }))
    }
    async fn get_peer(
        &self,
        _: Request<GetPeerRequest>,
    ) -> Result<Response<proto::GetPeerResponse>, Status> {
        Ok(Response::new(proto::GetPeerResponse {
            peer: Some(self.peer.clone()),
        }))
    }
    async fn list_peers(
        &self,
        _: Request<ListPeersRequest>,
    ) -> Result<Response<proto::ListPeersResponse>, Status> {
        Ok(Response::new(proto::ListPeersResponse {
            peers: self.page.clone(),
            next_page_token: String::new(),
            total_count: self.page.len() as u64,
        }))
    }
    async fn unregister(
        &self,
        _: Request<proto::UnregisterRequest>,
    ) -> Result<Response<proto::UnregisterResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    type WatchPeersStream = tokio_stream::Empty<Result<proto::WatchPeersResponse, Status>>;
    async fn watch_peers(
        &self,
        _: Request<WatchPeersRequest>,
    ) -> Result<Response<Self::WatchPeersStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    type OpenInboxStream = tokio_stream::Empty<Result<proto::InboxMessage, Status>>;
    async fn open_inbox(
        &self,
        _: Request<proto::OpenInboxRequest>,
    ) -> Result<Response<Self::OpenInboxStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn request_connect(
        &self,
        _: Request<proto::RequestConnectRequest>,
    ) -> Result<Response<proto::RequestConnectResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

/// The server's defaults, but every caller here comes from 127.0.0.1: the
/// per-source connection quota must not count them as one attacker.
fn bench_config() -> ServerConfig {
    ServerConfig {
        max_connections_per_source: 10_000,
        ..ServerConfig::default()
    }
}

/// Serves `router` through the project's own listener on 127.0.0.1:0.
async fn serve_router(router: Router) -> (SocketAddr, broadcast::Sender<()>) {
    let listener =
        server::net::listener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, _) = broadcast::channel(1);
    let limits = server::net::limits::ConnectionLimits {
        max_connections: 1000,
        max_connections_per_source: 1000,
        max_streams_per_connection: 1000,
        shutdown_grace: Duration::from_secs(1),
        timeouts: server::net::limits::Timeouts::default(),
    };
    tokio::spawn(server::net::listener::serve(
        listener,
        router,
        limits,
        None,
        server::net::shutdown::Shutdown::new(tx.subscribe()),
    ));
    (addr, tx)
}

async fn grpc_unary(o: &Options) {
    let server = server::start(bench_config()).await.expect("server");
    let addr = server.local_addr();
    let mut setup = SignalingClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = uuid::Uuid::new_v4().to_string();
        setup
            .register(RegisterRequest {
                peer_id: id.clone(),
                username: format!("user{i}"),
                udp_port: 10_000 + i,
                ..Default::default()
            })
            .await
            .expect("register");
        ids.push(id);
    }
    let sample = setup
        .get_peer(GetPeerRequest {
            peer_id: ids[0].clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .peer
        .expect("peer");
    let page = setup
        .list_peers(ListPeersRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .peers;
    let baseline = ConstantSignaling { peer: sample, page };
    let (base_addr, _base_stop) = serve_router(
        tonic::service::Routes::new(SignalingServer::new(baseline)).into_axum_router(),
    )
    .await;

    let ours = channels(addr).await;
    let base = channels(base_addr).await;
    let ids = Arc::new(ids);
    println!(
        "\n| gRPC, {CALLERS} callers over {CONNECTIONS} connections | req/s | p50 µs | p99 µs | vs baseline |"
    );
    println!("|---|---|---|---|---|");

    let get = |chans: Vec<Channel>, ids: Arc<Vec<String>>| {
        move |caller: usize, i: usize| {
            let mut c = SignalingClient::new(chans[caller % CONNECTIONS].clone());
            let id = ids[(caller * 7919 + i) % ids.len()].clone();
            async move { c.get_peer(GetPeerRequest { peer_id: id }).await.is_ok() }
        }
    };
    let (b_rps, b50, b99) = repeat(o.runs, || load(o.secs, get(base.clone(), ids.clone()))).await;
    print_row("baseline GetPeer (constant handler)", b_rps, b50, b99, None);
    let (rps, p50, p99) = repeat(o.runs, || load(o.secs, get(ours.clone(), ids.clone()))).await;
    print_row("GetPeer", rps, p50, p99, Some(b_rps));

    let list = |chans: Vec<Channel>| {
        move |caller: usize, _i: usize| {
            let mut c = SignalingClient::new(chans[caller % CONNECTIONS].clone());
            async move {
                c.list_peers(ListPeersRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .is_ok()
            }
        }
    };
    let (b_rps, b50, b99) = repeat(o.runs, || load(o.secs, list(base.clone()))).await;
    print_row(
        "baseline ListPeers page of 100 (constant)",
        b_rps,
        b50,
        b99,
        None,
    );
    let (rps, p50, p99) = repeat(o.runs, || load(o.secs, list(ours.clone()))).await;
    print_row("ListPeers page of 100", rps, p50, p99, Some(b_rps));

    // Register: each caller refreshes its own peer with its token, so the
    // registry size stays fixed while every call takes the write path.
    let mut tokens = Vec::new();
    for caller in 0..CALLERS {
        let id = uuid::Uuid::new_v4().to_string();
        let token = setup
            .register(RegisterRequest {
                peer_id: id.clone(),
                username: format!("caller{caller}"),
                udp_port: 20_000 + caller as u32,
                ..Default::default()
            })
            .await
            .expect("register")
            .into_inner()
            .session_token;
        tokens.push((id, token));
    }
    let tokens = Arc::new(tokens);
    let reg = |chans: Vec<Channel>, tokens: Arc<Vec<(String, String)>>| {
        move |caller: usize, _i: usize| {
            let mut c = SignalingClient::new(chans[caller % CONNECTIONS].clone());
            let (id, token) = tokens[caller].clone();
            async move {
                c.register(RegisterRequest {
                    peer_id: id,
                    username: format!("caller{caller}"),
                    udp_port: 20_000 + caller as u32,
                    session_token: token,
                    ..Default::default()
                })
                .await
                .is_ok()
            }
        }
    };
    let (b_rps, b50, b99) =
        repeat(o.runs, || load(o.secs, reg(base.clone(), tokens.clone()))).await;
    print_row("baseline Register (constant)", b_rps, b50, b99, None);
    let (rps, p50, p99) = repeat(o.runs, || load(o.secs, reg(ours.clone(), tokens.clone()))).await;
    print_row("Register (refresh with token)", rps, p50, p99, Some(b_rps));
    server.shutdown().await;
}

// ------------------------------------------------------------------ rest --

async fn http_get(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    uri: hyper::Uri,
) -> bool {
    use http_body_util::BodyExt;
    match client.get(uri).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

async fn rest(o: &Options) {
    let server = server::start(bench_config()).await.expect("server");
    let addr = server.local_addr();
    let http = reqwest_like_client();
    let mut ids = Vec::new();
    let mut setup = SignalingClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    for i in 0..1000 {
        let id = uuid::Uuid::new_v4().to_string();
        setup
            .register(RegisterRequest {
                peer_id: id.clone(),
                username: format!("user{i}"),
                udp_port: 10_000 + i,
                ..Default::default()
            })
            .await
            .expect("register");
        ids.push(id);
    }
    let peer_body = fetch_body(&http, &format!("http://{addr}/peer/{}", ids[0])).await;
    let peers_body = fetch_body(&http, &format!("http://{addr}/peers")).await;
    let (peer_len, peers_len) = (peer_body.len(), peers_body.len());
    let peer_body: &'static str = Box::leak(peer_body.into_boxed_str());
    let peers_body: &'static str = Box::leak(peers_body.into_boxed_str());
    let baseline = Router::new()
        .route(
            "/peer/{id}",
            get(move || async move { ([("content-type", "application/json")], peer_body) }),
        )
        .route(
            "/peers",
            get(move || async move { ([("content-type", "application/json")], peers_body) }),
        );
    let (base_addr, _stop) = serve_router(baseline).await;

    println!(
        "\n| REST (own hyper client), {CALLERS} callers, keep-alive | req/s | p50 µs | p99 µs | vs baseline |"
    );
    println!("|---|---|---|---|---|");
    let ids = Arc::new(ids);
    let one_peer = |target: SocketAddr, ids: Arc<Vec<String>>| {
        let http = reqwest_like_client();
        move |caller: usize, i: usize| {
            let http = http.clone();
            let uri: hyper::Uri = format!(
                "http://{target}/peer/{}",
                ids[(caller * 7919 + i) % ids.len()]
            )
            .parse()
            .expect("uri");
            async move { http_get(&http, uri).await }
        }
    };
    let (b_rps, b50, b99) = repeat(o.runs, || load(o.secs, one_peer(base_addr, ids.clone()))).await;
    print_row(
        &format!("baseline constant body ({peer_len} B)"),
        b_rps,
        b50,
        b99,
        None,
    );
    let (rps, p50, p99) = repeat(o.runs, || load(o.secs, one_peer(addr, ids.clone()))).await;
    print_row("GET /peer/{id}", rps, p50, p99, Some(b_rps));

    let all = |target: SocketAddr| {
        let http = reqwest_like_client();
        move |_caller: usize, _i: usize| {
            let http = http.clone();
            let uri: hyper::Uri = format!("http://{target}/peers").parse().expect("uri");
            async move { http_get(&http, uri).await }
        }
    };
    let (b_rps, b50, b99) = repeat(o.runs, || load(o.secs, all(base_addr))).await;
    print_row(
        &format!("baseline constant body ({peers_len} B)"),
        b_rps,
        b50,
        b99,
        None,
    );
    let (rps, p50, p99) = repeat(o.runs, || load(o.secs, all(addr))).await;
    print_row("GET /peers (1,000 peers)", rps, p50, p99, Some(b_rps));
    server.shutdown().await;
}

fn reqwest_like_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(CALLERS)
        .build_http()
}

async fn fetch_body(
    http: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    url: &str,
) -> String {
    use http_body_util::BodyExt;
    let resp = http.get(url.parse().expect("uri")).await.expect("get");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(body.to_vec()).expect("utf8")
}

// ---------------------------------------------------------- watch-fanout --

/// A server child process that is killed when the benchmark ends, even by a
/// panic.
struct ServerProcess(std::process::Child);

impl ServerProcess {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns the real server binary so its memory can be read on its own.
fn spawn_server_binary(extra: &[&str]) -> (ServerProcess, SocketAddr) {
    use std::io::BufRead;
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let mut child = std::process::Command::new(bins::SERVER.path())
        .args(["--listen", &addr.to_string(), "--udp-listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn,signaling_server=info,p2pchat=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.contains("listening") {
            break;
        }
    }
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (ServerProcess(child), addr)
}

async fn watch_fanout(o: &Options) {
    let n = o.watchers;
    let (child, addr) = spawn_server_binary(&["--max-watchers", &(n + 10).to_string()]);
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kib(pid);
    let conns = n.div_ceil(500);
    let mut chans = Vec::new();
    for _ in 0..conns {
        chans.push(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect"),
        );
    }
    // Each watcher reports (watcher, arrival instant) per JOINED change.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    for w in 0..n {
        let mut c = SignalingClient::new(chans[w % conns].clone());
        let tx = tx.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut stream = c
                .watch_peers(WatchPeersRequest::default())
                .await
                .expect("watch")
                .into_inner();
            // Initial (empty) snapshot.
            let _ = stream.message().await;
            ready.add_permits(1);
            while let Ok(Some(msg)) = stream.message().await {
                if let Some(proto::watch_peers_response::Update::Change(_)) = msg.update {
                    let _ = tx.send(Instant::now());
                }
            }
        });
    }
    let opened = tokio::time::timeout(Duration::from_secs(120), ready.acquire_many(n as u32))
        .await
        .expect("watchers open in time")
        .expect("semaphore");
    opened.forget();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);
    let mut client = SignalingClient::new(chans[0].clone());
    let mut p99s = Vec::new();
    let mut p50s = Vec::new();
    let mut maxes = Vec::new();
    for run in 0..o.runs {
        let started = Instant::now();
        client
            .register(RegisterRequest {
                peer_id: uuid::Uuid::new_v4().to_string(),
                username: format!("fanout{run}"),
                udp_port: 7000,
                ..Default::default()
            })
            .await
            .expect("register");
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("every watcher hears the change")
                .expect("channel");
            lat.push(at.duration_since(started).as_micros() as u32);
        }
        p50s.push(percentile(&mut lat, 0.5) as f64);
        p99s.push(percentile(&mut lat, 0.99) as f64);
        maxes.push(percentile(&mut lat, 1.0) as f64);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let per_watcher = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
    println!("\n| WatchPeers fan-out, {n} streams over {conns} connections | value |");
    println!("|---|---|");
    println!(
        "| register -> all watchers, p50 | {:.1} ms |",
        median(p50s) / 1000.0
    );
    println!(
        "| register -> all watchers, p99 | {:.1} ms |",
        median(p99s) / 1000.0
    );
    println!(
        "| register -> last watcher | {:.1} ms |",
        median(maxes) / 1000.0
    );
    println!(
        "| server RSS before / after opening | {} / {} MiB |",
        rss_before / 1024,
        rss_after / 1024
    );
    println!(
        "| server memory per open watcher | {:.1} KiB |",
        per_watcher / 1024.0
    );
    drop(child);
}

// -------------------------------------------------------- registry-scale --

async fn register_many(chans: &[Channel], count: usize, offset: usize) -> Duration {
    let started = Instant::now();
    let per = count.div_ceil(CALLERS);
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let mut c = SignalingClient::new(chans[caller % chans.len()].clone());
        let from = caller * per;
        let to = ((caller + 1) * per).min(count);
        tasks.push(tokio::spawn(async move {
            for i in from..to {
                c.register(RegisterRequest {
                    peer_id: uuid::Uuid::new_v4().to_string(),
                    username: format!("peer{}", offset + i),
                    udp_port: 1 + ((offset + i) % 65535) as u32,
                    ..Default::default()
                })
                .await
                .expect("register");
            }
        }));
    }
    for t in tasks {
        t.await.expect("register task");
    }
    started.elapsed()
}

async fn registry_scale(o: &Options) {
    let n = o.peers;
    let sample = 20_000.min(n / 2).max(1);
    let (child, addr) = spawn_server_binary(&[
        "--max-peers",
        &(n + sample + 10).to_string(),
        "--lease-secs",
        "86400",
        // A page of 1,000 peers is ~100 KB; the default limit (64 KiB) would
        // split it.
        "--max-message-bytes",
        "262144",
    ]);
    let pid = child.id();
    let chans = channels(addr).await;
    let empty = register_many(&chans, sample, 0).await;
    let empty_rps = sample as f64 / empty.as_secs_f64();
    let fill_started = Instant::now();
    register_many(&chans, n - sample, sample).await;
    let fill = fill_started.elapsed();
    let rss = rss_kib(pid);
    let full = register_many(&chans, sample, n).await;
    let full_rps = sample as f64 / full.as_secs_f64();

    let mut client = SignalingClient::new(chans[0].clone());
    let mut lat = Vec::new();
    let mut token = String::new();
    for _ in 0..200 {
        let t = Instant::now();
        let page = client
            .list_peers(ListPeersRequest {
                page_size: 1000,
                page_token: token.clone(),
                include_offline: false,
            })
            .await
            .expect("list")
            .into_inner();
        lat.push(t.elapsed().as_micros() as u32);
        assert_eq!(page.peers.len(), 1000);
        token = page.next_page_token;
    }
    println!("\n| registry scale, {} peers | value |", n + sample);
    println!("|---|---|");
    println!(
        "| fill time ({} registrations, 64 callers) | {:.1} s |",
        n - sample,
        fill.as_secs_f64()
    );
    println!("| server RSS at {n} peers | {} MiB |", rss / 1024);
    println!("| Register, empty registry ({sample} calls) | {empty_rps:.0} /s |");
    println!(
        "| Register, at {n} peers ({sample} calls) | {full_rps:.0} /s ({:.0}% of empty) |",
        100.0 * full_rps / empty_rps
    );
    println!(
        "| ListPeers page of 1000, p50 | {:.2} ms |",
        percentile(&mut lat, 0.5) as f64 / 1000.0
    );
    println!(
        "| ListPeers page of 1000, p99 | {:.2} ms |",
        percentile(&mut lat, 0.99) as f64 / 1000.0
    );
    drop(child);
}
