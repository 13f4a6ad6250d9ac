//! `peer`: the p2pchat peer. Parses flags, sets up logging, starts the
//! engine from the library and runs a front end on it.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use p2pchat_client::console::Console;
use p2pchat_client::engine::{self, Command, EngineConfig};
use p2pchat_client::frontend;
use p2pchat_client::identity::known_peers::{self, KnownPeers};
use p2pchat_client::identity::{Identity, KeyFileStatus, keyfile};
use p2pchat_client::json_ui::JsonUi;
use p2pchat_client::session::SessionConfig;
use p2pchat_client::signaling::{self, CaBundle, ServerTrust};
use p2pchat_client::tui;
use tokio::sync::mpsc;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Most stdin lines buffered ahead of the engine.
const INPUT_BUFFER: usize = 256;

/// `--username`: at most the server's limit, checked before connecting so
/// a long name is a usage error, not a refusal after a round trip.
fn username(text: &str) -> Result<String, String> {
    let chars = text.chars().count();
    if chars > p2pchat::MAX_USERNAME_CHARS {
        return Err(format!(
            "at most {} characters, got {chars}",
            p2pchat::MAX_USERNAME_CHARS
        ));
    }
    Ok(text.to_owned())
}

/// p2pchat peer: register with the signaling server, pick a peer, chat
/// directly over UDP.
///
/// In a terminal it opens a full-screen UI (peer list, chat, status bar);
/// with --plain, or when stdin or stdout is not a terminal, a line console (seed
/// style); with --json, one JSON object per event for scripts. Input lines
/// are chat messages or commands: /connect <id, id prefix or username>,
/// /peers, /status, /verify [name], /trust <name>, /leave, /quit, /help.
/// Logs go to stderr (in the full-screen UI only when stderr is
/// redirected); set RUST_LOG (e.g.
/// RUST_LOG=debug) for more.
#[derive(Debug, Parser)]
#[command(name = "peer", version, about, long_about)]
struct Args {
    /// Display name (empty: the server picks user_<first 8 of the id>).
    #[arg(long, env = "P2PCHAT_USERNAME", default_value = "", value_parser = username)]
    username: String,

    /// Signaling server URL: https://host:port speaks TLS (never falls back
    /// to plaintext); http://host:port is plaintext, with a warning when the
    /// host is not this machine.
    #[arg(long, env = "P2PCHAT_SERVER", default_value = "http://localhost:8000")]
    server: String,

    /// PEM file of the CA that signed an https:// server's certificate;
    /// trusted instead of the system's root certificates.
    #[arg(long, env = "P2PCHAT_CA", value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Connect to this peer at start: full id, unique id prefix or unique
    /// username.
    #[arg(long, env = "P2PCHAT_CONNECT")]
    connect: Option<String>,

    /// UDP port for the chat socket (0: any free port).
    #[arg(long, env = "P2PCHAT_PORT", default_value_t = 0)]
    port: u16,

    /// IP address to bind the chat socket to.
    #[arg(long, env = "P2PCHAT_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,

    /// Use the line console instead of the full-screen UI (the console is
    /// also chosen when stdin or stdout is not a terminal).
    #[arg(long, env = "P2PCHAT_PLAIN")]
    plain: bool,

    /// Print one JSON object per event on stdout; read messages and
    /// /commands from stdin.
    #[arg(long, env = "P2PCHAT_JSON", conflicts_with = "plain")]
    json: bool,

    /// Seconds between keep-alive pings.
    #[arg(long, env = "P2PCHAT_KEEPALIVE_SECS", default_value_t = 15.0, value_parser = positive_secs)]
    keepalive_secs: f64,

    /// Keep-alive intervals without any answer before the peer is declared
    /// offline.
    #[arg(long, env = "P2PCHAT_MISSED_PONGS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    missed_pongs: u32,

    /// Milliseconds between two rounds of hello probes while connecting.
    #[arg(long, env = "P2PCHAT_PROBE_INTERVAL_MS", default_value_t = 150, value_parser = clap::value_parser!(u64).range(10..=5000))]
    probe_interval_ms: u64,

    /// Seconds one connect attempt probes before the next starts.
    #[arg(long, env = "P2PCHAT_ATTEMPT_SECS", default_value_t = 2.0, value_parser = positive_secs)]
    attempt_secs: f64,

    /// Connect attempts before "could not reach peer".
    #[arg(long, env = "P2PCHAT_CONNECT_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    connect_attempts: u32,

    /// STUN server (host:port) that tells us our public address; default:
    /// the signaling server's own UDP port.
    #[arg(long, env = "P2PCHAT_STUN", value_parser = host_port)]
    stun: Option<String>,

    /// Seconds of probing without an answer before falling back to the
    /// server's relay (direct paths keep being tried in the background).
    #[arg(long, env = "P2PCHAT_RELAY_AFTER_SECS", default_value_t = 3.0, value_parser = positive_secs)]
    relay_after_secs: f64,

    /// Never relay through the server: direct paths only.
    #[arg(long, env = "P2PCHAT_NO_RELAY")]
    no_relay: bool,

    /// The identity key: who you are to other peers (an Ed25519 key, PKCS#8
    /// PEM, created with mode 0600 on first run and never overwritten).
    /// Default: $XDG_DATA_HOME/p2pchat/identity.pem, else
    /// ~/.local/share/p2pchat/identity.pem. The keys of peers you have met
    /// are pinned in known_peers beside it.
    #[arg(long, env = "P2PCHAT_IDENTITY", value_name = "PATH")]
    identity: Option<PathBuf>,

    /// A fresh identity for this run only: no key is read or written and
    /// no peer's key is remembered. Cannot be combined with --identity.
    #[arg(long, env = "P2PCHAT_EPHEMERAL")]
    ephemeral: bool,

    /// Refuse unencrypted peers (seed-protocol peers, which speak
    /// plaintext): chat only over authenticated, encrypted sessions.
    #[arg(long, env = "P2PCHAT_REQUIRE_ENCRYPTION")]
    require_encryption: bool,
}

/// Checks a `host:port` value (the host is resolved later).
fn host_port(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Ok(text.to_owned())
        }
        _ => Err(format!(
            "'{text}' is not host:port (e.g. stun.example.org:3478)"
        )),
    }
}

/// Parses a positive number of seconds (fractions allowed), at most a day.
fn positive_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err(format!("'{text}' must be between 0 and 86400 seconds"))
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let full_screen = tui::wanted(args.plain, args.json);
    let stderr_is_tty = std::io::stderr().is_terminal();
    // Log lines written to the terminal would tear through the full-screen
    // UI: there, logs are kept only when stderr goes elsewhere.
    let writer = if full_screen && stderr_is_tty {
        BoxMakeWriter::new(std::io::sink)
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(writer)
        .with_ansi(stderr_is_tty)
        // A failed log write (stderr's reader went away) is dropped, not
        // reported with a panicking `eprintln!`.
        .log_internal_errors(false)
        .init();
    let code = match run(args, full_screen).await {
        Ok(()) => 0,
        Err(err) => {
            // One clear line, with the causes folded in; a closed stderr
            // must not turn it into a panic.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            1
        }
    };
    // Exit at once: a stdin reader thread may still be blocked in read().
    std::process::exit(code);
}

async fn run(args: Args, full_screen: bool) -> anyhow::Result<()> {
    // Who we are comes first: a key-file problem stops us before anything
    // goes on the network.
    let (identity, known_peers, _identity_path) = load_identity(&args)?;
    let server_trust = server_trust(&args)?;
    let config = EngineConfig {
        server: args.server.clone(),
        server_trust,
        username: args.username.clone(),
        identity: std::sync::Arc::new(identity),
        require_encryption: args.require_encryption,
        known_peers,
        bind: SocketAddr::new(args.bind, args.port),
        session: SessionConfig {
            keepalive_interval: Duration::from_secs_f64(args.keepalive_secs),
            missed_pong_limit: args.missed_pongs,
            probe_interval: Duration::from_millis(args.probe_interval_ms),
            attempt_duration: Duration::from_secs_f64(args.attempt_secs),
            connect_attempts: args.connect_attempts,
            relay_after: Duration::from_secs_f64(args.relay_after_secs),
        },
        stun: args.stun.clone(),
        relay: !args.no_relay,
        event_buffer: engine::EVENT_BUFFER,
    };
    // Signal handlers go in before anything is printed, so a SIGTERM right
    // after start-up already gets the clean exit.
    let mut signals = Signals::install().context("cannot install signal handlers")?;
    let (handle, events) = engine::start(config)
        .await
        .context("cannot start the peer")?;
    tracing::info!(peer_id = %handle.started().peer_id, addr = %handle.started().local_addr, "peer started");

    // A signal asks the engine to quit, as /quit does, while a front end
    // runs; the task is aborted when the front end ends, so it never
    // outlives the engine it talks to (on any path out, also on error).
    let commands = handle.commands();
    let forward_signals = tokio::spawn(async move {
        signals.recv().await;
        let _ = commands.send(Command::Quit.into()).await;
    });
    if let Some(target) = args.connect {
        handle.command(Command::ConnectWhenOnline(target)).await;
    }
    let result = run_front_end(handle, events, full_screen, args.json).await;
    forward_signals.abort();
    result
}

/// What an https:// server must present: `--ca`'s CA, else the system's
/// roots. `--ca` with a plaintext URL is refused (it would protect
/// nothing), and a plaintext URL off this machine gets a one-line warning.
fn server_trust(args: &Args) -> anyhow::Result<ServerTrust> {
    let https = args.server.starts_with("https://");
    if let Some(path) = &args.ca {
        anyhow::ensure!(
            https,
            "--ca {} (or P2PCHAT_CA) needs an https:// server; {} is plaintext",
            path.display(),
            args.server
        );
        return Ok(ServerTrust::Ca(CaBundle::load(path)?));
    }
    if signaling::tls::is_cleartext_remote(&args.server) {
        eprintln!("{}", signaling::tls::cleartext_warning(&args.server));
    }
    Ok(ServerTrust::SystemRoots)
}

/// Our identity key and the pinned keys of known peers: from `--identity`
/// or the default path (creating the key on first run), or fresh and in
/// memory with `--ephemeral`. Returns the key file's path (`None` when
/// ephemeral).
fn load_identity(args: &Args) -> anyhow::Result<(Identity, KnownPeers, Option<PathBuf>)> {
    // Checked here, not by clap: clap would also call it a conflict when
    // the environment says P2PCHAT_EPHEMERAL=false.
    if args.ephemeral
        && let Some(path) = &args.identity
    {
        anyhow::bail!(
            "--ephemeral cannot be used with --identity {} (or P2PCHAT_IDENTITY): an ephemeral \
             identity is never read from or written to a file",
            path.display()
        );
    }
    if args.ephemeral {
        return Ok((Identity::generate(), KnownPeers::in_memory(), None));
    }
    let path = match &args.identity {
        Some(path) => path.clone(),
        None => keyfile::default_path()?,
    };
    let (identity, status) = keyfile::load_or_create(&path)?;
    if status == KeyFileStatus::Created {
        let _ = writeln!(
            std::io::stderr(),
            "created a new identity key at {} (back it up: it is who you are)",
            path.display()
        );
    }
    let known = KnownPeers::load(&known_peers::path_next_to(&path))?;
    Ok((identity, known, Some(path)))
}

/// Runs the chosen front end until the engine stops.
async fn run_front_end(
    handle: engine::EngineHandle,
    events: mpsc::Receiver<engine::Event>,
    full_screen: bool,
    json: bool,
) -> anyhow::Result<()> {
    if full_screen {
        tui::run(handle, events)
            .await
            .context("the full-screen UI failed (try --plain)")?;
    } else if json {
        let mut ui = JsonUi::new(std::io::stdout());
        frontend::drive(handle, events, spawn_stdin_reader(), &mut ui).await;
    } else {
        // A terminal echoes typed lines; a pipe does not.
        let mut ui = Console::new(std::io::stdout(), std::io::stdin().is_terminal());
        frontend::drive(handle, events, spawn_stdin_reader(), &mut ui).await;
    }
    Ok(())
}

/// Reads stdin on a plain thread (tokio's stdin would hold up runtime
/// shutdown while blocked); the channel closes on EOF or a read error.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(INPUT_BUFFER);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Ctrl+C and, on Unix, SIGTERM; registered at construction.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
