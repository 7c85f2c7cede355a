#![no_main]
//! The MTA side of the milter protocol fed whatever a broken or hostile
//! filter might send. Beyond "no panic, no hang": the conversation ends
//! (a verdict or an error) within the bytes given, and every header edit
//! it hands over is safe to store: a name of printable characters
//! without a colon, and a value whose every line break is followed by
//! white space (no field can be smuggled in by folding).

use libfuzzer_sys::fuzz_target;
use yubin_milter::{Conversation, Decoder, HeaderEdit, Next, Transaction};

const MESSAGE: &[u8] = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";

fuzz_target!(|data: &[u8]| {
    let recipients = vec!["u@ours.test".to_owned()];
    let mut conversation = Conversation::new(Transaction {
        our_name: "mx.ours.test",
        client_name: "[192.0.2.1]",
        client_ip: Some("192.0.2.1".parse().expect("an address")),
        client_port: 25,
        helo: "client.example",
        mail_from: "a@example.com",
        recipients: &recipients,
        queue_id: "Q",
        user: None,
        message: MESSAGE,
    });
    let mut decoder = Decoder::new();
    decoder.feed(data);
    // Every step either sends, reads one packet, or ends: at most one
    // read per packet, and a bounded number of sends between reads.
    for _ in 0..100_000 {
        match conversation.next_step() {
            Next::Send(_) => {}
            Next::Receive => match decoder.next_packet() {
                Ok(Some(packet)) => {
                    if conversation.receive(packet).is_err() {
                        return;
                    }
                }
                _ => return,
            },
            Next::Done(outcome) => {
                for edit in &outcome.edits {
                    let (name, value) = match edit {
                        HeaderEdit::Add { name, value }
                        | HeaderEdit::Insert { name, value, .. }
                        | HeaderEdit::Change { name, value, .. } => (name, value),
                    };
                    assert!(!name.is_empty());
                    assert!(name.bytes().all(|b| b.is_ascii_graphic() && b != b':'), "{name:?}");
                    assert!(!value.contains('\r'), "{value:?}");
                    for line in value.split('\n').skip(1) {
                        assert!(line.starts_with([' ', '\t']), "{value:?}");
                    }
                }
                return;
            }
        }
    }
    panic!("the conversation did not end");
});
