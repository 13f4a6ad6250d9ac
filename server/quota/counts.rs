//! How many of something each key holds at once (registrations, open
//! streams), with one limit for every key. Keys holding nothing are
//! forgotten, so the table is as large as the number of current holders.

use std::collections::HashMap;
use std::hash::Hash;

/// Per-key counts under one limit. Pure: the caller decides when a thing is
/// taken and when it is given back.
#[derive(Debug, Clone)]
pub struct Counts<K> {
    limit: usize,
    held: HashMap<K, usize>,
}

impl<K: Hash + Eq + Copy> Counts<K> {
    /// Counts allowing each key `limit` at once.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: HashMap::new(),
        }
    }

    /// The limit per key.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many `key` holds.
    pub fn held(&self, key: &K) -> usize {
        self.held.get(key).copied().unwrap_or(0)
    }

    /// Whether `key` may take one more.
    pub fn has_room(&self, key: &K) -> bool {
        self.held(key) < self.limit
    }

    /// Takes one for `key`; refuses (changing nothing) at the limit.
    pub fn try_take(&mut self, key: K) -> Result<(), AtLimit> {
        if !self.has_room(&key) {
            return Err(AtLimit { limit: self.limit });
        }
        *self.held.entry(key).or_insert(0) += 1;
        Ok(())
    }

    /// Gives one back for `key` (nothing happens if it held none).
    pub fn give_back(&mut self, key: &K) {
        if let Some(count) = self.held.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.held.remove(key);
            }
        }
    }

    /// How many keys hold anything.
    pub fn keys(&self) -> usize {
        self.held.len()
    }
}

/// A key already holds as many as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtLimit {
    /// The limit per key.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_allowed_then_refused_until_one_is_given_back() {
        let mut counts = Counts::new(3);
        for _ in 0..3 {
            counts.try_take('a').unwrap();
        }
        assert_eq!(counts.try_take('a'), Err(AtLimit { limit: 3 }));
        assert_eq!(counts.held(&'a'), 3, "a refusal takes nothing");
        counts.try_take('b').expect("another key is unaffected");
        counts.give_back(&'a');
        counts.try_take('a').expect("room again");
    }

    #[test]
    fn keys_holding_nothing_are_forgotten() {
        let mut counts = Counts::new(2);
        counts.try_take(1).unwrap();
        counts.give_back(&1);
        counts.give_back(&1);
        counts.give_back(&7);
        assert_eq!(counts.keys(), 0);
        assert_eq!(counts.held(&1), 0);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let mut counts = Counts::new(0);
        assert!(counts.try_take(1).is_err());
    }
}
