//! RequestConnect rates, shared by the handlers: per caller source (the API
//! checks it before anything else, so even unauthenticated floods are
//! bounded) and per target peer (the rendezvous checks it only for a request
//! it would deliver, so strangers with bad tokens cannot use up a peer's
//! budget).

use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::rate::RateTable;
use super::{Quota, QuotaExceeded};

/// One rate quota over keys `K`, behind a lock. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Rates<K> {
    quota: Quota,
    table: Arc<Mutex<RateTable<K>>>,
}

impl<K: Hash + Eq + Copy> Rates<K> {
    /// `per_second` events a second per key (also the burst), refused as
    /// `quota`.
    pub fn new(quota: Quota, per_second: u32) -> Self {
        Self {
            quota,
            table: Arc::new(Mutex::new(RateTable::new(per_second))),
        }
    }

    /// Counts one event of `key` now.
    pub fn check(&self, key: K) -> Result<(), QuotaExceeded> {
        lock(&self.table)
            .check(key, Instant::now())
            .map_err(|limited| QuotaExceeded {
                quota: self.quota,
                limit: u64::from(limited.per_second),
                retry_after: limited.retry_after,
            })
    }
}

fn lock<K>(table: &Mutex<RateTable<K>>) -> MutexGuard<'_, RateTable<K>> {
    // A bucket table stays usable whatever panicked while holding it.
    table.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_quota() {
        let rates = Rates::new(Quota::ConnectsPerTarget, 1);
        rates.check(1u8).unwrap();
        let refused = rates.check(1u8).unwrap_err();
        assert_eq!(refused.quota, Quota::ConnectsPerTarget);
        assert_eq!(refused.limit, 1);
        assert!(refused.retry_after.as_millis() > 0);
        rates.check(2u8).expect("another key");
    }
}
