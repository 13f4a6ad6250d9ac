//! Path selection and NAT traversal: the candidate addresses, hello probing
//! while connecting (with a priming first round), the addresses proven to
//! answer, and while connected the search for a better path (relayed ->
//! direct -> LAN) and recovery when the current one goes quiet.
//!
//! Sans-IO: the schedule returns [`Probe`]s; the session turns them into
//! hellos. Whether a path is the session's *current* one is decided here
//! ([`Path::addr`]); liveness decides when it is dead.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::SessionConfig;

/// Most addresses probed for one peer; the rest of a longer list (which a
/// sane server never sends) is ignored.
pub const MAX_CANDIDATES: usize = 16;

/// Most candidates probed for a peer that asked the server to connect to
/// us (a connect request: the endpoints are whatever the caller
/// registered, possibly someone else's addresses). Our own peers register
/// their interfaces, their STUN address and the one the server saw, so a
/// host with one or two interfaces fits; public candidates come first
/// ([`Path::cap_unsolicited`]).
pub const MAX_UNSOLICITED_CANDIDATES: usize = 4;

/// Probes (primes and hellos together) one candidate that has not answered
/// gets per rendezvous of a session a peer asked for: enough to open our
/// NAT towards it (the caller's own probes then get in, and we answer
/// those at once), too few to make us a reflector. A new connect request
/// or a recovery is a new rendezvous (the server rate-limits those). With
/// [`MAX_UNSOLICITED_CANDIDATES`] and `wire::MAX_PROBE_HELLO_BYTES` this
/// bounds what one connect request makes us send to addresses that never
/// answer: 4 x 3 x 240 = 2,880 bytes, 19.6 times the 147 bytes of a
/// `RequestConnect` (about 2,300 bytes, 15.7x, with a short name). The relay and addresses that
/// answered are not limited.
pub const MAX_PROBES_PER_CANDIDATE: u32 = 3;

/// Most addresses a connected session remembers as answering (validated
/// paths it accepts traffic from).
pub const MAX_VALIDATED_PATHS: usize = 8;

/// First pause between two background probes for a better path (relayed ->
/// direct -> LAN) while connected; it doubles up to [`UPGRADE_PROBE_MAX`].
pub const UPGRADE_PROBE_MIN: Duration = Duration::from_secs(1);

/// Longest pause between two background probes for a better path.
pub const UPGRADE_PROBE_MAX: Duration = Duration::from_secs(15);

/// How the session's datagrams travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// To a private, link-local or loopback address: same LAN or host.
    Lan,
    /// To a public address, directly (hole punched).
    Direct,
    /// Through the signaling server's relay.
    Relayed,
}

impl PathKind {
    /// Classifies the address the session settled on.
    pub fn of(addr: SocketAddr) -> PathKind {
        let private = match addr.ip() {
            std::net::IpAddr::V4(ip) => {
                ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified()
            }
            std::net::IpAddr::V6(ip) => {
                ip.is_loopback()
                    || ip.is_unspecified()
                    || (ip.segments()[0] & 0xfe00) == 0xfc00
                    || (ip.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        if private {
            PathKind::Lan
        } else {
            PathKind::Direct
        }
    }

    /// Name used in events and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Lan => "lan",
            PathKind::Direct => "direct",
            PathKind::Relayed => "relayed",
        }
    }

    /// Preference order: lower is better (LAN, then direct, then relayed).
    fn rank(self) -> u8 {
        match self {
            PathKind::Lan => 0,
            PathKind::Direct => 1,
            PathKind::Relayed => 2,
        }
    }
}

/// One thing the probing schedule wants sent or reported, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A hello to this address.
    Hello(SocketAddr),
    /// A hello with a low TTL (see [`super::PRIME_TTL`]).
    Prime(SocketAddr),
    /// Connect attempt number `n` (1-based) starts.
    Attempt(u32),
    /// Probing found nothing within `relay_after`: ask for a relay.
    NeedRelay,
    /// Every connect attempt went unanswered.
    GiveUp,
}

/// The path state of one session. See the module docs.
#[derive(Debug)]
pub struct Path {
    probe_interval: Duration,
    attempt_duration: Duration,
    connect_attempts: u32,
    relay_after: Duration,
    /// Addresses to probe.
    candidates: Vec<SocketAddr>,
    /// Most candidates kept ([`MAX_CANDIDATES`], or
    /// [`MAX_UNSOLICITED_CANDIDATES`]).
    max_candidates: usize,
    /// Probes one unanswered candidate gets per rendezvous, when limited
    /// ([`MAX_PROBES_PER_CANDIDATE`]); and how many each got so far.
    probe_budget: Option<u32>,
    probes_sent: Vec<(SocketAddr, u32)>,
    /// The relay's address, once the engine set one up (also a candidate).
    relay: Option<SocketAddr>,
    /// The address the session settled on; `None` while connecting.
    addr: Option<SocketAddr>,
    /// Addresses that answered our probes: traffic from them is accepted.
    validated: Vec<SocketAddr>,
    /// When probing started (for `relay_after`).
    probing_since: Instant,
    /// Hello rounds sent while connecting.
    probe_rounds: u32,
    relay_requested: bool,
    /// Next background probe for a better path, and the pause after it.
    next_upgrade: Instant,
    upgrade_pause: Duration,
    /// Background upgrade rounds so far (the first one only primes).
    upgrade_rounds: u32,
    /// While set, every candidate is probed each `probe_interval` (the path
    /// went stale or the peer asked for a new rendezvous).
    recover_until: Option<Instant>,
    attempt: u32,
    attempt_deadline: Instant,
    next_probe: Instant,
    last_probe: Option<Instant>,
}

impl Path {
    /// A path that starts connecting to `candidates` at `now`.
    pub fn new(config: &SessionConfig, candidates: Vec<SocketAddr>, now: Instant) -> Path {
        Path {
            probe_interval: config.probe_interval,
            attempt_duration: config.attempt_duration,
            connect_attempts: config.connect_attempts,
            relay_after: config.relay_after,
            candidates: dedup(candidates, MAX_CANDIDATES),
            max_candidates: MAX_CANDIDATES,
            probe_budget: None,
            probes_sent: Vec::new(),
            relay: None,
            addr: None,
            validated: Vec::new(),
            probing_since: now,
            probe_rounds: 0,
            relay_requested: false,
            next_upgrade: now + UPGRADE_PROBE_MIN,
            upgrade_pause: UPGRADE_PROBE_MIN,
            upgrade_rounds: 0,
            recover_until: None,
            attempt: 1,
            attempt_deadline: now + config.attempt_duration,
            next_probe: now,
            last_probe: None,
        }
    }

    /// The current path, once connected.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The addresses probed.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// Hello rounds sent before the session connected.
    pub fn probe_rounds(&self) -> u32 {
        self.probe_rounds
    }

    /// The kind of path `addr` is.
    pub fn kind_of(&self, addr: SocketAddr) -> PathKind {
        if self.relay == Some(addr) {
            PathKind::Relayed
        } else {
            PathKind::of(addr)
        }
    }

    /// Whether `addr` ranks better than the current path.
    pub fn is_better(&self, addr: SocketAddr) -> bool {
        self.addr
            .is_some_and(|cur| self.kind_of(addr).rank() < self.kind_of(cur).rank())
    }

    /// Whether `addr` is a path known to work (validated, or the relay).
    pub fn is_known(&self, addr: SocketAddr) -> bool {
        self.validated.contains(&addr) || self.relay == Some(addr)
    }

    /// Whether a datagram of the handshake (`handshake`) or not may come
    /// from `addr` while connecting: from an address we did not probe, only
    /// the handshake itself may open the path (the peer's NAT may map it
    /// elsewhere).
    pub fn accepts_while_connecting(&self, addr: SocketAddr, handshake: bool) -> bool {
        handshake || self.candidates.contains(&addr)
    }

    /// Adds probe targets (e.g. endpoints from a later rendezvous).
    pub fn add_candidates(&mut self, candidates: impl IntoIterator<Item = SocketAddr>) {
        self.candidates.extend(candidates);
        self.candidates = dedup(std::mem::take(&mut self.candidates), self.max_candidates);
        // The relay is never crowded out by a long list.
        if let Some(relay) = self.relay
            && !self.candidates.contains(&relay)
        {
            self.candidates.push(relay);
        }
    }

    /// Limits probing for a session a peer asked for (see
    /// [`MAX_UNSOLICITED_CANDIDATES`], [`MAX_PROBES_PER_CANDIDATE`]): at most
    /// that many candidates, public addresses first (in their order), then
    /// the others; each probed at most the budget per rendezvous until it
    /// answers.
    pub fn cap_unsolicited(&mut self) {
        let (public, private): (Vec<SocketAddr>, Vec<SocketAddr>) = self
            .candidates
            .iter()
            .partition(|a| PathKind::of(**a) == PathKind::Direct);
        self.max_candidates = MAX_UNSOLICITED_CANDIDATES;
        self.candidates = dedup(
            public.into_iter().chain(private).collect(),
            self.max_candidates,
        );
        self.probe_budget = Some(MAX_PROBES_PER_CANDIDATE);
    }

    /// Whether probing is limited ([`Path::cap_unsolicited`]).
    pub fn is_capped(&self) -> bool {
        self.probe_budget.is_some()
    }

    /// A new rendezvous (a connect request again, a recovery): each
    /// candidate gets its probe budget again.
    pub fn new_rendezvous(&mut self) {
        self.probes_sent.clear();
    }

    /// Whether a probe to `addr` is within its budget; counts it if so.
    fn may_probe(&mut self, addr: SocketAddr) -> bool {
        let Some(budget) = self.probe_budget else {
            return true;
        };
        if self.is_known(addr) {
            return true;
        }
        match self.probes_sent.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, sent)) if *sent >= budget => false,
            Some((_, sent)) => {
                *sent += 1;
                true
            }
            None => {
                self.probes_sent.push((addr, 1));
                true
            }
        }
    }

    /// The relay at `relay` became a candidate, ranked last. While
    /// connecting, probing gets a fresh attempt window so it can answer.
    pub fn add_relay(&mut self, relay: SocketAddr, now: Instant) {
        self.relay = Some(relay);
        self.add_candidates([relay]);
        if self.addr.is_none() {
            self.attempt_deadline = self.attempt_deadline.max(now + self.attempt_duration);
            self.next_probe = now;
        } else if self.recover_until.is_some() {
            self.next_probe = now;
        }
    }

    /// The relay went away: it is no candidate nor validated path any more.
    pub fn drop_relay(&mut self) {
        if let Some(relay) = self.relay.take() {
            self.candidates.retain(|a| *a != relay);
            self.validated.retain(|a| *a != relay);
        }
    }

    /// Probe every candidate each `probe_interval` for `window`, starting
    /// now (the path went stale, or the peer asked for a new rendezvous).
    pub fn recover(&mut self, now: Instant, window: Duration) {
        self.new_rendezvous();
        self.recover_until = Some(now + window);
        self.next_probe = now;
    }

    /// `addr` answered while connecting: it becomes the current path.
    /// Returns the round trip of our latest probe round when `answer` says
    /// the datagram answered one (a pong).
    pub fn connected(&mut self, addr: SocketAddr, answer: bool, now: Instant) -> Option<Duration> {
        self.addr = Some(addr);
        self.mark_validated(addr);
        self.next_upgrade = now + UPGRADE_PROBE_MIN;
        let sent = self.last_probe.filter(|_| answer)?;
        Some(now.saturating_duration_since(sent))
    }

    /// Moves to `addr`; ends recovery and restarts the upgrade schedule.
    pub fn switch(&mut self, addr: SocketAddr, now: Instant) {
        self.addr = Some(addr);
        self.recover_until = None;
        self.upgrade_pause = UPGRADE_PROBE_MIN;
        self.next_upgrade = now + UPGRADE_PROBE_MIN;
    }

    /// Remembers that a round trip over `addr` works, forgetting the oldest
    /// beyond [`MAX_VALIDATED_PATHS`].
    pub fn mark_validated(&mut self, addr: SocketAddr) {
        if !self.validated.contains(&addr) {
            if self.validated.len() >= MAX_VALIDATED_PATHS {
                self.validated.remove(0);
            }
            self.validated.push(addr);
        }
    }

    /// The connecting schedule at `now`: attempts, the relay request, probe
    /// rounds.
    pub fn poll_connecting(&mut self, now: Instant) -> Vec<Probe> {
        let mut out = Vec::new();
        if now >= self.attempt_deadline {
            if self.attempt >= self.connect_attempts {
                return vec![Probe::GiveUp];
            }
            self.attempt += 1;
            self.attempt_deadline = now + self.attempt_duration;
            self.next_probe = now;
            out.push(Probe::Attempt(self.attempt));
        }
        if !self.relay_requested && now >= self.probing_since + self.relay_after {
            self.relay_requested = true;
            out.push(Probe::NeedRelay);
        }
        if now >= self.next_probe {
            self.probe_all(now, &mut out);
        }
        out
    }

    /// The connected schedule at `now`: recovery rounds, or background
    /// probes for a better path (`upgradable`: the peer speaks our
    /// extensions, so it answers from any address).
    pub fn poll_connected(&mut self, now: Instant, upgradable: bool) -> Vec<Probe> {
        let mut out = Vec::new();
        if let Some(until) = self.recover_until {
            if now >= until {
                self.recover_until = None;
            } else if now >= self.next_probe {
                self.probe_all(now, &mut out);
            }
        } else if now >= self.next_upgrade && self.wants_upgrade(upgradable) {
            // Both sides run this schedule from about the same moment;
            // priming alone in the first round means the other side's full
            // probes of later rounds find our mapping open (see PRIME_TTL).
            for addr in self.better_candidates() {
                out.push(Probe::Prime(addr));
                if self.upgrade_rounds > 0 {
                    out.push(Probe::Hello(addr));
                }
            }
            self.upgrade_rounds += 1;
            self.upgrade_pause = (self.upgrade_pause * 2).min(UPGRADE_PROBE_MAX);
            self.next_upgrade = now + self.upgrade_pause;
        }
        out
    }

    /// One hello round to every candidate.
    fn probe_all(&mut self, now: Instant, out: &mut Vec<Probe>) {
        // The first round of a connect only primes our own NAT; the other
        // side, told by the same rendezvous, primes its own meanwhile.
        let connecting = self.addr.is_none();
        let prime_only = connecting && self.probe_rounds == 0;
        if connecting {
            self.probe_rounds += 1;
        }
        for addr in self.candidates.clone() {
            if !self.may_probe(addr) {
                continue;
            }
            out.push(if prime_only && self.relay != Some(addr) {
                Probe::Prime(addr)
            } else {
                Probe::Hello(addr)
            });
        }
        self.next_probe = now + self.probe_interval;
        self.last_probe = Some(now);
    }

    /// When the schedule has work next (see [`Path::poll_connecting`] and
    /// [`Path::poll_connected`]).
    pub fn next_deadline(&self, upgradable: bool) -> Option<Instant> {
        if self.addr.is_none() {
            let mut at = self.next_probe.min(self.attempt_deadline);
            if !self.relay_requested {
                at = at.min(self.probing_since + self.relay_after);
            }
            Some(at)
        } else if self.recover_until.is_some() {
            Some(self.next_probe)
        } else if self.wants_upgrade(upgradable) {
            Some(self.next_upgrade)
        } else {
            None
        }
    }

    /// Candidates ranked better than the current path.
    fn better_candidates(&self) -> Vec<SocketAddr> {
        let Some(current) = self.addr else {
            return Vec::new();
        };
        self.candidates
            .iter()
            .copied()
            .filter(|a| *a != current && self.is_better(*a))
            .collect()
    }

    /// Whether background probing for a better path makes sense: only with
    /// peers that speak our extensions (a seed peer answers from one
    /// address only) and only while a better-ranked candidate exists.
    fn wants_upgrade(&self, upgradable: bool) -> bool {
        upgradable && !self.better_candidates().is_empty()
    }
}

/// Removes repeats, keeps the first `max` in order.
fn dedup(mut addrs: Vec<SocketAddr>, max: usize) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs.truncate(max);
    addrs
}

#[cfg(test)]
mod tests;
