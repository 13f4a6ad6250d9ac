//! The line console front end, like the seed's: a banner, the peer list, a
//! `> ` prompt, `[name]: text` for incoming lines. Used when stdin is not a
//! terminal or with `--plain`.
//!
//! Everything that came from the network (usernames, message text, error
//! details) goes through [`sanitize_display`] before it is printed.
//! Run it with [`super::frontend::drive`].

use std::io::Write;

use p2pchat::PeerId;

use super::engine::{Command, DisconnectReason, Event, PeerSummary, SessionStatus, Via};
use super::frontend::FrontEnd;
use super::input::{HELP, Input, parse_line};
use super::text::{
    error_message, restarted, rtt_suffix, sanitize_display, server_lost, server_state,
    session_details, short, why_ended,
};

/// The console. Keeps what it needs to interpret plain lines like the seed
/// does: before a chat starts, a line picks a peer (by number, id or name).
#[derive(Debug)]
pub struct Console<W: Write> {
    out: W,
    /// The last peer list shown, for picking by number.
    shown: Vec<PeerSummary>,
    /// Peers we have a session with.
    connected: Vec<PeerId>,
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
                            self.shown[n - 1].peer_id.to_string()
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
            Event::Peers { peers, .. } => self.render_peers(peers),
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
                s(&endpoints.join(", "))
            ),
            Event::Connected { .. } => self.render_connected(event),
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
                format!("* Chat with {name} now uses the {path} path ({})", s(addr))
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
                render_disconnected(&s(username), *reason)
            }
            Event::ServerLost { error } => format!("! Lost {}", server_lost(error)),
            Event::ServerRestored {} => "* Reconnected to the signaling server".to_owned(),
            Event::Status {
                server_connected,
                sessions,
                ..
            } => render_status(*server_connected, sessions),
            Event::Info { message } => s(message),
            Event::Error { code, message, .. } => {
                format!("Error: {}", s(&error_message(*code, message)))
            }
        }
    }

    fn render_peers(&mut self, peers: &[PeerSummary]) -> String {
        self.shown = peers.to_vec();
        if peers.is_empty() {
            return "No peers available. Waiting for connection...".to_owned();
        }
        let mut text = String::from("Available peers:\n");
        for (i, p) in peers.iter().enumerate() {
            text.push_str(&format!(
                "  {}. {} (ID: {}...){}\n",
                i + 1,
                sanitize_display(&p.username),
                short(&p.peer_id, 16),
                if p.via == Via::Rest { " [seed]" } else { "" }
            ));
        }
        if self.connected.is_empty() {
            text.push_str("\nEnter a peer number, ID or username to connect (or /quit to exit):");
        }
        text
    }

    fn render_connected(&mut self, event: &Event) -> String {
        let Event::Connected {
            peer_id,
            username,
            addr,
            path,
            rtt_ms,
            reliable,
            incoming,
            ..
        } = event
        else {
            return String::new();
        };
        if !self.connected.contains(peer_id) {
            self.connected.push(*peer_id);
        }
        let name = sanitize_display(username);
        let mode = if *reliable { "" } else { ", seed protocol" };
        let how = if *incoming {
            format!("{name} connected to us")
        } else {
            format!("Connected to {name}")
        };
        format!(
            "{how} at {} ({path}{}{mode})\n\n--- Chat started. Type messages and press Enter. Type '/quit' to exit ---",
            sanitize_display(addr),
            rtt_suffix(*rtt_ms)
        )
    }
}

fn render_disconnected(name: &str, reason: DisconnectReason) -> String {
    match (reason, why_ended(reason)) {
        (DisconnectReason::Reset, _) => format!("* {}", restarted(name)),
        (_, Some(why)) => {
            format!("* {name} {why}. Pick another peer with /connect <id or name>, or /peers.")
        }
        (_, None) => format!("* Disconnected from {name}."),
    }
}

fn render_status(server_connected: bool, sessions: &[SessionStatus]) -> String {
    let mut text = format!("Signaling server: {}", server_state(server_connected));
    if sessions.is_empty() {
        text.push_str("\nNo sessions.");
    }
    for st in sessions {
        text.push_str(&format!(
            "\n  {}{} ({})",
            if st.active { "* " } else { "  " },
            sanitize_display(&st.username),
            session_details(st)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Path;

    const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
    const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

    fn id(text: &str) -> PeerId {
        PeerId::parse(text).unwrap()
    }

    fn output(console: Console<Vec<u8>>) -> String {
        String::from_utf8(console.out).unwrap()
    }

    #[test]
    fn hostile_names_and_text_are_neutralised() {
        let mut c = Console::new(Vec::new());
        c.on_event(&Event::peers(vec![PeerSummary {
            peer_id: id("aaaaaaaa-0000-4000-8000-000000000001"),
            username: "\u{1b}]0;pwned\u{7}mallory".into(),
            via: Via::Rest,
        }]));
        c.on_event(&Event::Message {
            from: id(BOB),
            username: "\u{9b}2J".into(),
            text: "\u{1b}[2Jhi\u{8}\u{8}".into(),
            sent_at: 1.0,
            encrypted: true,
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
        let peer = |peer_id: &str, name: &str| PeerSummary {
            peer_id: id(peer_id),
            username: name.into(),
            via: Via::Grpc,
        };
        c.on_event(&Event::peers(vec![peer(ALICE, "alice"), peer(BOB, "bob")]));
        assert_eq!(c.on_line("2"), Some(Command::Connect(BOB.into())));
        assert_eq!(c.on_line("7"), Some(Command::Connect("7".into())));
        assert_eq!(c.on_line("bob"), Some(Command::Connect("bob".into())));
        assert_eq!(c.on_line("q"), Some(Command::Quit));
        c.on_event(&Event::Connected {
            peer_id: id(BOB),
            username: "bob".into(),
            addr: "127.0.0.1:9".into(),
            path: Path::Lan,
            rtt_ms: None,
            reliable: true,
            incoming: false,
            probe_rounds: 1,
            encrypted: true,
            safety_number: None,
        });
        assert_eq!(c.on_line("2"), Some(Command::Send("2".into())));
        c.on_event(&Event::Disconnected {
            peer_id: id(BOB),
            username: "bob".into(),
            reason: DisconnectReason::Timeout,
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
