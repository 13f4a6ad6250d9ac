//! The per-source connection quota: at most N TCP connections at once from
//! one [`SourceKey`], so one client (or one IPv6 /64) cannot take every
//! connection slot while others still get theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::source::SourceKey;

/// Open connections per source, shared by the accept loop and the guards
/// its connections hold. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SourceQuota {
    limit: usize,
    open: Arc<Mutex<HashMap<SourceKey, usize>>>,
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct SourceSlot {
    key: SourceKey,
    open: Arc<Mutex<HashMap<SourceKey, usize>>>,
}

impl SourceQuota {
    /// A quota of `limit` connections per source.
    pub fn new(limit: usize) -> SourceQuota {
        SourceQuota {
            limit,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `key`, or `None` when that
    /// source already holds `limit`.
    pub fn try_acquire(&self, key: SourceKey) -> Option<SourceSlot> {
        let mut open = lock(&self.open);
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            if *count == 0 {
                open.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            key,
            open: self.open.clone(),
        })
    }

    /// Connections `key` holds now.
    pub fn open(&self, key: SourceKey) -> usize {
        lock(&self.open).get(&key).copied().unwrap_or(0)
    }

    /// Sources holding at least one connection.
    pub fn sources(&self) -> usize {
        lock(&self.open).len()
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            // Emptied entries go, so the map holds only live sources.
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

fn lock(open: &Mutex<HashMap<SourceKey, usize>>) -> MutexGuard<'_, HashMap<SourceKey, usize>> {
    // A counter map stays consistent whatever panicked while it was held.
    open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(text: &str) -> SourceKey {
        SourceKey::from(text.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn the_limit_is_per_source_and_slots_come_back() {
        let quota = SourceQuota::new(2);
        let a = key("127.0.0.1");
        let first = quota.try_acquire(a).expect("1 of 2");
        let _second = quota.try_acquire(a).expect("2 of 2");
        assert!(quota.try_acquire(a).is_none(), "3rd refused");
        assert!(
            quota.try_acquire(key("127.0.0.2")).is_some(),
            "other source"
        );
        drop(first);
        assert_eq!(quota.open(a), 1);
        assert!(quota.try_acquire(a).is_some(), "a freed slot is reusable");
    }

    #[test]
    fn empty_sources_leave_the_map() {
        let quota = SourceQuota::new(1);
        drop(quota.try_acquire(key("::1")));
        assert_eq!(quota.sources(), 0);
        let none = SourceQuota::new(0);
        assert!(none.try_acquire(key("::1")).is_none());
        assert_eq!(none.sources(), 0);
    }
}
