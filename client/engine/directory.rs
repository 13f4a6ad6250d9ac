//! The peer directory: who is online (from WatchPeers), the difference a
//! resync makes, and which peer a connect target names. Pure: no I/O.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use p2pchat::PeerId;
use thiserror::Error;

use super::api::{ErrorCode, Event, PeerSummary, Via};
use crate::signaling::RemotePeer;

/// Online peers by id, as the server reports them, never including us.
#[derive(Debug)]
pub struct Directory {
    me: PeerId,
    peers: BTreeMap<PeerId, RemotePeer>,
    have_snapshot: bool,
}

impl Directory {
    /// An empty directory for us (`me` is never listed).
    pub fn new(me: PeerId) -> Directory {
        Directory {
            me,
            peers: BTreeMap::new(),
            have_snapshot: false,
        }
    }

    /// Whether the first full list has arrived (names resolve only then).
    pub fn has_snapshot(&self) -> bool {
        self.have_snapshot
    }

    /// Replaces the list with a full snapshot; returns what to tell the
    /// front end. The first snapshot is reported as the list; a resync as
    /// who left, who joined, then the whole list (so a front end that keeps
    /// one can replace it). A peer missing from a resync keeps its session
    /// (after a server restart it may not have re-registered yet).
    pub fn replace(&mut self, peers: Vec<RemotePeer>) -> Vec<Event> {
        let fresh: BTreeMap<PeerId, RemotePeer> = peers
            .into_iter()
            .filter(|p| p.peer_id != self.me)
            .map(|p| (p.peer_id, p))
            .collect();
        let old = std::mem::replace(&mut self.peers, fresh);
        let mut events = Vec::new();
        if std::mem::replace(&mut self.have_snapshot, true) {
            events.extend(
                old.iter()
                    .filter(|(id, _)| !self.peers.contains_key(*id))
                    .map(|(id, p)| Event::PeerLeft {
                        peer_id: *id,
                        username: p.username.clone(),
                    }),
            );
            events.extend(
                self.peers
                    .iter()
                    .filter(|(id, _)| !old.contains_key(*id))
                    .map(|(id, p)| Event::PeerJoined {
                        peer_id: *id,
                        username: p.username.clone(),
                    }),
            );
        }
        events.push(Event::peers(self.list()));
        events
    }

    /// Adds or updates a peer; true when it was not listed (it joined).
    pub fn upsert(&mut self, peer: RemotePeer) -> bool {
        if peer.peer_id == self.me {
            return false;
        }
        self.peers.insert(peer.peer_id, peer).is_none()
    }

    /// Lists a peer we learned about otherwise (a rendezvous) unless it is
    /// already listed.
    pub fn remember(&mut self, peer: &RemotePeer) {
        if peer.peer_id != self.me {
            self.peers
                .entry(peer.peer_id)
                .or_insert_with(|| peer.clone());
        }
    }

    /// Removes a peer; what was listed, if anything.
    pub fn remove(&mut self, id: PeerId) -> Option<RemotePeer> {
        self.peers.remove(&id)
    }

    /// What we know about a peer.
    pub fn get(&self, id: PeerId) -> Option<&RemotePeer> {
        self.peers.get(&id)
    }

    /// Its username, when the server gave a non-empty one.
    pub fn username(&self, id: PeerId) -> Option<&str> {
        self.get(id)
            .map(|p| p.username.as_str())
            .filter(|n| !n.is_empty())
    }

    /// Whether `addr` is one of the peer's own interface addresses (kind
    /// LOCAL), which makes a path to it a LAN path.
    pub fn is_own_interface(&self, id: PeerId, addr: SocketAddr) -> bool {
        self.get(id)
            .is_some_and(|p| p.local_endpoints.contains(&addr))
    }

    /// The list as the front end sees it.
    pub fn list(&self) -> Vec<PeerSummary> {
        self.peers
            .values()
            .map(|p| PeerSummary {
                peer_id: p.peer_id,
                username: p.username.clone(),
                via: if p.via_rest { Via::Rest } else { Via::Grpc },
            })
            .collect()
    }

    /// The peer `input` names (see [`resolve`]).
    pub fn resolve(&self, input: &str) -> Result<&RemotePeer, ResolveError> {
        resolve(&self.peers, self.me, input)
    }
}

/// Why a connect target could not be resolved.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// Nothing matches.
    #[error("no online peer matches '{0}'")]
    Unknown(String),
    /// More than one peer matches.
    #[error("'{input}' is ambiguous: it matches {matches}")]
    Ambiguous {
        /// What the user typed.
        input: String,
        /// The candidates, `username (id)`, comma separated.
        matches: String,
    },
    /// The user named themselves.
    #[error("'{0}' is you; pick another peer (/peers lists who is online)")]
    Myself(String),
}

impl ResolveError {
    /// The error code front ends get.
    pub fn code(&self) -> ErrorCode {
        match self {
            ResolveError::Unknown(_) | ResolveError::Myself(_) => ErrorCode::UnknownPeer,
            ResolveError::Ambiguous { .. } => ErrorCode::AmbiguousPeer,
        }
    }
}

/// Finds the peer `input` names: a full id, a unique id prefix, or a unique
/// username (exact, then case-insensitive).
pub fn resolve<'a>(
    directory: &'a BTreeMap<PeerId, RemotePeer>,
    me: PeerId,
    input: &str,
) -> Result<&'a RemotePeer, ResolveError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(ResolveError::Unknown(String::new()));
    }
    let lower = input.to_lowercase();
    if let Ok(id) = PeerId::parse(&lower) {
        if id == me {
            return Err(ResolveError::Myself(input.to_owned()));
        }
        if let Some(peer) = directory.get(&id) {
            return Ok(peer);
        }
    }
    let by_prefix = directory
        .values()
        .filter(|p| p.peer_id.to_string().starts_with(&lower));
    let by_name = directory.values().filter(|p| p.username == input);
    let mut all: Vec<&RemotePeer> = Vec::new();
    for p in by_prefix.chain(by_name) {
        if !all.iter().any(|q| q.peer_id == p.peer_id) {
            all.push(p);
        }
    }
    if all.is_empty() {
        all = directory
            .values()
            .filter(|p| p.username.to_lowercase() == lower)
            .collect();
    }
    match all.as_slice() {
        [] => Err(ResolveError::Unknown(input.to_owned())),
        [one] => Ok(one),
        many => Err(ResolveError::Ambiguous {
            input: input.to_owned(),
            matches: many
                .iter()
                .map(|p| format!("{} ({})", p.username, p.peer_id))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn id(text: &str) -> PeerId {
        PeerId::parse(text).unwrap()
    }

    pub fn peer(text: &str, name: &str) -> RemotePeer {
        RemotePeer {
            peer_id: id(text),
            username: name.into(),
            endpoints: vec![],
            inbox_open: true,
            via_rest: false,
            local_endpoints: vec![],
            key: crate::signaling::PeerKey::Unverified,
        }
    }

    #[test]
    fn resolves_ids_prefixes_and_names() {
        let dir: BTreeMap<PeerId, RemotePeer> = [
            peer("aaaa1111-0000-4000-8000-000000000001", "alice"),
            peer("aaaa2222-0000-4000-8000-000000000002", "bob"),
            peer("bbbb3333-0000-4000-8000-000000000003", "Carol"),
            peer("cccc4444-0000-4000-8000-000000000004", "bob"),
        ]
        .into_iter()
        .map(|p| (p.peer_id, p))
        .collect();
        let me = id("ffff0000-0000-4000-8000-000000000000");
        let found = |r: Result<&RemotePeer, ResolveError>| r.map(|p| p.peer_id.to_string());
        assert_eq!(
            found(resolve(&dir, me, "aaaa1111-0000-4000-8000-000000000001")).unwrap(),
            "aaaa1111-0000-4000-8000-000000000001"
        );
        assert_eq!(
            found(resolve(&dir, me, "AAAA1")).unwrap(),
            "aaaa1111-0000-4000-8000-000000000001"
        );
        assert_eq!(
            found(resolve(&dir, me, "alice")).unwrap(),
            "aaaa1111-0000-4000-8000-000000000001"
        );
        assert_eq!(
            found(resolve(&dir, me, "carol")).unwrap(),
            "bbbb3333-0000-4000-8000-000000000003"
        );
        assert_eq!(
            found(resolve(&dir, me, " b ")).unwrap(),
            "bbbb3333-0000-4000-8000-000000000003"
        );
        assert!(matches!(
            resolve(&dir, me, "aaaa"),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve(&dir, me, "bob"),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve(&dir, me, "zed"),
            Err(ResolveError::Unknown(_))
        ));
        assert!(matches!(
            resolve(&dir, me, ""),
            Err(ResolveError::Unknown(_))
        ));
        assert_eq!(
            resolve(&dir, me, &me.to_string()).unwrap_err(),
            ResolveError::Myself(me.to_string())
        );
    }

    #[test]
    fn a_resync_reports_who_left_and_joined_then_the_list() {
        let me = id("ffff0000-0000-4000-8000-000000000000");
        let a = peer("aaaa1111-0000-4000-8000-000000000001", "alice");
        let b = peer("bbbb2222-0000-4000-8000-000000000002", "bob");
        let mut dir = Directory::new(me);
        let first = dir.replace(vec![a.clone(), peer(&me.to_string(), "me")]);
        assert_eq!(first.len(), 1, "the first list only: {first:?}");
        assert!(matches!(&first[0], Event::Peers { peers, .. } if peers.len() == 1));
        let events = dir.replace(vec![b.clone()]);
        assert!(matches!(&events[0], Event::PeerLeft { peer_id, .. } if *peer_id == a.peer_id));
        assert!(matches!(&events[1], Event::PeerJoined { peer_id, .. } if *peer_id == b.peer_id));
        assert!(matches!(&events[2], Event::Peers { peers, .. } if peers.len() == 1));
        assert!(!dir.upsert(b.clone()), "already listed");
        assert!(dir.upsert(a));
        assert_eq!(dir.username(b.peer_id), Some("bob"));
    }
}
