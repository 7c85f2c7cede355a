//! The conversation against scripted filters: what is sent in which
//! order, what is waited for, and what each answer means.

use super::*;
use crate::packet::Decoder;

/// The packets of one `Send`.
fn packets(bytes: &[u8]) -> Vec<Packet> {
    let mut d = Decoder::new();
    d.feed(bytes);
    let mut out = Vec::new();
    while let Some(p) = d.next_packet().expect("our own packets parse") {
        out.push(p);
    }
    out
}

fn packet(code: u8, data: &[u8]) -> Packet {
    Packet {
        code,
        data: data.to_vec(),
    }
}

fn optneg(actions: u32, steps: u32) -> Packet {
    let mut data = Vec::new();
    data.extend_from_slice(&6u32.to_be_bytes());
    data.extend_from_slice(&actions.to_be_bytes());
    data.extend_from_slice(&steps.to_be_bytes());
    packet(b'O', &data)
}

const MESSAGE: &[u8] = b"From: a@example.com\r\nSubject: hi\r\n there\r\n\r\nbody line\r\n";

fn recipients() -> Vec<String> {
    vec!["u1@ours.test".into(), "u2@ours.test".into()]
}

fn transaction<'a>(message: &'a [u8], rcpts: &'a [String]) -> Transaction<'a> {
    Transaction {
        our_name: "mx.ours.test",
        client_name: "[192.0.2.7]",
        client_ip: Some("192.0.2.7".parse().expect("an address")),
        client_port: 40000,
        helo: "client.example",
        mail_from: "a@example.com",
        recipients: rcpts,
        queue_id: "Q1",
        user: None,
        message,
    }
}

/// Runs a conversation against `filter`, which sees each packet we send
/// (macros included) and answers with packets. Returns the outcome (or
/// error) and every command byte we sent, macros as `D`; `None` when we
/// wait for an answer the filter does not give.
fn run(
    tx: Transaction<'_>,
    mut filter: impl FnMut(&Packet) -> Vec<Packet>,
) -> Option<(Result<Outcome, Error>, Vec<u8>)> {
    let mut c = Conversation::new(tx);
    let mut sent = Vec::new();
    let mut answers: std::collections::VecDeque<Packet> = Default::default();
    for _ in 0..10_000 {
        match c.next_step() {
            Next::Send(bytes) => {
                for p in packets(&bytes) {
                    sent.push(p.code);
                    answers.extend(filter(&p));
                }
            }
            Next::Receive => {
                let p = answers.pop_front()?;
                if let Err(e) = c.receive(p) {
                    return Some((Err(e), sent));
                }
            }
            Next::Done(outcome) => {
                assert!(answers.is_empty(), "answers left unread: {answers:?}");
                return Some((Ok(outcome), sent));
            }
        }
    }
    panic!("the conversation does not end");
}

/// `run` where the filter answers everything it is asked.
fn run_to_end(
    tx: Transaction<'_>,
    filter: impl FnMut(&Packet) -> Vec<Packet>,
) -> (Result<Outcome, Error>, Vec<u8>) {
    run(tx, filter).expect("the filter answers every step")
}

/// A filter that wants every step and answers `c` to each; at end of
/// message it sends `eom`.
fn plain(eom: Vec<Packet>) -> impl FnMut(&Packet) -> Vec<Packet> {
    let mut eom = Some(eom);
    move |p| match p.code {
        b'O' => vec![optneg(0x31, 0)],
        b'D' | b'Q' => vec![],
        b'E' => eom.take().unwrap_or_default(),
        _ => vec![packet(b'c', b"")],
    }
}

#[test]
fn every_step_in_order_and_the_edits_at_end_of_message() {
    let rcpts = recipients();
    let (outcome, sent) = run_to_end(
        transaction(MESSAGE, &rcpts),
        plain(vec![
            packet(b'h', b"X-Scanned\0yes\0"),
            packet(b'm', b"\0\0\0\x01Subject\0\0"),
            packet(b'i', b"\0\0\0\0X-Top\0a\nX-Evil: 1\0"),
            packet(b'p', b""),
            packet(b'c', b""),
        ]),
    );
    assert_eq!(String::from_utf8_lossy(&sent), "ODCHDMDRDRTLLNBDEQ");
    let outcome = outcome.expect("a clean conversation");
    assert_eq!(outcome.verdict, Verdict::Continue);
    assert_eq!(
        outcome.edits,
        vec![
            HeaderEdit::Add {
                name: "X-Scanned".into(),
                value: " yes".into()
            },
            HeaderEdit::Change {
                index: 1,
                name: "Subject".into(),
                value: String::new()
            },
            // A filter cannot add a field by folding one into its value.
            HeaderEdit::Insert {
                index: 0,
                name: "X-Top".into(),
                value: " a\n\tX-Evil: 1".into()
            },
        ]
    );
}

#[test]
fn what_each_step_carries() {
    let rcpts = recipients();
    let mut seen = Vec::new();
    let mut filter = plain(vec![packet(b'c', b"")]);
    let (outcome, _) = run_to_end(transaction(MESSAGE, &rcpts), |p| {
        seen.push(p.clone());
        filter(p)
    });
    outcome.expect("a clean conversation");
    let of = |code: u8| -> Vec<Vec<u8>> {
        seen.iter()
            .filter(|p| p.code == code)
            .map(|p| p.data.clone())
            .collect()
    };
    assert_eq!(
        of(b'C'),
        vec![b"[192.0.2.7]\x004\x9c\x40192.0.2.7\0".to_vec()]
    );
    assert_eq!(of(b'H'), vec![b"client.example\0".to_vec()]);
    assert_eq!(of(b'M'), vec![b"<a@example.com>\0".to_vec()]);
    assert_eq!(
        of(b'R'),
        vec![b"<u1@ours.test>\0".to_vec(), b"<u2@ours.test>\0".to_vec()]
    );
    // Values without their leading space, folds as LF.
    assert_eq!(
        of(b'L'),
        vec![
            b"From\0a@example.com\0".to_vec(),
            b"Subject\0hi\n there\0".to_vec()
        ]
    );
    assert_eq!(of(b'B'), vec![b"body line\r\n".to_vec()]);
    let macros = of(b'D');
    assert!(macros[0].starts_with(b"Cj\0mx.ours.test\0"), "{macros:?}");
    assert!(
        macros
            .iter()
            .any(|m| m == b"Mi\0Q1\0{mail_addr}\0a@example.com\0")
    );
    assert!(macros.iter().any(|m| m == b"Ei\0Q1\0"));
}

#[test]
fn left_out_steps_are_not_sent_and_no_reply_steps_not_waited_for() {
    let rcpts = recipients();
    // What OpenDKIM asks for, and no recipients, and no replies to
    // header fields and body chunks.
    let steps = step::NO_HELO
        | step::NO_UNKNOWN
        | step::NO_DATA
        | step::SKIP
        | step::HEADER_LEADING_SPACE
        | step::NR_HEADER
        | step::NR_BODY
        | step::NO_RCPT;
    let mut sends = 0;
    let mut c = Conversation::new(transaction(MESSAGE, &rcpts));
    let mut sent = Vec::new();
    let mut headers = Vec::new();
    loop {
        match c.next_step() {
            Next::Send(bytes) => {
                sends += 1;
                for p in packets(&bytes) {
                    sent.push(p.code);
                    if p.code == b'L' {
                        headers.push(p.data);
                    }
                }
            }
            Next::Receive => {
                let answer = match sent.last() {
                    Some(b'O') => optneg(0x11, steps),
                    _ => packet(b'c', b""),
                };
                c.receive(answer).expect("a valid answer");
            }
            Next::Done(o) => {
                assert_eq!(o.verdict, Verdict::Continue);
                break;
            }
        }
    }
    assert_eq!(String::from_utf8_lossy(&sent), "ODCDMLLNBDEQ");
    // Leading space kept when the filter asks for it.
    assert_eq!(headers[0], b"From\0 a@example.com\0");
    // O; C; M; headers with EOH; body with EOM; QUIT.
    assert_eq!(sends, 6);
}

#[test]
fn a_large_body_goes_in_chunks_and_skip_jumps_to_end_of_message() {
    let rcpts = recipients();
    let mut message = b"Subject: big\r\n\r\n".to_vec();
    message.resize(message.len() + 200_000, b'x');
    let mut chunks = Vec::new();
    let mut filter = plain(vec![packet(b'c', b"")]);
    let (outcome, _) = run_to_end(transaction(&message, &rcpts), |p| {
        if p.code == b'B' {
            chunks.push(p.data.len());
        }
        filter(p)
    });
    outcome.expect("a clean conversation");
    assert_eq!(chunks, vec![65_535, 65_535, 65_535, 3_395]);

    // The filter has seen enough after the first chunk.
    let (outcome, sent) = run_to_end(transaction(&message, &rcpts), |p| match p.code {
        b'O' => vec![optneg(0, step::SKIP)],
        b'D' | b'Q' => vec![],
        b'B' => vec![packet(b's', b"")],
        _ => vec![packet(b'c', b"")],
    });
    assert_eq!(outcome.expect("skipped").verdict, Verdict::Continue);
    assert_eq!(sent.iter().filter(|&&c| c == b'B').count(), 1);
}

#[test]
fn verdicts_end_the_conversation_where_they_are_given() {
    let rcpts = recipients();
    for (at, answer, verdict) in [
        (b'C', packet(b'r', b""), Verdict::Reject(None)),
        (b'M', packet(b't', b""), Verdict::Tempfail(None)),
        (b'R', packet(b'a', b""), Verdict::Accept),
        (b'E', packet(b'd', b""), Verdict::Discard),
        (
            b'E',
            packet(
                b'y',
                b"554-5.7.1 Virus found\r\n554 5.7.1 Eicar-Signature\0",
            ),
            Verdict::Reject(Some(Reply {
                code: 554,
                text: "5.7.1 Virus found Eicar-Signature".into(),
            })),
        ),
        (
            b'B',
            packet(b'y', b"451 4.7.1 Try later\0"),
            Verdict::Tempfail(Some(Reply {
                code: 451,
                text: "4.7.1 Try later".into(),
            })),
        ),
    ] {
        let (outcome, sent) = run_to_end(transaction(MESSAGE, &rcpts), |p| match p.code {
            b'O' => vec![optneg(0, 0)],
            b'D' | b'Q' => vec![],
            code if code == at => vec![answer.clone()],
            _ => vec![packet(b'c', b"")],
        });
        assert_eq!(
            outcome.expect("a verdict").verdict,
            verdict,
            "at {}",
            at as char
        );
        // Nothing after the verdict but QUIT.
        let at_pos = sent.iter().position(|&c| c == at).expect("sent");
        assert_eq!(&sent[at_pos + 1..], b"Q", "at {}", at as char);
    }
}

#[test]
fn a_filter_that_asks_for_what_we_do_not_offer_is_refused() {
    let rcpts = recipients();
    for answer in [
        optneg(0x200, 0),                            // an action not offered
        optneg(0, 0x20_0000),                        // a step not offered
        packet(b'O', b"\0\0\0\x01\0\0\0\0\0\0\0\0"), // version 1
        packet(b'O', b"\0\0\0\x06"),                 // short
        packet(b'c', b""),                           // no negotiation
    ] {
        let outcome = run(transaction(MESSAGE, &rcpts), |p| match p.code {
            b'O' => vec![answer.clone()],
            _ => vec![],
        });
        assert!(
            matches!(outcome, Some((Err(Error::Negotiation(_)), _))),
            "{answer:?}: {outcome:?}"
        );
    }
}

#[test]
fn edits_it_did_not_ask_for_and_stray_answers_are_errors() {
    let rcpts = recipients();
    // Asked for adding only, then changes one.
    let (outcome, _) = run_to_end(transaction(MESSAGE, &rcpts), |p| match p.code {
        b'O' => vec![optneg(0x01, 0)],
        b'D' | b'Q' => vec![],
        b'E' => vec![packet(b'm', b"\0\0\0\x01Subject\0x\0")],
        _ => vec![packet(b'c', b"")],
    });
    assert!(matches!(outcome, Err(Error::Protocol(_))), "{outcome:?}");
    // A header edit before end of message.
    let (outcome, _) = run_to_end(transaction(MESSAGE, &rcpts), |p| match p.code {
        b'O' => vec![optneg(0x31, 0)],
        b'D' | b'Q' => vec![],
        b'H' => vec![packet(b'h', b"X\0y\0")],
        _ => vec![packet(b'c', b"")],
    });
    assert!(matches!(outcome, Err(Error::Protocol(_))), "{outcome:?}");
    // A packet when none is asked for.
    let mut c = Conversation::new(transaction(MESSAGE, &rcpts));
    assert!(c.receive(packet(b'c', b"")).is_err());
}

#[test]
fn any_answer_at_any_step_is_a_verdict_or_an_error() {
    let rcpts = recipients();
    for at in [b'C', b'H', b'M', b'R', b'T', b'L', b'N', b'B', b'E'] {
        for code in 0..=255u8 {
            for data in [
                &b""[..],
                b"\0",
                b"\0\0\0\x01X\0v\0",
                b"550 5.7.1 no\0",
                b"x",
            ] {
                let outcome = run(transaction(MESSAGE, &rcpts), |p| match p.code {
                    b'D' | b'Q' => vec![],
                    c if c == at => vec![packet(code, data)],
                    b'O' => vec![optneg(0x31, 0)],
                    _ => vec![packet(b'c', b"")],
                });
                let Some((outcome, _)) = outcome else {
                    // Waiting on: progress, or an edit at end of message
                    // (the filter owes its verdict).
                    assert!(
                        code == b'p' || (at == b'E' && b"himqb+-2e".contains(&code)),
                        "waits after '{}' at {}",
                        code as char,
                        at as char
                    );
                    continue;
                };
                // Only the protocol's answers lead anywhere but an error.
                if !b"cartdys4f".contains(&code) {
                    assert!(outcome.is_err(), "'{}' at {}", code as char, at as char);
                }
            }
        }
    }
}

#[test]
fn no_reply_steps_past_a_batch_are_each_sent_once() {
    let rcpts = recipients();
    // 3,000 header fields and a 200 KB body, neither answered.
    let mut message = Vec::new();
    for n in 0..3000 {
        message.extend_from_slice(
            format!("X-Field-{n}: value {n} with some length to it\r\n").as_bytes(),
        );
    }
    message.extend_from_slice(b"\r\n");
    message.resize(message.len() + 200_000, b'y');
    let steps = step::NR_HEADER | step::NR_BODY;
    let (outcome, sent) = run_to_end(transaction(&message, &rcpts), |p| match p.code {
        b'O' => vec![optneg(0x31, steps)],
        b'D' | b'Q' | b'L' | b'B' => vec![],
        _ => vec![packet(b'c', b"")],
    });
    assert_eq!(
        outcome.expect("a clean conversation").verdict,
        Verdict::Continue
    );
    assert_eq!(sent.iter().filter(|&&c| c == b'L').count(), 3000);
    assert_eq!(sent.iter().filter(|&&c| c == b'B').count(), 4);
}

#[test]
fn what_rspamds_proxy_asks_for_is_accepted_and_unsupported_edits_are_reported() {
    let rcpts = recipients();
    // rspamd's proxy asks for 0x3F actions and every no-reply step.
    let (outcome, _) = run_to_end(transaction(MESSAGE, &rcpts), |p| match p.code {
        b'O' => vec![optneg(0x3F, 0x1F_F000 | step::NR_HEADER)],
        b'D' | b'Q' => vec![],
        b'E' => vec![
            packet(b'+', b"<extra@elsewhere.example>\0"),
            packet(b'b', b"new body"),
            packet(b'h', b"X-Spam\0Yes\n\0"),
            packet(b'a', b""),
        ],
        b'C' | b'H' | b'M' | b'R' | b'T' | b'L' | b'N' | b'B' => vec![],
        _ => vec![packet(b'c', b"")],
    });
    let outcome = outcome.expect("a clean conversation");
    assert_eq!(outcome.verdict, Verdict::Accept);
    assert_eq!(outcome.ignored, vec!['+', 'b']);
    // A trailing line break makes no empty line; it asked for leading
    // spaces as they are, so none is added.
    assert_eq!(
        outcome.edits,
        vec![HeaderEdit::Add {
            name: "X-Spam".into(),
            value: "Yes".into()
        }]
    );
}

#[test]
fn a_filter_shutting_down_is_a_tempfail_and_auth_macros_name_the_user() {
    let rcpts = recipients();
    let mut tx = transaction(MESSAGE, &rcpts);
    tx.user = Some("alice");
    let mut macros = Vec::new();
    let (outcome, _) = run_to_end(tx, |p| match p.code {
        b'O' => vec![optneg(0, 0)],
        b'D' => {
            macros.push(p.data.clone());
            vec![]
        }
        b'Q' => vec![],
        b'M' => vec![packet(b'4', b"")],
        _ => vec![packet(b'c', b"")],
    });
    assert_eq!(
        outcome.expect("a verdict").verdict,
        Verdict::Tempfail(Some(Reply {
            code: 421,
            text: "4.7.0 Content filter shutting down".into()
        }))
    );
    assert!(
        macros
            .iter()
            .any(|m| m.ends_with(b"{auth_authen}\0alice\0")),
        "{macros:?}"
    );
}
