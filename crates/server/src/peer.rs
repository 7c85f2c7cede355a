//! A client's address as the rest of the server sees it: one form for
//! IPv4 clients whatever socket they came in on, for logs, policies and
//! limits alike.

use std::net::{IpAddr, SocketAddr};

/// The address as one form: IPv4-mapped IPv6 as IPv4.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses for logs: the peer's address without a v4-mapped prefix.
pub(crate) fn display_ip(addr: SocketAddr) -> IpAddr {
    canonical_ip(addr.ip())
}

/// Whether an address is a loopback address (v4-mapped included).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    canonical_ip(ip).is_loopback()
}
