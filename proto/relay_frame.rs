//! The relay's datagram format: the UDP half of the contract, next to the
//! gRPC half in `signaling.proto`. Pure encode/decode, no sockets.
//!
//! The server's UDP port carries STUN and relay frames; the first byte tells
//! them apart (RFC 7983 style): STUN starts with 0x00..=0x03, a relay frame
//! with ASCII `P` `R`. All integers are big-endian.
//!
//! | type | frame | direction | body after the 4-byte header |
//! |---|---|---|---|
//! | 1 | BIND | peer -> server | peer id (16), session token (32), target peer id (16) |
//! | 2 | BOUND | server -> peer | target peer id (16), channel (8), ready (1: 0 waiting, 1 ready) |
//! | 3 | DATA | both | channel (8), payload (0..=[`MAX_RELAY_PAYLOAD`]) |
//! | 4 | REFUSED | server -> peer | target peer id (16), code (1, see [`RefuseCode`]) |
//! | 5 | RELEASE | peer -> server | same as BIND |
//!
//! Header: `P` `R`, version [`VERSION`], type.

use thiserror::Error;
use uuid::Uuid;

/// First two bytes of every relay frame.
pub const MAGIC: [u8; 2] = *b"PR";

/// The frame format version this code speaks.
pub const VERSION: u8 = 1;

/// Header length: magic, version, type.
pub const HEADER_BYTES: usize = 4;

/// Largest DATA payload the relay forwards; bigger frames are dropped. Chat
/// datagrams are at most 1200 bytes, so this leaves room.
pub const MAX_RELAY_PAYLOAD: usize = 1400;

/// Largest relay frame on the wire (a full DATA frame).
pub const MAX_FRAME_BYTES: usize = HEADER_BYTES + 8 + MAX_RELAY_PAYLOAD;

const TYPE_BIND: u8 = 1;
const TYPE_BOUND: u8 = 2;
const TYPE_DATA: u8 = 3;
const TYPE_REFUSED: u8 = 4;
const TYPE_RELEASE: u8 = 5;

/// Why the server refused a BIND (the REFUSED frame's code byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefuseCode {
    /// Unknown or offline peer, or wrong token.
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
    Bind {
        /// The sender.
        peer_id: Uuid,
        /// The sender's session token (raw bytes of the hex token).
        token: [u8; 32],
        /// The peer to relay with.
        target: Uuid,
    },
    /// The server confirms a binding.
    Bound {
        /// The peer the binding is with.
        target: Uuid,
        /// The channel id to put in DATA frames (the receiver's own).
        channel: u64,
        /// Whether the other side has bound too.
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
    Release {
        /// The sender.
        peer_id: Uuid,
        /// The sender's session token.
        token: [u8; 32],
        /// The peer the binding is with.
        target: Uuid,
    },
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
    match kind {
        TYPE_BIND | TYPE_RELEASE => Some((64, 64)),
        TYPE_BOUND => Some((25, 25)),
        TYPE_DATA => Some((8, 8 + MAX_RELAY_PAYLOAD)),
        TYPE_REFUSED => Some((17, 17)),
        _ => None,
    }
}

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

impl<'a> RelayFrame<'a> {
    /// Parses one frame; every length is checked before any field is read.
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
            TYPE_BIND | TYPE_RELEASE => {
                let peer_id = uuid_at(body, 0);
                let mut token = [0u8; 32];
                token.copy_from_slice(&body[16..48]);
                let target = uuid_at(body, 48);
                if kind == TYPE_BIND {
                    RelayFrame::Bind {
                        peer_id,
                        token,
                        target,
                    }
                } else {
                    RelayFrame::Release {
                        peer_id,
                        token,
                        target,
                    }
                }
            }
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

    /// Appends the encoded frame to `out`. A DATA payload over
    /// [`MAX_RELAY_PAYLOAD`] is encoded anyway; the receiver drops it (check
    /// the size before sending).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        match self {
            RelayFrame::Bind {
                peer_id,
                token,
                target,
            }
            | RelayFrame::Release {
                peer_id,
                token,
                target,
            } => {
                out.push(if matches!(self, RelayFrame::Bind { .. }) {
                    TYPE_BIND
                } else {
                    TYPE_RELEASE
                });
                out.extend_from_slice(peer_id.as_bytes());
                out.extend_from_slice(token);
                out.extend_from_slice(target.as_bytes());
            }
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
        }
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + 64);
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(payload: &[u8]) -> Vec<RelayFrame<'_>> {
        let a = Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888);
        let b = Uuid::from_u128(0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000);
        vec![
            RelayFrame::Bind {
                peer_id: a,
                token: [7; 32],
                target: b,
            },
            RelayFrame::Bound {
                target: b,
                channel: 0x0102_0304_0506_0708,
                ready: true,
            },
            RelayFrame::Bound {
                target: b,
                channel: 9,
                ready: false,
            },
            RelayFrame::Data {
                channel: u64::MAX,
                payload,
            },
            RelayFrame::Refused { target: b, code: 3 },
            RelayFrame::Release {
                peer_id: a,
                token: [9; 32],
                target: b,
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_with_the_documented_size() {
        let payload = b"{\"type\":\"hello\"}";
        let sizes = [68, 29, 29, 12 + payload.len(), 21, 68];
        for (frame, size) in samples(payload).into_iter().zip(sizes) {
            let bytes = frame.to_bytes();
            assert_eq!(bytes.len(), size, "{frame:?}");
            assert_eq!(
                crate::datagram::classify(&bytes),
                crate::datagram::DatagramKind::Relay
            );
            assert_eq!(RelayFrame::decode(&bytes), Ok(frame));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for frame in samples(b"xy") {
            let bytes = frame.to_bytes();
            let min = match frame {
                RelayFrame::Data { .. } => 12,
                _ => bytes.len(),
            };
            for len in 0..min {
                assert!(
                    matches!(
                        RelayFrame::decode(&bytes[..len]),
                        Err(FrameError::Truncated { .. })
                    ),
                    "{frame:?} cut to {len}"
                );
            }
        }
    }

    #[test]
    fn payload_limit_edge() {
        let max = vec![0xAB; MAX_RELAY_PAYLOAD];
        let bytes = RelayFrame::Data {
            channel: 1,
            payload: &max,
        }
        .to_bytes();
        assert_eq!(bytes.len(), MAX_FRAME_BYTES);
        assert!(matches!(
            RelayFrame::decode(&bytes),
            Ok(RelayFrame::Data { payload, .. }) if payload.len() == MAX_RELAY_PAYLOAD
        ));
        let over = vec![0xAB; MAX_RELAY_PAYLOAD + 1];
        let bytes = RelayFrame::Data {
            channel: 1,
            payload: &over,
        }
        .to_bytes();
        assert!(matches!(
            RelayFrame::decode(&bytes),
            Err(FrameError::TooLong { .. })
        ));
        // Fixed-size frames with a trailing byte are refused too.
        let mut bind = samples(b"")[0].to_bytes();
        bind.push(0);
        assert!(matches!(
            RelayFrame::decode(&bind),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn bad_header_and_flags_are_errors() {
        let good = samples(b"")[1].to_bytes();
        let mut magic = good.clone();
        magic[1] = b'X';
        assert_eq!(RelayFrame::decode(&magic), Err(FrameError::BadMagic));
        let mut version = good.clone();
        version[2] = 2;
        assert_eq!(RelayFrame::decode(&version), Err(FrameError::BadVersion(2)));
        let mut kind = good.clone();
        kind[3] = 9;
        assert_eq!(RelayFrame::decode(&kind), Err(FrameError::BadType(9)));
        let mut flag = good;
        flag[28] = 2;
        assert_eq!(RelayFrame::decode(&flag), Err(FrameError::BadFlag(2)));
    }

    #[test]
    fn refuse_codes_round_trip() {
        assert_eq!(
            RefuseCode::from_byte(RefuseCode::Full as u8),
            Some(RefuseCode::Full)
        );
        assert_eq!(RefuseCode::from_byte(0), None);
    }
}
