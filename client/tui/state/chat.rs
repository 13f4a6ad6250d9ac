//! The chat pane's log: entries in order, bounded, and the delivery marks
//! on our own lines. A line of ours starts queued, turns sent when the
//! engine's `sent` echoes its send request's id (or failed on an `error`
//! with that id), then delivered or failed when the receipt for its
//! (peer, line id) comes.

use p2pchat::PeerId;

use super::App;
use crate::engine::RequestId;

/// Most chat-pane entries kept; the oldest go first. Bounds memory and the
/// work of drawing however long the program runs.
pub const MAX_CHAT_ENTRIES: usize = 2000;

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
        /// Whether it came end-to-end encrypted (false: a seed peer's
        /// plaintext, shown with the unencrypted mark).
        encrypted: bool,
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

impl App {
    /// Adds one of our lines (text already sanitised), queued until the
    /// answer to send request `request` comes.
    pub(super) fn push_outgoing(&mut self, text: String, request: Option<RequestId>) {
        let kind = EntryKind::Outgoing {
            to: None,
            delivery: Delivery::Queued,
        };
        let seq = self.push(kind, text);
        if let Some(id) = request {
            self.awaiting.insert(id, seq);
        }
    }

    /// The engine put the line of send request `id` on the wire as `line`
    /// to `to`; a reliable one now waits for its receipt.
    pub(super) fn on_sent(&mut self, id: Option<RequestId>, to: PeerId, line: u64, reliable: bool) {
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

    /// An error answered request `id`: if it was a send, that line failed.
    pub(super) fn fail_send(&mut self, id: RequestId) {
        if let Some(seq) = self.awaiting.remove(&id)
            && let Some(entry) = self.entry_mut(seq)
            && let EntryKind::Outgoing { delivery, .. } = &mut entry.kind
        {
            *delivery = Delivery::Failed;
        }
    }

    /// The receipt (or its definite absence) for `line` to `to` came.
    pub(super) fn settle(&mut self, to: PeerId, line: u64, outcome: Delivery) {
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

    /// Adds a notice (text already sanitised).
    pub(super) fn system(&mut self, text: &str) {
        self.push(EntryKind::System, text.to_owned());
    }

    /// Adds an error line (text already sanitised).
    pub(super) fn error(&mut self, text: &str) {
        self.push(EntryKind::Error, text.to_owned());
    }

    /// Appends an entry (text already sanitised); returns its seq.
    pub(super) fn push(&mut self, kind: EntryKind, text: String) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() >= MAX_CHAT_ENTRIES
            && let Some(old) = self.entries.pop_front()
        {
            // A dropped line can no longer change, so stop waiting for it.
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
