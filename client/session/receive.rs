//! Incoming datagrams: which are accepted from where, what each kind does
//! to which layer.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::{CloseReason, Phase, Session, SessionEvent};
use crate::wire::{Announce, Datagram, Header, Pong};

impl Session {
    /// Handles one plaintext datagram from `addr` whose `from` is this
    /// session's remote peer. A Noise session looks only at the handshake
    /// in it (see `secure.rs`); a plaintext (seed) session takes it as the
    /// seed does, though once connected only from the session's address.
    pub fn handle_datagram(&mut self, dg: &Datagram, addr: SocketAddr, now: Instant) {
        self.clock = now;
        if self.is_encrypted() {
            self.handle_handshake(dg, addr, now);
            return;
        }
        if self.phase == Phase::Connected
            && self.path.addr().is_some_and(|current| current != addr)
            && !self.reliable()
        {
            // A seed peer has no path probing: anything from elsewhere
            // claiming its id is a stranger's.
            tracing::debug!(%addr, kind = ?dg.kind(), "plaintext datagram from another address dropped");
            return;
        }
        self.process(dg, addr, now, false);
    }

    /// One datagram of this peer: plaintext of a seed session, or opened
    /// by the session's keys (`trusted`).
    pub(super) fn process(&mut self, dg: &Datagram, addr: SocketAddr, now: Instant, trusted: bool) {
        if self.phase == Phase::Closed || dg.from() != self.remote_id {
            return;
        }
        if self.phase == Phase::Connected
            && Some(addr) != self.path.addr()
            && !self.accept_off_path(dg, addr, now)
        {
            return;
        }
        if self.phase == Phase::Probing {
            let handshake = trusted || matches!(dg, Datagram::Hello(_) | Datagram::Pong(_));
            if !self.path.accepts_while_connecting(addr, handshake) {
                tracing::debug!(%addr, kind = ?dg.kind(), "dropping non-handshake datagram from unprobed address");
                return;
            }
            if let Datagram::Disconnect(_) = dg {
                self.finish(CloseReason::RemoteDisconnect);
                return;
            }
        }
        // Liveness is the current path's: traffic over another validated
        // path (e.g. the relay, while the peer has not switched yet) must not
        // hide that ours went dead.
        if self.phase == Phase::Probing || Some(addr) == self.path.addr() {
            self.liveness.heard(now);
        }
        self.learn(dg);
        if self.phase == Phase::Probing {
            self.establish(dg, addr, now);
        }
        match dg {
            Datagram::Hello(_) => self.send_pong(addr, None),
            Datagram::Ping(ping) => self.send_pong(addr, ping.nonce),
            Datagram::Pong(pong) => self.receive_pong(pong, now),
            Datagram::Message(message) => self.receive_message(message, addr),
            Datagram::Ack(ack) => self.receive_ack(ack, now),
            Datagram::Disconnect(_) => self.finish(CloseReason::RemoteDisconnect),
        }
    }

    /// A datagram from an address other than the current path while
    /// connected. Hellos and pongs there are path probing (answered or
    /// validated here); anything else is processed only over a path known
    /// to work (e.g. the peer switched before us). True: carry on with it.
    fn accept_off_path(&mut self, dg: &Datagram, addr: SocketAddr, now: Instant) -> bool {
        let same_session = match (self.remote_session, dg.session_id()) {
            (Some(known), Some(got)) => known == got,
            _ => true,
        };
        match dg {
            Datagram::Hello(_) => {
                // The peer probes us over another path: answer, and probe
                // back (a triggered check) when that path would be better
                // or ours went quiet, so both NATs open.
                self.send_pong(addr, None);
                if same_session && self.reliable() {
                    self.path.add_candidates([addr]);
                    if self.path.is_better(addr) || self.liveness.missed() > 0 {
                        self.send_hello(addr);
                    }
                }
                false
            }
            Datagram::Pong(_) if same_session && self.reliable() => {
                // A round trip over `addr` works.
                self.path.mark_validated(addr);
                if self.path.is_better(addr) || self.liveness.missed() > 0 {
                    self.switch_path(addr, now);
                }
                self.liveness.heard_elsewhere(now);
                false
            }
            _ if self.path.is_known(addr) => true,
            _ => {
                tracing::debug!(%addr, kind = ?dg.kind(), "dropping datagram from unexpected address");
                false
            }
        }
    }

    /// Records what the peer announces: extensions, name, session id.
    fn learn(&mut self, dg: &Datagram) {
        if let Some(ext) = dg.announced_extensions() {
            self.negotiated.announced(ext);
        } else if let Datagram::Hello(_) = dg {
            // A hello without the field: a seed peer; plain messages only.
            self.negotiated.seed();
        }
        if let Datagram::Hello(hello) = dg
            && let Some(name) = &hello.username
        {
            self.remote_username = Some(name.clone());
        }
        if let Some(session) = dg.session_id() {
            self.remote_session = Some(session);
        }
    }

    /// The first datagram accepted while probing connects the session.
    fn establish(&mut self, dg: &Datagram, addr: SocketAddr, now: Instant) {
        self.phase = Phase::Connected;
        // A pong answers our latest probe round: a first RTT estimate.
        let answer = matches!(dg, Datagram::Pong(_));
        let probe_rtt = self.path.connected(addr, answer, now);
        self.liveness.connected(now, probe_rtt);
        // Message ids prove the sender negotiated reliability with us.
        if let Datagram::Message(m) = dg
            && m.id.is_some()
        {
            self.negotiated.implied_by_message_id();
        }
        let reliable = self.reliable();
        let rtt = self.liveness.srtt();
        let path = self.path_of(addr);
        let encrypted = self.is_encrypted();
        self.emit(SessionEvent::Connected {
            addr,
            path,
            reliable,
            rtt,
            encrypted,
        });
    }

    fn receive_pong(&mut self, pong: &Pong, now: Instant) {
        let seed = pong.nonce.is_none() && pong.announce.extensions.is_none();
        // Reported per keep-alive round only; ack samples refine the
        // estimate silently (they come per message).
        if let Some(rtt) = self.liveness.pong(pong.nonce, seed, now) {
            self.emit(SessionEvent::Rtt { rtt });
        }
    }

    /// Answers a hello (`nonce` none) or a ping, announcing what we speak.
    fn send_pong(&mut self, addr: SocketAddr, nonce: Option<u64>) {
        let pong = Pong {
            header: Header::now(self.local_id),
            nonce,
            announce: Announce::ours(self.local_session),
        };
        self.send(&pong.into(), addr);
    }

    /// Moves the session to `addr`: in-flight messages are resent there at
    /// once (the receiver drops duplicates by id), the RTT is measured anew.
    fn switch_path(&mut self, addr: SocketAddr, now: Instant) {
        let from = self.path.addr();
        self.path.switch(addr, now);
        self.liveness.new_path(now);
        self.send.restart(now);
        let path = self.path_of(addr);
        tracing::info!(?from, to = %addr, path = path.as_str(), "session path changed");
        self.emit(SessionEvent::PathChanged { addr, path });
        self.poll_retransmits(now);
    }
}
