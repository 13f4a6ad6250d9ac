//! The two server-streaming RPCs, each fed by one task per stream (the
//! tonic route-guide shape: a task writes into a bounded channel, the
//! response reads it): WatchPeers follows the store's change feed, an inbox
//! forwards connect requests. The tasks run in the server's tracked
//! [`Tasks`](crate::net::tasks::Tasks). A task ends when the client goes away (a send
//! fails), when its source ends, or when the server shuts down.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::Status;

use super::wire::{change_to_proto, pack_peers, peer_to_proto};
use crate::net::shutdown::Shutdown;
use crate::rendezvous::{Inbox, Rendezvous};
use crate::store::{PeerRecord, SnapshotReason, WatchEvent, WatchStream};
use p2pchat::proto;

/// Peers per `PeerSnapshot` message, so a large registry never makes one
/// oversized message.
pub const SNAPSHOT_CHUNK: usize = 256;

/// What a stream's channel carries.
pub type StreamItem<T> = Result<T, Status>;

/// Sends `msg`, returning false when the client has gone away.
async fn send<T>(tx: &mpsc::Sender<StreamItem<T>>, msg: T) -> bool {
    tx.send(Ok(msg)).await.is_ok()
}

/// Sends a snapshot in chunks of at most [`SNAPSHOT_CHUNK`] peers that each
/// fit the message limit. Returns false when the client went away.
async fn send_snapshot(
    tx: &mpsc::Sender<StreamItem<proto::WatchPeersResponse>>,
    revision: u64,
    peers: &[Arc<PeerRecord>],
    reason: proto::SnapshotReason,
    budget: usize,
) -> bool {
    let mut start = 0;
    let mut first = true;
    loop {
        let (part, next) = pack_peers(peers, start, SNAPSHOT_CHUNK, budget);
        let last = next >= peers.len();
        let msg = proto::WatchPeersResponse {
            update: Some(proto::watch_peers_response::Update::Snapshot(
                proto::PeerSnapshot {
                    revision,
                    peers: part,
                    first_chunk: first,
                    last_chunk: last,
                    reason: reason as i32,
                },
            )),
        };
        if !send(tx, msg).await {
            return false;
        }
        // An empty registry still sends one (empty) chunk so the client
        // knows the snapshot is complete.
        if last {
            return true;
        }
        first = false;
        start = next;
    }
}

/// Feeds one WatchPeers stream from `feed` until the client leaves, the
/// feed ends or the server stops. `budget` is the bytes of peers one
/// message may carry.
pub async fn run_watch(
    mut feed: WatchStream,
    tx: mpsc::Sender<StreamItem<proto::WatchPeersResponse>>,
    mut shutdown: Shutdown,
    budget: usize,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.recv() => return,
            _ = tx.closed() => return,
            event = feed.next() => event,
        };
        let sent = match event {
            None => return,
            Some(WatchEvent::Change(change)) => send(&tx, change_to_proto(&change)).await,
            Some(WatchEvent::Snapshot {
                revision,
                peers,
                reason,
            }) => {
                let reason = match reason {
                    SnapshotReason::Initial => proto::SnapshotReason::Initial,
                    SnapshotReason::ResumeUnavailable => proto::SnapshotReason::ResumeUnavailable,
                    SnapshotReason::Resync => proto::SnapshotReason::Resync,
                };
                send_snapshot(&tx, revision, &peers, reason, budget).await
            }
        };
        if !sent {
            return;
        }
    }
}

/// Feeds one inbox stream until the client leaves, a newer inbox replaces
/// it, the peer leaves, or the server stops; then closes the inbox so the
/// peer's lease runs again.
pub async fn run_inbox(
    rendezvous: Rendezvous,
    mut inbox: Inbox,
    tx: mpsc::Sender<StreamItem<proto::InboxMessage>>,
    mut shutdown: Shutdown,
) {
    forward_inbox(&mut inbox, &tx, &mut shutdown).await;
    rendezvous.close(inbox).await;
}

async fn forward_inbox(
    inbox: &mut Inbox,
    tx: &mpsc::Sender<StreamItem<proto::InboxMessage>>,
    shutdown: &mut Shutdown,
) {
    let opened = proto::InboxMessage {
        message: Some(proto::inbox_message::Message::Opened(proto::InboxOpened {
            lease_seconds: u32::try_from(inbox.lease().as_secs()).unwrap_or(u32::MAX),
        })),
    };
    if !send(tx, opened).await {
        return;
    }
    loop {
        let request = tokio::select! {
            _ = shutdown.recv() => return,
            _ = tx.closed() => return,
            request = inbox.recv() => request,
        };
        let Some(request) = request else {
            return; // replaced, or the peer left
        };
        let msg = proto::InboxMessage {
            message: Some(proto::inbox_message::Message::ConnectRequested(
                proto::ConnectRequested {
                    connect_id: request.connect_id.to_string(),
                    from: Some(peer_to_proto(&request.from)),
                },
            )),
        };
        if !send(tx, msg).await {
            return;
        }
    }
}
