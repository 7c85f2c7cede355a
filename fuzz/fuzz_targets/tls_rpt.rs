#![no_main]
//! `_smtp._tls` TXT records (RFC 8460 §3) fed arbitrary bytes, as a
//! hostile domain can publish them. Each address taken goes into the To:
//! field of a report mail and into its envelope, so, beyond "no panic":
//! every address has an `@` with text on both sides and only printable
//! ASCII without spaces, angle brackets, commas or quotes (no header or
//! command can be smuggled in, percent-escapes included), and a record
//! set with two versioned records yields nothing.

use libfuzzer_sys::fuzz_target;
use yubin_queue::tls_rpt::rua;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let records: Vec<String> = text.split('\n').map(str::to_owned).collect();
    for address in rua(&records) {
        let (local, domain) = address.rsplit_once('@').expect("an @");
        assert!(!local.is_empty() && !domain.is_empty());
        assert!(
            address
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b)),
            "{address:?}"
        );
    }
    let versioned = records
        .iter()
        .filter(|r| r.split(';').next().is_some_and(|v| v.trim() == "v=TLSRPTv1"))
        .count();
    if versioned != 1 {
        assert!(rua(&records).is_empty());
    }
});
