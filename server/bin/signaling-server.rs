//! `signaling-server`: parses flags, sets up logging, runs the server until
//! Ctrl+C or SIGTERM, then shuts down gracefully; a second signal exits at
//! once.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use p2pchat_server::{self as server, ServerArgs};

/// Exit status after a second signal cut the graceful shutdown short
/// (128 + SIGINT, as shells report an interrupted program).
const EXIT_INTERRUPTED: i32 = 130;

/// Runs the server; a start-up error is printed as its message and causes,
/// one per line, never with a backtrace (even with RUST_BACKTRACE set: it is
/// the user's error, not a bug), and exits 1.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return report(&anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Prints `err` and its causes to stderr (a closed stderr is ignored).
fn report(err: &anyhow::Error) -> std::process::ExitCode {
    use std::io::Write;
    let mut text = format!("Error: {err}\n");
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        text.push_str("\nCaused by:\n");
        for cause in causes {
            text.push_str(&format!("    {cause}\n"));
        }
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
    std::process::ExitCode::FAILURE
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A failed log write (stderr piped into a reader that went away) is
        // dropped: reporting it with `eprintln!` would panic on the same
        // broken pipe, inside whichever task logged.
        .log_internal_errors(false)
        .init();

    let args = ServerArgs::parse();
    let running = server::start(args.into_config())
        .await
        .context("cannot start the signaling server")?;

    let trigger = running.shutdown_trigger();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; a second one exits at once");
        let _ = trigger.send(());
        wait_for_signal().await;
        tracing::warn!("second shutdown signal: exiting without waiting for open connections");
        std::process::exit(EXIT_INTERRUPTED);
    });
    running.wait().await;
    tracing::info!("signaling server stopped");
    Ok(())
}

/// Resolves on Ctrl+C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl+C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
