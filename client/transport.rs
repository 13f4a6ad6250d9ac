//! The UDP edge: the socket abstraction the engine sends and receives
//! through, and helpers to find this host's own endpoints.
//!
//! The engine talks to a [`Transport`] rather than a `UdpSocket` directly so
//! tests can slip in a wrapper that drops, duplicates and reorders datagrams
//! (and so a relay path can later be added behind the same interface).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;

use tokio::net::UdpSocket;

/// A boxed future, so [`Transport`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A datagram socket. Implemented by [`tokio::net::UdpSocket`]; tests wrap
/// one to inject loss. `recv_from` must be cancel-safe (it is raced in a
/// `select!`), as tokio's is.
pub trait Transport: Send + Sync + 'static {
    /// Sends one datagram to `to`.
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>>;
    /// Receives one datagram; returns its length and sender.
    fn recv_from<'a>(&'a self, buf: &'a mut [u8])
    -> BoxFuture<'a, io::Result<(usize, SocketAddr)>>;
    /// The bound local address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Transport for UdpSocket {
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(UdpSocket::send_to(self, buf, to))
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(UdpSocket::recv_from(self, buf))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }
}

/// Binds the chat socket, e.g. on `0.0.0.0:0` (every IPv4 interface, any
/// free port).
pub async fn bind_addr(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// The LAN address this host would use to reach the outside world, learned
/// without sending anything: "connecting" a UDP socket only selects a route.
/// `None` on a host without a default route.
pub fn primary_lan_ip() -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // TEST-NET-1 (RFC 5737): never routed anywhere, only used to pick a route.
    probe.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Endpoints to register besides the server-observed one: the LAN address
/// (so peers on the same network connect directly) when the socket is bound
/// to every interface, or the bound address itself otherwise.
pub fn local_endpoints(bound: SocketAddr) -> Vec<SocketAddr> {
    if bound.ip().is_unspecified() {
        primary_lan_ip()
            .map(|ip| vec![SocketAddr::new(ip, bound.port())])
            .unwrap_or_default()
    } else {
        vec![bound]
    }
}
