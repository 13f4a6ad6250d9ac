//! [`RemotePeer`]: another peer as the server describes it, converted from
//! the proto once at this edge (id parsed, endpoints checked, key checked
//! against the id: [`PeerKey`]), so nothing past the signaling client sees
//! proto types or unparsed ids.

use std::net::{IpAddr, SocketAddr};

use p2pchat::proto;
use p2pchat::{PeerId, PublicKey};

/// What the server's word on a peer's key is worth. The id of a keyed peer
/// is derived from its key, so the check needs no trust in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKey {
    /// The server gave a key that owns the peer's id: whoever completes a
    /// handshake with this key is the owner of the id.
    Verified(PublicKey),
    /// No key, and the id does not claim one (a version 4 id: a seed or
    /// REST peer). Nothing about it is authenticated.
    Unverified,
    /// The server lied: no key for a key-derived (version 8) id, or a key
    /// that does not derive the id, or no valid key at all. Never connect.
    Forged,
}

impl PeerKey {
    /// Classifies the `public_key` bytes the server gave for `peer_id`.
    pub fn classify(peer_id: &PeerId, public_key: &[u8]) -> PeerKey {
        if public_key.is_empty() {
            return if peer_id.is_key_derived() {
                tracing::warn!(peer = %peer_id, "the server sent a key-derived peer id without its key; ignoring the peer's claims");
                PeerKey::Forged
            } else {
                PeerKey::Unverified
            };
        }
        match PublicKey::from_bytes(public_key) {
            Ok(key) if key.owns(peer_id) => PeerKey::Verified(key),
            Ok(_) => {
                tracing::warn!(peer = %peer_id, "the server sent a key that does not own the peer id (forged)");
                PeerKey::Forged
            }
            Err(_) => {
                tracing::warn!(peer = %peer_id, "the server sent an invalid public key (forged)");
                PeerKey::Forged
            }
        }
    }

    /// The key, when it owns the id.
    pub fn verified(&self) -> Option<PublicKey> {
        match self {
            PeerKey::Verified(key) => Some(*key),
            PeerKey::Unverified | PeerKey::Forged => None,
        }
    }

    /// Whether the server's description of the peer is a lie.
    pub fn is_forged(&self) -> bool {
        matches!(self, PeerKey::Forged)
    }
}

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
    /// Its key, and whether it owns the id.
    pub key: PeerKey,
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
            key: PeerKey::classify(&peer_id, &p.public_key),
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
        assert_eq!(info.key, PeerKey::Unverified, "a v4 id without a key");
        let bad = proto::Peer {
            peer_id: "id".into(),
            ..p
        };
        assert_eq!(RemotePeer::from_proto(&bad), None, "not a UUID");
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        PublicKey::from(&signing.verifying_key())
    }

    fn peer(id: PeerId, public_key: Vec<u8>) -> proto::Peer {
        proto::Peer {
            peer_id: id.to_string(),
            username: "x".into(),
            observed_ip: "127.0.0.1".into(),
            udp_port: 4000,
            public_key,
            ..Default::default()
        }
    }

    fn classify(p: &proto::Peer) -> PeerKey {
        RemotePeer::from_proto(p).expect("valid peer").key
    }

    #[test]
    fn a_key_that_owns_the_id_is_verified() {
        let alice = key(1);
        let p = peer(alice.peer_id(), alice.as_bytes().to_vec());
        assert_eq!(classify(&p), PeerKey::Verified(alice));
        assert_eq!(classify(&p).verified(), Some(alice));
        assert!(!classify(&p).is_forged());
    }

    #[test]
    fn a_v4_peer_without_a_key_is_unverified() {
        let p = peer(PeerId::random(), Vec::new());
        assert_eq!(classify(&p), PeerKey::Unverified);
        assert_eq!(classify(&p).verified(), None);
    }

    #[test]
    fn a_server_that_substitutes_a_key_is_caught() {
        let (alice, mallory) = (key(1), key(2));
        // Alice's id with the server's (or Mallory's) key in its place.
        let substituted = peer(alice.peer_id(), mallory.as_bytes().to_vec());
        assert_eq!(classify(&substituted), PeerKey::Forged);
        assert_eq!(classify(&substituted).verified(), None);
        // The key stripped from a key-derived id.
        let stripped = peer(alice.peer_id(), Vec::new());
        assert_eq!(classify(&stripped), PeerKey::Forged);
        // A key given for a v4 id (which no key derives).
        let v4 = peer(PeerId::random(), alice.as_bytes().to_vec());
        assert_eq!(classify(&v4), PeerKey::Forged);
        // Garbage where the key goes.
        let short = peer(alice.peer_id(), alice.as_bytes()[..31].to_vec());
        assert_eq!(classify(&short), PeerKey::Forged);
        let mut small_order = [0u8; 32];
        small_order[0] = 1;
        let weak = peer(alice.peer_id(), small_order.to_vec());
        assert_eq!(classify(&weak), PeerKey::Forged);
    }
}
