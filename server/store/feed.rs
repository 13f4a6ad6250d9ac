//! The memory store's change feed: a strictly increasing revision, a bounded
//! history for watchers that resume, a bounded broadcast for live watchers,
//! and the [`FeedStream`] that turns a subscription into a [`WatchStream`].
//!
//! Publishing and subscribing both happen under the store's lock, so a
//! subscription taken with a snapshot sees exactly the changes after it. A
//! slow watcher can never block publishers (the broadcast is bounded); when
//! it falls behind, the stream notices the lag and resyncs it with a fresh
//! snapshot instead of silently skipping changes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::sync::broadcast;
use tokio_stream::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{Change, ChangeKind, PeerRecord, PeerView, SnapshotReason, WatchEvent, WatchStream};

/// The revisioned change log.
#[derive(Debug)]
pub(super) struct Feed {
    revision: u64,
    history: VecDeque<Arc<Change>>,
    history_len: usize,
    sender: broadcast::Sender<Arc<Change>>,
}

/// Online peers at a revision, plus the changes after it.
pub(super) struct Subscription {
    /// Revision the peers reflect.
    pub revision: u64,
    /// The online peers, in peer_id order (shared by every subscription
    /// at this revision).
    pub peers: PeerView,
    /// Changes after `revision`.
    pub changes: broadcast::Receiver<Arc<Change>>,
}

/// Takes a fresh [`Subscription`] (under the store's lock) for a watcher
/// that lagged.
pub(super) type Resubscribe = Box<dyn Fn() -> Subscription + Send + Sync>;

impl Feed {
    /// An empty feed at `revision`, remembering `history_len` changes and
    /// buffering `buffer` per live watcher.
    pub fn new(revision: u64, history_len: usize, buffer: usize) -> Feed {
        let (sender, _) = broadcast::channel(buffer.max(1));
        Feed {
            revision,
            history: VecDeque::new(),
            history_len,
            sender,
        }
    }

    /// The revision of the latest change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Records a change and sends it to live watchers; returns its revision.
    pub fn publish(&mut self, kind: ChangeKind, peer: Arc<PeerRecord>) -> u64 {
        self.revision += 1;
        let change = Arc::new(Change {
            revision: self.revision,
            kind,
            peer,
        });
        if self.history_len > 0 {
            if self.history.len() >= self.history_len {
                self.history.pop_front();
            }
            self.history.push_back(change.clone());
        }
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(change);
        self.revision
    }

    /// A live subscription to changes after now.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.sender.subscribe()
    }

    /// The changes after `from`, when none of them has been forgotten.
    pub fn replay_after(&self, from: u64) -> Option<Vec<Arc<Change>>> {
        let oldest_kept = self
            .history
            .front()
            .map_or(self.revision + 1, |c| c.revision);
        if from > self.revision || from + 1 < oldest_kept {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|c| c.revision > from)
                .cloned()
                .collect(),
        )
    }

    /// Starts a watch from `sub`: a replay of the changes after
    /// `resume_from` when the history still has them, else a snapshot.
    pub fn watch(
        &self,
        resume_from: Option<u64>,
        sub: Subscription,
        resubscribe: Resubscribe,
    ) -> WatchStream {
        let replay = resume_from.and_then(|from| Some((from, self.replay_after(from)?)));
        let (pending, last_revision) = match replay {
            Some((from, changes)) => (changes.into_iter().map(WatchEvent::Change).collect(), from),
            None => {
                let reason = if resume_from.is_some() {
                    SnapshotReason::ResumeUnavailable
                } else {
                    SnapshotReason::Initial
                };
                let snapshot = WatchEvent::Snapshot {
                    revision: sub.revision,
                    peers: sub.peers,
                    reason,
                };
                (VecDeque::from([snapshot]), sub.revision)
            }
        };
        Box::pin(FeedStream {
            pending,
            changes: BroadcastStream::new(sub.changes),
            last_revision,
            resubscribe,
        })
    }
}

/// One watcher's view of the feed. See the module docs.
struct FeedStream {
    /// The start (snapshot or replay), sent before any live change.
    pending: VecDeque<WatchEvent>,
    changes: BroadcastStream<Arc<Change>>,
    /// Changes at or below it were already covered (by the start or a
    /// resync snapshot) and are skipped.
    last_revision: u64,
    resubscribe: Resubscribe,
}

impl Stream for FeedStream {
    type Item = WatchEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        let this = self.get_mut();
        if let Some(event) = this.pending.pop_front() {
            return Poll::Ready(Some(event));
        }
        loop {
            match ready!(Pin::new(&mut this.changes).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(change)) => {
                    if change.revision <= this.last_revision {
                        continue;
                    }
                    this.last_revision = change.revision;
                    return Poll::Ready(Some(WatchEvent::Change(change)));
                }
                Some(Err(BroadcastStreamRecvError::Lagged(missed))) => {
                    // Never skip silently: start over from a fresh snapshot.
                    tracing::debug!(missed, "watcher lagged; sending a fresh snapshot");
                    let sub = (this.resubscribe)();
                    this.changes = BroadcastStream::new(sub.changes);
                    this.last_revision = sub.revision;
                    return Poll::Ready(Some(WatchEvent::Snapshot {
                        revision: sub.revision,
                        peers: sub.peers,
                        reason: SnapshotReason::Resync,
                    }));
                }
            }
        }
    }
}
