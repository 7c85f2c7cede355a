#![no_main]
//! PROXY protocol headers (v1 and v2) as a hostile or broken balancer
//! might send them, read the way the accept loop reads them: five
//! octets, then a line of at most 107 octets or the sixteen fixed octets
//! and the announced body. Beyond "no panic": the length read for version
//! 2 never exceeds its bound, and a header that parses names a client
//! whose address is what the bytes said (a v1 line round-trips).

use libfuzzer_sys::fuzz_target;
use yubin_proxy_proto::{Proxied, V1_MAX, V2_MAX_BODY, Version, start, v1_line, v2_header, v2_length};

fuzz_target!(|data: &[u8]| {
    let Some(first) = data.get(..5) else { return };
    let Ok(version) = start(first.try_into().expect("five octets")) else {
        return;
    };
    match version {
        Version::V1 => {
            let end = data.windows(2).position(|w| w == b"\r\n").map(|i| i + 2);
            let Some(end) = end.filter(|&e| e <= V1_MAX) else { return };
            if let Ok(Proxied::Client { source, destination }) = v1_line(&data[..end]) {
                let text = String::from_utf8_lossy(&data[..end]);
                assert!(text.contains(&source.ip().to_string()) || source.is_ipv6());
                assert!(text.contains(&destination.port().to_string()));
            }
        }
        Version::V2 => {
            let Some(fixed) = data.get(..16) else { return };
            let fixed: [u8; 16] = fixed.try_into().expect("sixteen octets");
            let Ok(length) = v2_length(&fixed) else { return };
            assert!(length <= V2_MAX_BODY);
            if let Some(body) = data.get(16..16 + length) {
                let _ = v2_header(&fixed, body);
            }
        }
    }
});
