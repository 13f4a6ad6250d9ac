//! Fragmentation of chat lines: splitting a line into pieces that each fit
//! one datagram, reassembling them in order, and counting which sent lines
//! still have unacknowledged pieces.
//!
//! Reassembly sees fragments in stream order (reliability delivers them so),
//! so a line is a run `index` 0..count; anything else discards it.

use std::collections::HashMap;

use crate::wire::Part;

/// Longest chat line a user may send, in bytes of UTF-8; also the longest
/// line reassembled from fragments.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Most fragments a received line may have. A [`MAX_LINE_BYTES`] line of the
/// worst-escaping characters needs 110; anything above this is refused.
pub const MAX_FRAGMENTS_PER_LINE: u32 = 128;

/// Most bytes of JSON-escaped body text per fragment. Leaves room under
/// [`crate::wire::MAX_SEND_DATAGRAM_BYTES`] for the envelope (type, 36-byte
/// peer id, timestamp, id, part).
pub const MAX_FRAGMENT_BODY_BYTES: usize = 900;

/// Splits `text` into pieces whose JSON-escaped form is at most
/// `max_escaped_bytes` each, never inside a character. Always returns at
/// least one piece (an empty line is one empty piece).
pub fn split_for_datagrams(text: &str, max_escaped_bytes: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for ch in text.chars() {
        let len = escaped_len(ch);
        if current_len + len > max_escaped_bytes && !current.is_empty() {
            pieces.push(std::mem::take(&mut current));
            current_len = 0;
        }
        current.push(ch);
        current_len += len;
    }
    if !current.is_empty() || pieces.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Bytes `ch` takes inside a JSON string as serde_json writes it.
fn escaped_len(ch: char) -> usize {
    match ch {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// A line being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    count: u32,
    pieces: Vec<String>,
    bytes: usize,
    sent_at: f64,
}

/// Reassembles fragmented lines arriving in order.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: Option<Partial>,
}

impl Reassembler {
    /// Takes the next message of the stream: its text, its `part` (none for
    /// a whole line) and its timestamp. Returns a complete line and the
    /// timestamp of its first fragment.
    pub fn push(
        &mut self,
        body: String,
        part: Option<Part>,
        sent_at: f64,
    ) -> Option<(String, f64)> {
        let Some(part) = part else {
            if self.partial.take().is_some() {
                tracing::debug!("unfinished fragmented line discarded");
            }
            return Some((body, sent_at));
        };
        if part.count > MAX_FRAGMENTS_PER_LINE {
            tracing::debug!(count = part.count, "line with too many fragments discarded");
            self.partial = None;
            return None;
        }
        if part.index == 0 {
            if self.partial.is_some() {
                tracing::debug!("unfinished fragmented line discarded");
            }
            self.partial = Some(Partial {
                count: part.count,
                pieces: Vec::new(),
                bytes: 0,
                sent_at,
            });
        }
        let Some(partial) = self.partial.as_mut() else {
            tracing::debug!("fragment without its start discarded");
            return None;
        };
        if partial.count != part.count || partial.pieces.len() as u32 != part.index {
            tracing::debug!("out-of-sequence fragment; line discarded");
            self.partial = None;
            return None;
        }
        partial.bytes += body.len();
        if partial.bytes > MAX_LINE_BYTES {
            tracing::debug!("reassembled line over the limit discarded");
            self.partial = None;
            return None;
        }
        partial.pieces.push(body);
        if partial.pieces.len() as u32 == partial.count {
            let done = self.partial.take()?;
            return Some((done.pieces.concat(), done.sent_at));
        }
        None
    }
}

/// Sent lines with fragments not yet acknowledged, by line id.
#[derive(Debug, Default)]
pub struct Outstanding {
    left: HashMap<u64, u32>,
}

impl Outstanding {
    /// Line `line` went out in `count` fragments.
    pub fn start(&mut self, line: u64, count: u32) {
        self.left.insert(line, count);
    }

    /// One fragment of `line` was acknowledged; true when that was its last.
    pub fn acked(&mut self, line: u64) -> bool {
        let Some(left) = self.left.get_mut(&line) else {
            return false;
        };
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.left.remove(&line);
            return true;
        }
        false
    }

    /// Forgets `line` (it cannot be delivered); true if it was outstanding.
    pub fn abandon(&mut self, line: u64) -> bool {
        self.left.remove(&line).is_some()
    }

    /// Forgets every line; returns them in order.
    pub fn drain(&mut self) -> Vec<u64> {
        let mut lines: Vec<u64> = self.left.drain().map(|(l, _)| l).collect();
        lines.sort_unstable();
        lines
    }

    /// How many lines are outstanding.
    pub fn len(&self) -> usize {
        self.left.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Datagram, Header, Message};
    use p2pchat::PeerId;

    fn part(index: u32, count: u32) -> Option<Part> {
        Some(Part { index, count })
    }

    #[test]
    fn worst_case_fragment_fits_one_datagram() {
        // Every character escapes to 6 bytes: the worst case for the budget.
        let text = "\u{1}".repeat(1000);
        let pieces = split_for_datagrams(&text, MAX_FRAGMENT_BODY_BYTES);
        assert_eq!(pieces.concat(), text);
        for piece in &pieces {
            let dg: Datagram = Message {
                header: Header::now(PeerId::random()),
                body: piece.clone(),
                id: Some(u64::MAX),
                part: part(u32::MAX - 1, u32::MAX),
            }
            .into();
            assert!(dg.encode().is_ok());
        }
        let text = "€".repeat(2000);
        let pieces = split_for_datagrams(&text, MAX_FRAGMENT_BODY_BYTES);
        assert!(pieces.iter().all(|p| p.len() <= MAX_FRAGMENT_BODY_BYTES));
        assert_eq!(pieces.concat(), text);
        assert_eq!(split_for_datagrams("", 10), vec![String::new()]);
        assert_eq!(split_for_datagrams("abcd", 2), vec!["ab", "cd"]);
        // The worst-escaping full-length line stays within the count limit.
        let worst = "\u{1}".repeat(MAX_LINE_BYTES);
        let pieces = split_for_datagrams(&worst, MAX_FRAGMENT_BODY_BYTES);
        assert!(pieces.len() as u32 <= MAX_FRAGMENTS_PER_LINE);
    }

    #[test]
    fn reassembles_runs_and_discards_broken_ones() {
        let mut r = Reassembler::default();
        assert_eq!(
            r.push("whole".into(), None, 1.0),
            Some(("whole".into(), 1.0))
        );
        assert_eq!(r.push("a".into(), part(0, 2), 2.0), None);
        assert_eq!(
            r.push("b".into(), part(1, 2), 3.0),
            Some(("ab".into(), 2.0))
        );
        // Missing start, wrong sequence, count mismatch: discarded.
        assert_eq!(r.push("b".into(), part(1, 2), 3.0), None);
        r.push("a".into(), part(0, 3), 3.0);
        assert_eq!(r.push("c".into(), part(2, 3), 3.0), None);
        assert_eq!(r.push("x".into(), part(1, 3), 3.0), None);
        // A whole line after an unfinished one is still delivered.
        r.push("a".into(), part(0, 3), 3.0);
        assert_eq!(r.push("w".into(), None, 4.0), Some(("w".into(), 4.0)));
    }

    #[test]
    fn fragment_count_and_byte_limits_edge() {
        let mut r = Reassembler::default();
        let n = MAX_FRAGMENTS_PER_LINE;
        let mut got = None;
        for i in 0..n {
            got = r.push("x".into(), part(i, n), 0.0);
        }
        assert_eq!(got.map(|(t, _)| t.len()), Some(n as usize));
        assert_eq!(r.push("x".into(), part(0, n + 1), 0.0), None);
        assert_eq!(r.push("x".into(), part(1, n + 1), 0.0), None);
        let half = MAX_LINE_BYTES / 2;
        r.push("x".repeat(half), part(0, 2), 0.0);
        let full = r.push("x".repeat(half), part(1, 2), 0.0);
        assert_eq!(full.map(|(t, _)| t.len()), Some(MAX_LINE_BYTES));
        r.push("x".repeat(half), part(0, 2), 0.0);
        assert_eq!(r.push("x".repeat(half + 1), part(1, 2), 0.0), None);
    }

    #[test]
    fn outstanding_lines_complete_when_every_fragment_is_acked() {
        let mut o = Outstanding::default();
        o.start(1, 2);
        o.start(2, 1);
        assert!(!o.acked(1));
        assert!(o.acked(2));
        assert!(!o.acked(2), "already complete");
        assert_eq!(o.len(), 1);
        o.start(3, 1);
        assert!(o.abandon(3) && !o.abandon(3));
        assert_eq!(o.drain(), vec![1]);
        assert_eq!(o.len(), 0);
    }
}
