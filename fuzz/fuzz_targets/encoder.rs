#![no_main]
//! The RETR encoder: chunking changes nothing, sizes are exact, and the
//! response ends exactly once.

use libfuzzer_sys::fuzz_target;
use yubin_pop3_proto::{Encoder, WireSize};

fuzz_target!(|data: &[u8]| {
    let Some((&split, message)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1);

    let mut whole = Vec::new();
    Encoder::whole().encode_all(message, &mut whole);

    let mut pieces = Vec::new();
    let mut encoder = Encoder::whole();
    let mut size = WireSize::new();
    for part in message.chunks(chunk) {
        encoder.encode(part, &mut pieces);
        size.update(part);
    }
    encoder.finish(&mut pieces);
    assert_eq!(pieces, whole);

    // The terminator appears once, at the end.
    assert!(whole.ends_with(b".\r\n"));
    let body = &whole[..whole.len() - 3];
    assert!(body.is_empty() || body.ends_with(b"\r\n"));
    assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));

    // Un-stuffed, the body is exactly the advertised size.
    let mut unstuffed = 0u64;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_prefix(b".").unwrap_or(line);
        unstuffed += line.len() as u64;
    }
    assert_eq!(unstuffed, size.finish());
    assert_eq!(unstuffed, WireSize::of(message));
});
