//! Transcripts: the client's commands and the events a server's bytes make.

use super::*;

fn greeted() -> Connection {
    let mut pop = Connection::new(Limits::default());
    pop.receive(b"+OK ready <1.2@host>\r\n");
    match pop.next_event() {
        Ok(Some(Event::Greeting(status))) => assert!(status.ok),
        other => panic!("{other:?}"),
    }
    pop
}

fn n(v: u32) -> MsgNum {
    MsgNum::parse(v.to_string().as_bytes()).unwrap()
}

/// All events the buffered input makes, content pieces joined.
fn drain(pop: &mut Connection) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    while let Some(event) = pop.next_event().unwrap() {
        match (events.last_mut(), event) {
            (Some(Event::Content(so_far)), Event::Content(more)) => so_far.extend(more),
            (_, event) => events.push(event),
        }
    }
    events
}

#[test]
fn pipelined_commands_get_their_replies_in_order() {
    let mut pop = greeted();
    pop.list().unwrap();
    pop.uidl().unwrap();
    pop.retr(n(1), 1000).unwrap();
    pop.dele(n(1)).unwrap();
    assert_eq!(pop.output(), b"LIST\r\nUIDL\r\nRETR 1\r\nDELE 1\r\n");
    pop.receive(
        b"+OK 1 messages\r\n1 12\r\n.\r\n+OK\r\n1 abc\r\n.\r\n+OK 12 octets\r\n..hi\r\nx\r\n.\r\n+OK deleted\r\n",
    );
    let events = drain(&mut pop);
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(
        events[0],
        Event::Scan {
            entries: vec![ScanEntry {
                number: n(1),
                size: 12
            }],
            rejected: 0
        }
    );
    assert_eq!(
        events[1],
        Event::Uids {
            entries: vec![UidEntry {
                number: n(1),
                uid: "abc".into()
            }],
            rejected: 0
        }
    );
    assert_eq!(events[2], Event::Content(b".hi\r\nx\r\n".to_vec()));
    assert_eq!(events[3], Event::ContentEnd);
    assert!(matches!(&events[4], Event::Status(s) if s.ok && s.text == "deleted"));
    assert!(!pop.awaiting_reply());
}

#[test]
fn replies_split_at_every_byte_give_the_same_events() {
    let wire: &[u8] = b"+OK\r\n1 5\r\n2 7\r\n.\r\n+OK\r\nbody\r\n.\r\n-ERR [SYS/TEMP] no\r\n";
    let mut whole = greeted();
    whole.list().unwrap();
    whole.retr(n(1), 100).unwrap();
    whole.dele(n(1)).unwrap();
    whole.receive(wire);
    let expected = drain(&mut whole);
    let mut split = greeted();
    split.list().unwrap();
    split.retr(n(1), 100).unwrap();
    split.dele(n(1)).unwrap();
    let mut events: Vec<Event> = Vec::new();
    for byte in wire {
        split.receive(&[*byte]);
        events.extend(drain(&mut split));
    }
    let mut joined: Vec<Event> = Vec::new();
    for event in events {
        match (joined.last_mut(), event) {
            (Some(Event::Content(a)), Event::Content(b)) => a.extend(b),
            (_, e) => joined.push(e),
        }
    }
    assert_eq!(joined, expected);
    assert!(matches!(&expected[3], Event::Status(s) if !s.ok && s.temporary()));
}

#[test]
fn hostile_uidl_lines_are_rejected_not_guessed() {
    let mut pop = greeted();
    pop.uidl().unwrap();
    let mut wire = b"+OK\r\n1 good\r\n2 ".to_vec();
    wire.extend(std::iter::repeat_n(b'u', 100_000));
    wire.extend_from_slice(b"\r\n3 \x01ctl\r\n4\r\n5 ");
    wire.extend_from_slice("x".repeat(71).as_bytes());
    wire.extend_from_slice(b"\r\n6 good\r\n.\r\n");
    pop.receive(&wire);
    let events = drain(&mut pop);
    let Event::Uids { entries, rejected } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*rejected, 4);
    let uids: Vec<_> = entries
        .iter()
        .map(|e| (e.number.get(), e.uid.as_str()))
        .collect();
    assert_eq!(uids, [(1, "good"), (6, "good")]);
}

#[test]
fn endless_listing_is_capped() {
    let mut pop = Connection::new(Limits { max_entries: 3 });
    pop.receive(b"+OK\r\n");
    pop.next_event().unwrap();
    pop.list().unwrap();
    pop.receive(b"+OK\r\n1 1\r\n2 1\r\n3 1\r\n4 1\r\n");
    let mut result = Ok(None);
    for _ in 0..10 {
        result = pop.next_event();
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(ProtocolError::TooManyEntries(3)));
    // The connection stays failed.
    assert_eq!(pop.next_event(), Err(ProtocolError::TooManyEntries(3)));
}

#[test]
fn content_past_the_limit_is_an_error() {
    let mut pop = greeted();
    pop.retr(n(1), 10).unwrap();
    pop.receive(b"+OK\r\n0123456789abcdef\r\n.\r\n");
    assert_eq!(pop.next_event(), Err(ProtocolError::ContentTooLong(10)));
}

#[test]
fn a_message_without_its_terminator_never_ends() {
    let mut pop = greeted();
    pop.retr(n(1), 1000).unwrap();
    pop.receive(b"+OK\r\npartial\r\n");
    let events = drain(&mut pop);
    assert_eq!(events, [Event::Content(b"partial\r\n".to_vec())]);
    assert!(pop.awaiting_reply());
}

#[test]
fn huge_error_line_is_truncated_and_escaped() {
    let mut pop = greeted();
    pop.user("alice").unwrap();
    let mut wire = b"-ERR \x1b[2J".to_vec();
    wire.extend(std::iter::repeat_n(b'%', 10 * 1024 * 1024));
    wire.extend_from_slice(b"\r\n+OK\r\n");
    pop.noop().unwrap();
    let mut statuses = Vec::new();
    for chunk in wire.chunks(16 * 1024) {
        pop.receive(chunk);
        while let Some(event) = pop.next_event().unwrap() {
            statuses.push(event);
        }
        assert!(
            pop.input.len() < 64 * 1024,
            "input buffered: {}",
            pop.input.len()
        );
    }
    let [Event::Status(refused), Event::Status(ok)] = &statuses[..] else {
        panic!("{statuses:?}")
    };
    assert!(!refused.ok && ok.ok);
    assert!(refused.text.starts_with("\\x1b[2J%%%"));
    assert!(refused.text.len() <= 4 * MAX_STATUS_TEXT);
    assert!(!pop.awaiting_reply());
}

#[test]
fn stls_must_be_alone_and_nothing_may_follow_its_ok() {
    let mut pop = greeted();
    pop.noop().unwrap();
    assert_eq!(pop.stls(), Err(RequestError::StlsPending));
    let mut pop = greeted();
    pop.stls().unwrap();
    assert_eq!(pop.user("alice"), Err(RequestError::StlsPending));
    pop.receive(b"+OK Begin TLS\r\n+OK fake\r\n");
    assert_eq!(pop.next_event(), Err(ProtocolError::DataAfterStls));

    let mut pop = greeted();
    pop.stls().unwrap();
    pop.receive(b"+OK Begin TLS\r\n");
    assert!(matches!(pop.next_event(), Ok(Some(Event::Status(s))) if s.ok));
    assert!(!pop.has_buffered_input());
}

#[test]
fn sasl_challenges_are_decoded_or_refused() {
    let mut pop = greeted();
    pop.auth("CRAM-MD5", None).unwrap();
    pop.receive(b"+ PDEyMzRAaG9zdD4=\r\n");
    assert_eq!(
        pop.next_event(),
        Ok(Some(Event::Challenge(b"<1234@host>".to_vec())))
    );
    pop.auth_response(b"alice 0123").unwrap();
    pop.receive(b"+OK\r\n");
    assert!(matches!(pop.next_event(), Ok(Some(Event::Status(s))) if s.ok));
    assert_eq!(pop.output(), b"AUTH CRAM-MD5\r\nYWxpY2UgMDEyMw==\r\n");

    let mut pop = greeted();
    pop.auth("PLAIN", Some(b"")).unwrap();
    assert_eq!(pop.output(), b"AUTH PLAIN =\r\n");
    pop.receive(b"+ not*base64!\r\n");
    assert_eq!(pop.next_event(), Err(ProtocolError::BadChallenge));

    // A challenge where a status is due is not a status line.
    let mut pop = greeted();
    pop.user("alice").unwrap();
    pop.receive(b"+ abc\r\n");
    assert!(matches!(
        pop.next_event(),
        Err(ProtocolError::BadStatusLine(_))
    ));
}

#[test]
fn arguments_cannot_inject_commands() {
    let mut pop = greeted();
    assert_eq!(pop.user("alice\r\nDELE 1"), Err(RequestError::BadArgument));
    assert_eq!(pop.pass(""), Err(RequestError::BadArgument));
    assert_eq!(pop.pass(&"x".repeat(256)), Err(RequestError::BadArgument));
    pop.pass("with spaces ok").unwrap();
    assert_eq!(pop.output(), b"PASS with spaces ok\r\n");
}

#[test]
fn unsolicited_data_and_garbage_are_errors() {
    let mut pop = greeted();
    pop.receive(b"+OK surprise\r\n");
    assert_eq!(pop.next_event(), Err(ProtocolError::Unsolicited));
    let mut pop = Connection::new(Limits::default());
    pop.receive(b"220 smtp.example ESMTP\r\n");
    assert!(matches!(
        pop.next_event(),
        Err(ProtocolError::BadStatusLine(_))
    ));
}

#[test]
fn capabilities_and_failed_multiline_commands() {
    let mut pop = greeted();
    pop.capa().unwrap();
    pop.top(n(1), 0, 100).unwrap();
    pop.receive(b"+OK\r\nUIDL\r\nSASL SCRAM-SHA-256\r\n.\r\n-ERR no such message\r\n");
    let events = drain(&mut pop);
    let Event::Capabilities(caps) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(caps.uidl && caps.has_sasl("SCRAM-SHA-256") && !caps.top);
    assert!(matches!(&events[1], Event::Status(s) if !s.ok));
    assert_eq!(events.len(), 2);
}

#[test]
fn an_overlong_ok_line_to_retr_is_not_content() {
    let mut pop = greeted();
    pop.retr(n(1), 1000).unwrap();
    pop.noop().unwrap();
    let mut wire = b"+OK ".to_vec();
    wire.extend(std::iter::repeat_n(b'o', 5000));
    wire.extend_from_slice(b" octets\r\nbody\r\n.\r\n+OK noop\r\n");
    let mut events = Vec::new();
    for chunk in wire.chunks(700) {
        pop.receive(chunk);
        events.extend(drain(&mut pop));
    }
    let content: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Content(c) => Some(c.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(content, b"body\r\n");
    assert!(
        matches!(events.last(), Some(Event::Status(s)) if s.text == "noop"),
        "{events:?}"
    );
}
