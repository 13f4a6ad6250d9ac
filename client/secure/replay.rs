//! The replay filter: a sliding window over the counters of one key epoch,
//! a ring of bitmap blocks as in RFC 6479 (and WireGuard).
//!
//! The highest counter seen and the [`REPLAY_WINDOW`] - 1 counters below it
//! are tracked. Anything newer is accepted; anything older than the window
//! is refused (it may be a replay we can no longer tell apart); within the
//! window each counter is accepted once, in any order.
//!
//! [`ReplayWindow::check`] never changes state: call it before
//! authenticating, and [`ReplayWindow::commit`] only once the datagram
//! authenticated, so forged counters cannot move the window.

/// How many counters, the highest included, the window tracks.
pub const REPLAY_WINDOW: u64 = 8192;

const BLOCK_BITS: u64 = u64::BITS as u64;
/// One block more than the window needs, so the block the highest counter
/// is in never shares a ring slot with the oldest counter still tracked.
const BLOCKS: usize = (REPLAY_WINDOW / BLOCK_BITS) as usize + 1;

/// What the window says about a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen: accept (once authenticated).
    Fresh,
    /// Seen already.
    Duplicate,
    /// Behind the window.
    TooOld,
}

/// The replay window of one key epoch.
#[derive(Clone)]
pub struct ReplayWindow {
    /// The highest committed counter plus one; 0 before any.
    next: u64,
    ring: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// An empty window: every counter is fresh.
    pub const fn new() -> ReplayWindow {
        ReplayWindow {
            next: 0,
            ring: [0; BLOCKS],
        }
    }

    /// What committing `counter` would mean (no state change).
    pub fn verdict(&self, counter: u64) -> Verdict {
        if counter >= self.next {
            return Verdict::Fresh;
        }
        // `next` > counter >= 0, so `next` >= 1.
        let highest = self.next - 1;
        if highest - counter >= REPLAY_WINDOW {
            return Verdict::TooOld;
        }
        let (slot, bit) = Self::position(counter);
        if self.ring[slot] & bit != 0 {
            Verdict::Duplicate
        } else {
            Verdict::Fresh
        }
    }

    /// Whether `counter` would be accepted (no state change).
    pub fn check(&self, counter: u64) -> bool {
        self.verdict(counter) == Verdict::Fresh
    }

    /// Records `counter` as received; only after it authenticated. A
    /// counter that [`check`](Self::check) refuses is ignored.
    pub fn commit(&mut self, counter: u64) {
        if !self.check(counter) {
            return;
        }
        if counter >= self.next {
            let new_block = counter / BLOCK_BITS;
            if self.next > 0 {
                let old_block = (self.next - 1) / BLOCK_BITS;
                let stale = (new_block - old_block).min(BLOCKS as u64);
                for step in 1..=stale {
                    self.ring[((old_block + step) % BLOCKS as u64) as usize] = 0;
                }
            }
            self.next = counter.saturating_add(1);
        }
        let (slot, bit) = Self::position(counter);
        self.ring[slot] |= bit;
    }

    /// [`check`](Self::check) then [`commit`](Self::commit): only for a
    /// datagram that already authenticated.
    pub fn check_and_update(&mut self, counter: u64) -> bool {
        let fresh = self.check(counter);
        if fresh {
            self.commit(counter);
        }
        fresh
    }

    fn position(counter: u64) -> (usize, u64) {
        let slot = ((counter / BLOCK_BITS) % BLOCKS as u64) as usize;
        (slot, 1u64 << (counter % BLOCK_BITS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_duplicates_and_order() {
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(0));
        assert!(!w.check_and_update(0));
        assert!(w.check_and_update(5));
        assert!(w.check_and_update(3));
        assert!(!w.check_and_update(3));
        assert!(w.check_and_update(4));
        assert_eq!(w.verdict(5), Verdict::Duplicate);
        assert_eq!(w.verdict(6), Verdict::Fresh);
    }

    #[test]
    fn the_window_edge_is_exact() {
        let mut w = ReplayWindow::new();
        let highest = 100_000;
        w.commit(highest);
        assert_eq!(w.verdict(highest - REPLAY_WINDOW + 1), Verdict::Fresh);
        assert_eq!(w.verdict(highest - REPLAY_WINDOW), Verdict::TooOld);
        assert!(w.check_and_update(highest - REPLAY_WINDOW + 1));
        assert_eq!(w.verdict(highest - REPLAY_WINDOW + 1), Verdict::Duplicate);
        // Every counter in the window is fresh once, in reverse order.
        for c in (highest - REPLAY_WINDOW + 2..highest).rev() {
            assert!(w.check_and_update(c), "{c}");
            assert!(!w.check(c));
        }
    }

    #[test]
    fn check_does_not_change_state() {
        let mut w = ReplayWindow::new();
        assert!(w.check(1 << 40));
        assert!(w.check_and_update(7));
        assert!(w.check(7 + REPLAY_WINDOW * 5));
        assert_eq!(w.verdict(7), Verdict::Duplicate);
    }

    #[test]
    fn sliding_forward_clears_old_bits() {
        let mut w = ReplayWindow::new();
        // Fill one block's slot, then slide exactly a ring around: the
        // reused slot must read as fresh for its new counters.
        for c in 0..BLOCK_BITS {
            w.commit(c);
        }
        let ring_bits = BLOCKS as u64 * BLOCK_BITS;
        w.commit(ring_bits);
        for c in ring_bits + 1..ring_bits + BLOCK_BITS {
            assert_eq!(w.verdict(c), Verdict::Fresh, "{c}");
        }
        assert_eq!(w.verdict(ring_bits), Verdict::Duplicate);
        // Slide by steps of less than a block and a huge jump.
        let mut c = ring_bits;
        for _ in 0..1000 {
            c += 37;
            assert!(w.check_and_update(c));
            assert!(w.check_and_update(c - 20));
            assert!(!w.check_and_update(c - 20));
        }
        w.commit(c + (1 << 30));
        assert_eq!(w.verdict(c), Verdict::TooOld);
        assert_eq!(w.verdict(c + (1 << 30) - 1), Verdict::Fresh);
    }

    #[test]
    fn random_order_matches_a_set_model() {
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::HashSet::new();
        let mut highest: Option<u64> = None;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut base = 0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base += x % 3;
            let c = (base + x % 9000).saturating_sub(4500);
            let expect = match highest {
                Some(h) if c + REPLAY_WINDOW <= h => false,
                _ => !seen.contains(&c),
            };
            assert_eq!(w.check_and_update(c), expect, "{c}");
            if expect {
                seen.insert(c);
                highest = Some(highest.map_or(c, |h| h.max(c)));
            }
        }
    }
}
