//! The handshake's wire pieces: the [`Prologue`] both sides hash in, the
//! payload each side sends ([`LocalParams`], its key, a timestamp), the tag
//! bytes, and the calls into `snow`.

use p2pchat::{PeerId, PublicKey};
use snow::HandshakeState;

use super::error::HandshakeError;
use super::handshake::{MAX_HANDSHAKE_MESSAGE, Pattern};
use crate::identity::Identity;

/// Version of this handshake and envelope; bound into the prologue.
pub const PROTOCOL_VERSION: u8 = 1;
/// Length of a handshake payload: key 32 | session 8 | index 4 | time 8.
pub const PAYLOAD_LEN: usize = 32 + 8 + 4 + 8;

const IK_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const XX_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
pub(super) const MSG1_IK: u8 = 0x01;
pub(super) const MSG1_XX: u8 = 0x02;
pub(super) const MSG2_IK: u8 = 0x11;
pub(super) const MSG2_XX: u8 = 0x12;
pub(super) const MSG3_XX: u8 = 0x22;
const PROLOGUE_DOMAIN: &[u8] = b"p2pchat noise v1\0";

/// What both sides bind into the Noise prologue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prologue<'a> {
    /// Who sends msg1.
    pub initiator: PeerId,
    /// Who answers it.
    pub responder: PeerId,
    /// The negotiated extensions, in the order both sides agreed on.
    pub extensions: &'a [String],
}

impl Prologue<'_> {
    /// `"p2pchat noise v1\0"` | version | initiator 16 | responder 16 |
    /// u16 BE count | each extension as u16 BE length + bytes. A count or
    /// length past `u16::MAX` is cut there (the encoding stays unambiguous).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROLOGUE_DOMAIN.len() + 35 + self.extensions.len() * 16);
        out.extend_from_slice(PROLOGUE_DOMAIN);
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(self.initiator.as_bytes());
        out.extend_from_slice(self.responder.as_bytes());
        let count = u16::try_from(self.extensions.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for ext in self.extensions.iter().take(usize::from(count)) {
            let len = u16::try_from(ext.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&ext.as_bytes()[..usize::from(len)]);
        }
        out
    }
}

/// Our side's values carried (encrypted) inside handshake messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalParams {
    /// The session this handshake is for.
    pub session: u64,
    /// The receiver index the peer puts on datagrams to us.
    pub index: u32,
}

/// A handshake payload, as Noise carries it.
pub(super) struct Payload {
    pub(super) key: PublicKey,
    pub(super) params: LocalParams,
    pub(super) timestamp_ms: u64,
}

impl Payload {
    pub(super) fn encode(&self) -> [u8; PAYLOAD_LEN] {
        let mut out = [0u8; PAYLOAD_LEN];
        out[..32].copy_from_slice(self.key.as_bytes());
        out[32..40].copy_from_slice(&self.params.session.to_be_bytes());
        out[40..44].copy_from_slice(&self.params.index.to_be_bytes());
        out[44..].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out
    }

    /// Exactly [`PAYLOAD_LEN`] bytes with a valid Ed25519 key.
    pub(super) fn decode(bytes: &[u8]) -> Result<Payload, HandshakeError> {
        let bytes: &[u8; PAYLOAD_LEN] = bytes.try_into().map_err(|_| HandshakeError::Malformed)?;
        let key = PublicKey::from_bytes(&bytes[..32]).map_err(|_| HandshakeError::Malformed)?;
        Ok(Payload {
            key,
            params: LocalParams {
                session: u64::from_be_bytes(field(bytes, 32)),
                index: u32::from_be_bytes(field(bytes, 40)),
            },
            timestamp_ms: u64::from_be_bytes(field(bytes, 44)),
        })
    }
}

fn field<const N: usize>(bytes: &[u8; PAYLOAD_LEN], at: usize) -> [u8; N] {
    std::array::from_fn(|i| bytes[at + i])
}

pub(super) fn build(
    identity: &Identity,
    pattern: Pattern,
    remote: Option<&[u8; 32]>,
    prologue: &[u8],
    initiator: bool,
) -> Result<HandshakeState, HandshakeError> {
    let name = match pattern {
        Pattern::IK => IK_PARAMS,
        Pattern::XX => XX_PARAMS,
    };
    let params = name.parse().map_err(|_| HandshakeError::Internal)?;
    let private = identity.noise_private_key();
    let internal = |_| HandshakeError::Internal;
    let mut builder = snow::Builder::new(params)
        .local_private_key(&private[..])
        .map_err(internal)?
        .prologue(prologue)
        .map_err(internal)?;
    if let Some(key) = remote {
        builder = builder.remote_public_key(key).map_err(internal)?;
    }
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(internal)
}

/// Writes one Noise message behind `tag`.
pub(super) fn write(
    noise: &mut HandshakeState,
    tag: u8,
    payload: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE];
    let len = noise
        .write_message(payload, &mut buf[1..])
        .map_err(|_| HandshakeError::Internal)?;
    buf[0] = tag;
    Ok(buf[..=len].to_vec())
}

/// The exact length of each message: tag, then the Noise tokens (an
/// ephemeral key is 32 bytes, an encrypted static 48) and the payload
/// (plus a 16-byte tag once encrypted).
pub(super) fn message_len(tag: u8) -> usize {
    const E: usize = 32;
    const S: usize = 32 + 16;
    const P: usize = PAYLOAD_LEN + 16;
    match tag {
        MSG1_IK => 1 + E + S + P,
        MSG2_IK => 1 + E + P,
        MSG1_XX => 1 + E,
        MSG2_XX => 1 + E + S + P,
        MSG3_XX => 1 + S + P,
        _ => 0,
    }
}

/// Checks size and tag, then reads the Noise message into a payload
/// buffer. Input of the wrong size or tag never reaches Noise.
pub(super) fn read(
    noise: &mut HandshakeState,
    tag: u8,
    msg: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    if msg.len() > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::TooLarge);
    }
    match msg.split_first() {
        None => Err(HandshakeError::Malformed),
        Some((&t, _)) if t != tag => Err(
            if [MSG1_IK, MSG1_XX, MSG2_IK, MSG2_XX, MSG3_XX].contains(&t) {
                HandshakeError::UnexpectedMessage
            } else {
                HandshakeError::Malformed
            },
        ),
        Some(_) if msg.len() != message_len(tag) => Err(HandshakeError::Malformed),
        Some((_, body)) => {
            let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE];
            let len = noise
                .read_message(body, &mut buf)
                .map_err(HandshakeError::from_noise_read)?;
            Ok(buf[..len].to_vec())
        }
    }
}

/// The peer's payload must present the key behind its Noise static and own
/// the id the prologue names.
pub(super) fn verify(
    noise: &HandshakeState,
    payload: &Payload,
    expected: PeerId,
) -> Result<(), HandshakeError> {
    let static_key = noise.get_remote_static().ok_or(HandshakeError::Internal)?;
    if static_key != payload.key.to_x25519().as_slice() {
        return Err(HandshakeError::KeyMismatch);
    }
    if !payload.key.owns(&expected) {
        return Err(HandshakeError::WrongPeer);
    }
    Ok(())
}
