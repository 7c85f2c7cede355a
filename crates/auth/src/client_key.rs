//! What identifies a client address in per-client tables (relay grants,
//! login penalties): IPv4, and IPv4-mapped IPv6, by the exact address;
//! other IPv6 by a prefix, since one client may use many addresses of its
//! subnet.

use std::net::IpAddr;

/// A client address reduced to what identifies the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4(u32),
    /// An IPv6 prefix.
    V6(u128),
}

/// The IPv6 prefix that stands for one client where nothing else is
/// configured: a host usually has a whole /64.
pub const CLIENT_IPV6_PREFIX: u8 = 64;

impl std::fmt::Display for ClientKey {
    /// A text form for shared tables: `v4:192.0.2.1`, `v6:` and the
    /// prefix's 32 hex digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::V4(a) => write!(f, "v4:{}", std::net::Ipv4Addr::from(*a)),
            ClientKey::V6(p) => write!(f, "v6:{p:032x}"),
        }
    }
}

impl ClientKey {
    /// The key of `ip`, IPv6 cut to its first `ipv6_prefix` bits (0–128).
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => {
                    let mask = match ipv6_prefix.min(128) {
                        0 => 0,
                        p => u128::MAX << (128 - u32::from(p)),
                    };
                    ClientKey::V6(u128::from(v6) & mask)
                }
            },
        }
    }
}
