//! The token bucket the UDP port's rate limits use (relay sessions,
//! REFUSED answers, STUN answers per source).

use tokio::time::Instant;

/// A token bucket refilled continuously, holding at most one second's rate.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: f64,
    pub(crate) level: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            level: f64::from(rate),
            at: now,
        }
    }

    pub(crate) fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + secs * self.rate).min(self.rate);
        self.at = now;
    }

    /// Whether the bucket is full at `now` (its owner has been quiet for a
    /// second or more, so forgetting it loses nothing).
    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level >= self.rate
    }

    /// Takes `amount` if it is there.
    pub(crate) fn take(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        if self.level < amount {
            return false;
        }
        self.level -= amount;
        true
    }
}
