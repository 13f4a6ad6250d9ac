//! Relay admission: whether a BIND or RELEASE frame may act on the relay
//! table. Two steps, cheapest first:
//!
//! 1. [`authenticate`]: the sender's relay key (learned when it registered,
//!    see [`super::keys`]) must verify the frame's MAC. No store access; an
//!    unknown sender or a bad MAC costs a map lookup and one HMAC, and gets
//!    no answer.
//! 2. [`admit_bind`]: for a BIND, the store says whether both peers are
//!    online. A RELEASE needs no more than step 1 (and the table's freshness
//!    and channel checks): freeing one's own session is always allowed.
//!
//! Kept apart from the table, which stays pure state, and from the store,
//! which knows nothing of relaying.

use p2pchat::PeerId;
use p2pchat::proto::relay_frame::{Claim, ClaimKind, RefuseCode};

use super::keys::RelayKeys;
use crate::store::PeerStore;

/// A BIND or RELEASE whose MAC verified under its sender's relay key.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'f> {
    /// BIND or RELEASE.
    pub kind: ClaimKind,
    /// The sender, proven.
    pub peer: PeerId,
    /// The peer the binding is with (as claimed; not checked here).
    pub target: PeerId,
    /// The frame's fields.
    pub claim: &'f Claim,
}

/// The claim, if its sender is known and its MAC is right for `kind` under
/// the sender's key (compared in constant time).
pub fn authenticate<'f>(
    keys: &RelayKeys,
    kind: ClaimKind,
    claim: &'f Claim,
) -> Option<Authenticated<'f>> {
    let peer = PeerId::from(claim.peer_id);
    let key = keys.get(&peer)?;
    claim.verify(kind, &key).then_some(Authenticated {
        kind,
        peer,
        target: PeerId::from(claim.target),
        claim,
    })
}

/// Admits an authenticated BIND of `peer` towards `target`: the sender must
/// still be online, the target must be online.
pub async fn admit_bind(
    store: &dyn PeerStore,
    peer: &PeerId,
    target: &PeerId,
) -> Result<(), RefuseCode> {
    if !store.get(peer).await.is_ok_and(|record| record.online) {
        return Err(RefuseCode::Unauthorized);
    }
    match store.get(target).await {
        Ok(record) if record.online => Ok(()),
        _ => Err(RefuseCode::TargetOffline),
    }
}
