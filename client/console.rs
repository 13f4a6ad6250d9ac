//! The line console front end, like the seed's: a banner, the peer list, a
//! `> ` prompt, `[name]: text` for incoming lines. Used when stdin is not a
//! terminal or with `--plain`.
//!
//! Encryption is said on every session: `connected` says whether it is
//! end-to-end encrypted (or warns that a seed peer's plaintext is not),
//! every line from an unencrypted session starts with
//! [`UNENCRYPTED_MARK`] (encrypted lines keep the seed's exact
//! `[name]: text`), `/status` lists each session's protection and safety
//! number, and `/verify [name]` shows the number to compare out of band
//! (asking the engine for a `status` first when it does not know it).
//!
//! Everything that came from the network (usernames, message text, error
//! details) goes through [`sanitize_display`] before it is printed.
//! Run it with [`super::frontend::drive`].

use std::collections::HashMap;
use std::io::Write;

use p2pchat::PeerId;

use super::engine::{
    Command, DisconnectReason, Event, PeerSummary, Request, RequestId, SessionState, SessionStatus,
    Via,
};
use super::frontend::{FrontEnd, Verifier};
use super::input::{HELP, Input, UNENCRYPTED_MARK, parse_line};
use super::text::{
    encryption_note, error_message, restarted, rtt_suffix, sanitize_display, server_lost,
    server_state, session_details, short, why_ended,
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
    /// Each session's protection and safety number, for `/verify`.
    verifier: Verifier,
    /// `/verify` targets waiting for the `status` asked for them, by the
    /// id of that request.
    verifying: HashMap<RequestId, Option<String>>,
    /// The id of our next request that needs one.
    next_request: RequestId,
}

impl<W: Write> Console<W> {
    /// A console writing to `out` (normally stdout).
    pub fn new(out: W) -> Self {
        Console {
            out,
            shown: Vec::new(),
            connected: Vec::new(),
            verifier: Verifier::default(),
            verifying: HashMap::new(),
            next_request: 1,
        }
    }

    /// `/verify [target]`: the answer, or (when the engine may know more)
    /// a `status` request whose answer is turned into it.
    fn verify(&mut self, target: Option<String>) -> (Option<Request>, String) {
        let found = self.verifier.verify(target.as_deref());
        if !found.worth_asking() {
            return (None, found.lines().join("\n"));
        }
        let id = self.next_request;
        self.next_request += 1;
        self.verifying.insert(id, target);
        (Some(Command::Status.with_id(id)), String::new())
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
        self.verifier.on_event(event);
        let text = self.render(event);
        if !text.is_empty() {
            self.print(&text);
        }
    }

    fn on_line(&mut self, line: &str) -> Option<Request> {
        let (command, reply) = match parse_line(line) {
            Input::Empty => (None, String::new()),
            Input::Help => (None, HELP.to_owned()),
            Input::Invalid(message) => (None, format!("Error: {message}")),
            Input::Verify(target) => {
                let (request, reply) = self.verify(target);
                self.print(&reply);
                return request;
            }
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
        command.map(Request::from)
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
            Event::Message {
                username,
                text,
                encrypted,
                ..
            } => {
                // Encrypted lines keep the seed's exact format; plaintext
                // ones are marked before anything the peer controls.
                let mark = if *encrypted {
                    String::new()
                } else {
                    format!("{UNENCRYPTED_MARK} ")
                };
                format!("{mark}[{}]: {}", s(username), s(text))
            }
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
                id,
                server_connected,
                sessions,
            } => match id.and_then(|id| self.verifying.remove(&id)) {
                // Asked for by `/verify`: only its answer is shown.
                Some(target) => self.verifier.verify(target.as_deref()).lines().join("\n"),
                None => render_status(*server_connected, sessions),
            },
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
            encrypted,
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
            "{how} ({})\n  at {} ({path}{}{mode})\n\n--- Chat started. Type messages and press Enter. Type '/quit' to exit ---",
            encryption_note(&name, *encrypted),
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
        match &st.safety_number {
            Some(number) => text.push_str(&format!(
                "\n      safety number: {}",
                sanitize_display(number)
            )),
            None if st.encrypted && st.state == SessionState::Connected => {
                text.push_str("\n      safety number: not proven yet");
            }
            None => {}
        }
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

    /// The command a typed line asks for (its request id aside).
    fn cmd(c: &mut Console<Vec<u8>>, line: &str) -> Option<Command> {
        c.on_line(line).map(|r| r.command)
    }

    const NUMBER: &str = "11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890";

    fn connected(peer: &str, name: &str, encrypted: bool, number: Option<&str>) -> Event {
        Event::Connected {
            peer_id: id(peer),
            username: name.into(),
            addr: "127.0.0.1:9".into(),
            path: Path::Lan,
            rtt_ms: None,
            reliable: encrypted,
            incoming: false,
            probe_rounds: 1,
            encrypted,
            safety_number: number.map(str::to_owned),
        }
    }

    fn message(peer: &str, name: &str, text: &str, encrypted: bool) -> Event {
        Event::Message {
            from: id(peer),
            username: name.into(),
            text: text.into(),
            sent_at: 1.0,
            encrypted,
        }
    }

    #[test]
    fn encrypted_sessions_say_so_and_plaintext_lines_are_marked() {
        let mut c = Console::new(Vec::new());
        c.on_event(&connected(BOB, "bob", true, Some(NUMBER)));
        c.on_event(&message(BOB, "bob", "hi", true));
        c.on_event(&connected(ALICE, "seedy", false, None));
        c.on_event(&message(ALICE, "seedy", "plain hi", false));
        let out = output(c);
        assert!(
            out.contains(
                "Connected to bob (end-to-end encrypted; /verify shows the safety number)\n  at 127.0.0.1:9 (lan)"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "Connected to seedy (NOT encrypted: seedy speaks the seed protocol; anyone on the path can read and forge these lines)"
            ),
            "{out}"
        );
        // Encrypted lines keep the seed's format exactly.
        assert!(out.contains("\n> [bob]: hi\n"), "{out}");
        assert!(!out.contains("[unencrypted] [bob]"), "{out}");
        assert!(out.contains("> [unencrypted] [seedy]: plain hi\n"), "{out}");
    }

    #[test]
    fn verify_shows_the_number_or_asks_the_engine_first() {
        let mut c = Console::new(Vec::new());
        // Nothing known: ask for a status, answer when it comes.
        let asked = c.on_line("/verify").expect("a status request");
        assert_eq!(asked.command, Command::Status);
        let status = |request, number: Option<&str>| Event::Status {
            id: request,
            server_connected: true,
            sessions: vec![SessionStatus {
                peer_id: id(BOB),
                username: "bob".into(),
                state: SessionState::Connected,
                active: true,
                addr: Some("127.0.0.1:9".into()),
                path: Some(Path::Lan),
                rtt_ms: Some(1.25),
                reliable: true,
                pending: 0,
                encrypted: true,
                safety_number: number.map(str::to_owned),
            }],
        };
        c.on_event(&status(asked.id, Some(NUMBER)));
        // Known now: answered at once.
        assert_eq!(cmd(&mut c, "/verify bob"), None);
        c.on_event(&connected(ALICE, "seedy", false, None));
        assert_eq!(cmd(&mut c, "/verify seedy"), None);
        // Asked for a peer nobody knows: one status, then the answer.
        let asked = c.on_line("/verify carol").expect("a status request");
        c.on_event(&status(asked.id, Some(NUMBER)));
        // A status the user asked for is listed in full.
        c.on_event(&status(None, Some(NUMBER)));
        c.on_event(&status(None, None));
        let out = output(c);
        let verified = "Safety number with bob:\n    11111 22222 33333 44444\n    55555 66666 77777 88888\n    99999 00000 12345 67890\nCompare it with the number bob sees";
        assert_eq!(out.matches(verified).count(), 2, "{out}");
        assert!(out.contains("out of band"), "{out}");
        assert!(
            out.contains("There is no encrypted session with seedy: it speaks the seed protocol"),
            "{out}"
        );
        assert!(
            out.contains("There is no encrypted session with carol; /connect to it first."),
            "{out}"
        );
        assert_eq!(
            out.matches("Signaling server: connected").count(),
            2,
            "the statuses /verify asked for are not listed: {out}"
        );
        assert!(
            out.contains("* bob (connected, lan 127.0.0.1:9, rtt 1.2 ms, end-to-end encrypted)\n      safety number: 11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 12345 67890"),
            "{out}"
        );
        assert!(out.contains("safety number: not proven yet"), "{out}");
    }

    #[test]
    fn trust_goes_to_the_engine() {
        let mut c = Console::new(Vec::new());
        assert_eq!(
            cmd(&mut c, "/trust bob"),
            Some(Command::Trust("bob".into()))
        );
        assert_eq!(cmd(&mut c, "/trust"), None);
        assert!(output(c).contains("Error: usage: /trust <username>"));
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
        assert_eq!(cmd(&mut c, "2"), Some(Command::Connect(BOB.into())));
        assert_eq!(cmd(&mut c, "7"), Some(Command::Connect("7".into())));
        assert_eq!(cmd(&mut c, "bob"), Some(Command::Connect("bob".into())));
        assert_eq!(cmd(&mut c, "q"), Some(Command::Quit));
        c.on_event(&connected(BOB, "bob", true, None));
        assert_eq!(cmd(&mut c, "2"), Some(Command::Send("2".into())));
        c.on_event(&Event::Disconnected {
            peer_id: id(BOB),
            username: "bob".into(),
            reason: DisconnectReason::Timeout,
        });
        assert_eq!(cmd(&mut c, "alice"), Some(Command::Connect("alice".into())));
        let out = output(c);
        assert!(
            out.contains("bob is offline (no answer to keep-alive)"),
            "{out}"
        );
        assert!(out.contains("--- Chat started."), "{out}");
    }
}
