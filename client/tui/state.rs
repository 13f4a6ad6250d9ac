//! The full-screen UI's state: peer list, sessions, chat history, input line
//! and status, changed only by engine [`Event`](crate::engine::Event)s and
//! key presses. No terminal I/O here, so it is tested directly and rendered
//! by [`super::view`] onto any ratatui backend.
//!
//! This file holds [`App`] itself and what the view reads; each concern
//! that changes it has a file of its own:
//! * `events.rs`: which engine event goes where ([`App::on_event`]);
//! * `chat.rs`: the chat pane's entries and the delivery marks on our lines;
//! * `sessions.rs`: sessions, the active peer and what `/status` reports;
//! * `peers.rs`: the peer list and its selection;
//! * `input.rs`: key presses, the input line and what Enter sends (and
//!   `/verify`, answered here from what the engine reported).
//!
//! Every string from the network (usernames, messages, error details) is
//! passed through [`sanitize_display`] when it enters this state, so the
//! view never sees a control character or a bidi override.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use p2pchat::PeerId;

use crate::engine::RequestId;
use crate::frontend::Verifier;
use crate::text::{sanitize_display, short};

mod chat;
mod events;
mod input;
#[cfg(test)]
mod paste_tests;
mod peers;
mod sessions;
#[cfg(test)]
mod tests;

pub use chat::{ChatEntry, Delivery, EntryKind, MAX_CHAT_ENTRIES};
pub use input::{KEYS_HELP, MAX_INPUT_BYTES};
pub use peers::{PeerRow, PeerState};
pub use sessions::SessionView;

/// Most names listed in the chat pane's answer to `/peers` (the pane on the
/// left shows them all).
pub const MAX_NAMES_LISTED: usize = 20;

/// Characters of a peer id shown as its short id.
pub const SHORT_ID_CHARS: usize = 8;

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
    /// Each session's protection and safety number, for `/verify`.
    verifier: Verifier,
    /// `/verify` targets waiting for the `status` asked for them, by the
    /// id of that request.
    verifying: HashMap<RequestId, Option<String>>,
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
            verifier: Verifier::default(),
            verifying: HashMap::new(),
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

    /// Whether the session with the peer in `row` is end-to-end encrypted:
    /// `None` while there is no session up (nothing to mark yet).
    pub fn encrypted(&self, row: &PeerRow) -> Option<bool> {
        self.sessions.get(&row.id).and_then(SessionView::encrypted)
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
}
