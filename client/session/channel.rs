//! The seam between the session's layers and the bytes on the wire.
//!
//! Everything a session sends leaves through [`Channel::seal`] as a typed
//! [`Datagram`], and bytes meant for it can come in through
//! [`Channel::open`]. [`Plaintext`] is the seed's JSON; [`SealedChannel`]
//! encrypts the same JSON with the session's Noise keys and replaces it
//! once the handshake is done, without touching path selection, liveness,
//! reliability or fragmentation above it. Reliable messages are kept typed
//! while in flight and sealed again for every retransmission, so a cipher
//! with per-packet nonces never has to resend identical ciphertext.

use std::fmt;

use thiserror::Error;
use tokio::time::Instant;

use crate::secure::{ENVELOPE_OVERHEAD, OpenError, SealError, Transport};
use crate::wire::{Datagram, DecodeError, EncodeError, MAX_SEND_DATAGRAM_BYTES};

/// Why a datagram could not pass the channel.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The datagram could not be encoded (e.g. over the send limit).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The bytes are not a valid datagram (or, for a cipher, not authentic).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The datagram could not be encrypted (e.g. the keys are worn out).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The bytes did not authenticate (forged, replayed, other keys).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The channel has no keys for sealed datagrams (plaintext).
    #[error("sealed datagram on a plaintext channel")]
    NotSealed,
}

/// Turns typed datagrams into bytes for the wire and back.
pub trait Channel: fmt::Debug + Send + Sync {
    /// Encodes (and, for a cipher, encrypts) one outgoing datagram. The
    /// result is at most [`crate::wire::MAX_SEND_DATAGRAM_BYTES`].
    fn seal(&mut self, datagram: &Datagram, now: Instant) -> Result<Vec<u8>, ChannelError>;

    /// Decodes (and, for a cipher, authenticates) one received datagram.
    fn open(&mut self, bytes: &[u8], now: Instant) -> Result<Datagram, ChannelError>;
}

/// No protection: the seed's JSON, byte for byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plaintext;

impl Channel for Plaintext {
    fn seal(&mut self, datagram: &Datagram, _now: Instant) -> Result<Vec<u8>, ChannelError> {
        Ok(datagram.encode()?)
    }

    fn open(&mut self, bytes: &[u8], _now: Instant) -> Result<Datagram, ChannelError> {
        Ok(Datagram::decode(bytes)?)
    }
}

/// Largest JSON datagram a sealed channel encrypts: the envelope must stay
/// within [`MAX_SEND_DATAGRAM_BYTES`] too.
pub const MAX_SEALED_PLAINTEXT_BYTES: usize = MAX_SEND_DATAGRAM_BYTES - ENVELOPE_OVERHEAD;

/// The seed's JSON inside the session's Noise transport: every datagram
/// authenticated and encrypted, with a counter and a replay window.
#[derive(Debug)]
pub struct SealedChannel {
    transport: Transport,
}

impl SealedChannel {
    /// A channel over the keys of a finished handshake.
    pub fn new(transport: Transport) -> SealedChannel {
        SealedChannel { transport }
    }
}

impl Channel for SealedChannel {
    fn seal(&mut self, datagram: &Datagram, now: Instant) -> Result<Vec<u8>, ChannelError> {
        let plain = datagram.encode()?;
        if plain.len() > MAX_SEALED_PLAINTEXT_BYTES {
            return Err(EncodeError::TooLarge(plain.len() + ENVELOPE_OVERHEAD).into());
        }
        Ok(self.transport.seal(&plain, now)?)
    }

    fn open(&mut self, bytes: &[u8], now: Instant) -> Result<Datagram, ChannelError> {
        let plain = self.transport.open(bytes, now)?;
        Ok(Datagram::decode(&plain)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, MAX_SEND_DATAGRAM_BYTES, Message};
    use p2pchat::PeerId;

    #[test]
    fn plaintext_is_the_wire_encoding_and_keeps_its_limits() {
        let mut ch = Plaintext;
        let now = Instant::now();
        let from = PeerId::random();
        let dg = Datagram::disconnect(from);
        let bytes = ch.seal(&dg, now).unwrap();
        assert_eq!(bytes, dg.encode().unwrap());
        assert_eq!(ch.open(&bytes, now).unwrap(), dg);
        assert!(matches!(
            ch.open(b"nope", now),
            Err(ChannelError::Decode(_))
        ));
        let big: Datagram = Message {
            header: Header::now(from),
            body: "a".repeat(MAX_SEND_DATAGRAM_BYTES),
            id: None,
            part: None,
        }
        .into();
        assert!(matches!(ch.seal(&big, now), Err(ChannelError::Encode(_))));
    }
}
