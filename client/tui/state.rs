//! The full-screen UI's state: peer list, sessions, chat history, input line
//! and status, changed only by engine [`Event`]s and key presses. No
//! terminal I/O here, so it is tested directly and rendered by
//! [`super::view`] onto any ratatui backend.
//!
//! Every string from the network (usernames, messages, error details) is
//! passed through [`sanitize_display`] when it enters this state, so the
//! view never sees a control character or a bidi override.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::engine::{Command, Event, PeerSummary, SessionStatus};
use crate::input::{HELP, Input, parse_line};
use crate::protocol::sanitize_display;
use crate::session::MAX_LINE_BYTES;

/// Most chat-pane entries kept; the oldest go first. Bounds memory and the
/// work of drawing however long the program runs.
pub const MAX_CHAT_ENTRIES: usize = 2000;

/// Most bytes the input line holds: a longer line could not be sent anyway
/// (the session's line limit).
pub const MAX_INPUT_BYTES: usize = MAX_LINE_BYTES;

/// Most names listed in the chat pane's answer to `/peers` (the pane on the
/// left shows them all).
pub const MAX_NAMES_LISTED: usize = 20;

/// Characters of a peer id shown as its short id.
pub const SHORT_ID_CHARS: usize = 8;

/// Key bindings, shown by `/help` and in the README.
pub const KEYS_HELP: &str = "keys: Up/Down select a peer, Enter (empty input) connects to it, \
PageUp/PageDown scroll the chat, Left/Right/Home/End/Backspace/Delete edit, Esc clears the input, \
Ctrl+C quits; marks on your lines: \u{b7} queued, \u{2713} sent, \u{2713}\u{2713} delivered, \
\u{2717} failed";

/// Returns the time of day shown next to each chat line.
pub type Clock = fn() -> String;

/// The local wall clock as `HH:MM`.
pub fn local_clock() -> String {
    chrono::Local::now().format("%H:%M").to_string()
}

/// The first [`SHORT_ID_CHARS`] characters of a peer id, sanitised.
pub fn short_id(id: &str) -> String {
    sanitize_display(&id.chars().take(SHORT_ID_CHARS).collect::<String>())
}

/// Where one of our own lines stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the engine, no answer yet.
    Queued,
    /// On the wire; with a seed-style peer no receipt will ever follow.
    Sent,
    /// The peer acknowledged it.
    Delivered,
    /// It could not be sent, or the session ended before the ack.
    Failed,
}

/// What a chat-pane entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A notice from the program.
    System,
    /// Something went wrong.
    Error,
    /// A line from a peer (its name, sanitised).
    Incoming {
        /// Sender's display name.
        from: String,
    },
    /// A line of ours.
    Outgoing {
        /// Recipient's name, shown only when several sessions are up.
        to: Option<String>,
        /// Delivery state.
        delivery: Delivery,
    },
}

/// One entry of the chat pane. `text` is already sanitised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEntry {
    /// Increasing id, to find our own lines again when receipts arrive.
    pub seq: u64,
    /// Time of day it was added (local clock).
    pub time: String,
    /// What it is.
    pub kind: EntryKind,
    /// The text, sanitised.
    pub text: String,
}

/// One row of the peer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    /// Full peer id (raw: used for commands, never printed unsanitised).
    pub id: String,
    /// Username, sanitised.
    pub name: String,
    /// Whether the server lists it as online.
    pub online: bool,
    /// Registered over REST (a seed-style peer).
    pub seed: bool,
}

/// How a peer stands, as the peer list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// A session is up.
    Connected,
    /// A session is probing.
    Connecting,
    /// Online, no session.
    Online,
    /// Not listed by the server (kept while a session exists).
    Offline,
}

impl PeerState {
    /// The word shown in the peer list.
    pub fn label(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::Connecting => "connecting",
            PeerState::Online => "online",
            PeerState::Offline => "offline",
        }
    }
}

/// A session as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    /// Peer's display name, sanitised.
    pub name: String,
    /// `None` while probing, else the path the engine reports (`lan`,
    /// `direct`, `relayed`, ...), sanitised.
    pub path: Option<String>,
    /// Connect attempt while probing.
    pub attempt: u32,
    /// Smoothed RTT in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
    /// Whether delivery receipts come.
    pub reliable: bool,
}

impl SessionView {
    /// Whether the session is up (not probing).
    pub fn connected(&self) -> bool {
        self.path.is_some()
    }
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    clock: Clock,
    /// Our peer id (raw).
    pub(super) me_id: String,
    /// Our username, sanitised.
    pub(super) me_name: String,
    pub(super) server_connected: bool,
    /// Peer list, sorted by name then id.
    pub(super) peers: Vec<PeerRow>,
    /// The selected peer (by id, so the selection survives list changes).
    pub(super) selected: Option<String>,
    pub(super) sessions: BTreeMap<String, SessionView>,
    /// The peer typed lines go to, as far as the engine told us.
    pub(super) active: Option<String>,
    /// The peer last asked to connect to, shown while no session is active.
    pub(super) connecting: Option<String>,
    pub(super) entries: VecDeque<ChatEntry>,
    next_seq: u64,
    /// Our lines waiting for their `sent` (or send error), oldest first:
    /// the engine answers each send with exactly one of them, in order.
    awaiting: VecDeque<u64>,
    /// Our lines waiting for a receipt, by (peer, line id).
    in_flight: HashMap<(String, u64), u64>,
    pub(super) input: String,
    /// Cursor position in `input`, in characters.
    pub(super) cursor: usize,
    /// Chat rows scrolled up from the bottom (0: following new lines).
    pub(super) scroll: usize,
    /// Chat rows per page, as last drawn.
    page: usize,
    pub(super) quitting: bool,
    /// `/peers` answers still to come (those get a summary line).
    peers_requested: usize,
    /// Whether the how-to line was shown (with the first peer list).
    greeted: bool,
}

impl App {
    /// A fresh state for us (`me_id`, `me_name`); `clock` stamps chat lines.
    pub fn new(me_id: &str, me_name: &str, clock: Clock) -> App {
        App {
            clock,
            me_id: me_id.to_owned(),
            me_name: sanitize_display(me_name),
            server_connected: true,
            peers: Vec::new(),
            selected: None,
            sessions: BTreeMap::new(),
            active: None,
            connecting: None,
            entries: VecDeque::new(),
            next_seq: 0,
            awaiting: VecDeque::new(),
            in_flight: HashMap::new(),
            input: String::new(),
            cursor: 0,
            scroll: 0,
            // A guess until the first draw reports the real height.
            page: 10,
            quitting: false,
            peers_requested: 0,
            greeted: false,
        }
    }

    /// Whether `/quit` or Ctrl+C was given.
    pub fn quitting(&self) -> bool {
        self.quitting
    }

    /// The chat pane's entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &ChatEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// The peer list rows, in display order.
    pub fn peers(&self) -> &[PeerRow] {
        &self.peers
    }

    /// How the peer in `row` stands (a session outranks the listing).
    pub fn peer_state(&self, row: &PeerRow) -> PeerState {
        match self.sessions.get(&row.id) {
            Some(s) if s.connected() => PeerState::Connected,
            Some(_) => PeerState::Connecting,
            None if row.online => PeerState::Online,
            None => PeerState::Offline,
        }
    }

    /// Index of the selected row in [`App::peers`].
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_ref()?;
        self.peers.iter().position(|p| &p.id == id)
    }

    /// The active session, if any.
    pub fn active_session(&self) -> Option<&SessionView> {
        self.sessions.get(self.active.as_ref()?)
    }

    /// Tells the state what the view made of the chat pane: its height and
    /// the scroll offset after clamping to the history.
    pub fn set_viewport(&mut self, rows: usize, scroll: usize) {
        self.page = rows.max(1);
        self.scroll = scroll;
    }

    /// Applies one engine event.
    pub fn on_event(&mut self, event: &Event) {
        let s = sanitize_display;
        match event {
            Event::Registered {
                peer_id,
                username,
                public_addr,
                server,
                ..
            } => {
                self.me_id = peer_id.clone();
                self.me_name = s(username);
                self.system(&format!(
                    "registered with {} as {} ({}), public address {}",
                    s(server),
                    self.me_name,
                    short_id(peer_id),
                    s(public_addr)
                ));
            }
            Event::Peers { peers } => self.replace_peers(peers),
            Event::PeerJoined { peer_id, username } => {
                self.upsert_peer(peer_id, username, true, None);
            }
            Event::PeerLeft { peer_id, .. } => {
                if let Some(row) = self.peers.iter_mut().find(|p| &p.id == peer_id) {
                    row.online = false;
                }
                self.prune_peer(peer_id);
            }
            Event::Connecting {
                peer_id,
                username,
                attempt,
                ..
            } => {
                self.upsert_peer(peer_id, username, false, None);
                let name = self.name_of(peer_id, username);
                let session = self
                    .sessions
                    .entry(peer_id.clone())
                    .or_insert_with(|| SessionView {
                        name: name.clone(),
                        path: None,
                        attempt: 0,
                        rtt_ms: None,
                        reliable: true,
                    });
                session.attempt = *attempt;
                self.connecting = Some(peer_id.clone());
                self.system(&format!("connecting to {name} (attempt {attempt})..."));
            }
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
                self.upsert_peer(peer_id, username, false, None);
                let name = self.name_of(peer_id, username);
                self.sessions.insert(
                    peer_id.clone(),
                    SessionView {
                        name: name.clone(),
                        path: Some(s(path)),
                        attempt: 0,
                        rtt_ms: *rtt_ms,
                        reliable: *reliable,
                    },
                );
                if self.connecting.as_ref() == Some(peer_id) {
                    self.connecting = None;
                }
                let rtt = rtt_ms
                    .map(|r| format!(", rtt {r:.1} ms"))
                    .unwrap_or_default();
                let seed = if *reliable {
                    ""
                } else {
                    "; seed protocol, no delivery receipts"
                };
                let how = if *incoming {
                    format!("{name} connected to you from")
                } else {
                    format!("connected to {name} at")
                };
                self.system(&format!("{how} {} ({}{rtt}){seed}", s(addr), s(path)));
            }
            Event::Message {
                from,
                username,
                text,
                ..
            } => {
                let from = self.name_of(from, username);
                self.push(EntryKind::Incoming { from }, s(text));
            }
            Event::Sent { to, line, reliable } => {
                let Some(seq) = self.awaiting.pop_front() else {
                    return;
                };
                let several = self.sessions.values().filter(|v| v.connected()).count() > 1;
                let to_name = several.then(|| self.name_of(to, ""));
                if let Some(entry) = self.entry_mut(seq)
                    && let EntryKind::Outgoing {
                        to: recipient,
                        delivery,
                    } = &mut entry.kind
                {
                    *delivery = Delivery::Sent;
                    *recipient = to_name;
                    if *reliable {
                        self.in_flight.insert((to.clone(), *line), seq);
                    }
                }
            }
            Event::Delivered { to, line } => self.settle(to, *line, Delivery::Delivered),
            Event::Undeliverable { to, line } => self.settle(to, *line, Delivery::Failed),
            Event::Rtt { peer_id, rtt_ms } => {
                if let Some(session) = self.sessions.get_mut(peer_id) {
                    session.rtt_ms = Some(*rtt_ms);
                }
            }
            Event::Disconnected {
                peer_id,
                username,
                reason,
            } => {
                let name = self.name_of(peer_id, username);
                self.sessions.remove(peer_id);
                if self.connecting.as_ref() == Some(peer_id) {
                    self.connecting = None;
                }
                self.prune_peer(peer_id);
                let text = match *reason {
                    "reset" => format!("{name} started a new session"),
                    "local" => format!("disconnected from {name}"),
                    "remote_disconnect" => format!("{name} disconnected"),
                    "timeout" => format!("{name} is offline (no answer to keep-alive)"),
                    "left" => format!("{name} left (the signaling server reports it offline)"),
                    "unreachable" => format!("{name} could not be reached"),
                    other => format!("session with {name} ended ({})", s(other)),
                };
                self.system(&text);
            }
            Event::ServerLost { error } => {
                self.server_connected = false;
                self.error(&format!(
                    "lost the signaling server ({}); chat continues, reconnecting in the background",
                    s(error)
                ));
            }
            Event::ServerRestored {} => {
                self.server_connected = true;
                self.system("reconnected to the signaling server");
            }
            Event::Status {
                server_connected,
                sessions,
            } => self.apply_status(*server_connected, sessions),
            Event::Focus { peer_id } => self.focus(peer_id.clone()),
            Event::Info { message } => self.system(&s(message)),
            Event::Error { code, message } => {
                // Only a send fails with these, and each send gets exactly
                // one answer: this one belongs to the oldest waiting line.
                if matches!(*code, "not_connected" | "send_failed")
                    && let Some(seq) = self.awaiting.pop_front()
                    && let Some(entry) = self.entry_mut(seq)
                    && let EntryKind::Outgoing { delivery, .. } = &mut entry.kind
                {
                    *delivery = Delivery::Failed;
                }
                self.error(&s(message));
            }
            Event::PathChanged {
                peer_id,
                addr,
                path,
            } => {
                if let Some(session) = self.sessions.get_mut(peer_id)
                    && session.connected()
                {
                    session.path = Some(s(path));
                }
                let name = self.name_of(peer_id, "");
                self.system(&format!(
                    "chat with {name} now uses the {} path ({})",
                    s(path),
                    s(addr)
                ));
            }
            // Events added to the engine later are shown generically (and a
            // path change is applied), so a new variant needs no change here.
            #[allow(unreachable_patterns)]
            other => self.on_other_event(other),
        }
    }

    /// Shows an event this UI has no special rendering for as one line of
    /// its fields; a `peer_id` + `path` pair updates that session's path.
    fn on_other_event(&mut self, event: &Event) {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) else {
            return;
        };
        let text_of = |key: &str| fields.get(key).and_then(|v| v.as_str());
        if let (Some(peer), Some(path)) = (text_of("peer_id"), text_of("path"))
            && let Some(session) = self.sessions.get_mut(peer)
            && session.connected()
        {
            session.path = Some(sanitize_display(path));
        }
        let name = text_of("event").unwrap_or("event").replace('_', " ");
        let details: Vec<String> = fields
            .iter()
            .filter(|(key, _)| key.as_str() != "event")
            .map(|(key, value)| match value {
                serde_json::Value::String(id) if key == "peer_id" => {
                    format!("peer {}", self.name_of(id, ""))
                }
                serde_json::Value::String(text) => format!("{key} {text}"),
                other => format!("{key} {other}"),
            })
            .collect();
        self.system(&sanitize_display(&format!(
            "{name}: {}",
            details.join(", ")
        )));
    }

    /// The engine moved the conversation: show it as active, and move the
    /// highlighted row to it so the highlight and the ▶ mark agree.
    fn focus(&mut self, peer: Option<String>) {
        if let Some(id) = &peer
            && self.peers.iter().any(|p| &p.id == id)
        {
            self.selected = Some(id.clone());
        }
        self.active = peer;
    }

    /// Applies one key press; returns the command it asks for, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return self.quit(),
            KeyCode::Char('u') if ctrl => self.clear_input(),
            KeyCode::Char(ch)
                if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) && !ch.is_control() =>
            {
                self.insert(ch)
            }
            KeyCode::Enter => return self.submit(),
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.remove_at_cursor();
            }
            KeyCode::Delete => self.remove_at_cursor(),
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.chars().count()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.chars().count(),
            KeyCode::Esc => self.clear_input(),
            KeyCode::Up => self.move_selection(-1),
            KeyCode::Down => self.move_selection(1),
            KeyCode::PageUp => self.scroll += self.step(),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(self.step()),
            _ => {}
        }
        None
    }

    /// Rows one PageUp/PageDown moves: a page, keeping one row of context.
    fn step(&self) -> usize {
        self.page.saturating_sub(1).max(1)
    }

    fn quit(&mut self) -> Option<Command> {
        if self.quitting {
            return None;
        }
        self.quitting = true;
        Some(Command::Quit)
    }

    /// Enter: runs the input line, or connects to the selected peer when
    /// the line is empty.
    fn submit(&mut self) -> Option<Command> {
        let line = std::mem::take(&mut self.input);
        self.cursor = 0;
        match parse_line(&line) {
            Input::Empty => {
                let id = self.selected.clone()?;
                let up = self.sessions.get(&id).is_some_and(SessionView::connected);
                if up && self.active.as_ref() == Some(&id) {
                    return None;
                }
                Some(Command::Connect(id))
            }
            Input::Help => {
                self.system(HELP);
                self.system(KEYS_HELP);
                None
            }
            Input::Invalid(message) => {
                self.error(&message);
                None
            }
            Input::Command(Command::Quit) => self.quit(),
            Input::Command(command) => {
                if command == Command::Peers {
                    self.peers_requested += 1;
                }
                Some(command)
            }
            Input::Text(text) => {
                let seq = self.push(
                    EntryKind::Outgoing {
                        to: None,
                        delivery: Delivery::Queued,
                    },
                    sanitize_display(&text),
                );
                self.awaiting.push_back(seq);
                self.scroll = 0;
                Some(Command::Send(text))
            }
        }
    }

    fn insert(&mut self, ch: char) {
        if self.input.len() + ch.len_utf8() > MAX_INPUT_BYTES {
            return;
        }
        let at = self.byte_at(self.cursor);
        self.input.insert(at, ch);
        self.cursor += 1;
    }

    fn remove_at_cursor(&mut self) {
        if self.cursor < self.input.chars().count() {
            let at = self.byte_at(self.cursor);
            self.input.remove(at);
        }
    }

    fn clear_input(&mut self) {
        self.input.clear();
        self.cursor = 0;
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.input
            .char_indices()
            .nth(chars)
            .map_or(self.input.len(), |(i, _)| i)
    }

    fn move_selection(&mut self, by: isize) {
        if self.peers.is_empty() {
            return;
        }
        let last = self.peers.len() - 1;
        let next = match self.selected_index() {
            None => 0,
            Some(i) if by < 0 => i.saturating_sub(1),
            Some(i) => (i + 1).min(last),
        };
        self.selected = Some(self.peers[next].id.clone());
    }

    fn replace_peers(&mut self, list: &[PeerSummary]) {
        let index = self.selected_index();
        // Built in one go and sorted once: the list can hold thousands.
        let mut rows: HashMap<&str, PeerRow> = HashMap::with_capacity(list.len());
        for p in list {
            if p.peer_id != self.me_id {
                let row = PeerRow {
                    id: p.peer_id.clone(),
                    name: if p.username.is_empty() {
                        format!("{}...", short_id(&p.peer_id))
                    } else {
                        sanitize_display(&p.username)
                    },
                    online: true,
                    seed: p.via == "rest",
                };
                rows.insert(&p.peer_id, row);
            }
        }
        // Peers with a session stay listed (as offline) until it ends.
        for p in &self.peers {
            if self.sessions.contains_key(&p.id) && !rows.contains_key(p.id.as_str()) {
                let row = PeerRow {
                    online: false,
                    ..p.clone()
                };
                rows.insert(&p.id, row);
            }
        }
        let mut peers: Vec<PeerRow> = rows.into_values().collect();
        peers.sort_by_cached_key(row_key);
        self.peers = peers;
        self.fix_selection(index);
        if !self.greeted {
            self.greeted = true;
            self.system(
                "select a peer with Up/Down and press Enter to chat, or type /connect <name>; /help lists commands and keys",
            );
        }
        if self.peers_requested > 0 {
            self.peers_requested -= 1;
            let names: Vec<&str> = list
                .iter()
                .take(MAX_NAMES_LISTED)
                .map(|p| p.username.as_str())
                .collect();
            let mut text = match list.len() {
                0 => "nobody else is online".to_owned(),
                n => format!("{n} online: {}", sanitize_display(&names.join(", "))),
            };
            if list.len() > MAX_NAMES_LISTED {
                text.push_str(&format!(" and {} more", list.len() - MAX_NAMES_LISTED));
            }
            self.system(&text);
        }
    }

    /// Adds or updates a row. `online`: true marks it online; false leaves
    /// an existing row's state alone (a new row starts offline). `seed`:
    /// `None` keeps what is known.
    fn upsert_peer(&mut self, id: &str, username: &str, online: bool, seed: Option<bool>) {
        if id == self.me_id {
            return;
        }
        let index = self.selected_index();
        let mut row = match self.peers.iter().position(|p| p.id == id) {
            Some(i) => self.peers.remove(i),
            None => PeerRow {
                id: id.to_owned(),
                name: String::new(),
                online: false,
                seed: false,
            },
        };
        if !username.is_empty() {
            row.name = sanitize_display(username);
        } else if row.name.is_empty() {
            row.name = format!("{}...", short_id(id));
        }
        row.online |= online;
        if let Some(seed) = seed {
            row.seed = seed;
        }
        self.insert_row(row);
        self.fix_selection(index);
    }

    fn insert_row(&mut self, row: PeerRow) {
        let at = self
            .peers
            .binary_search_by_key(&row_key(&row), row_key)
            .unwrap_or_else(|i| i);
        self.peers.insert(at, row);
    }

    /// Drops the row of a peer that is neither online nor in a session.
    fn prune_peer(&mut self, id: &str) {
        if self.sessions.contains_key(id) {
            return;
        }
        let index = self.selected_index();
        self.peers.retain(|p| p.id != id || p.online);
        self.fix_selection(index);
    }

    /// Keeps a selection after the list changed: the same peer if it is
    /// still listed, else the row now at the old position.
    fn fix_selection(&mut self, old_index: Option<usize>) {
        if self.selected_index().is_some() || self.peers.is_empty() {
            if self.peers.is_empty() {
                self.selected = None;
            }
            return;
        }
        let i = old_index.unwrap_or(0).min(self.peers.len() - 1);
        self.selected = Some(self.peers[i].id.clone());
    }

    fn apply_status(&mut self, server_connected: bool, sessions: &[SessionStatus]) {
        self.server_connected = server_connected;
        let old = std::mem::take(&mut self.sessions);
        self.active = None;
        let mut text = format!(
            "signaling server: {}",
            if server_connected {
                "connected"
            } else {
                "reconnecting..."
            }
        );
        if sessions.is_empty() {
            text.push_str("; no sessions");
        }
        for st in sessions {
            let name = self.name_of(&st.peer_id, &st.username);
            let connected = st.state == "connected";
            let view = SessionView {
                name: name.clone(),
                path: if connected {
                    Some(sanitize_display(st.path.unwrap_or("?")))
                } else {
                    None
                },
                attempt: old.get(&st.peer_id).map_or(0, |v| v.attempt),
                rtt_ms: st.rtt_ms,
                reliable: st.reliable,
            };
            if st.active {
                self.active = Some(st.peer_id.clone());
            }
            self.sessions.insert(st.peer_id.clone(), view);
            self.upsert_peer(&st.peer_id, &st.username, false, None);
            let mut details = vec![st.state.to_owned()];
            if let (Some(path), Some(addr)) = (st.path, &st.addr) {
                details.push(format!("{path} {addr}"));
            }
            if let Some(rtt) = st.rtt_ms {
                details.push(format!("rtt {rtt:.1} ms"));
            }
            if !st.reliable && connected {
                details.push("seed protocol".to_owned());
            }
            if st.pending > 0 {
                details.push(format!("{} unacknowledged", st.pending));
            }
            text.push_str(&format!(
                "; {}{} ({})",
                if st.active { "active: " } else { "" },
                name,
                sanitize_display(&details.join(", "))
            ));
        }
        for id in old.keys() {
            self.prune_peer(id);
        }
        self.system(&text);
    }

    /// The best name we have for `id`: the `username` given, else the
    /// list's or a session's, else its short id. Sanitised.
    fn name_of(&self, id: &str, username: &str) -> String {
        if !username.is_empty() {
            return sanitize_display(username);
        }
        if let Some(row) = self.peers.iter().find(|p| p.id == id) {
            return row.name.clone();
        }
        if let Some(session) = self.sessions.get(id) {
            return session.name.clone();
        }
        format!("{}...", short_id(id))
    }

    fn settle(&mut self, to: &str, line: u64, outcome: Delivery) {
        let Some(seq) = self.in_flight.remove(&(to.to_owned(), line)) else {
            return;
        };
        if let Some(entry) = self.entry_mut(seq)
            && let EntryKind::Outgoing { delivery, .. } = &mut entry.kind
        {
            *delivery = outcome;
        }
    }

    fn entry_mut(&mut self, seq: u64) -> Option<&mut ChatEntry> {
        // Entries are in seq order, so a binary search finds one.
        let i = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        self.entries.get_mut(i)
    }

    fn system(&mut self, text: &str) {
        self.push(EntryKind::System, text.to_owned());
    }

    fn error(&mut self, text: &str) {
        self.push(EntryKind::Error, text.to_owned());
    }

    /// Appends an entry (text already sanitised); returns its seq.
    fn push(&mut self, kind: EntryKind, text: String) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() >= MAX_CHAT_ENTRIES
            && let Some(old) = self.entries.pop_front()
        {
            self.in_flight.retain(|_, s| *s != old.seq);
        }
        self.entries.push_back(ChatEntry {
            seq,
            time: (self.clock)(),
            kind,
            text,
        });
        seq
    }
}

/// Display order of the peer list: by name (case-insensitive), then id.
fn row_key(row: &PeerRow) -> (String, String) {
    (row.name.to_lowercase(), row.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::new("me-0000", "me", || "12:00".to_owned())
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) -> Option<Command> {
        for ch in text.chars() {
            assert_eq!(app.on_key(key(KeyCode::Char(ch))), None);
        }
        app.on_key(key(KeyCode::Enter))
    }

    fn joined(id: &str, name: &str) -> Event {
        Event::PeerJoined {
            peer_id: id.into(),
            username: name.into(),
        }
    }

    fn connected(id: &str, name: &str, incoming: bool) -> Event {
        Event::Connected {
            peer_id: id.into(),
            username: name.into(),
            addr: "127.0.0.1:9".into(),
            path: "lan",
            rtt_ms: None,
            reliable: true,
            incoming,
            probe_rounds: 1,
        }
    }

    fn delivery_of(app: &App, text: &str) -> Delivery {
        app.entries()
            .find_map(|e| match &e.kind {
                EntryKind::Outgoing { delivery, .. } if e.text == text => Some(*delivery),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no line {text:?}"))
    }

    #[test]
    fn arrows_select_and_enter_connects_the_selection() {
        let mut app = app();
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            None,
            "nobody to connect to"
        );
        app.on_event(&joined("bbbb", "bob"));
        app.on_event(&joined("aaaa", "alice"));
        app.on_event(&joined("me-0000", "me"));
        let names: Vec<&str> = app.peers().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"], "sorted by name, never us");
        assert_eq!(app.selected.as_deref(), Some("bbbb"), "first peer selected");
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected.as_deref(), Some("aaaa"));
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected.as_deref(), Some("aaaa"), "stops at the top");
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected.as_deref(), Some("bbbb"), "stops at the bottom");
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Some(Command::Connect("bbbb".into()))
        );
        app.on_event(&connected("bbbb", "bob", false));
        app.on_event(&focus(Some("bbbb")));
        assert_eq!(app.on_key(key(KeyCode::Enter)), None, "already chatting");
        // The selected peer leaves: the selection moves to a neighbour.
        app.on_event(&Event::Disconnected {
            peer_id: "bbbb".into(),
            username: "bob".into(),
            reason: "left",
        });
        app.on_event(&Event::PeerLeft {
            peer_id: "bbbb".into(),
            username: "bob".into(),
        });
        assert_eq!(app.selected.as_deref(), Some("aaaa"));
        assert_eq!(app.peers().len(), 1);
    }

    #[test]
    fn typed_lines_become_commands_and_marks_follow_receipts() {
        let mut app = app();
        assert_eq!(typed(&mut app, "/peers"), Some(Command::Peers));
        assert_eq!(
            typed(&mut app, "/c bob"),
            Some(Command::Connect("bob".into()))
        );
        assert_eq!(typed(&mut app, "/nope"), None);
        assert_eq!(typed(&mut app, "/help"), None);
        assert!(app.entries().any(|e| e.text == KEYS_HELP));
        assert!(
            app.entries()
                .any(|e| e.kind == EntryKind::Error && e.text.contains("/nope"))
        );
        app.on_event(&connected("bbbb", "bob", false));
        assert_eq!(typed(&mut app, "one"), Some(Command::Send("one".into())));
        assert_eq!(typed(&mut app, "two"), Some(Command::Send("two".into())));
        assert_eq!(
            typed(&mut app, "three"),
            Some(Command::Send("three".into()))
        );
        assert_eq!(delivery_of(&app, "one"), Delivery::Queued);
        let sent = |line| Event::Sent {
            to: "bbbb".into(),
            line,
            reliable: true,
        };
        app.on_event(&sent(1));
        app.on_event(&sent(2));
        app.on_event(&Event::Error {
            code: "send_failed",
            message: "too many lines in flight".into(),
        });
        app.on_event(&Event::Delivered {
            to: "bbbb".into(),
            line: 1,
        });
        app.on_event(&Event::Undeliverable {
            to: "bbbb".into(),
            line: 2,
        });
        assert_eq!(delivery_of(&app, "one"), Delivery::Delivered);
        assert_eq!(delivery_of(&app, "two"), Delivery::Failed);
        assert_eq!(delivery_of(&app, "three"), Delivery::Failed);
        assert_eq!(typed(&mut app, "/quit"), Some(Command::Quit));
        assert!(app.quitting());
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c), None, "one quit is enough");
    }

    #[test]
    fn ctrl_c_quits_and_editing_keys_edit() {
        let mut app = app();
        for ch in "hllo".chars() {
            app.on_key(key(KeyCode::Char(ch)));
        }
        app.on_key(key(KeyCode::Home));
        app.on_key(key(KeyCode::Right));
        app.on_key(key(KeyCode::Char('e')));
        app.on_key(key(KeyCode::End));
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Home));
        app.on_key(key(KeyCode::Delete));
        assert_eq!(app.input, "ell");
        app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(app.input, "");
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c), Some(Command::Quit));
    }

    #[test]
    fn input_stops_at_its_byte_limit() {
        let mut app = app();
        app.input = "x".repeat(MAX_INPUT_BYTES - 1);
        app.cursor = MAX_INPUT_BYTES - 1;
        app.on_key(key(KeyCode::Char('é')));
        assert_eq!(
            app.input.len(),
            MAX_INPUT_BYTES - 1,
            "a 2-byte char does not fit"
        );
        app.on_key(key(KeyCode::Char('y')));
        assert_eq!(app.input.len(), MAX_INPUT_BYTES);
        app.on_key(key(KeyCode::Char('z')));
        assert_eq!(app.input.len(), MAX_INPUT_BYTES);
    }

    #[test]
    fn history_keeps_the_newest_entries() {
        let mut app = app();
        for i in 0..MAX_CHAT_ENTRIES + 5 {
            app.on_event(&Event::Info {
                message: format!("n{i}"),
            });
        }
        assert_eq!(app.entries().len(), MAX_CHAT_ENTRIES);
        assert_eq!(
            app.entries().last().map(|e| e.text.clone()),
            Some(format!("n{}", MAX_CHAT_ENTRIES + 4))
        );
    }

    #[test]
    fn peer_list_follows_snapshots_and_keeps_session_peers() {
        let mut app = app();
        let summary = |id: &str, name: &str| PeerSummary {
            peer_id: id.into(),
            username: name.into(),
            via: "grpc",
        };
        app.on_event(&Event::Peers {
            peers: vec![summary("aaaa", "alice"), summary("bbbb", "bob")],
        });
        app.on_event(&connected("bbbb", "bob", true));
        app.on_event(&focus(Some("bbbb")));
        assert_eq!(
            app.active.as_deref(),
            Some("bbbb"),
            "incoming, nothing else active"
        );
        // A resync after a server restart: bob has not re-registered yet.
        app.on_event(&Event::Peers {
            peers: vec![summary("cccc", "carol")],
        });
        let rows: Vec<(&str, PeerState)> = app
            .peers()
            .iter()
            .map(|p| (p.name.as_str(), app.peer_state(p)))
            .collect();
        assert_eq!(
            rows,
            [("bob", PeerState::Connected), ("carol", PeerState::Online)]
        );
        app.on_event(&Event::Disconnected {
            peer_id: "bbbb".into(),
            username: "bob".into(),
            reason: "timeout",
        });
        app.on_event(&focus(None));
        assert_eq!(app.peers().len(), 1, "bob is gone with its session");
        assert!(app.active.is_none());
    }

    fn focus(id: Option<&str>) -> Event {
        Event::Focus {
            peer_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn the_active_peer_is_the_one_the_engine_reports() {
        // With C active, the user asks for A, then B; A comes up first. The
        // engine keeps typed lines going to C (B is the one wanted), so the
        // UI must show C, not guess from `connected`.
        let mut app = app();
        app.on_event(&connected("cccc", "carol", false));
        app.on_event(&focus(Some("cccc")));
        assert_eq!(
            typed(&mut app, "/c alice"),
            Some(Command::Connect("alice".into()))
        );
        assert_eq!(
            typed(&mut app, "/c bob"),
            Some(Command::Connect("bob".into()))
        );
        app.on_event(&connected("aaaa", "alice", false));
        assert_eq!(app.active.as_deref(), Some("cccc"));
        assert_eq!(app.active_session().map(|s| s.name.as_str()), Some("carol"));
        app.on_event(&connected("bbbb", "bob", false));
        app.on_event(&focus(Some("bbbb")));
        assert_eq!(app.active.as_deref(), Some("bbbb"));
        app.on_event(&Event::Disconnected {
            peer_id: "bbbb".into(),
            username: "bob".into(),
            reason: "remote_disconnect",
        });
        app.on_event(&focus(None));
        assert!(app.active.is_none());
    }

    #[test]
    fn the_highlighted_row_follows_the_active_peer() {
        let mut app = app();
        app.on_event(&joined("aaaa", "alice"));
        app.on_event(&joined("bbbb", "bob"));
        app.on_event(&joined("cccc", "carol"));
        assert_eq!(app.selected.as_deref(), Some("aaaa"));
        // An incoming session becomes active: highlight and ▶ agree.
        app.on_event(&connected("cccc", "carol", true));
        app.on_event(&focus(Some("cccc")));
        assert_eq!(app.selected.as_deref(), app.active.as_deref());
        let marked = app
            .peers()
            .iter()
            .position(|p| Some(&p.id) == app.active.as_ref());
        assert_eq!(app.selected_index(), marked);
        // Arrows still move the highlight to pick another peer.
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected.as_deref(), Some("bbbb"));
    }

    #[test]
    fn unknown_events_are_shown_generically() {
        let mut app = app();
        app.on_event(&connected("bbbb", "bob", false));
        app.on_event(&focus(Some("bbbb")));
        app.on_other_event(&Event::Rtt {
            peer_id: "bbbb".into(),
            rtt_ms: 2.5,
        });
        let last = app.entries().last().map(|e| e.text.clone());
        assert_eq!(last.as_deref(), Some("rtt: peer bob, rtt_ms 2.5"));
        // Any event naming a peer and a path moves that session's path.
        let mut moved = connected("bbbb", "bob", false);
        if let Event::Connected { path, .. } = &mut moved {
            *path = "relayed";
        }
        app.on_other_event(&moved);
        let path = app.active_session().and_then(|s| s.path.clone());
        assert_eq!(path.as_deref(), Some("relayed"));
    }
}
