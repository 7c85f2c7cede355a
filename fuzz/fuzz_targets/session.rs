#![no_main]
//! A POP3 server session with its actions carried out in memory, fed
//! either arbitrary bytes in arbitrary pieces, or (first byte odd) commands
//! picked from the protocol's own vocabulary, one at a time, so that the
//! fuzzer gets past the login into TRANSACTION and UPDATE quickly.
//!
//! Properties, beyond "no panic":
//! - every reply ends in CRLF, and nothing is committed without QUIT;
//! - nothing is written after the session has closed, whatever follows;
//! - (commands) a message number always names its own message: RETR n and
//!   TOP n send message n, never one marked deleted, and QUIT commits
//!   exactly the messages DELE marked since the last RSET.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use yubin_auth::Authenticated;
use yubin_pop3_proto::{
    Action, Encoder, MessageList, Offer, Poll, Session, SessionConfig, WireSize,
};

const MESSAGES: [&[u8]; 3] = [b"Subject: a\n\n.body\n", b"", b"Subject: c\r\n\r\nx\ry"];

const VERBS: [&str; 18] = [
    "USER", "PASS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP", "UIDL",
    "CAPA", "AUTH", "STLS", "UTF8", "LANG", "XYZZY",
];

const ARGUMENTS: [&str; 16] = [
    "",
    "1",
    "2",
    "3",
    "4",
    "0",
    "-1",
    "4294967297",
    "1 0",
    "2 5",
    "user",
    "yes",
    "<1.2@fuzz> 0123456789abcdef0123456789abcdef",
    "PLAIN",
    "PLAIN eQ==",
    "*",
];

/// What the fuzz input's commands are believed to have done, to check the
/// session against.
#[derive(Default)]
struct Model {
    /// 1-based numbers marked deleted (DELE answered +OK).
    deleted: BTreeSet<usize>,
    in_transaction: bool,
}

struct Harness {
    session: Session,
    output: Vec<u8>,
    sent: Vec<usize>,
    committed: Option<Vec<usize>>,
    closed: bool,
}

impl Harness {
    fn new(flags: u8) -> Harness {
        let config = SessionConfig {
            sasl_mechanisms: vec!["PLAIN".into(), "CRAM-MD5".into()],
            ..SessionConfig::default()
        };
        let offer = Offer {
            tls_active: false,
            stls_available: true,
            plaintext_auth: flags & 2 == 0,
            apop_timestamp: Some("<1.2@fuzz>".into()),
        };
        Harness {
            session: Session::new(Arc::new(config), offer),
            output: Vec::new(),
            sent: Vec::new(),
            committed: None,
            closed: false,
        }
    }

    /// Feeds `input` and runs the session until it needs more.
    fn feed(&mut self, input: &[u8]) {
        if self.closed {
            // A closed session says nothing more, whatever arrives.
            self.session.receive(input);
            assert!(matches!(self.session.poll(), Poll::Close));
            assert!(self.session.output().is_empty(), "written after close");
            return;
        }
        self.session.receive(input);
        loop {
            let poll = self.session.poll();
            self.output.extend_from_slice(self.session.output());
            self.session.clear_output();
            match poll {
                Poll::NeedInput => return,
                Poll::Flush => {}
                Poll::Close => {
                    self.closed = true;
                    return;
                }
                Poll::Pending => panic!("polled with an action outstanding"),
                Poll::Action(action) => self.perform(action),
            }
        }
    }

    fn perform(&mut self, action: Action) {
        let session = &mut self.session;
        match action {
            Action::CheckPassword { password, .. } => {
                if password.first() == Some(&b'y') {
                    session.credentials_accepted(Authenticated::for_tests("user"));
                } else {
                    session.credentials_rejected(Duration::ZERO);
                }
            }
            Action::CheckApop { .. } => session.credentials_rejected(Duration::ZERO),
            Action::SaslStart {
                initial_response, ..
            } => match initial_response {
                Some(r) if r.first() == Some(&b'y') => {
                    session.credentials_accepted(Authenticated::for_tests("user"))
                }
                Some(_) => session.credentials_rejected(Duration::ZERO),
                None => session.sasl_challenge(b"challenge"),
            },
            Action::SaslStep { response } => {
                if response.first() == Some(&b'y') {
                    session.credentials_accepted(Authenticated::for_tests("user"));
                } else {
                    session.sasl_challenge(&response);
                }
            }
            Action::OpenMaildrop { .. } => session.maildrop_opened(
                MESSAGES
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (WireSize::of(m), format!("u{i}")))
                    .collect::<MessageList>(),
            ),
            Action::StartTls => session.tls_established(Offer {
                tls_active: true,
                stls_available: false,
                plaintext_auth: true,
                apop_timestamp: None,
            }),
            Action::SendMessage { index, top, .. } => {
                assert!(index < MESSAGES.len(), "no message {index}");
                self.sent.push(index);
                session.message_opened();
                self.output.extend_from_slice(session.output());
                session.clear_output();
                let encoder = top.map_or_else(Encoder::whole, Encoder::top);
                encoder.encode_all(MESSAGES[index], &mut self.output);
                session.message_sent();
            }
            Action::Commit { delete, .. } => {
                assert!(session.quit_received(), "committed without QUIT");
                self.committed = Some(delete);
                session.update_finished(0);
            }
            Action::Delay(_) => session.delay_elapsed(),
        }
    }
}

/// Raw bytes, in pieces of the size the flags say.
fn raw(flags: u8, input: &[u8]) {
    let mut h = Harness::new(flags);
    let chunk = usize::from(flags >> 2).max(1);
    for part in input.chunks(chunk) {
        h.feed(part);
    }
    assert!(h.output.is_empty() || h.output.ends_with(b"\r\n"));
}

/// Commands from the vocabulary, two bytes each (verb, argument), each run
/// to its end before the next, checked against the model.
fn commands(flags: u8, input: &[u8]) {
    let mut h = Harness::new(flags);
    let mut model = Model::default();
    for pair in input.chunks(2) {
        let verb = VERBS[usize::from(pair[0]) % VERBS.len()];
        let argument = ARGUMENTS[usize::from(pair.get(1).copied().unwrap_or(0)) % ARGUMENTS.len()];
        let lowercase = pair[0] & 0x80 != 0;
        let mut line = if argument.is_empty() {
            verb.to_owned()
        } else {
            format!("{verb} {argument}")
        };
        if lowercase {
            line = line.to_ascii_lowercase();
        }
        line.push_str(if pair[0] & 0x40 != 0 { "\n" } else { "\r\n" });
        let before = h.output.len();
        let sent_before = h.sent.len();
        h.feed(line.as_bytes());
        let reply = &h.output[before..];
        let ok = reply.starts_with(b"+OK");
        let number: Option<usize> = argument.split(' ').next().and_then(|n| n.parse().ok());
        if reply.starts_with(b"+OK Logged in") {
            model.in_transaction = true;
        }
        if !model.in_transaction {
            continue;
        }
        match verb {
            "DELE" if ok => {
                let n = number.expect("DELE +OK without a number");
                assert!((1..=MESSAGES.len()).contains(&n), "DELE {n} accepted");
                assert!(model.deleted.insert(n), "DELE {n} twice");
            }
            "RSET" if ok => model.deleted.clear(),
            "RETR" | "TOP" => {
                let sent = &h.sent[sent_before..];
                if ok {
                    let n = number.expect("a message sent without a number");
                    assert_eq!(sent, [n - 1], "{verb} {n} sent another message");
                    assert!(
                        !model.deleted.contains(&n),
                        "{verb} {n} sent a deleted message"
                    );
                } else {
                    assert!(sent.is_empty(), "a refused {verb} sent a message");
                }
            }
            "QUIT" => {
                if let Some(delete) = &h.committed {
                    let marked: Vec<usize> = model.deleted.iter().map(|n| n - 1).collect();
                    let mut delete = delete.clone();
                    delete.sort_unstable();
                    assert_eq!(delete, marked, "QUIT committed other messages");
                }
            }
            _ => {}
        }
    }
    assert!(h.output.is_empty() || h.output.ends_with(b"\r\n"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    if flags & 1 == 0 {
        raw(flags, input);
    } else {
        commands(flags, input);
    }
});
