//! The Noise handshake: IK when the initiator knows the responder's key
//! (from the registry), XX otherwise; both with X25519, ChaCha20-Poly1305
//! and BLAKE2s, via `snow`.
//!
//! Wire form: one tag byte, then the Noise message. msg1 carries the
//! pattern (`1` IK, `2` XX); msg2 is `0x11` / `0x12`, msg3 (XX) `0x22`, so a
//! message of another stage or pattern fails before Noise sees it.
//!
//! Every payload Noise encrypts is [`PAYLOAD_LEN`] bytes: the sender's
//! Ed25519 key (32), its [`LocalParams`] (session u64 BE, index u32 BE) and
//! a timestamp (unix ms, u64 BE). XX msg1 travels in the clear and so
//! carries an empty payload. Each side checks that the presented Ed25519
//! key maps to the Noise static key the peer proved it holds
//! ([`PublicKey::to_x25519`]) and owns the id the [`Prologue`] names for
//! the peer's role. The responder refuses an IK msg1 whose timestamp is
//! more than [`MAX_CLOCK_SKEW`] off; within it, a replayed msg1 still gets
//! an answer nobody but the real initiator can read, so callers should also
//! drop a msg1 whose (key, session) they already answered.

use std::time::Duration;

use p2pchat::{PeerId, PublicKey};
use snow::HandshakeState;
use tokio::time::Instant;
use zeroize::Zeroize;

use super::error::HandshakeError;
pub use super::messages::{LocalParams, PAYLOAD_LEN, PROTOCOL_VERSION, Prologue};
use super::messages::{
    MSG1_IK, MSG1_XX, MSG2_IK, MSG2_XX, MSG3_XX, Payload, build, read, verify, write,
};
use super::transport::Transport;
use crate::identity::Identity;

/// How far an IK msg1 timestamp may be from the responder's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(120);
/// The largest handshake message accepted (ours are at most 149 bytes).
pub const MAX_HANDSHAKE_MESSAGE: usize = 400;

/// The Noise pattern of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Two messages; the initiator knew the responder's key.
    IK,
    /// Three messages; keys learnt in the handshake.
    XX,
}

/// The result of a finished handshake.
#[derive(Debug)]
pub struct Established {
    /// The peer's authenticated key (it owns the prologue's id).
    pub remote_key: PublicKey,
    /// The peer's parameters.
    pub remote: LocalParams,
    /// The Noise handshake hash (channel binding).
    pub handshake_hash: [u8; 32],
    /// The keys, ready to seal and open.
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Initiator: msg1 sent, waiting for msg2.
    AwaitMsg2,
    /// XX responder: msg2 sent, waiting for msg3.
    AwaitMsg3,
    Finished,
    Aborted,
}

/// A started handshake (either role). Opaque; `Debug` shows no keys.
pub struct Handshake {
    noise: HandshakeState,
    pattern: Pattern,
    stage: Stage,
    local: LocalParams,
    /// The key we present (our identity's).
    presented: PublicKey,
    /// Our msg3 timestamp (the initiator's clock at `initiate`).
    now_unix_ms: u64,
    /// Who the peer must be, from the prologue.
    expected_remote: PeerId,
    remote_key: Option<PublicKey>,
    remote_params: Option<LocalParams>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("pattern", &self.pattern)
            .field("initiator", &self.noise.is_initiator())
            .field("stage", &self.stage)
            .field("expected_remote", &self.expected_remote)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Initiator: IK when `remote` is Some (its key from the registry), XX
    /// otherwise. Returns the first message (msg1) bytes.
    pub fn initiate(
        identity: &Identity,
        remote: Option<&PublicKey>,
        prologue: &Prologue,
        local: LocalParams,
        now_unix_ms: u64,
    ) -> Result<(Handshake, Vec<u8>), HandshakeError> {
        if !identity.public_key().owns(&prologue.initiator) {
            return Err(HandshakeError::NotOurId);
        }
        if remote.is_some_and(|key| !key.owns(&prologue.responder)) {
            return Err(HandshakeError::WrongPeer);
        }
        Self::initiate_presenting(
            identity,
            identity.public_key(),
            remote,
            prologue,
            local,
            now_unix_ms,
        )
    }

    /// `initiate` without the local checks, presenting any key (tests
    /// play a lying initiator with it).
    pub(super) fn initiate_presenting(
        identity: &Identity,
        presented: PublicKey,
        remote: Option<&PublicKey>,
        prologue: &Prologue,
        local: LocalParams,
        now_unix_ms: u64,
    ) -> Result<(Handshake, Vec<u8>), HandshakeError> {
        let pattern = if remote.is_some() {
            Pattern::IK
        } else {
            Pattern::XX
        };
        let remote_x = remote.map(PublicKey::to_x25519);
        let mut noise = build(
            identity,
            pattern,
            remote_x.as_ref(),
            &prologue.to_bytes(),
            true,
        )?;
        let payload = Payload {
            key: presented,
            params: local,
            timestamp_ms: now_unix_ms,
        };
        let msg1 = match pattern {
            Pattern::IK => write(&mut noise, MSG1_IK, &payload.encode())?,
            Pattern::XX => write(&mut noise, MSG1_XX, &[])?,
        };
        let handshake = Handshake {
            noise,
            pattern,
            stage: Stage::AwaitMsg2,
            local,
            presented,
            now_unix_ms,
            expected_remote: prologue.responder,
            remote_key: None,
            remote_params: None,
        };
        Ok((handshake, msg1))
    }

    /// Responder: reads msg1 (pattern from its first byte) and returns msg2
    /// bytes. Refuses an IK msg1 whose timestamp is more than
    /// [`MAX_CLOCK_SKEW`] from `now_unix_ms`.
    pub fn respond(
        identity: &Identity,
        prologue: &Prologue,
        msg1: &[u8],
        local: LocalParams,
        now_unix_ms: u64,
    ) -> Result<(Handshake, Vec<u8>), HandshakeError> {
        if !identity.public_key().owns(&prologue.responder) {
            return Err(HandshakeError::NotOurId);
        }
        Self::respond_presenting(
            identity,
            identity.public_key(),
            prologue,
            msg1,
            local,
            now_unix_ms,
        )
    }

    /// `respond` without the local check, presenting any key (tests).
    pub(super) fn respond_presenting(
        identity: &Identity,
        presented: PublicKey,
        prologue: &Prologue,
        msg1: &[u8],
        local: LocalParams,
        now_unix_ms: u64,
    ) -> Result<(Handshake, Vec<u8>), HandshakeError> {
        if msg1.len() > MAX_HANDSHAKE_MESSAGE {
            return Err(HandshakeError::TooLarge);
        }
        let (tag, pattern) = match msg1.first() {
            Some(&MSG1_IK) => (MSG1_IK, Pattern::IK),
            Some(&MSG1_XX) => (MSG1_XX, Pattern::XX),
            Some(&(MSG2_IK | MSG2_XX | MSG3_XX)) => return Err(HandshakeError::UnexpectedMessage),
            _ => return Err(HandshakeError::Malformed),
        };
        let mut noise = build(identity, pattern, None, &prologue.to_bytes(), false)?;
        let received = read(&mut noise, tag, msg1)?;
        let mut handshake = Handshake {
            noise,
            pattern,
            stage: Stage::AwaitMsg3,
            local,
            presented,
            now_unix_ms,
            expected_remote: prologue.initiator,
            remote_key: None,
            remote_params: None,
        };
        let ours = Payload {
            key: presented,
            params: local,
            timestamp_ms: now_unix_ms,
        }
        .encode();
        match pattern {
            Pattern::IK => {
                let theirs = Payload::decode(&received)?;
                verify(&handshake.noise, &theirs, prologue.initiator)?;
                let skew = theirs.timestamp_ms.abs_diff(now_unix_ms);
                if u128::from(skew) > MAX_CLOCK_SKEW.as_millis() {
                    return Err(HandshakeError::ClockSkew);
                }
                handshake.accept(&theirs);
                let msg2 = write(&mut handshake.noise, MSG2_IK, &ours)?;
                handshake.stage = Stage::Finished;
                Ok((handshake, msg2))
            }
            Pattern::XX => {
                if !received.is_empty() {
                    return Err(HandshakeError::Malformed);
                }
                let msg2 = write(&mut handshake.noise, MSG2_XX, &ours)?;
                Ok((handshake, msg2))
            }
        }
    }

    /// Initiator reads msg2 (returns Some(msg3) for XX, None for IK);
    /// responder reads msg3 (XX only; returns None).
    pub fn read(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, HandshakeError> {
        let tag = match (self.stage, self.pattern) {
            (Stage::AwaitMsg2, Pattern::IK) => MSG2_IK,
            (Stage::AwaitMsg2, Pattern::XX) => MSG2_XX,
            (Stage::AwaitMsg3, _) => MSG3_XX,
            (Stage::Finished, _) => return Err(HandshakeError::UnexpectedMessage),
            (Stage::Aborted, _) => return Err(HandshakeError::Aborted),
        };
        let knew_static = self.noise.get_remote_static().is_some();
        let received = read(&mut self.noise, tag, msg).inspect_err(|_| {
            // Noise rolls back its hash state when it refuses a message but
            // not its cipher state, and msg3 starts with the initiator's
            // encrypted static key: once that decrypted, the failure is
            // final. (Only the real msg3, altered on path, gets that far.)
            if !knew_static && self.noise.get_remote_static().is_some() && tag == MSG3_XX {
                self.stage = Stage::Aborted;
            }
        })?;
        // Noise accepted the message and moved on: any failure now is final.
        match self.finish_read(&received) {
            Ok(reply) => Ok(reply),
            Err(err) => {
                self.stage = Stage::Aborted;
                Err(err)
            }
        }
    }

    fn finish_read(&mut self, received: &[u8]) -> Result<Option<Vec<u8>>, HandshakeError> {
        let theirs = Payload::decode(received)?;
        verify(&self.noise, &theirs, self.expected_remote)?;
        self.accept(&theirs);
        let reply = if self.stage == Stage::AwaitMsg2 && self.pattern == Pattern::XX {
            let ours = Payload {
                key: self.presented,
                params: self.local,
                timestamp_ms: self.now_unix_ms,
            };
            Some(write(&mut self.noise, MSG3_XX, &ours.encode())?)
        } else {
            None
        };
        self.stage = Stage::Finished;
        Ok(reply)
    }

    fn accept(&mut self, theirs: &Payload) {
        self.remote_key = Some(theirs.key);
        self.remote_params = Some(theirs.params);
    }

    /// True once this side has all keys (IK: initiator after msg2,
    /// responder right after writing msg2; XX: initiator after writing
    /// msg3, responder after reading it).
    pub fn is_finished(&self) -> bool {
        self.stage == Stage::Finished
    }

    /// The pattern.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// Whether we sent msg1.
    pub fn is_initiator(&self) -> bool {
        self.noise.is_initiator()
    }

    /// The authenticated remote key, once known.
    pub fn remote_key(&self) -> Option<PublicKey> {
        self.remote_key
    }

    /// The remote's parameters, once received.
    pub fn remote_params(&self) -> Option<LocalParams> {
        self.remote_params
    }

    /// Consumes a finished handshake; `now` starts the first key epoch.
    pub fn into_established(mut self, now: Instant) -> Result<Established, HandshakeError> {
        if self.stage != Stage::Finished || !self.noise.is_handshake_finished() {
            return Err(HandshakeError::NotFinished);
        }
        let (remote_key, remote) = self
            .remote_key
            .zip(self.remote_params)
            .ok_or(HandshakeError::Internal)?;
        let handshake_hash: [u8; 32] = self
            .noise
            .get_handshake_hash()
            .try_into()
            .map_err(|_| HandshakeError::Internal)?;
        let (mut i2r, mut r2i) = self.noise.dangerously_get_raw_split();
        let transport = if self.noise.is_initiator() {
            Transport::new(&i2r, &r2i, self.local.index, remote.index, now)
        } else {
            Transport::new(&r2i, &i2r, self.local.index, remote.index, now)
        };
        i2r.zeroize();
        r2i.zeroize();
        Ok(Established {
            remote_key,
            remote,
            handshake_hash,
            transport,
        })
    }
}
