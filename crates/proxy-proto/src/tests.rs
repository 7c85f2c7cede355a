//! Headers as HAProxy sends them, and what a broken or hostile one gets.

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

#[test]
fn version_1_lines() {
    assert_eq!(
        v1_line(b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 110\r\n"),
        Ok(Proxied::Client {
            source: addr("192.0.2.1:51234"),
            destination: addr("198.51.100.2:110")
        })
    );
    assert_eq!(
        v1_line(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 25\r\n"),
        Ok(Proxied::Client {
            source: addr("[2001:db8::1]:4000"),
            destination: addr("[2001:db8::2]:25")
        })
    );
    assert_eq!(v1_line(b"PROXY UNKNOWN\r\n"), Ok(Proxied::Local));
    assert_eq!(
        v1_line(b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"),
        Ok(Proxied::Local)
    );
    for bad in [
        &b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 110\n"[..],
        b"PROXY TCP4 192.0.2.1 198.51.100.2 51234\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 051234 110\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 70000 110\r\n",
        b"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",
        b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
    ] {
        assert!(
            matches!(v1_line(bad), Err(ProxyError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("PROXY TCP4 {} 1.1.1.1 1 2\r\n", "1".repeat(100));
    assert!(v1_line(long.as_bytes()).is_err());
}

fn v2(command: u8, family: u8, body: &[u8]) -> ([u8; 16], Vec<u8>) {
    let mut fixed = [0u8; 16];
    fixed[..12].copy_from_slice(&V2_SIGNATURE);
    fixed[12] = 0x20 | command;
    fixed[13] = family;
    let length = u16::try_from(body.len()).expect("short");
    fixed[14..].copy_from_slice(&length.to_be_bytes());
    (fixed, body.to_vec())
}

#[test]
fn version_2_headers() {
    let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2];
    body.extend_from_slice(&51234u16.to_be_bytes());
    body.extend_from_slice(&995u16.to_be_bytes());
    // A TLV after the addresses (HAProxy's unique id) is read past.
    body.extend_from_slice(&[0x05, 0x00, 0x02, b'i', b'd']);
    let (fixed, body) = v2(1, 0x11, &body);
    assert_eq!(start(&fixed[..5].try_into().expect("5")), Ok(Version::V2));
    assert_eq!(v2_length(&fixed), Ok(body.len()));
    assert_eq!(
        v2_header(&fixed, &body),
        Ok(Proxied::Client {
            source: addr("192.0.2.1:51234"),
            destination: addr("198.51.100.2:995")
        })
    );
    let mut six = Vec::new();
    six.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets());
    six.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().expect("v6").octets());
    six.extend_from_slice(&[0, 80, 0, 110]);
    let (fixed, body) = v2(1, 0x21, &six);
    assert_eq!(
        v2_header(&fixed, &body),
        Ok(Proxied::Client {
            source: addr("[2001:db8::1]:80"),
            destination: addr("[2001:db8::2]:110")
        })
    );
    // LOCAL (a health check) and UNSPEC: the connection's own address.
    let (fixed, body) = v2(0, 0x00, &[]);
    assert_eq!(v2_header(&fixed, &body), Ok(Proxied::Local));
    let (fixed, body) = v2(1, 0x00, &[]);
    assert_eq!(v2_header(&fixed, &body), Ok(Proxied::Local));
}

#[test]
fn broken_version_2_headers_are_refused() {
    let (mut fixed, body) = v2(1, 0x11, &[1, 2, 3]);
    assert!(v2_header(&fixed, &body).is_err(), "an IPv4 body too short");
    assert!(
        v2_header(&fixed, &body[..2]).is_err(),
        "another length than announced"
    );
    fixed[12] = 0x31;
    assert!(v2_length(&fixed).is_err(), "version 3");
    let (mut fixed, _) = v2(1, 0x11, &[]);
    fixed[14..].copy_from_slice(&5000u16.to_be_bytes());
    assert!(v2_length(&fixed).is_err(), "over 4096");
    let (mut fixed, _) = v2(1, 0x11, &[]);
    fixed[3] = 0;
    assert!(
        v2_length(&fixed).is_err(),
        "a signature that does not match"
    );
    let (fixed, body) = v2(2, 0x11, &[0; 12]);
    assert!(v2_header(&fixed, &body).is_err(), "command 2");
}

#[test]
fn what_is_not_a_header() {
    assert_eq!(start(b"USER "), Err(ProxyError::Missing));
    assert_eq!(start(b"EHLO "), Err(ProxyError::Missing));
    assert_eq!(start(b"PROXY"), Ok(Version::V1));
}
