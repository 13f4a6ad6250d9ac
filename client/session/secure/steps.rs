//! The handshake's steps once a message arrived: the responder's answer,
//! the initiator reading it, `XX`'s final message, the initiator's
//! confirmation, and the proof that completes the responder.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::super::channel::SealedChannel;
use super::super::{CloseReason, Session};
use super::{Security, Stage, unix_ms};
use crate::secure::{Handshake, Prologue};
use crate::wire::{Announce, Datagram, Header, Hello, Ping};

impl Session {
    /// Responder: answers `msg1` with `msg2` (a pong) and waits for proof.
    pub(super) fn answer(
        &mut self,
        msg1: &[u8],
        extensions: &[String],
        addr: SocketAddr,
        now: Instant,
    ) {
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
    pub(super) fn read_answer(
        &mut self,
        pong: &Datagram,
        msg2: &[u8],
        addr: SocketAddr,
        now: Instant,
    ) {
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
    pub(super) fn read_final(&mut self, msg3: &[u8], addr: SocketAddr, now: Instant) {
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
    pub(super) fn send_confirmation(&mut self, addr: SocketAddr) {
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
    pub(in crate::session) fn authenticated(&mut self) {
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
pub(super) fn hello_extensions(hello: &Hello) -> Vec<String> {
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
