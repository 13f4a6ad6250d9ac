//! Per-source quotas, so one client address cannot fill a limit that every
//! client shares: registrations held, WatchPeers streams open, and
//! RequestConnect calls per second per caller and per target.
//!
//! The accounting is pure ([`counts::Counts`], [`rate::RateTable`]: no
//! clock, no locks; `now` is given) and unit-tested here. [`Watchers`] and
//! [`Rates`] wrap them, behind a lock and with the clock, for the API and
//! the rendezvous; the registrations quota is
//! kept by the store, under the same lock as the records it counts, so two
//! registrations at once cannot both take the last slot. Refusals are
//! [`QuotaExceeded`], which the API maps to RESOURCE_EXHAUSTED / HTTP 429
//! in one place (`api::errors`).

pub mod counts;
pub mod rate;

mod connects;
mod watchers;

use std::time::Duration;

pub use crate::source::SourceKey;
pub use connects::Rates;
pub use watchers::{WatcherSlot, Watchers};

/// Default most registrations (online records) one source may hold.
pub const DEFAULT_REGISTRATIONS_PER_SOURCE: usize = 64;
/// Default most WatchPeers streams one source may have open.
pub const DEFAULT_WATCHERS_PER_SOURCE: usize = 16;
/// Default RequestConnect calls per second one caller source may make.
pub const DEFAULT_CONNECTS_PER_CALLER: u32 = 10;
/// Default RequestConnect calls per second one target may be sent.
pub const DEFAULT_CONNECTS_PER_TARGET: u32 = 20;
/// What a refused watcher or registration is told to wait: a stream or a
/// registration of the same source has to end first, which no clock says.
pub const HELD_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The per-source quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Most registrations one source holds (REST and gRPC together).
    pub registrations_per_source: usize,
    /// Most WatchPeers streams one source has open.
    pub watchers_per_source: usize,
    /// RequestConnect calls per second (and burst) per caller source.
    pub connects_per_caller: u32,
    /// RequestConnect deliveries per second (and burst) per target peer.
    pub connects_per_target: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            registrations_per_source: DEFAULT_REGISTRATIONS_PER_SOURCE,
            watchers_per_source: DEFAULT_WATCHERS_PER_SOURCE,
            connects_per_caller: DEFAULT_CONNECTS_PER_CALLER,
            connects_per_target: DEFAULT_CONNECTS_PER_TARGET,
        }
    }
}

/// Which quota refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Registrations held per source.
    Registrations,
    /// WatchPeers streams open per source.
    Watchers,
    /// RequestConnect calls per second per caller source.
    ConnectsPerCaller,
    /// RequestConnect calls per second per target.
    ConnectsPerTarget,
}

/// A request went past a per-source quota. Other sources are unaffected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(*quota, *limit))]
pub struct QuotaExceeded {
    /// The quota.
    pub quota: Quota,
    /// Its limit (a count, or calls per second).
    pub limit: u64,
    /// When trying again may succeed.
    pub retry_after: Duration,
}

fn describe(quota: Quota, limit: u64) -> String {
    match quota {
        Quota::Registrations => {
            format!("too many registrations from your address: at most {limit} at once")
        }
        Quota::Watchers => {
            format!("too many WatchPeers streams from your address: at most {limit} at once")
        }
        Quota::ConnectsPerCaller => {
            format!("too many RequestConnect calls from your address: at most {limit} per second")
        }
        Quota::ConnectsPerTarget => {
            format!("too many connect requests to this peer: at most {limit} per second")
        }
    }
}
