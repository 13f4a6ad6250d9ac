//! The line console front end, like the seed's: a banner, the peer list, a
//! `> ` prompt, `[name]: text` for incoming lines. Used when stdin is not a
//! terminal or with `--plain`.
//!
//! Everything that came from the network (usernames, message text, error
//! details) goes through [`sanitize_display`] before it is printed.
//! Run it with [`super::frontend::drive`].

use std::io::Write;

use super::engine::{Command, Event, PeerSummary};
use super::frontend::FrontEnd;
use super::input::{HELP, Input, parse_line};
use super::protocol::sanitize_display;

/// The console. Keeps what it needs to interpret plain lines like the seed
/// does: before a chat starts, a line picks a peer (by number, id or name).
#[derive(Debug)]
pub struct Console<W: Write> {
    out: W,
    /// The last peer list shown, for picking by number.
    shown: Vec<PeerSummary>,
    /// Peers we have a session with.
    connected: Vec<String>,
}

impl<W: Write> Console<W> {
    /// A console writing to `out` (normally stdout).
    pub fn new(out: W) -> Self {
        Console {
            out,
            shown: Vec::new(),
            connected: Vec::new(),
        }
    }

    /// Prints `text` and the prompt. The prompt stays pending at the end of
    /// the line, so incoming lines appear as `> [name]: text`, like the seed.
    fn print(&mut self, text: &str) {
        let _ = if text.is_empty() {
            write!(self.out, "> ")
        } else {
            write!(self.out, "{text}\n> ")
        };
        let _ = self.out.flush();
    }
}

impl<W: Write> FrontEnd for Console<W> {
    fn on_event(&mut self, event: &Event) {
        let text = self.render(event);
        if !text.is_empty() {
            self.print(&text);
        }
    }

    fn on_line(&mut self, line: &str) -> Option<Command> {
        let (command, reply) = match parse_line(line) {
            Input::Empty => (None, String::new()),
            Input::Help => (None, HELP.to_owned()),
            Input::Invalid(message) => (None, format!("Error: {message}")),
            Input::Command(command) => (Some(command), String::new()),
            Input::Text(text) if self.connected.is_empty() => {
                // Seed style: before a chat, a line names the peer to call.
                let choice = text.trim();
                let command = if choice == "q" {
                    Command::Quit
                } else {
                    let target = match choice.parse::<usize>() {
                        Ok(n) if n >= 1 && n <= self.shown.len() => {
                            self.shown[n - 1].peer_id.clone()
                        }
                        _ => choice.to_owned(),
                    };
                    Command::Connect(target)
                };
                (Some(command), String::new())
            }
            Input::Text(text) => (Some(Command::Send(text)), String::new()),
        };
        self.print(&reply);
        command
    }

    fn on_exit(&mut self) {
        let _ = writeln!(self.out, "\nBye.");
        let _ = self.out.flush();
    }
}

impl<W: Write> Console<W> {
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
                incoming,
                ..
            } => {
                if !self.connected.contains(peer_id) {
                    self.connected.push(peer_id.clone());
                }
                let rtt = rtt_ms
                    .map(|r| format!(", rtt {r:.1} ms"))
                    .unwrap_or_default();
                let mode = if *reliable { "" } else { ", seed protocol" };
                let how = if *incoming {
                    format!("{} connected to us", s(username))
                } else {
                    format!("Connected to {}", s(username))
                };
                format!(
                    "{how} at {addr} ({path}{rtt}{mode})\n\n--- Chat started. Type messages and press Enter. Type '/quit' to exit ---"
                )
            }
            Event::PathChanged {
                peer_id,
                addr,
                path,
            } => {
                let name = self
                    .shown
                    .iter()
                    .find(|p| &p.peer_id == peer_id)
                    .map_or_else(|| short(peer_id, 8), |p| s(&p.username));
                format!("* Chat with {name} now uses the {path} path ({addr})")
            }
            Event::Message { username, text, .. } => format!("[{}]: {}", s(username), s(text)),
            Event::Sent { .. }
            | Event::Delivered { .. }
            | Event::Rtt { .. }
            | Event::Focus { .. } => String::new(),
            Event::Undeliverable { line, .. } => {
                format!("! Message #{line} could not be delivered")
            }
            Event::Disconnected {
                peer_id,
                username,
                reason,
            } => {
                self.connected.retain(|p| p != peer_id);
                let name = s(username);
                match *reason {
                    "reset" => format!("* {name} started a new session"),
                    "local" => format!("* Disconnected from {name}."),
                    reason => {
                        let why = match reason {
                            "remote_disconnect" => "disconnected",
                            "timeout" => "is offline (no answer to keep-alive)",
                            "left" => "left (the signaling server reports it offline)",
                            "unreachable" => "could not be reached",
                            _ => "ended the session",
                        };
                        format!(
                            "* {name} {why}. Pick another peer with /connect <id or name>, or /peers."
                        )
                    }
                }
            }
            Event::ServerLost { error } => format!(
                "! Lost the signaling server ({}); chat continues, reconnecting in the background",
                s(error)
            ),
            Event::ServerRestored {} => "* Reconnected to the signaling server".to_owned(),
            Event::Status {
                server_connected,
                sessions,
            } => {
                let mut text = format!(
                    "Signaling server: {}",
                    if *server_connected {
                        "connected"
                    } else {
                        "reconnecting..."
                    }
                );
                if sessions.is_empty() {
                    text.push_str("\nNo sessions.");
                }
                for st in sessions {
                    let mut details = vec![st.state.to_owned()];
                    if let (Some(path), Some(addr)) = (st.path, &st.addr) {
                        details.push(format!("{path} {addr}"));
                    }
                    if let Some(rtt) = st.rtt_ms {
                        details.push(format!("rtt {rtt:.1} ms"));
                    }
                    if !st.reliable && st.state == "connected" {
                        details.push("seed protocol".to_owned());
                    }
                    if st.pending > 0 {
                        details.push(format!("{} unacknowledged", st.pending));
                    }
                    text.push_str(&format!(
                        "\n  {}{} ({})",
                        if st.active { "* " } else { "  " },
                        s(&st.username),
                        details.join(", ")
                    ));
                }
                text
            }
            Event::Info { message } => s(message),
            Event::Error { message, .. } => format!("Error: {}", s(message)),
        }
    }
}

fn short(id: &str, n: usize) -> String {
    id.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(console: Console<Vec<u8>>) -> String {
        String::from_utf8(console.out).unwrap()
    }

    #[test]
    fn hostile_names_and_text_are_neutralised() {
        let mut c = Console::new(Vec::new());
        c.on_event(&Event::Peers {
            peers: vec![PeerSummary {
                peer_id: "aaaaaaaa-0000-4000-8000-000000000001".into(),
                username: "\u{1b}]0;pwned\u{7}mallory".into(),
                via: "rest",
            }],
        });
        c.on_event(&Event::Message {
            from: "x".into(),
            username: "\u{9b}2J".into(),
            text: "\u{1b}[2Jhi\u{8}\u{8}".into(),
            sent_at: 1.0,
        });
        let out = output(c);
        assert!(
            !out.chars().any(|ch| ch.is_control() && ch != '\n'),
            "{out:?}"
        );
        assert!(
            out.contains(r"\x1b]0;pwned\x07mallory (ID: aaaaaaaa-0000-40...) [seed]"),
            "{out}"
        );
        assert!(out.contains(r"[\x9b2J]: \x1b[2Jhi\x08\x08"), "{out}");
    }

    #[test]
    fn before_a_chat_a_line_picks_a_peer() {
        let mut c = Console::new(Vec::new());
        let peer = |id: &str, name: &str| PeerSummary {
            peer_id: id.into(),
            username: name.into(),
            via: "grpc",
        };
        c.on_event(&Event::Peers {
            peers: vec![peer("id-1", "alice"), peer("id-2", "bob")],
        });
        assert_eq!(c.on_line("2"), Some(Command::Connect("id-2".into())));
        assert_eq!(c.on_line("7"), Some(Command::Connect("7".into())));
        assert_eq!(c.on_line("bob"), Some(Command::Connect("bob".into())));
        assert_eq!(c.on_line("q"), Some(Command::Quit));
        c.on_event(&Event::Connected {
            peer_id: "id-2".into(),
            username: "bob".into(),
            addr: "127.0.0.1:9".into(),
            path: "lan",
            rtt_ms: None,
            reliable: true,
            incoming: false,
            probe_rounds: 1,
        });
        assert_eq!(c.on_line("2"), Some(Command::Send("2".into())));
        c.on_event(&Event::Disconnected {
            peer_id: "id-2".into(),
            username: "bob".into(),
            reason: "timeout",
        });
        assert_eq!(c.on_line("alice"), Some(Command::Connect("alice".into())));
        let out = output(c);
        assert!(
            out.contains("bob is offline (no answer to keep-alive)"),
            "{out}"
        );
        assert!(out.contains("--- Chat started."), "{out}");
    }
}
