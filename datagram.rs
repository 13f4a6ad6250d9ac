//! One classifier for every UDP port that carries more than one protocol.
//!
//! The server's UDP port carries STUN and relay frames; the peer's chat
//! socket carries chat datagrams, STUN answers and relay frames. Both tell
//! them apart here, by the first byte, as RFC 7983 does for STUN next to
//! other protocols: STUN messages start with 0..=3 (the two top bits of the
//! message type are zero), relay frames with their magic `P`, sealed
//! (end-to-end encrypted) chat datagrams with [`SEALED_MAGIC`] `S`, and
//! plaintext chat datagrams are JSON objects (`{`, possibly after
//! whitespace).

use crate::proto::relay_frame::MAGIC;

/// First byte of a sealed chat datagram: the peer's encrypted transport
/// envelope (the layout is the peer's own business; relays pass it on
/// unread).
pub const SEALED_MAGIC: u8 = b'S';

/// What a datagram is, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// A STUN message (first byte 0..=3).
    Stun,
    /// A relay frame (starts with the relay magic `P`).
    Relay,
    /// An encrypted chat datagram (starts with [`SEALED_MAGIC`]).
    Sealed,
    /// Anything else: a chat datagram, or noise for the chat decoder to
    /// reject.
    Other,
}

/// Demultiplexes by the first byte (RFC 7983).
pub fn classify(bytes: &[u8]) -> DatagramKind {
    match bytes.first() {
        Some(0..=3) => DatagramKind::Stun,
        Some(&b) if b == MAGIC[0] => DatagramKind::Relay,
        Some(&SEALED_MAGIC) => DatagramKind::Sealed,
        _ => DatagramKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_decides() {
        assert_eq!(classify(&[0x00, 0x01]), DatagramKind::Stun);
        assert_eq!(classify(&[0x03]), DatagramKind::Stun);
        assert_eq!(classify(b"P2R\x01"), DatagramKind::Relay);
        assert_eq!(classify(b"S\x01\x00"), DatagramKind::Sealed);
        assert_eq!(classify(br#"{"type":"hello"}"#), DatagramKind::Other);
        assert_eq!(classify(b" {"), DatagramKind::Other);
        assert_eq!(classify(&[]), DatagramKind::Other);
        assert_eq!(classify(&[0x04]), DatagramKind::Other);
    }
}
