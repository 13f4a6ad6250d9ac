//! Liveness: the keep-alive schedule, missed answers, and the round-trip
//! estimator (RFC 6298) that reliability's retransmission timeout uses.
//!
//! Sans-IO: [`Liveness::tick`] says when a ping is due and whether the peer
//! went quiet; the session sends the ping over the current path.

use std::time::Duration;

use tokio::time::Instant;

/// Lower bound of the retransmission timeout, so loopback's microsecond RTTs
/// do not cause spurious retransmissions.
pub const MIN_RTO: Duration = Duration::from_millis(100);

/// Upper bound of the retransmission timeout, backoff included.
pub const MAX_RTO: Duration = Duration::from_secs(4);

/// Retransmission timeout before the first RTT sample.
pub const INITIAL_RTO: Duration = Duration::from_millis(500);

/// Smoothed RTT and retransmission timeout as in RFC 6298.
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    /// Folds in one round-trip measurement.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed RTT, once sampled.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout, within [`MIN_RTO`]..=[`MAX_RTO`].
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(MIN_RTO, MAX_RTO),
        }
    }
}

/// What the keep-alive schedule wants at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing due yet.
    NotDue,
    /// The missed-answer limit is reached: the peer is offline.
    Dead,
    /// Send a ping with this nonce. `newly_stale` is set on the first
    /// interval that went unanswered (time to look for another path).
    Ping {
        /// The nonce the pong must echo.
        nonce: u64,
        /// The previous ping went unanswered, for the first time in a row.
        newly_stale: bool,
    },
}

/// Keep-alive and RTT state of one session.
#[derive(Debug)]
pub struct Liveness {
    interval: Duration,
    missed_limit: u32,
    last_heard: Instant,
    last_ping: Option<(u64, Instant)>,
    next_ping: Instant,
    missed: u32,
    rtt: RttEstimator,
}

impl Liveness {
    /// A ping every `interval`; offline after `missed_limit` silent ones.
    pub fn new(interval: Duration, missed_limit: u32, now: Instant) -> Liveness {
        Liveness {
            interval,
            missed_limit,
            last_heard: now,
            last_ping: None,
            next_ping: now + interval,
            missed: 0,
            rtt: RttEstimator::default(),
        }
    }

    /// Something arrived over the current path: the peer is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.missed = 0;
    }

    /// A round trip over another path worked: it answers the outstanding
    /// ping, but the silent intervals of the current path still count.
    pub fn heard_elsewhere(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The session connected; `probe_rtt` is the round trip of the probe
    /// that did it, when we probed. Without one, ping at once so the user
    /// sees an RTT promptly.
    pub fn connected(&mut self, now: Instant, probe_rtt: Option<Duration>) {
        if let Some(rtt) = probe_rtt {
            self.rtt.sample(rtt);
        }
        self.next_ping = if self.rtt.srtt.is_some() {
            now + self.interval
        } else {
            now
        };
    }

    /// The session moved to a new path: its timing starts over and a ping
    /// goes out at once.
    pub fn new_path(&mut self, now: Instant) {
        self.missed = 0;
        self.last_ping = None;
        self.rtt = RttEstimator::default();
        self.next_ping = now;
    }

    /// Runs the keep-alive schedule at `now`.
    pub fn tick(&mut self, now: Instant) -> Tick {
        if now < self.next_ping {
            return Tick::NotDue;
        }
        let mut newly_stale = false;
        if let Some((_, sent)) = self.last_ping
            && self.last_heard < sent
        {
            self.missed += 1;
            if self.missed >= self.missed_limit {
                return Tick::Dead;
            }
            newly_stale = self.missed == 1;
        }
        let nonce = self.last_ping.map_or(1, |(n, _)| n + 1);
        self.last_ping = Some((nonce, now));
        self.next_ping = now + self.interval;
        Tick::Ping { nonce, newly_stale }
    }

    /// A pong arrived. Our peers echo the nonce; a seed peer's pong
    /// (`seed`: neither nonce nor extensions) answers the outstanding ping.
    /// Returns the smoothed RTT when it answered our ping.
    pub fn pong(&mut self, nonce: Option<u64>, seed: bool, now: Instant) -> Option<Duration> {
        let (expected, sent) = self.last_ping?;
        if !seed && nonce != Some(expected) {
            return None;
        }
        self.last_ping = None;
        self.rtt.sample(now.saturating_duration_since(sent));
        self.rtt.srtt
    }

    /// Folds in an RTT sample from elsewhere (an acknowledged message).
    pub fn sample(&mut self, rtt: Duration) {
        self.rtt.sample(rtt);
    }

    /// Keep-alive intervals in a row without an answer.
    pub fn missed(&self) -> u32 {
        self.missed
    }

    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// When [`Liveness::tick`] has work next.
    pub fn next_deadline(&self) -> Instant {
        self.next_ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(1);

    #[test]
    fn silent_peer_goes_stale_then_dead_at_the_limit() {
        let t0 = Instant::now();
        let mut l = Liveness::new(INTERVAL, 3, t0);
        assert_eq!(l.tick(t0), Tick::NotDue);
        let at = |n: u32| t0 + INTERVAL * n;
        let ping = |nonce, newly_stale| Tick::Ping { nonce, newly_stale };
        assert_eq!(l.tick(at(1)), ping(1, false));
        assert_eq!(l.tick(at(2)), ping(2, true));
        assert_eq!(l.tick(at(3)), ping(3, false));
        assert_eq!(l.missed(), 2);
        assert_eq!(l.tick(at(4)), Tick::Dead, "third silent interval");
    }

    #[test]
    fn answered_pings_measure_rtt_and_reset_missed() {
        let t0 = Instant::now();
        let mut l = Liveness::new(INTERVAL, 3, t0);
        l.connected(t0, None);
        assert_eq!(l.next_deadline(), t0, "no RTT yet: ping at once");
        let Tick::Ping { nonce, .. } = l.tick(t0) else {
            panic!("ping due")
        };
        let later = t0 + Duration::from_millis(30);
        assert_eq!(l.pong(Some(nonce + 1), false, later), None, "wrong nonce");
        assert_eq!(
            l.pong(Some(nonce), false, later),
            Some(Duration::from_millis(30))
        );
        assert_eq!(l.pong(Some(nonce), false, later), None, "answered once");
        // A seed pong (no nonce) answers whatever is outstanding.
        let t1 = t0 + INTERVAL;
        assert!(matches!(
            l.tick(t1),
            Tick::Ping {
                newly_stale: false,
                ..
            }
        ));
        assert!(l.pong(None, true, t1 + Duration::from_millis(30)).is_some());
        l.new_path(t1);
        assert_eq!(l.srtt(), None);
        assert_eq!(l.next_deadline(), t1);
        let mut l = Liveness::new(INTERVAL, 3, t0);
        l.connected(t0, Some(Duration::from_millis(5)));
        assert_eq!(l.next_deadline(), t0 + INTERVAL);
    }
}
