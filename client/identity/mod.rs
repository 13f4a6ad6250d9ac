//! Who we are: the long-term Ed25519 key our peer id is derived from.
//!
//! The key signs our registration (the server checks it owns our id) and,
//! as a Curve25519 key, is our Noise static key, so a peer that completes a
//! handshake with us has proof it talks to the owner of our id.
//!
//! * [`keyfile`]: the key on disk (PKCS#8 PEM, mode 0600, created once,
//!   never overwritten).
//! * [`known_peers`]: trust on first use, the keys first seen for each peer
//!   and username.
//! * [`safety`]: safety numbers users compare out of band.
//! * [`IdentityError`]: what can go wrong with those files, phrased for the
//!   user.

mod atomic;
mod error;
pub mod keyfile;
pub mod known_peers;
pub mod safety;
#[cfg(test)]
mod test_dir;

pub use error::IdentityError;
pub use keyfile::KeyFileStatus;
pub use known_peers::{KnownPeers, Pin};
pub use safety::SafetyNumber;

use ed25519_dalek::{Signer, SigningKey};
use p2pchat::{PeerId, PublicKey};
use zeroize::Zeroizing;

/// Our long-term key pair. `Debug` never prints the secret.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    public: PublicKey,
}

impl Identity {
    /// A fresh random key (`--ephemeral`, tests).
    pub fn generate() -> Identity {
        Identity::from_signing_key(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// Wraps an existing key.
    pub fn from_signing_key(signing: SigningKey) -> Identity {
        let public = PublicKey::from(&signing.verifying_key());
        Identity { signing, public }
    }

    /// The secret key (key files write it).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Our peer id, derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.public.peer_id()
    }

    /// Signs `message` (64 bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The secret as a Curve25519 scalar: our Noise static private key
    /// (its public half is [`PublicKey::to_x25519`]).
    pub fn noise_private_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_scalar_bytes())
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .field("public_key", &self.public)
            .finish_non_exhaustive()
    }
}
