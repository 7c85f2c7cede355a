//! The POP3 client core fed whatever a hostile server might send, in
//! pieces, after a pipelined batch of every kind of command: it must never
//! panic, and once it reports an error it must keep reporting it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yubin_pop3_proto::MsgNum;
use yubin_pop3_proto::client::{Connection, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let mut pop = Connection::new(Limits { max_entries: 64 });
    let one = MsgNum::from_index(0).expect("1 is a message number");
    // The commands a fetch sends, pipelined as PIPELINING allows.
    let _ = pop.capa();
    let _ = pop.utf8();
    let _ = pop.user("alice");
    let _ = pop.pass("secret");
    let _ = pop.auth("CRAM-MD5", None);
    let _ = pop.auth_response(b"alice 0123");
    let _ = pop.list();
    let _ = pop.uidl();
    let _ = pop.retr(one, 4096);
    let _ = pop.top(one, 0, 512);
    let _ = pop.dele(one);
    if flags & 1 != 0 {
        let _ = pop.stls();
    }
    let _ = pop.quit();
    let piece = usize::from(flags >> 1) + 1;
    let mut failed = None;
    for chunk in input.chunks(piece) {
        pop.receive(chunk);
        loop {
            match pop.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = &failed {
            assert_eq!(pop.next_event().as_ref(), Err(error), "an error must stick");
            return;
        }
    }
});
