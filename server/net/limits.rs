//! Connection-level limits of the listener: each limit is a number in a
//! struct with a comment, not a hope (mini-redis' `MAX_CONNECTIONS`).

use std::time::Duration;

/// Default of `--max-connections-per-source`: enough for a NAT'd office of
/// peers (each holds one connection) or a browser's handful, far below the
/// global limit so one source cannot take every slot.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// Default of `--header-timeout-secs`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--body-timeout-secs`: a 16 KiB REST body at a few hundred
/// bytes per second still makes it.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `--idle-timeout-secs`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of `--tls-handshake-timeout-secs`.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most TCP connections at once; further connections are closed at once.
    pub max_connections: usize,
    /// Most TCP connections at once from one source (an IPv4 address or an
    /// IPv6 /64); further ones from it are closed at once.
    pub max_connections_per_source: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// The connection timeouts.
    pub timeouts: Timeouts,
}

/// How long a connection may take for each step before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The TLS handshake, from accept.
    pub tls_handshake: Duration,
    /// A request's head: the first request's from the connection being
    /// ready (after TLS), so a silent or slow socket is closed; each later
    /// HTTP/1 head from the previous response (hyper's header read
    /// timeout), so HTTP/1 keep-alive waits at most this long too.
    pub header_read: Duration,
    /// A request's body, from its head (REST bodies, gRPC unary messages;
    /// not the reflection stream).
    pub body_read: Duration,
    /// A connection with no request in flight (HTTP/2 between calls; an
    /// open WatchPeers or inbox stream is in flight) is closed after this.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tls_handshake: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            header_read: DEFAULT_HEADER_TIMEOUT,
            body_read: DEFAULT_BODY_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}
