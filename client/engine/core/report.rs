//! Turning what sessions want into outputs: their datagrams become sends
//! (wrapped for the relay when they go there), their events become front-end
//! events, and closed sessions leave the table.

use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::time::Instant;

use super::{Core, Output, Task};
use crate::engine::api::{ErrorCode, Event, Path, RequestId, SessionState, SessionStatus};
use crate::identity::SafetyNumber;
use crate::session::{Action, CloseReason, Phase, SessionEvent};

impl Core {
    /// Collects every session's actions: sends, events, closings.
    pub(super) fn flush(&mut self, now: Instant) {
        let mut actions = std::mem::take(&mut self.orphaned);
        let mut closed = Vec::new();
        // Pending handshakes only ever send (their answer): no events.
        for pending in &mut self.pending {
            let id = pending.session.remote_id();
            actions.extend(
                pending
                    .session
                    .take_actions()
                    .into_iter()
                    .filter(|a| !matches!(a, Action::Event(_)))
                    .map(|a| (id, a)),
            );
        }
        self.pending.retain(|p| p.session.phase() != Phase::Closed);
        for (id, session) in self.sessions.iter_mut() {
            for action in session.take_actions() {
                // A probe of a capped session to an address that never
                // answered also takes from the budget all such sessions
                // share; past it, it is not sent.
                let unanswered_probe = match &action {
                    Action::Send { to, .. } | Action::Prime { to, .. } => {
                        session.probes_capped() && !session.knows_path(*to)
                    }
                    Action::Event(_) => false,
                };
                if unanswered_probe && !self.unsolicited_probes.take(now) {
                    continue;
                }
                actions.push((*id, action));
            }
            if session.phase() == Phase::Closed {
                closed.push(*id);
            }
        }
        let mut reports = Vec::new();
        for (id, action) in actions {
            match action {
                // Primes go first, like the sends queued before them.
                Action::Prime { to, bytes } => self.outputs.push(Output::Prime { to, bytes }),
                Action::Send { to, bytes } => self.send(id, to, bytes),
                Action::Event(event) => reports.push((id, event)),
            }
        }
        for (id, event) in reports {
            self.report(id, event, now);
        }
        for id in closed {
            if let Some(session) = self.sessions.remove(&id) {
                self.tombstones.bury(id, session.remote_session_id(), now);
            }
            self.release_relay(id);
            if let Some(change) = self.focus.ended(id) {
                self.emit(Event::Focus { peer_id: change });
            }
        }
        self.close_refused(now);
    }

    /// Queues a datagram for `peer`, through the relay when `to` is it.
    pub(super) fn send(&mut self, peer: PeerId, to: SocketAddr, bytes: Vec<u8>) {
        let relayed = self.relay.as_ref().filter(|r| r.server() == to);
        let bytes = match relayed {
            None => bytes,
            Some(relay) => match relay.wrap(peer, &bytes) {
                Some(frame) => frame,
                None => {
                    tracing::debug!(%peer, "relay not ready; datagram dropped");
                    return;
                }
            },
        };
        self.outputs.push(Output::Send { to, bytes });
    }

    fn report(&mut self, id: PeerId, event: SessionEvent, now: Instant) {
        let username = self.display_name(id);
        let out = match event {
            SessionEvent::Probing { attempt } => match self.probing(id, username, attempt) {
                Some(event) => event,
                None => return,
            },
            SessionEvent::Connected { .. } => {
                if !self.check_pin(id) {
                    return;
                }
                if let Some(event) = self.connected_event(id) {
                    self.emit(event);
                }
                if let Some(change) = self.focus.came_up(id) {
                    self.emit(Event::Focus { peer_id: change });
                }
                return;
            }
            SessionEvent::Message { text, sent_at } => Event::Message {
                from: id,
                username,
                text,
                sent_at,
                encrypted: self.sessions.get(&id).is_some_and(|s| s.is_encrypted()),
            },
            SessionEvent::Delivered { line } => Event::Delivered { to: id, line },
            SessionEvent::Undeliverable { line } => Event::Undeliverable { to: id, line },
            SessionEvent::Rtt { rtt } => Event::Rtt {
                peer_id: id,
                rtt_ms: millis(rtt),
            },
            SessionEvent::NeedRelay => {
                self.request_relay(id, now);
                return;
            }
            SessionEvent::Stale => {
                tracing::info!(peer = %id, "path went quiet; refreshing the rendezvous");
                self.request_relay(id, now);
                self.refresh_path(id, now);
                return;
            }
            SessionEvent::PathChanged { addr, .. } => Event::PathChanged {
                peer_id: id,
                addr: addr.to_string(),
                path: self.path_of(id, addr),
            },
            SessionEvent::Closed { reason } => {
                if reason == CloseReason::Unreachable {
                    let message = format!(
                        "could not reach peer {username} after {} attempts",
                        self.session_config.connect_attempts
                    );
                    self.emit(Event::error(ErrorCode::Unreachable, message));
                }
                Event::Disconnected {
                    peer_id: id,
                    username,
                    reason: reason.into(),
                }
            }
        };
        self.emit(out);
    }

    /// What a connect attempt shows: `Connecting` to the caller; the
    /// called side is told once that the peer is connecting ("connecting
    /// to" would be wrong, and its retries are the caller's business).
    fn probing(&mut self, id: PeerId, username: String, attempt: u32) -> Option<Event> {
        if attempt > 1 && self.server_up {
            // A fresh rendezvous per attempt: the target may have missed
            // the first one (e.g. its inbox was reconnecting) or moved;
            // its answer adds any new endpoints.
            self.rendezvous_again(id);
        }
        if self.focus.is_incoming(id) {
            return (attempt == 1).then(|| Event::Info {
                message: format!("{username} is connecting..."),
            });
        }
        Some(Event::Connecting {
            peer_id: id,
            username,
            attempt,
            endpoints: self
                .sessions
                .get(&id)
                .map(|s| s.candidates().iter().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
        })
    }

    /// A fresh rendezvous with a peer we already have a session with.
    pub(super) fn rendezvous_again(&mut self, peer: PeerId) {
        if !self.server_up {
            return;
        }
        if let Some(info) = self.directory.get(peer).cloned() {
            self.outputs.push(Output::Task(Task::Rendezvous {
                target: info,
                create: false,
                request: None,
            }));
        }
    }

    pub(super) fn connected_event(&self, id: PeerId) -> Option<Event> {
        let session = self.sessions.get(&id)?;
        let addr = session.addr()?;
        Some(Event::Connected {
            peer_id: id,
            username: self.display_name(id),
            addr: addr.to_string(),
            path: self.path_of(id, addr),
            rtt_ms: session.rtt().map(millis),
            reliable: session.reliable(),
            incoming: self.focus.is_incoming(id),
            probe_rounds: session.probe_rounds(),
            encrypted: session.is_encrypted(),
            safety_number: self.safety_number(session),
        })
    }

    /// Our and the peer's key as a safety number, once its key is proven.
    fn safety_number(&self, session: &crate::session::Session) -> Option<String> {
        let theirs = session.security().remote_key?;
        Some(SafetyNumber::new(&self.identity.public_key(), &theirs).to_string())
    }

    pub(super) fn status(&self, id: Option<RequestId>) -> Event {
        let mut sessions: Vec<SessionStatus> = self
            .sessions
            .iter()
            .map(|(peer, s)| SessionStatus {
                peer_id: *peer,
                username: self.display_name(*peer),
                state: match s.phase() {
                    Phase::Probing => SessionState::Probing,
                    Phase::Connected => SessionState::Connected,
                    Phase::Closed => SessionState::Closed,
                },
                active: self.focus.active() == Some(*peer),
                addr: s.addr().map(|a| a.to_string()),
                path: s.addr().map(|a| self.path_of(*peer, a)),
                rtt_ms: s.rtt().map(millis),
                reliable: s.reliable(),
                pending: s.pending_lines(),
                encrypted: s.is_encrypted(),
                safety_number: self.safety_number(s),
            })
            .collect();
        sessions.sort_by_key(|s| s.peer_id);
        Event::Status {
            id,
            server_connected: self.server_up,
            sessions,
        }
    }

    /// Relayed through the server's relay; LAN when the address is
    /// private/loopback or one the peer registered as its own interface
    /// address; direct otherwise.
    pub(super) fn path_of(&self, id: PeerId, addr: SocketAddr) -> Path {
        let kind = self
            .sessions
            .get(&id)
            .map_or_else(|| crate::session::PathKind::of(addr), |s| s.path_of(addr));
        let path = Path::from(kind);
        if path != Path::Relayed && self.directory.is_own_interface(id, addr) {
            Path::Lan
        } else {
            path
        }
    }
}

/// Milliseconds, rounded to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
