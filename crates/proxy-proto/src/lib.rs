//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
//! specification (`proxy-protocol.txt`) defines them: the header a load
//! balancer sends first on a connection, naming the client it relays.
//! No I/O here: the caller reads the bytes this says to read
//! ([`start`], then [`v1_line`] or [`v2_length`]) and gets the addresses.
//!
//! Reading exactly the header, never past it, matters: what follows is
//! the client's own (for POP3 and SMTP nothing, until the greeting), and
//! must reach the protocol driver untouched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's first twelve octets.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 line, CRLF included (the specification's 107).
pub const V1_MAX: usize = 107;

/// The most octets after version 2's fixed sixteen that are read: the
/// addresses and TLVs a balancer adds (HAProxy's are a few hundred).
pub const V2_MAX_BODY: usize = 4096;

/// What a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxied {
    /// The connection relays this client, to this address of ours.
    Client {
        /// The client.
        source: SocketAddr,
        /// Where it connected (the balancer's front).
        destination: SocketAddr,
    },
    /// The balancer speaks for itself (a health check: version 2's LOCAL,
    /// version 1's UNKNOWN): the connection's own address stands.
    Local,
}

/// Why a header is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// A header, but malformed: the reason.
    #[error("a malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Which version the first five octets announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `PROXY`: a text line follows, up to CRLF.
    V1,
    /// Version 2's signature begins: eleven more fixed octets follow.
    V2,
}

/// The version the connection's first five octets announce.
pub fn start(first: &[u8; 5]) -> Result<Version, ProxyError> {
    if first == b"PROXY" {
        Ok(Version::V1)
    } else if first[..] == V2_SIGNATURE[..5] {
        Ok(Version::V2)
    } else {
        Err(ProxyError::Missing)
    }
}

/// A whole version 1 line (`PROXY TCP4 192.0.2.1 198.51.100.2 51234 110`
/// and CRLF).
pub fn v1_line(line: &[u8]) -> Result<Proxied, ProxyError> {
    let malformed = ProxyError::Malformed;
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(malformed("a version 1 line without CRLF"))?;
    if line.len() + 2 > V1_MAX {
        return Err(malformed("a version 1 line over 107 octets"));
    }
    let text =
        std::str::from_utf8(line).map_err(|_| malformed("a version 1 line that is not text"))?;
    let mut words = text.split(' ');
    if words.next() != Some("PROXY") {
        return Err(ProxyError::Missing);
    }
    let family = words.next().ok_or(malformed("no protocol"))?;
    if family == "UNKNOWN" {
        // The rest, if any, is to be ignored (the specification, 2.1).
        return Ok(Proxied::Local);
    }
    let parts: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = parts.as_slice() else {
        return Err(malformed("not four fields after the protocol"));
    };
    let (src, dst): (IpAddr, IpAddr) = match family {
        "TCP4" => (
            IpAddr::V4(
                src.parse::<Ipv4Addr>()
                    .map_err(|_| malformed("a source that is no IPv4 address"))?,
            ),
            IpAddr::V4(
                dst.parse::<Ipv4Addr>()
                    .map_err(|_| malformed("a destination that is no IPv4 address"))?,
            ),
        ),
        "TCP6" => (
            IpAddr::V6(
                src.parse::<Ipv6Addr>()
                    .map_err(|_| malformed("a source that is no IPv6 address"))?,
            ),
            IpAddr::V6(
                dst.parse::<Ipv6Addr>()
                    .map_err(|_| malformed("a destination that is no IPv6 address"))?,
            ),
        ),
        _ => return Err(malformed("a protocol other than TCP4, TCP6, UNKNOWN")),
    };
    let port = |p: &str| {
        // Decimal without leading zeros (the specification, 2.1).
        if p.is_empty()
            || (p.len() > 1 && p.starts_with('0'))
            || !p.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(malformed("a port that is not a number from 0 to 65535"));
        }
        p.parse::<u16>()
            .map_err(|_| malformed("a port that is not a number from 0 to 65535"))
    };
    Ok(Proxied::Client {
        source: SocketAddr::new(src, port(sport)?),
        destination: SocketAddr::new(dst, port(dport)?),
    })
}

/// The length of what follows version 2's sixteen fixed octets (all read,
/// the signature's first five included).
pub fn v2_length(fixed: &[u8; 16]) -> Result<usize, ProxyError> {
    if fixed[..12] != V2_SIGNATURE {
        return Err(ProxyError::Malformed(
            "a version 2 signature that does not match",
        ));
    }
    if fixed[12] >> 4 != 2 {
        return Err(ProxyError::Malformed("a version other than 2"));
    }
    let length = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if length > V2_MAX_BODY {
        return Err(ProxyError::Malformed("a version 2 header over 4096 octets"));
    }
    Ok(length)
}

/// What version 2's fixed octets and the `body` after them say.
pub fn v2_header(fixed: &[u8; 16], body: &[u8]) -> Result<Proxied, ProxyError> {
    let malformed = ProxyError::Malformed;
    if v2_length(fixed)? != body.len() {
        return Err(malformed(
            "a version 2 body of another length than announced",
        ));
    }
    match fixed[12] & 0x0f {
        // LOCAL: the balancer's own connection; the addresses (if any)
        // are to be ignored.
        0x0 => return Ok(Proxied::Local),
        0x1 => {}
        _ => return Err(malformed("a version 2 command other than LOCAL or PROXY")),
    }
    let family = fixed[13] >> 4;
    let transport = fixed[13] & 0x0f;
    // UNSPEC, or a datagram or unix-socket relay: nothing we can use as a
    // client address; treated as the balancer's own (the specification
    // says the receiver must then use the real connection's addresses).
    if family == 0 || transport != 1 {
        return Ok(Proxied::Local);
    }
    match family {
        0x1 => {
            let [a, b, c, d, e, f, g, h, sp1, sp2, dp1, dp2, ..] = body else {
                return Err(malformed("a version 2 IPv4 body under 12 octets"));
            };
            Ok(Proxied::Client {
                source: SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
                    u16::from_be_bytes([*sp1, *sp2]),
                ),
                destination: SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(*e, *f, *g, *h)),
                    u16::from_be_bytes([*dp1, *dp2]),
                ),
            })
        }
        0x2 => {
            if body.len() < 36 {
                return Err(malformed("a version 2 IPv6 body under 36 octets"));
            }
            let addr = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Ok(Proxied::Client {
                source: SocketAddr::new(addr(0), u16::from_be_bytes([body[32], body[33]])),
                destination: SocketAddr::new(addr(16), u16::from_be_bytes([body[34], body[35]])),
            })
        }
        // AF_UNIX and beyond.
        _ => Ok(Proxied::Local),
    }
}

#[cfg(test)]
mod tests;
