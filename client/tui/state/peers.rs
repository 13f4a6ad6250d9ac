//! The peer list of the UI state: rows from the engine's list and
//! changes, kept while a session lasts, sorted, with a selection that
//! survives changes.

use std::collections::HashMap;

use p2pchat::PeerId;

use super::{App, MAX_NAMES_LISTED, short_id};
use crate::engine::{PeerSummary, RequestId, Via};
use crate::text::sanitize_display;

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

impl App {
    pub(super) fn move_selection(&mut self, by: isize) {
        if self.peers.is_empty() {
            return;
        }
        let last = self.peers.len() - 1;
        let next = match self.selected_index() {
            None => 0,
            Some(i) if by < 0 => i.saturating_sub(1),
            Some(i) => (i + 1).min(last),
        };
        self.selected = Some(self.peers[next].id);
    }

    /// A peer went offline: its row stays only while a session lasts.
    pub(super) fn on_peer_left(&mut self, id: PeerId) {
        if let Some(row) = self.peers.iter_mut().find(|p| p.id == id) {
            row.online = false;
        }
        self.prune_peer(id);
    }

    pub(super) fn replace_peers(&mut self, request: Option<RequestId>, list: &[PeerSummary]) {
        let index = self.selected_index();
        // Built in one go and sorted once: the list can hold thousands.
        let mut rows: HashMap<PeerId, PeerRow> = HashMap::with_capacity(list.len());
        for p in list {
            if p.peer_id != self.me_id {
                let row = PeerRow {
                    id: p.peer_id,
                    name: if p.username.is_empty() {
                        format!("{}...", short_id(&p.peer_id))
                    } else {
                        sanitize_display(&p.username)
                    },
                    online: true,
                    seed: p.via == Via::Rest,
                };
                rows.insert(p.peer_id, row);
            }
        }
        // Peers with a session stay listed (as offline) until it ends.
        for p in &self.peers {
            if self.sessions.contains_key(&p.id) && !rows.contains_key(&p.id) {
                let row = PeerRow {
                    online: false,
                    ..p.clone()
                };
                rows.insert(p.id, row);
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
        if request.is_some_and(|id| self.peers_requested.remove(&id)) {
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
    pub(super) fn upsert_peer(
        &mut self,
        id: PeerId,
        username: &str,
        online: bool,
        seed: Option<bool>,
    ) {
        if id == self.me_id {
            return;
        }
        let index = self.selected_index();
        let mut row = match self.peers.iter().position(|p| p.id == id) {
            Some(i) => self.peers.remove(i),
            None => PeerRow {
                id,
                name: String::new(),
                online: false,
                seed: false,
            },
        };
        if !username.is_empty() {
            row.name = sanitize_display(username);
        } else if row.name.is_empty() {
            row.name = format!("{}...", short_id(&id));
        }
        row.online |= online;
        if let Some(seed) = seed {
            row.seed = seed;
        }
        self.insert_row(row);
        self.fix_selection(index);
    }

    pub(super) fn insert_row(&mut self, row: PeerRow) {
        let at = self
            .peers
            .binary_search_by_key(&row_key(&row), row_key)
            .unwrap_or_else(|i| i);
        self.peers.insert(at, row);
    }

    /// Drops the row of a peer that is neither online nor in a session.
    pub(super) fn prune_peer(&mut self, id: PeerId) {
        if self.sessions.contains_key(&id) {
            return;
        }
        let index = self.selected_index();
        self.peers.retain(|p| p.id != id || p.online);
        self.fix_selection(index);
    }

    /// Keeps a selection after the list changed: the same peer if it is
    /// still listed, else the row now at the old position.
    pub(super) fn fix_selection(&mut self, old_index: Option<usize>) {
        if self.selected_index().is_some() || self.peers.is_empty() {
            if self.peers.is_empty() {
                self.selected = None;
            }
            return;
        }
        let i = old_index.unwrap_or(0).min(self.peers.len() - 1);
        self.selected = Some(self.peers[i].id);
    }

    /// The best name we have for `id`: the `username` given, else the
    /// list's or a session's, else its short id. Sanitised.
    pub(super) fn name_of(&self, id: PeerId, username: &str) -> String {
        if !username.is_empty() {
            return sanitize_display(username);
        }
        if let Some(row) = self.peers.iter().find(|p| p.id == id) {
            return row.name.clone();
        }
        if let Some(session) = self.sessions.get(&id) {
            return session.name.clone();
        }
        format!("{}...", short_id(&id))
    }
}

/// Display order of the peer list: by name (case-insensitive), then id.
fn row_key(row: &PeerRow) -> (String, PeerId) {
    (row.name.to_lowercase(), row.id)
}
