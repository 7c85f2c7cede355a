//! The SMTP client session fed whatever a hostile server might send, in
//! pieces: it must never panic, never loop, and always end with a result
//! for every recipient.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yubin_smtp_proto::client::{Client, ClientConfig, Credentials, Message, Poll, TlsPolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let config = ClientConfig {
        lmtp: false,
        loop_check: true,
        helo_name: "mx.fuzz.test".into(),
        tls: match flags % 3 {
            0 => TlsPolicy::Never,
            1 => TlsPolicy::Opportunistic,
            _ => TlsPolicy::Required,
        },
        credentials: (flags & 4 != 0).then(|| Credentials {
            user: "u".into(),
            password: "p".into(),
        }),
        timeouts: Default::default(),
    };
    let message = Message {
        from: "a@fuzz.test".into(),
        recipients: vec!["b@remote.test".into(), "c@remote.test".into()],
        size: 100,
        eight_bit: flags & 8 != 0,
        smtputf8: flags & 16 != 0,
    };
    let mut client = Client::new(config, message, flags & 32 != 0);
    let piece = usize::from(flags >> 6) + 1;
    let mut chunks = input.chunks(piece);
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 100_000, "the client loops");
        match client.poll() {
            Poll::Write => client.clear_output(),
            Poll::StartTls => client.tls_established(),
            Poll::SendContent => client.content_sent(),
            Poll::Done => break,
            Poll::NeedInput => match chunks.next() {
                Some(chunk) => client.receive(chunk),
                None => {
                    client.connection_lost("end of input");
                }
            },
        }
    }
    assert_eq!(client.results().len(), 2);
});
