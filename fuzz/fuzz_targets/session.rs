#![no_main]
//! A server session fed arbitrary bytes in arbitrary pieces, with its
//! actions carried out in memory.

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use yubin_pop3_proto::{
    Action, Encoder, MessageList, Offer, Poll, Session, SessionConfig, WireSize,
};

const MESSAGES: [&[u8]; 3] = [b"Subject: a\n\n.body\n", b"", b"Subject: c\r\n\r\nx\ry"];

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        sasl_mechanisms: vec!["PLAIN".into(), "CRAM-MD5".into()],
        ..SessionConfig::default()
    };
    let offer = Offer {
        tls_active: false,
        stls_available: true,
        plaintext_auth: split & 1 == 0,
        apop_timestamp: Some("<1.2@fuzz>".into()),
    };
    let mut session = Session::new(Arc::new(config), offer);
    let mut output = Vec::new();
    let mut committed = false;
    let chunk = usize::from(split >> 1).max(1);
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
                    Action::CheckPassword { password, .. } => {
                        if password.first() == Some(&b'y') {
                            session.credentials_accepted("user".into());
                        } else {
                            session.credentials_rejected(std::time::Duration::ZERO);
                        }
                    }
                    Action::CheckApop { .. } => session.credentials_rejected(std::time::Duration::ZERO),
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
                        session.message_opened();
                        output.extend_from_slice(session.output());
                        session.clear_output();
                        let encoder = top.map_or_else(Encoder::whole, Encoder::top);
                        encoder.encode_all(MESSAGES[index], &mut output);
                        session.message_sent();
                    }
                    Action::Commit { .. } => {
                        committed = true;
                        session.update_finished(0);
                    }
                    Action::Delay(_) => session.delay_elapsed(),
                },
            }
        }
    }
    assert!(output.is_empty() || output.ends_with(b"\r\n"));
    assert!(!committed || session.quit_received());
});
