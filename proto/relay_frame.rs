//! The relay's datagram format: the UDP half of the contract, next to the
//! gRPC half in `signaling.proto`. Pure encode/decode and the MAC of BIND
//! and RELEASE, no sockets.
//!
//! The server's UDP port carries STUN and relay frames; the first byte tells
//! them apart (RFC 7983 style): STUN starts with 0x00..=0x03, a relay frame
//! with ASCII `P` `R`. All integers are big-endian.
//!
//! | type | frame | direction | body after the 4-byte header | frame bytes |
//! |---|---|---|---|---|
//! | 1 | BIND | peer -> server | peer id (16), target peer id (16), channel echo (8), counter (8), MAC (32) | 84 |
//! | 2 | BOUND | server -> peer | target peer id (16), channel (8), ready (1: 0 waiting, 1 ready) | 29 |
//! | 3 | DATA | both | channel (8), payload (0..=[`MAX_RELAY_PAYLOAD`]) | 12..=1412 |
//! | 4 | REFUSED | server -> peer | target peer id (16), code (1, see [`RefuseCode`]) | 21 |
//! | 5 | RELEASE | peer -> server | same as BIND | 84 |
//!
//! Header: `P` `R`, version [`VERSION`] (2; version 1 carried the session
//! token in clear and is refused), type.
//!
//! # BIND and RELEASE are authenticated, and carry no secret
//!
//! The session token never goes on the wire. Both sides derive the **relay
//! key** from it, `HMAC-SHA256(key = token bytes, "p2pchat relay key v1")`
//! ([`RelayKey::from_token`]), and a BIND or RELEASE ends in
//! `HMAC-SHA256(relay key, the frame's first 52 bytes)`: magic, version,
//! type, peer id, target, channel echo and counter ([`claim_mac`]). The type
//! byte is covered, so a BIND's MAC does not make a RELEASE; the version is
//! covered, so a frame cannot be re-labelled as another version. The server
//! checks the MAC in constant time ([`Claim::verify`]).
//!
//! * **Counter**: strictly increasing per (peer, relay server) across all
//!   of the peer's frames. A peer starts it at the current Unix time in
//!   milliseconds and adds one per frame, so a restarted peer still goes
//!   forward (unless its clock went back by more than it sent frames). The
//!   relay keeps, per binding, the highest counter it accepted and drops a
//!   BIND or RELEASE whose counter is not above it: a captured frame
//!   replayed from anywhere does nothing to a binding that exists.
//! * **Channel echo**: the channel of the last BOUND the peer got for this
//!   binding, [`NO_CHANNEL`] (0) before the first. BOUND goes only to the
//!   address the BIND came from, and the relay starts forwarding to an
//!   address only after a BIND *from that address* echoes the channel it
//!   sent there (a return-routability check under the key: only the key
//!   holder can echo, only the one at the address learns the channel). So a
//!   new binding, or a binding's move to a new address (NAT rebinding), takes
//!   one extra round trip: BIND, BOUND(channel), BIND(echo), BOUND; and a
//!   frame replayed or raced from another address never makes the relay
//!   send a session's traffic there. Channels are random and never 0.
//!
//! What the relay does with these (and why a binding that is gone may accept
//! any counter again) is documented in the server's `udp::relay` module;
//! `SECURITY.md` has the summary.
//!
//! DATA is not authenticated by the relay (it forwards only between the two
//! addresses that proved the key): its payload is opaque to the relay, and
//! end-to-end protection is the peers' business.

use thiserror::Error;
use uuid::Uuid;

use crate::ids::SessionToken;
use claim::maced_bytes;
pub use claim::{Claim, ClaimKind, RelayKey, claim_mac};

/// First two bytes of every relay frame.
pub const MAGIC: [u8; 2] = *b"PR";

/// The frame format version this code speaks. Version 1 (the session token
/// in clear in BIND and RELEASE) is refused.
pub const VERSION: u8 = 2;

/// Header length: magic, version, type.
pub const HEADER_BYTES: usize = 4;

/// Length of the MAC ending a BIND or RELEASE (a full HMAC-SHA256).
pub const MAC_BYTES: usize = 32;

/// Length of a BIND or RELEASE frame.
pub const CLAIM_FRAME_BYTES: usize = HEADER_BYTES + MACED_BODY_BYTES + MAC_BYTES;

/// The channel echo of a BIND or RELEASE that has no channel yet. The relay
/// never hands out channel 0.
pub const NO_CHANNEL: u64 = 0;

/// The label the relay key is derived with from the session token.
pub const RELAY_KEY_LABEL: &[u8] = b"p2pchat relay key v1";

/// Largest DATA payload the relay forwards; bigger frames are dropped. Chat
/// datagrams are at most 1200 bytes, so this leaves room.
pub const MAX_RELAY_PAYLOAD: usize = 1400;

/// Largest relay frame on the wire (a full DATA frame).
pub const MAX_FRAME_BYTES: usize = HEADER_BYTES + 8 + MAX_RELAY_PAYLOAD;

/// Body bytes of a BIND or RELEASE before the MAC: peer id, target, channel
/// echo, counter.
const MACED_BODY_BYTES: usize = 16 + 16 + 8 + 8;

/// Frame bytes the MAC covers: the header and the body before the MAC.
const MACED_BYTES: usize = HEADER_BYTES + MACED_BODY_BYTES;

const TYPE_BIND: u8 = 1;
const TYPE_BOUND: u8 = 2;
const TYPE_DATA: u8 = 3;
const TYPE_REFUSED: u8 = 4;
const TYPE_RELEASE: u8 = 5;

/// Why the server refused a BIND (the REFUSED frame's code byte). Only an
/// authenticated, fresh BIND is ever answered with REFUSED; anything else
/// (unknown peer, bad MAC, old counter) is dropped without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefuseCode {
    /// The sender authenticated but is not online (its lease ran out).
    Unauthorized = 1,
    /// The target is unknown or offline.
    TargetOffline = 2,
    /// The relay holds its maximum number of sessions.
    Full = 3,
    /// Too many frames or bytes.
    RateLimited = 4,
}

impl RefuseCode {
    /// The code for a byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<RefuseCode> {
        match byte {
            1 => Some(RefuseCode::Unauthorized),
            2 => Some(RefuseCode::TargetOffline),
            3 => Some(RefuseCode::Full),
            4 => Some(RefuseCode::RateLimited),
            _ => None,
        }
    }
}

/// One relay frame. DATA borrows its payload from the buffer it was decoded
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayFrame<'a> {
    /// Asks the server to relay between `peer_id` and `target`.
    Bind(Claim),
    /// The server confirms a binding.
    Bound {
        /// The peer the binding is with.
        target: Uuid,
        /// The channel id to put in DATA frames (the receiver's own), and
        /// to echo in the next BIND.
        channel: u64,
        /// Whether the relay forwards now: both sides proved their address.
        ready: bool,
    },
    /// A relayed datagram.
    Data {
        /// The channel: the sender's towards the server, the receiver's
        /// from the server.
        channel: u64,
        /// The opaque datagram.
        payload: &'a [u8],
    },
    /// The server refused a BIND.
    Refused {
        /// The peer the binding was for.
        target: Uuid,
        /// Why (a [`RefuseCode`] byte; unknown codes are kept as sent).
        code: u8,
    },
    /// Ends the binding (same fields as BIND).
    Release(Claim),
}

/// Why bytes are not a relay frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Shorter than its type requires (or than the header).
    #[error("relay frame truncated: {got} bytes, {need} needed")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Longer than its type allows.
    #[error("relay frame too long: {got} bytes, at most {max}")]
    TooLong {
        /// Bytes present.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Not starting with `PR`.
    #[error("not a relay frame")]
    BadMagic,
    /// A version this code does not speak.
    #[error("unsupported relay frame version {0}")]
    BadVersion(u8),
    /// An unknown type byte.
    #[error("unknown relay frame type {0}")]
    BadType(u8),
    /// A BOUND ready byte other than 0 or 1.
    #[error("invalid ready flag {0}")]
    BadFlag(u8),
}

/// Bytes of the body after the header, per type: (min, max).
fn body_len(kind: u8) -> Option<(usize, usize)> {
    const CLAIM: usize = CLAIM_FRAME_BYTES - HEADER_BYTES;
    match kind {
        TYPE_BIND | TYPE_RELEASE => Some((CLAIM, CLAIM)),
        TYPE_BOUND => Some((25, 25)),
        TYPE_DATA => Some((8, 8 + MAX_RELAY_PAYLOAD)),
        TYPE_REFUSED => Some((17, 17)),
        _ => None,
    }
}

// The helpers below read fixed offsets of a body whose length `decode` has
// already checked against `body_len`.

fn uuid_at(bytes: &[u8], at: usize) -> Uuid {
    let mut raw = [0u8; 16];
    raw.copy_from_slice(&bytes[at..at + 16]);
    Uuid::from_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(raw)
}

fn claim_at(body: &[u8]) -> Claim {
    let mut mac = [0u8; MAC_BYTES];
    mac.copy_from_slice(&body[MACED_BODY_BYTES..MACED_BODY_BYTES + MAC_BYTES]);
    Claim {
        peer_id: uuid_at(body, 0),
        target: uuid_at(body, 16),
        channel: u64_at(body, 32),
        counter: u64_at(body, 40),
        mac,
    }
}

impl RelayFrame<'static> {
    /// A BIND of `peer_id` towards `target` with its MAC under `key`.
    pub fn bind(
        key: &RelayKey,
        peer_id: Uuid,
        target: Uuid,
        channel: u64,
        counter: u64,
    ) -> RelayFrame<'static> {
        RelayFrame::Bind(Claim::new(
            ClaimKind::Bind,
            key,
            peer_id,
            target,
            channel,
            counter,
        ))
    }

    /// A RELEASE of `peer_id`'s binding with `target`, MAC under `key`.
    pub fn release(
        key: &RelayKey,
        peer_id: Uuid,
        target: Uuid,
        channel: u64,
        counter: u64,
    ) -> RelayFrame<'static> {
        RelayFrame::Release(Claim::new(
            ClaimKind::Release,
            key,
            peer_id,
            target,
            channel,
            counter,
        ))
    }
}

impl<'a> RelayFrame<'a> {
    /// Parses one frame; every length is checked before any field is read.
    /// A BIND or RELEASE is returned unverified: see [`Claim::verify`].
    pub fn decode(bytes: &'a [u8]) -> Result<RelayFrame<'a>, FrameError> {
        if bytes.len() < HEADER_BYTES {
            return Err(FrameError::Truncated {
                got: bytes.len(),
                need: HEADER_BYTES,
            });
        }
        if bytes[..2] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        if bytes[2] != VERSION {
            return Err(FrameError::BadVersion(bytes[2]));
        }
        let kind = bytes[3];
        let (min, max) = body_len(kind).ok_or(FrameError::BadType(kind))?;
        let body = &bytes[HEADER_BYTES..];
        if body.len() < min {
            return Err(FrameError::Truncated {
                got: bytes.len(),
                need: HEADER_BYTES + min,
            });
        }
        if body.len() > max {
            return Err(FrameError::TooLong {
                got: bytes.len(),
                max: HEADER_BYTES + max,
            });
        }
        Ok(match kind {
            TYPE_BIND => RelayFrame::Bind(claim_at(body)),
            TYPE_RELEASE => RelayFrame::Release(claim_at(body)),
            TYPE_BOUND => RelayFrame::Bound {
                target: uuid_at(body, 0),
                channel: u64_at(body, 16),
                ready: match body[24] {
                    0 => false,
                    1 => true,
                    other => return Err(FrameError::BadFlag(other)),
                },
            },
            TYPE_DATA => RelayFrame::Data {
                channel: u64_at(body, 0),
                payload: &body[8..],
            },
            _ => RelayFrame::Refused {
                target: uuid_at(body, 0),
                code: body[16],
            },
        })
    }

    /// The claim of a BIND or RELEASE, with which of the two it is.
    pub fn claim(&self) -> Option<(ClaimKind, &Claim)> {
        match self {
            RelayFrame::Bind(claim) => Some((ClaimKind::Bind, claim)),
            RelayFrame::Release(claim) => Some((ClaimKind::Release, claim)),
            _ => None,
        }
    }

    /// Appends the encoded frame to `out`. A DATA payload over
    /// [`MAX_RELAY_PAYLOAD`] is encoded anyway; the receiver drops it (check
    /// the size before sending).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Some((kind, claim)) = self.claim() {
            out.extend_from_slice(&maced_bytes(
                kind,
                &claim.peer_id,
                &claim.target,
                claim.channel,
                claim.counter,
            ));
            out.extend_from_slice(&claim.mac);
            return;
        }
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        match self {
            RelayFrame::Bound {
                target,
                channel,
                ready,
            } => {
                out.push(TYPE_BOUND);
                out.extend_from_slice(target.as_bytes());
                out.extend_from_slice(&channel.to_be_bytes());
                out.push(u8::from(*ready));
            }
            RelayFrame::Data { channel, payload } => {
                out.push(TYPE_DATA);
                out.extend_from_slice(&channel.to_be_bytes());
                out.extend_from_slice(payload);
            }
            RelayFrame::Refused { target, code } => {
                out.push(TYPE_REFUSED);
                out.extend_from_slice(target.as_bytes());
                out.push(*code);
            }
            // Encoded above.
            RelayFrame::Bind(_) | RelayFrame::Release(_) => {}
        }
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLAIM_FRAME_BYTES);
        self.encode(&mut out);
        out
    }
}

#[path = "relay_claim.rs"]
mod claim;
#[cfg(test)]
#[path = "relay_frame_tests.rs"]
mod tests;
