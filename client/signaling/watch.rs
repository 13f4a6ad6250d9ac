//! The WatchPeers stream: the live peer list as a snapshot (sent in
//! chunks) followed by changes, each with a revision. [`PeerWatch`] turns
//! it into [`SignalEvent`]s and remembers the last revision, so after a
//! reconnect the watch resumes from there (the server replays the changes
//! missed, or sends a fresh snapshot if it can no longer).

use tonic::Streaming;
use tonic::transport::Channel;

use p2pchat::proto::signaling_client::SignalingClient;
use p2pchat::proto::{self, watch_peers_response};

use super::{MAX_DIRECTORY_PEERS, RemotePeer, SignalEvent, SignalingError};

/// The client's end of the peer-list watch, kept across reconnects.
#[derive(Debug, Default)]
pub(super) struct PeerWatch {
    /// Revision of the last whole snapshot or change seen.
    resume_from: u64,
    /// The snapshot being assembled, until its last chunk.
    chunks: Vec<RemotePeer>,
}

impl PeerWatch {
    /// Opens (or resumes) the watch. A snapshot half received on the last
    /// stream is dropped: the new stream starts its own.
    pub(super) async fn open(
        &mut self,
        client: &SignalingClient<Channel>,
    ) -> Result<Streaming<proto::WatchPeersResponse>, SignalingError> {
        self.chunks.clear();
        let request = proto::WatchPeersRequest {
            resume_from_revision: self.resume_from,
        };
        Ok(client.clone().watch_peers(request).await?.into_inner())
    }

    /// Applies one message; returns the event it completes, if any (a
    /// snapshot is reported once, at its last chunk).
    pub(super) fn apply(&mut self, message: proto::WatchPeersResponse) -> Option<SignalEvent> {
        match message.update? {
            watch_peers_response::Update::Snapshot(s) => {
                if s.first_chunk {
                    self.chunks.clear();
                }
                let room = MAX_DIRECTORY_PEERS.saturating_sub(self.chunks.len());
                let peers = s.peers.iter().filter_map(RemotePeer::from_proto);
                self.chunks.extend(peers.take(room));
                if !s.last_chunk {
                    return None;
                }
                // Only a whole snapshot is a place to resume from: resuming
                // from a half-received one would replay the changes after
                // it and never send the peers its missing chunks held.
                self.resume_from = s.revision;
                Some(SignalEvent::Snapshot(std::mem::take(&mut self.chunks)))
            }
            watch_peers_response::Update::Change(c) => {
                self.resume_from = c.revision;
                let peer = c.peer.as_ref().and_then(RemotePeer::from_proto)?;
                match proto::PeerChangeKind::try_from(c.kind) {
                    Ok(proto::PeerChangeKind::Joined) => Some(SignalEvent::Joined(peer)),
                    Ok(proto::PeerChangeKind::Updated) => Some(SignalEvent::Updated(peer)),
                    Ok(proto::PeerChangeKind::Left) => Some(SignalEvent::Left(peer)),
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(revision: u64, first: bool, last: bool) -> proto::WatchPeersResponse {
        proto::WatchPeersResponse {
            update: Some(watch_peers_response::Update::Snapshot(
                proto::PeerSnapshot {
                    revision,
                    first_chunk: first,
                    last_chunk: last,
                    ..Default::default()
                },
            )),
        }
    }

    #[test]
    fn a_half_received_snapshot_is_not_a_place_to_resume_from() {
        let mut watch = PeerWatch::default();
        assert!(matches!(
            watch.apply(chunk(10, true, true)),
            Some(SignalEvent::Snapshot(_))
        ));
        assert_eq!(watch.resume_from, 10);
        // A resync starts at revision 20, and the stream breaks after its
        // first chunk: the next stream must not resume from 20.
        assert!(watch.apply(chunk(20, true, false)).is_none());
        assert_eq!(watch.resume_from, 10);
        assert!(matches!(
            watch.apply(chunk(20, false, true)),
            Some(SignalEvent::Snapshot(_))
        ));
        assert_eq!(watch.resume_from, 20);
    }
}
