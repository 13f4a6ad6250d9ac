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
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use super::view_shelf::ViewShelf;
use super::wire::{change_to_proto, pack_peers, peer_to_proto};
use crate::net::shutdown::Shutdown;
use crate::rendezvous::{Inbox, Rendezvous};
use crate::store::{SnapshotReason, WatchEvent, WatchStream};
use p2pchat::proto;

/// Peers per `PeerSnapshot` message, so a large registry never makes one
/// oversized message.
pub const SNAPSHOT_CHUNK: usize = 256;

/// Most encoded bytes of peers in one snapshot chunk (or the message
/// limit, when smaller). With lazy chunks, what one stalled watcher makes
/// the server hold is at most tonic's encode buffer (its 32 KiB yield
/// threshold plus one chunk) and the HTTP/2 send buffer of the stream
/// (`H2_MAX_SEND_BUF`, 64 KiB, in `net::listener`) plus one chunk hyper
/// handed it: under 160 KiB. The snapshot views themselves are bounded
/// apart ([`super::view_shelf::MAX_SHELVED_VIEWS`]). SECURITY.md has the
/// budget.
pub const WATCH_PAGE_BYTES: usize = 16 * 1024;

/// What a stream's channel carries.
pub type StreamItem<T> = Result<T, Status>;

/// Sends `msg`, returning false when the client has gone away.
async fn send<T>(tx: &mpsc::Sender<StreamItem<T>>, msg: T) -> bool {
    tx.send(Ok(msg)).await.is_ok()
}

/// A snapshot being sent: which shelved view, and where the next chunk
/// starts.
struct SnapshotCursor {
    view: u64,
    revision: u64,
    next: usize,
    reason: proto::SnapshotReason,
}

/// One WatchPeers response stream. Nothing is queued ahead of the client:
/// a snapshot is a cursor over a view on the [`ViewShelf`], converted to
/// protobuf one chunk at a time as tonic polls; live changes wait in the
/// store's bounded feed, which resyncs a watcher that falls too far behind
/// (a fresh snapshot once it reads again). Dropped (its watcher slot freed)
/// when the client leaves; ends when the feed ends or the server stops.
pub struct WatchResponses {
    feed: WatchStream,
    snapshot: Option<SnapshotCursor>,
    /// A change taken from the feed before the first poll (see `new`).
    early: Option<StreamItem<proto::WatchPeersResponse>>,
    /// Changes at or below it are covered by the snapshot being sent.
    skip_through: u64,
    shelf: Arc<ViewShelf>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Bytes of peers one chunk may carry.
    budget: usize,
    done: bool,
    /// The watcher slots (global and per source), released when the
    /// stream is dropped.
    _slots: Box<dyn Send>,
}

impl WatchResponses {
    /// A stream over `feed` until `shutdown`; `message_budget` is the bytes
    /// of peers one message may carry under the message limit; `slots` are
    /// held as long as the stream lives.
    pub fn new(
        feed: WatchStream,
        mut shutdown: Shutdown,
        message_budget: usize,
        slots: impl Send + 'static,
        shelf: Arc<ViewShelf>,
    ) -> WatchResponses {
        let mut stream = WatchResponses {
            feed,
            snapshot: None,
            early: None,
            skip_through: 0,
            shelf,
            stopped: Box::pin(async move { shutdown.recv().await }),
            budget: message_budget.min(WATCH_PAGE_BYTES),
            done: false,
            _slots: Box::new(slots),
        };
        // Take the start (snapshot or first replayed change) out of the
        // feed now: a client that never reads must not keep its snapshot's
        // view alive inside the feed (the shelf holds it instead).
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match stream.feed.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(event)) => stream.early = stream.start(event).map(Ok),
            Poll::Ready(None) => stream.done = true,
            Poll::Pending => {}
        }
        stream
    }

    /// Turns a feed event into the message to send now: a change (unless
    /// the snapshot being sent covers it), or the first chunk of a snapshot.
    fn start(&mut self, event: WatchEvent) -> Option<proto::WatchPeersResponse> {
        match event {
            WatchEvent::Change(change) => {
                (change.revision > self.skip_through).then(|| change_to_proto(&change))
            }
            WatchEvent::Snapshot {
                revision,
                peers,
                reason,
            } => {
                let reason = match reason {
                    SnapshotReason::Initial => proto::SnapshotReason::Initial,
                    SnapshotReason::ResumeUnavailable => proto::SnapshotReason::ResumeUnavailable,
                    SnapshotReason::Resync => proto::SnapshotReason::Resync,
                };
                let view = self.shelf.shelve(revision, peers);
                self.skip_through = revision;
                self.snapshot = Some(SnapshotCursor {
                    view,
                    revision,
                    next: 0,
                    reason,
                });
                self.next_chunk()
            }
        }
    }

    /// The next chunk of the snapshot in progress (an empty registry still
    /// sends one empty chunk, so the client knows the snapshot is complete).
    /// A view pushed off the shelf restarts the snapshot from the newest.
    fn next_chunk(&mut self) -> Option<proto::WatchPeersResponse> {
        let cursor = self.snapshot.as_mut()?;
        let peers = match self.shelf.get(cursor.view) {
            Some(peers) => peers,
            None => {
                let Some(newest) = self.shelf.newest() else {
                    self.snapshot = None;
                    return None;
                };
                tracing::debug!(
                    from = cursor.revision,
                    to = newest.revision,
                    "slow watcher's snapshot view was pushed out; resyncing"
                );
                *cursor = SnapshotCursor {
                    view: newest.id,
                    revision: newest.revision,
                    next: 0,
                    reason: proto::SnapshotReason::Resync,
                };
                self.skip_through = self.skip_through.max(newest.revision);
                newest.view
            }
        };
        let first = cursor.next == 0;
        let (part, next) = pack_peers(&peers, cursor.next, SNAPSHOT_CHUNK, self.budget);
        let last = next >= peers.len();
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
        if let Some(msg) = this.early.take() {
            return Poll::Ready(Some(msg));
        }
        if let Some(msg) = this.next_chunk() {
            return Poll::Ready(Some(Ok(msg)));
        }
        loop {
            match ready!(this.feed.as_mut().poll_next(cx)) {
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Some(event) => {
                    if let Some(msg) = this.start(event) {
                        return Poll::Ready(Some(Ok(msg)));
                    }
                }
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
    use std::time::SystemTime;

    use prost::Message;
    use tokio::sync::{Semaphore, broadcast};
    use tokio_stream::StreamExt;

    use super::*;
    use crate::api::view_shelf::MAX_SHELVED_VIEWS;
    use crate::store::{PeerRecord, PeerView, RegisteredVia};

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
        let shelf = ViewShelf::new();
        let mut stream =
            WatchResponses::new(feed, Shutdown::new(stopped), 64 * 1024, permit, shelf);
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

    fn snapshot_of(msg: proto::WatchPeersResponse) -> proto::PeerSnapshot {
        match msg.update {
            Some(proto::watch_peers_response::Update::Snapshot(s)) => s,
            other => panic!("a snapshot chunk, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_view_pushed_off_the_shelf_resyncs_from_the_newest_and_skips_what_it_covers() {
        let old: PeerView = (0..2_000).map(peer).collect::<Vec<_>>().into();
        let newer: PeerView = (0..3).map(peer).collect::<Vec<_>>().into();
        let change = |revision| {
            WatchEvent::Change(Arc::new(crate::store::Change {
                revision,
                kind: crate::store::ChangeKind::Joined,
                peer: peer(0),
            }))
        };
        let events = vec![
            WatchEvent::Snapshot {
                revision: 7,
                peers: old,
                reason: SnapshotReason::Initial,
            },
            change(40),
            change(51),
        ];
        let feed: WatchStream = Box::pin(tokio_stream::iter(events));
        let (_stop, stopped) = broadcast::channel(1);
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let shelf = ViewShelf::new();
        let mut stream = WatchResponses::new(
            feed,
            Shutdown::new(stopped),
            64 * 1024,
            permit,
            shelf.clone(),
        );
        let first = snapshot_of(stream.next().await.unwrap().unwrap());
        assert!(first.first_chunk && !first.last_chunk);
        assert_eq!(first.revision, 7);
        // Other watchers start at newer versions while this one stalls.
        for revision in 41..(41 + MAX_SHELVED_VIEWS as u64 - 1) {
            shelf.shelve(revision, (0..1).map(peer).collect::<Vec<_>>().into());
        }
        shelf.shelve(50, newer.clone());
        assert_eq!(shelf.len(), MAX_SHELVED_VIEWS);
        let restarted = snapshot_of(stream.next().await.unwrap().unwrap());
        assert!(restarted.first_chunk && restarted.last_chunk);
        assert_eq!(restarted.revision, 50);
        assert_eq!(restarted.reason, proto::SnapshotReason::Resync as i32);
        assert_eq!(restarted.peers.len(), newer.len());
        // Change 40 is covered by the snapshot at 50; 51 is not.
        match stream.next().await.unwrap().unwrap().update {
            Some(proto::watch_peers_response::Update::Change(c)) => assert_eq!(c.revision, 51),
            other => panic!("change 51, got {other:?}"),
        }
        assert!(stream.next().await.is_none(), "the feed ended");
    }
}
