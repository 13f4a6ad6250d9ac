//! What a registration makes of a record and its token, and the snapshot a
//! new watcher starts from.

use std::net::SocketAddr;
use std::time::SystemTime;

use p2pchat::SessionToken;

use super::super::feed::Subscription;
use super::super::{
    Endpoint, EndpointKind, PeerRecord, PeerView, Registration, StoreError, TOKEN_MISMATCH,
    default_username,
};
use super::{Entry, State};

/// The record a registration makes, keeping what `previous` says about the
/// inbox.
pub(super) fn record_for(reg: Registration, previous: Option<&PeerRecord>) -> PeerRecord {
    let username = reg
        .username
        .unwrap_or_else(|| default_username(&reg.peer_id));
    let mut endpoints: Vec<Endpoint> = reg.endpoints;
    let observed = Endpoint {
        addr: SocketAddr::new(reg.observed_ip, reg.udp_port),
        kind: EndpointKind::Observed,
    };
    if !endpoints.iter().any(|e| e.addr == observed.addr) {
        endpoints.push(observed);
    }
    PeerRecord {
        peer_id: reg.peer_id,
        username,
        observed_ip: reg.observed_ip,
        udp_port: reg.udp_port,
        endpoints,
        online: true,
        last_seen: SystemTime::now(),
        registered_via: reg.via,
        inbox_open: previous.is_some_and(|p| p.inbox_open),
        // A token refresh keeps the key proven earlier.
        public_key: reg.public_key.or(previous.and_then(|p| p.public_key)),
    }
}

/// The online peers and a subscription to the changes after them, taken
/// under one lock. The view is built once per [`State::version`]: a
/// thousand watchers opened between two changes share one.
pub(super) fn subscribe(state: &mut State) -> Subscription {
    let version = state.version;
    let peers = match &state.online_view {
        Some((at, view)) if *at == version => view.clone(),
        _ => {
            let view: PeerView = state
                .peers
                .values()
                .filter(|e| e.info.online)
                .map(|e| e.info.clone())
                .collect();
            state.online_view = Some((version, view.clone()));
            view
        }
    };
    Subscription {
        revision: state.feed.revision(),
        peers,
        changes: state.feed.subscribe(),
    }
}

/// The token for `reg`: its holder's, or a new one (free id, or key takeover).
pub(super) fn token_for(
    existing: Option<&Entry>,
    reg: &Registration,
) -> Result<(SessionToken, bool), StoreError> {
    Ok(match (existing, reg.token, reg.public_key) {
        (Some(entry), Some(given), _) if given.matches(&entry.token) => (entry.token, false),
        // A fresh proof of the key takes the registration over.
        (Some(_), _, Some(_)) => (SessionToken::generate(), true),
        (Some(_), Some(_), None) => return Err(StoreError::PermissionDenied(TOKEN_MISMATCH)),
        (Some(_), None, None) => {
            return Err(StoreError::PermissionDenied(
                "peer_id is already registered; re-registering needs its session token",
            ));
        }
        // A key-derived id is only ever registered with its key.
        (None, _, None) if reg.peer_id.is_key_derived() => {
            return Err(StoreError::KeyRequired);
        }
        // No record: the id is free, and a stale token proves nothing.
        (None, _, _) => (SessionToken::generate(), false),
    })
}
