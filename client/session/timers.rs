//! Time-driven work: the connecting and connected schedules of the path,
//! keep-alive, retransmission.

use tokio::time::Instant;

use super::liveness::Tick;
use super::path::Probe;
use super::{CloseReason, PathKind, Phase, Session, SessionEvent};
use crate::wire::{Announce, Header, Ping};

impl Session {
    /// Runs every timer that is due at `now`: probes, attempts, keep-alive,
    /// retransmissions.
    pub fn poll_timers(&mut self, now: Instant) {
        self.clock = now;
        match self.phase {
            Phase::Closed => {}
            Phase::Probing => {
                let probes = self.path.poll_connecting(now);
                self.run_probes(probes);
            }
            Phase::Connected => {
                self.poll_keepalive(now);
                if self.phase != Phase::Connected {
                    return;
                }
                self.poll_retransmits(now);
                let probes = self.path.poll_connected(now, self.reliable());
                self.run_probes(probes);
            }
        }
    }

    /// The earliest instant at which [`Session::poll_timers`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            Phase::Probing => self.path.next_deadline(false),
            Phase::Connected => {
                let mut at = self.liveness.next_deadline();
                if let Some(r) = self.send.next_deadline() {
                    at = at.min(r);
                }
                if let Some(p) = self.path.next_deadline(self.reliable()) {
                    at = at.min(p);
                }
                Some(at)
            }
        }
    }

    fn run_probes(&mut self, probes: Vec<Probe>) {
        for probe in probes {
            match probe {
                // The callee of an encrypted session only primes while it
                // waits for the first message: the caller's full probes then
                // find our mapping open, and nothing of ours reaches the
                // caller's NAT before the caller's own first probe (which
                // would make a Linux NAT move the caller's port, see
                // PRIME_TTL). The relay is probed in full.
                Probe::Hello(addr)
                    if self.awaits_initiator() && self.path_of(addr) != PathKind::Relayed =>
                {
                    self.prime_hello(addr)
                }
                Probe::Hello(addr) => self.send_hello(addr),
                Probe::Prime(addr) => self.prime_hello(addr),
                Probe::Attempt(attempt) => self.emit(SessionEvent::Probing { attempt }),
                Probe::NeedRelay => self.emit(SessionEvent::NeedRelay),
                Probe::GiveUp => {
                    self.finish(CloseReason::Unreachable);
                    return;
                }
            }
        }
    }

    fn poll_keepalive(&mut self, now: Instant) {
        let nonce = match self.liveness.tick(now) {
            Tick::NotDue => return,
            Tick::Dead => {
                self.finish(CloseReason::Timeout);
                return;
            }
            Tick::Ping { nonce, newly_stale } => {
                if newly_stale && self.reliable() {
                    // Recover before the limit: probe every path (the relay
                    // included, once there is one) and let the engine
                    // refresh the rendezvous; any path that answers takes
                    // over.
                    let window = self.config.keepalive_interval * self.config.missed_pong_limit;
                    self.path.recover(now, window);
                    self.emit(SessionEvent::Stale);
                }
                nonce
            }
        };
        let Some(addr) = self.path.addr() else { return };
        // Announced on every control datagram, so whichever of them reaches
        // a still-probing peer first tells it what we speak.
        let ping = Ping {
            header: Header::now(self.local_id),
            nonce: Some(nonce),
            announce: Announce::ours(self.local_session),
        };
        self.send(&ping.into(), addr);
    }

    pub(super) fn poll_retransmits(&mut self, now: Instant) {
        let Some(addr) = self.path.addr() else { return };
        for message in self.send.due(now, self.liveness.rto()) {
            self.send(&message.into(), addr);
        }
    }
}
