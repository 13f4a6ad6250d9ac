//! The two server-streaming RPCs. WatchPeers is [`WatchResponses`], a
//! stream that makes each message only when the HTTP/2 connection asks for
//! the next one, so a client that stops reading costs a bounded, small
//! amount of memory (see [`WATCH_PAGE_BYTES`]). The inbox is fed by one task
//! per stream (the tonic route-guide shape: a task writes into a bounded
//! channel, the response reads it), run in the server's tracked
//! [`Tasks`](crate::net::tasks::Tasks); it ends when the client goes away
//! (a send fails), when its source ends, or when the server shuts down.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::Stream;
use tonic::Status;

use super::wire::{change_to_proto, pack_peers, peer_to_proto};
use crate::net::shutdown::Shutdown;
use crate::rendezvous::{Inbox, Rendezvous};
use crate::store::{PeerView, SnapshotReason, WatchEvent, WatchStream};
use p2pchat::proto;

/// Peers per `PeerSnapshot` message, so a large registry never makes one
/// oversized message.
pub const SNAPSHOT_CHUNK: usize = 256;

/// Most encoded bytes of peers in one snapshot chunk (or the message
/// limit, when smaller). With lazy chunks, what one stalled watcher makes
/// the server hold is at most tonic's encode buffer (its 32 KiB yield
/// threshold plus one chunk) and the HTTP/2 send buffer of the stream
/// (`H2_MAX_SEND_BUF`, 64 KiB, in `net::listener`): about 112 KiB, plus the
/// snapshot view it pins (8 bytes per online peer, shared with every
/// watcher that started at the same revision). SECURITY.md has the budget.
pub const WATCH_PAGE_BYTES: usize = 16 * 1024;

/// What a stream's channel carries.
pub type StreamItem<T> = Result<T, Status>;

/// Sends `msg`, returning false when the client has gone away.
async fn send<T>(tx: &mpsc::Sender<StreamItem<T>>, msg: T) -> bool {
    tx.send(Ok(msg)).await.is_ok()
}

/// A snapshot being sent: the shared view and where the next chunk starts.
struct SnapshotCursor {
    revision: u64,
    peers: PeerView,
    next: usize,
    reason: proto::SnapshotReason,
}

/// One WatchPeers response stream. Nothing is queued ahead of the client:
/// a snapshot is a cursor over the store's shared [`PeerView`], converted
/// to protobuf one chunk at a time as tonic polls; live changes wait in the
/// store's bounded feed, which resyncs a watcher that falls too far behind
/// (a fresh snapshot once it reads again). Dropped (its watcher slot freed)
/// when the client leaves; ends when the feed ends or the server stops.
pub struct WatchResponses {
    feed: WatchStream,
    snapshot: Option<SnapshotCursor>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Bytes of peers one chunk may carry.
    budget: usize,
    done: bool,
    /// The watcher slot, released when the stream is dropped.
    _permit: OwnedSemaphorePermit,
}

impl WatchResponses {
    /// A stream over `feed` until `shutdown`; `message_budget` is the bytes
    /// of peers one message may carry under the message limit.
    pub fn new(
        feed: WatchStream,
        mut shutdown: Shutdown,
        message_budget: usize,
        permit: OwnedSemaphorePermit,
    ) -> WatchResponses {
        WatchResponses {
            feed,
            snapshot: None,
            stopped: Box::pin(async move { shutdown.recv().await }),
            budget: message_budget.min(WATCH_PAGE_BYTES),
            done: false,
            _permit: permit,
        }
    }

    /// The next chunk of the snapshot in progress (an empty registry still
    /// sends one empty chunk, so the client knows the snapshot is complete).
    fn next_chunk(&mut self) -> Option<proto::WatchPeersResponse> {
        let cursor = self.snapshot.as_mut()?;
        let first = cursor.next == 0;
        let (part, next) = pack_peers(&cursor.peers, cursor.next, SNAPSHOT_CHUNK, self.budget);
        let last = next >= cursor.peers.len();
        let msg = proto::WatchPeersResponse {
            update: Some(proto::watch_peers_response::Update::Snapshot(
                proto::PeerSnapshot {
                    revision: cursor.revision,
                    peers: part,
                    first_chunk: first,
                    last_chunk: last,
                    reason: cursor.reason as i32,
                },
            )),
        };
        cursor.next = next;
        if last {
            self.snapshot = None;
        }
        Some(msg)
    }
}

impl Stream for WatchResponses {
    type Item = StreamItem<proto::WatchPeersResponse>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done || this.stopped.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(None);
        }
        if let Some(msg) = this.next_chunk() {
            return Poll::Ready(Some(Ok(msg)));
        }
        match this.feed.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(WatchEvent::Change(change))) => {
                Poll::Ready(Some(Ok(change_to_proto(&change))))
            }
            Poll::Ready(Some(WatchEvent::Snapshot {
                revision,
                peers,
                reason,
            })) => {
                let reason = match reason {
                    SnapshotReason::Initial => proto::SnapshotReason::Initial,
                    SnapshotReason::ResumeUnavailable => proto::SnapshotReason::ResumeUnavailable,
                    SnapshotReason::Resync => proto::SnapshotReason::Resync,
                };
                this.snapshot = Some(SnapshotCursor {
                    revision,
                    peers,
                    next: 0,
                    reason,
                });
                Poll::Ready(this.next_chunk().map(Ok))
            }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use prost::Message;
    use tokio::sync::{Semaphore, broadcast};
    use tokio_stream::StreamExt;

    use super::*;
    use crate::store::{PeerRecord, RegisteredVia};

    fn peer(i: usize) -> Arc<PeerRecord> {
        Arc::new(PeerRecord {
            peer_id: p2pchat::PeerId::random(),
            username: format!("peer{i}"),
            observed_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            udp_port: 4000,
            endpoints: Vec::new(),
            online: true,
            last_seen: SystemTime::now(),
            registered_via: RegisteredVia::Grpc,
            inbox_open: false,
            public_key: None,
        })
    }

    /// What a peer counts against a chunk's budget (as `pack_peers` counts).
    fn cost(p: &proto::Peer) -> usize {
        p.encoded_len() + 4
    }

    #[tokio::test]
    async fn snapshot_chunks_fill_watch_page_bytes_to_the_edge() {
        let mut peers: Vec<_> = (0..2_000).map(peer).collect();
        peers.sort_by_key(|p| p.peer_id);
        let view: PeerView = peers.into();
        let event = WatchEvent::Snapshot {
            revision: 7,
            peers: view.clone(),
            reason: SnapshotReason::Initial,
        };
        let feed: WatchStream = Box::pin(tokio_stream::iter(vec![event]));
        let (_stop, stopped) = broadcast::channel(1);
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let mut stream = WatchResponses::new(feed, Shutdown::new(stopped), 64 * 1024, permit);
        let mut chunks = Vec::new();
        loop {
            let msg = stream.next().await.unwrap().unwrap();
            let Some(proto::watch_peers_response::Update::Snapshot(s)) = msg.update else {
                panic!("a snapshot chunk");
            };
            assert_eq!(s.first_chunk, chunks.is_empty());
            let last = s.last_chunk;
            chunks.push(s.peers);
            if last {
                break;
            }
        }
        assert!(chunks.len() > 1, "2,000 peers need several chunks");
        for pair in chunks.windows(2) {
            let used: usize = pair[0].iter().map(cost).sum();
            assert!(used <= WATCH_PAGE_BYTES, "{used} bytes in one chunk");
            let with_next = used + cost(&pair[1][0]);
            assert!(with_next > WATCH_PAGE_BYTES, "one more peer would fit");
        }
        let sent: Vec<String> = chunks.into_iter().flatten().map(|p| p.peer_id).collect();
        let all: Vec<String> = view.iter().map(|p| p.peer_id.to_string()).collect();
        assert_eq!(sent, all, "every peer once, in order");
    }
}
