//! What an online record claims that no other record may share: a slot of
//! its source's registrations quota and its name's confusable skeleton.
//!
//! Both are kept here, under the store's one lock, rather than checked by
//! the API against a listing: a check and the insert it guards are then one
//! step, so two registrations at once (two `Alice`s, or two calls for a
//! source's last slot) cannot both pass. An external store (etcd) would do
//! the same in one transaction (create-if-absent on a key per skeleton and
//! a compare on a counter per source).

use std::collections::HashMap;
use std::net::IpAddr;

use p2pchat::PeerId;

use super::super::StoreError;
use super::super::names::name_key;
use crate::quota::counts::Counts;
use crate::quota::{HELD_RETRY_AFTER, Quota, QuotaExceeded, SourceKey};

/// What one record claims while it is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claim {
    /// The source its registration came from.
    pub source: SourceKey,
    /// The skeleton of its username.
    pub name_key: String,
}

impl Claim {
    /// The claim of a record registered from `ip` as `username`.
    pub fn of(ip: IpAddr, username: &str) -> Claim {
        Claim {
            source: SourceKey::from(ip),
            name_key: name_key(username),
        }
    }
}

/// The claims of every online record.
#[derive(Debug)]
pub(super) struct Claims {
    sources: Counts<SourceKey>,
    /// Skeleton -> the online peer whose name it is.
    names: HashMap<String, PeerId>,
}

impl Claims {
    /// Claims with at most `per_source` online records per source.
    pub fn new(per_source: usize) -> Claims {
        Claims {
            sources: Counts::new(per_source),
            names: HashMap::new(),
        }
    }

    /// Whether `peer`, holding `current` (`None`: new or offline), may hold
    /// `wanted` instead; `name` is the username, for the refusal. Moving
    /// to another source counts against that source; staying is a refresh.
    pub fn check(
        &self,
        peer: &PeerId,
        current: Option<&Claim>,
        wanted: &Claim,
        name: &str,
    ) -> Result<(), StoreError> {
        let moving = current.is_none_or(|c| c.source != wanted.source);
        if moving && !self.sources.has_room(&wanted.source) {
            return Err(StoreError::Quota(QuotaExceeded {
                quota: Quota::Registrations,
                limit: self.sources.limit() as u64,
                retry_after: HELD_RETRY_AFTER,
            }));
        }
        if self
            .names
            .get(&wanted.name_key)
            .is_some_and(|owner| owner != peer)
        {
            return Err(StoreError::NameTaken { name: name.into() });
        }
        Ok(())
    }

    /// `peer` gives up `current` (if any) and holds `wanted`; call after
    /// [`Claims::check`].
    pub fn replace(&mut self, peer: PeerId, current: Option<&Claim>, wanted: &Claim) {
        if let Some(current) = current {
            self.release(&peer, current);
        }
        // Checked before: a refusal here would only mean a caller's bug,
        // and the record is still better stored than lost.
        let _ = self.sources.try_take(wanted.source);
        self.names.insert(wanted.name_key.clone(), peer);
    }

    /// `peer` went offline or left: its claim is free again.
    pub fn release(&mut self, peer: &PeerId, claim: &Claim) {
        self.sources.give_back(&claim.source);
        if self.names.get(&claim.name_key) == Some(peer) {
            self.names.remove(&claim.name_key);
        }
    }
}
