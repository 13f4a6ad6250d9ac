//! Who a connection or request counts against: its source. An IPv4 client
//! is its address; an IPv6 client is its /64, because one host or home
//! network is routinely handed a whole /64 and could otherwise mint a fresh
//! source per connection. Every per-source quota keys on [`SourceKey`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of the IPv6 prefix one source owns.
pub const IPV6_SOURCE_PREFIX_BITS: u8 = 64;

/// The source a quota counts against: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKey {
    /// One IPv4 address (an IPv4-mapped IPv6 address counts as its IPv4).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl From<IpAddr> for SourceKey {
    fn from(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4),
            IpAddr::V6(v6) => SourceKey::from(v6),
        }
    }
}

impl From<Ipv6Addr> for SourceKey {
    fn from(v6: Ipv6Addr) -> SourceKey {
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they
        // must share the IPv4 client's key, not a /64 of their own.
        if let Some(v4) = v6.to_ipv4_mapped() {
            return SourceKey::V4(v4);
        }
        SourceKey::V6Prefix((v6.to_bits() >> (128 - u32::from(IPV6_SOURCE_PREFIX_BITS))) as u64)
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKey::V4(v4) => write!(f, "{v4}"),
            SourceKey::V6Prefix(prefix) => {
                let net = Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "{net}/{IPV6_SOURCE_PREFIX_BITS}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SourceKey {
        SourceKey::from(text.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn ipv4_addresses_are_their_own_source() {
        assert_eq!(key("127.0.0.1"), key("127.0.0.1"));
        assert_ne!(key("127.0.0.1"), key("127.0.0.2"));
        assert_eq!(key("127.0.0.2").to_string(), "127.0.0.2");
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2:aa::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("::1"), key("127.0.0.1"));
    }
}
