//! The server's task set: every task the server spawns beyond single
//! connections (the UDP loop, the rendezvous, health, each WatchPeers and
//! inbox stream) goes through one [`Tasks`], so shutdown can wait for all of
//! them and abort the ones that overstay the grace period.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinSet;

/// A shared set of running tasks. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    set: Arc<Mutex<JoinSet<()>>>,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Tasks {
        Tasks::default()
    }

    fn set(&self) -> MutexGuard<'_, JoinSet<()>> {
        // A JoinSet stays usable whatever panicked while it was locked.
        self.set
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `task` on the current runtime and keeps its handle. Finished
    /// tasks are reaped here, so the set only holds running ones.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = self.set();
        while let Some(done) = set.try_join_next() {
            log_failure(done);
        }
        set.spawn(task);
    }

    /// Waits for every task spawned so far (they end on the shutdown
    /// signal); aborts those still running after `grace`.
    pub async fn join(&self, grace: Duration) {
        // Taken out so the lock is never held across an await.
        let mut set = std::mem::take(&mut *self.set());
        let joined = tokio::time::timeout(grace, async {
            while let Some(done) = set.join_next().await {
                log_failure(done);
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!(
                running = set.len(),
                "server tasks still running after the grace period; aborting them"
            );
            set.shutdown().await;
        }
    }
}

fn log_failure(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done
        && err.is_panic()
    {
        tracing::error!(%err, "server task panicked");
    }
}
