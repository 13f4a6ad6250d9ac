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
    /// Sets the IP TTL of later sends (for priming probes). Wrappers that
    /// cannot may ignore it.
    fn set_ttl(&self, _ttl: u32) -> io::Result<()> {
        Ok(())
    }
    /// The IP TTL sends use now.
    fn ttl(&self) -> io::Result<u32> {
        Ok(64)
    }
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

    fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        UdpSocket::set_ttl(self, ttl)
    }

    fn ttl(&self) -> io::Result<u32> {
        UdpSocket::ttl(self)
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

/// Most interface addresses registered as local candidates (the server
/// accepts 16 endpoints; one is kept for the server-reflexive address).
pub const MAX_LOCAL_ENDPOINTS: usize = 8;

/// Endpoints to register besides the server-observed one: with a socket
/// bound to every interface, every non-loopback IPv4 address of this host
/// with the socket's port (so peers on the same network connect directly);
/// otherwise the bound address itself.
pub fn local_endpoints(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut ips: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified())
            .collect(),
        Err(err) => {
            tracing::debug!(%err, "cannot list interfaces");
            Vec::new()
        }
    };
    // The address of the default route first: the likeliest LAN path.
    if let Some(primary) = primary_lan_ip() {
        ips.retain(|ip| *ip != primary);
        ips.insert(0, primary);
    }
    ips.dedup();
    ips.truncate(MAX_LOCAL_ENDPOINTS);
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints_use_the_port_and_skip_loopback() {
        let bound: SocketAddr = "0.0.0.0:4321".parse().expect("addr");
        let found = local_endpoints(bound);
        assert!(found.len() <= MAX_LOCAL_ENDPOINTS);
        for addr in &found {
            assert_eq!(addr.port(), 4321);
            assert!(!addr.ip().is_loopback(), "{addr}");
        }
        let specific: SocketAddr = "127.0.0.1:5".parse().expect("addr");
        assert_eq!(local_endpoints(specific), vec![specific]);
    }
}
