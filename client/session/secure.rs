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

mod steps;

use super::{CloseReason, Phase, Session};
use crate::identity::Identity;
use crate::secure::{Handshake, LocalParams, Prologue, is_first_message};
use crate::wire::{Announce, Datagram, Header, Hello, Pong, our_extensions, unix_now};
use steps::hello_extensions;

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
        let capped = self.path.is_capped() && handshake.is_none();
        let hello = Hello {
            header: Header::now(self.local_id),
            announce: Announce::with_handshake(self.local_session, handshake),
            username: Some(self.local_name.clone()),
        };
        // A long name would make every probe of a capped session larger
        // than MAX_PROBE_HELLO_BYTES: such probes go without it (the caller
        // has our name from the server; the session's later datagrams
        // carry it as usual).
        let too_long = capped
            && Datagram::Hello(hello.clone())
                .encode()
                .is_ok_and(|b| b.len() > super::MAX_PROBE_HELLO_BYTES);
        if too_long {
            Hello {
                username: None,
                ..hello
            }
            .into()
        } else {
            hello.into()
        }
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
}
