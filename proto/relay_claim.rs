//! The authenticated part of BIND and RELEASE: the relay key derived from
//! the session token, the claim a frame carries and its MAC.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::*;

type HmacSha256 = Hmac<Sha256>;

/// A peer's key towards one relay server, derived from its session token
/// with [`RELAY_KEY_LABEL`] (so the token itself keys nothing and is never
/// sent). Never printed by `Debug`.
#[derive(Clone)]
pub struct RelayKey([u8; 32]);

impl RelayKey {
    /// `HMAC-SHA256(key = token bytes, RELAY_KEY_LABEL)`.
    pub fn from_token(token: &SessionToken) -> RelayKey {
        let mut mac = hmac_keyed(token.as_bytes());
        mac.update(RELAY_KEY_LABEL);
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        RelayKey(key)
    }
}

impl std::fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: never into logs.
        f.write_str("RelayKey(..)")
    }
}

fn hmac_keyed(key: &[u8; 32]) -> HmacSha256 {
    // RFC 2104 pads a key shorter than the hash's 64-byte block with
    // zeros: padding it here is the same HMAC, with no fallible call.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <HmacSha256 as hmac::digest::KeyInit>::new(&block.into())
}

/// Which authenticated frame a [`Claim`] is (its type byte is under the MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// BIND.
    Bind,
    /// RELEASE.
    Release,
}

impl ClaimKind {
    fn type_byte(self) -> u8 {
        match self {
            ClaimKind::Bind => TYPE_BIND,
            ClaimKind::Release => TYPE_RELEASE,
        }
    }
}

/// The body of a BIND or RELEASE: what the sender claims, and the MAC that
/// proves it holds the relay key of `peer_id`. Decoding does not check the
/// MAC (it needs the key): call [`Claim::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The sender.
    pub peer_id: Uuid,
    /// The peer to relay with.
    pub target: Uuid,
    /// The channel of the last BOUND for this binding, [`NO_CHANNEL`] if
    /// none yet.
    pub channel: u64,
    /// The sender's counter, strictly increasing per relay server.
    pub counter: u64,
    /// [`claim_mac`] of the fields above.
    pub mac: [u8; MAC_BYTES],
}

impl Claim {
    /// The fields, with their MAC under `key`.
    pub fn new(
        kind: ClaimKind,
        key: &RelayKey,
        peer_id: Uuid,
        target: Uuid,
        channel: u64,
        counter: u64,
    ) -> Claim {
        Claim {
            peer_id,
            target,
            channel,
            counter,
            mac: claim_mac(key, kind, &peer_id, &target, channel, counter),
        }
    }

    /// Whether the MAC is right for a frame of `kind` under `key`, compared
    /// in constant time.
    pub fn verify(&self, kind: ClaimKind, key: &RelayKey) -> bool {
        let mut mac = hmac_keyed(&key.0);
        mac.update(&maced_bytes(
            kind,
            &self.peer_id,
            &self.target,
            self.channel,
            self.counter,
        ));
        mac.verify_slice(&self.mac).is_ok()
    }
}

/// The MAC of a BIND or RELEASE: HMAC-SHA256 under the relay key over the
/// frame's first 52 bytes (magic, [`VERSION`], the type byte of `kind`,
/// `peer_id`, `target`, `channel`, `counter`). The one place it is computed.
pub fn claim_mac(
    key: &RelayKey,
    kind: ClaimKind,
    peer_id: &Uuid,
    target: &Uuid,
    channel: u64,
    counter: u64,
) -> [u8; MAC_BYTES] {
    let mut mac = hmac_keyed(&key.0);
    mac.update(&maced_bytes(kind, peer_id, target, channel, counter));
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// The bytes a claim's MAC covers: exactly the encoded frame's prefix.
pub(super) fn maced_bytes(
    kind: ClaimKind,
    peer_id: &Uuid,
    target: &Uuid,
    channel: u64,
    counter: u64,
) -> [u8; MACED_BYTES] {
    let mut out = [0u8; MACED_BYTES];
    out[..2].copy_from_slice(&MAGIC);
    out[2] = VERSION;
    out[3] = kind.type_byte();
    out[4..20].copy_from_slice(peer_id.as_bytes());
    out[20..36].copy_from_slice(target.as_bytes());
    out[36..44].copy_from_slice(&channel.to_be_bytes());
    out[44..52].copy_from_slice(&counter.to_be_bytes());
    out
}
