//! Relay admission: whether a BIND or RELEASE frame may act on the relay
//! table. The frame carries the sender's id and raw session token; the store
//! decides whether they belong together and whether the peers are online.
//! Kept apart from the table, which stays pure state, and from the store,
//! which knows nothing of relaying.

use p2pchat::proto::relay_frame::RefuseCode;
use p2pchat::{PeerId, SessionToken};

use crate::store::{Credential, PeerStore};

/// Admits a BIND of `peer` (proving itself with `token`) towards `target`:
/// the sender must be online and own its id, the target must be online.
pub async fn admit_bind(
    store: &dyn PeerStore,
    peer: &PeerId,
    token: SessionToken,
    target: &PeerId,
) -> Result<(), RefuseCode> {
    if !owns_online(store, peer, token).await {
        return Err(RefuseCode::Unauthorized);
    }
    match store.get(target).await {
        Ok(record) if record.online => Ok(()),
        _ => Err(RefuseCode::TargetOffline),
    }
}

/// Whether a RELEASE by `peer` (proving itself with `token`) may free its
/// session: the same ownership check as a BIND, the target aside.
pub async fn admit_release(store: &dyn PeerStore, peer: &PeerId, token: SessionToken) -> bool {
    owns_online(store, peer, token).await
}

/// Whether `token` is `peer`'s and `peer` is online. Any refusal (unknown,
/// wrong token, offline, store unreachable) means no.
async fn owns_online(store: &dyn PeerStore, peer: &PeerId, token: SessionToken) -> bool {
    let credential = Credential::Token(token);
    store
        .verify(peer, &credential)
        .await
        .is_ok_and(|record| record.online)
}
