//! Self-certifying identities: a peer's id is derived from its Ed25519
//! public key, so anyone holding the key can check the id, and neither
//! another client nor the signaling server can claim an id without the
//! private key.
//!
//! * [`PublicKey`]: a validated Ed25519 public key; [`PublicKey::peer_id`]
//!   derives the id (a version-8 UUID, [`PeerId::is_key_derived`]).
//! * [`registration_message`]: what a peer signs to register, bound to a
//!   server-issued one-time challenge.
//! * [`PublicKey::to_x25519`]: the same key as a Curve25519 Diffie-Hellman
//!   key, the peer's Noise static key (the birational map RFC 7748 section
//!   4.1 describes, as libsodium's `crypto_sign_ed25519_pk_to_curve25519`).

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

use crate::PeerId;

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;

/// Length of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// Domain separation of the id derivation.
const PEER_ID_DOMAIN: &[u8] = b"p2pchat peer id v1\0";

/// Domain separation of the registration proof.
const REGISTER_DOMAIN: &[u8] = b"p2pchat register v1\0";

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 bytes, not a point on the curve, or a small-order point.
    #[error("not a valid Ed25519 public key")]
    InvalidKey,
    /// Not 64 bytes.
    #[error("a signature is {SIGNATURE_BYTES} bytes")]
    SignatureLength,
    /// The signature does not verify under the key.
    #[error("the signature does not verify")]
    BadSignature,
}

/// A validated Ed25519 public key (never a small-order point).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_BYTES]);

impl PublicKey {
    /// Parses and validates 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let raw: [u8; PUBLIC_KEY_BYTES] = bytes.try_into().map_err(|_| KeyError::InvalidKey)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidKey)?;
        if key.is_weak() {
            return Err(KeyError::InvalidKey);
        }
        Ok(PublicKey(raw))
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        &self.0
    }

    /// The peer id this key owns: the first 16 bytes of
    /// SHA-256(domain || key) with the UUID version set to 8 and the RFC
    /// 9562 variant, i.e. 122 bits of the hash.
    pub fn peer_id(&self) -> PeerId {
        let digest = Sha256::new()
            .chain_update(PEER_ID_DOMAIN)
            .chain_update(self.0)
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        PeerId::from_uuid(Uuid::new_v8(bytes))
    }

    /// Whether this key owns `id`.
    pub fn owns(&self, id: &PeerId) -> bool {
        self.peer_id() == *id
    }

    /// Verifies an Ed25519 signature (strict: no malleable encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let sig = Signature::from_slice(signature).map_err(|_| KeyError::SignatureLength)?;
        self.verifying_key()
            .verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The key as a Curve25519 (X25519) public key: the Noise static key
    /// of its owner.
    pub fn to_x25519(&self) -> [u8; 32] {
        self.verifying_key().to_montgomery().to_bytes()
    }

    /// Standard base64, as the REST API and the known-peers file spell it
    /// (grpcurl prints proto `bytes` the same way).
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses [`PublicKey::to_base64`]'s form.
    pub fn from_base64(text: &str) -> Result<PublicKey, KeyError> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::InvalidKey)?;
        PublicKey::from_bytes(&raw)
    }

    fn verifying_key(&self) -> VerifyingKey {
        // Validated in `from_bytes`, the only constructor.
        VerifyingKey::from_bytes(&self.0).unwrap_or_else(|_| unreachable!("validated key"))
    }
}

impl From<&ed25519_dalek::VerifyingKey> for PublicKey {
    fn from(key: &ed25519_dalek::VerifyingKey) -> PublicKey {
        PublicKey(key.to_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// What a peer signs to register with `key` and `username`, given the
/// server's one-time `challenge` (`GetChallenge`). The challenge binds the
/// proof to one server process and a short time; every field is length
/// prefixed so no two inputs give the same message.
pub fn registration_message(challenge: &[u8], key: &PublicKey, username: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(REGISTER_DOMAIN.len() + challenge.len() + 48 + username.len());
    msg.extend_from_slice(REGISTER_DOMAIN);
    for field in [challenge, key.as_bytes().as_slice(), username.as_bytes()] {
        msg.extend_from_slice(&(field.len() as u32).to_be_bytes());
        msg.extend_from_slice(field);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let pk = PublicKey::from(&sk.verifying_key());
        (sk, pk)
    }

    #[test]
    fn ids_are_version_8_and_owned_by_their_key_only() {
        let (_, a) = key(1);
        let (_, b) = key(2);
        let id = a.peer_id();
        assert_eq!(id.as_uuid().get_version_num(), 8);
        assert!(id.is_key_derived());
        assert!(a.owns(&id));
        assert!(!b.owns(&id));
        assert_ne!(a.peer_id(), b.peer_id());
        assert!(!PeerId::random().is_key_derived());
        // Stable across runs and builds: the derivation is part of the contract.
        assert_eq!(a.peer_id(), key(1).1.peer_id());
    }

    #[test]
    fn invalid_and_small_order_keys_are_refused() {
        assert_eq!(PublicKey::from_bytes(&[0u8; 31]), Err(KeyError::InvalidKey));
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::InvalidKey));
        assert!(PublicKey::from_base64("not base64!").is_err());
        let (_, a) = key(3);
        assert_eq!(PublicKey::from_base64(&a.to_base64()), Ok(a));
    }

    #[test]
    fn registration_proofs_bind_challenge_key_and_name() {
        let (sk, pk) = key(4);
        let msg = registration_message(b"challenge-1", &pk, "alice");
        let sig = sk.sign(&msg).to_bytes();
        assert_eq!(pk.verify(&msg, &sig), Ok(()));
        for other in [
            registration_message(b"challenge-2", &pk, "alice"),
            registration_message(b"challenge-1", &pk, "alicf"),
            registration_message(b"challenge-1alice", &pk, ""),
        ] {
            assert_eq!(pk.verify(&other, &sig), Err(KeyError::BadSignature));
        }
        let (_, other_key) = key(5);
        assert_eq!(other_key.verify(&msg, &sig), Err(KeyError::BadSignature));
        assert_eq!(pk.verify(&msg, &sig[..63]), Err(KeyError::SignatureLength));
    }

    #[test]
    fn the_x25519_form_matches_the_secret_side() {
        let (sk, pk) = key(6);
        // X25519 public key of the signing key's scalar equals the mapped
        // public key: the Noise static key pair is consistent.
        let scalar = sk.to_scalar_bytes();
        let derived = curve_public(scalar);
        assert_eq!(derived, pk.to_x25519());
    }

    fn curve_public(scalar: [u8; 32]) -> [u8; 32] {
        let point = curve25519_dalek::MontgomeryPoint::mul_base_clamped(scalar);
        point.to_bytes()
    }
}
