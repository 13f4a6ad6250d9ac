//! Datagrams for sessions: which session (or pending handshake) a datagram
//! goes to, and the one rule for starting sessions.
//!
//! * Sealed datagrams are routed by the receiver index in their header to
//!   the session (or pending handshake) that owns it; only the keys of
//!   that session can open them.
//! * Plaintext from a key-derived id is only ever handshake traffic: it
//!   goes to the session's handshake, or a first handshake message opens a
//!   pending handshake (bounded by [`MAX_PENDING_HANDSHAKES`], never a
//!   session). A pending handshake becomes a session when the initiator
//!   proves it holds the keys; a new one of a peer we are in session with
//!   then replaces the old session.
//! * Plaintext from other ids is the seed's protocol, as before, unless
//!   `--require-encryption` refuses it.

use std::net::SocketAddr;
use std::time::Duration;

use p2pchat::PeerId;
use tokio::time::Instant;

use super::{Core, MAX_SESSIONS};
use crate::engine::api::{Event, RequestId};
use crate::secure::{is_first_message, receiver_index};
use crate::session::{Phase, Protection, Role, Session};
use crate::signaling::{PeerKey, RemotePeer};
use crate::wire::{Datagram, Kind};

/// Most handshakes answered and waiting for the initiator's proof, apart
/// from the [`MAX_SESSIONS`] sessions: strangers' first messages land here
/// and cannot fill the session table.
///
/// While strangers hold every slot, a direct caller the server did not
/// announce is refused too, until the oldest slot expires
/// ([`PENDING_HANDSHAKE_TIMEOUT`] after it was answered; the caller's
/// connect attempts, 3 x 2 s by default, may end first). A peer the server
/// announced (a connect request) has a session waiting for its first
/// message and never needs a slot.
pub const MAX_PENDING_HANDSHAKES: usize = 16;

/// Most pending handshakes of one peer id (a replayed older first message
/// must not push out the real one).
pub const MAX_PENDING_PER_PEER: usize = 2;

/// How long an answered handshake waits for the initiator's proof. Pending
/// handshakes run no timers (they never probe: a spoofed first message must
/// not make us send anything more than the one answer).
pub const PENDING_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A handshake we answered, waiting for the initiator's proof.
#[derive(Debug)]
pub(super) struct PendingHandshake {
    pub session: Session,
    pub since: Instant,
}

impl Core {
    /// A plaintext chat datagram (direct, or relayed on behalf of its
    /// sender).
    pub(super) fn on_chat(&mut self, dg: &Datagram, from: SocketAddr, now: Instant) {
        let peer = dg.from();
        if peer == self.me {
            tracing::debug!(%from, "dropping datagram claiming our own id");
            return;
        }
        if peer.is_key_derived() {
            self.on_handshake_datagram(dg, from, now);
            return;
        }
        if self.require_encryption {
            tracing::debug!(%from, %peer, "unencrypted peer refused (--require-encryption)");
            return;
        }
        self.on_seed_datagram(dg, from, now);
    }

    /// A sealed datagram: to the session owning its receiver index.
    pub(super) fn on_sealed(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let Some(index) = receiver_index(bytes) else {
            return;
        };
        if let Some(session) = self
            .sessions
            .values_mut()
            .find(|s| s.local_index() == Some(index))
        {
            session.handle_bytes(bytes, from, now);
            return;
        }
        let Some(pos) = self
            .pending
            .iter()
            .position(|p| p.session.local_index() == Some(index))
        else {
            tracing::debug!(%from, index, "sealed datagram for no session");
            return;
        };
        self.pending[pos].session.handle_bytes(bytes, from, now);
        if self.pending[pos].session.phase() == Phase::Connected {
            let pending = self.pending.swap_remove(pos);
            self.promote(pending.session, now);
        }
    }

    /// Plaintext from a key-derived id: handshake traffic only.
    fn on_handshake_datagram(&mut self, dg: &Datagram, from: SocketAddr, now: Instant) {
        let peer = dg.from();
        let first_message =
            dg.kind() == Kind::Hello && dg.handshake().is_some_and(is_first_message);
        if let Some(session) = self.sessions.get_mut(&peer)
            && !(first_message && session.is_established())
        {
            session.handle_datagram(dg, from, now);
            return;
        }
        let repeat = self
            .pending
            .iter()
            .any(|p| p.session.remote_id() == peer && p.session.answered_msg1() == dg.handshake());
        if !first_message || repeat {
            // A repeat (our answer was lost) or XX's third message: to this
            // peer's pending handshakes, each of which checks it.
            let mut done = None;
            for (i, pending) in self.pending.iter_mut().enumerate() {
                if pending.session.remote_id() == peer {
                    pending.session.handle_datagram(dg, from, now);
                    if pending.session.phase() == Phase::Connected {
                        done = Some(i);
                        break;
                    }
                }
            }
            if let Some(i) = done {
                let pending = self.pending.swap_remove(i);
                self.promote(pending.session, now);
            }
            return;
        }
        self.open_pending(dg, from, now);
    }

    /// A new first handshake message: answered as a pending handshake
    /// (bounded), never a session. Only a message that is valid for our key
    /// takes a place, so garbage never pushes a real handshake out.
    fn open_pending(&mut self, dg: &Datagram, from: SocketAddr, now: Instant) {
        let peer = dg.from();
        if self.tombstones.is_buried(peer, dg.session_id(), now) {
            tracing::debug!(%from, %peer, "hello of a closed session ignored");
            return;
        }
        self.expire_pending(now);
        let of_peer = self
            .pending
            .iter()
            .filter(|p| p.session.remote_id() == peer)
            .count();
        if of_peer < MAX_PENDING_PER_PEER && self.pending.len() >= MAX_PENDING_HANDSHAKES {
            tracing::debug!(%from, "pending handshake limit reached; hello ignored");
            return;
        }
        if !self.handshake_answers.take(now) {
            // MAX_HANDSHAKE_ANSWERS_PER_SEC: a flood of first messages costs
            // us at most that many key exchanges and answers a second.
            tracing::debug!(%from, "handshake budget spent; hello ignored");
            return;
        }
        let protection = self.noise(Role::Respond);
        let mut session = Session::accept(
            self.session_config.clone(),
            self.me,
            &self.username,
            dg,
            from,
            protection,
            now,
        );
        if session.answered_msg1().is_none() {
            // Not a valid first message for our key: nothing kept, nothing
            // sent.
            session.take_actions();
            return;
        }
        if of_peer >= MAX_PENDING_PER_PEER {
            // Drop this peer's oldest: a live initiator repeats its message.
            if let Some(pos) = self
                .pending
                .iter()
                .enumerate()
                .filter(|(_, p)| p.session.remote_id() == peer)
                .min_by_key(|(_, p)| p.since)
                .map(|(i, _)| i)
            {
                self.pending.swap_remove(pos);
            }
        }
        if self.relay.as_ref().is_some_and(|r| r.server() == from) {
            session.add_relay(from, now);
        }
        tracing::info!(%from, %peer, "handshake answered");
        // The answer goes out now; the pending session runs no timers.
        let actions = session.take_actions();
        self.orphaned.extend(actions.into_iter().map(|a| (peer, a)));
        self.pending.push(PendingHandshake {
            session,
            since: now,
        });
    }

    /// A pending handshake completed: it becomes the peer's session (a
    /// session it replaces is reset), within [`MAX_SESSIONS`].
    fn promote(&mut self, mut session: Session, now: Instant) {
        let peer = session.remote_id();
        if let Some(mut old) = self.sessions.remove(&peer) {
            tracing::info!(%peer, "peer started a new session");
            old.reset();
            let actions = old.take_actions();
            self.orphaned.extend(actions.into_iter().map(|a| (peer, a)));
        } else if !self.may_open_session() {
            tracing::debug!(%peer, "session limit reached; handshake dropped");
            session.take_actions();
            return;
        }
        session.poll_timers(now);
        self.sessions.insert(peer, session);
    }

    /// Forgets pending handshakes older than [`PENDING_HANDSHAKE_TIMEOUT`].
    pub(super) fn expire_pending(&mut self, now: Instant) {
        self.pending
            .retain(|p| now.saturating_duration_since(p.since) < PENDING_HANDSHAKE_TIMEOUT);
    }

    /// The seed's plaintext protocol, for ids not derived from a key.
    fn on_seed_datagram(&mut self, dg: &Datagram, from: SocketAddr, now: Instant) {
        let peer = dg.from();
        if let Some(session) = self.sessions.get_mut(&peer) {
            if session.is_encrypted() {
                return;
            }
            if dg.kind() == Kind::Message && self.events.len() >= super::MAX_QUEUED_EVENTS {
                // Left unacknowledged for retransmission (MAX_QUEUED_EVENTS).
                if session.reliable() {
                    tracing::debug!(%peer, "front end behind; chat line left for retransmission");
                } else {
                    tracing::warn!(%peer, "front end behind; a seed-protocol line is lost");
                }
                return;
            }
            if !session.is_superseded_by(dg, from) {
                session.handle_datagram(dg, from, now);
                return;
            }
            // The peer started over: end the old session (reporting its
            // pending lines) and accept the hello as a new one below.
            tracing::info!(%peer, "peer started a new session");
            session.reset();
            let actions = session.take_actions();
            self.orphaned.extend(actions.into_iter().map(|a| (peer, a)));
            self.sessions.remove(&peer);
        }
        self.on_stranger(dg, from, now);
    }

    /// A seed-protocol datagram from a peer we have no session with.
    fn on_stranger(&mut self, dg: &Datagram, from: SocketAddr, now: Instant) {
        let peer = dg.from();
        if dg.kind() != Kind::Hello {
            tracing::debug!(%from, kind = ?dg.kind(), "dropping datagram from a stranger");
            // A peer that still thinks it has a session with us: tell it
            // to close now rather than after its keep-alive gives up.
            if matches!(dg.kind(), Kind::Message | Kind::Ping) {
                self.answer_stranger(peer, from, now);
            }
            return;
        }
        if self.tombstones.is_buried(peer, dg.session_id(), now) {
            // A probe of the session we just closed, crossing our
            // disconnect: not a new session.
            tracing::debug!(%from, %peer, "hello of a closed session ignored");
            self.answer_stranger(peer, from, now);
            return;
        }
        if !self.may_open_session() {
            tracing::debug!(%from, "session limit reached; hello ignored");
            return;
        }
        tracing::info!(%from, %peer, "incoming hello (unencrypted)");
        let mut session = Session::accept(
            self.session_config.clone(),
            self.me,
            &self.username,
            dg,
            from,
            Protection::Plaintext,
            now,
        );
        if self.relay.as_ref().is_some_and(|r| r.server() == from) {
            session.add_relay(from, now);
        }
        self.sessions.insert(peer, session);
    }

    /// The one rule for whether another session may start (a hello, a
    /// connect request, a connect or its rendezvous): at most
    /// [`MAX_SESSIONS`].
    pub(super) fn may_open_session(&self) -> bool {
        self.sessions.len() < MAX_SESSIONS
    }

    /// How we protect a session with `peer`, or why we refuse to talk to
    /// it: Noise with a key-derived id (the registry's key must own it),
    /// the seed's plaintext otherwise (unless `--require-encryption`).
    pub(super) fn protection_for(
        &self,
        peer: &RemotePeer,
        we_call: bool,
    ) -> Result<Protection, String> {
        let name = self.display_name(peer.peer_id);
        match (&peer.key, peer.peer_id.is_key_derived()) {
            (PeerKey::Forged, _) => Err(format!(
                "refusing to connect to {name}: the signaling server gave a public key that \
                 does not belong to its id (the server may be trying to impersonate it)"
            )),
            (PeerKey::Verified(key), _) => Ok(self.noise(if we_call {
                Role::Initiate(Some(*key))
            } else {
                Role::Respond
            })),
            (PeerKey::Unverified, true) => Ok(self.noise(if we_call {
                Role::Initiate(None)
            } else {
                Role::Respond
            })),
            (PeerKey::Unverified, false) if self.require_encryption => Err(format!(
                "refusing to connect to {name}: it does not encrypt (a seed-protocol peer) \
                 and --require-encryption is set"
            )),
            (PeerKey::Unverified, false) => Ok(Protection::Plaintext),
        }
    }

    /// Noise protection with a fresh session index.
    fn noise(&self, role: Role) -> Protection {
        Protection::Noise {
            identity: self.identity.clone(),
            index: self.fresh_index(),
            role,
        }
    }

    /// A random receiver index no session or pending handshake uses.
    fn fresh_index(&self) -> u32 {
        loop {
            let index = (uuid::Uuid::new_v4().as_u128() & 0xffff_ffff) as u32;
            let taken = self
                .sessions
                .values()
                .chain(self.pending.iter().map(|p| &p.session))
                .any(|s| s.local_index() == Some(index));
            if !taken {
                return index;
            }
        }
    }

    /// The one constructor of the sessions we start (after a rendezvous or
    /// a connect request); callers checked [`Core::may_open_session`].
    /// `we_call`: we asked (we send the first handshake message), or the
    /// peer asked through the server (it does). A refusal answers
    /// `request`, the connect request this serves.
    pub(super) fn open_outgoing(
        &mut self,
        peer: &RemotePeer,
        we_call: bool,
        request: Option<RequestId>,
        now: Instant,
    ) {
        let protection = match self.protection_for(peer, we_call) {
            Ok(p) => p,
            Err(message) => {
                tracing::warn!(peer = %peer.peer_id, "{message}");
                self.emit(Event::Error {
                    id: request,
                    code: crate::engine::api::ErrorCode::Refused,
                    message,
                });
                return;
            }
        };
        // A connect request names endpoints we have only the caller's word
        // for: what probing them may cost is capped (no reflector).
        let start = if we_call {
            Session::connect
        } else {
            Session::connect_requested
        };
        let session = start(
            self.session_config.clone(),
            self.me,
            &self.username,
            peer.peer_id,
            peer.endpoints.clone(),
            protection,
            now,
        );
        self.sessions.insert(peer.peer_id, session);
    }

    /// Queues a `disconnect` to a seed-protocol peer we have no session
    /// with, within the reply budget.
    fn answer_stranger(&mut self, peer: PeerId, to: SocketAddr, now: Instant) {
        if !self.stranger_replies.take(now) {
            return;
        }
        match Datagram::disconnect(self.me).encode() {
            Ok(bytes) => self.send(peer, to, bytes),
            Err(err) => tracing::error!(%err, "cannot encode disconnect"),
        }
    }
}
