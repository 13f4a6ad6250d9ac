//! Server settings: the clap command line (each flag with an env-var
//! fallback) and the plain [`ServerConfig`] the library runs on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::api::grpc::GrpcLimits;
use crate::net::limits::{self, ConnectionLimits, Timeouts};
use crate::net::tls::TlsFiles;
use crate::quota::QuotaConfig;
use crate::store::StoreConfig;
use crate::udp::RelayLimits;

/// Everything [`super::start`] needs. `Default` gives the documented defaults
/// except `listen`, which defaults to `127.0.0.1:0` for embedding and tests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP address for gRPC and REST together.
    pub listen: SocketAddr,
    /// Lease of a gRPC registration.
    pub lease: Duration,
    /// The peer store's limits and timings (its `lease` is overwritten by
    /// `lease`).
    pub registry: StoreConfig,
    /// Most WatchPeers streams at once.
    pub max_watchers: usize,
    /// Largest REST request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest gRPC message, in bytes, each way.
    pub max_message_bytes: usize,
    /// Most TCP connections at once.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// ListPeers page size when the request gives none.
    pub default_page_size: usize,
    /// Largest ListPeers page.
    pub max_page_size: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// UDP address for STUN and the relay; `None` runs without UDP.
    pub udp_listen: Option<SocketAddr>,
    /// The relay's limits.
    pub relay: RelayLimits,
    /// Per-source quotas (registrations, watchers, RequestConnect rates);
    /// `quotas.registrations_per_source` overrides the `registry`'s.
    pub quotas: QuotaConfig,
    /// `Some`: serve gRPC and REST over TLS only, with these files.
    pub tls: Option<TlsFiles>,
    /// Most TCP connections at once from one source (IPv4 address, IPv6
    /// /64).
    pub max_connections_per_source: usize,
    /// TLS handshake, header, body and idle timeouts of connections.
    pub timeouts: Timeouts,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let registry = StoreConfig::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            lease: registry.lease,
            registry,
            max_watchers: 10_000,
            max_body_bytes: 16 * 1024,
            max_message_bytes: 64 * 1024,
            max_connections: 10_000,
            max_streams_per_connection: 1_000,
            default_page_size: 100,
            max_page_size: 1_000,
            shutdown_grace: Duration::from_secs(10),
            udp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            relay: RelayLimits::default(),
            quotas: QuotaConfig::default(),
            tls: None,
            max_connections_per_source: limits::DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            timeouts: Timeouts::default(),
        }
    }
}

impl ServerConfig {
    /// The gRPC service's limits; `udp_port` is the bound STUN + relay port
    /// it announces (0: none).
    pub(crate) fn grpc_limits(&self, udp_port: u16) -> GrpcLimits {
        GrpcLimits {
            max_watchers: self.max_watchers,
            default_page_size: self.default_page_size,
            max_page_size: self.max_page_size,
            max_message_bytes: self.max_message_bytes,
            udp_port,
            watchers_per_source: self.quotas.watchers_per_source,
            connects_per_caller: self.quotas.connects_per_caller,
        }
    }

    /// The listener's limits.
    pub(crate) fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_streams_per_connection: self.max_streams_per_connection,
            shutdown_grace: self.shutdown_grace,
            timeouts: self.timeouts,
        }
    }

    /// The store's configuration, with the gRPC lease and the
    /// registrations quota applied.
    pub(crate) fn store_config(&self) -> StoreConfig {
        StoreConfig {
            lease: self.lease,
            registrations_per_source: self.quotas.registrations_per_source,
            ..self.registry.clone()
        }
    }
}

/// p2pchat signaling server: peer discovery over gRPC and REST on one port.
///
/// Serves the `p2pchat.signaling.v1.Signaling` gRPC service (with reflection
/// and grpc.health.v1) and the seed-compatible REST API (`GET /`, `POST
/// /register`, `GET /peer/{id}`, `GET /peers`, `DELETE /peer/{id}`, `GET
/// /status`) side by side. Logs go to stderr; set RUST_LOG (e.g.
/// RUST_LOG=debug) for more.
#[derive(Debug, Clone, Parser)]
#[command(name = "signaling-server", version, about, long_about)]
pub struct ServerArgs {
    /// Address to serve gRPC (HTTP/2) and REST (HTTP/1.1) on: IP:PORT or
    /// HOST:PORT (e.g. localhost:8000; the first address it resolves to).
    #[arg(long, env = "P2PCHAT_LISTEN", default_value = "0.0.0.0:8000", value_parser = socket_addr)]
    pub listen: SocketAddr,

    /// Seconds a gRPC registration lives without a refresh (re-Register with
    /// the token). An open inbox stream keeps the peer alive.
    #[arg(long, env = "P2PCHAT_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_secs: u64,

    /// Seconds a REST registration lives. Longer than the gRPC lease because
    /// the seed's REST clients register once and never refresh; a REST client
    /// refreshes by POSTing /register again with its token.
    #[arg(long, env = "P2PCHAT_REST_LEASE_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub rest_lease_secs: u64,

    /// Seconds an expired (offline) record is kept, shown by /status and
    /// ListPeers(include_offline), before it is purged.
    #[arg(long, env = "P2PCHAT_OFFLINE_RETENTION_SECS", default_value_t = 300)]
    pub offline_retention_secs: u64,

    /// Most peer records (online + offline) held at once. When full, the
    /// oldest offline record is evicted; with none, Register fails with
    /// RESOURCE_EXHAUSTED / HTTP 503.
    #[arg(long, env = "P2PCHAT_MAX_PEERS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_peers: u64,

    /// Most UDP endpoints one peer may register.
    #[arg(long, env = "P2PCHAT_MAX_ENDPOINTS", default_value_t = 16)]
    pub max_endpoints: usize,

    /// Most WatchPeers streams open at once; past it, RESOURCE_EXHAUSTED.
    #[arg(long, env = "P2PCHAT_MAX_WATCHERS", default_value_t = 10_000)]
    pub max_watchers: usize,

    /// Changes buffered per watcher; a watcher that falls further behind is
    /// sent a fresh snapshot.
    #[arg(long, env = "P2PCHAT_WATCH_BUFFER", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub watch_buffer: u64,

    /// Changes remembered for watchers that resume after a reconnect.
    #[arg(long, env = "P2PCHAT_HISTORY_LEN", default_value_t = 4096)]
    pub history_len: usize,

    /// Largest REST request body in bytes; larger bodies get HTTP 413.
    #[arg(long, env = "P2PCHAT_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Largest gRPC message in bytes, each way (at least 4096). Larger
    /// requests get OUT_OF_RANGE; ListPeers pages and WatchPeers snapshot
    /// chunks carry fewer peers rather than exceed it.
    #[arg(long, env = "P2PCHAT_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(4096..))]
    pub max_message_bytes: u64,

    /// Most TCP connections at once; further connections are closed at once.
    #[arg(long, env = "P2PCHAT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most concurrent HTTP/2 streams (calls) per connection.
    #[arg(
        long,
        env = "P2PCHAT_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 1_000
    )]
    pub max_streams_per_connection: u32,

    /// Largest ListPeers page (page_size above it is INVALID_ARGUMENT).
    #[arg(long, env = "P2PCHAT_MAX_PAGE_SIZE", default_value_t = 1_000)]
    pub max_page_size: usize,

    /// Seconds shutdown waits for in-flight requests before closing.
    #[arg(long, env = "P2PCHAT_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// UDP address for STUN (Binding answers) and the relay, or `off`.
    /// Default: --listen's IP, port 3478. Peers learn the port from their
    /// Register response.
    #[arg(long, env = "P2PCHAT_UDP_LISTEN", value_parser = udp_listen)]
    pub udp_listen: Option<UdpListen>,

    /// Most relay sessions (peer pairs) at once; past it, BIND is refused.
    #[arg(long, env = "P2PCHAT_RELAY_MAX_SESSIONS", default_value_t = 10_000)]
    pub relay_max_sessions: usize,

    /// Seconds a relay session lives without BIND or DATA from either side.
    #[arg(long, env = "P2PCHAT_RELAY_IDLE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub relay_idle_secs: u64,

    /// Datagrams per second one relay session may forward (both ways).
    #[arg(long, env = "P2PCHAT_RELAY_RATE_PPS", default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub relay_rate_pps: u32,

    /// Payload bytes per second one relay session may forward (both ways).
    #[arg(long, env = "P2PCHAT_RELAY_RATE_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(1500..))]
    pub relay_rate_bytes: u32,

    /// STUN answers per second one source (an IPv4 address, an IPv6 /64)
    /// gets, in bursts of up to one second's worth; the rest get no answer,
    /// so the port cannot be aimed at a spoofed victim.
    #[arg(long, env = "P2PCHAT_STUN_RATE", default_value_t = crate::udp::stun_limit::DEFAULT_STUN_RATE, value_parser = clap::value_parser!(u32).range(1..))]
    pub stun_rate: u32,

    // Per-source quotas (a source is an IPv4 address or an IPv6 /64). Past
    // one: RESOURCE_EXHAUSTED over gRPC, HTTP 429 with Retry-After over REST.
    /// Most registrations (online peers) one source may hold, REST and gRPC
    /// together. A refresh of one's own registration is not a new one.
    #[arg(long, env = "P2PCHAT_MAX_REGISTRATIONS_PER_SOURCE", default_value_t = crate::quota::DEFAULT_REGISTRATIONS_PER_SOURCE as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_registrations_per_source: u64,

    /// Most WatchPeers streams one source may have open at once.
    #[arg(long, env = "P2PCHAT_MAX_WATCHERS_PER_SOURCE", default_value_t = crate::quota::DEFAULT_WATCHERS_PER_SOURCE as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_watchers_per_source: u64,

    /// RequestConnect calls per second one source may make (also the burst).
    #[arg(long, env = "P2PCHAT_CONNECTS_PER_CALLER", default_value_t = crate::quota::DEFAULT_CONNECTS_PER_CALLER, value_parser = clap::value_parser!(u32).range(1..))]
    pub connects_per_caller: u32,

    /// Connect requests per second one peer may be sent (also the burst).
    #[arg(long, env = "P2PCHAT_CONNECTS_PER_TARGET", default_value_t = crate::quota::DEFAULT_CONNECTS_PER_TARGET, value_parser = clap::value_parser!(u32).range(1..))]
    pub connects_per_target: u32,
    // Transport: TLS, connection timeouts and the per-source quota.
    /// PEM certificate chain (leaf first). With --tls-key, gRPC and REST
    /// are served over TLS only (ALPN h2 and http/1.1) on --listen; a
    /// plaintext client's connection is closed.
    #[arg(
        long,
        env = "P2PCHAT_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(
        long,
        env = "P2PCHAT_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Seconds a client gets to finish the TLS handshake.
    #[arg(long, env = "P2PCHAT_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_handshake_timeout_secs: u64,

    /// Seconds a connection gets to send its first request's head (and an
    /// HTTP/1 keep-alive connection its next one); then it is closed.
    #[arg(long, env = "P2PCHAT_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,

    /// Seconds a request's body may take after its head; then reading it
    /// fails and the connection is closed.
    #[arg(long, env = "P2PCHAT_BODY_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_secs: u64,

    /// Seconds an HTTP/2 connection may sit with no call in flight (open
    /// WatchPeers and inbox streams are in flight) before it is closed.
    #[arg(long, env = "P2PCHAT_IDLE_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,

    /// Most TCP connections at once from one client IP (IPv6: one /64);
    /// further ones from it are closed at once.
    #[arg(long, env = "P2PCHAT_MAX_CONNECTIONS_PER_SOURCE", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_source: u64,
}

/// `--udp-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpListen(pub Option<SocketAddr>);

/// The STUN port registered with IANA, used when --udp-listen is not given.
pub const DEFAULT_UDP_PORT: u16 = 3478;

fn udp_listen(text: &str) -> Result<UdpListen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(UdpListen(None));
    }
    resolve(text)
        .map(|a| UdpListen(Some(a)))
        .ok_or_else(|| format!("'{text}' is not an address like 0.0.0.0:3478 (or 'off')"))
}

/// `--listen`: IP:PORT, or HOST:PORT resolved once at start.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    resolve(text)
        .ok_or_else(|| format!("'{text}' is not an address like 0.0.0.0:8000 or localhost:8000"))
}

/// `text` as a socket address: parsed, or the first address its host name
/// resolves to.
fn resolve(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .ok()
        .and_then(|mut addrs| addrs.next())
}

impl ServerArgs {
    /// The library configuration these flags describe.
    pub fn into_config(self) -> ServerConfig {
        let defaults = ServerConfig::default();
        let lease = Duration::from_secs(self.lease_secs);
        let registrations_per_source =
            usize::try_from(self.max_registrations_per_source).unwrap_or(usize::MAX);
        ServerConfig {
            listen: self.listen,
            lease,
            registry: StoreConfig {
                lease,
                rest_lease: Duration::from_secs(self.rest_lease_secs),
                offline_retention: Duration::from_secs(self.offline_retention_secs),
                max_peers: usize::try_from(self.max_peers).unwrap_or(usize::MAX),
                max_endpoints: self.max_endpoints,
                history_len: self.history_len,
                watch_buffer: usize::try_from(self.watch_buffer).unwrap_or(usize::MAX),
                registrations_per_source,
            },
            max_watchers: self.max_watchers,
            max_body_bytes: self.max_body_bytes,
            max_message_bytes: usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX),
            max_connections: self.max_connections,
            max_streams_per_connection: self.max_streams_per_connection,
            default_page_size: defaults.default_page_size.min(self.max_page_size.max(1)),
            max_page_size: self.max_page_size.max(1),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            udp_listen: match self.udp_listen {
                Some(UdpListen(addr)) => addr,
                None => Some(SocketAddr::new(self.listen.ip(), DEFAULT_UDP_PORT)),
            },
            relay: RelayLimits {
                max_sessions: self.relay_max_sessions,
                idle: Duration::from_secs(self.relay_idle_secs),
                rate_pps: self.relay_rate_pps,
                rate_bytes: self.relay_rate_bytes,
                stun_rate: self.stun_rate,
            },
            quotas: QuotaConfig {
                registrations_per_source,
                watchers_per_source: usize::try_from(self.max_watchers_per_source)
                    .unwrap_or(usize::MAX),
                connects_per_caller: self.connects_per_caller,
                connects_per_target: self.connects_per_target,
            },
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                // clap requires both or neither.
                _ => None,
            },
            max_connections_per_source: usize::try_from(self.max_connections_per_source)
                .unwrap_or(usize::MAX),
            timeouts: Timeouts {
                tls_handshake: Duration::from_secs(self.tls_handshake_timeout_secs),
                header_read: Duration::from_secs(self.header_timeout_secs),
                body_read: Duration::from_secs(self.body_timeout_secs),
                idle: Duration::from_secs(self.idle_timeout_secs),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> ServerConfig {
        let argv = std::iter::once("signaling-server").chain(args.iter().copied());
        ServerArgs::try_parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn udp_follows_the_listen_ip_unless_given() {
        let c = config(&["--listen", "127.0.0.1:8000"]);
        assert_eq!(c.udp_listen, Some("127.0.0.1:3478".parse().unwrap()));
        let c = config(&[]);
        assert_eq!(c.udp_listen, Some("0.0.0.0:3478".parse().unwrap()));
        let c = config(&["--listen", "127.0.0.1:8000", "--udp-listen", "127.0.0.2:9"]);
        assert_eq!(c.udp_listen, Some("127.0.0.2:9".parse().unwrap()));
        let c = config(&["--udp-listen", "off"]);
        assert_eq!(c.udp_listen, None);
    }

    #[test]
    fn listen_takes_host_names() {
        let c = config(&["--listen", "localhost:8002"]);
        assert!(c.listen.ip().is_loopback(), "{}", c.listen);
        assert_eq!(c.listen.port(), 8002);
        let argv = ["signaling-server", "--listen", "8000"];
        assert!(ServerArgs::try_parse_from(argv).is_err());
    }
}
