//! What the signaling server tells us: peer list changes (the directory),
//! connect requests from peers, rendezvous answers, and the server's own
//! state.

use tokio::time::Instant;

use super::{Core, RendezvousDone};
use crate::engine::api::{ErrorCode, Event};
use crate::session::Phase;
use crate::signaling::{RemotePeer, SignalEvent};

impl Core {
    /// The answer to a [`Task::Rendezvous`].
    pub fn on_rendezvous(&mut self, done: RendezvousDone, now: Instant) {
        self.rendezvous_done(done, now);
        self.flush(now);
    }

    fn rendezvous_done(&mut self, done: RendezvousDone, now: Instant) {
        let (peer, notified) = match done.result {
            Ok(found) => found,
            Err(err) => {
                // Probe what we know anyway: a seed-style peer accepts
                // hellos without a rendezvous.
                tracing::warn!(%err, "connect request failed; probing known endpoints");
                (done.target, false)
            }
        };
        tracing::info!(peer = %peer.peer_id, notified, endpoints = ?peer.endpoints, "rendezvous");
        if let Some(session) = self.sessions.get_mut(&peer.peer_id) {
            session.add_candidates(peer.endpoints.iter().copied());
            return;
        }
        if !done.create {
            return;
        }
        if peer.endpoints.is_empty() {
            let message = format!(
                "could not reach peer {}: it has no known address",
                self.display_name(peer.peer_id)
            );
            self.emit(Event::Error {
                id: done.request,
                code: ErrorCode::Unreachable,
                message,
            });
            return;
        }
        if !self.may_open_session() {
            self.session_limit(done.request, peer.peer_id);
            return;
        }
        self.directory.remember(&peer);
        self.open_outgoing(&peer, true, done.request, now);
    }

    /// An event from the signaling client.
    pub fn on_signal(&mut self, signal: SignalEvent, now: Instant) {
        match signal {
            SignalEvent::Registered(_) => {
                if !std::mem::replace(&mut self.server_up, true) {
                    self.emit(Event::ServerRestored {});
                }
            }
            SignalEvent::Lost { error } => {
                if std::mem::replace(&mut self.server_up, false) {
                    self.emit(Event::ServerLost { error });
                }
            }
            SignalEvent::Snapshot(peers) => {
                let first = !self.directory.has_snapshot();
                for event in self.directory.replace(peers) {
                    self.emit(event);
                }
                if first {
                    for (id, target, wait) in std::mem::take(&mut self.deferred) {
                        if wait {
                            self.connect_when_online(id, &target, now);
                        } else {
                            self.connect(id, &target);
                        }
                    }
                } else {
                    self.retry_awaited(true, now);
                }
            }
            SignalEvent::Joined(peer) | SignalEvent::Updated(peer) => {
                self.on_peer_update(peer);
                self.retry_awaited(true, now);
            }
            SignalEvent::Left(peer) => {
                if let Some(session) = self.sessions.get_mut(&peer.peer_id) {
                    session.peer_left();
                }
                if self.directory.remove(peer.peer_id).is_some() {
                    self.emit(Event::PeerLeft {
                        peer_id: peer.peer_id,
                        username: peer.username,
                    });
                }
            }
            SignalEvent::ConnectRequested { from } => self.on_connect_requested(&from, now),
        }
        self.flush(now);
    }

    fn on_peer_update(&mut self, peer: RemotePeer) {
        if peer.peer_id == self.me {
            return;
        }
        if let Some(session) = self.sessions.get_mut(&peer.peer_id)
            && session.phase() == Phase::Probing
        {
            session.add_candidates(peer.endpoints.iter().copied());
        }
        let event = Event::PeerJoined {
            peer_id: peer.peer_id,
            username: peer.username.clone(),
        };
        if self.directory.upsert(peer) {
            self.emit(event);
        }
    }

    fn on_connect_requested(&mut self, from: &RemotePeer, now: Instant) {
        if from.peer_id == self.me {
            return;
        }
        tracing::info!(peer = %from.peer_id, "connect requested");
        self.directory.remember(from);
        if let Some(session) = self.sessions.get_mut(&from.peer_id) {
            // The peer asks again while we have a session: its path went
            // stale (e.g. its NAT mapping changed). Probe its fresh
            // endpoints so our NAT opens towards them.
            session.add_candidates(from.endpoints.iter().copied());
            session.reprobe(now);
            return;
        }
        if !self.may_open_session() {
            tracing::warn!("session limit reached; connect request ignored");
            return;
        }
        self.open_outgoing(from, false, None, now);
    }
}
