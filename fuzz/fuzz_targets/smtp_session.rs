#![no_main]
//! An SMTP server session fed arbitrary bytes in arbitrary pieces, with its
//! actions carried out in memory. Checks that replies stay well-formed,
//! that nothing counts as delivered unless the session asked for it with a
//! complete envelope, that nothing is written after a closing 221 or 421,
//! and, with bare line ends refused and no BDAT, that the decoded content
//! never holds an end-of-data line the client did not dot-stuff: every line
//! that is a lone `.` in a message must come from a `..` line sent (else a
//! smuggled end would have passed through). With bare line ends normalised,
//! a `.` line after one is text by design, dot-stuffed again when relayed.

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use yubin_auth::Authenticated;
use yubin_smtp_proto::data::{BareLineEnd, LineEnds};
use yubin_smtp_proto::{Action, Offer, Poll, Reply, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let strict = split & 8 != 0;
    let config = SessionConfig {
        hostname: "fuzz.example".into(),
        max_message_size: 4096,
        max_recipients: 3,
        sasl_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        line_ends: if strict {
            LineEnds {
                bare_lf: BareLineEnd::Reject,
                bare_cr: BareLineEnd::Reject,
            }
        } else {
            LineEnds::default()
        },
        ..SessionConfig::default()
    };
    let offer = Offer {
        tls_active: false,
        starttls_available: true,
        auth_allowed: split & 1 == 0,
        plaintext_auth: split & 2 == 0,
        submission: split & 4 == 0,
    };
    let mut session: Session = Session::new(Arc::new(config), offer);
    let mut output = Vec::new();
    let mut content = Vec::new();
    let mut dot_lines = 0usize;
    let mut closed = false;
    let chunk = usize::from(split >> 4).max(1);
    'outer: for part in input.chunks(chunk) {
        if closed {
            session.receive(part);
            assert!(matches!(session.poll(), Poll::Close));
            assert!(session.output().is_empty(), "written after close");
            continue 'outer;
        }
        session.receive(part);
        loop {
            let poll = session.poll();
            output.extend_from_slice(session.output());
            session.clear_output();
            match poll {
                Poll::NeedInput => break,
                Poll::Flush => {}
                Poll::Close => {
                    closed = true;
                    continue 'outer;
                }
                Poll::Pending => panic!("polled with an action outstanding"),
                Poll::Action(action) => match action {
                    Action::CheckRecipient { path, .. } => {
                        if format!("{path:?}").contains('x') {
                            session.recipient_refused(Reply::new(550, "5.1.1", "User unknown"));
                        } else {
                            session.recipient_accepted("route".into());
                        }
                    }
                    Action::SaslStart {
                        initial_response, ..
                    } => match initial_response {
                        Some(r) if r.first() == Some(&b'y') => {
                            session.credentials_accepted(Authenticated::for_tests("user"))
                        }
                        Some(_) => session.credentials_rejected(std::time::Duration::ZERO),
                        None => session.sasl_challenge(b"challenge"),
                    },
                    Action::SaslStep { response } => {
                        if response.first() == Some(&b'y') {
                            session.credentials_accepted(Authenticated::for_tests("user"));
                        } else {
                            session.credentials_rejected(std::time::Duration::ZERO);
                        }
                    }
                    Action::StartTls => session.tls_established(Offer {
                        tls_active: true,
                        starttls_available: false,
                        auth_allowed: true,
                        plaintext_auth: true,
                        submission: split & 4 == 0,
                    }),
                    Action::MessageData => content.extend(session.take_data()),
                    Action::EndOfMessage(envelope) => {
                        content.extend(session.take_data());
                        assert!(
                            !envelope.recipients.is_empty(),
                            "a message without recipients"
                        );
                        assert!(content.len() <= 4096, "over the size limit");
                        dot_lines += lone_dots(&content);
                        content.clear();
                        session.message_accepted("id");
                    }
                    Action::DiscardMessage => content.clear(),
                    Action::Delay(_) => session.delay_elapsed(),
                },
            }
        }
    }
    assert!(output.is_empty() || output.ends_with(b"\r\n"));
    let bdat = input.windows(4).any(|w| w.eq_ignore_ascii_case(b"BDAT"));
    assert!(
        !strict || bdat || dot_lines <= stuffed_dots(input),
        "a lone dot line no client dot-stuffed"
    );
    for line in output.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(
            line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit),
            "bad reply {line:?}"
        );
    }
});

/// Lines of decoded content that are a lone `.`.
fn lone_dots(content: &[u8]) -> usize {
    content
        .split(|&b| b == b'\n')
        .filter(|line| *line == b"." || *line == b".\r")
        .count()
}

/// Lines the client sent that start with `..` and end there (a stuffed
/// lone dot), whatever line end follows. An upper bound: BDAT chunks are
/// not stuffed, but their `..` lines count too.
fn stuffed_dots(input: &[u8]) -> usize {
    let mut count = 0;
    for (i, window) in input.windows(3).enumerate() {
        let at_line_start = i == 0 || matches!(input[i - 1], b'\n' | b'\r');
        if at_line_start
            && window[0] == b'.'
            && window[1] == b'.'
            && matches!(window[2], b'\r' | b'\n')
        {
            count += 1;
        }
    }
    count
}
