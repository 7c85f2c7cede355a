//! Transcript tests of the SMTP session, written from RFC 5321's text.

use super::*;
use crate::address::Domain;

/// The login penalty the driver would choose.
const FAILURE_DELAY: Duration = Duration::from_secs(1);

struct Harness {
    session: Session,
    received: Vec<u8>,
    closed: bool,
    delivered: Vec<(Envelope, Vec<u8>)>,
    stored: Vec<u8>,
    discarded: usize,
    tls_started: bool,
}

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.local.test".into(),
        max_message_size: 1000,
        max_recipients: 3,
        sasl_mechanisms: vec!["PLAIN".into(), "LOGIN".into(), "CRAM-MD5".into()],
        ..SessionConfig::default()
    }
}

fn mx_offer() -> Offer {
    Offer {
        tls_active: false,
        starttls_available: true,
        auth_allowed: true,
        plaintext_auth: true,
        submission: false,
    }
}

impl Harness {
    fn new(offer: Offer) -> Self {
        Self::with(config(), offer)
    }

    fn with(config: SessionConfig, offer: Offer) -> Self {
        let mut h = Harness {
            session: Session::new(Arc::new(config), offer),
            received: Vec::new(),
            closed: false,
            delivered: Vec::new(),
            stored: Vec::new(),
            discarded: 0,
            tls_started: false,
        };
        h.drive();
        h
    }

    fn send_raw(&mut self, bytes: &[u8]) -> String {
        let before = self.received.len();
        self.session.receive(bytes);
        self.drive();
        String::from_utf8_lossy(&self.received[before..]).into_owned()
    }

    fn send(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes())
    }

    fn drive(&mut self) {
        loop {
            let poll = self.session.poll();
            self.received.extend_from_slice(self.session.output());
            self.session.clear_output();
            match poll {
                Poll::NeedInput => return,
                Poll::Close => {
                    self.closed = true;
                    return;
                }
                Poll::Flush => {}
                Poll::Pending => panic!("polled with an action outstanding"),
                Poll::Action(action) => self.perform(action),
            }
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::CheckRecipient {
                path,
                authenticated,
            } => match path {
                ForwardPath::Postmaster => self.session.recipient_accepted("postmaster".into()),
                ForwardPath::Mailbox(m) => {
                    let local = m.domain == Domain::Name("local.test".into());
                    if local && !m.quoted && m.local == "alice" {
                        self.session.recipient_accepted("local alice".into());
                    } else if local {
                        self.session
                            .recipient_refused(Reply::new(550, "5.1.1", "User unknown"));
                    } else if authenticated.is_some() {
                        self.session.recipient_accepted("relay".into());
                    } else {
                        self.session.recipient_refused(Reply::new(
                            554,
                            "5.7.1",
                            "Relay access denied",
                        ));
                    }
                }
            },
            Action::SaslStart {
                initial_response, ..
            } => match initial_response {
                Some(r) => self.sasl(r),
                None => self.session.sasl_challenge(b""),
            },
            Action::SaslStep { response } => self.sasl(response),
            Action::StartTls => {
                self.tls_started = true;
                self.session.tls_established(Offer {
                    tls_active: true,
                    starttls_available: false,
                    ..mx_offer()
                });
            }
            Action::MessageData => {
                let data = self.session.take_data();
                self.stored.extend_from_slice(&data);
            }
            Action::EndOfMessage(envelope) => {
                let data = self.session.take_data();
                self.stored.extend_from_slice(&data);
                self.delivered
                    .push((envelope, std::mem::take(&mut self.stored)));
                self.session.message_accepted("ID1");
            }
            Action::DiscardMessage => {
                self.stored.clear();
                self.discarded += 1;
            }
            Action::Delay(_) => self.session.delay_elapsed(),
        }
    }

    fn sasl(&mut self, response: Vec<u8>) {
        if response == b"\0alice\0secret" {
            self.session
                .credentials_accepted(yubin_auth::Authenticated::for_tests("alice"));
        } else if response == b"\0alice\0backend-down" {
            self.session.credentials_unverifiable();
        } else {
            self.session.credentials_rejected(FAILURE_DELAY);
        }
    }

    fn greet(&mut self) {
        assert!(
            self.send("EHLO client.example")
                .starts_with("250-mx.local.test Hello\r\n")
        );
    }
}

/// Runs `C:` / `S:` lines; `S:` lines must match exactly.
fn transcript(h: &mut Harness, script: &str) {
    let mut expected = Vec::new();
    let mut got = String::new();
    let check = |got: &str, expected: &mut Vec<String>| {
        let lines: Vec<&str> = got
            .split_inclusive("\r\n")
            .map(|l| l.trim_end_matches("\r\n"))
            .collect();
        assert_eq!(lines, *expected, "transcript mismatch");
        expected.clear();
    };
    for line in script
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty())
    {
        if let Some(c) = line.strip_prefix("C: ") {
            check(&got, &mut expected);
            got = h.send(c);
        } else if let Some(s) = line.strip_prefix("S: ") {
            expected.push(s.to_owned());
        } else {
            panic!("bad transcript line {line:?}");
        }
    }
    check(&got, &mut expected);
}

#[test]
fn greeting_and_ehlo_capabilities() {
    let h = Harness::new(mx_offer());
    assert_eq!(h.received, b"220 mx.local.test ESMTP yubin\r\n");
    let mut h = Harness::new(mx_offer());
    transcript(
        &mut h,
        "C: EHLO client.example
         S: 250-mx.local.test Hello
         S: 250-PIPELINING
         S: 250-SIZE 1000
         S: 250-8BITMIME
         S: 250-SMTPUTF8
         S: 250-ENHANCEDSTATUSCODES
         S: 250-CHUNKING
         S: 250-STARTTLS
         S: 250-AUTH PLAIN LOGIN CRAM-MD5
         S: 250 HELP
         C: HELO client.example
         S: 250 mx.local.test Hello",
    );
}

#[test]
fn auth_is_hidden_where_not_allowed() {
    let mut h = Harness::new(Offer {
        auth_allowed: false,
        ..mx_offer()
    });
    let ehlo = h.send("EHLO c");
    assert!(!ehlo.contains("AUTH"));
    assert_eq!(
        h.send("AUTH PLAIN"),
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    let mut h = Harness::new(Offer {
        plaintext_auth: false,
        ..mx_offer()
    });
    assert!(h.send("EHLO c").contains("250-AUTH CRAM-MD5\r\n"));
    assert_eq!(
        h.send("AUTH PLAIN"),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    // Under TLS, with plaintext mechanisms off by configuration.
    let mut h = Harness::new(Offer {
        plaintext_auth: false,
        tls_active: true,
        starttls_available: false,
        ..mx_offer()
    });
    h.send("EHLO c");
    assert_eq!(
        h.send("AUTH LOGIN"),
        "504 5.5.4 Authentication mechanism not allowed here\r\n"
    );
}

/// RFC 5321 Appendix D.1, a typical transaction (with our reply texts).
#[test]
fn rfc5321_d1_transaction() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    transcript(
        &mut h,
        "C: MAIL FROM:<Smith@bar.com>
         S: 250 2.1.0 Sender OK
         C: RCPT TO:<alice@local.test>
         S: 250 2.1.5 Recipient OK
         C: RCPT TO:<Green@local.test>
         S: 550 5.1.1 User unknown
         C: RCPT TO:<Brown@foo.com>
         S: 554 5.7.1 Relay access denied
         C: DATA
         S: 354 End data with <CR><LF>.<CR><LF>",
    );
    let reply = h.send_raw(b"Blah blah blah...\r\n..etc. etc. etc.\r\n.\r\n");
    assert_eq!(reply, "250 2.0.0 Ok: queued as ID1\r\n");
    let (envelope, content) = &h.delivered[0];
    assert_eq!(content, b"Blah blah blah...\n.etc. etc. etc.\n");
    assert_eq!(
        envelope.from.as_ref().map(ToString::to_string).as_deref(),
        Some("Smith@bar.com")
    );
    assert_eq!(envelope.recipients.len(), 1);
    assert_eq!(envelope.recipients[0].route, "local alice");
    transcript(&mut h, "C: QUIT\n S: 221 2.0.0 Bye");
    assert!(h.closed && h.session.quit_received());
}

#[test]
fn commands_out_of_sequence() {
    let mut h = Harness::new(mx_offer());
    transcript(
        &mut h,
        "C: MAIL FROM:<a@b>
         S: 503 5.5.1 Send EHLO or HELO first
         C: EHLO c
         S: 250-mx.local.test Hello
         S: 250-PIPELINING
         S: 250-SIZE 1000
         S: 250-8BITMIME
         S: 250-SMTPUTF8
         S: 250-ENHANCEDSTATUSCODES
         S: 250-CHUNKING
         S: 250-STARTTLS
         S: 250-AUTH PLAIN LOGIN CRAM-MD5
         S: 250 HELP
         C: RCPT TO:<alice@local.test>
         S: 503 5.5.1 Send MAIL first
         C: DATA
         S: 503 5.5.1 Send MAIL first
         C: MAIL FROM:<a@b>
         S: 250 2.1.0 Sender OK
         C: MAIL FROM:<a@b>
         S: 503 5.5.1 Sender already given
         C: DATA
         S: 554 5.5.1 No valid recipients
         C: RSET
         S: 250 2.0.0 OK
         C: RCPT TO:<alice@local.test>
         S: 503 5.5.1 Send MAIL first
         C: VRFY alice
         S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
         C: EXPN list
         S: 502 5.5.1 EXPN is not available
         C: NOOP
         S: 250 2.0.0 OK
         C: FOO
         S: 500 5.5.1 Command unrecognized
         C: MAIL FROM:<a@b> BODY=BINARYMIME
         S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
         C: MAIL FROM:<a@b> XFOO=1
         S: 555 5.5.4 Unsupported parameter XFOO=1
         C: MAIL FROM:<a@b
         S: 501 5.1.7 Bad sender address syntax
         C: MAIL FROM:<a@b>
         S: 250 2.1.0 Sender OK
         C: RCPT TO:<alice@local.test
         S: 501 5.1.3 Bad address syntax",
    );
}

#[test]
fn null_sender_postmaster_and_limits() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    transcript(
        &mut h,
        "C: MAIL FROM:<> SIZE=1001
         S: 552 5.3.4 Message size exceeds fixed maximum message size
         C: MAIL FROM:<>
         S: 250 2.1.0 Sender OK
         C: RCPT TO:<>
         S: 501 5.1.3 Bad address syntax
         C: RCPT TO:<Postmaster>
         S: 250 2.1.5 Recipient OK
         C: RCPT TO:<jörg@local.test>
         S: 553 5.6.7 Non-ASCII address requires SMTPUTF8
         C: RCPT TO:<alice@local.test>
         S: 250 2.1.5 Recipient OK
         C: RCPT TO:<alice@local.test>
         S: 250 2.1.5 Recipient OK
         C: RCPT TO:<alice@local.test>
         S: 452 4.5.3 Too many recipients",
    );
}

#[test]
fn pipelined_transaction_in_one_write() {
    let mut h = Harness::new(mx_offer());
    let out = h.send_raw(
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@local.test>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n",
    );
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("250-")).collect();
    assert_eq!(
        lines,
        [
            "250 HELP",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "554 5.7.1 Relay access denied",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as ID1",
            "221 2.0.0 Bye"
        ]
    );
    assert_eq!(h.delivered[0].1, b"hello\n");
}

#[test]
fn output_is_the_same_whatever_the_chunking() {
    let script: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\n..x\r\ny\r\n.\r\n\
        MAIL FROM:<a@b>\r\nRCPT TO:<alice@local.test>\r\nBDAT 5\r\nab\r\ncBDAT 3 LAST\r\nd\r\nNOOP\r\nQUIT\r\n";
    let mut reference = Harness::new(mx_offer());
    reference.send_raw(script);
    assert!(reference.closed);
    assert_eq!(reference.delivered.len(), 2);
    assert_eq!(reference.delivered[1].1, b"ab\ncd\n");
    for chunk in 1..=40 {
        let mut h = Harness::new(mx_offer());
        for part in script.chunks(chunk) {
            h.send_raw(part);
        }
        assert_eq!(h.received, reference.received, "chunk {chunk}");
        assert_eq!(h.delivered, reference.delivered);
    }
}

/// Sends a message with a smuggling vector inside it, followed by a second
/// transaction; returns the replies.
fn smuggle(h: &mut Harness, vector: &[u8]) -> String {
    h.greet();
    h.send("MAIL FROM:<a@b>");
    h.send("RCPT TO:<alice@local.test>");
    h.send("DATA");
    let mut body = b"Subject: legit\r\n\r\nhi".to_vec();
    body.extend_from_slice(vector);
    body.extend_from_slice(
        b"MAIL FROM:<spoof@x>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\nspoofed\r\n.\r\n",
    );
    h.send_raw(&body)
}

/// SI-01: only CRLF.CRLF ends DATA. Where bare line ends are refused, the
/// message is refused and what was smuggled inside is never run as commands.
fn assert_smuggling_refused(vector: &[u8], config: SessionConfig) {
    let mut h = Harness::with(config, mx_offer());
    let out = smuggle(&mut h, vector);
    assert_eq!(
        out, "550 5.5.2 Message contains bare CR or LF; lines must end with CRLF\r\n",
        "{vector:?}"
    );
    assert!(h.delivered.is_empty(), "{vector:?}");
    assert_eq!(h.discarded, 1);
    // The session is in sync: the next transaction works.
    assert_eq!(h.send("RSET"), "250 2.0.0 OK\r\n");
}

/// SI-01 with bare LF normalised (the default): one message, which holds
/// the smuggled commands as text; none of them is run.
fn assert_smuggling_contained(vector: &[u8]) {
    let mut h = Harness::new(mx_offer());
    let out = smuggle(&mut h, vector);
    assert_eq!(out, "250 2.0.0 Ok: queued as ID1\r\n", "{vector:?}");
    assert_eq!(h.delivered.len(), 1);
    let stored = &h.delivered[0].1;
    assert_eq!(
        stored,
        b"Subject: legit\n\nhi\n.\nMAIL FROM:<spoof@x>\nRCPT TO:<alice@local.test>\nDATA\nspoofed\n",
        "{vector:?}"
    );
    assert_eq!(h.send("RSET"), "250 2.0.0 OK\r\n");
}

fn strict() -> SessionConfig {
    SessionConfig {
        line_ends: LineEnds::STRICT,
        ..config()
    }
}

#[test]
fn si01_smuggling_lf_dot_crlf() {
    assert_smuggling_refused(b"\n.\r\n", strict());
    assert_smuggling_contained(b"\n.\r\n");
}

#[test]
fn si01_smuggling_cr_dot_crlf() {
    assert_smuggling_refused(b"\r.\r\n", strict());
    assert_smuggling_refused(b"\r.\r\n", config());
}

#[test]
fn si01_smuggling_lf_dot_lf() {
    assert_smuggling_refused(b"\n.\n", strict());
    assert_smuggling_contained(b"\n.\n");
}

#[test]
fn si01_smuggling_crlf_dot_lf() {
    assert_smuggling_refused(b"\r\n.\n", strict());
    assert_smuggling_contained(b"\r\n.\n");
}

#[test]
fn si01_smuggling_crlf_dot_cr() {
    assert_smuggling_refused(b"\r\n.\r", strict());
    assert_smuggling_refused(b"\r\n.\r", config());
}

/// Issue 11: mail with LF line ends (scripts, appliances) is taken, as
/// Postfix takes it by default, once it ends with CRLF.CRLF.
#[test]
fn lf_line_ends_are_taken_as_line_ends() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    h.send("MAIL FROM:<a@b>");
    h.send("RCPT TO:<alice@local.test>");
    h.send("DATA");
    let out = h.send_raw(b"Subject: lf\n\nline 1\n..dot\nline 3\r\n.\r\n");
    assert_eq!(out, "250 2.0.0 Ok: queued as ID1\r\n");
    assert_eq!(h.delivered[0].1, b"Subject: lf\n\nline 1\n.dot\nline 3\n");
}

#[test]
fn oversize_data_is_refused_after_the_end() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    h.send("MAIL FROM:<a@b>");
    h.send("RCPT TO:<alice@local.test>");
    h.send("DATA");
    let mut body = vec![b'x'; 2000];
    body.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    assert_eq!(
        h.send_raw(&body),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n"
    );
    assert!(h.delivered.is_empty());
}

#[test]
fn bdat_errors_still_consume_the_chunk() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    // No transaction: the 6 octets are read and discarded, then the reply.
    assert_eq!(
        h.send_raw(b"BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        "503 5.5.1 Send MAIL first\r\n250 2.0.0 OK\r\n"
    );
    h.send("MAIL FROM:<a@b>");
    h.send("RCPT TO:<alice@local.test>");
    assert_eq!(
        h.send_raw(b"BDAT 3\r\nabc"),
        "250 2.0.0 3 octets received\r\n"
    );
    assert_eq!(h.send("DATA"), "503 5.5.1 DATA not allowed after BDAT\r\n");
    assert_eq!(h.send_raw(b"BDAT 2000 LAST\r\n"), "");
    let out = h.send_raw(&[b'y'; 2000]);
    assert_eq!(
        out,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert!(h.delivered.is_empty());
    assert_eq!(h.send("NOOP"), "250 2.0.0 OK\r\n");
}

#[test]
fn auth_plain_and_failures() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    transcript(
        &mut h,
        "C: AUTH PLAIN AGFsaWNlAHdyb25n
         S: 535 5.7.8 Authentication credentials invalid
         C: AUTH PLAIN
         S: 334 
         C: *
         S: 501 5.7.0 Authentication cancelled
         C: AUTH CRAM-MD5 AAAA
         S: 501 5.5.4 This mechanism takes no initial response
         C: AUTH GSSAPI
         S: 504 5.5.4 Unrecognized authentication type
         C: AUTH PLAIN !!!
         S: 501 5.5.2 Invalid base64 data
         C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
         S: 235 2.7.0 Authentication successful
         C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
         S: 503 5.5.1 Already authenticated
         C: MAIL FROM:<alice@local.test>
         S: 250 2.1.0 Sender OK
         C: RCPT TO:<someone@remote.test>
         S: 250 2.1.5 Recipient OK",
    );
    assert_eq!(h.session.authenticated(), Some("alice"));
}

#[test]
fn submission_needs_auth_before_mail() {
    let mut h = Harness::new(Offer {
        submission: true,
        ..mx_offer()
    });
    h.greet();
    assert_eq!(
        h.send("MAIL FROM:<a@b>"),
        "530 5.7.0 Authentication required\r\n"
    );
    assert_eq!(
        h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(h.send("MAIL FROM:<a@b>"), "250 2.1.0 Sender OK\r\n");
}

/// TL-01, TL-02 (RFC 3207 §4.2): pipelined plaintext after STARTTLS is
/// discarded; the client must greet again; no second STARTTLS.
#[test]
fn starttls_forgets_everything() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==");
    let out = h.send_raw(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n");
    assert_eq!(out, "220 2.0.0 Ready to start TLS\r\n");
    assert!(h.tls_started);
    assert_eq!(h.session.authenticated(), None);
    assert_eq!(
        h.send("MAIL FROM:<a@b>"),
        "503 5.5.1 Send EHLO or HELO first\r\n"
    );
    let ehlo = h.send("EHLO c");
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(h.send("STARTTLS"), "503 5.5.1 TLS already active\r\n");
}

#[test]
fn too_many_errors_close_the_session() {
    let mut h = Harness::with(
        SessionConfig {
            max_errors: 3,
            ..config()
        },
        mx_offer(),
    );
    h.send("FOO");
    h.send("BAR");
    assert_eq!(
        h.send("BAZ"),
        "500 5.5.1 Command unrecognized\r\n421 4.7.0 Too many errors; closing connection\r\n"
    );
    assert!(h.closed);
}

#[test]
fn long_lines_and_bad_bytes() {
    let mut h = Harness::new(mx_offer());
    let long = format!("NOOP {}", "x".repeat(10_000));
    assert_eq!(h.send(&long), "500 5.5.2 Line too long\r\n");
    assert_eq!(
        h.send_raw(b"NOOP\0\r\n"),
        "500 5.5.2 Invalid characters in command\r\n"
    );
    assert_eq!(h.send("NOOP"), "250 2.0.0 OK\r\n");
}

#[test]
fn large_messages_are_handed_over_in_pieces() {
    let mut h = Harness::with(
        SessionConfig {
            max_message_size: 10 << 20,
            ..config()
        },
        mx_offer(),
    );
    h.greet();
    h.send("MAIL FROM:<a@b>");
    h.send("RCPT TO:<alice@local.test>");
    h.send("DATA");
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    let mut body = Vec::new();
    while body.len() < 3 << 20 {
        body.extend_from_slice(line);
    }
    h.session.receive(&body);
    let mut pieces = 0;
    loop {
        match h.session.poll() {
            Poll::Action(Action::MessageData) => {
                let piece = h.session.take_data();
                assert!(piece.len() < DATA_CHUNK * 2);
                h.stored.extend_from_slice(&piece);
                pieces += 1;
            }
            Poll::NeedInput => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pieces >= 5, "{pieces} pieces");
    assert_eq!(h.send_raw(b".\r\n"), "250 2.0.0 Ok: queued as ID1\r\n");
    assert_eq!(h.delivered[0].1.len(), (3 << 20) / 72 * 71 + 71);
}

/// Failed AUTH attempts use up the session's error allowance, so one
/// connection cannot guess passwords for ever.
#[test]
fn auth_failures_count_towards_the_error_limit() {
    let mut h = Harness::with(
        SessionConfig {
            max_errors: 3,
            ..config()
        },
        mx_offer(),
    );
    h.greet();
    let wrong = "AUTH PLAIN AGFsaWNlAHdyb25n";
    assert_eq!(
        h.send(wrong),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert_eq!(
        h.send(wrong),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert_eq!(
        h.send(wrong),
        "535 5.7.8 Authentication credentials invalid\r\n421 4.7.0 Too many errors; closing connection\r\n"
    );
    assert!(h.closed);
}

/// Content of a BDAT transaction that ends without its LAST chunk (RSET,
/// EHLO, STARTTLS) is dropped by the driver, never glued to the next message.
#[test]
fn content_of_an_abandoned_bdat_transaction_is_discarded() {
    for abandon in ["RSET", "EHLO again.example", "STARTTLS"] {
        let mut h = Harness::with(
            SessionConfig {
                max_message_size: 10 * 1024 * 1024,
                ..config()
            },
            mx_offer(),
        );
        h.greet();
        h.send("MAIL FROM:<a@b>");
        h.send("RCPT TO:<alice@local.test>");
        let chunk = vec![b'x'; 300 * 1024];
        let mut command = format!("BDAT {}\r\n", chunk.len()).into_bytes();
        command.extend_from_slice(&chunk);
        assert_eq!(h.send_raw(&command), "250 2.0.0 307200 octets received\r\n");
        assert!(!h.stored.is_empty(), "the driver was handed content");
        h.send(abandon);
        assert!(h.stored.is_empty(), "{abandon}: content kept");
        if abandon == "STARTTLS" {
            h.greet();
        } else if abandon == "RSET" {
            h.send("EHLO client.example");
        }
        h.send("MAIL FROM:<a@b>");
        h.send("RCPT TO:<alice@local.test>");
        h.send("DATA");
        assert!(
            h.send("Subject: clean\r\n\r\nbody\r\n.")
                .starts_with("250 ")
        );
        let (_, content) = h.delivered.last().unwrap();
        assert_eq!(content, b"Subject: clean\n\nbody\n", "{abandon}");
    }
}

/// RFC 4954 §6: when the server cannot check credentials it answers 454,
/// the session stays usable, and the client is not charged an error.
#[test]
fn an_internal_auth_failure_is_temporary_and_not_the_clients_fault() {
    let mut h = Harness::with(
        SessionConfig {
            max_errors: 1,
            ..config()
        },
        mx_offer(),
    );
    h.greet();
    // "\0alice\0backend-down"
    let unverifiable = "AUTH PLAIN AGFsaWNlAGJhY2tlbmQtZG93bg==";
    for _ in 0..3 {
        assert_eq!(
            h.send(unverifiable),
            "454 4.7.0 Temporary authentication failure\r\n"
        );
    }
    assert!(!h.closed);
    assert_eq!(
        h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
        "235 2.7.0 Authentication successful\r\n"
    );
}

/// SD-06: with the disk nearly full a transaction is refused at MAIL,
/// before any content is sent, and accepted again once there is room.
#[test]
fn sd06_low_storage_refuses_mail_before_the_content() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    h.session.set_storage_low(true);
    assert_eq!(
        h.send("MAIL FROM:<a@remote.example>"),
        "452 4.3.1 Insufficient system storage\r\n"
    );
    assert_eq!(
        h.send("RCPT TO:<alice@local.test>"),
        "503 5.5.1 Send MAIL first\r\n"
    );
    h.session.set_storage_low(false);
    assert_eq!(
        h.send("MAIL FROM:<a@remote.example>"),
        "250 2.1.0 Sender OK\r\n"
    );
}

/// SI-02: a bare CR inside a command line does not split it into two
/// commands; the whole line is one (bad) command.
#[test]
fn si02_bare_cr_in_a_command_does_not_split_it() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    let reply = h.send_raw(b"MAIL FROM:<a@remote.example>\rRCPT TO:<alice@local.test>\r\n");
    assert_eq!(reply, "500 5.5.2 Invalid characters in command\r\n");
    assert_eq!(
        h.send("RCPT TO:<alice@local.test>"),
        "503 5.5.1 Send MAIL first\r\n"
    );
}

/// SI-04: content pipelined behind a DATA that is refused is never run as
/// commands: the session ends with a synchronization error.
#[test]
fn si04_content_sent_after_a_refused_data_is_not_executed() {
    let mut h = Harness::new(mx_offer());
    h.greet();
    let reply = h.send_raw(
        b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<nobody@local.test>\r\nDATA\r\n\
          MAIL FROM:<spoof@remote.example>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(
        reply,
        "250 2.1.0 Sender OK\r\n550 5.1.1 User unknown\r\n554 5.5.1 No valid recipients\r\n\
         421 4.5.0 Protocol synchronization error; closing connection\r\n"
    );
    assert!(h.closed);
    assert!(h.delivered.is_empty());
    // A DATA refused with nothing behind it is an ordinary error.
    let mut h = Harness::new(mx_offer());
    h.greet();
    assert_eq!(h.send("DATA"), "503 5.5.1 Send MAIL first\r\n");
    assert_eq!(h.send("NOOP"), "250 2.0.0 OK\r\n");
}

/// SI-08: an overlong command line is refused with 500 5.5.2 and the rest
/// of it is skipped, not read as further commands; the session goes on.
#[test]
fn si08_an_overlong_command_is_refused_and_the_session_continues() {
    let mut h = Harness::with(
        SessionConfig {
            max_line_len: 512,
            ..config()
        },
        mx_offer(),
    );
    h.greet();
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 100_000));
    line.extend_from_slice(b"RSET\r\n");
    assert_eq!(h.send_raw(&line), "500 5.5.2 Line too long\r\n");
    assert_eq!(h.send("NOOP"), "250 2.0.0 OK\r\n");
}

/// SI-12: a message that has been around too many relays (more
/// `Received:` fields than `max_hops`) is refused as a loop, over DATA and
/// over BDAT; one under the limit is accepted.
#[test]
fn si12_too_many_received_fields_is_a_loop() {
    let hops = |n: usize| "Received: from x by y; date\r\n".repeat(n);
    let config = || SessionConfig {
        max_hops: 5,
        ..config()
    };
    let mut h = Harness::with(config(), mx_offer());
    h.greet();
    h.send("MAIL FROM:<a@remote.example>");
    h.send("RCPT TO:<alice@local.test>");
    h.send("DATA");
    assert_eq!(
        h.send(&format!("{}Subject: loop\r\n\r\nbody\r\n.", hops(6))),
        "554 5.4.6 Too many hops; mail forwarding loop detected\r\n"
    );
    h.send("MAIL FROM:<a@remote.example>");
    h.send("RCPT TO:<alice@local.test>");
    h.send("DATA");
    assert!(
        h.send(&format!("{}Subject: ok\r\n\r\n{}.", hops(5), hops(9)))
            .starts_with("250 ")
    );
    assert_eq!(h.delivered.len(), 1);

    let mut h = Harness::with(config(), mx_offer());
    h.greet();
    h.send("MAIL FROM:<a@remote.example>");
    h.send("RCPT TO:<alice@local.test>");
    let content = format!("{}\r\nbody\r\n", hops(6));
    let mut command = format!("BDAT {} LAST\r\n", content.len()).into_bytes();
    command.extend_from_slice(content.as_bytes());
    assert_eq!(
        h.send_raw(&command),
        "554 5.4.6 Too many hops; mail forwarding loop detected\r\n"
    );
    assert!(h.delivered.is_empty());
    assert_eq!(
        h.send("MAIL FROM:<a@remote.example>"),
        "250 2.1.0 Sender OK\r\n"
    );
}

/// Commands that move no mail reset the command timeout, so they are
/// limited: past `max_junk_commands` each counts as an error, and the
/// error limit ends the session.
#[test]
fn endless_noops_end_the_session() {
    let mut h = Harness::with(
        SessionConfig {
            max_junk_commands: 5,
            max_errors: 3,
            ..config()
        },
        mx_offer(),
    );
    h.greet();
    for _ in 0..7 {
        assert_eq!(h.send("NOOP"), "250 2.0.0 OK\r\n");
    }
    assert_eq!(
        h.send("RSET"),
        "250 2.0.0 OK\r\n421 4.7.0 Too many errors; closing connection\r\n"
    );
    assert!(h.closed);
}

/// Issue 11: a sender that leaves out the angle brackets gets its mail
/// through by default, as with Postfix; `strict_paths` refuses it.
#[test]
fn paths_without_brackets_unless_strict() {
    let mut h = Harness::new(mx_offer());
    transcript(
        &mut h,
        "C: HELO appliance
         S: 250 mx.local.test Hello
         C: MAIL FROM:alarm@device.example
         S: 250 2.1.0 Sender OK
         C: RCPT TO:alice@local.test
         S: 250 2.1.5 Recipient OK",
    );
    let strict = SessionConfig {
        syntax: command::Syntax { strict_paths: true },
        ..config()
    };
    let mut h = Harness::with(strict, mx_offer());
    transcript(
        &mut h,
        "C: HELO appliance
         S: 250 mx.local.test Hello
         C: MAIL FROM:alarm@device.example
         S: 501 5.1.7 Bad sender address syntax",
    );
}

/// Issue 12, finding 6: a BDAT line that does not parse (a stray argument,
/// a bad size, 8-bit octets, or more than the line limit) has no size to
/// trust, so the chunk behind it is never read as commands: the session
/// ends with 421 after the reply, and the smuggled RCPT never runs.
#[test]
fn issue12_an_unparsable_bdat_line_ends_the_session() {
    let mut long = b"BDAT 93 LAST ".to_vec();
    long.resize(5000, b'x');
    for bad in [
        &b"BDAT 93 LAST x"[..],
        b"BDAT 9x3 LAST",
        b"BDAT 93 LAST \xff",
        b"bdat",
        &long,
    ] {
        let mut h = Harness::new(mx_offer());
        h.greet();
        h.send("MAIL FROM:<a@b>");
        h.send("RCPT TO:<alice@local.test>");
        let mut input = bad.to_vec();
        input.extend_from_slice(b"\r\nRCPT TO:<bob@remote.example>\r\nBDAT 2 LAST\r\nhi");
        let out = h.send_raw(&input);
        assert!(
            out.ends_with("421 4.5.0 Protocol synchronization error; closing connection\r\n"),
            "{}: {out}",
            String::from_utf8_lossy(&bad[..bad.len().min(20)])
        );
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(h.delivered.is_empty());
    }
}
