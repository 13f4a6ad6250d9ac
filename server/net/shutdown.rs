//! Listens for the server's shutdown signal (mini-redis' `Shutdown`).
//!
//! Every long-lived task (a watch stream, an inbox, the accept loop) holds a
//! `Shutdown` and `select!`s on [`Shutdown::recv`]; it remembers that the
//! signal fired so later calls return at once.

use tokio::sync::broadcast;

/// A receiver of the one-shot shutdown broadcast.
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    /// Wraps a receiver of the shutdown broadcast.
    pub fn new(notify: broadcast::Receiver<()>) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify,
        }
    }

    /// Waits for the signal (returns at once if it already fired). A dropped
    /// sender counts as the signal.
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}
