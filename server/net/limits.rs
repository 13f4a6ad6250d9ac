//! Connection-level limits of the listener: each limit is a number in a
//! struct with a comment, not a hope (mini-redis' `MAX_CONNECTIONS`).

use std::time::Duration;

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most TCP connections at once; further connections are closed at once.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}
