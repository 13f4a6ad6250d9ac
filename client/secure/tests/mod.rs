//! Tests of the secure layer: handshakes, transport, and garbage input.

mod fuzz;
mod handshake;
mod transport;

use p2pchat::PublicKey;
use tokio::time::Instant;

use super::{Established, Handshake, LocalParams, Prologue};
use crate::identity::Identity;

/// A fixed clock for handshakes (unix ms).
pub(super) const T0: u64 = 1_700_000_000_000;

pub(super) fn params(session: u64, index: u32) -> LocalParams {
    LocalParams { session, index }
}

/// Two identities, the same in every run.
pub(super) fn fixed_pair() -> (Identity, Identity) {
    let key = |seed| Identity::from_signing_key(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    (key(1), key(2))
}

/// Runs a full handshake between `a` (initiator) and `b`; IK when `ik`.
pub(super) fn pair(
    a: &Identity,
    b: &Identity,
    ik: bool,
    now: Instant,
) -> (Established, Established) {
    let ext: Vec<String> = vec!["chat/1".into()];
    let prologue = Prologue {
        initiator: a.peer_id(),
        responder: b.peer_id(),
        extensions: &ext,
    };
    let remote: Option<PublicKey> = ik.then(|| b.public_key());
    let (mut hi, msg1) =
        Handshake::initiate(a, remote.as_ref(), &prologue, params(7, 100), T0).unwrap();
    let (mut hr, msg2) = Handshake::respond(b, &prologue, &msg1, params(7, 200), T0).unwrap();
    let msg3 = hi.read(&msg2).unwrap();
    assert_eq!(msg3.is_some(), !ik);
    if let Some(msg3) = msg3 {
        assert_eq!(hr.read(&msg3).unwrap(), None);
    }
    (
        hi.into_established(now).unwrap(),
        hr.into_established(now).unwrap(),
    )
}
