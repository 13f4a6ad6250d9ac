//! The seam between the session's layers and the bytes on the wire.
//!
//! Everything a session sends leaves through [`Channel::seal`] as a typed
//! [`Datagram`], and bytes meant for it can come in through
//! [`Channel::open`]. Today the only channel is [`Plaintext`], the seed's
//! JSON. An encryption layer (e.g. a Noise transport) implements the same
//! trait and replaces it without touching path selection, liveness,
//! reliability or fragmentation above it. Reliable messages are kept typed
//! while in flight and sealed again for every retransmission, so a cipher
//! with per-packet nonces never has to resend identical ciphertext.

use std::fmt;

use thiserror::Error;

use crate::wire::{Datagram, DecodeError, EncodeError};

/// Why a datagram could not pass the channel.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The datagram could not be encoded (e.g. over the send limit).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The bytes are not a valid datagram (or, for a cipher, not authentic).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Turns typed datagrams into bytes for the wire and back.
pub trait Channel: fmt::Debug + Send + Sync {
    /// Encodes (and, for a cipher, encrypts) one outgoing datagram. The
    /// result is at most [`crate::wire::MAX_SEND_DATAGRAM_BYTES`].
    fn seal(&mut self, datagram: &Datagram) -> Result<Vec<u8>, ChannelError>;

    /// Decodes (and, for a cipher, authenticates) one received datagram.
    fn open(&mut self, bytes: &[u8]) -> Result<Datagram, ChannelError>;
}

/// No protection: the seed's JSON, byte for byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plaintext;

impl Channel for Plaintext {
    fn seal(&mut self, datagram: &Datagram) -> Result<Vec<u8>, ChannelError> {
        Ok(datagram.encode()?)
    }

    fn open(&mut self, bytes: &[u8]) -> Result<Datagram, ChannelError> {
        Ok(Datagram::decode(bytes)?)
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
        let from = PeerId::random();
        let dg = Datagram::disconnect(from);
        let bytes = ch.seal(&dg).unwrap();
        assert_eq!(bytes, dg.encode().unwrap());
        assert_eq!(ch.open(&bytes).unwrap(), dg);
        assert!(matches!(ch.open(b"nope"), Err(ChannelError::Decode(_))));
        let big: Datagram = Message {
            header: Header::now(from),
            body: "a".repeat(MAX_SEND_DATAGRAM_BYTES),
            id: None,
            part: None,
        }
        .into();
        assert!(matches!(ch.seal(&big), Err(ChannelError::Encode(_))));
    }
}
