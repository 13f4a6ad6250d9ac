//! Conversions between the store's domain types and their protobuf form,
//! shared by the unary RPCs ([`super::grpc`]) and the streams
//! ([`super::streams`]).

use std::net::SocketAddr;
use std::sync::Arc;

use super::errors::ApiError;
use super::validate;
use crate::store::{self, Change, ChangeKind, EndpointKind, LeftReason, PeerRecord, RegisteredVia};
use p2pchat::proto;

/// An endpoint a client reported, validated. A client cannot claim an
/// endpoint is the observed one: only the server observes.
pub fn endpoint_from_proto(e: &proto::Endpoint) -> Result<store::Endpoint, ApiError> {
    let ip = validate::ip("endpoints.ip", &e.ip)?;
    let port = validate::port("endpoints.port", i64::from(e.port))?;
    let kind = match proto::EndpointKind::try_from(e.kind) {
        Ok(proto::EndpointKind::ServerReflexive) => EndpointKind::ServerReflexive,
        Ok(proto::EndpointKind::Observed)
        | Ok(proto::EndpointKind::Local)
        | Ok(proto::EndpointKind::Unspecified)
        | Err(_) => EndpointKind::Local,
    };
    Ok(store::Endpoint {
        addr: SocketAddr::new(ip, port),
        kind,
    })
}

/// Converts a store record to its wire form.
pub fn peer_to_proto(p: &PeerRecord) -> proto::Peer {
    proto::Peer {
        peer_id: p.peer_id.to_string(),
        username: p.username.clone(),
        observed_ip: p.observed_ip.to_string(),
        udp_port: u32::from(p.udp_port),
        endpoints: p
            .endpoints
            .iter()
            .map(|e| proto::Endpoint {
                ip: e.addr.ip().to_string(),
                port: u32::from(e.addr.port()),
                kind: match e.kind {
                    EndpointKind::Local => proto::EndpointKind::Local,
                    EndpointKind::ServerReflexive => proto::EndpointKind::ServerReflexive,
                    EndpointKind::Observed => proto::EndpointKind::Observed,
                } as i32,
            })
            .collect(),
        online: p.online,
        last_seen_unix: p.last_seen_unix(),
        registered_via: match p.registered_via {
            RegisteredVia::Grpc => proto::RegisteredVia::Grpc,
            RegisteredVia::Rest => proto::RegisteredVia::Rest,
        } as i32,
        inbox_open: p.inbox_open,
        public_key: p
            .public_key
            .map(|k| k.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

/// Converts one change of the feed to its WatchPeers message.
pub fn change_to_proto(c: &Change) -> proto::WatchPeersResponse {
    let (kind, left_reason) = match c.kind {
        ChangeKind::Joined => (
            proto::PeerChangeKind::Joined,
            proto::LeftReason::Unspecified,
        ),
        ChangeKind::Updated => (
            proto::PeerChangeKind::Updated,
            proto::LeftReason::Unspecified,
        ),
        ChangeKind::Left(LeftReason::Unregistered) => {
            (proto::PeerChangeKind::Left, proto::LeftReason::Unregistered)
        }
        ChangeKind::Left(LeftReason::LeaseExpired) => {
            (proto::PeerChangeKind::Left, proto::LeftReason::LeaseExpired)
        }
    };
    proto::WatchPeersResponse {
        update: Some(proto::watch_peers_response::Update::Change(
            proto::PeerChange {
                revision: c.revision,
                kind: kind as i32,
                peer: Some(peer_to_proto(&c.peer)),
                left_reason: left_reason as i32,
            },
        )),
    }
}

/// Converts peers from `start` on until `max_count` peers or `budget`
/// encoded bytes; returns them and the index after the last one taken.
/// Always takes at least one peer, so progress is guaranteed (a single peer
/// is far below any allowed message size).
pub fn pack_peers(
    peers: &[Arc<PeerRecord>],
    start: usize,
    max_count: usize,
    budget: usize,
) -> (Vec<proto::Peer>, usize) {
    use prost::Message;
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut next = start;
    while next < peers.len() && out.len() < max_count {
        let peer = peer_to_proto(&peers[next]);
        // Field tag + length prefix + body.
        let size = peer.encoded_len() + 4;
        if !out.is_empty() && bytes + size > budget {
            break;
        }
        bytes += size;
        out.push(peer);
        next += 1;
    }
    (out, next)
}
