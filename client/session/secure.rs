//! The session's protection: the Noise handshake riding in `hello` and
//! `pong`, the switch to sealed datagrams, and which plaintext is trusted.
//!
//! A session with a key-derived peer is [`Security::Noise`]: before the
//! handshake completes only handshake datagrams (a `hello` or `pong` with
//! a `noise` field, and plain hellos that punch holes) are looked at, and
//! none of them changes the path, connects the session or carries a line.
//! Once keys are in place every datagram in both directions is sealed by
//! the [`SealedChannel`]. A seed peer (no key) gets [`Security::Plain`],
//! the seed's JSON, and every front end marks it unencrypted.
//!
//! Who sends the first message: the caller (it has the callee's key from
//! the registry, so `IK`, one round trip; `XX` without a key). When both
//! sides call at once, the lower peer id initiates and the other answers.
//! The initiator is connected on the answer (`msg2`), as a plaintext
//! session is on its pong; it then sends a sealed ping at once. The
//! responder connects on proof that the initiator is live and holds the
//! keys: the first sealed datagram (`IK`) or the third message (`XX`), so
//! a replayed first message never shows as a connected peer.

use std::net::SocketAddr;
use std::sync::Arc;

use p2pchat::PublicKey;
use tokio::time::Instant;

use super::channel::SealedChannel;
use super::{CloseReason, Phase, Session};
use crate::identity::Identity;
use crate::secure::{Handshake, LocalParams, Prologue, is_first_message};
use crate::wire::{Announce, Datagram, Header, Hello, Ping, Pong, our_extensions, unix_now};

/// How a new session protects its datagrams (the engine decides, from the
/// peer's id and the key the registry gave).
#[derive(Debug, Clone)]
pub enum Protection {
    /// A seed-style peer (an id not derived from a key): the seed's
    /// plaintext JSON, every line marked unencrypted.
    Plaintext,
    /// End-to-end encryption with our long-term key.
    Noise {
        /// Our key (its peer id is the session's local id).
        identity: Arc<Identity>,
        /// The index sealed datagrams for this session carry (unique among
        /// our sessions; the engine routes by it).
        index: u32,
        /// Who sends the first handshake message.
        role: Role,
    },
}

/// Who starts the handshake.
#[derive(Debug, Clone)]
pub enum Role {
    /// We do: `IK` with the peer's key from the registry, `XX` without.
    Initiate(Option<PublicKey>),
    /// The peer does (it called us, or its hello carried the first
    /// message).
    Respond,
}

/// Where a session's protection stands.
#[derive(Debug)]
pub(super) enum Security {
    /// The seed's plaintext.
    Plain,
    /// Noise, in handshake or with keys.
    Noise(Box<Noise>),
}

/// A Noise session's state.
#[derive(Debug)]
pub(super) struct Noise {
    identity: Arc<Identity>,
    index: u32,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// Our hellos carry `msg1`; waiting for the pong with `msg2`.
    Initiating { handshake: Handshake, msg1: Vec<u8> },
    /// Waiting for the peer's `msg1` (our hellos only punch holes).
    Awaiting,
    /// We answered `msg1` with `msg2`: waiting for proof that the initiator
    /// is live (`msg3`, or its first sealed datagram with `IK`).
    Responding {
        /// `None` once the keys moved into the channel (`IK`).
        handshake: Option<Handshake>,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
        remote_key: Option<PublicKey>,
        /// Set once the keys exist (`IK`).
        handshake_hash: Option<[u8; 32]>,
    },
    /// Keys in place: every datagram is sealed.
    Established {
        remote_key: PublicKey,
        handshake_hash: [u8; 32],
        /// The initiator's `msg3` (`XX`), re-sent until confirmed.
        msg3: Option<Vec<u8>>,
        /// Something sealed came from the peer with these keys.
        confirmed: bool,
    },
    /// The handshake failed; the session closes.
    Failed,
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Initiating { .. } => "initiating",
            Stage::Awaiting => "awaiting",
            Stage::Responding { .. } => "responding",
            Stage::Established { .. } => "established",
            Stage::Failed => "failed",
        }
    }
}

/// What the session knows about the remote's key, for the engine and the
/// front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityInfo {
    /// Whether datagrams are sealed (false: the seed's plaintext).
    pub encrypted: bool,
    /// The remote's authenticated key, once the handshake proved it.
    pub remote_key: Option<PublicKey>,
    /// The Noise handshake hash (channel binding), once established.
    pub handshake_hash: Option<[u8; 32]>,
}

impl Security {
    pub(super) fn new(protection: Protection) -> Security {
        match protection {
            Protection::Plaintext => Security::Plain,
            Protection::Noise {
                identity,
                index,
                role,
            } => {
                let stage = match role {
                    // Started in `Session::start_handshake` (needs the
                    // session's ids).
                    Role::Initiate(_) => Stage::Awaiting,
                    Role::Respond => Stage::Awaiting,
                };
                Security::Noise(Box::new(Noise {
                    identity,
                    index,
                    stage,
                }))
            }
        }
    }
}

/// Unix time in milliseconds (the handshake's freshness stamp).
fn unix_ms() -> u64 {
    (unix_now() * 1000.0) as u64
}

impl Session {
    /// Sends our first handshake message (the caller's side). On failure
    /// (cannot happen with valid keys) the session closes.
    pub(super) fn start_handshake(&mut self, remote_key: Option<PublicKey>) {
        let local = self.local_params();
        let extensions = our_extensions();
        let prologue = Prologue {
            initiator: self.local_id,
            responder: self.remote_id,
            extensions: &extensions,
        };
        let Security::Noise(noise) = &mut self.security else {
            return;
        };
        match Handshake::initiate(
            &noise.identity,
            remote_key.as_ref(),
            &prologue,
            local,
            unix_ms(),
        ) {
            Ok((handshake, msg1)) => noise.stage = Stage::Initiating { handshake, msg1 },
            Err(err) => {
                tracing::error!(%err, "cannot start a handshake");
                noise.stage = Stage::Failed;
                self.finish(CloseReason::HandshakeFailed);
            }
        }
    }

    fn local_params(&self) -> LocalParams {
        let index = match &self.security {
            Security::Noise(n) => n.index,
            Security::Plain => 0,
        };
        LocalParams {
            session: self.local_session,
            index,
        }
    }

    /// What the session knows about the remote's key.
    pub fn security(&self) -> SecurityInfo {
        match &self.security {
            Security::Plain => SecurityInfo {
                encrypted: false,
                remote_key: None,
                handshake_hash: None,
            },
            Security::Noise(n) => match &n.stage {
                Stage::Established {
                    remote_key,
                    handshake_hash,
                    ..
                } => SecurityInfo {
                    encrypted: true,
                    remote_key: Some(*remote_key),
                    handshake_hash: Some(*handshake_hash),
                },
                Stage::Responding { remote_key, .. } => SecurityInfo {
                    encrypted: true,
                    remote_key: *remote_key,
                    handshake_hash: None,
                },
                _ => SecurityInfo {
                    encrypted: true,
                    remote_key: None,
                    handshake_hash: None,
                },
            },
        }
    }

    /// Whether we wait for the peer's first handshake message (the callee).
    pub(super) fn awaits_initiator(&self) -> bool {
        matches!(&self.security, Security::Noise(n) if matches!(n.stage, Stage::Awaiting))
    }

    /// Whether this session encrypts (a Noise session, in any stage).
    pub fn is_encrypted(&self) -> bool {
        matches!(self.security, Security::Noise(_))
    }

    /// Whether keys are in place (sealed datagrams are expected).
    pub fn is_established(&self) -> bool {
        matches!(&self.security, Security::Noise(n) if matches!(n.stage, Stage::Established { .. }))
    }

    /// The index sealed datagrams to us carry, for a Noise session.
    pub fn local_index(&self) -> Option<u32> {
        match &self.security {
            Security::Noise(n) => Some(n.index),
            Security::Plain => None,
        }
    }

    /// The first handshake message this session answered, if it is the
    /// responder (the engine tells a repeat from a new handshake by it).
    pub fn answered_msg1(&self) -> Option<&[u8]> {
        match &self.security {
            Security::Noise(n) => match &n.stage {
                Stage::Responding { msg1, .. } => Some(msg1),
                _ => None,
            },
            Security::Plain => None,
        }
    }

    /// The hello our probes send: with `msg1` while we initiate.
    pub(super) fn probe_hello(&self) -> Datagram {
        let handshake = match &self.security {
            Security::Noise(n) => match &n.stage {
                Stage::Initiating { msg1, .. } => Some(msg1.clone()),
                _ => None,
            },
            Security::Plain => None,
        };
        Hello {
            header: Header::now(self.local_id),
            announce: Announce::with_handshake(self.local_session, handshake),
            username: Some(self.local_name.clone()),
        }
        .into()
    }

    /// While we answer a handshake our probes stay plain hellos (the
    /// initiator cannot open sealed ones yet); they punch holes, and the
    /// initiator answers each with its first message again, which we answer
    /// (so a lost answer is covered without us sending it unasked).
    pub(super) fn probes_in_plaintext(&self) -> bool {
        matches!(&self.security, Security::Noise(n) if matches!(n.stage, Stage::Responding { .. }))
    }

    fn pending_msg2(&self) -> Option<Vec<u8>> {
        match &self.security {
            Security::Noise(n) => match &n.stage {
                Stage::Responding { msg2, .. } => Some(msg2.clone()),
                _ => None,
            },
            Security::Plain => None,
        }
    }

    fn send_handshake_pong(&mut self, msg2: Vec<u8>, addr: SocketAddr) {
        let pong: Datagram = Pong {
            header: Header::now(self.local_id),
            nonce: None,
            announce: Announce::with_handshake(self.local_session, Some(msg2)),
        }
        .into();
        self.send_plain(&pong, addr);
    }

    /// A plaintext datagram for a Noise session: only the handshake is
    /// looked at. Nothing here connects the session, except the initiator
    /// reading a valid answer and the `XX` responder reading `msg3`.
    pub(super) fn handle_handshake(&mut self, dg: &Datagram, addr: SocketAddr, now: Instant) {
        if self.phase == Phase::Closed || dg.from() != self.remote_id {
            return;
        }
        let Security::Noise(noise) = &self.security else {
            return;
        };
        let msg = dg.handshake();
        let first = msg.is_some_and(is_first_message);
        tracing::trace!(%addr, kind = ?dg.kind(), handshake = msg.map(<[u8]>::len), stage = ?noise.stage.name(), "handshake datagram");
        match (&noise.stage, dg, msg) {
            (Stage::Initiating { .. }, Datagram::Pong(_), Some(msg2)) => {
                let msg2 = msg2.to_vec();
                self.read_answer(dg, &msg2, addr, now);
            }
            (Stage::Initiating { .. }, Datagram::Hello(hello), Some(msg1)) if first => {
                // Both sides called: the lower id initiates.
                if self.local_id > self.remote_id {
                    let (msg1, extensions) = (msg1.to_vec(), hello_extensions(hello));
                    self.answer(&msg1, &extensions, addr, now);
                } else if self.path.accepts_while_connecting(addr, true) {
                    self.send_hello(addr);
                }
            }
            (Stage::Initiating { .. }, Datagram::Hello(_), None) => {
                // The callee punches towards us: answer with our msg1 there
                // (a triggered probe), so the first message crosses the
                // hole it just opened.
                if self.phase == Phase::Probing {
                    self.path.add_candidates([addr]);
                    self.send_hello(addr);
                }
            }
            (Stage::Awaiting, Datagram::Hello(hello), Some(msg1)) if first => {
                let (msg1, extensions) = (msg1.to_vec(), hello_extensions(hello));
                self.answer(&msg1, &extensions, addr, now);
            }
            (Stage::Responding { msg1: answered, .. }, Datagram::Hello(_), Some(msg))
                if answered.as_slice() == msg =>
            {
                // A repeat of the first message: our answer was lost.
                if let Some(msg2) = self.pending_msg2() {
                    self.send_handshake_pong(msg2, addr);
                }
            }
            (
                Stage::Responding {
                    handshake: Some(_), ..
                },
                Datagram::Hello(_),
                Some(msg3),
            ) if !first => {
                let msg3 = msg3.to_vec();
                self.read_final(&msg3, addr, now);
            }
            (
                Stage::Established {
                    confirmed: false, ..
                },
                Datagram::Pong(_),
                Some(_),
            ) => {
                // A repeat of the answer: our confirmation was lost.
                self.send_confirmation(addr);
            }
            _ => {
                tracing::debug!(%addr, kind = ?dg.kind(), "unauthenticated datagram ignored");
            }
        }
    }

    /// Responder: answers `msg1` with `msg2` (a pong) and waits for proof.
    fn answer(&mut self, msg1: &[u8], extensions: &[String], addr: SocketAddr, now: Instant) {
        let local = self.local_params();
        let prologue = Prologue {
            initiator: self.remote_id,
            responder: self.local_id,
            extensions,
        };
        let Security::Noise(noise) = &mut self.security else {
            return;
        };
        let (handshake, msg2) =
            match Handshake::respond(&noise.identity, &prologue, msg1, local, unix_ms()) {
                Ok(answer) => answer,
                Err(err) => {
                    tracing::debug!(%addr, %err, "handshake refused");
                    return;
                }
            };
        let remote_key = handshake.remote_key();
        let mut handshake_hash = None;
        let mut handshake = Some(handshake);
        if handshake.as_ref().is_some_and(Handshake::is_finished) {
            // IK: the keys exist now; sealed datagrams from the initiator
            // (its proof) open with them.
            match handshake.take().map(|h| h.into_established(now)) {
                Some(Ok(established)) => {
                    self.remote_session = Some(established.remote.session);
                    handshake_hash = Some(established.handshake_hash);
                    self.channel = Box::new(SealedChannel::new(established.transport));
                }
                Some(Err(err)) => {
                    tracing::debug!(%addr, %err, "handshake refused");
                    return;
                }
                None => return,
            }
        }
        let Security::Noise(noise) = &mut self.security else {
            return;
        };
        noise.stage = Stage::Responding {
            handshake,
            msg1: msg1.to_vec(),
            msg2: msg2.clone(),
            remote_key,
            handshake_hash,
        };
        self.path.add_candidates([addr]);
        tracing::debug!(%addr, "handshake: answered the first message");
        self.send_handshake_pong(msg2, addr);
    }

    /// Initiator: reads the answer; connected with keys on success.
    fn read_answer(&mut self, pong: &Datagram, msg2: &[u8], addr: SocketAddr, now: Instant) {
        if !self.path.accepts_while_connecting(addr, true) {
            return;
        }
        let Security::Noise(noise) = &mut self.security else {
            return;
        };
        let Stage::Initiating { handshake, .. } = &mut noise.stage else {
            return;
        };
        let msg3 = match handshake.read(msg2) {
            Ok(msg3) => msg3,
            Err(err) => {
                // A forged or stale answer: the handshake carries on.
                tracing::debug!(%addr, %err, "handshake answer refused");
                return;
            }
        };
        let Stage::Initiating { handshake, .. } =
            std::mem::replace(&mut noise.stage, Stage::Failed)
        else {
            return;
        };
        let established = match handshake.into_established(now) {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(%addr, %err, "handshake failed");
                self.finish(CloseReason::HandshakeFailed);
                return;
            }
        };
        noise.stage = Stage::Established {
            remote_key: established.remote_key,
            handshake_hash: established.handshake_hash,
            msg3,
            confirmed: false,
        };
        self.channel = Box::new(SealedChannel::new(established.transport));
        tracing::debug!(%addr, "handshake: answer read, keys in place");
        // Connect as a plaintext session does on its pong (RTT from the
        // probe, path, events), then confirm with sealed traffic.
        self.process(pong, addr, now, true);
        self.remote_session = Some(established.remote.session);
        self.send_confirmation(addr);
    }

    /// Responder (`XX`): reads `msg3`, which proves the initiator.
    fn read_final(&mut self, msg3: &[u8], addr: SocketAddr, now: Instant) {
        let Security::Noise(noise) = &mut self.security else {
            return;
        };
        let Stage::Responding {
            handshake: Some(handshake),
            ..
        } = &mut noise.stage
        else {
            return;
        };
        if let Err(err) = handshake.read(msg3) {
            tracing::debug!(%addr, %err, "final handshake message refused");
            return;
        }
        let Stage::Responding {
            handshake: Some(handshake),
            ..
        } = std::mem::replace(&mut noise.stage, Stage::Failed)
        else {
            return;
        };
        match handshake.into_established(now) {
            Ok(established) => {
                noise.stage = Stage::Established {
                    remote_key: established.remote_key,
                    handshake_hash: established.handshake_hash,
                    msg3: None,
                    confirmed: true,
                };
                self.remote_session = Some(established.remote.session);
                self.channel = Box::new(SealedChannel::new(established.transport));
                let ping: Datagram = Ping {
                    header: Header::now(self.local_id),
                    nonce: None,
                    announce: Announce::ours(self.local_session),
                }
                .into();
                self.process(&ping_as_remote(&ping, self.remote_id), addr, now, true);
            }
            Err(err) => {
                tracing::warn!(%addr, %err, "handshake failed");
                self.finish(CloseReason::HandshakeFailed);
            }
        }
    }

    /// Initiator, keys in place: `msg3` (`XX`) and a sealed ping, so the
    /// responder gets its proof and our first RTT sample at once.
    fn send_confirmation(&mut self, addr: SocketAddr) {
        let msg3 = match &self.security {
            Security::Noise(n) => match &n.stage {
                Stage::Established {
                    msg3,
                    confirmed: false,
                    ..
                } => msg3.clone(),
                _ => return,
            },
            Security::Plain => return,
        };
        if let Some(msg3) = msg3 {
            let hello: Datagram = Hello {
                header: Header::now(self.local_id),
                announce: Announce::with_handshake(self.local_session, Some(msg3)),
                username: Some(self.local_name.clone()),
            }
            .into();
            self.send_plain(&hello, addr);
        }
        let ping: Datagram = Ping {
            header: Header::now(self.local_id),
            nonce: None,
            announce: Announce::ours(self.local_session),
        }
        .into();
        self.send(&ping, addr);
    }

    /// A sealed datagram opened: the peer holds the keys. Completes the
    /// responder's handshake (`IK`) and confirms the initiator's.
    pub(super) fn authenticated(&mut self) {
        let Security::Noise(noise) = &mut self.security else {
            return;
        };
        match &mut noise.stage {
            Stage::Established { confirmed, .. } => *confirmed = true,
            Stage::Responding {
                handshake: None,
                remote_key: Some(remote_key),
                handshake_hash: Some(handshake_hash),
                ..
            } => {
                let (remote_key, handshake_hash) = (*remote_key, *handshake_hash);
                noise.stage = Stage::Established {
                    remote_key,
                    handshake_hash,
                    msg3: None,
                    confirmed: true,
                };
            }
            _ => {}
        }
    }
}

/// The extensions a hello announces (what the prologue binds).
fn hello_extensions(hello: &Hello) -> Vec<String> {
    hello.announce.extensions.clone().unwrap_or_default()
}

/// The `XX` responder connects on `msg3`, which is not a datagram the
/// session layers know: it stands for a ping from the peer.
fn ping_as_remote(ping: &Datagram, remote: p2pchat::PeerId) -> Datagram {
    match ping {
        Datagram::Ping(p) => Ping {
            header: Header {
                from: remote,
                timestamp: p.header.timestamp,
            },
            nonce: None,
            announce: Announce::default(),
        }
        .into(),
        other => other.clone(),
    }
}
