//! Chat lines over the chat stream ([`super::StreamId::CHAT`]): a line is
//! split into fragments, each a numbered message of the stream; a line is
//! delivered when all of its fragments are acknowledged. Towards a seed
//! peer lines go out as plain, unnumbered messages.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::{
    MAX_FRAGMENT_BODY_BYTES, MAX_LINE_BYTES, Phase, SendError, Session, SessionEvent,
    split_for_datagrams,
};
use crate::wire::{Ack, Extension, Header, Message, Part};

impl Session {
    /// Queues a chat line; returns its line id (for `Delivered` /
    /// `Undeliverable`). Towards a seed peer the line is sent at once, split
    /// into several plain messages if it does not fit one datagram.
    pub fn send_line(&mut self, text: &str, now: Instant) -> Result<u64, SendError> {
        self.clock = now;
        if self.phase != Phase::Connected {
            return Err(SendError::NotConnected);
        }
        if text.len() > MAX_LINE_BYTES {
            return Err(SendError::TooLong(text.len()));
        }
        let Some(addr) = self.path.addr() else {
            return Err(SendError::NotConnected);
        };
        let pieces = split_for_datagrams(text, MAX_FRAGMENT_BODY_BYTES);
        let line = self.next_line;
        if !self.reliable() {
            self.next_line += 1;
            for piece in pieces {
                self.send(&Message::plain(self.local_id, piece).into(), addr);
            }
            return Ok(line);
        }
        let fragmented = pieces.len() > 1 && self.negotiated.uses(Extension::Fragments);
        if !self.send.has_room(pieces.len()) {
            return Err(SendError::QueueFull);
        }
        self.next_line += 1;
        let count = pieces.len() as u32;
        self.lines.start(line, count);
        for (index, piece) in pieces.into_iter().enumerate() {
            let mut message = Message::plain(self.local_id, piece);
            if fragmented {
                message.part = Some(Part {
                    index: index as u32,
                    count,
                });
            }
            self.send.push(line, message);
        }
        self.fill_window(now);
        Ok(line)
    }

    /// Sends whatever the window has room for.
    fn fill_window(&mut self, now: Instant) {
        let Some(addr) = self.path.addr() else { return };
        for (seq, message) in self.send.fill(now, self.liveness.rto()) {
            if self.send(&message.into(), addr) {
                continue;
            }
            // Cannot happen: fragments are sized to fit. Report the line
            // rather than stall the stream.
            if let Some(line) = self.send.abandon(seq)
                && self.lines.abandon(line)
            {
                self.emit(SessionEvent::Undeliverable { line });
            }
        }
    }

    pub(super) fn receive_ack(&mut self, ack: &Ack, now: Instant) {
        let acked = self.send.ack(ack.id, ack.upto, now);
        if let Some(rtt) = acked.rtt {
            self.liveness.sample(rtt);
        }
        for line in acked.tags {
            if self.lines.acked(line) {
                self.emit(SessionEvent::Delivered { line });
            }
        }
        self.fill_window(now);
    }

    pub(super) fn receive_message(&mut self, message: &Message, addr: SocketAddr) {
        let Some(id) = message.id else {
            // Plain (seed) message: no ordering, no ack.
            let text = message.body.clone();
            let sent_at = message.header.timestamp;
            self.emit(SessionEvent::Message { text, sent_at });
            return;
        };
        self.negotiated.implied_by_message_id();
        let Some(received) = self.recv.receive(id, message) else {
            return;
        };
        for next in received.deliver {
            let sent_at = next.header.timestamp;
            if let Some((text, sent_at)) = self.reassembly.push(next.body, next.part, sent_at) {
                self.emit(SessionEvent::Message { text, sent_at });
            }
        }
        let ack = Ack {
            header: Header::now(self.local_id),
            id: Some(received.ack_id),
            upto: Some(received.upto),
        };
        self.send(&ack.into(), addr);
    }
}
