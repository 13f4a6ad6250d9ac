//! The token bucket the relay's rate limits use.

use tokio::time::Instant;

/// A token bucket refilled continuously, holding at most one second's rate.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    rate: f64,
    pub(super) level: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            level: f64::from(rate),
            at: now,
        }
    }

    pub(super) fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + secs * self.rate).min(self.rate);
        self.at = now;
    }

    /// Takes `amount` if it is there.
    pub(super) fn take(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        if self.level < amount {
            return false;
        }
        self.level -= amount;
        true
    }
}
