//! The full-screen UI's state: peer list, sessions, chat history, input line
//! and status, changed only by engine [`Event`]s and key presses. No
//! terminal I/O here, so it is tested directly and rendered by
//! [`super::view`] onto any ratatui backend.
//!
//! Every string from the network (usernames, messages, error details) is
//! passed through [`sanitize_display`] when it enters this state, so the
//! view never sees a control character or a bidi override.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use p2pchat::PeerId;

use crate::engine::{Command, DisconnectReason, ErrorCode, Event, Path, Request, RequestId};
use crate::input::{HELP, Input, parse_line};
use crate::session::MAX_LINE_BYTES;
use crate::text::{
    error_message, restarted, rtt_suffix, sanitize_display, server_lost, short, why_ended,
};

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

/// The first [`SHORT_ID_CHARS`] characters of a peer id.
pub fn short_id(id: &PeerId) -> String {
    short(id, SHORT_ID_CHARS)
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
    /// Full peer id.
    pub id: PeerId,
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
    /// Our peer id.
    pub(super) me_id: PeerId,
    /// Our username, sanitised.
    pub(super) me_name: String,
    pub(super) server_connected: bool,
    /// Peer list, sorted by name then id.
    pub(super) peers: Vec<PeerRow>,
    /// The selected peer (by id, so the selection survives list changes).
    pub(super) selected: Option<PeerId>,
    pub(super) sessions: BTreeMap<PeerId, SessionView>,
    /// The peer typed lines go to, as the engine reports it (`focus`).
    pub(super) active: Option<PeerId>,
    /// The peer last asked to connect to, shown while no session is active.
    pub(super) connecting: Option<PeerId>,
    pub(super) entries: VecDeque<ChatEntry>,
    next_seq: u64,
    /// The id of our next request.
    next_request: RequestId,
    /// Our lines waiting for their `sent` (or send error), by the id of
    /// the send request the answer echoes.
    awaiting: HashMap<RequestId, u64>,
    /// Our lines waiting for a receipt, by (peer, line id).
    in_flight: HashMap<(PeerId, u64), u64>,
    pub(super) input: String,
    /// Cursor position in `input`, in characters.
    pub(super) cursor: usize,
    /// Chat rows scrolled up from the bottom (0: following new lines).
    pub(super) scroll: usize,
    /// Chat rows per page, as last drawn.
    page: usize,
    pub(super) quitting: bool,
    /// `/peers` requests still to be answered (those get a summary line).
    peers_requested: HashSet<RequestId>,
    /// Whether the how-to line was shown (with the first peer list).
    greeted: bool,
}

impl App {
    /// A fresh state for us (`me_id`, `me_name`); `clock` stamps chat lines.
    pub fn new(me_id: PeerId, me_name: &str, clock: Clock) -> App {
        App {
            clock,
            me_id,
            me_name: sanitize_display(me_name),
            server_connected: true,
            peers: Vec::new(),
            selected: None,
            sessions: BTreeMap::new(),
            active: None,
            connecting: None,
            entries: VecDeque::new(),
            next_seq: 0,
            next_request: 1,
            awaiting: HashMap::new(),
            in_flight: HashMap::new(),
            input: String::new(),
            cursor: 0,
            scroll: 0,
            // A guess until the first draw reports the real height.
            page: 10,
            quitting: false,
            peers_requested: HashSet::new(),
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
        let id = self.selected?;
        self.peers.iter().position(|p| p.id == id)
    }

    /// The active session, if any.
    pub fn active_session(&self) -> Option<&SessionView> {
        self.sessions.get(&self.active?)
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
                self.me_id = *peer_id;
                self.me_name = s(username);
                self.system(&format!(
                    "registered with {} as {} ({}), public address {}",
                    s(server),
                    self.me_name,
                    short_id(peer_id),
                    s(public_addr)
                ));
            }
            Event::Peers { id, peers } => self.replace_peers(*id, peers),
            Event::PeerJoined { peer_id, username } => {
                self.upsert_peer(*peer_id, username, true, None);
            }
            Event::PeerLeft { peer_id, .. } => {
                if let Some(row) = self.peers.iter_mut().find(|p| p.id == *peer_id) {
                    row.online = false;
                }
                self.prune_peer(*peer_id);
            }
            Event::Connecting {
                peer_id,
                username,
                attempt,
                ..
            } => self.on_connecting(*peer_id, username, *attempt),
            Event::Connected { .. } => self.on_connected(event),
            Event::Message {
                from,
                username,
                text,
                ..
            } => {
                let from = self.name_of(*from, username);
                self.push(EntryKind::Incoming { from }, s(text));
            }
            Event::Sent {
                id,
                to,
                line,
                reliable,
            } => self.on_sent(*id, *to, *line, *reliable),
            Event::Delivered { to, line } => self.settle(*to, *line, Delivery::Delivered),
            Event::Undeliverable { to, line } => self.settle(*to, *line, Delivery::Failed),
            Event::Rtt { peer_id, rtt_ms } => {
                if let Some(session) = self.sessions.get_mut(peer_id) {
                    session.rtt_ms = Some(*rtt_ms);
                }
            }
            Event::Disconnected {
                peer_id,
                username,
                reason,
            } => self.on_disconnected(*peer_id, username, *reason),
            Event::ServerLost { error } => {
                self.server_connected = false;
                self.error(&format!("lost {}", server_lost(error)));
            }
            Event::ServerRestored {} => {
                self.server_connected = true;
                self.system("reconnected to the signaling server");
            }
            Event::Status {
                server_connected,
                sessions,
                ..
            } => self.apply_status(*server_connected, sessions),
            Event::Focus { peer_id } => self.focus(*peer_id),
            Event::Info { message } => self.system(&s(message)),
            Event::Error { id, code, message } => self.on_error(*id, *code, message),
            Event::PathChanged {
                peer_id,
                addr,
                path,
            } => self.on_path_changed(*peer_id, addr, *path),
            // Events added to the engine later are shown generically (and a
            // path change is applied), so a new variant needs no change here.
            #[allow(unreachable_patterns)]
            other => self.on_other_event(other),
        }
    }

    fn on_error(&mut self, id: Option<RequestId>, code: ErrorCode, message: &str) {
        // A failed send names its request: that line failed.
        if let Some(seq) = id.and_then(|id| self.awaiting.remove(&id))
            && let Some(entry) = self.entry_mut(seq)
            && let EntryKind::Outgoing { delivery, .. } = &mut entry.kind
        {
            *delivery = Delivery::Failed;
        }
        if let Some(id) = id {
            self.peers_requested.remove(&id);
        }
        self.error(&sanitize_display(&error_message(code, message)));
    }

    fn on_path_changed(&mut self, peer_id: PeerId, addr: &str, path: Path) {
        if let Some(session) = self.sessions.get_mut(&peer_id)
            && session.connected()
        {
            session.path = Some(path.to_string());
        }
        let name = self.name_of(peer_id, "");
        self.system(&format!(
            "chat with {name} now uses the {path} path ({})",
            sanitize_display(addr)
        ));
    }

    fn on_connecting(&mut self, peer_id: PeerId, username: &str, attempt: u32) {
        self.upsert_peer(peer_id, username, false, None);
        let name = self.name_of(peer_id, username);
        let session = self.sessions.entry(peer_id).or_insert_with(|| SessionView {
            name: name.clone(),
            path: None,
            attempt: 0,
            rtt_ms: None,
            reliable: true,
        });
        session.attempt = attempt;
        self.connecting = Some(peer_id);
        self.system(&format!("connecting to {name} (attempt {attempt})..."));
    }

    fn on_connected(&mut self, event: &Event) {
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
            return;
        };
        self.upsert_peer(*peer_id, username, false, None);
        let name = self.name_of(*peer_id, username);
        self.sessions.insert(
            *peer_id,
            SessionView {
                name: name.clone(),
                path: Some(path.to_string()),
                attempt: 0,
                rtt_ms: *rtt_ms,
                reliable: *reliable,
            },
        );
        if self.connecting == Some(*peer_id) {
            self.connecting = None;
        }
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
        self.system(&format!(
            "{how} {} ({path}{}){seed}",
            sanitize_display(addr),
            rtt_suffix(*rtt_ms)
        ));
    }

    fn on_sent(&mut self, id: Option<RequestId>, to: PeerId, line: u64, reliable: bool) {
        let Some(seq) = id.and_then(|id| self.awaiting.remove(&id)) else {
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
            if reliable {
                self.in_flight.insert((to, line), seq);
            }
        }
    }

    fn on_disconnected(&mut self, peer_id: PeerId, username: &str, reason: DisconnectReason) {
        let name = self.name_of(peer_id, username);
        self.sessions.remove(&peer_id);
        if self.connecting == Some(peer_id) {
            self.connecting = None;
        }
        self.prune_peer(peer_id);
        let text = match (reason, why_ended(reason)) {
            (DisconnectReason::Reset, _) => restarted(&name),
            (_, Some(why)) => format!("{name} {why}"),
            (_, None) => format!("disconnected from {name}"),
        };
        self.system(&text);
    }

    /// The engine moved the conversation: show it as active, and move the
    /// highlighted row to it so the highlight and the ▶ mark agree.
    fn focus(&mut self, peer: Option<PeerId>) {
        if let Some(id) = peer
            && self.peers.iter().any(|p| p.id == id)
        {
            self.selected = Some(id);
        }
        self.active = peer;
    }

    /// Shows an event this UI has no special rendering for as one line of
    /// its fields; a `peer_id` + `path` pair updates that session's path.
    fn on_other_event(&mut self, event: &Event) {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) else {
            return;
        };
        let text_of = |key: &str| fields.get(key).and_then(|v| v.as_str());
        let peer_of = |key: &str| text_of(key).and_then(|t| PeerId::parse(t).ok());
        if let (Some(peer), Some(path)) = (peer_of("peer_id"), text_of("path"))
            && let Some(session) = self.sessions.get_mut(&peer)
            && session.connected()
        {
            session.path = Some(sanitize_display(path));
        }
        let name = text_of("event").unwrap_or("event").replace('_', " ");
        let details: Vec<String> = fields
            .iter()
            .filter(|(key, _)| key.as_str() != "event")
            .map(|(key, value)| match value {
                serde_json::Value::String(id) if key == "peer_id" => match PeerId::parse(id) {
                    Ok(peer) => format!("peer {}", self.name_of(peer, "")),
                    Err(_) => format!("peer {id}"),
                },
                serde_json::Value::String(text) => format!("{key} {text}"),
                other => format!("{key} {other}"),
            })
            .collect();
        self.system(&sanitize_display(&format!(
            "{name}: {}",
            details.join(", ")
        )));
    }

    /// Applies one key press; returns the command it asks for, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Request> {
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

    fn quit(&mut self) -> Option<Request> {
        if self.quitting {
            return None;
        }
        self.quitting = true;
        Some(Command::Quit.into())
    }

    /// `command` with a fresh request id.
    fn request(&mut self, command: Command) -> Request {
        let id = self.next_request;
        self.next_request += 1;
        command.with_id(id)
    }

    /// Enter: runs the input line, or connects to the selected peer when
    /// the line is empty.
    fn submit(&mut self) -> Option<Request> {
        let line = std::mem::take(&mut self.input);
        self.cursor = 0;
        match parse_line(&line) {
            Input::Empty => {
                let id = self.selected?;
                let up = self.sessions.get(&id).is_some_and(SessionView::connected);
                if up && self.active == Some(id) {
                    return None;
                }
                Some(self.request(Command::Connect(id.to_string())))
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
                let request = self.request(command);
                if let (Some(id), Command::Peers) = (request.id, &request.command) {
                    self.peers_requested.insert(id);
                }
                Some(request)
            }
            Input::Text(text) => {
                let seq = self.push(
                    EntryKind::Outgoing {
                        to: None,
                        delivery: Delivery::Queued,
                    },
                    sanitize_display(&text),
                );
                self.scroll = 0;
                let request = self.request(Command::Send(text));
                if let Some(id) = request.id {
                    self.awaiting.insert(id, seq);
                }
                Some(request)
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

    fn settle(&mut self, to: PeerId, line: u64, outcome: Delivery) {
        let Some(seq) = self.in_flight.remove(&(to, line)) else {
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
            self.awaiting.retain(|_, s| *s != old.seq);
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

mod peers;
#[cfg(test)]
mod tests;
