//! How many STUN answers one source gets: a token bucket per source (an
//! IPv4 address, or an IPv6 /64, which one subscriber usually holds whole),
//! so the port cannot be used to flood an address whose source a sender
//! spoofs, and one source's flood leaves other sources their answers.
//!
//! Pure: the caller passes `now`, so the tests step time by hand. The
//! table of sources is bounded ([`MAX_STUN_SOURCES`]): when it is full,
//! sources quiet for a second (whose buckets refilled, so forgetting them
//! loses nothing) are dropped, at most once a second; sources that still
//! find no room share one overflow bucket of the same rate, so a flood of
//! spoofed sources costs the limiter no memory beyond the bound and gets
//! one source's worth of answers in all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::bucket::Bucket;
use crate::source::SourceKey;

/// Default STUN answers per second per source (`--stun-rate`). A peer sends
/// one Binding request at start (retransmitted at most 3 times) and one per
/// address refresh; twenty peers behind one NAT address still fit.
pub const DEFAULT_STUN_RATE: u32 = 20;

/// Most sources the limiter tracks at once (about 64 bytes each).
pub const MAX_STUN_SOURCES: usize = 16_384;

/// How often a full table is swept for quiet sources.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StunLimitStats {
    /// Answers allowed.
    pub answered: u64,
    /// Answers refused by a source's (or the overflow) bucket.
    pub limited: u64,
}

/// The per-source buckets. See the module docs.
#[derive(Debug)]
pub struct StunLimiter {
    rate: u32,
    max_sources: usize,
    sources: HashMap<SourceKey, Bucket>,
    overflow: Bucket,
    last_sweep: Option<Instant>,
    stats: StunLimitStats,
}

impl StunLimiter {
    /// A limiter of `rate` answers per second per source (bursts up to one
    /// second's worth), tracking at most [`MAX_STUN_SOURCES`] sources.
    pub fn new(rate: u32, now: Instant) -> StunLimiter {
        StunLimiter::with_capacity(rate, MAX_STUN_SOURCES, now)
    }

    /// As [`StunLimiter::new`] with another bound on tracked sources.
    pub fn with_capacity(rate: u32, max_sources: usize, now: Instant) -> StunLimiter {
        StunLimiter {
            rate,
            max_sources,
            sources: HashMap::new(),
            overflow: Bucket::new(rate, now),
            last_sweep: None,
            stats: StunLimitStats::default(),
        }
    }

    /// Whether `source` may be answered at `now`; takes its token if so.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let key = SourceKey::from(source);
        if !self.sources.contains_key(&key) && self.sources.len() >= self.max_sources {
            self.sweep(now);
        }
        let ok = if let Some(bucket) = self.sources.get_mut(&key) {
            bucket.take(1.0, now)
        } else if self.sources.len() < self.max_sources {
            let mut bucket = Bucket::new(self.rate, now);
            let ok = bucket.take(1.0, now);
            self.sources.insert(key, bucket);
            ok
        } else {
            self.overflow.take(1.0, now)
        };
        if ok {
            self.stats.answered += 1;
        } else {
            self.stats.limited += 1;
        }
        ok
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// The counters.
    pub fn stats(&self) -> StunLimitStats {
        self.stats
    }

    /// Forgets sources whose buckets refilled, at most once per
    /// [`SWEEP_EVERY`] (a full table under a flood is not scanned per
    /// datagram).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.sources.retain(|_, bucket| !bucket.is_full(now));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn a_source_gets_its_rate_and_not_one_more_then_refills() {
        let t0 = Instant::now();
        let mut limiter = StunLimiter::new(5, t0);
        for i in 0..5 {
            assert!(limiter.allow(v4(1), t0), "answer {i} of 5");
        }
        assert!(!limiter.allow(v4(1), t0), "the 6th in the same instant");
        // Another source is unaffected.
        assert!(limiter.allow(v4(2), t0));
        // 200 ms later one token is back, not two.
        let later = t0 + Duration::from_millis(200);
        assert!(limiter.allow(v4(1), later));
        assert!(!limiter.allow(v4(1), later));
        // A quiet second refills to the burst, never above it.
        let much_later = later + Duration::from_secs(30);
        for _ in 0..5 {
            assert!(limiter.allow(v4(1), much_later));
        }
        assert!(!limiter.allow(v4(1), much_later));
        assert_eq!(
            limiter.stats(),
            StunLimitStats {
                answered: 12,
                limited: 3
            }
        );
    }

    #[test]
    fn ipv6_sources_share_their_64_and_mapped_v4_is_v4() {
        let t0 = Instant::now();
        let mut limiter = StunLimiter::new(2, t0);
        let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1));
        let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert!(limiter.allow(a, t0));
        assert!(limiter.allow(b, t0));
        assert!(!limiter.allow(a, t0), "same /64 as b");
        assert!(limiter.allow(other, t0), "another /64");
        let plain = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped());
        assert!(limiter.allow(plain, t0));
        assert!(limiter.allow(mapped, t0));
        assert!(!limiter.allow(plain, t0), "mapped counted as the same");
        assert_eq!(limiter.tracked(), 3);
    }

    #[test]
    fn the_table_stays_bounded_and_untracked_sources_share_one_bucket() {
        let t0 = Instant::now();
        let mut limiter = StunLimiter::with_capacity(3, 4, t0);
        for last in 1..=4 {
            assert!(limiter.allow(v4(last), t0));
        }
        assert_eq!(limiter.tracked(), 4);
        // Full, and nobody is quiet yet: new sources share the overflow
        // bucket (3 answers in all), the table does not grow.
        for last in 10..13 {
            assert!(limiter.allow(v4(last), t0), "overflow answer for {last}");
        }
        assert!(!limiter.allow(v4(13), t0), "overflow bucket empty");
        assert_eq!(limiter.tracked(), 4);
        // Tracked sources keep their own buckets meanwhile.
        assert!(limiter.allow(v4(1), t0));
        // A second later the quiet sources are swept and a new one is
        // tracked again.
        let later = t0 + Duration::from_secs(1);
        assert!(limiter.allow(v4(20), later));
        assert_eq!(limiter.tracked(), 1);
        // Many more sources than the bound never grow the table past it.
        for i in 0..1_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            limiter.allow(ip, later + Duration::from_millis(u64::from(i)));
            assert!(limiter.tracked() <= 4);
        }
    }
}
