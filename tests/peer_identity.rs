//! The identity key of the real `peer` binary, with HOME and XDG_DATA_HOME
//! pointed at a temporary directory: the first run creates the key (0600,
//! one line on stderr), the second loads the same file, a corrupt or
//! group-readable key stops `peer` with a clear message and stays as it
//! was, and `--ephemeral` writes nothing. The server is unreachable on
//! purpose: the key is read before anything goes on the network, and the
//! peer then exits with its usual error.

#[path = "support/bins.rs"]
mod bins;
use bins::PEER;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;

/// Upper bound for one run of the peer.
const WAIT: Duration = Duration::from_secs(15);

const CREATED: &str = "created a new identity key at";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "p2pchat-peer-identity-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `peer` with `home` as HOME (and `xdg` as XDG_DATA_HOME, or none)
/// against an unreachable server, with `extra` flags.
async fn run_peer(home: &Path, xdg: Option<&Path>, extra: &[&str]) -> (i32, String) {
    let xdg = xdg.map(|x| x.to_str().unwrap().to_owned());
    let env: Vec<(&str, &str)> = xdg.iter().map(|x| ("XDG_DATA_HOME", x.as_str())).collect();
    run_peer_env(home, &env, extra).await
}

/// [`run_peer`] with extra environment variables.
async fn run_peer_env(home: &Path, env: &[(&str, &str)], extra: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(PEER.path());
    cmd.args([
        "--server",
        &format!("http://127.0.0.1:{}", dead_port()),
        "--bind",
        "127.0.0.1",
        "--plain",
    ])
    .args(extra)
    .env("HOME", home)
    .env_remove("XDG_DATA_HOME")
    .env_remove("P2PCHAT_IDENTITY")
    .env_remove("P2PCHAT_EPHEMERAL")
    .env("RUST_LOG", "off")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd.envs(env.iter().copied());
    let out: Output = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("peer exits in time")
        .unwrap();
    let code = out.status.code().expect("exited, not killed by a signal");
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every path under `dir`, recursively.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree(&path));
        }
        out.push(path);
    }
    out
}

#[tokio::test]
async fn first_run_creates_the_key_and_the_second_loads_it() {
    let home = TempDir::new("home");
    let key = home.path().join(".local/share/p2pchat/identity.pem");

    let (code, err) = run_peer(home.path(), None, &[]).await;
    assert_eq!(code, 1, "the server is unreachable: {err}");
    let created_line = format!(
        "{CREATED} {} (back it up: it is who you are)",
        key.display()
    );
    assert_eq!(err.lines().next(), Some(created_line.as_str()), "{err}");
    assert_eq!(err.matches(CREATED).count(), 1, "{err}");
    assert!(
        err.contains("unreachable"),
        "it went on to the network: {err}"
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(key.parent().unwrap()), 0o700);
    let bytes = fs::read(&key).unwrap();
    assert!(bytes.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    // Only the key: no temporary file left, no known-peers file yet.
    assert_eq!(tree(key.parent().unwrap()), vec![key.clone()]);

    let (code, err) = run_peer(home.path(), None, &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains(CREATED), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert_eq!(fs::read(&key).unwrap(), bytes, "the same key, untouched");
    assert_eq!(mode(&key), 0o600);
}

#[tokio::test]
async fn xdg_data_home_and_identity_choose_the_place() {
    let home = TempDir::new("xdg-home");
    let xdg = home.path().join("xdg");
    let (code, err) = run_peer(home.path(), Some(&xdg), &[]).await;
    assert_eq!(code, 1, "{err}");
    let key = xdg.join("p2pchat/identity.pem");
    assert!(
        err.contains(&format!("{CREATED} {}", key.display())),
        "{err}"
    );
    assert_eq!(mode(&key), 0o600);
    assert!(!home.path().join(".local").exists());

    let chosen = home.path().join("elsewhere/me.pem");
    let chosen_arg = chosen.to_str().unwrap();
    let (code, err) = run_peer(home.path(), Some(&xdg), &["--identity", chosen_arg]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{CREATED} {}", chosen.display())),
        "{err}"
    );
    assert_eq!(mode(&chosen), 0o600);
    assert_ne!(fs::read(&chosen).unwrap(), fs::read(&key).unwrap());
}

#[tokio::test]
async fn a_corrupt_or_exposed_key_stops_the_peer_and_is_left_alone() {
    let home = TempDir::new("corrupt");
    let key = home.path().join(".local/share/p2pchat/identity.pem");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    let garbage = b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
    fs::write(&key, garbage).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    let (code, err) = run_peer(home.path(), None, &[]).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(err.contains("not a valid Ed25519 private key"), "{err}");
    assert!(err.contains("left untouched"), "{err}");
    assert!(
        !err.contains("unreachable"),
        "stopped before the network: {err}"
    );
    assert_eq!(fs::read(&key).unwrap(), garbage, "never overwritten");
    assert_eq!(mode(&key), 0o600);

    // A good key that group and others can read is refused like ssh does.
    fs::remove_file(&key).unwrap();
    let (code, _) = run_peer(home.path(), None, &[]).await;
    assert_eq!(code, 1);
    let bytes = fs::read(&key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = run_peer(home.path(), None, &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    assert!(!err.contains("unreachable"), "{err}");
    assert_eq!(fs::read(&key).unwrap(), bytes);
    assert_eq!(mode(&key), 0o644, "the mode is the user's to fix");
}

#[tokio::test]
async fn ephemeral_writes_nothing() {
    let home = TempDir::new("ephemeral");
    let xdg = home.path().join("xdg");
    let (code, err) = run_peer(home.path(), Some(&xdg), &["--ephemeral"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains(CREATED), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert_eq!(tree(home.path()), Vec::<PathBuf>::new(), "nothing written");

    // It cannot be combined with a key file...
    let (code, err) = run_peer(home.path(), None, &["--ephemeral", "--identity", "x.pem"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--ephemeral cannot be used with --identity"),
        "{err}"
    );
    assert!(!err.contains("unreachable"), "{err}");
    assert_eq!(tree(home.path()), Vec::<PathBuf>::new());
    // ...but P2PCHAT_EPHEMERAL=false is not ephemeral (clap counts an
    // environment value as given, so this is not a clap conflict).
    let key = home.path().join("k.pem");
    let key_arg = key.to_str().unwrap();
    let (code, err) = run_peer_env(
        home.path(),
        &[("P2PCHAT_EPHEMERAL", "false")],
        &["--identity", key_arg],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(CREATED), "{err}");
    assert_eq!(mode(&key), 0o600);
    fs::remove_file(&key).unwrap();
    // And P2PCHAT_EPHEMERAL=true is.
    let (code, err) = run_peer_env(home.path(), &[("P2PCHAT_EPHEMERAL", "true")], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        !err.contains(CREATED) && err.contains("unreachable"),
        "{err}"
    );
    assert_eq!(tree(home.path()), Vec::<PathBuf>::new());
}
