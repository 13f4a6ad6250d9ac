//! Peer data-plane benchmarks, each measured against a floor in the same
//! run where one exists (shared 2-core machines are noisy; ratios travel,
//! absolute numbers do not).
//!
//! ```text
//! cargo bench --bench dataplane -- round-trip    # send -> delivered vs a raw tokio UDP echo
//! cargo bench --bench dataplane -- throughput    # one-way 100-byte lines/s, acked, in order
//! cargo bench --bench dataplane -- idle-cpu      # CPU and wake-ups of two idle connected `peer` processes
//! cargo bench --bench dataplane -- peer-memory   # peak RSS of `peer` processes after 10,000 lines
//! cargo bench --bench dataplane -- connect-time  # connect -> connected, -> first line delivered
//! cargo bench --bench dataplane -- encryption    # round trip and delivery, encrypted vs plaintext sessions
//! cargo bench --bench dataplane -- crypto        # CPU per handshake (IK, XX) and per sealed datagram
//! ```
//!
//! Options after the scenario: `--runs N` (median reported), `--secs S`
//! (length of a run where a run is timed), `--samples N` (round trips per
//! run; connect-time groups per run), `--messages N` (lines per run),
//! `--outstanding N` (lines the sender keeps unacknowledged), `--placement
//! one-thread|workers|block-on` (round-trip and throughput: only that
//! runtime, e.g. under callgrind). Every loop is bounded in count and time,
//! and only talks to 127.0.0.1.
//!
//! The engine scenarios run the real signaling server and two real engines
//! (`p2pchat_client::engine`) in this process; round-trip and throughput
//! repeat on several runtime layouts (see [`Placement`]), because which
//! thread wakes which dominates a 10 µs round trip. idle-cpu and
//! peer-memory run two real `peer --json` processes (the release binary)
//! against an in-process server.

#[path = "../tests/support/bins.rs"]
mod bins;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use p2pchat::PeerId;
use p2pchat_client::engine::{self, Command, EngineConfig, EngineHandle, Event};
use p2pchat_client::identity::Identity;
use p2pchat_client::secure::{Handshake, LocalParams, Prologue, Transport};
use p2pchat_client::session::{
    Action, Channel, Phase, Plaintext, Protection, Role, SealedChannel, Session, SessionConfig,
    SessionEvent,
};
use p2pchat_client::signaling::{Registration, Signaling};
use p2pchat_client::wire::{Datagram, Message};
use p2pchat_server::{self as server, RunningServer, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// Chat line body size for every scenario (the issue's 100-byte bodies).
const BODY_BYTES: usize = 100;

/// Upper bound of any single wait (an event, a datagram, a process).
const WAIT: Duration = Duration::from_secs(15);

/// Round trips thrown away at the start of each run (caches, allocators,
/// the RTT estimator).
const WARMUP_ROUND_TRIPS: usize = 200;

/// The raw baselines keep this many datagrams unacknowledged: the session's
/// reliable window ([`p2pchat_client::session::WINDOW`]).
const RAW_WINDOW: u64 = p2pchat_client::session::WINDOW;

/// Lines a `peer` process is kept ahead of its acknowledgements in
/// peer-memory (well under the session's 1,024 queued fragments and the
/// front end's input buffers).
const BINARY_OUTSTANDING: usize = 200;

struct Options {
    scenario: String,
    runs: Option<usize>,
    secs: Option<u64>,
    samples: Option<usize>,
    messages: Option<usize>,
    outstanding: usize,
    /// Only this runtime placement (round-trip, throughput), e.g. to run
    /// one under callgrind.
    placement: Option<Placement>,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut o = Options {
        scenario: String::new(),
        runs: None,
        secs: None,
        samples: None,
        messages: None,
        outstanding: 512,
        placement: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--runs" => o.runs = Some(value("--runs").max(1)),
            "--secs" => o.secs = Some(value("--secs").max(1) as u64),
            "--samples" => o.samples = Some(value("--samples").max(1)),
            "--messages" => o.messages = Some(value("--messages").max(1)),
            "--outstanding" => {
                // Past MAX_QUEUED_FRAGMENTS the session refuses lines.
                o.outstanding = value("--outstanding").clamp(1, 1000);
            }
            "--placement" => {
                let name = args.next().unwrap_or_default();
                o.placement = Some(
                    Placement::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .unwrap_or_else(|| panic!("--placement: one-thread, workers or block-on")),
                );
            }
            other if !other.starts_with('-') => o.scenario = other.to_owned(),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn main() {
    let o = options();
    println!(
        "machine: {} cores, {} MiB memory; load average before: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        total_memory_mib(),
        load_average()
    );
    let runs = o.runs;
    let (samples, secs, messages) = (o.samples, o.secs, o.messages);
    let outstanding = o.outstanding;
    match o.scenario.as_str() {
        "round-trip" => {
            let mut rows = Vec::new();
            for placement in Placement::ALL {
                if o.placement.is_some_and(|p| p != placement) {
                    continue;
                }
                println!("\n{}", placement.label());
                rows.push((placement, placement.run(round_trip(runs, samples, secs))));
            }
            print_round_trips(&rows);
        }
        "throughput" => {
            let mut rows = Vec::new();
            for placement in [Placement::OneThread, Placement::Workers] {
                if o.placement.is_some_and(|p| p != placement) {
                    continue;
                }
                println!("\n{}", placement.label());
                let row = placement.run(throughput(runs, messages, secs, outstanding));
                rows.push((placement, row));
            }
            print_throughput(&rows);
        }
        "encryption" => {
            let (mut rtts, mut rates) = (Vec::new(), Vec::new());
            for placement in [Placement::OneThread, Placement::Workers] {
                if o.placement.is_some_and(|p| p != placement) {
                    continue;
                }
                println!("\n{} (round trip)", placement.label());
                rtts.push((
                    placement,
                    placement.run(mode_round_trip(runs, samples, secs)),
                ));
                println!("\n{} (sustained delivery)", placement.label());
                let row = placement.run(mode_throughput(runs, messages, secs, outstanding));
                rates.push((placement, row));
            }
            print_mode_round_trips(&rtts);
            print_mode_throughput(&rates);
        }
        "crypto" => crypto_cost(runs, samples, messages),
        "connect-time" => Placement::Workers.run(connect_time(runs, samples)),
        "idle-cpu" => Placement::Workers.run(idle_cpu(runs, secs)),
        "peer-memory" => Placement::Workers.run(peer_memory(runs, messages, secs)),
        "" => {
            println!(
                "scenarios: round-trip, throughput, encryption, crypto, idle-cpu, peer-memory, \
                 connect-time"
            );
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("load average after: {}", load_average());
}

/// Where the benchmark's tasks run. Which thread wakes which dominates a
/// 10 µs round trip, so the figures are taken on several runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// A current-thread runtime: every task on one thread, no cross-thread
    /// wake-ups. The stable figure of what the code itself costs.
    OneThread,
    /// A multi-thread runtime (a worker per core), the benchmark's front
    /// end a spawned task like the engines: tokio keeps a chain of wake-ups
    /// on one worker where it can, the other core takes the rest.
    Workers,
    /// A multi-thread runtime with the front end on the `block_on` thread,
    /// which is not a worker: every command to and event from the engine
    /// crosses threads (a futex wake each way). This is how `peer`
    /// (`#[tokio::main]`) runs its front end.
    BlockOn,
}

impl Placement {
    const ALL: [Placement; 3] = [Placement::OneThread, Placement::Workers, Placement::BlockOn];

    fn name(self) -> &'static str {
        match self {
            Placement::OneThread => "one-thread",
            Placement::Workers => "workers",
            Placement::BlockOn => "block-on",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Placement::OneThread => "1 thread (current_thread runtime)",
            Placement::Workers => "2 workers, front end in a spawned task",
            Placement::BlockOn => "2 workers, front end on the block_on thread (as in `peer`)",
        }
    }

    fn run<F>(self, scenario: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = match self {
            Placement::OneThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Placement::Workers | Placement::BlockOn => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
        .expect("tokio runtime");
        match self {
            Placement::Workers => {
                rt.block_on(async { tokio::spawn(scenario).await.expect("scenario task") })
            }
            Placement::OneThread | Placement::BlockOn => rt.block_on(scenario),
        }
    }
}

// ---------------------------------------------------------------- helpers --

fn percentile(samples: &mut [u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn total_memory_mib() -> u64 {
    proc_field("/proc/meminfo", "MemTotal:").map_or(0, |kb| kb / 1024)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A `Name:   123 kB` style field of a /proc file, as a number.
fn proc_field(path: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    })
}

/// A chat line of exactly [`BODY_BYTES`] that starts with its sequence
/// number, so the receiver can check order.
fn body(seq: u64) -> String {
    let mut s = format!("{seq:012} ");
    while s.len() < BODY_BYTES {
        s.push('x');
    }
    s
}

fn seq_of(text: &str) -> Option<u64> {
    text.get(..12).and_then(|s| s.parse().ok())
}

/// Size of the datagram the engine sends for one [`body`] line, so the raw
/// baselines move the same number of bytes.
fn message_datagram_bytes() -> usize {
    let mut message = Message::plain(p2pchat::PeerId::random(), body(1));
    message.id = Some(1_000_000);
    Datagram::Message(message)
        .encode()
        .map_or(BODY_BYTES, |b| b.len())
}

fn micros(ns: f64) -> f64 {
    ns / 1000.0
}

// ---------------------------------------------------- in-process engines --

/// One engine (or one bare session, see [`session_pair`]) as the
/// benchmark's front end sees it.
struct Peer {
    handle: Front,
    events: mpsc::Receiver<Event>,
}

/// What the front end drives: a real engine, or a bare session in a task
/// of its own (the encrypted-vs-plaintext comparison, where the engine
/// would always encrypt).
enum Front {
    Engine(EngineHandle),
    Session {
        lines: mpsc::Sender<String>,
        task: tokio::task::JoinHandle<()>,
        id: PeerId,
    },
}

impl Front {
    fn peer_id(&self) -> PeerId {
        match self {
            Front::Engine(handle) => handle.started().peer_id,
            Front::Session { id, .. } => *id,
        }
    }

    /// False if the engine or session task has stopped. A session takes
    /// only `Send` (and `Quit`, carried out by [`Front::join`]).
    async fn command(&self, command: Command) -> bool {
        match (self, command) {
            (Front::Engine(handle), command) => handle.command(command).await,
            (Front::Session { lines, .. }, Command::Send(text)) => lines.send(text).await.is_ok(),
            (Front::Session { .. }, Command::Quit) => true,
            (Front::Session { .. }, other) => panic!("a bare session cannot {other:?}"),
        }
    }

    async fn join(self) {
        match self {
            Front::Engine(handle) => handle.join().await,
            Front::Session { lines, task, .. } => {
                drop(lines);
                let _ = task.await;
            }
        }
    }
}

impl Peer {
    async fn start(server: &RunningServer, name: &str) -> Peer {
        let mut config = EngineConfig::new(format!("http://{}", server.local_addr()), name);
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let (handle, events) = engine::start(config).await.expect("engine starts");
        Peer {
            handle: Front::Engine(handle),
            events,
        }
    }

    fn id(&self) -> PeerId {
        self.handle.peer_id()
    }

    async fn cmd(&self, command: Command) {
        assert!(self.handle.command(command).await, "engine stopped");
    }

    /// The next event, failing after [`WAIT`].
    async fn next(&mut self, what: &str) -> Event {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(Event::Error { code, message, .. })) => {
                panic!("{what}: error {code}: {message}")
            }
            Ok(Some(event)) => event,
            Ok(None) => panic!("engine stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    /// Skips events until one matches `pred`.
    async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        loop {
            let event = self.next(what).await;
            if pred(&event) {
                return event;
            }
        }
    }

    async fn quit(self) {
        let _ = self.handle.command(Command::Quit).await;
        let _ = tokio::time::timeout(WAIT, self.handle.join()).await;
    }
}

async fn start_server() -> RunningServer {
    server::start(ServerConfig::default())
        .await
        .expect("server starts")
}

/// Waits until `a` has `b_id` in its peer list (a name resolves only then).
async fn wait_listed(a: &mut Peer, b_id: PeerId) {
    a.wait("peer in list", |e| match e {
        Event::Peers { peers, .. } => peers.iter().any(|p| p.peer_id == b_id),
        Event::PeerJoined { peer_id, .. } => *peer_id == b_id,
        _ => false,
    })
    .await;
}

/// Starts two engines named `a_name`/`b_name` and connects a to b.
async fn connected_pair(server: &RunningServer, a_name: &str, b_name: &str) -> (Peer, Peer) {
    let mut a = Peer::start(server, a_name).await;
    let mut b = Peer::start(server, b_name).await;
    wait_listed(&mut a, b.id()).await;
    a.cmd(Command::Connect(b_name.into())).await;
    a.wait("a connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    b.wait("b connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    (a, b)
}

/// Reads `events` until the engine stops, counting messages; keeps the
/// receiving engine from ever blocking on a full event channel.
fn drain(mut events: mpsc::Receiver<Event>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut messages = 0;
        while let Some(e) = events.recv().await {
            if matches!(e, Event::Message { .. }) {
                messages += 1;
            }
        }
        messages
    })
}

// ------------------------------------------------------------ round-trip --

/// One run of engine round trips: `Command::Send` from the front end to
/// `Event::Delivered` back at the front end. Nanoseconds per sample.
async fn engine_round_trips(
    a: &mut Peer,
    samples: usize,
    cap: Duration,
    seq: &mut u64,
) -> Vec<u64> {
    let started = Instant::now();
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples + WARMUP_ROUND_TRIPS {
        if started.elapsed() > cap {
            break;
        }
        *seq += 1;
        let t = Instant::now();
        a.cmd(Command::Send(body(*seq))).await;
        a.wait("delivered", |e| matches!(e, Event::Delivered { .. }))
            .await;
        if i >= WARMUP_ROUND_TRIPS {
            out.push(t.elapsed().as_nanos() as u64);
        }
    }
    out
}

/// One run of the floor: a `size`-byte datagram to an echo task on another
/// socket and back, awaited by this task. Nanoseconds per sample.
async fn raw_echo_round_trips(size: usize, samples: usize, cap: Duration) -> Vec<u64> {
    let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    let echo_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            if echo.send_to(&buf[..n], from).await.is_err() {
                break;
            }
        }
    });
    let payload = vec![b'x'; size];
    let mut buf = vec![0u8; 2048];
    let started = Instant::now();
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples + WARMUP_ROUND_TRIPS {
        if started.elapsed() > cap {
            break;
        }
        let t = Instant::now();
        client.send_to(&payload, echo_addr).await.expect("send");
        tokio::time::timeout(WAIT, client.recv_from(&mut buf))
            .await
            .expect("echo in time")
            .expect("recv");
        if i >= WARMUP_ROUND_TRIPS {
            out.push(t.elapsed().as_nanos() as u64);
        }
    }
    echo_task.abort();
    out
}

/// The floor again, but shaped like the engine: the request goes over an
/// mpsc channel to a task that owns the socket (and `select!`s between the
/// channel and the socket, as the engine does), and the echo comes back to
/// the caller over another channel. The difference to the raw echo is the
/// price of the two task hops the engine's API has by design.
async fn hopped_echo_round_trips(size: usize, samples: usize, cap: Duration) -> Vec<u64> {
    let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    let echo_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            if echo.send_to(&buf[..n], from).await.is_err() {
                break;
            }
        }
    });
    let (req_tx, mut req_rx) = mpsc::channel::<Vec<u8>>(256);
    let (resp_tx, mut resp_rx) = mpsc::channel::<usize>(4096);
    let socket_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            tokio::select! {
                req = req_rx.recv() => match req {
                    Some(bytes) => {
                        if socket.send_to(&bytes, echo_addr).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                got = socket.recv_from(&mut buf) => match got {
                    Ok((n, _)) => {
                        if resp_tx.send(n).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
            }
        }
    });
    let started = Instant::now();
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples + WARMUP_ROUND_TRIPS {
        if started.elapsed() > cap {
            break;
        }
        let t = Instant::now();
        req_tx.send(vec![b'x'; size]).await.expect("socket task");
        tokio::time::timeout(WAIT, resp_rx.recv())
            .await
            .expect("echo in time")
            .expect("socket task");
        if i >= WARMUP_ROUND_TRIPS {
            out.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(req_tx);
    let _ = tokio::time::timeout(WAIT, socket_task).await;
    echo_task.abort();
    out
}

async fn round_trip(runs: Option<usize>, samples: Option<usize>, secs: Option<u64>) -> RoundTrips {
    let runs = runs.unwrap_or(5);
    let samples = samples.unwrap_or(2000);
    let cap = Duration::from_secs(secs.unwrap_or(20));
    let size = message_datagram_bytes();
    println!(
        "{runs} runs x {samples} round trips (+{WARMUP_ROUND_TRIPS} warm-up, at most {} s each), \
         datagram {size} bytes; median of the runs' percentiles",
        cap.as_secs()
    );
    let server = start_server().await;
    let (mut a, b) = connected_pair(&server, "alice", "bob").await;
    let b_drain = drain(b.events);
    let mut seq = 0;
    let (mut raw50, mut raw99) = (Vec::new(), Vec::new());
    let (mut hop50, mut hop99) = (Vec::new(), Vec::new());
    let (mut eng50, mut eng99) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let mut raw = raw_echo_round_trips(size, samples, cap).await;
        let mut hop = hopped_echo_round_trips(size, samples, cap).await;
        let mut eng = engine_round_trips(&mut a, samples, cap, &mut seq).await;
        let row = |s: &mut Vec<u64>| (percentile(s, 0.5) as f64, percentile(s, 0.99) as f64);
        let (r50, r99) = row(&mut raw);
        let (h50, h99) = row(&mut hop);
        let (e50, e99) = row(&mut eng);
        println!(
            "run {run}: raw p50 {:.1} p99 {:.1} | hopped p50 {:.1} p99 {:.1} | engine p50 {:.1} p99 {:.1} µs ({} samples)",
            micros(r50),
            micros(r99),
            micros(h50),
            micros(h99),
            micros(e50),
            micros(e99),
            eng.len()
        );
        raw50.push(r50);
        raw99.push(r99);
        hop50.push(h50);
        hop99.push(h99);
        eng50.push(e50);
        eng99.push(e99);
    }
    let row = RoundTrips {
        size,
        raw: (median(raw50), median(raw99)),
        hopped: (median(hop50), median(hop99)),
        engine: (median(eng50), median(eng99)),
    };
    a.quit().await;
    b.handle.command(Command::Quit).await;
    let _ = tokio::time::timeout(WAIT, b.handle.join()).await;
    let _ = tokio::time::timeout(WAIT, b_drain).await;
    server.shutdown().await;
    row
}

/// Medians of the runs' (p50, p99), in nanoseconds.
struct RoundTrips {
    size: usize,
    raw: (f64, f64),
    hopped: (f64, f64),
    engine: (f64, f64),
}

fn print_round_trips(rows: &[(Placement, RoundTrips)]) {
    let Some((_, first)) = rows.first() else {
        return;
    };
    println!(
        "\n| round trip, {}-byte datagrams | runtime | p50 µs | p99 µs | p50 vs raw echo |",
        first.size
    );
    println!("|---|---|---|---|---|");
    for (placement, r) in rows {
        let label = placement.label();
        println!(
            "| baseline: raw tokio UDP echo | {label} | {:.1} | {:.1} | 1.00x |",
            micros(r.raw.0),
            micros(r.raw.1)
        );
        println!(
            "| raw echo + the engine's two task hops | {label} | {:.1} | {:.1} | {:.2}x |",
            micros(r.hopped.0),
            micros(r.hopped.1),
            r.hopped.0 / r.raw.0
        );
        println!(
            "| **engine: send -> delivered** | {label} | {:.1} | {:.1} | **{:.2}x** |",
            micros(r.engine.0),
            micros(r.engine.1),
            r.engine.0 / r.raw.0
        );
    }
}

// ------------------------------------------------------------ throughput --

/// Counts `total` in-order messages at the receiver; returns its events
/// back with the count and when the last one arrived.
fn count_messages(
    mut events: mpsc::Receiver<Event>,
    first_seq: u64,
    mut total: watch::Receiver<u64>,
) -> tokio::task::JoinHandle<(mpsc::Receiver<Event>, u64, Option<Instant>)> {
    tokio::spawn(async move {
        let mut expected = first_seq;
        let mut count = 0u64;
        let mut last = None;
        loop {
            if count >= *total.borrow() {
                break;
            }
            let event = tokio::select! {
                e = tokio::time::timeout(WAIT, events.recv()) => e,
                // Re-check the total when the sender fixes it.
                _ = total.changed() => continue,
            };
            match event {
                Ok(Some(Event::Message { text, .. })) => {
                    let seq = seq_of(&text);
                    assert_eq!(seq, Some(expected), "message out of order");
                    expected += 1;
                    count += 1;
                    last = Some(Instant::now());
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        (events, count, last)
    })
}

/// One run: `a` keeps `outstanding` lines unacknowledged (pacing on
/// `Delivered`, as a real sender must) until `messages` lines or `cap`.
/// Returns (lines received in order at b, seconds from first send to the
/// last arrival).
async fn engine_throughput(
    a: &mut Peer,
    b_events: &mut Option<mpsc::Receiver<Event>>,
    seq: &mut u64,
    messages: u64,
    outstanding: u64,
    cap: Duration,
) -> (u64, f64) {
    let first = *seq + 1;
    let (total_tx, total_rx) = watch::channel(u64::MAX);
    let counter = count_messages(b_events.take().expect("b events"), first, total_rx);
    let started = Instant::now();
    let (mut sent, mut delivered) = (0u64, 0u64);
    while delivered < sent || (sent < messages && started.elapsed() < cap) {
        while sent < messages && sent - delivered < outstanding && started.elapsed() < cap {
            *seq += 1;
            a.cmd(Command::Send(body(*seq))).await;
            sent += 1;
        }
        if let Event::Delivered { .. } = a.next("delivered").await {
            delivered += 1;
        }
    }
    let _ = total_tx.send(sent);
    let (events, received, last) = tokio::time::timeout(WAIT, counter)
        .await
        .expect("receiver finishes")
        .expect("receiver task");
    *b_events = Some(events);
    assert_eq!(received, sent, "every line arrives");
    let secs = last.map_or(0.0, |l| l.duration_since(started).as_secs_f64());
    (received, secs)
}

/// The floor: the same datagram pattern without JSON, session or engine.
/// The sender keeps [`RAW_WINDOW`] `size`-byte datagrams unacknowledged;
/// the receiver checks order and answers each with an 8-byte ack. Returns
/// (datagrams received in order, seconds).
async fn raw_throughput(size: usize, messages: u64, cap: Duration) -> (u64, f64) {
    let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let rx_addr = rx.local_addr().expect("addr");
    let receiver = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut expected = 0u64;
        let mut last = None;
        while expected < messages {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) if n >= 8 => {
                    let mut id = [0u8; 8];
                    id.copy_from_slice(&buf[..8]);
                    assert_eq!(
                        u64::from_le_bytes(id),
                        expected,
                        "raw datagram out of order"
                    );
                    expected += 1;
                    last = Some(Instant::now());
                    if rx.send_to(&id, from).await.is_err() {
                        break;
                    }
                }
                // Short datagram, error or a stall (loss): end the run.
                _ => break,
            }
        }
        (expected, last)
    });
    let mut payload = vec![b'x'; size.max(8)];
    let mut buf = [0u8; 64];
    let started = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < sent || (sent < messages && started.elapsed() < cap) {
        while sent < messages && sent - acked < RAW_WINDOW && started.elapsed() < cap {
            payload[..8].copy_from_slice(&sent.to_le_bytes());
            tx.send_to(&payload, rx_addr).await.expect("send");
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(2), tx.recv_from(&mut buf)).await {
            Ok(Ok(_)) => acked += 1,
            _ => break,
        }
    }
    let (received, last) = tokio::time::timeout(WAIT, receiver)
        .await
        .expect("receiver finishes")
        .expect("receiver task");
    let secs = last.map_or(0.0, |l| l.duration_since(started).as_secs_f64());
    (received.min(sent), secs)
}

async fn throughput(
    runs: Option<usize>,
    messages: Option<usize>,
    secs: Option<u64>,
    outstanding: usize,
) -> (f64, f64) {
    let runs = runs.unwrap_or(5);
    let messages = messages.unwrap_or(200_000) as u64;
    let cap = Duration::from_secs(secs.unwrap_or(10));
    let outstanding = outstanding as u64;
    let size = message_datagram_bytes();
    println!(
        "{runs} runs of at most {messages} lines / {} s; sender keeps {outstanding} lines \
         unacknowledged; {BODY_BYTES}-byte bodies ({size}-byte datagrams)",
        cap.as_secs()
    );
    let server = start_server().await;
    let (mut a, b) = connected_pair(&server, "alice", "bob").await;
    let mut b_events = Some(b.events);
    let mut seq = 0;
    let (mut raw_rates, mut eng_rates) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (raw_n, raw_s) = raw_throughput(size, messages, cap).await;
        let (eng_n, eng_s) =
            engine_throughput(&mut a, &mut b_events, &mut seq, messages, outstanding, cap).await;
        let raw_rate = raw_n as f64 / raw_s.max(1e-9);
        let eng_rate = eng_n as f64 / eng_s.max(1e-9);
        println!(
            "run {run}: raw {raw_n} in {raw_s:.2} s = {raw_rate:.0}/s | engine {eng_n} in {eng_s:.2} s = {eng_rate:.0}/s"
        );
        raw_rates.push(raw_rate);
        eng_rates.push(eng_rate);
    }
    a.quit().await;
    b.handle.command(Command::Quit).await;
    let _ = tokio::time::timeout(WAIT, b.handle.join()).await;
    drop(b_events);
    server.shutdown().await;
    (median(raw_rates), median(eng_rates))
}

fn print_throughput(rows: &[(Placement, (f64, f64))]) {
    println!(
        "\n| one-way, acked, in order, {BODY_BYTES}-byte bodies | runtime | messages/s | vs raw |"
    );
    println!("|---|---|---|---|");
    for (placement, (raw, eng)) in rows {
        let label = placement.label();
        println!(
            "| baseline: raw UDP, window {RAW_WINDOW}, 8-byte acks | {label} | {raw:.0} | 100% |"
        );
        println!(
            "| **engine -> engine (Event::Message at b)** | {label} | **{eng:.0}** | {:.0}% |",
            100.0 * eng / raw
        );
    }
}

// ---------------------------------------------------------- connect-time --

/// Pairs connected one after the other in a connect-time group: the first
/// after [`IDLE_BEFORE`] ("idle"), the rest back to back ("warm"). Fresh
/// pairs rather than /leave + reconnect of one pair: a reconnect within
/// microseconds of a /leave races the previous rendezvous (see
/// BENCHMARKS.md) and is not what this measures.
const PAIRS_PER_GROUP: usize = 6;

/// Pause before each "after idle" sample in connect-time: long enough for
/// every thread to stop spinning and sleep, as when a user types
/// `/connect` after a while.
const IDLE_BEFORE: Duration = Duration::from_millis(200);

/// A registered signaling identity without an engine, for timing the
/// rendezvous RPC on its own.
async fn signaling_identity(server: &RunningServer, name: &str) -> Signaling {
    let registration = Registration {
        username: name.to_owned(),
        udp_port: 9,
        endpoints: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
    };
    let url = format!("http://{}", server.local_addr());
    let (signaling, _) = Signaling::register(&url, Identity::generate(), registration)
        .await
        .expect("register");
    signaling
}

/// Times `RequestConnect`, the one signaling round trip a connect makes.
async fn time_request_connect(from: &Signaling, to: &Signaling) -> u64 {
    let t = Instant::now();
    from.request_connect(to.peer_id())
        .await
        .expect("request connect");
    t.elapsed().as_nanos() as u64
}

/// Connect -> `Connected`, then a line -> `Delivered`; (connected,
/// delivered) in nanoseconds since the connect command.
async fn time_connect(a: &mut Peer, b: &mut Peer, b_name: &str) -> (u64, u64) {
    let t = Instant::now();
    a.cmd(Command::Connect(b_name.to_owned())).await;
    a.wait("connected", |e| matches!(e, Event::Connected { .. }))
        .await;
    let connected = t.elapsed();
    a.cmd(Command::Send(body(1))).await;
    a.wait("delivered", |e| matches!(e, Event::Delivered { .. }))
        .await;
    let delivered = t.elapsed();
    b.wait("message", |e| matches!(e, Event::Message { .. }))
        .await;
    (connected.as_nanos() as u64, delivered.as_nanos() as u64)
}

/// Single raw echo round trips, each after `idle` without traffic.
async fn echo_after_idle(size: usize, idle: Duration, count: usize) -> Vec<u64> {
    let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    let echo_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            if echo.send_to(&buf[..n], from).await.is_err() {
                break;
            }
        }
    });
    let payload = vec![b'x'; size];
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        tokio::time::sleep(idle).await;
        let t = Instant::now();
        client.send_to(&payload, echo_addr).await.expect("send");
        tokio::time::timeout(WAIT, client.recv_from(&mut buf))
            .await
            .expect("echo in time")
            .expect("recv");
        out.push(t.elapsed().as_nanos() as u64);
    }
    echo_task.abort();
    out
}

async fn connect_time(runs: Option<usize>, groups: Option<usize>) {
    let runs = runs.unwrap_or(3);
    let groups = groups.unwrap_or(10);
    println!(
        "{runs} runs x {groups} groups of {PAIRS_PER_GROUP} fresh pairs; per group the first \
         connect after {} ms idle, the others back to back (warm); median of the runs' medians",
        IDLE_BEFORE.as_millis()
    );
    let server = start_server().await;
    let size = message_datagram_bytes();
    let from = signaling_identity(&server, "rc-from").await;
    let to = signaling_identity(&server, "rc-to").await;
    const NAMES: [&str; 8] = [
        "idle: connect -> connected",
        "idle: connect -> first line delivered",
        "warm: connect -> connected",
        "warm: connect -> first line delivered",
        "idle: RequestConnect",
        "warm: RequestConnect",
        "idle: UDP echo round trip",
        "warm: UDP echo round trip",
    ];
    let mut medians: [Vec<f64>; 8] = Default::default();
    let mut n = 0;
    for run in 0..runs {
        let mut samples: [Vec<u64>; 8] = Default::default();
        for _ in 0..groups {
            let mut group = Vec::new();
            for _ in 0..PAIRS_PER_GROUP {
                n += 1;
                let b_name = format!("cb{n}");
                let mut a = Peer::start(&server, &format!("ca{n}")).await;
                let b = Peer::start(&server, &b_name).await;
                wait_listed(&mut a, b.id()).await;
                group.push((a, b, b_name));
            }
            tokio::time::sleep(IDLE_BEFORE).await;
            for (i, (a, b, b_name)) in group.iter_mut().enumerate() {
                let (up, first) = time_connect(a, b, b_name).await;
                let slot = if i == 0 { 0 } else { 2 };
                samples[slot].push(up);
                samples[slot + 1].push(first);
            }
            for (a, b, _) in group {
                a.quit().await;
                b.quit().await;
            }
            tokio::time::sleep(IDLE_BEFORE).await;
            samples[4].push(time_request_connect(&from, &to).await);
        }
        for _ in 0..200 {
            samples[5].push(time_request_connect(&from, &to).await);
        }
        samples[6] = echo_after_idle(size, IDLE_BEFORE, groups).await;
        samples[7] = raw_echo_round_trips(size, 200, Duration::from_secs(5)).await;
        let m: Vec<f64> = samples
            .iter_mut()
            .map(|s| percentile(s, 0.5) as f64)
            .collect();
        let line: Vec<String> = NAMES
            .iter()
            .zip(&m)
            .map(|(name, v)| format!("{name} {:.3}", v / 1e6))
            .collect();
        println!("run {run} (ms): {}", line.join("; "));
        for (all, one) in medians.iter_mut().zip(m) {
            all.push(one);
        }
    }
    let m: Vec<f64> = medians.into_iter().map(median).collect();
    let ms = |ns: f64| ns / 1e6;
    println!("\n| connect time on loopback | ms |");
    println!("|---|---|");
    for (name, v) in NAMES.iter().zip(&m) {
        println!("| {name} | {:.3} |", ms(*v));
    }
    for (label, connected, delivered, rpc, udp) in [
        ("idle", m[0], m[1], m[4], m[6]),
        ("warm", m[2], m[3], m[5], m[7]),
    ] {
        let target = rpc + 3.0 * udp;
        println!(
            "| **{label}: target 3 x UDP RTT + 1 RequestConnect = {:.3} ms; connected at \
             {:.2}x, first line delivered at {:.2}x** | |",
            ms(target),
            connected / target,
            delivered / target
        );
    }
    let _ = from.unregister().await;
    let _ = to.unregister().await;
    server.shutdown().await;
}

// -------------------------------------------------------- peer processes --

/// A real `peer --json` process: stdin for lines, stdout parsed to events.
struct PeerProc {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
}

impl PeerProc {
    async fn start(server: &RunningServer, name: &str) -> PeerProc {
        let mut child = tokio::process::Command::new(bins::PEER.path())
            .args([
                "--json",
                "--server",
                &format!("http://{}", server.local_addr()),
                "--username",
                name,
                "--bind",
                "127.0.0.1",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn peer");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        PeerProc {
            child,
            stdin,
            events,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("peer running")
    }

    async fn write(&mut self, text: &str) {
        self.stdin
            .write_all(text.as_bytes())
            .await
            .expect("peer stdin");
        self.stdin.flush().await.expect("peer stdin");
    }

    async fn next(&mut self, what: &str) -> Value {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) if event["event"] == "error" => panic!("{what}: {event}"),
            Ok(Some(event)) => event,
            Ok(None) => panic!("peer exited while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let event = self.next(what).await;
            if pred(&event) {
                return event;
            }
        }
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"/quit\n").await;
        let _ = self.stdin.flush().await;
        if tokio::time::timeout(WAIT, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// Two `peer` processes, `a` connected to `b`.
async fn connected_procs(
    server: &RunningServer,
    a_name: &str,
    b_name: &str,
) -> (PeerProc, PeerProc) {
    let mut a = PeerProc::start(server, a_name).await;
    let mut b = PeerProc::start(server, b_name).await;
    b.wait("b registered", |e| e["event"] == "registered").await;
    a.wait("b in a's list", |e| {
        (e["event"] == "peers"
            && e["peers"]
                .as_array()
                .is_some_and(|l| l.iter().any(|p| p["username"] == b_name)))
            || (e["event"] == "peer_joined" && e["username"] == b_name)
    })
    .await;
    a.write(&format!("/connect {b_name}\n")).await;
    a.wait("a connected", |e| e["event"] == "connected").await;
    b.wait("b connected", |e| e["event"] == "connected").await;
    (a, b)
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Context switches (voluntary + involuntary) summed over every thread of a
/// process: each is a wake-up, the honest measure of "idle".
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .map(|t| {
            let path = t.path().join("status");
            let path = path.to_string_lossy();
            proc_field(&path, "voluntary_ctxt_switches:").unwrap_or(0)
                + proc_field(&path, "nonvoluntary_ctxt_switches:").unwrap_or(0)
        })
        .sum()
}

fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn idle_cpu(runs: Option<usize>, secs: Option<u64>) {
    let runs = runs.unwrap_or(3);
    let secs = secs.unwrap_or(20);
    let hz = clock_ticks_per_sec();
    println!(
        "{runs} runs x {secs} s idle, two connected `peer --json` processes with default \
         timings (15 s keep-alive); CLK_TCK {hz}"
    );
    let server = start_server().await;
    let (mut cpu, mut wakeups) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (a, b) = connected_procs(&server, &format!("ia{run}"), &format!("ib{run}")).await;
        // Let start-up work (first pings, RTT probes) finish.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pids = [a.pid(), b.pid()];
        let ticks0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
        let cs0: Vec<u64> = pids.iter().map(|p| context_switches(*p)).collect();
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let elapsed = t.elapsed().as_secs_f64();
        for (i, pid) in pids.iter().enumerate() {
            let ticks = cpu_ticks(*pid) - ticks0[i];
            let cs = context_switches(*pid) - cs0[i];
            let pct = 100.0 * ticks as f64 / hz / elapsed;
            let per_sec = cs as f64 / elapsed;
            println!(
                "run {run} peer {}: {ticks} ticks = {pct:.3}% of a core; {cs} context switches = {per_sec:.2}/s",
                ["a", "b"][i]
            );
            cpu.push(pct);
            wakeups.push(per_sec);
        }
        a.quit().await;
        b.quit().await;
    }
    let (pct, per_sec) = (median(cpu), median(wakeups));
    println!("\n| idle connected peer, {secs} s | value |");
    println!("|---|---|");
    println!(
        "| **CPU (utime+stime), median over {} peer-runs** | **{pct:.3}% of one core** |",
        runs * 2
    );
    println!("| context switches, all threads | {per_sec:.2}/s |");
    server.shutdown().await;
}

async fn peer_memory(runs: Option<usize>, messages: Option<usize>, secs: Option<u64>) {
    let runs = runs.unwrap_or(3);
    let messages = messages.unwrap_or(10_000);
    let cap = Duration::from_secs(secs.unwrap_or(120));
    println!(
        "{runs} runs: two `peer --json` processes, {messages} lines of {BODY_BYTES} bytes a -> b \
         (at most {} s), {BINARY_OUTSTANDING} unacknowledged at most",
        cap.as_secs()
    );
    let server = start_server().await;
    let (mut before, mut hwm, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let (mut a, mut b) =
            connected_procs(&server, &format!("ma{run}"), &format!("mb{run}")).await;
        let pids = [a.pid(), b.pid()];
        let hwm0 = pids
            .iter()
            .map(|p| proc_field(&format!("/proc/{p}/status"), "VmHWM:").unwrap_or(0))
            .max()
            .unwrap_or(0);
        let started = Instant::now();
        let (mut written, mut delivered) = (0usize, 0usize);
        while delivered < written || (written < messages && started.elapsed() < cap) {
            let mut batch = String::new();
            while written < messages
                && written - delivered < BINARY_OUTSTANDING
                && started.elapsed() < cap
            {
                batch.push_str(&body(written as u64));
                batch.push('\n');
                written += 1;
            }
            if !batch.is_empty() {
                a.write(&batch).await;
            }
            if a.next("delivered").await["event"] == "delivered" {
                delivered += 1;
            }
        }
        let mut received = 0;
        while received < written {
            if b.next("message").await["event"] == "message" {
                received += 1;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let peaks: Vec<u64> = pids
            .iter()
            .map(|p| proc_field(&format!("/proc/{p}/status"), "VmHWM:").unwrap_or(0))
            .collect();
        let rss: Vec<u64> = pids
            .iter()
            .map(|p| proc_field(&format!("/proc/{p}/status"), "VmRSS:").unwrap_or(0))
            .collect();
        let rate = written as f64 / secs;
        println!(
            "run {run}: {written} lines in {secs:.2} s ({rate:.0}/s through stdin/stdout JSON); \
             VmHWM before {hwm0} KiB, after a {} / b {} KiB; VmRSS a {} / b {} KiB",
            peaks[0], peaks[1], rss[0], rss[1]
        );
        before.push(hwm0 as f64);
        hwm.push(peaks.iter().copied().max().unwrap_or(0) as f64);
        rates.push(rate);
        a.quit().await;
        b.quit().await;
    }
    let (b0, peak, rate) = (median(before), median(hwm), median(rates));
    println!("\n| `peer` process memory | value |");
    println!("|---|---|");
    println!(
        "| VmHWM once connected (larger of the two) | {:.1} MiB |",
        b0 / 1024.0
    );
    println!(
        "| **VmHWM after {messages} lines (larger of the two)** | **{:.1} MiB** |",
        peak / 1024.0
    );
    println!("| lines/s through the JSON front ends (context) | {rate:.0} |");
    server.shutdown().await;
}

// ------------------------------------------ encrypted vs plaintext (E2E) --

/// How a bare session pair protects its datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The seed's JSON (what two engines spoke before end-to-end
    /// encryption, and still speak with a seed-protocol peer).
    Plaintext,
    /// Noise IK handshake, then every datagram sealed.
    Encrypted,
}

/// Waits for `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The engine's loop for one session, minus the session table: a task that
/// owns the socket and the session and `select!`s between the socket, the
/// front end's lines and the session's timers; events go to the front end
/// over a channel, as the engine's do. Sealed datagrams go to
/// `handle_bytes`, plaintext to `handle_datagram`, as the engine routes
/// them. Ends when the front end drops its sender.
async fn drive_session(
    socket: UdpSocket,
    mut session: Session,
    mut lines: mpsc::Receiver<String>,
    events: mpsc::Sender<Event>,
) {
    let peer = session.remote_id();
    let encrypted = session.is_encrypted();
    let mut buf = vec![0u8; 65_536];
    loop {
        for action in session.take_actions() {
            match action {
                // Loopback: a priming probe needs no TTL of its own.
                Action::Send { to, bytes } | Action::Prime { to, bytes } => {
                    let _ = socket.send_to(&bytes, to).await;
                }
                Action::Event(event) => {
                    let event = match event {
                        SessionEvent::Message { text, sent_at } => Event::Message {
                            from: peer,
                            username: String::new(),
                            text,
                            sent_at,
                            encrypted,
                        },
                        SessionEvent::Delivered { line } => Event::Delivered { to: peer, line },
                        SessionEvent::Connected { addr, .. } => Event::Info {
                            message: format!("connected {addr} encrypted={encrypted}"),
                        },
                        SessionEvent::Closed { reason } => Event::Info {
                            message: format!("closed {reason:?}"),
                        },
                        _ => continue,
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
        }
        if session.phase() == Phase::Closed {
            return;
        }
        let deadline = session.next_deadline();
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let now = tokio::time::Instant::now();
                let bytes = &buf[..n];
                if p2pchat::datagram::classify(bytes) == p2pchat::datagram::DatagramKind::Sealed {
                    session.handle_bytes(bytes, from, now);
                } else if let Ok(dg) = Datagram::decode(bytes)
                    && dg.from() == peer
                {
                    session.handle_datagram(&dg, from, now);
                }
            }
            line = lines.recv() => match line {
                Some(text) => {
                    let now = tokio::time::Instant::now();
                    if let Err(err) = session.send_line(&text, now) {
                        panic!("session refused a line: {err}");
                    }
                }
                None => {
                    session.close();
                    for action in session.take_actions() {
                        if let Action::Send { to, bytes } = action {
                            let _ = socket.send_to(&bytes, to).await;
                        }
                    }
                    return;
                }
            },
            _ = sleep_until_opt(deadline) => session.poll_timers(tokio::time::Instant::now()),
        }
    }
}

/// Two bare sessions over real loopback UDP sockets, each in its own task
/// (see [`drive_session`]), connected: A calls B, as an engine does after a
/// rendezvous (IK with B's key from the registry when encrypted; B waits
/// for it, as after a connect request). Default session timings.
async fn session_pair(mode: Mode) -> (Peer, Peer) {
    let sa = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let sb = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let (a_addr, b_addr) = (
        sa.local_addr().expect("addr"),
        sb.local_addr().expect("addr"),
    );
    let index = || (uuid::Uuid::new_v4().as_u128() & 0xffff_ffff) as u32;
    let (pa, pb, a_id, b_id) = match mode {
        Mode::Plaintext => (
            Protection::Plaintext,
            Protection::Plaintext,
            PeerId::random(),
            PeerId::random(),
        ),
        Mode::Encrypted => {
            let ia = std::sync::Arc::new(Identity::generate());
            let ib = std::sync::Arc::new(Identity::generate());
            let (a_id, b_id, b_key) = (ia.peer_id(), ib.peer_id(), ib.public_key());
            (
                Protection::Noise {
                    identity: ia,
                    index: index(),
                    role: Role::Initiate(Some(b_key)),
                },
                Protection::Noise {
                    identity: ib,
                    index: index(),
                    role: Role::Respond,
                },
                a_id,
                b_id,
            )
        }
    };
    let now = tokio::time::Instant::now();
    let config = SessionConfig::default();
    let b_session = Session::connect(config.clone(), b_id, "bob", a_id, vec![a_addr], pb, now);
    let a_session = Session::connect(config, a_id, "alice", b_id, vec![b_addr], pa, now);
    let side = |socket, session, id| {
        let (lines_tx, lines_rx) = mpsc::channel(engine::COMMAND_BUFFER);
        let (events_tx, events_rx) = mpsc::channel(engine::EVENT_BUFFER);
        let task = tokio::spawn(drive_session(socket, session, lines_rx, events_tx));
        Peer {
            handle: Front::Session {
                lines: lines_tx,
                task,
                id,
            },
            events: events_rx,
        }
    };
    let mut b = side(sb, b_session, b_id);
    let mut a = side(sa, a_session, a_id);
    let expect = format!("encrypted={}", mode == Mode::Encrypted);
    for (name, peer) in [("a", &mut a), ("b", &mut b)] {
        match peer
            .wait(
                "session connected",
                |e| matches!(e, Event::Info { message } if message.starts_with("connected")),
            )
            .await
        {
            Event::Info { message } => assert!(message.ends_with(&expect), "{name}: {message}"),
            _ => unreachable!(),
        }
    }
    (a, b)
}

/// Medians of the runs' (p50, p99) in ns, per variant.
struct ModeRoundTrips {
    plain: (f64, f64),
    sealed: (f64, f64),
    engine: (f64, f64),
}

/// Round trips of one line (send -> delivered), plaintext and encrypted
/// session pairs and an (encrypted) engine pair, interleaved run by run
/// in a rotating order.
async fn mode_round_trip(
    runs: Option<usize>,
    samples: Option<usize>,
    secs: Option<u64>,
) -> ModeRoundTrips {
    let runs = runs.unwrap_or(5);
    let samples = samples.unwrap_or(2000);
    let cap = Duration::from_secs(secs.unwrap_or(20));
    println!(
        "{runs} runs x {samples} round trips (+{WARMUP_ROUND_TRIPS} warm-up, at most {} s each) \
         per variant, order rotating; {BODY_BYTES}-byte lines",
        cap.as_secs()
    );
    let server = start_server().await;
    let (mut ea, eb) = connected_pair(&server, "alice", "bob").await;
    let eb_drain = drain(eb.events);
    let (mut pa, pb) = session_pair(Mode::Plaintext).await;
    let pb_drain = drain(pb.events);
    let (mut sa, sb) = session_pair(Mode::Encrypted).await;
    let sb_drain = drain(sb.events);
    let mut seq = 0;
    let mut results: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    for run in 0..runs {
        let mut line = format!("run {run}:");
        for k in 0..3 {
            let which = (run + k) % 3;
            let peer = match which {
                0 => &mut pa,
                1 => &mut sa,
                _ => &mut ea,
            };
            let mut rtts = engine_round_trips(peer, samples, cap, &mut seq).await;
            let (p50, p99) = (
                percentile(&mut rtts, 0.5) as f64,
                percentile(&mut rtts, 0.99) as f64,
            );
            let name = ["plaintext", "encrypted", "engine"][which];
            line += &format!(
                " {name} p50 {:.1} p99 {:.1} µs ({})",
                micros(p50),
                micros(p99),
                rtts.len()
            );
            results[which].0.push(p50);
            results[which].1.push(p99);
        }
        println!("{line}");
    }
    let [p, s, e] = results;
    let row = ModeRoundTrips {
        plain: (median(p.0), median(p.1)),
        sealed: (median(s.0), median(s.1)),
        engine: (median(e.0), median(e.1)),
    };
    for (peer, drain) in [(pa, pb_drain), (sa, sb_drain)] {
        peer.quit().await;
        let _ = tokio::time::timeout(WAIT, drain).await;
    }
    for front in [pb.handle, sb.handle] {
        let _ = tokio::time::timeout(WAIT, front.join()).await;
    }
    ea.quit().await;
    eb.handle.command(Command::Quit).await;
    let _ = tokio::time::timeout(WAIT, eb.handle.join()).await;
    let _ = tokio::time::timeout(WAIT, eb_drain).await;
    server.shutdown().await;
    row
}

/// Sustained one-way delivery, plaintext and encrypted session pairs and
/// an (encrypted) engine pair, interleaved. Medians of lines/s.
async fn mode_throughput(
    runs: Option<usize>,
    messages: Option<usize>,
    secs: Option<u64>,
    outstanding: usize,
) -> [f64; 3] {
    let runs = runs.unwrap_or(5);
    let messages = messages.unwrap_or(200_000) as u64;
    let cap = Duration::from_secs(secs.unwrap_or(10));
    let outstanding = outstanding as u64;
    println!(
        "{runs} runs of at most {messages} lines / {} s per variant, order rotating; sender \
         keeps {outstanding} lines unacknowledged; {BODY_BYTES}-byte bodies",
        cap.as_secs()
    );
    let server = start_server().await;
    let (ea, eb) = connected_pair(&server, "alice", "bob").await;
    let (pa, pb) = session_pair(Mode::Plaintext).await;
    let (sa, sb) = session_pair(Mode::Encrypted).await;
    let mut senders = [pa, sa, ea];
    let mut fronts = [Some(pb.handle), Some(sb.handle), Some(eb.handle)];
    let mut receivers = [Some(pb.events), Some(sb.events), Some(eb.events)];
    let mut seqs = [0u64; 3];
    let mut rates: [Vec<f64>; 3] = Default::default();
    for run in 0..runs {
        let mut line = format!("run {run}:");
        for k in 0..3 {
            let which = (run + k) % 3;
            let (n, secs) = engine_throughput(
                &mut senders[which],
                &mut receivers[which],
                &mut seqs[which],
                messages,
                outstanding,
                cap,
            )
            .await;
            let rate = n as f64 / secs.max(1e-9);
            let name = ["plaintext", "encrypted", "engine"][which];
            line += &format!(" {name} {n} in {secs:.2} s = {rate:.0}/s");
            rates[which].push(rate);
        }
        println!("{line}");
    }
    for ((sender, front), events) in senders.into_iter().zip(&mut fronts).zip(&mut receivers) {
        sender.quit().await;
        let front = front.take().expect("front");
        let _ = front.command(Command::Quit).await;
        drop(events.take());
        let _ = tokio::time::timeout(WAIT, front.join()).await;
    }
    server.shutdown().await;
    rates.map(median)
}

fn print_mode_round_trips(rows: &[(Placement, ModeRoundTrips)]) {
    println!(
        "\n| round trip of one line (send -> delivered) | runtime | p50 µs | p99 µs | vs plaintext (p50 / p99) |"
    );
    println!("|---|---|---|---|---|");
    for (placement, r) in rows {
        let label = placement.label();
        let ratio = |x: (f64, f64)| format!("{:.2}x / {:.2}x", x.0 / r.plain.0, x.1 / r.plain.1);
        for (name, x) in [
            ("session pair, plaintext (baseline)", r.plain),
            ("**session pair, encrypted**", r.sealed),
            ("engine pair (encrypted)", r.engine),
        ] {
            println!(
                "| {name} | {label} | {:.1} | {:.1} | {} |",
                micros(x.0),
                micros(x.1),
                ratio(x)
            );
        }
    }
}

fn print_mode_throughput(rows: &[(Placement, [f64; 3])]) {
    println!(
        "\n| one-way, acked, in order, {BODY_BYTES}-byte bodies | runtime | lines/s | payload MB/s | vs plaintext |"
    );
    println!("|---|---|---|---|---|");
    for (placement, [plain, sealed, engine]) in rows {
        let label = placement.label();
        for (name, x) in [
            ("session pair, plaintext (baseline)", plain),
            ("**session pair, encrypted**", sealed),
            ("engine pair (encrypted)", engine),
        ] {
            println!(
                "| {name} | {label} | {x:.0} | {:.1} | {:.0}% |",
                x * BODY_BYTES as f64 / 1e6,
                100.0 * x / plain
            );
        }
    }
}

// ------------------------------------------------------- crypto CPU cost --

/// Unix time in ms (the handshake's freshness stamp).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nanoseconds per step of `count` handshakes of `pattern` between two
/// fixed identities: [initiate, respond, initiator reads msg2, (XX)
/// responder reads msg3, both into_established]. Bounded by `cap`.
fn time_handshakes(xx: bool, count: usize, cap: Duration) -> ([f64; 5], usize) {
    let (ia, ib) = (Identity::generate(), Identity::generate());
    let b_key = ib.public_key();
    let extensions = p2pchat_client::wire::our_extensions();
    let prologue = Prologue {
        initiator: ia.peer_id(),
        responder: ib.peer_id(),
        extensions: &extensions,
    };
    let mut total = [Duration::ZERO; 5];
    let started = Instant::now();
    let mut done = 0;
    while done < count && started.elapsed() < cap {
        let local = LocalParams {
            session: done as u64 + 1,
            index: done as u32 + 1,
        };
        let remote = (!xx).then_some(&b_key);
        let t = Instant::now();
        let (mut hs_a, msg1) =
            Handshake::initiate(&ia, remote, &prologue, local, unix_ms()).expect("initiate");
        let t1 = Instant::now();
        let (mut hs_b, msg2) =
            Handshake::respond(&ib, &prologue, &msg1, local, unix_ms()).expect("respond");
        let t2 = Instant::now();
        let msg3 = hs_a.read(&msg2).expect("read msg2");
        let t3 = Instant::now();
        if let Some(msg3) = msg3 {
            hs_b.read(&msg3).expect("read msg3");
        }
        let t4 = Instant::now();
        let now = tokio::time::Instant::now();
        let ea = hs_a.into_established(now).expect("established");
        let eb = hs_b.into_established(now).expect("established");
        let t5 = Instant::now();
        assert_eq!(ea.handshake_hash, eb.handshake_hash);
        for (i, (from, to)) in [(t, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]
            .into_iter()
            .enumerate()
        {
            total[i] += to - from;
        }
        done += 1;
    }
    (
        total.map(|d| d.as_nanos() as f64 / done.max(1) as f64),
        done,
    )
}

/// A fresh pair of channels over an IK handshake's keys.
fn transports() -> (SealedChannel, SealedChannel) {
    let (a, b) = raw_transports();
    (SealedChannel::new(a), SealedChannel::new(b))
}

/// ns per seal and per open of `len` bytes with the Noise transport alone
/// (no JSON), over `count` datagrams in batches, bounded by `cap`.
fn time_transport(len: usize, count: usize, cap: Duration) -> (f64, f64) {
    const BATCH: usize = 1000;
    let (mut tx, mut rx) = raw_transports();
    let plain = vec![b'x'; len];
    let now = tokio::time::Instant::now();
    let (mut seal, mut open) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    let mut done = 0;
    while done < count && started.elapsed() < cap {
        let t = Instant::now();
        let sealed: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| tx.seal(&plain, now).expect("seal"))
            .collect();
        let t1 = Instant::now();
        for bytes in &sealed {
            std::hint::black_box(rx.open(bytes, now).expect("open"));
        }
        let t2 = Instant::now();
        seal += t1 - t;
        open += t2 - t1;
        done += BATCH;
    }
    let per = |d: Duration| d.as_nanos() as f64 / done.max(1) as f64;
    (per(seal), per(open))
}

/// A fresh pair of Noise transports (an IK handshake).
fn raw_transports() -> (Transport, Transport) {
    let (ia, ib) = (Identity::generate(), Identity::generate());
    let extensions = p2pchat_client::wire::our_extensions();
    let prologue = Prologue {
        initiator: ia.peer_id(),
        responder: ib.peer_id(),
        extensions: &extensions,
    };
    let key = ib.public_key();
    let la = LocalParams {
        session: 1,
        index: 1,
    };
    let lb = LocalParams {
        session: 2,
        index: 2,
    };
    let (mut hs_a, msg1) = Handshake::initiate(&ia, Some(&key), &prologue, la, unix_ms()).unwrap();
    let (hs_b, msg2) = Handshake::respond(&ib, &prologue, &msg1, lb, unix_ms()).unwrap();
    hs_a.read(&msg2).unwrap();
    let now = tokio::time::Instant::now();
    (
        hs_a.into_established(now).unwrap().transport,
        hs_b.into_established(now).unwrap().transport,
    )
}

/// ns per datagram to turn `datagram` into bytes with `tx` and back with
/// `rx`, over `count` datagrams in batches (bounded by `cap`). Returns
/// (seal ns, open ns, bytes on the wire).
fn time_channel(
    tx: &mut dyn Channel,
    rx: &mut dyn Channel,
    datagram: &Datagram,
    count: usize,
    cap: Duration,
) -> (f64, f64, usize) {
    const BATCH: usize = 1000;
    let now = tokio::time::Instant::now();
    let (mut seal, mut open) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    let (mut done, mut size) = (0, 0);
    while done < count && started.elapsed() < cap {
        let t = Instant::now();
        let sealed: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| tx.seal(datagram, now).expect("seal"))
            .collect();
        let t1 = Instant::now();
        for bytes in &sealed {
            let got = rx.open(bytes, now).expect("open");
            std::hint::black_box(got);
        }
        let t2 = Instant::now();
        seal += t1 - t;
        open += t2 - t1;
        size = sealed[0].len();
        done += BATCH;
    }
    let per = |d: Duration| d.as_nanos() as f64 / done.max(1) as f64;
    (per(seal), per(open), size)
}

fn crypto_cost(runs: Option<usize>, samples: Option<usize>, messages: Option<usize>) {
    let runs = runs.unwrap_or(5);
    let handshakes = samples.unwrap_or(1000);
    let datagrams = messages.unwrap_or(200_000);
    let cap = Duration::from_secs(30);
    println!(
        "{runs} runs of {handshakes} handshakes and {datagrams} datagrams per size; median of \
         the runs; one thread"
    );
    let mut ik: Vec<[f64; 5]> = Vec::new();
    let mut xx: Vec<[f64; 5]> = Vec::new();
    for run in 0..runs {
        let (r, n) = time_handshakes(false, handshakes, cap);
        let (x, m) = time_handshakes(true, handshakes, cap);
        println!(
            "run {run}: IK {:.1} µs per handshake ({n}), XX {:.1} µs ({m})",
            r.iter().sum::<f64>() / 1000.0,
            x.iter().sum::<f64>() / 1000.0
        );
        ik.push(r);
        xx.push(x);
    }
    let step = |v: &[[f64; 5]], i: usize| median(v.iter().map(|r| r[i]).collect());
    let total = |v: &[[f64; 5]]| median(v.iter().map(|r| r.iter().sum()).collect());
    println!("\n| handshake, both sides, one core | IK µs | XX µs |");
    println!("|---|---|---|");
    for (i, name) in [
        "initiator: write msg1",
        "responder: read msg1, write msg2",
        "initiator: read msg2 (XX: write msg3)",
        "responder: read msg3 (XX only)",
        "both: split into transport keys",
    ]
    .into_iter()
    .enumerate()
    {
        println!(
            "| {name} | {:.1} | {:.1} |",
            step(&ik, i) / 1000.0,
            step(&xx, i) / 1000.0
        );
    }
    println!(
        "| **whole handshake** | **{:.1}** | **{:.1}** |",
        total(&ik) / 1000.0,
        total(&xx) / 1000.0
    );

    // Per datagram: the channel the session sends through, plaintext JSON
    // against JSON sealed in the Noise transport.
    let mut rows = Vec::new();
    for body_bytes in [BODY_BYTES, 1000] {
        let mut text = body(1);
        while text.len() < body_bytes {
            text.push('x');
        }
        let mut message = p2pchat_client::wire::Message::plain(PeerId::random(), text);
        message.id = Some(1_000_000);
        let datagram = Datagram::Message(message);
        let (mut plain_seal, mut plain_open, mut sealed_seal, mut sealed_open) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut plain_size, mut sealed_size) = (0, 0);
        for _ in 0..runs {
            let (mut ptx, mut prx) = (Plaintext, Plaintext);
            let (s, o, n) = time_channel(&mut ptx, &mut prx, &datagram, datagrams, cap);
            plain_seal.push(s);
            plain_open.push(o);
            plain_size = n;
            let (mut stx, mut srx) = transports();
            let (s, o, n) = time_channel(&mut stx, &mut srx, &datagram, datagrams, cap);
            sealed_seal.push(s);
            sealed_open.push(o);
            sealed_size = n;
        }
        // The Noise transport alone, on bytes of the JSON's size.
        let alone: Vec<(f64, f64)> = (0..runs)
            .map(|_| time_transport(plain_size, datagrams, cap))
            .collect();
        rows.push((
            body_bytes,
            plain_size,
            sealed_size,
            [
                median(plain_seal),
                median(plain_open),
                median(sealed_seal),
                median(sealed_open),
                median(alone.iter().map(|x| x.0).collect()),
                median(alone.iter().map(|x| x.1).collect()),
            ],
        ));
    }
    println!(
        "\n| per datagram, one {BODY_BYTES}/1000-byte line | wire bytes | plaintext: encode / decode ns | sealed: encode+seal / open+decode ns | Noise transport alone: seal / open ns |"
    );
    println!("|---|---|---|---|---|");
    for (body_bytes, ps, ss, [pe, pd, se, sd, ts, to]) in rows {
        println!(
            "| {body_bytes}-byte line | {ps} plain, {ss} sealed | {pe:.0} / {pd:.0} | {se:.0} / {sd:.0} | {ts:.0} / {to:.0} |"
        );
    }
}
