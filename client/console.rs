//! The line console front end, like the seed's: a banner, the peer list, a
//! `> ` prompt, `[name]: text` for incoming lines. Used when stdin is not a
//! terminal or with `--plain`.
//!
//! Everything that came from the network (usernames, message text, error
//! details) goes through [`sanitize_display`] before it is printed.

use std::io::Write;

use tokio::sync::mpsc;

use super::engine::{Command, EngineHandle, Event, PeerSummary};
use super::input::{HELP, Input, parse_line};
use super::protocol::sanitize_display;

/// State the console keeps to interpret plain lines like the seed does:
/// before a chat starts, a line picks a peer (by number, id or name).
#[derive(Debug, Default)]
struct Console {
    /// The last peer list shown, for picking by number.
    shown: Vec<PeerSummary>,
    /// Peers we have a session with.
    connected: Vec<String>,
}

/// Runs until the engine stops. `input` yields stdin lines; its end (EOF)
/// quits like `/quit`.
pub async fn run(
    handle: EngineHandle,
    mut events: mpsc::Receiver<Event>,
    mut input: mpsc::Receiver<String>,
    mut out: impl Write,
) {
    let mut console = Console::default();
    let mut input_open = true;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    let text = console.render(&event);
                    if !text.is_empty() {
                        // A newline first: the prompt is usually pending.
                        let _ = write!(out, "\r{text}\n> ");
                        let _ = out.flush();
                    }
                }
                None => break,
            },
            line = input.recv(), if input_open => match line {
                Some(line) => {
                    let reply = console.on_line(&handle, &line).await;
                    let _ = match reply {
                        Some(text) => write!(out, "{text}\n> "),
                        None => write!(out, "> "),
                    };
                    let _ = out.flush();
                }
                None => {
                    input_open = false;
                    handle.command(Command::Quit).await;
                }
            },
        }
    }
    let _ = writeln!(out, "\rBye.");
    let _ = out.flush();
    handle.join().await;
}

impl Console {
    async fn on_line(&mut self, handle: &EngineHandle, line: &str) -> Option<String> {
        match parse_line(line) {
            Input::Empty => None,
            Input::Help => Some(HELP.to_owned()),
            Input::Invalid(message) => Some(format!("Error: {message}")),
            Input::Command(command) => {
                handle.command(command).await;
                None
            }
            Input::Text(text) if self.connected.is_empty() => {
                // Seed style: before a chat, a line names the peer to call.
                let choice = text.trim();
                if choice == "q" {
                    handle.command(Command::Quit).await;
                    return None;
                }
                let target = match choice.parse::<usize>() {
                    Ok(n) if n >= 1 && n <= self.shown.len() => self.shown[n - 1].peer_id.clone(),
                    _ => choice.to_owned(),
                };
                handle.command(Command::Connect(target)).await;
                None
            }
            Input::Text(text) => {
                handle.command(Command::Send(text)).await;
                None
            }
        }
    }

    fn render(&mut self, event: &Event) -> String {
        let s = sanitize_display;
        match event {
            Event::Registered {
                peer_id,
                username,
                udp_port,
                public_addr,
                ..
            } => format!(
                "\n=== P2P Chat Client ===\nUsername: {}\nPeer ID: {peer_id}\nListening on port: {udp_port}\nPublic address: {}\n",
                s(username),
                s(public_addr)
            ),
            Event::Peers { peers } => {
                self.shown = peers.clone();
                if peers.is_empty() {
                    "No peers available. Waiting for connection...".to_owned()
                } else {
                    let mut text = String::from("Available peers:\n");
                    for (i, p) in peers.iter().enumerate() {
                        text.push_str(&format!(
                            "  {}. {} (ID: {}...){}\n",
                            i + 1,
                            s(&p.username),
                            short(&p.peer_id, 16),
                            if p.via == "rest" { " [seed]" } else { "" }
                        ));
                    }
                    if self.connected.is_empty() {
                        text.push_str(
                            "\nEnter a peer number, ID or username to connect (or /quit to exit):",
                        );
                    }
                    text
                }
            }
            Event::PeerJoined { peer_id, username } => {
                format!("* {} (ID: {}...) is online", s(username), short(peer_id, 8))
            }
            Event::PeerLeft { peer_id, username } => {
                format!(
                    "* {} (ID: {}...) went offline",
                    s(username),
                    short(peer_id, 8)
                )
            }
            Event::Connecting {
                username,
                attempt,
                endpoints,
                ..
            } => format!(
                "Connecting to {} (attempt {attempt}, probing {})...",
                s(username),
                endpoints.join(", ")
            ),
            Event::Connected {
                peer_id,
                username,
                addr,
                path,
                rtt_ms,
                reliable,
            } => {
                if !self.connected.contains(peer_id) {
                    self.connected.push(peer_id.clone());
                }
                let rtt = rtt_ms
                    .map(|r| format!(", rtt {r:.1} ms"))
                    .unwrap_or_default();
                let mode = if *reliable { "" } else { ", seed protocol" };
                format!(
                    "Connected to {} at {addr} ({path}{rtt}{mode})\n\n--- Chat started. Type messages and press Enter. Type '/quit' to exit ---",
                    s(username)
                )
            }
            Event::Message { username, text, .. } => format!("[{}]: {}", s(username), s(text)),
            Event::Sent { .. } | Event::Delivered { .. } | Event::Rtt { .. } => String::new(),
            Event::Undeliverable { line, .. } => {
                format!("! Message #{line} could not be delivered")
            }
            Event::Disconnected {
                peer_id,
                username,
                reason,
            } => {
                self.connected.retain(|p| p != peer_id);
                let why = match *reason {
                    "remote_disconnect" => "disconnected",
                    "timeout" => "is offline (no answer to keep-alive)",
                    "left" => "left (the signaling server reports it offline)",
                    "unreachable" => "could not be reached",
                    _ => "session closed",
                };
                format!(
                    "* {} {why}. Pick another peer with /connect <id or name>, or /peers.",
                    s(username)
                )
            }
            Event::ServerLost { error } => format!(
                "! Lost the signaling server ({}); chat continues, reconnecting in the background",
                s(error)
            ),
            Event::ServerRestored {} => "* Reconnected to the signaling server".to_owned(),
            Event::Info { message } => s(message),
            Event::Error { message, .. } => format!("Error: {}", s(message)),
        }
    }
}

fn short(id: &str, n: usize) -> String {
    id.chars().take(n).collect()
}
