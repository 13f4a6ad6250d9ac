//! Logging refused connections without letting an attacker multiply log
//! lines: each refusal is a debug line; at warn level at most one summary
//! per [`REFUSAL_SUMMARY_INTERVAL`].

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::source::SourceKey;

/// Shortest time between two warn-level refusal summaries.
pub const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `--max-connections`.
    ConnectionLimit(usize),
    /// The source holds `--max-connections-per-source`.
    SourceQuota(SourceKey, usize),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ConnectionLimit(limit) => {
                write!(f, "connection limit ({limit}, --max-connections) reached")
            }
            Refusal::SourceQuota(source, limit) => write!(
                f,
                "{source} holds {limit} connections (--max-connections-per-source)"
            ),
        }
    }
}

/// The accept loop's refusal log.
#[derive(Debug, Default)]
pub struct Refusals {
    since_summary: u64,
    last_summary: Option<Instant>,
}

impl Refusals {
    /// Records that the connection from `remote` was refused.
    pub fn record(&mut self, remote: SocketAddr, why: Refusal) {
        tracing::debug!(%remote, %why, "connection refused");
        self.since_summary += 1;
        let now = Instant::now();
        if self
            .last_summary
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_SUMMARY_INTERVAL)
        {
            tracing::warn!(
                refused = self.since_summary,
                latest = %why,
                "refusing new connections (summarised at most every {REFUSAL_SUMMARY_INTERVAL:?})"
            );
            self.since_summary = 0;
            self.last_summary = Some(now);
        }
    }
}
