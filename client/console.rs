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
//! The prompt is written once and stays pending at the end of the output
//! ([`Cursor`]): never `> > `, and after a line typed at a terminal (whose
//! echo ends the prompt's line) the prompt comes back at once, so replies
//! read `> Error: ...` like every other line. A plain line picks a peer only
//! while the peer list asks for one (before the first chat, or after
//! `/peers` with no chat open); after a chat ended it is answered with how
//! to pick one, never taken as a peer name. A path change is said only
//! when the kind of path changes (the first path settling on a better
//! address of the same kind is nothing new for the user).
//!
//! Everything that came from the network (usernames, message text, error
//! details) goes through [`sanitize_display`] before it is printed.
//! Run it with [`super::frontend::drive`].

use std::collections::HashMap;
use std::io::Write;

use p2pchat::PeerId;

use super::engine::{
    Command, DisconnectReason, Event, Path, PeerSummary, Request, RequestId, SessionState,
    SessionStatus, Via,
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
    /// Peers we have a session with: the name and kind of path the user
    /// was last told.
    connected: HashMap<PeerId, (String, Path)>,
    /// Whether a plain line picks a peer (the peer list asks for one).
    picking: bool,
    /// Whether typed lines are echoed (stdin is a terminal): the echo
    /// ends the prompt's line.
    echoed: bool,
    /// Where the output stands.
    cursor: Cursor,
    /// Each session's protection and safety number, for `/verify`.
    verifier: Verifier,
    /// `/verify` targets waiting for the `status` asked for them, by the
    /// id of that request.
    verifying: HashMap<RequestId, Option<String>>,
    /// The id of our next request that needs one.
    next_request: RequestId,
}

impl<W: Write> Console<W> {
    /// A console writing to `out` (normally stdout); `echoed`: typed lines
    /// are echoed by the terminal (stdin is one).
    pub fn new(out: W, echoed: bool) -> Self {
        Console {
            out,
            shown: Vec::new(),
            connected: HashMap::new(),
            picking: true,
            echoed,
            cursor: Cursor::Fresh,
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

    /// Prints `text` (if any) and the prompt, unless it is pending already.
    /// The prompt stays pending at the end of the line, so incoming lines
    /// appear as `> [name]: text`, like the seed.
    fn print(&mut self, text: &str) {
        if !text.is_empty() {
            let prompt = if self.cursor == Cursor::LineStart {
                "> "
            } else {
                ""
            };
            let _ = writeln!(self.out, "{prompt}{text}");
            self.cursor = Cursor::LineStart;
        }
        if self.cursor != Cursor::AtPrompt {
            let _ = write!(self.out, "> ");
            self.cursor = Cursor::AtPrompt;
        }
        let _ = self.out.flush();
    }

    /// A plain line typed with no chat open.
    fn no_chat(&self, text: &str) -> (Option<Command>, String) {
        let choice = text.trim();
        if choice == "q" {
            return (Some(Command::Quit), String::new());
        }
        if !self.picking {
            return (
                None,
                "No chat is open: pick a peer with /connect <number, id or name>, \
                 or /peers to list who is online."
                    .to_owned(),
            );
        }
        // Seed style: while the list asks for a peer, a line names it.
        let target = match choice.parse::<usize>() {
            Ok(n) if n >= 1 && n <= self.shown.len() => self.shown[n - 1].peer_id.to_string(),
            _ => choice.to_owned(),
        };
        (Some(Command::Connect(target)), String::new())
    }
}

/// Where the console's output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// Nothing written yet.
    Fresh,
    /// At the start of a line, no prompt on it.
    LineStart,
    /// Right after a pending `> `.
    AtPrompt,
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
        if self.echoed && self.cursor == Cursor::AtPrompt {
            self.cursor = Cursor::LineStart;
        }
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
            Input::Text(text) if self.connected.is_empty() => self.no_chat(&text),
            Input::Text(text) => (Some(Command::Send(text)), String::new()),
        };
        self.print(&reply);
        command.map(Request::from)
    }

    fn on_exit(&mut self) {
        let _ = writeln!(self.out, "\nBye.");
        self.cursor = Cursor::LineStart;
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
            } => self.render_path_changed(*peer_id, addr, *path),
            Event::Message {
                username,
                text,
                encrypted,
                ..
            } => render_message(username, text, *encrypted),
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
                let was_connected = self.connected.remove(peer_id).is_some();
                render_disconnected(&s(username), *reason, was_connected)
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

    /// `* Chat with NAME now uses ...`, only when the kind of path changed.
    fn render_path_changed(&mut self, peer: PeerId, addr: &str, path: Path) -> String {
        let Some((name, told)) = self.connected.get_mut(&peer) else {
            return String::new();
        };
        if *told == path {
            return String::new();
        }
        *told = path;
        format!(
            "* Chat with {} now uses the {path} path ({})",
            sanitize_display(name),
            sanitize_display(addr)
        )
    }

    fn render_peers(&mut self, peers: &[PeerSummary]) -> String {
        self.shown = peers.to_vec();
        if self.connected.is_empty() {
            // The list below asks for a peer: a plain line names one.
            self.picking = true;
        }
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
        self.connected.insert(*peer_id, (username.clone(), *path));
        self.picking = false;
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

/// `[name]: text`: encrypted lines keep the seed's exact format; plaintext
/// ones are marked before anything the peer controls.
fn render_message(username: &str, text: &str, encrypted: bool) -> String {
    let mark = if encrypted {
        String::new()
    } else {
        format!("{UNENCRYPTED_MARK} ")
    };
    format!(
        "{mark}[{}]: {}",
        sanitize_display(username),
        sanitize_display(text)
    )
}

fn render_disconnected(name: &str, reason: DisconnectReason, was_connected: bool) -> String {
    match (reason, why_ended(reason)) {
        // A session still probing was replaced by the peer's newer one:
        // the user was never told of the old one.
        (DisconnectReason::Reset, _) if !was_connected => String::new(),
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
mod tests;
