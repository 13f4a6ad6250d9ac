//! Why a handshake, a seal or an open was refused.
//!
//! The variants say enough to log and count; none carries attacker-chosen
//! bytes or key material.

use thiserror::Error;

/// Why a handshake step failed.
///
/// After [`HandshakeError::TooLarge`], [`HandshakeError::Malformed`],
/// [`HandshakeError::UnexpectedMessage`] and [`HandshakeError::Decrypt`] the
/// [`Handshake`](super::Handshake) is unchanged (a forged or stray message
/// cannot kill it), with one exception: the real XX msg3 altered in transit
/// past its static key aborts the responder (Noise cannot roll that back).
/// After the other errors of `read` it is aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The message is longer than [`MAX_HANDSHAKE_MESSAGE`](super::MAX_HANDSHAKE_MESSAGE).
    #[error("handshake message too large")]
    TooLarge,
    /// Truncated, an unknown tag, or a payload of the wrong shape.
    #[error("malformed handshake message")]
    Malformed,
    /// A well-formed message of another stage or pattern than expected.
    #[error("unexpected handshake message")]
    UnexpectedMessage,
    /// Noise refused it: authentication failed (wrong keys, another
    /// prologue, tampering) or a bad Diffie-Hellman input.
    #[error("handshake message did not authenticate")]
    Decrypt,
    /// The Ed25519 key in the payload is not the Noise static key the peer
    /// proved it holds.
    #[error("presented key does not match the Noise static key")]
    KeyMismatch,
    /// The peer's key does not own the id the prologue names for its role.
    #[error("the peer's key does not own the expected peer id")]
    WrongPeer,
    /// Our own identity is not the one the prologue names for our role.
    #[error("the prologue does not name our id for our role")]
    NotOurId,
    /// The first message's timestamp is too far from our clock.
    #[error("handshake timestamp outside the allowed clock skew")]
    ClockSkew,
    /// `into_established` before the handshake finished.
    #[error("handshake not finished")]
    NotFinished,
    /// An earlier step failed after Noise accepted it; start over.
    #[error("handshake aborted")]
    Aborted,
    /// Noise reported an internal error (should not happen).
    #[error("internal handshake error")]
    Internal,
}

impl HandshakeError {
    /// Maps a Noise error on input: auth and DH failures are `Decrypt`,
    /// short input is `Malformed`, the rest is internal.
    pub(crate) fn from_noise_read(err: snow::Error) -> HandshakeError {
        match err {
            snow::Error::Decrypt | snow::Error::Dh => HandshakeError::Decrypt,
            snow::Error::Input => HandshakeError::Malformed,
            _ => HandshakeError::Internal,
        }
    }
}

/// Why [`Transport::seal`](super::Transport::seal) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// Plaintext longer than [`MAX_PLAINTEXT`](super::MAX_PLAINTEXT).
    #[error("plaintext too large for one datagram")]
    TooLarge,
    /// The counter reached [`REJECT_AFTER_MESSAGES`](super::REJECT_AFTER_MESSAGES)
    /// (only with rekeying disabled): a new handshake is needed.
    #[error("send counter exhausted")]
    Exhausted,
    /// The AEAD refused (should not happen).
    #[error("internal encryption error")]
    Internal,
}

/// Why [`Transport::open`](super::Transport::open) refused a datagram. The
/// transport's state is unchanged after every one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a sealed datagram: short, other magic or version, or a counter
    /// no sender uses.
    #[error("not a well-formed sealed datagram")]
    Malformed,
    /// Addressed to another receiver index (another session).
    #[error("datagram for another receiver index")]
    WrongIndex,
    /// An epoch we hold no key for (too old, or more than one ahead).
    #[error("datagram from an unknown key epoch")]
    UnknownEpoch,
    /// A counter already received.
    #[error("replayed datagram")]
    Replayed,
    /// Authentication failed: tampered, forged, or another key.
    #[error("datagram did not authenticate")]
    Forged,
    /// A counter behind the replay window.
    #[error("datagram too old for the replay window")]
    TooOld,
}
