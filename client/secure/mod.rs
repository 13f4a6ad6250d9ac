//! Authenticated encryption between peers: a sans-IO Noise layer for
//! sessions over UDP. No sockets and no clock reads; every time is passed
//! in.
//!
//! * [`handshake`]: the Noise IK / XX handshake (`snow`), bound to both
//!   peer ids and the negotiated extensions by the prologue; each side
//!   proves it owns its key-derived id. It ends in an [`Established`]
//!   holding the peer's key, parameters and a [`Transport`].
//! * [`transport`]: sealed datagrams (`S` envelope, ChaCha20-Poly1305),
//!   receiver indices for routing, and an epoch ratchet (Noise `REKEY`)
//!   for forward secrecy.
//! * [`replay`]: the sliding-window replay filter each epoch uses.
//! * [`error`]: why a step was refused.

pub mod error;
pub mod handshake;
mod messages;
pub mod replay;
pub mod transport;

#[cfg(test)]
mod tests;

pub use error::{HandshakeError, OpenError, SealError};
pub use handshake::{
    Established, Handshake, LocalParams, MAX_CLOCK_SKEW, MAX_HANDSHAKE_MESSAGE, PROTOCOL_VERSION,
    Pattern, Prologue,
};
pub use replay::{REPLAY_WINDOW, ReplayWindow};
pub use transport::{
    ENVELOPE_OVERHEAD, ENVELOPE_VERSION, MAGIC, MAX_PLAINTEXT, PREVIOUS_EPOCH_GRACE,
    REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, Transport, receiver_index,
};

/// Whether `msg` is a first handshake message (of either pattern), by its
/// tag byte alone: the engine routes a first message to a new handshake and
/// anything else to the one in progress.
pub fn is_first_message(msg: &[u8]) -> bool {
    matches!(msg.first(), Some(&messages::MSG1_IK | &messages::MSG1_XX))
}
