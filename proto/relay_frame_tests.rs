//! Tests of the relay frame format: sizes, strict decoding, the MAC of BIND
//! and RELEASE (known answers computed with Python's `hmac`, tampering,
//! wrong keys and kinds), and a bounded pseudo-random decoder sweep.

use super::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const A: Uuid = Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888);
const B: Uuid = Uuid::from_u128(0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000);
const TOKEN: [u8; 32] = [7; 32];

fn key() -> RelayKey {
    RelayKey::from_token(&SessionToken::from_bytes(TOKEN))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn samples(payload: &[u8]) -> Vec<RelayFrame<'_>> {
    vec![
        RelayFrame::bind(&key(), A, B, NO_CHANNEL, 1),
        RelayFrame::Bound {
            target: B,
            channel: 0x0102_0304_0506_0708,
            ready: true,
        },
        RelayFrame::Bound {
            target: B,
            channel: 9,
            ready: false,
        },
        RelayFrame::Data {
            channel: u64::MAX,
            payload,
        },
        RelayFrame::Refused { target: B, code: 3 },
        RelayFrame::release(&key(), A, B, 0x0102_0304_0506_0708, u64::MAX),
    ]
}

#[test]
fn every_frame_round_trips_with_the_documented_size() {
    let payload = b"{\"type\":\"hello\"}";
    let sizes = [84, 29, 29, 12 + payload.len(), 21, 84];
    assert_eq!(CLAIM_FRAME_BYTES, 84);
    for (frame, size) in samples(payload).into_iter().zip(sizes) {
        let bytes = frame.to_bytes();
        assert_eq!(bytes.len(), size, "{frame:?}");
        assert_eq!(&bytes[..3], b"PR\x02", "magic and version 2");
        assert_eq!(
            crate::datagram::classify(&bytes),
            crate::datagram::DatagramKind::Relay
        );
        assert_eq!(RelayFrame::decode(&bytes), Ok(frame));
    }
}

#[test]
fn the_layout_is_the_documented_one() {
    let frame = RelayFrame::bind(&key(), A, B, 0x0102_0304_0506_0708, 1_700_000_000_000);
    let bytes = frame.to_bytes();
    assert_eq!(&bytes[..4], b"PR\x02\x01");
    assert_eq!(&bytes[4..20], A.as_bytes());
    assert_eq!(&bytes[20..36], B.as_bytes());
    assert_eq!(&bytes[36..44], &0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(&bytes[44..52], &1_700_000_000_000u64.to_be_bytes());
    let Some((ClaimKind::Bind, claim)) = frame.claim() else {
        panic!("a BIND has a claim");
    };
    assert_eq!(&bytes[52..], &claim.mac);
    let release = RelayFrame::release(&key(), A, B, 5, 6).to_bytes();
    assert_eq!(&release[..4], b"PR\x02\x05");
}

/// Known answers from an independent implementation (Python 3):
/// `hmac.new(bytes([7]*32), b"p2pchat relay key v1", sha256)` for the key,
/// then `hmac.new(key, frame[:52], sha256)` for the MACs.
#[test]
fn key_derivation_and_mac_match_known_answers() {
    let key = key();
    // The key is private; its MACs pin it.
    let bind = claim_mac(
        &key,
        ClaimKind::Bind,
        &A,
        &B,
        0x0102_0304_0506_0708,
        1_700_000_000_000,
    );
    assert_eq!(
        hex(&bind),
        "ea0ffa2e1c5726416418598466da5a4456acfbdce0d56a307624add6b7e50bc0"
    );
    let release = claim_mac(
        &key,
        ClaimKind::Release,
        &A,
        &B,
        0x0102_0304_0506_0708,
        1_700_000_000_000,
    );
    assert_eq!(
        hex(&release),
        "4ce911cb11a6a08ef4603b85d7185502cb3de7b0527cb71feb88f9d135a440a1"
    );
    // The derived key is HMAC(token, label), not the token.
    let mut direct = <HmacSha256 as Mac>::new_from_slice(&TOKEN).unwrap();
    direct.update(RELAY_KEY_LABEL);
    assert_eq!(
        hex(&direct.finalize().into_bytes()),
        "9afe68d15a9ce37c5dc9312a5117426353c1978cc8d88cef0e6b7308be23436e"
    );
    assert_eq!(format!("{key:?}"), "RelayKey(..)");
}

#[test]
fn the_mac_verifies_only_the_frame_it_was_made_for() {
    let key = key();
    let other = RelayKey::from_token(&SessionToken::from_bytes([8; 32]));
    let bind = RelayFrame::bind(&key, A, B, 42, 1000);
    let Some((kind, claim)) = bind.claim() else {
        unreachable!()
    };
    assert!(claim.verify(kind, &key));
    assert!(!claim.verify(kind, &other), "another peer's key");
    assert!(
        !claim.verify(ClaimKind::Release, &key),
        "a BIND's MAC does not make a RELEASE"
    );
    // Every changed field breaks it.
    for tampered in [
        Claim {
            peer_id: B,
            ..claim.clone()
        },
        Claim {
            target: A,
            ..claim.clone()
        },
        Claim {
            channel: 43,
            ..claim.clone()
        },
        Claim {
            counter: 1001,
            ..claim.clone()
        },
    ] {
        assert!(!tampered.verify(kind, &key), "{tampered:?}");
    }
    // Every single-bit flip of the encoded frame is either not a frame or a
    // frame whose MAC fails.
    let bytes = bind.to_bytes();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        if let Ok(frame) = RelayFrame::decode(&flipped)
            && let Some((kind, claim)) = frame.claim()
        {
            assert!(
                !claim.verify(kind, &key),
                "bit {bit} flipped still verifies"
            );
        }
    }
}

#[test]
fn the_token_never_appears_in_a_frame() {
    let token = SessionToken::from_bytes([
        0x8e, 0x21, 0x5c, 0x09, 0xf3, 0x44, 0xa7, 0x10, 0x6b, 0xd2, 0x3e, 0x91, 0x07, 0xcc, 0x58,
        0x2f, 0xb4, 0x60, 0x1d, 0xe9, 0x72, 0x0a, 0x95, 0x3c, 0xef, 0x18, 0x46, 0xd0, 0x2b, 0x87,
        0x63, 0xfa,
    ]);
    let key = RelayKey::from_token(&token);
    for frame in [
        RelayFrame::bind(&key, A, B, NO_CHANNEL, 1),
        RelayFrame::bind(&key, A, B, 77, 2),
        RelayFrame::release(&key, A, B, 77, 3),
    ] {
        let bytes = frame.to_bytes();
        // Not the token, not half of it, not its hex.
        for window in [
            &token.as_bytes()[..],
            &token.as_bytes()[..16],
            &token.as_bytes()[16..],
        ] {
            assert!(
                !bytes.windows(window.len()).any(|w| w == window),
                "token bytes in {frame:?}"
            );
        }
        let hex = token.to_hex();
        assert!(
            !bytes
                .windows(hex.len())
                .any(|w| w.eq_ignore_ascii_case(hex.as_bytes()))
        );
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
    for frame in [samples(b"")[0].clone(), samples(b"")[5].clone()] {
        let mut bytes = frame.to_bytes();
        bytes.push(0);
        assert!(matches!(
            RelayFrame::decode(&bytes),
            Err(FrameError::TooLong { .. })
        ));
    }
}

#[test]
fn bad_header_and_flags_are_errors() {
    let good = samples(b"")[1].to_bytes();
    let mut magic = good.clone();
    magic[1] = b'X';
    assert_eq!(RelayFrame::decode(&magic), Err(FrameError::BadMagic));
    let mut version = good.clone();
    version[2] = 3;
    assert_eq!(RelayFrame::decode(&version), Err(FrameError::BadVersion(3)));
    let mut kind = good.clone();
    kind[3] = 9;
    assert_eq!(RelayFrame::decode(&kind), Err(FrameError::BadType(9)));
    let mut flag = good;
    flag[28] = 2;
    assert_eq!(RelayFrame::decode(&flag), Err(FrameError::BadFlag(2)));
}

#[test]
fn a_version_1_bind_with_a_clear_token_is_refused() {
    // The old layout: header (version 1), peer id, token, target.
    let mut old = b"PR\x01\x01".to_vec();
    old.extend_from_slice(A.as_bytes());
    old.extend_from_slice(&TOKEN);
    old.extend_from_slice(B.as_bytes());
    assert_eq!(old.len(), 68);
    assert_eq!(RelayFrame::decode(&old), Err(FrameError::BadVersion(1)));
    // The same bytes labelled version 2 are the wrong length.
    old[2] = VERSION;
    assert!(matches!(
        RelayFrame::decode(&old),
        Err(FrameError::Truncated { .. })
    ));
}

#[test]
fn refuse_codes_round_trip() {
    assert_eq!(
        RefuseCode::from_byte(RefuseCode::Full as u8),
        Some(RefuseCode::Full)
    );
    assert_eq!(RefuseCode::from_byte(0), None);
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 40,000 pseudo-random inputs: pure noise, noise behind a valid header of
/// every type (lengths around each type's limits), and valid frames with
/// bytes overwritten. Decoding never panics, and whatever decodes encodes
/// back to exactly the input (one encoding per frame).
#[test]
fn decoding_pseudo_random_input_never_panics_and_is_canonical() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let key = key();
    let valid: Vec<Vec<u8>> = samples(b"payload")
        .iter()
        .map(RelayFrame::to_bytes)
        .collect();
    let mut decoded = 0usize;
    for round in 0..40_000 {
        let mut bytes = match round % 3 {
            0 => {
                let len = rng.below(MAX_FRAME_BYTES + 16);
                (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
            }
            1 => {
                let kind = rng.below(7) as u8;
                let len = match kind {
                    TYPE_DATA => rng.below(MAX_FRAME_BYTES + 4),
                    _ => rng.below(CLAIM_FRAME_BYTES + 4),
                };
                let mut b = vec![b'P', b'R', VERSION, kind];
                b.extend((0..len.saturating_sub(4)).map(|_| rng.next() as u8));
                b.truncate(len);
                b
            }
            _ => {
                let mut b = valid[rng.below(valid.len())].clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                if rng.below(4) == 0 {
                    let cut = rng.below(b.len() + 1);
                    b.truncate(cut);
                }
                b
            }
        };
        if round % 11 == 0 {
            bytes.push(rng.next() as u8);
        }
        if let Ok(frame) = RelayFrame::decode(&bytes) {
            decoded += 1;
            assert_eq!(frame.to_bytes(), bytes, "round {round}");
            if let Some((kind, claim)) = frame.claim() {
                // Random claims do not verify (the valid ones were mutated).
                assert!(
                    !claim.verify(kind, &key) || valid.contains(&bytes),
                    "round {round}"
                );
            }
        }
    }
    assert!(decoded > 1_000, "the sweep reaches the decoders: {decoded}");
}
