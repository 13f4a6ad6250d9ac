//! Reliable delivery as numbered streams: a sliding send window with
//! retransmission (RFC 6298 timeout with exponential backoff, Karn's rule
//! for samples) and a receive side that reorders, drops duplicates and
//! acknowledges cumulatively.
//!
//! A stream carries typed [`Message`]s and numbers them 1, 2, 3...; what a
//! message means (a chat line's fragment, later a file's chunk) is the
//! layer above's business, which tags each message with its own id. Chat is
//! [`StreamId::CHAT`], whose numbering is the wire's `id` field exactly as
//! before streams existed.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::liveness::MAX_RTO;
use crate::wire::Message;

/// Reliable-delivery window: the sender never has a message in flight whose
/// id is this far past the oldest unacknowledged one, and the receiver
/// buffers out-of-order messages only this far ahead of the next expected id.
pub const WINDOW: u64 = 64;

/// Most messages waiting behind the window before the stream refuses more
/// (the user is typing faster than the peer acknowledges).
pub const MAX_QUEUED_FRAGMENTS: usize = 1024;

/// Most doublings of the retransmission timeout for one message (the result
/// is capped at [`MAX_RTO`] anyway).
pub const MAX_BACKOFF_DOUBLINGS: u32 = 6;

/// Which reliable stream of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u16);

impl StreamId {
    /// The chat lines: the only stream today, numbered by the wire's `id`.
    pub const CHAT: StreamId = StreamId(0);
}

/// A message sent but not acknowledged yet.
#[derive(Debug)]
struct InFlight {
    tag: u64,
    message: Message,
    sent_at: Instant,
    retransmits: u32,
    deadline: Instant,
}

/// What an ack did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Acked {
    /// Tags of the newly acknowledged messages, in id order.
    pub tags: Vec<u64>,
    /// A round-trip sample, when the ack named a message sent only once.
    pub rtt: Option<Duration>,
}

/// The sending half of one stream.
#[derive(Debug)]
pub struct SendStream {
    id: StreamId,
    next_seq: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Numbered messages waiting for room in the window: (seq, tag, message).
    queue: VecDeque<(u64, u64, Message)>,
}

impl SendStream {
    /// An empty stream; its first message is number 1.
    pub fn new(id: StreamId) -> SendStream {
        SendStream {
            id,
            next_seq: 1,
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// Whether `n` more messages fit the queue ([`MAX_QUEUED_FRAGMENTS`]).
    pub fn has_room(&self, n: usize) -> bool {
        self.queue.len() + n <= MAX_QUEUED_FRAGMENTS
    }

    /// Numbers `message` (its `id`) and queues it under `tag`.
    pub fn push(&mut self, tag: u64, mut message: Message) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        message.id = Some(seq);
        self.queue.push_back((seq, tag, message));
        seq
    }

    /// Moves queued messages into the window; returns those to transmit
    /// with their numbers.
    pub fn fill(&mut self, now: Instant, rto: Duration) -> Vec<(u64, Message)> {
        let mut out = Vec::new();
        while let Some(&(seq, _, _)) = self.queue.front() {
            let oldest = self.in_flight.keys().next().copied().unwrap_or(seq);
            if seq >= oldest + WINDOW {
                break;
            }
            let Some((_, tag, message)) = self.queue.pop_front() else {
                break;
            };
            out.push((seq, message.clone()));
            self.in_flight.insert(
                seq,
                InFlight {
                    tag,
                    message,
                    sent_at: now,
                    retransmits: 0,
                    deadline: now + rto,
                },
            );
        }
        out
    }

    /// Gives up on in-flight message `seq` (it could not be sent); its tag.
    pub fn abandon(&mut self, seq: u64) -> Option<u64> {
        self.in_flight.remove(&seq).map(|f| f.tag)
    }

    /// Messages whose retransmission timeout expired at `now`; each gets
    /// its backed-off next deadline.
    pub fn due(&mut self, now: Instant, rto: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        for (seq, f) in self.in_flight.iter_mut() {
            if f.deadline <= now {
                f.retransmits += 1;
                let doublings = f.retransmits.min(MAX_BACKOFF_DOUBLINGS);
                f.deadline = now + rto.saturating_mul(1 << doublings).min(MAX_RTO);
                tracing::trace!(stream = self.id.0, seq, "retransmitting");
                out.push(f.message.clone());
            }
        }
        out
    }

    /// An ack: `id` names the message that triggered it, `upto` covers
    /// every id up to it.
    pub fn ack(&mut self, id: Option<u64>, upto: Option<u64>, now: Instant) -> Acked {
        let mut seqs: Vec<u64> = Vec::new();
        if let Some(upto) = upto {
            seqs.extend(self.in_flight.range(..=upto).map(|(seq, _)| *seq));
        }
        if let Some(id) = id
            && self.in_flight.contains_key(&id)
        {
            seqs.push(id);
        }
        let mut acked = Acked::default();
        for seq in seqs {
            let Some(f) = self.in_flight.remove(&seq) else {
                continue;
            };
            // Karn's rule: only unambiguous (never retransmitted) samples.
            if f.retransmits == 0 && id == Some(seq) {
                acked.rtt = Some(now.saturating_duration_since(f.sent_at));
            }
            acked.tags.push(f.tag);
        }
        acked
    }

    /// The path changed: everything in flight is due at once, and no
    /// sample of it counts (the old path's timing says nothing).
    pub fn restart(&mut self, now: Instant) {
        for f in self.in_flight.values_mut() {
            f.deadline = now;
            f.retransmits = f.retransmits.max(1);
        }
    }

    /// The next retransmission deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.in_flight.values().map(|f| f.deadline).min()
    }

    /// Drops everything (the session ended).
    pub fn clear(&mut self) {
        self.in_flight.clear();
        self.queue.clear();
    }
}

/// What a received message did.
#[derive(Debug, PartialEq)]
pub struct Received {
    /// Messages now deliverable, in order (possibly none).
    pub deliver: Vec<Message>,
    /// The ack to send: the received id and everything up to `upto`.
    pub ack_id: u64,
    /// Highest id below which everything arrived.
    pub upto: u64,
}

/// The receiving half of one stream.
#[derive(Debug)]
pub struct RecvStream {
    id: StreamId,
    next_expected: u64,
    reorder: BTreeMap<u64, Message>,
}

impl RecvStream {
    /// Expects message 1 first.
    pub fn new(id: StreamId) -> RecvStream {
        RecvStream {
            id,
            next_expected: 1,
            reorder: BTreeMap::new(),
        }
    }

    /// Takes message number `seq`. `None`: beyond the window, dropped and
    /// not acknowledged. Duplicates are acknowledged again, delivered never.
    pub fn receive(&mut self, seq: u64, message: &Message) -> Option<Received> {
        if seq >= self.next_expected + WINDOW {
            tracing::debug!(
                stream = self.id.0,
                seq,
                "message beyond the receive window dropped"
            );
            return None;
        }
        if seq >= self.next_expected && !self.reorder.contains_key(&seq) {
            self.reorder.insert(seq, message.clone());
        }
        let mut deliver = Vec::new();
        while let Some(next) = self.reorder.remove(&self.next_expected) {
            self.next_expected += 1;
            deliver.push(next);
        }
        Some(Received {
            deliver,
            ack_id: seq,
            upto: self.next_expected - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use p2pchat::PeerId;

    const RTO: Duration = Duration::from_millis(200);

    fn msg(text: &str) -> Message {
        Message::plain(PeerId::random(), text)
    }

    #[test]
    fn numbers_messages_and_keeps_the_window() {
        let now = Instant::now();
        let mut s = SendStream::new(StreamId::CHAT);
        for tag in 0..WINDOW + 1 {
            s.push(tag, msg("x"));
        }
        let sent = s.fill(now, RTO);
        assert_eq!(sent.len() as u64, WINDOW, "one past the window waits");
        assert_eq!(sent[0].0, 1);
        assert_eq!(sent[0].1.id, Some(1));
        assert!(s.fill(now, RTO).is_empty());
        let acked = s.ack(Some(1), Some(1), now + Duration::from_millis(30));
        assert_eq!(acked.tags, vec![0]);
        assert_eq!(acked.rtt, Some(Duration::from_millis(30)));
        let more = s.fill(now, RTO);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].1.id, Some(WINDOW + 1));
    }

    #[test]
    fn queue_limit_edge() {
        let mut s = SendStream::new(StreamId::CHAT);
        for _ in 0..MAX_QUEUED_FRAGMENTS - 1 {
            s.push(0, msg("x"));
        }
        assert!(s.has_room(1));
        assert!(!s.has_room(2));
    }

    #[test]
    fn retransmits_back_off_and_karn_skips_ambiguous_samples() {
        let t0 = Instant::now();
        let mut s = SendStream::new(StreamId::CHAT);
        s.push(7, msg("x"));
        s.fill(t0, RTO);
        assert_eq!(s.next_deadline(), Some(t0 + RTO));
        assert!(s.due(t0, RTO).is_empty());
        assert_eq!(s.due(t0 + RTO, RTO).len(), 1);
        assert_eq!(s.next_deadline(), Some(t0 + RTO + RTO * 2));
        for _ in 0..10 {
            let at = s.next_deadline().unwrap();
            s.due(at, RTO);
        }
        let at = s.next_deadline().unwrap();
        s.due(at, RTO);
        assert_eq!(s.next_deadline(), Some(at + MAX_RTO), "capped");
        let acked = s.ack(Some(1), None, at);
        assert_eq!(
            acked,
            Acked {
                tags: vec![7],
                rtt: None
            }
        );
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn restart_resends_at_once_without_samples() {
        let t0 = Instant::now();
        let mut s = SendStream::new(StreamId::CHAT);
        s.push(1, msg("x"));
        s.fill(t0, RTO);
        s.restart(t0);
        assert_eq!(s.due(t0, RTO).len(), 1);
        assert_eq!(s.ack(Some(1), Some(1), t0).rtt, None);
        assert_eq!(s.abandon(1), None);
    }

    #[test]
    fn receiver_reorders_dedups_and_window_edge() {
        let mut r = RecvStream::new(StreamId::CHAT);
        assert!(r.receive(1 + WINDOW, &msg("far")).is_none());
        let got = r.receive(WINDOW, &msg("edge")).unwrap();
        assert!(got.deliver.is_empty());
        assert_eq!((got.ack_id, got.upto), (WINDOW, 0));
        let got = r.receive(2, &msg("b")).unwrap();
        assert!(got.deliver.is_empty());
        let got = r.receive(1, &msg("a")).unwrap();
        let texts: Vec<_> = got.deliver.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(texts, vec!["a", "b"]);
        assert_eq!(got.upto, 2);
        let dup = r.receive(1, &msg("a")).unwrap();
        assert!(dup.deliver.is_empty());
        assert_eq!((dup.ack_id, dup.upto), (1, 2));
    }
}
