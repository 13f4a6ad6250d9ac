//! Child processes of the TLS tests, each bounded in time and killed when
//! dropped: a program run to completion, `peer --json` processes driven
//! line by line, and one-shot runs of `peer` and `signaling-server`.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::bins::{PEER, SERVER};

/// Upper bound for any child process or any wait for its output.
const WAIT: Duration = Duration::from_secs(20);

/// Runs `program args` to completion within [`WAIT`].
pub async fn run(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    bounded(cmd, &format!("{program} {args:?}")).await
}

async fn bounded(mut cmd: Command, what: &str) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{what} could not run: {e}"))
}

/// `peer --json --ephemeral --server url extra...` with stdin closed, run
/// to its exit.
pub async fn peer_output(url: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(PEER.path());
    cmd.args([
        "--json",
        "--ephemeral",
        "--bind",
        "127.0.0.1",
        "--server",
        url,
    ])
    .args(extra)
    .env("RUST_LOG", "off")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    bounded(cmd, "peer").await
}

/// `signaling-server --listen 127.0.0.1:0 --udp-listen off args...`, for
/// flags that make it exit at once.
pub async fn server_output(args: &[&str]) -> Output {
    let mut cmd = Command::new(SERVER.path());
    cmd.args(["--listen", "127.0.0.1:0", "--udp-listen", "off"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    bounded(cmd, "signaling-server").await
}

/// A running `peer --json` process.
pub struct PeerProc {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl PeerProc {
    /// Starts `peer --json` as `name` against `url`.
    pub async fn start(url: &str, name: &str, extra: &[&str]) -> PeerProc {
        let mut child = Command::new(PEER.path())
            .args([
                "--json",
                "--ephemeral",
                "--bind",
                "127.0.0.1",
                "--server",
                url,
            ])
            .args(["--username", name, "--keepalive-secs", "0.5"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value: Value = serde_json::from_str(&line).unwrap();
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        PeerProc {
            stdin: child.stdin.take().unwrap(),
            child,
            events,
            seen: Vec::new(),
        }
    }

    /// Sends one input line.
    pub async fn line(&mut self, text: &str) {
        let line = format!("{text}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next event called `name` (earlier ones are kept in `seen`).
    pub async fn event(&mut self, name: &str) -> Value {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let Some(event) = self.events.recv().await else {
                    panic!("peer exited while waiting for {name}; saw {:?}", self.seen);
                };
                self.seen.push(event.clone());
                if event["event"] == name {
                    return event;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {name}; saw {:?}", self.seen))
    }

    /// Its exit code, within [`WAIT`].
    pub async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("peer exits in time")
            .unwrap();
        status.code().expect("exited, not killed by a signal")
    }
}
