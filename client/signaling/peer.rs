//! [`RemotePeer`]: another peer as the server describes it, converted from
//! the proto once at this edge (id parsed, endpoints checked), so nothing
//! past the signaling client sees proto types or unparsed ids.

use std::net::{IpAddr, SocketAddr};

use p2pchat::PeerId;
use p2pchat::proto;

/// What the server knows about another peer, converted from the proto.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePeer {
    /// The peer's id.
    pub peer_id: PeerId,
    /// Its display name (raw; sanitize before showing).
    pub username: String,
    /// Every address worth probing, in the order the server gave them.
    pub endpoints: Vec<SocketAddr>,
    /// Whether it holds an inbox (gets connect requests at once).
    pub inbox_open: bool,
    /// Whether it registered over the REST shim (a seed-style peer).
    pub via_rest: bool,
    /// The endpoints that are addresses of the peer's own interfaces
    /// (kind LOCAL): reaching one of these means a LAN path.
    pub local_endpoints: Vec<SocketAddr>,
}

impl RemotePeer {
    /// The peer the server describes; `None` when its id is not a UUID
    /// (the peer id is parsed once, here at the edge).
    pub(super) fn from_proto(p: &proto::Peer) -> Option<RemotePeer> {
        let Ok(peer_id) = PeerId::parse(&p.peer_id) else {
            tracing::warn!(peer = %p.peer_id, "the server sent a peer id that is not a UUID");
            return None;
        };
        let parse = |e: &proto::Endpoint| {
            let ip: IpAddr = e.ip.parse().ok()?;
            let port = u16::try_from(e.port).ok().filter(|p| *p != 0)?;
            Some(SocketAddr::new(ip, port))
        };
        let mut endpoints: Vec<SocketAddr> = p.endpoints.iter().filter_map(parse).collect();
        let local_endpoints = p
            .endpoints
            .iter()
            .filter(|e| {
                matches!(
                    proto::EndpointKind::try_from(e.kind),
                    Ok(proto::EndpointKind::Local | proto::EndpointKind::Unspecified)
                )
            })
            .filter_map(parse)
            .collect();
        // The seed's rule, in case the server sent no endpoint list.
        if let (Ok(ip), Ok(port)) = (p.observed_ip.parse::<IpAddr>(), u16::try_from(p.udp_port))
            && port != 0
        {
            let observed = SocketAddr::new(ip, port);
            if !endpoints.contains(&observed) {
                endpoints.push(observed);
            }
        }
        Some(RemotePeer {
            peer_id,
            username: p.username.clone(),
            endpoints,
            inbox_open: p.inbox_open,
            via_rest: p.registered_via == proto::RegisteredVia::Rest as i32,
            local_endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ip: &str, port: u32, kind: proto::EndpointKind) -> proto::Endpoint {
        proto::Endpoint {
            ip: ip.into(),
            port,
            kind: kind as i32,
        }
    }

    #[test]
    fn peer_info_from_proto() {
        let p = proto::Peer {
            peer_id: "0000beef-0000-4000-8000-000000000001".into(),
            username: "bob".into(),
            observed_ip: "203.0.113.7".into(),
            udp_port: 4000,
            endpoints: vec![
                endpoint("10.0.0.2", 4000, proto::EndpointKind::Local),
                endpoint("not an ip", 1, proto::EndpointKind::Local),
                endpoint("10.0.0.3", 0, proto::EndpointKind::Local),
                endpoint("10.0.0.4", 70000, proto::EndpointKind::Local),
                endpoint("198.51.100.1", 5000, proto::EndpointKind::ServerReflexive),
            ],
            registered_via: proto::RegisteredVia::Rest as i32,
            ..Default::default()
        };
        let info = RemotePeer::from_proto(&p).unwrap();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Invalid entries skipped; the observed address appended when the
        // server did not list it.
        assert_eq!(
            info.endpoints,
            vec![
                addr("10.0.0.2:4000"),
                addr("198.51.100.1:5000"),
                addr("203.0.113.7:4000")
            ]
        );
        assert_eq!(info.local_endpoints, vec![addr("10.0.0.2:4000")]);
        assert!(info.via_rest);
        let bad = proto::Peer {
            peer_id: "id".into(),
            ..p
        };
        assert_eq!(RemotePeer::from_proto(&bad), None, "not a UUID");
    }
}
