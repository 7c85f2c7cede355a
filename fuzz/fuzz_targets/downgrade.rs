#![no_main]
//! RFC 6858's surrogate header: whatever the stored header, no panic, the
//! surrogate is ASCII (so it never needs a second downgrade), and the same
//! header always gives the same surrogate (LIST's size is RETR's).

use libfuzzer_sys::fuzz_target;
use yubin_pop3_proto::downgrade::downgrade_header;

fuzz_target!(|data: &[u8]| {
    let Some(surrogate) = downgrade_header(data) else {
        return;
    };
    assert!(surrogate.is_ascii());
    assert_eq!(downgrade_header(&surrogate), None);
    assert_eq!(downgrade_header(data), Some(surrogate));
});
