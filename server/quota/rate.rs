//! Events per second per key: a token bucket of `per_second` tokens
//! refilled at `per_second` a second, kept as one deadline per key (the
//! generic cell rate algorithm's "theoretical arrival time", which is the
//! same bucket without a float). Pure: every call is given `now`.
//!
//! In any span of `t` seconds a key gets at most `per_second * (1 + t)`
//! events: a full bucket, then the refill.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Smallest table size at which idle keys are swept out.
const MIN_SWEEP_LEN: usize = 1024;

/// Per-key token buckets of one rate.
#[derive(Debug, Clone)]
pub struct RateTable<K> {
    per_second: u32,
    /// Time one token takes to come back.
    interval: Duration,
    /// How far ahead of `now` a key's deadline may run and still be
    /// allowed: a full bucket less one token.
    tolerance: Duration,
    /// When each key's bucket is full again. A key whose deadline has
    /// passed is as good as absent.
    full_at: HashMap<K, Instant>,
    /// Table length at which the next sweep runs (amortised O(1)).
    sweep_at: usize,
}

/// Refused: the key's bucket is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The rate per second.
    pub per_second: u32,
    /// When the next event would be allowed.
    pub retry_after: Duration,
}

impl<K: Hash + Eq + Copy> RateTable<K> {
    /// Buckets of `per_second` tokens (at least 1) refilled at `per_second`
    /// a second.
    pub fn new(per_second: u32) -> Self {
        let per_second = per_second.max(1);
        let interval = Duration::from_secs(1) / per_second;
        Self {
            per_second,
            interval,
            tolerance: interval * (per_second - 1),
            full_at: HashMap::new(),
            sweep_at: MIN_SWEEP_LEN,
        }
    }

    /// Takes a token of `key`'s bucket at `now`, or says how long until one
    /// is back (changing nothing).
    pub fn check(&mut self, key: K, now: Instant) -> Result<(), Limited> {
        if self.full_at.len() >= self.sweep_at {
            self.sweep(now);
        }
        let full_at = self.full_at.get(&key).copied().unwrap_or(now).max(now);
        let ahead = full_at - now;
        if ahead > self.tolerance {
            return Err(Limited {
                per_second: self.per_second,
                retry_after: ahead - self.tolerance,
            });
        }
        self.full_at.insert(key, full_at + self.interval);
        Ok(())
    }

    /// Forgets keys whose bucket is full again at `now`.
    fn sweep(&mut self, now: Instant) {
        self.full_at.retain(|_, full_at| *full_at > now);
        self.sweep_at = MIN_SWEEP_LEN.max(self.full_at.len() * 2);
    }

    /// How many keys have a bucket that is not full (at the last sweep's
    /// granularity).
    pub fn len(&self) -> usize {
        self.full_at.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.full_at.is_empty()
    }
}

/// `retry_after` as the whole seconds of an HTTP `Retry-After` header:
/// rounded up, at least 1.
pub fn retry_after_secs(retry_after: Duration) -> u64 {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_bucket_then_one_token_per_interval() {
        let t0 = Instant::now();
        let mut table = RateTable::new(10);
        for i in 0..10 {
            table
                .check('a', t0)
                .unwrap_or_else(|e| panic!("{i}: {e:?}"));
        }
        let refused = table.check('a', t0).unwrap_err();
        assert_eq!(refused.retry_after, 100 * MS);
        assert_eq!(refused.per_second, 10);
        // A token comes back after 100 ms, not before.
        assert!(table.check('a', t0 + 99 * MS).is_err());
        table.check('a', t0 + 100 * MS).expect("refilled one");
        assert!(table.check('a', t0 + 100 * MS).is_err());
    }

    #[test]
    fn keys_are_independent() {
        let t0 = Instant::now();
        let mut table = RateTable::new(2);
        table.check(1, t0).unwrap();
        table.check(1, t0).unwrap();
        assert!(table.check(1, t0).is_err());
        table.check(2, t0).expect("another key has its own bucket");
    }

    #[test]
    fn a_refusal_takes_no_token() {
        let t0 = Instant::now();
        let mut table = RateTable::new(1);
        table.check('a', t0).unwrap();
        for _ in 0..100 {
            assert!(table.check('a', t0 + 500 * MS).is_err());
        }
        table
            .check('a', t0 + 1000 * MS)
            .expect("refused calls did not push the deadline");
    }

    #[test]
    fn at_most_rate_times_one_plus_t_in_t_seconds() {
        let t0 = Instant::now();
        let mut table = RateTable::new(10);
        // A caller trying every millisecond for 3 s.
        let allowed = (0..3000)
            .filter(|ms: &u32| table.check('a', t0 + *ms * MS).is_ok())
            .count();
        assert!(allowed <= 10 * (1 + 3), "{allowed}");
        assert!(allowed >= 10 * 3, "{allowed}");
    }

    #[test]
    fn idle_keys_are_swept() {
        let t0 = Instant::now();
        let mut table = RateTable::new(5);
        for key in 0..MIN_SWEEP_LEN {
            table.check(key, t0).unwrap();
        }
        assert_eq!(table.len(), MIN_SWEEP_LEN);
        // A second later every bucket is full: the next check sweeps them.
        table
            .check(usize::MAX, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(100 * MS), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(1001 * MS), 2);
    }
}
