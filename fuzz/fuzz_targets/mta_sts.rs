#![no_main]
//! MTA-STS policy files and `_mta-sts` TXT records (RFC 8461) fed
//! arbitrary bytes, as a hostile domain can serve them. Properties, beyond
//! "no panic": a policy read has its version's rules (a mode; MX patterns
//! unless the mode is none; max_age within a year), holds at most 100
//! patterns, and its kept record reads back as the same policy; a TXT id
//! taken is 1 to 32 letters and digits; a wildcard pattern never matches
//! a host with a different parent.

use libfuzzer_sys::fuzz_target;
use yubin_queue::mta_sts::{MAX_AGE_LIMIT, Mode, Policy, matches, txt_id};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(policy) = Policy::parse(&text, "id1", 1_000) {
        assert!(policy.max_age <= MAX_AGE_LIMIT);
        assert!(policy.mx.len() <= 100);
        assert!(policy.mode == Mode::None || !policy.mx.is_empty());
        assert_eq!(
            Policy::from_record(&policy.to_record()),
            Some(policy.clone())
        );
        for pattern in &policy.mx {
            if let Some(parent) = pattern.strip_prefix("*.") {
                assert!(!matches(pattern, &format!("x.y.{parent}")), "two labels");
                assert!(!matches(pattern, parent), "no label");
            }
        }
    }
    let records: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if let Some(id) = txt_id(&records) {
        assert!((1..=32).contains(&id.len()));
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
});
