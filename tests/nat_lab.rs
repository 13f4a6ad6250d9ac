//! NAT traversal across real NAT behaviour, in the network-namespace lab
//! (tests/lab): the real `signaling-server` binary on the "public" segment,
//! real `peer --json` binaries on hosts behind nftables NAT routers.
//!
//! Needs root (network namespaces). Under `CI=true` a missing capability
//! fails; otherwise these tests print what they skipped and why. Run one by
//! hand with its output, e.g.:
//!
//! ```text
//! sudo -E cargo test --test nat_lab cone_and_cone -- --nocapture
//! ```

#[path = "support/bins.rs"]
mod bins;
use bins::{PEER, SERVER};

mod lab;

use std::process::Stdio;
use std::time::{Duration, Instant};

use lab::{Host, Lab, Nat, PUBLIC_IP, RouterSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(30);

const SERVER_URL: &str = "http://203.0.113.1:8000";

/// The signaling server in the lab's public namespace.
struct Server {
    child: Child,
}

impl Server {
    async fn start(lab: &Lab) -> Server {
        let mut child = lab::in_namespace(&lab.public_ns(), SERVER.path())
            .args([
                "--listen",
                &format!("{PUBLIC_IP}:8000"),
                "--udp-listen",
                &format!("{PUBLIC_IP}:3478"),
                "--lease-secs",
                "5",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("signaling server listening") {
                    return;
                }
            }
            panic!("server exited before listening");
        })
        .await
        .expect("server listening in time");
        // Keep draining so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child }
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A `peer --json` process on a lab host.
struct Peer {
    name: String,
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Peer {
    async fn start(host: &Host, name: &str, extra: &[&str]) -> Peer {
        let mut child = host
            .command(PEER.path())
            .args([
                "--json",
                "--server",
                SERVER_URL,
                "--username",
                name,
                "--ephemeral",
            ])
            .args(with_defaults(extra))
            .env("RUST_LOG", log_level())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(name))
            .spawn()
            .expect("peer starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    panic!("not one JSON object per line: {line:?}");
                };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Peer {
            name: name.to_owned(),
            stdin: child.stdin.take().expect("stdin piped"),
            child,
            events: rx,
            seen: Vec::new(),
        }
    }

    async fn line(&mut self, text: &str) {
        self.stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("peer reads stdin");
        self.stdin.flush().await.expect("flush");
    }

    async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let name = self.name.clone();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let Some(event) = self.events.recv().await else {
                    panic!(
                        "{name} exited while waiting for {what}; saw {:?}",
                        self.seen
                    );
                };
                self.seen.push(event.clone());
                if pred(&event) {
                    return event;
                }
            }
        })
        .await;
        found
            .unwrap_or_else(|_| panic!("{name}: timed out waiting for {what}; saw {:?}", self.seen))
    }

    async fn event(&mut self, name: &str) -> Value {
        self.wait(name, |e| e["event"] == name).await
    }

    /// Waits for `registered`; returns our peer id.
    async fn registered(&mut self) -> Value {
        self.event("registered").await
    }

    /// Waits until `peer_id` shows up in our peer list.
    async fn sees(&mut self, peer_id: &str) {
        self.wait("peer in list", |e| {
            (e["event"] == "peer_joined" && e["peer_id"] == peer_id)
                || (e["event"] == "peers"
                    && e["peers"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["peer_id"] == peer_id)))
        })
        .await;
    }

    /// Collects the texts of the next `n` messages.
    async fn messages(&mut self, n: usize) -> Vec<String> {
        let mut texts = Vec::with_capacity(n);
        while texts.len() < n {
            let event = self.event("message").await;
            texts.push(event["text"].as_str().unwrap_or_default().to_owned());
        }
        texts
    }

    /// Asserts nothing of `kind` was seen so far.
    fn never_saw(&self, kind: &str) {
        assert!(
            !self.seen.iter().any(|e| e["event"] == kind),
            "{}: unexpected {kind}: {:?}",
            self.name,
            self.seen
        );
    }

    async fn quit(mut self) {
        let _ = self.line("/quit").await;
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// With `P2PCHAT_LAB_LOGS=<dir>`, peers log at debug level into
/// `<dir>/<name>.log` (for looking into a failing lab test).
fn log_file(name: &str) -> Stdio {
    match std::env::var_os("P2PCHAT_LAB_LOGS") {
        Some(dir) => std::fs::File::create(std::path::Path::new(&dir).join(format!("{name}.log")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        None => Stdio::null(),
    }
}

fn log_level() -> &'static str {
    if std::env::var_os("P2PCHAT_LAB_LOGS").is_some() {
        "p2pchat=debug,info"
    } else {
        "warn"
    }
}

/// `extra` plus the lab's default timings for flags it does not set.
fn with_defaults(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    for (flag, value) in [("--keepalive-secs", "1"), ("--missed-pongs", "3")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_owned(), value.to_owned()]);
        }
    }
    args
}

/// Starts two peers on the given hosts, connects the first to the second,
/// and returns both with their `connected` events and the time from the
/// connect command to the first line delivered.
async fn connect(
    a_host: &Host,
    b_host: &Host,
    extra: &[&str],
) -> (Peer, Peer, Value, Value, Duration) {
    let mut b = Peer::start(b_host, "bob", extra).await;
    let b_id = b.registered().await["peer_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut a = Peer::start(a_host, "alice", extra).await;
    a.registered().await;
    a.sees(&b_id).await;
    let started = Instant::now();
    a.line("/connect bob").await;
    let a_up = a.event("connected").await;
    a.line("hello bob").await;
    a.event("delivered").await;
    let first_delivered = started.elapsed();
    let b_up = b.event("connected").await;
    assert_eq!(b.messages(1).await, ["hello bob"]);
    for (who, peer, up) in [("alice", &a, &a_up), ("bob", &b, &b_up)] {
        let reg = peer.seen.iter().find(|e| e["event"] == "registered");
        let public = reg.map(|r| r["public_addr"].clone()).unwrap_or_default();
        println!(
            "  {who}: public {public}, connected via {} path to {} after {} probe rounds",
            up["path"], up["addr"], up["probe_rounds"]
        );
    }
    (a, b, a_up, b_up, first_delivered)
}

/// Chats a few lines both ways.
async fn chat_both_ways(a: &mut Peer, b: &mut Peer) {
    a.line("ping from alice").await;
    assert_eq!(b.messages(1).await, ["ping from alice"]);
    println!("  bob got:   ping from alice");
    b.line("pong from bob").await;
    assert_eq!(a.messages(1).await, ["pong from bob"]);
    println!("  alice got: pong from bob");
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_lan_peers_use_the_lan_path() {
    if !Lab::check("same_lan_peers_use_the_lan_path") {
        return;
    }
    let lab = Lab::build(&[RouterSpec::new(Nat::Cone, 2)]).expect("lab builds");
    let _server = Server::start(&lab).await;
    let (mut a, mut b, a_up, b_up, _) = connect(&lab.host(1, 0), &lab.host(1, 1), &[]).await;
    assert_eq!(a_up["path"], "lan", "{a_up}");
    assert_eq!(b_up["path"], "lan", "{b_up}");
    assert_eq!(
        a_up["addr"],
        format!("{}:{}", lab.host(1, 1).ip, port_of(&b))
    );
    chat_both_ways(&mut a, &mut b).await;
    a.quit().await;
    b.quit().await;
}

/// The UDP port a peer registered (from its `registered` event).
fn port_of(peer: &Peer) -> u64 {
    peer.seen
        .iter()
        .find(|e| e["event"] == "registered")
        .and_then(|e| e["udp_port"].as_u64())
        .unwrap_or_default()
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cone_and_cone_connect_directly() {
    if !Lab::check("cone_and_cone_connect_directly") {
        return;
    }
    let lab = Lab::build(&[RouterSpec::new(Nat::Cone, 1), RouterSpec::new(Nat::Cone, 1)])
        .expect("lab builds");
    let _server = Server::start(&lab).await;
    let (mut a, mut b, a_up, b_up, took) = connect(&lab.host(1, 0), &lab.host(2, 0), &[]).await;
    // STUN told each peer its public mapping: the router's WAN address,
    // with the peer's own port (a cone NAT keeps it).
    let reg = &a.seen[0];
    assert_eq!(reg["stun"], true, "{reg}");
    assert_eq!(
        reg["public_addr"],
        format!("203.0.113.11:{}", port_of(&a)),
        "{reg}"
    );
    assert_eq!(a_up["path"], "direct", "{a_up}");
    assert_eq!(b_up["path"], "direct", "{b_up}");
    assert!(
        a_up["addr"]
            .as_str()
            .unwrap_or_default()
            .starts_with("203.0.113.12:")
    );
    chat_both_ways(&mut a, &mut b).await;
    println!(
        "cone+cone: first line delivered {took:?} after /connect, {} probe rounds",
        a_up["probe_rounds"]
    );
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cone_and_symmetric_fall_back_to_the_relay() {
    if !Lab::check("cone_and_symmetric_fall_back_to_the_relay") {
        return;
    }
    let lab = Lab::build(&[
        RouterSpec::new(Nat::Cone, 1),
        RouterSpec::new(Nat::Symmetric, 1),
    ])
    .expect("lab builds");
    let _server = Server::start(&lab).await;
    let extra = ["--relay-after-secs", "1.5"];
    let (mut a, mut b, a_up, b_up, took) = connect(&lab.host(1, 0), &lab.host(2, 0), &extra).await;
    // Bob's symmetric NAT gave his STUN request a random port.
    let bob_public = b.seen[0]["public_addr"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(bob_public.starts_with("203.0.113.12:"), "{bob_public}");
    assert_ne!(bob_public, format!("203.0.113.12:{}", port_of(&b)));
    // A symmetric NAT maps each destination to a new port, so the port a
    // peer learns by STUN is not the one its hole punch uses, and the cone
    // side filters the unknown port: Linux gives no direct path here.
    assert_eq!(a_up["path"], "relayed", "{a_up}");
    assert_eq!(b_up["path"], "relayed", "{b_up}");
    assert_eq!(a_up["addr"], format!("{PUBLIC_IP}:3478"));
    chat_both_ways(&mut a, &mut b).await;
    println!(
        "cone+symmetric: first line delivered {took:?} after /connect (relayed), {} probe rounds",
        a_up["probe_rounds"]
    );
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_and_symmetric_fall_back_to_the_relay() {
    if !Lab::check("symmetric_and_symmetric_fall_back_to_the_relay") {
        return;
    }
    let lab = Lab::build(&[
        RouterSpec::new(Nat::Symmetric, 1),
        RouterSpec::new(Nat::Symmetric, 1),
    ])
    .expect("lab builds");
    let _server = Server::start(&lab).await;
    let extra = ["--relay-after-secs", "1.5"];
    let (mut a, mut b, a_up, b_up, took) = connect(&lab.host(1, 0), &lab.host(2, 0), &extra).await;
    assert_eq!(a_up["path"], "relayed", "{a_up}");
    assert_eq!(b_up["path"], "relayed", "{b_up}");
    chat_both_ways(&mut a, &mut b).await;
    println!("symmetric+symmetric: first line delivered {took:?} after /connect (relayed)");
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_links_show_in_the_measured_rtt() {
    if !Lab::check("delayed_links_show_in_the_measured_rtt") {
        return;
    }
    // 10 ms each way on both WAN links: 40 ms between the peers.
    let owd = Duration::from_millis(10);
    let lab = Lab::build(&[
        RouterSpec::new(Nat::Cone, 1).wan(owd, 0.0),
        RouterSpec::new(Nat::Cone, 1).wan(owd, 0.0),
    ])
    .expect("lab builds");
    let _server = Server::start(&lab).await;
    let (mut a, b, _, _, _) = connect(&lab.host(1, 0), &lab.host(2, 0), &[]).await;
    // Keep-alive round trips (1 s apart) report the smoothed RTT.
    let mut samples = Vec::new();
    while samples.len() < 3 {
        let rtt = a.event("rtt").await["rtt_ms"].as_f64().unwrap_or_default();
        samples.push(rtt);
    }
    let last = samples[samples.len() - 1];
    assert!(
        (39.0..80.0).contains(&last),
        "RTT {samples:?} ms over a 40 ms path"
    );
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_40ms_link_delivers_200_lines_each_way_once_in_order() {
    if !Lab::check("lossy_40ms_link_delivers_200_lines_each_way_once_in_order") {
        return;
    }
    // 20 ms each way on router 1's link: 40 ms RTT between the peers (and to
    // the server), 10% loss each way on the same link.
    let lab = Lab::build(&[
        RouterSpec::new(Nat::Cone, 1).wan(Duration::from_millis(20), 0.10),
        RouterSpec::new(Nat::Cone, 1),
    ])
    .expect("lab builds");
    let _server = Server::start(&lab).await;
    let (mut a, mut b, a_up, _, _) = connect(&lab.host(1, 0), &lab.host(2, 0), &[]).await;
    assert_eq!(a_up["path"], "direct", "{a_up}");
    let n = 200;
    for i in 0..n {
        a.line(&format!("a{i}")).await;
        b.line(&format!("b{i}")).await;
    }
    let from_a: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
    let from_b: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    assert_eq!(b.messages(n).await, from_a);
    assert_eq!(a.messages(n).await, from_b);
    // Nothing more (no duplicates) arrives after a marker.
    a.line("end").await;
    assert_eq!(b.messages(1).await, ["end"]);
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_a_short_nat_timeout_open_over_30s_idle() {
    if !Lab::check("keepalives_hold_a_short_nat_timeout_open_over_30s_idle") {
        return;
    }
    // Idle NAT mappings die after 5 s; keep-alives every 2 s hold them.
    let timeout = Duration::from_secs(5);
    let lab = Lab::build(&[
        RouterSpec::new(Nat::Cone, 1).udp_timeout(timeout),
        RouterSpec::new(Nat::Cone, 1).udp_timeout(timeout),
    ])
    .expect("lab builds");
    let _server = Server::start(&lab).await;
    let extra = ["--keepalive-secs", "2"];
    let (mut a, mut b, a_up, _, _) = connect(&lab.host(1, 0), &lab.host(2, 0), &extra).await;
    assert_eq!(a_up["path"], "direct");
    tokio::time::sleep(Duration::from_secs(30)).await;
    chat_both_ways(&mut a, &mut b).await;
    for peer in [&a, &b] {
        peer.never_saw("disconnected");
        peer.never_saw("path_changed");
    }
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_survives_the_server_and_peers_re_register_when_it_returns() {
    if !Lab::check("chat_survives_the_server_and_peers_re_register_when_it_returns") {
        return;
    }
    let lab = Lab::build(&[RouterSpec::new(Nat::Cone, 1), RouterSpec::new(Nat::Cone, 1)])
        .expect("lab builds");
    let server = Server::start(&lab).await;
    let (mut a, mut b, a_up, _, _) = connect(&lab.host(1, 0), &lab.host(2, 0), &[]).await;
    assert_eq!(a_up["path"], "direct");
    server.kill().await;
    a.event("server_lost").await;
    chat_both_ways(&mut a, &mut b).await;
    let _server = Server::start(&lab).await;
    a.event("server_restored").await;
    b.event("server_restored").await;
    chat_both_ways(&mut a, &mut b).await;
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_its_nat_rebinding_to_a_new_port() {
    if !Lab::check("a_session_survives_its_nat_rebinding_to_a_new_port") {
        return;
    }
    let lab = Lab::build(&[RouterSpec::new(Nat::Cone, 1), RouterSpec::new(Nat::Cone, 1)])
        .expect("lab builds");
    let _server = Server::start(&lab).await;
    let extra = ["--missed-pongs", "6", "--relay-after-secs", "1"];
    let (mut a, mut b, a_up, _, _) = connect(&lab.host(1, 0), &lab.host(2, 0), &extra).await;
    assert_eq!(a_up["path"], "direct", "{a_up}");
    // Alice's NAT forgets her mappings and hands out new ports: Bob's NAT
    // drops what now comes from her new port, and her old port is dead.
    lab.rebind(1).expect("rebind");
    a.line("after the rebinding").await;
    assert_eq!(b.messages(1).await, ["after the rebinding"]);
    b.line("still with you").await;
    assert_eq!(a.messages(1).await, ["still with you"]);
    // The session moved to a path that works, by itself, without ending.
    let is_move = |e: &Value| e["event"] == "path_changed";
    if !a.seen.iter().any(is_move) {
        a.wait("path_changed", is_move).await;
    }
    for peer in [&a, &b] {
        peer.never_saw("disconnected");
    }
    chat_both_ways(&mut a, &mut b).await;
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_is_reported_offline_within_the_window() {
    if !Lab::check("a_killed_peer_is_reported_offline_within_the_window") {
        return;
    }
    let lab = Lab::build(&[RouterSpec::new(Nat::Cone, 1), RouterSpec::new(Nat::Cone, 1)])
        .expect("lab builds");
    let _server = Server::start(&lab).await;
    let (mut a, mut b, _, _, _) = connect(&lab.host(1, 0), &lab.host(2, 0), &[]).await;
    let killed = Instant::now();
    b.child.kill().await.expect("kill -9");
    let gone = a
        .wait("disconnected", |e| e["event"] == "disconnected")
        .await;
    // Keep-alive every 1 s, 3 missed: offline within about 4 s (the
    // server's 5 s lease may report `left` first, which is as good).
    let took = killed.elapsed();
    assert!(
        gone["reason"] == "timeout" || gone["reason"] == "left",
        "{gone}"
    );
    assert!(took < Duration::from_secs(8), "reported after {took:?}");
    a.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_chat_upgrades_to_direct_when_the_path_opens() {
    if !Lab::check("relayed_chat_upgrades_to_direct_when_the_path_opens") {
        return;
    }
    let lab = Lab::build(&[RouterSpec::new(Nat::Cone, 1), RouterSpec::new(Nat::Cone, 1)])
        .expect("lab builds");
    let _server = Server::start(&lab).await;
    lab.block_direct(true).expect("block");
    let extra = ["--relay-after-secs", "1"];
    let (mut a, mut b, a_up, _, _) = connect(&lab.host(1, 0), &lab.host(2, 0), &extra).await;
    assert_eq!(a_up["path"], "relayed", "{a_up}");
    lab.block_direct(false).expect("unblock");
    let n = 100;
    for i in 0..n {
        a.line(&format!("a{i}")).await;
        b.line(&format!("b{i}")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from_a: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
    let from_b: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    assert_eq!(b.messages(n).await, from_a);
    assert_eq!(a.messages(n).await, from_b);
    let is_upgrade = |e: &Value| e["event"] == "path_changed" && e["path"] == "direct";
    let moved = match a.seen.iter().find(|e| is_upgrade(e)) {
        Some(e) => e.clone(),
        None => a.wait("path_changed to direct", is_upgrade).await,
    };
    assert!(
        moved["addr"]
            .as_str()
            .unwrap_or_default()
            .starts_with("203.0.113.12:")
    );
    a.quit().await;
    b.quit().await;
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[test]
fn labs_are_torn_down_even_after_a_panic() {
    if !Lab::check("labs_are_torn_down_even_after_a_panic") {
        return;
    }
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::build(&[RouterSpec::new(Nat::Cone, 1)]).expect("lab builds");
        if let Ok(mut n) = names.lock() {
            n.extend([lab.public_ns(), lab.router_ns(1)]);
        }
        panic!("a test failing inside the lab");
    });
    assert!(result.is_err());
    let names = names.into_inner().unwrap_or_default();
    assert_eq!(names.len(), 2);
    let after = lab::our_namespaces();
    for ns in &names {
        assert!(!after.contains(ns), "{ns} left behind after a panic");
    }
}

#[cfg_attr(
    missing_lab,
    ignore = "the NAT lab needs root, ip, nft, conntrack and /dev/net/tun"
)]
#[test]
fn a_lab_leaves_nothing_behind() {
    if !Lab::check("a_lab_leaves_nothing_behind") {
        return;
    }
    let lab = Lab::build(&[RouterSpec::new(Nat::Symmetric, 2)]).expect("lab builds");
    let mine: Vec<String> = vec![lab.public_ns(), lab.router_ns(1)];
    let present = lab::our_namespaces();
    for ns in &mine {
        assert!(present.contains(ns), "{ns} missing while the lab is up");
    }
    drop(lab);
    let after = lab::our_namespaces();
    for ns in &mine {
        assert!(!after.contains(ns), "{ns} left behind");
    }
}

/// Connect times across each NAT pairing at 40 ms RTT between the peers
/// (10 ms each way on both WAN links; 20 ms RTT to the server), for
/// BENCHMARKS.md. A measurement, not a check: run it by hand, in release:
///
/// ```text
/// cargo test --release --test nat_lab connect_times -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement for BENCHMARKS.md; run by hand"]
async fn connect_times_at_40ms_rtt() {
    if !Lab::check("connect_times_at_40ms_rtt") {
        return;
    }
    const RUNS: usize = 5;
    let owd = Duration::from_millis(10);
    println!(
        "| pairing | path | /connect -> connected, ms (median of {RUNS}) | -> first line delivered, ms | probe rounds (median) |"
    );
    println!("|---|---|---|---|---|");
    let fast: &[&str] = &["--probe-interval-ms", "50"];
    for (label, nats, same_lan, extra) in [
        ("same LAN", [Nat::Cone, Nat::Cone], true, &[][..]),
        ("cone + cone", [Nat::Cone, Nat::Cone], false, &[][..]),
        (
            "cone + cone, --probe-interval-ms 50",
            [Nat::Cone, Nat::Cone],
            false,
            fast,
        ),
        (
            "cone + symmetric",
            [Nat::Cone, Nat::Symmetric],
            false,
            &[][..],
        ),
        (
            "symmetric + symmetric",
            [Nat::Symmetric, Nat::Symmetric],
            false,
            &[][..],
        ),
    ] {
        let mut up_ms = Vec::new();
        let mut first_ms = Vec::new();
        let mut rounds = Vec::new();
        let mut path = String::new();
        for _ in 0..RUNS {
            let specs: Vec<RouterSpec> = if same_lan {
                vec![RouterSpec::new(nats[0], 2).wan(owd, 0.0)]
            } else {
                nats.iter()
                    .map(|n| RouterSpec::new(*n, 1).wan(owd, 0.0))
                    .collect()
            };
            let lab = Lab::build(&specs).expect("lab builds");
            let _server = Server::start(&lab).await;
            let (a_host, b_host) = if same_lan {
                (lab.host(1, 0), lab.host(1, 1))
            } else {
                (lab.host(1, 0), lab.host(2, 0))
            };
            let mut b = Peer::start(&b_host, "bob", extra).await;
            let b_id = b.registered().await["peer_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut a = Peer::start(&a_host, "alice", extra).await;
            a.registered().await;
            a.sees(&b_id).await;
            let started = Instant::now();
            a.line("/connect bob").await;
            let up = a.event("connected").await;
            let up_at = started.elapsed();
            a.line("first").await;
            a.event("delivered").await;
            let first_at = started.elapsed();
            up_ms.push(up_at.as_secs_f64() * 1000.0);
            first_ms.push(first_at.as_secs_f64() * 1000.0);
            rounds.push(up["probe_rounds"].as_u64().unwrap_or_default());
            path = up["path"].as_str().unwrap_or_default().to_owned();
            a.quit().await;
            b.quit().await;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        rounds.sort_unstable();
        println!(
            "| {label} | {path} | {:.0} | {:.0} | {} |",
            median(&mut up_ms),
            median(&mut first_ms),
            rounds[rounds.len() / 2]
        );
    }
}
