//! The NAT lab: hosts, NAT routers and a public segment in Linux network
//! namespaces, built for one test and torn down after it, even on panic.
//!
//! ```text
//!            public namespace: 203.0.113.1 (signaling server: TCP 8000, UDP 3478)
//!              |  emulated link (delay, loss)      |
//!   router 1: WAN 203.0.113.11, NAT      router 2: WAN 203.0.113.12, NAT
//!              |  bridge 10.1.0.1/24                |  bridge 10.2.0.1/24
//!   hosts 10.1.0.2, 10.1.0.3, ...       hosts 10.2.0.2, ...
//! ```
//!
//! * NAT kinds: [`Nat::Cone`] is nftables `masquerade` (Linux keeps the
//!   source port: endpoint-independent mapping; conntrack only lets in
//!   replies from the exact address and port: address-and-port-dependent
//!   filtering). [`Nat::Symmetric`] is `masquerade random,fully-random`: a
//!   new random port per destination (endpoint-dependent mapping).
//! * Each router's WAN link is a userspace link emulator ([`link`]) with
//!   optional delay and loss, because this kernel has no `netem`.
//! * The routers' UDP conntrack timeouts (how long an idle NAT mapping
//!   lives) can be shortened per lab.
//! * Nothing routes out: the public namespace has no default route and no
//!   link to the host; every address is from 203.0.113.0/24 (TEST-NET-3) or
//!   10.0.0.0/8, inside the lab only.
//! * Names carry the test process id and a counter, so labs of parallel
//!   tests never collide, and a later run deletes labs whose process died.

#![allow(dead_code)]

pub mod link;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use link::{Impairment, Link};

/// Address of the public namespace (the signaling server runs here).
pub const PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// Prefix of every lab namespace name.
const NAME_PREFIX: &str = "pl";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// How a router translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Port-preserving masquerade: endpoint-independent mapping.
    Cone,
    /// Random port per destination: endpoint-dependent mapping.
    Symmetric,
}

/// One NAT router and the LAN behind it.
#[derive(Debug, Clone, Copy)]
pub struct RouterSpec {
    /// Its NAT kind.
    pub nat: Nat,
    /// Hosts on its LAN.
    pub hosts: usize,
    /// Its WAN link, router -> public and public -> router.
    pub wan: Impairment,
    /// UDP conntrack timeout (idle NAT mapping lifetime); kernel default
    /// (30 s unreplied, 120 s assured) when `None`.
    pub udp_timeout: Option<Duration>,
}

impl RouterSpec {
    /// A router of this kind with `hosts` hosts and a clean link.
    pub fn new(nat: Nat, hosts: usize) -> RouterSpec {
        RouterSpec {
            nat,
            hosts,
            wan: Impairment::default(),
            udp_timeout: None,
        }
    }

    /// Sets the WAN link's one-way delay and loss (both directions).
    pub fn wan(mut self, delay: Duration, loss: f64) -> RouterSpec {
        self.wan = Impairment { delay, loss };
        self
    }

    /// Sets the UDP conntrack timeouts.
    pub fn udp_timeout(mut self, timeout: Duration) -> RouterSpec {
        self.udp_timeout = Some(timeout);
        self
    }
}

/// A host on a router's LAN.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace.
    pub ns: String,
    /// Its LAN address.
    pub ip: Ipv4Addr,
}

impl Host {
    /// A command that runs `program` inside this host.
    pub fn command(&self, program: &str) -> tokio::process::Command {
        in_namespace(&self.ns, program)
    }
}

/// A command that runs `program` inside namespace `ns`.
pub fn in_namespace(ns: &str, program: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd.kill_on_drop(true);
    cmd
}

/// A built lab. Dropping it stops the link emulators and deletes every
/// namespace it made.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    links: Vec<Link>,
    routers: Vec<RouterSpec>,
}

/// Runs `ip`/`nft`/`sysctl` style commands, failing with their stderr.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ns_run(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Feeds an nftables ruleset to `nft -f -` inside `ns`.
fn nft(ns: &str, ruleset: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|e| format!("nft stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Lab {
    /// Whether this machine can build labs: root, `ip`, `nft` and TUN.
    pub fn available() -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (network namespaces need CAP_NET_ADMIN)".into());
        }
        for (tool, package) in [
            ("ip", "iproute2"),
            ("nft", "nftables"),
            ("conntrack", "conntrack"),
        ] {
            let found = Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !found {
                return Err(format!("`{tool}` not installed (apt install {package})"));
            }
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err("/dev/net/tun missing".into());
        }
        Ok(())
    }

    /// True when the lab can run; otherwise fails under `CI` (where every
    /// prerequisite must be present) or prints what is skipped and why.
    pub fn check(test: &str) -> bool {
        match Lab::available() {
            Ok(()) => true,
            Err(why) => {
                // CI as the other tests read it: set, and not empty, 0 or false.
                let ci = std::env::var("CI")
                    .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
                assert!(!ci, "NAT lab unavailable under CI: {why}");
                eprintln!("skipped {test}: NAT lab unavailable: {why}");
                false
            }
        }
    }

    /// Builds a lab with these routers (router `i` is 1-based in addresses).
    pub fn build(routers: &[RouterSpec]) -> Result<Lab, String> {
        sweep_stale();
        let pid = std::process::id() % 100_000;
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab {
            prefix: format!("{NAME_PREFIX}{pid}x{n}"),
            namespaces: Vec::new(),
            links: Vec::new(),
            routers: routers.to_vec(),
        };
        // On error the partly built lab is dropped and torn down.
        lab.build_all()?;
        Ok(lab)
    }

    fn add_ns(&mut self, name: String) -> Result<String, String> {
        run("ip", &["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    fn build_all(&mut self) -> Result<(), String> {
        let public = self.add_ns(self.public_ns())?;
        run(
            "ip",
            &[
                "-n",
                &public,
                "addr",
                "add",
                &format!("{PUBLIC_IP}/32"),
                "dev",
                "lo",
            ],
        )?;
        ns_run(&public, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for (index, spec) in self.routers.clone().iter().enumerate() {
            let i = index + 1;
            let router = self.add_ns(self.router_ns(i))?;
            let wan_ip = Lab::wan_ip(i);
            // The WAN link: two TUN devices made here, moved into place.
            let (a_name, b_name) = (
                format!("{}t{i}a", self.prefix),
                format!("{}t{i}b", self.prefix),
            );
            let a = link::open_tun(&a_name).map_err(|e| format!("tun {a_name}: {e}"))?;
            let b = link::open_tun(&b_name).map_err(|e| format!("tun {b_name}: {e}"))?;
            run("ip", &["link", "set", &a_name, "netns", &router])?;
            run("ip", &["link", "set", &b_name, "netns", &public])?;
            run(
                "ip",
                &["-n", &router, "link", "set", &a_name, "name", "wan"],
            )?;
            let pub_if = format!("r{i}");
            run(
                "ip",
                &["-n", &public, "link", "set", &b_name, "name", &pub_if],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    &router,
                    "addr",
                    "add",
                    &format!("{wan_ip}/32"),
                    "dev",
                    "wan",
                ],
            )?;
            run("ip", &["-n", &router, "link", "set", "wan", "up"])?;
            run(
                "ip",
                &["-n", &router, "route", "add", "default", "dev", "wan"],
            )?;
            run("ip", &["-n", &public, "link", "set", &pub_if, "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &public,
                    "route",
                    "add",
                    &format!("{wan_ip}/32"),
                    "dev",
                    &pub_if,
                ],
            )?;
            self.links.push(
                Link::start(a, b, spec.wan, spec.wan, 0x5eed ^ i as u64)
                    .map_err(|e| format!("link emulator: {e}"))?,
            );
            // The LAN: a bridge, the router at .1.
            ns_run(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            run(
                "ip",
                &["-n", &router, "link", "add", "br0", "type", "bridge"],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    &router,
                    "addr",
                    "add",
                    &format!("10.{i}.0.1/24"),
                    "dev",
                    "br0",
                ],
            )?;
            run("ip", &["-n", &router, "link", "set", "br0", "up"])?;
            let masquerade = match spec.nat {
                Nat::Cone => "masquerade",
                Nat::Symmetric => "masquerade random,fully-random",
            };
            nft(
                &router,
                &format!(
                    "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"wan\" {masquerade}\n  }}\n}}\n"
                ),
            )?;
            if let Some(timeout) = spec.udp_timeout {
                let secs = timeout.as_secs().max(1).to_string();
                for key in [
                    "nf_conntrack_udp_timeout",
                    "nf_conntrack_udp_timeout_stream",
                ] {
                    ns_run(
                        &router,
                        &["sysctl", "-qw", &format!("net.netfilter.{key}={secs}")],
                    )?;
                }
            }
            for k in 0..spec.hosts {
                let host = self.add_ns(self.host_ns(i, k))?;
                let (h_if, r_if) = (
                    format!("{}h{i}{k}", self.prefix),
                    format!("{}p{i}{k}", self.prefix),
                );
                run(
                    "ip",
                    &["link", "add", &h_if, "type", "veth", "peer", "name", &r_if],
                )?;
                run("ip", &["link", "set", &h_if, "netns", &host])?;
                run("ip", &["link", "set", &r_if, "netns", &router])?;
                run("ip", &["-n", &host, "link", "set", &h_if, "name", "eth0"])?;
                let ip = Lab::host_ip(i, k);
                run(
                    "ip",
                    &[
                        "-n",
                        &host,
                        "addr",
                        "add",
                        &format!("{ip}/24"),
                        "dev",
                        "eth0",
                    ],
                )?;
                run("ip", &["-n", &host, "link", "set", "eth0", "up"])?;
                run(
                    "ip",
                    &[
                        "-n",
                        &host,
                        "route",
                        "add",
                        "default",
                        "via",
                        &format!("10.{i}.0.1"),
                    ],
                )?;
                run(
                    "ip",
                    &["-n", &router, "link", "set", &r_if, "master", "br0"],
                )?;
                run("ip", &["-n", &router, "link", "set", &r_if, "up"])?;
            }
        }
        Ok(())
    }

    /// The public namespace's name.
    pub fn public_ns(&self) -> String {
        format!("{}pub", self.prefix)
    }

    /// Router `i`'s namespace (1-based).
    pub fn router_ns(&self, i: usize) -> String {
        format!("{}r{i}", self.prefix)
    }

    fn host_ns(&self, i: usize, k: usize) -> String {
        format!("{}h{i}-{k}", self.prefix)
    }

    /// Router `i`'s public address.
    pub fn wan_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 10 + i as u8)
    }

    /// Host `k` (0-based) behind router `i` (1-based).
    pub fn host_ip(i: usize, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, i as u8, 0, 2 + k as u8)
    }

    /// Host `k` behind router `i`.
    pub fn host(&self, i: usize, k: usize) -> Host {
        Host {
            ns: self.host_ns(i, k),
            ip: Lab::host_ip(i, k),
        }
    }

    /// Makes router `i` forget every NAT mapping and give new ones ports
    /// from 20000-29999, as a NAT that rebinds (reboots, or times out a
    /// mapping and reuses another port) does: existing flows lose their
    /// public address. Needs `conntrack` (conntrack-tools).
    pub fn rebind(&self, i: usize) -> Result<(), String> {
        let router = self.router_ns(i);
        nft(
            &router,
            "flush ruleset\ntable ip nat {\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"wan\" meta l4proto udp masquerade to :20000-29999\n    oifname \"wan\" masquerade\n  }\n}\n",
        )?;
        // `conntrack -F` exits 0 whether or not there was anything to flush.
        ns_run(&router, &["conntrack", "-F"])
    }

    /// Drops (or, with `false`, stops dropping) all UDP between the NAT
    /// routers' public addresses, in the public namespace: direct paths
    /// fail while the server stays reachable.
    pub fn block_direct(&self, blocked: bool) -> Result<(), String> {
        let public = self.public_ns();
        if blocked {
            nft(
                &public,
                "table ip labblock {\n  chain labfwd {\n    type filter hook forward priority 0; policy accept;\n    ip saddr 203.0.113.10-203.0.113.99 ip daddr 203.0.113.10-203.0.113.99 drop\n  }\n}\n",
            )
        } else {
            ns_run(&public, &["nft", "delete", "table", "ip", "labblock"])
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Links first: their threads hold the TUN devices.
        self.links.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = run("ip", &["netns", "del", &ns]);
        }
    }
}

/// Deletes lab namespaces left behind by test processes that died.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let alive = std::fs::read_dir("/proc")
            .map(|dir| {
                dir.flatten().any(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|s| s.parse::<u32>().ok())
                        .is_some_and(|p| p % 100_000 == pid)
                })
            })
            .unwrap_or(true);
        if !alive {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

/// Names of the namespaces of this process's labs (for teardown checks).
pub fn our_namespaces() -> Vec<String> {
    let prefix = format!("{NAME_PREFIX}{}x", std::process::id() % 100_000);
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
