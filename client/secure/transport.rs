//! Sealed datagrams: ChaCha20-Poly1305 under the handshake's keys, one key
//! per direction, with an epoch ratchet for forward secrecy.
//!
//! Envelope: magic `S` | version | epoch | receiver index u32 BE | counter
//! u64 BE | ciphertext | tag 16. The 15-byte header is the associated data;
//! the nonce is 4 zero bytes and the counter little-endian (Noise's nonce
//! layout). Each epoch's counter starts at 0 and only goes up.
//!
//! A sender moves to the next epoch when its epoch is
//! [`REKEY_AFTER_TIME`] old or sent [`REKEY_AFTER_MESSAGES`]: the key
//! becomes Noise's `REKEY(k)` (spec section 11.3) and the old one is
//! erased. A receiver holds its current epoch's key and, for
//! [`PREVIOUS_EPOCH_GRACE`] after moving on, the previous one (for
//! reordered datagrams); a datagram of the next epoch is tried under the
//! next key and moves the receiver only if it authenticates. A refused
//! datagram never changes any state.

use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::error::{OpenError, SealError};
use super::replay::{ReplayWindow, Verdict};

/// First byte of every sealed datagram (not STUN's 0..=3, relay `P`, JSON `{`).
pub const MAGIC: u8 = b'S';
/// The envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Header (magic, version, epoch, receiver index, counter) plus tag.
pub const ENVELOPE_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest plaintext sealed: a full UDP/IPv4 payload less the overhead.
pub const MAX_PLAINTEXT: usize = 65_507 - ENVELOPE_OVERHEAD;
/// A sending epoch this old moves to the next key.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A sending epoch that sent this many datagrams moves to the next key.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 20;
/// No counter at or past this is ever sent or accepted (nonce reuse guard;
/// Noise reserves the last nonce for `REKEY`).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// How long the previous receive epoch's key is kept after moving on.
pub const PREVIOUS_EPOCH_GRACE: Duration = Duration::from_secs(10);

const HEADER_LEN: usize = 15;
const TAG_LEN: usize = 16;

/// The receiver index in a sealed datagram header (for routing), None if
/// not a well-formed envelope header.
pub fn receiver_index(bytes: &[u8]) -> Option<u32> {
    Header::parse(bytes).map(|h| h.receiver)
}

#[derive(Debug, Clone, Copy)]
struct Header {
    epoch: u8,
    receiver: u32,
    counter: u64,
}

impl Header {
    fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < ENVELOPE_OVERHEAD {
            return None;
        }
        let header: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        if header[0] != MAGIC || header[1] != ENVELOPE_VERSION {
            return None;
        }
        Some(Header {
            epoch: header[2],
            receiver: u32::from_be_bytes(header[3..7].try_into().ok()?),
            counter: u64::from_be_bytes(header[7..15].try_into().ok()?),
        })
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = MAGIC;
        out[1] = ENVELOPE_VERSION;
        out[2] = self.epoch;
        out[3..7].copy_from_slice(&self.receiver.to_be_bytes());
        out[7..15].copy_from_slice(&self.counter.to_be_bytes());
        out
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n.into()
}

/// Noise `REKEY(k)`: the first 32 bytes of ENCRYPT(k, 2^64 - 1, "", zeros).
/// The old cipher (and its key) is erased when the caller drops it.
fn rekey(cipher: &ChaCha20Poly1305) -> Option<ChaCha20Poly1305> {
    let mut key = Zeroizing::new([0u8; 32]);
    cipher
        .encrypt_in_place_detached(&nonce(u64::MAX), &[], &mut key[..])
        .ok()?;
    Some(ChaCha20Poly1305::new(Key::from_slice(&key[..])))
}

/// When the sender moves on; the real constants outside tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    messages: u64,
    time: Duration,
}

struct SendEpoch {
    cipher: ChaCha20Poly1305,
    epoch: u8,
    counter: u64,
    started: Instant,
}

struct RecvEpoch {
    cipher: ChaCha20Poly1305,
    epoch: u8,
    replay: ReplayWindow,
}

impl RecvEpoch {
    fn new(cipher: ChaCha20Poly1305, epoch: u8) -> RecvEpoch {
        RecvEpoch {
            cipher,
            epoch,
            replay: ReplayWindow::new(),
        }
    }

    /// Replay check, then authenticate; commits the counter only on success.
    fn open(&mut self, header: &Header, bytes: &[u8]) -> Result<Vec<u8>, OpenError> {
        match self.replay.verdict(header.counter) {
            Verdict::Fresh => {}
            Verdict::Duplicate => return Err(OpenError::Replayed),
            Verdict::TooOld => return Err(OpenError::TooOld),
        }
        let plaintext = decrypt(&self.cipher, header, bytes)?;
        self.replay.commit(header.counter);
        Ok(plaintext)
    }
}

fn decrypt(cipher: &ChaCha20Poly1305, header: &Header, bytes: &[u8]) -> Result<Vec<u8>, OpenError> {
    let (aad, rest) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(OpenError::Malformed)?;
    let (body, tag) = rest
        .split_at_checked(rest.len().saturating_sub(TAG_LEN))
        .ok_or(OpenError::Malformed)?;
    let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| OpenError::Malformed)?;
    let mut plaintext = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            &nonce(header.counter),
            aad,
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| OpenError::Forged)?;
    Ok(plaintext)
}

/// One session's sealing and opening state. `Debug` shows no key material;
/// keys are erased on drop.
pub struct Transport {
    local_index: u32,
    remote_index: u32,
    send: SendEpoch,
    current: RecvEpoch,
    /// The epoch before `current`, until the instant its grace ends.
    previous: Option<(RecvEpoch, Instant)>,
    limits: Limits,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("send_epoch", &self.send.epoch)
            .field("send_counter", &self.send.counter)
            .field("recv_epoch", &self.current.epoch)
            .field(
                "previous_epoch",
                &self.previous.as_ref().map(|(e, _)| e.epoch),
            )
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// From the handshake's split: our sending and receiving keys, our
    /// index (on datagrams to us) and the peer's (on ours), at epoch 0.
    pub(crate) fn new(
        send_key: &[u8; 32],
        recv_key: &[u8; 32],
        local_index: u32,
        remote_index: u32,
        now: Instant,
    ) -> Transport {
        Transport {
            local_index,
            remote_index,
            send: SendEpoch {
                cipher: ChaCha20Poly1305::new(Key::from_slice(send_key)),
                epoch: 0,
                counter: 0,
                started: now,
            },
            current: RecvEpoch::new(ChaCha20Poly1305::new(Key::from_slice(recv_key)), 0),
            previous: None,
            limits: Limits {
                messages: REKEY_AFTER_MESSAGES,
                time: REKEY_AFTER_TIME,
            },
        }
    }

    /// Smaller rekey thresholds, so tests reach them.
    #[cfg(test)]
    pub(crate) fn set_rekey_limits(&mut self, messages: u64, time: Duration) {
        self.limits = Limits { messages, time };
    }

    /// Seals `plaintext` for the peer, moving to the next epoch first when
    /// the current one is due.
    pub fn seal(&mut self, plaintext: &[u8], now: Instant) -> Result<Vec<u8>, SealError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLarge);
        }
        let send = &mut self.send;
        if send.counter >= self.limits.messages
            || now.saturating_duration_since(send.started) >= self.limits.time
        {
            send.cipher = rekey(&send.cipher).ok_or(SealError::Internal)?;
            send.epoch = send.epoch.wrapping_add(1);
            send.counter = 0;
            send.started = now;
        }
        if send.counter >= REJECT_AFTER_MESSAGES {
            return Err(SealError::Exhausted);
        }
        let header = Header {
            epoch: send.epoch,
            receiver: self.remote_index,
            counter: send.counter,
        }
        .encode();
        let mut out = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        let tag = send
            .cipher
            .encrypt_in_place_detached(&nonce(send.counter), &header, &mut out[HEADER_LEN..])
            .map_err(|_| SealError::Internal)?;
        out.extend_from_slice(&tag);
        send.counter += 1;
        Ok(out)
    }

    /// Opens a datagram from the peer. Any error leaves the state as it was
    /// (only time moves it: the previous epoch's key is dropped once its
    /// grace is over, whatever the datagram).
    pub fn open(&mut self, bytes: &[u8], now: Instant) -> Result<Vec<u8>, OpenError> {
        let header = Header::parse(bytes).ok_or(OpenError::Malformed)?;
        if header.receiver != self.local_index {
            return Err(OpenError::WrongIndex);
        }
        if header.counter >= REJECT_AFTER_MESSAGES {
            return Err(OpenError::Malformed);
        }
        if self
            .previous
            .as_ref()
            .is_some_and(|(_, until)| now >= *until)
        {
            self.previous = None;
        }
        if header.epoch == self.current.epoch {
            return self.current.open(&header, bytes);
        }
        if let Some((previous, _)) = self
            .previous
            .as_mut()
            .filter(|(p, _)| p.epoch == header.epoch)
        {
            return previous.open(&header, bytes);
        }
        if header.epoch != self.current.epoch.wrapping_add(1) {
            return Err(OpenError::UnknownEpoch);
        }
        // The next epoch: try its key, commit only if the datagram is real.
        let cipher = rekey(&self.current.cipher).ok_or(OpenError::Forged)?;
        let mut next = RecvEpoch::new(cipher, header.epoch);
        let plaintext = next.open(&header, bytes)?;
        let current = std::mem::replace(&mut self.current, next);
        let until = now.checked_add(PREVIOUS_EPOCH_GRACE).unwrap_or(now);
        self.previous = Some((current, until));
        Ok(plaintext)
    }

    /// Our receiver index (the peer puts it on datagrams to us).
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The peer's receiver index (we put it on ours).
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// The epoch of our last sealed datagram (0 until the first rekey).
    pub fn send_epoch(&self) -> u8 {
        self.send.epoch
    }

    /// The epoch we currently receive in.
    pub fn recv_epoch(&self) -> u8 {
        self.current.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::Aead;

    /// Our `REKEY` is Noise's: after snow rekeys its own copy of the same
    /// key, both encrypt alike.
    #[test]
    fn rekey_matches_snow() {
        let params: snow::params::NoiseParams =
            "Noise_NN_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
        let mut i = snow::Builder::new(params.clone())
            .build_initiator()
            .unwrap();
        let mut r = snow::Builder::new(params).build_responder().unwrap();
        let (mut buf, mut out) = ([0u8; 200], [0u8; 200]);
        let n = i.write_message(&[], &mut buf).unwrap();
        r.read_message(&buf[..n], &mut out).unwrap();
        let n = r.write_message(&[], &mut buf).unwrap();
        i.read_message(&buf[..n], &mut out).unwrap();
        let (k1, _) = i.dangerously_get_raw_split();
        let mut snow_side = i.into_stateless_transport_mode().unwrap();

        let mut ours = ChaCha20Poly1305::new(Key::from_slice(&k1));
        for round in 0..3u64 {
            snow_side.rekey_outgoing();
            ours = rekey(&ours).unwrap();
            let n = snow_side
                .write_message(round * 7, b"payload", &mut buf)
                .unwrap();
            let mine = ours
                .encrypt(&nonce(round * 7), b"payload".as_slice())
                .unwrap();
            assert_eq!(buf[..n], mine[..]);
        }
    }
}
