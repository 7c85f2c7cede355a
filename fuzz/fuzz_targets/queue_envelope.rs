#![no_main]
//! The queue file's envelope reader fed arbitrary bytes. Properties,
//! beyond "no panic": an envelope read has an id and a recipient, and
//! written back ([`Envelope::header`]) reads back as the same envelope,
//! with the reader left exactly at the message that follows.

use libfuzzer_sys::fuzz_target;
use yubin_queue::Envelope;

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let Ok(Ok(envelope)) = Envelope::read_header(&mut reader) else {
        return;
    };
    assert!(!envelope.id.is_empty() && !envelope.recipients.is_empty());
    let mut written = envelope.header().into_bytes();
    written.extend_from_slice(b"the message\r\n");
    let mut again = written.as_slice();
    let read = Envelope::read_header(&mut again)
        .expect("in memory")
        .expect("a written envelope reads back");
    assert_eq!(read, envelope);
    assert_eq!(again, b"the message\r\n", "the reader stopped elsewhere");
});
