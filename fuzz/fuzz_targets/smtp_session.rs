#![no_main]
//! An SMTP server session fed arbitrary bytes in arbitrary pieces, with its
//! actions carried out in memory. Checks that replies stay well-formed and
//! that nothing counts as delivered unless the session asked for it with a
//! complete envelope.

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use yubin_smtp_proto::{Action, Offer, Poll, Reply, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        hostname: "fuzz.example".into(),
        max_message_size: 4096,
        max_recipients: 3,
        sasl_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        ..SessionConfig::default()
    };
    let offer = Offer {
        tls_active: false,
        starttls_available: true,
        auth_allowed: split & 1 == 0,
        plaintext_auth: split & 2 == 0,
        submission: split & 4 == 0,
    };
    let mut session = Session::new(Arc::new(config), offer);
    let mut output = Vec::new();
    let mut content = Vec::new();
    let chunk = usize::from(split >> 3).max(1);
    'outer: for part in input.chunks(chunk) {
        session.receive(part);
        loop {
            let poll = session.poll();
            output.extend_from_slice(session.output());
            session.clear_output();
            match poll {
                Poll::NeedInput => break,
                Poll::Flush => {}
                Poll::Close => break 'outer,
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
                            session.credentials_accepted("user".into())
                        }
                        Some(_) => session.credentials_rejected(std::time::Duration::ZERO),
                        None => session.sasl_challenge(b"challenge"),
                    },
                    Action::SaslStep { response } => {
                        if response.first() == Some(&b'y') {
                            session.credentials_accepted("user".into());
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
                        assert!(!envelope.recipients.is_empty(), "a message without recipients");
                        assert!(content.len() <= 4096, "over the size limit");
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
    for line in output.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit), "bad reply {line:?}");
    }
});
