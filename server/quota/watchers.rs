//! WatchPeers streams open per source: a slot is taken when a stream opens
//! and given back when its [`WatcherSlot`] drops (the stream's task ends).

use std::sync::{Arc, Mutex, MutexGuard};

use super::counts::Counts;
use super::{HELD_RETRY_AFTER, Quota, QuotaExceeded, SourceKey};

/// The open-watcher counts of every source. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Watchers {
    counts: Arc<Mutex<Counts<SourceKey>>>,
}

/// One open stream's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct WatcherSlot {
    counts: Arc<Mutex<Counts<SourceKey>>>,
    source: SourceKey,
}

impl Watchers {
    /// At most `per_source` open streams per source.
    pub fn new(per_source: usize) -> Self {
        Self {
            counts: Arc::new(Mutex::new(Counts::new(per_source))),
        }
    }

    /// A slot for one more stream of `source`.
    pub fn open(&self, source: SourceKey) -> Result<WatcherSlot, QuotaExceeded> {
        lock(&self.counts)
            .try_take(source)
            .map_err(|at| QuotaExceeded {
                quota: Quota::Watchers,
                limit: at.limit as u64,
                retry_after: HELD_RETRY_AFTER,
            })?;
        Ok(WatcherSlot {
            counts: self.counts.clone(),
            source,
        })
    }

    /// Streams `source` has open.
    pub fn open_count(&self, source: &SourceKey) -> usize {
        lock(&self.counts).held(source)
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        lock(&self.counts).give_back(&self.source);
    }
}

fn lock(counts: &Mutex<Counts<SourceKey>>) -> MutexGuard<'_, Counts<SourceKey>> {
    // Counts stay consistent whatever panicked while holding the lock.
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn slots_come_back_when_dropped() {
        let watchers = Watchers::new(2);
        let a = SourceKey::from(IpAddr::from([127, 0, 0, 1]));
        let b = SourceKey::from(IpAddr::from([127, 0, 0, 2]));
        let first = watchers.open(a).unwrap();
        let _second = watchers.open(a).unwrap();
        let refused = watchers.open(a).unwrap_err();
        assert_eq!(refused.quota, Quota::Watchers);
        assert_eq!(refused.limit, 2);
        let _other = watchers.open(b).expect("another source is unaffected");
        drop(first);
        assert_eq!(watchers.open_count(&a), 1);
        watchers.open(a).expect("a slot came back");
    }
}
