//! The snapshot views WatchPeers streams are sending, held in one place.
//!
//! A stream sending a snapshot keeps only the id of its view here, not the
//! view: a client that stops reading mid-snapshot must not keep 8 bytes per
//! online peer alive for as long as it likes (an attacker refreshing its own
//! registration between opening watchers would otherwise pin one view per
//! watcher: 800 KB each at 100k peers). The shelf keeps the
//! [`MAX_SHELVED_VIEWS`] most recent views; a stream whose view was pushed
//! out restarts from the newest one (a resync), which is as consistent:
//! the newest view is at least as recent as the changes the stream has not
//! yet read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::PeerView;

/// Views kept for streams in the middle of a snapshot: the most memory
/// snapshots can hold is this many views of 8 bytes per online peer
/// (16 x 800 KB at 100k peers), however many watchers stall.
pub const MAX_SHELVED_VIEWS: usize = 16;

/// A view on the shelf: its id, the revision it reflects, and the view.
#[derive(Clone)]
pub struct Shelved {
    /// Names it on this shelf.
    pub id: u64,
    /// The store revision the view reflects.
    pub revision: u64,
    /// The online peers.
    pub view: PeerView,
}

#[derive(Default)]
struct Shelf {
    views: VecDeque<Shelved>,
    next_id: u64,
}

/// The shelf. Cheap to share (`Arc`); one per gRPC service.
#[derive(Default)]
pub struct ViewShelf {
    shelf: Mutex<Shelf>,
}

impl std::fmt::Debug for ViewShelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The views are the registry: print how many, not what.
        f.debug_struct("ViewShelf")
            .field("views", &self.len())
            .finish()
    }
}

impl ViewShelf {
    /// An empty shelf.
    pub fn new() -> Arc<ViewShelf> {
        Arc::new(ViewShelf::default())
    }

    fn shelf(&self) -> MutexGuard<'_, Shelf> {
        self.shelf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `view` (at `revision`) on the shelf, or finds it there (views
    /// are shared, so a thousand watchers starting together shelve one);
    /// returns its id. The oldest view makes room past the limit.
    pub fn shelve(&self, revision: u64, view: PeerView) -> u64 {
        let mut shelf = self.shelf();
        if let Some(found) = shelf.views.iter().find(|s| Arc::ptr_eq(&s.view, &view)) {
            return found.id;
        }
        let id = shelf.next_id;
        shelf.next_id += 1;
        if shelf.views.len() >= MAX_SHELVED_VIEWS {
            shelf.views.pop_front();
        }
        shelf.views.push_back(Shelved { id, revision, view });
        id
    }

    /// The view `id`, while it is still on the shelf.
    pub fn get(&self, id: u64) -> Option<PeerView> {
        let shelf = self.shelf();
        shelf
            .views
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.view.clone())
    }

    /// The most recently shelved view.
    pub fn newest(&self) -> Option<Shelved> {
        self.shelf().views.back().cloned()
    }

    /// How many views are held.
    pub fn len(&self) -> usize {
        self.shelf().views.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> PeerView {
        Arc::from(Vec::new())
    }

    #[test]
    fn the_shelf_keeps_max_shelved_views_and_shares_equal_ones() {
        let shelf = ViewShelf::new();
        let first = view();
        let id = shelf.shelve(1, first.clone());
        assert_eq!(shelf.shelve(1, first.clone()), id, "the same view once");
        let mut last = 0;
        for revision in 2..=MAX_SHELVED_VIEWS as u64 {
            last = shelf.shelve(revision, view());
        }
        // At the limit: every view is still there.
        assert_eq!(shelf.len(), MAX_SHELVED_VIEWS);
        assert!(shelf.get(id).is_some());
        // One more pushes the oldest out.
        let newest = shelf.shelve(99, view());
        assert_eq!(shelf.len(), MAX_SHELVED_VIEWS);
        assert!(shelf.get(id).is_none(), "the oldest view was pushed out");
        assert!(shelf.get(last).is_some());
        let top = shelf.newest().unwrap();
        assert_eq!((top.id, top.revision), (newest, 99));
        drop(first);
    }
}
