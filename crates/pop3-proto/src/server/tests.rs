//! Transcript tests of the session, written from the RFC text.
//!
//! A small in-memory driver plays the server's outside world: a user table,
//! a maildrop of stored messages, and the encoder for RETR/TOP.

use super::*;
use crate::stuffing::{Encoder, WireSize};

/// The login penalty the driver would choose.
const FAILURE_DELAY: Duration = Duration::from_secs(2);

const TIMESTAMP: &str = "<1896.697170952@dbc.mtview.ca.us>";

struct Harness {
    session: Session,
    /// Stored bytes of each message (LF line ends, as in Maildir).
    messages: Vec<Vec<u8>>,
    /// What the client has received so far.
    received: Vec<u8>,
    closed: bool,
    committed: Option<(Vec<usize>, Vec<usize>)>,
    tls_started: bool,
    maildrop_in_use: bool,
    /// Remove messages on disk during the session (another program).
    gone: Vec<usize>,
    sasl: Option<String>,
}

fn config() -> SessionConfig {
    SessionConfig {
        sasl_mechanisms: vec!["PLAIN".into(), "LOGIN".into(), "CRAM-MD5".into()],
        implementation: Some("yubin-test".into()),
        ..SessionConfig::default()
    }
}

fn plain_offer() -> Offer {
    Offer {
        tls_active: false,
        stls_available: true,
        plaintext_auth: true,
        apop_timestamp: Some(TIMESTAMP.into()),
    }
}

/// RFC 1939's example maildrop: two messages of 120 and 200 octets on the wire.
fn rfc_messages() -> Vec<Vec<u8>> {
    // "Subject: …" LF LF is 16 octets on the wire; the body line adds its length + 2.
    let mut one = b"Subject: one\n\n".to_vec();
    one.extend_from_slice(&[b'x'; 102]);
    one.push(b'\n');
    let mut two = b"Subject: two\n\n".to_vec();
    two.extend_from_slice(&[b'y'; 182]);
    two.push(b'\n');
    assert_eq!((WireSize::of(&one), WireSize::of(&two)), (120, 200));
    vec![one, two]
}

impl Harness {
    fn new(offer: Offer, messages: Vec<Vec<u8>>) -> Self {
        Self::with_config(config(), offer, messages)
    }

    fn with_config(config: SessionConfig, offer: Offer, messages: Vec<Vec<u8>>) -> Self {
        let mut h = Harness {
            session: Session::new(Arc::new(config), offer),
            messages,
            received: Vec::new(),
            closed: false,
            committed: None,
            tls_started: false,
            maildrop_in_use: false,
            gone: Vec::new(),
            sasl: None,
        };
        h.drive();
        h
    }

    /// Sends raw bytes and runs the session until it waits for input.
    fn send_raw(&mut self, bytes: &[u8]) -> String {
        let before = self.received.len();
        self.session.receive(bytes);
        self.drive();
        String::from_utf8_lossy(&self.received[before..]).into_owned()
    }

    fn send(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes())
    }

    fn flush(&mut self) {
        self.received.extend_from_slice(self.session.output());
        self.session.clear_output();
    }

    fn drive(&mut self) {
        loop {
            let poll = self.session.poll();
            self.flush();
            match poll {
                Poll::NeedInput => return,
                Poll::Close => {
                    self.closed = true;
                    return;
                }
                Poll::Flush => {}
                Poll::Pending => panic!("driver polled with an action outstanding"),
                Poll::Action(action) => self.perform(action),
            }
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::CheckPassword { user, password } => {
                if user == "mrose" && password == b"tanstaaf" {
                    self.session
                        .credentials_accepted(yubin_auth::Authenticated::for_tests(&user));
                } else {
                    self.session.credentials_rejected(FAILURE_DELAY);
                }
            }
            Action::CheckApop { user, digest } => {
                // MD5("<1896.697170952@dbc.mtview.ca.us>tanstaaf"), RFC 1939 §7.
                if user == "mrose" && digest == "c4c9334bac560ecc979e58001b3e22fb" {
                    self.session
                        .credentials_accepted(yubin_auth::Authenticated::for_tests(&user));
                } else {
                    self.session.credentials_rejected(FAILURE_DELAY);
                }
            }
            Action::SaslStart {
                mechanism,
                initial_response,
            } => {
                self.sasl = Some(mechanism);
                match initial_response {
                    Some(response) => self.sasl_step(response),
                    None => self.session.sasl_challenge(b""),
                }
            }
            Action::SaslStep { response } => self.sasl_step(response),
            Action::OpenMaildrop { user } => {
                assert_eq!(user, "mrose");
                if self.maildrop_in_use {
                    self.session.maildrop_refused(Refusal::InUse);
                } else {
                    let list = self
                        .messages
                        .iter()
                        .enumerate()
                        .map(|(i, m)| (WireSize::of(m), format!("uid-{i}")))
                        .collect();
                    self.session.maildrop_opened(list);
                }
            }
            Action::StartTls => {
                self.tls_started = true;
                self.session.tls_established(Offer {
                    tls_active: true,
                    stls_available: false,
                    plaintext_auth: true,
                    apop_timestamp: None,
                });
            }
            Action::SendMessage { index, top, utf8 } => {
                if self.gone.contains(&index) {
                    self.session.message_failed(MessageError::Gone);
                    return;
                }
                let stored = self.messages[index].clone();
                if !utf8
                    && crate::header::check_header(&stored, true)
                        == crate::header::HeaderCheck::Utf8
                {
                    self.session.message_failed(MessageError::NeedsUtf8);
                    return;
                }
                self.session.message_opened();
                self.flush();
                let encoder = match top {
                    Some(n) => Encoder::top(n),
                    None => Encoder::whole(),
                };
                encoder.encode_all(&stored, &mut self.received);
                self.session.message_sent();
            }
            Action::Commit { delete, retrieved } => {
                self.committed = Some((delete.clone(), retrieved));
                self.session.update_finished(0);
            }
            Action::Delay(d) => {
                assert_eq!(d, Duration::from_secs(2));
                self.session.delay_elapsed();
            }
        }
    }

    fn sasl_step(&mut self, response: Vec<u8>) {
        assert_eq!(self.sasl.as_deref(), Some("PLAIN"));
        if response == b"\0mrose\0tanstaaf" {
            self.session
                .credentials_accepted(yubin_auth::Authenticated::for_tests("mrose"));
        } else {
            self.session.credentials_rejected(FAILURE_DELAY);
        }
    }

    fn login(&mut self) {
        assert_eq!(self.send("USER mrose"), "+OK\r\n");
        assert!(self.send("PASS tanstaaf").starts_with("+OK Logged in"));
    }
}

/// Runs a transcript of `C:` and `S:` lines; `S:` lines are matched exactly,
/// or by prefix when they end in `…`.
fn transcript(h: &mut Harness, script: &str) {
    let mut expected: Vec<String> = Vec::new();
    let mut got = String::new();
    let check = |got: &str, expected: &mut Vec<String>| {
        let got_lines: Vec<&str> = got.split_inclusive("\r\n").collect();
        assert_eq!(
            got_lines.len(),
            expected.len(),
            "got {got:?}, expected {expected:?}"
        );
        for (g, e) in got_lines.iter().zip(expected.iter()) {
            let g = g.trim_end_matches("\r\n");
            match e.strip_suffix('…') {
                Some(prefix) => assert!(
                    g.starts_with(prefix),
                    "{g:?} does not start with {prefix:?}"
                ),
                None => assert_eq!(g, e),
            }
        }
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
        } else if line == "S:" {
            expected.push(String::new());
        } else {
            panic!("bad transcript line {line:?}");
        }
    }
    check(&got, &mut expected);
}

#[test]
fn greeting_carries_the_apop_timestamp_only_when_apop_is_offered() {
    let h = Harness::new(plain_offer(), vec![]);
    assert_eq!(
        h.received,
        format!("+OK yubin ready. {TIMESTAMP}\r\n").as_bytes()
    );
    let offer = Offer {
        apop_timestamp: None,
        ..plain_offer()
    };
    let h = Harness::new(offer, vec![]);
    assert_eq!(h.received, b"+OK yubin ready.\r\n");
}

/// RFC 1939 §10, the example session, with APOP.
#[test]
fn rfc1939_example_session() {
    let messages = rfc_messages();
    let mut h = Harness::new(plain_offer(), messages.clone());
    transcript(
        &mut h,
        "C: APOP mrose c4c9334bac560ecc979e58001b3e22fb
         S: +OK Logged in, 2 messages (320 octets).
         C: STAT
         S: +OK 2 320
         C: LIST
         S: +OK 2 messages (320 octets)
         S: 1 120
         S: 2 200
         S: .",
    );
    let retr = h.send("RETR 1");
    let mut expected = b"+OK 120 octets\r\n".to_vec();
    Encoder::whole().encode_all(&messages[0], &mut expected);
    assert_eq!(retr.as_bytes(), expected);
    transcript(
        &mut h,
        "C: DELE 1
         S: +OK Message 1 deleted.
         C: DELE 2
         S: +OK Message 2 deleted.
         C: STAT
         S: +OK 0 0
         C: QUIT
         S: +OK Logging out.",
    );
    assert!(h.closed);
    assert_eq!(h.committed, Some((vec![0, 1], vec![])));
}

/// RFC 1939 §5 and §7 examples: LIST n, UIDL, messages marked deleted.
#[test]
fn deleted_messages_vanish_from_every_command_until_rset() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    h.login();
    transcript(
        &mut h,
        "C: DELE 1
         S: +OK Message 1 deleted.
         C: DELE 1
         S: -ERR Message 1 is deleted.
         C: STAT
         S: +OK 1 200
         C: LIST
         S: +OK 1 messages (200 octets)
         S: 2 200
         S: .
         C: LIST 1
         S: -ERR Message 1 is deleted.
         C: LIST 2
         S: +OK 2 200
         C: LIST 3
         S: -ERR There is no message 3; the maildrop has 2 messages.
         C: UIDL
         S: +OK Unique-ID listing follows
         S: 2 uid-1
         S: .
         C: UIDL 1
         S: -ERR Message 1 is deleted.
         C: RETR 1
         S: -ERR Message 1 is deleted.
         C: TOP 1 0
         S: -ERR Message 1 is deleted.
         C: RSET
         S: +OK Maildrop has 2 messages (320 octets).
         C: UIDL 1
         S: +OK 1 uid-0
         C: STAT
         S: +OK 2 320",
    );
    h.send("QUIT");
    assert_eq!(h.committed, Some((vec![], vec![])));
}

#[test]
fn retrieved_messages_are_reported_at_commit_unless_deleted() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    h.login();
    h.send("RETR 1");
    h.send("RETR 2");
    h.send("TOP 1 0");
    h.send("DELE 2");
    h.send("QUIT");
    assert_eq!(h.committed, Some((vec![1], vec![0])));
    let stats = h.session.stats();
    assert_eq!(
        (stats.retrieved, stats.retrieved_bytes, stats.top),
        (2, 320, 1)
    );
    assert_eq!((stats.deleted, stats.deleted_bytes), (1, 200));
}

#[test]
fn top_sends_headers_blank_line_and_n_body_lines() {
    let message = b"From: a\nSubject: b\n\n.dot\nline 2\nline 3\n".to_vec();
    let mut h = Harness::new(plain_offer(), vec![message]);
    h.login();
    assert_eq!(
        h.send("TOP 1 0"),
        "+OK Top of message follows.\r\nFrom: a\r\nSubject: b\r\n\r\n.\r\n"
    );
    assert_eq!(
        h.send("TOP 1 1"),
        "+OK Top of message follows.\r\nFrom: a\r\nSubject: b\r\n\r\n..dot\r\n.\r\n"
    );
    assert_eq!(h.send("TOP 1 999999999"), h.send("TOP 1 3"));
    transcript(
        &mut h,
        "C: TOP 1
         S: -ERR Missing argument.
         C: TOP 1 -1
         S: -ERR Invalid number.
         C: TOP 2 0
         S: -ERR There is no message 2; the maildrop has 1 messages.",
    );
}

#[test]
fn message_numbers_never_name_another_message() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    h.login();
    transcript(
        &mut h,
        "C: RETR 0
         S: -ERR Message numbers start at 1.
         C: RETR -1
         S: -ERR Invalid number.
         C: RETR +1
         S: -ERR Invalid number.
         C: RETR 1x
         S: -ERR Invalid number.
         C: RETR 4294967297
         S: -ERR Number too large.
         C: RETR 4294967295
         S: -ERR There is no message 4294967295; the maildrop has 2 messages.
         C: LIST 0
         S: -ERR Message numbers start at 1.
         C: DELE 3
         S: -ERR There is no message 3; the maildrop has 2 messages.
         C: RETR 1 2
         S: -ERR Too many arguments.
         C: STAT
         S: +OK 2 320",
    );
}

#[test]
fn commands_are_refused_in_the_wrong_state() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    transcript(
        &mut h,
        "C: STAT
         S: -ERR Not logged in; that command is for the TRANSACTION state.
         C: NOOP
         S: -ERR Not logged in; that command is for the TRANSACTION state.",
    );
    let mut h = Harness::new(plain_offer(), rfc_messages());
    transcript(
        &mut h,
        "C: PASS x
         S: -ERR No user name given; send USER first.",
    );
    let mut h = Harness::new(plain_offer(), rfc_messages());
    h.login();
    transcript(
        &mut h,
        "C: USER mrose
         S: -ERR Already logged in; that command is for the AUTHORIZATION state.
         C: PASS x
         S: -ERR Already logged in; that command is for the AUTHORIZATION state.
         C: APOP mrose c4c9334bac560ecc979e58001b3e22fb
         S: -ERR Already logged in; that command is for the AUTHORIZATION state.
         C: AUTH PLAIN
         S: -ERR Already logged in; that command is for the AUTHORIZATION state.
         C: STLS
         S: -ERR Already logged in; that command is for the AUTHORIZATION state.
         C: UTF8
         S: -ERR Already logged in; that command is for the AUTHORIZATION state.
         C: NOOP
         S: +OK",
    );
}

#[test]
fn pass_must_follow_user_immediately() {
    let mut h = Harness::new(plain_offer(), vec![]);
    transcript(
        &mut h,
        "C: USER mrose
         S: +OK
         C: CAPA
         S: +OK Capability list follows
         S: TOP
         S: UIDL
         S: RESP-CODES
         S: AUTH-RESP-CODE
         S: PIPELINING
         S: USER
         S: SASL PLAIN LOGIN CRAM-MD5
         S: STLS
         S: UTF8
         S: IMPLEMENTATION yubin-test
         S: .
         C: PASS tanstaaf
         S: +OK Logged in, 0 messages (0 octets).",
    );
    let mut h = Harness::new(plain_offer(), vec![]);
    transcript(
        &mut h,
        "C: USER mrose
         S: +OK
         C: UTF8
         S: +OK UTF8 enabled.
         C: PASS tanstaaf
         S: -ERR No user name given; send USER first.",
    );
}

#[test]
fn failed_logins_look_the_same_and_are_delayed() {
    let mut h = Harness::new(plain_offer(), vec![]);
    let unknown = {
        h.send("USER nobody");
        h.send("PASS tanstaaf")
    };
    let wrong = {
        h.send("USER mrose");
        h.send("PASS wrong")
    };
    let apop = h.send("APOP mrose 00000000000000000000000000000000");
    assert_eq!(unknown, "-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(wrong, unknown);
    assert_eq!(apop, unknown);
    // Failed logins are not bad commands: the session goes on.
    assert!(!h.closed);
    h.login();
}

#[test]
fn the_delay_comes_before_the_answer() {
    let mut h = Harness::new(plain_offer(), vec![]);
    h.send("USER x");
    h.session.receive(b"PASS y\r\n");
    let action = h.session.poll();
    assert!(matches!(action, Poll::Action(Action::CheckPassword { .. })));
    h.session.credentials_rejected(FAILURE_DELAY);
    assert_eq!(
        h.session.poll(),
        Poll::Action(Action::Delay(Duration::from_secs(2)))
    );
    assert!(
        h.session.output().is_empty(),
        "nothing is said before the delay"
    );
    h.session.delay_elapsed();
    assert_eq!(
        h.session.output(),
        b"-ERR [AUTH] Authentication failed.\r\n"
    );
}

#[test]
fn in_use_maildrop_is_reported_after_the_credentials_are_checked() {
    let mut h = Harness::new(plain_offer(), vec![]);
    h.maildrop_in_use = true;
    h.send("USER mrose");
    assert_eq!(
        h.send("PASS tanstaaf"),
        "-ERR [IN-USE] Maildrop is locked by another session.\r\n"
    );
    assert!(!h.session.is_transaction());
    assert_eq!(h.session.user(), None);
    h.maildrop_in_use = false;
    h.login();
    assert_eq!(h.session.user(), Some("mrose"));
}

#[test]
fn quit_in_authorization_removes_nothing() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    assert_eq!(h.send("QUIT"), "+OK Logging out.\r\n");
    assert!(h.closed);
    assert_eq!(h.committed, None);
}

#[test]
fn bad_commands_close_the_session_after_the_limit() {
    let mut h = Harness::new(plain_offer(), vec![]);
    assert_eq!(h.send("XYZZY"), "-ERR Unknown command.\r\n");
    assert_eq!(
        h.send("RETR 1"),
        "-ERR Not logged in; that command is for the TRANSACTION state.\r\n"
    );
    assert!(!h.closed);
    assert_eq!(
        h.send("BOGUS"),
        "-ERR Unknown command. Too many bad commands; closing connection.\r\n"
    );
    assert!(h.closed);

    let mut h = Harness::new(plain_offer(), vec![]);
    h.login();
    for _ in 0..19 {
        assert_eq!(h.send("FOO"), "-ERR Unknown command.\r\n");
    }
    assert!(!h.closed);
    assert!(h.send("FOO").ends_with("closing connection.\r\n"));
    assert!(h.closed);
    assert_eq!(h.committed, None, "closing for bad commands is not UPDATE");
}

#[test]
fn bad_bytes_and_long_lines_get_one_error_each() {
    let mut h = Harness::new(plain_offer(), vec![]);
    h.login();
    assert_eq!(
        h.send_raw(b"NOOP\0\r\n"),
        "-ERR Invalid characters in command line.\r\n"
    );
    assert_eq!(
        h.send_raw(b"USER \xff\r\n"),
        "-ERR Already logged in; that command is for the AUTHORIZATION state.\r\n"
    );
    assert_eq!(
        h.send_raw(b"LIST \xff\r\n"),
        "-ERR Invalid characters in command line.\r\n"
    );
    let long = vec![b'A'; 100_000];
    assert_eq!(h.send_raw(&long), "-ERR Line too long.\r\n");
    assert_eq!(h.send_raw(&long), "");
    assert_eq!(h.send_raw(b"still the same line\r\nNOOP\r\n"), "+OK\r\n");
    assert_eq!(h.send_raw(b""), "");
    assert!(!h.closed);
}

#[test]
fn bare_lf_ends_a_command_too() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    assert_eq!(
        h.send_raw(b"USER mrose\nPASS tanstaaf\n"),
        "+OK\r\n+OK Logged in, 2 messages (320 octets).\r\n"
    );
    assert_eq!(h.send_raw(b"stat\n"), "+OK 2 320\r\n");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    let out = h.send_raw(b"USER mrose\r\nPASS tanstaaf\r\nSTAT\r\nDELE 1\r\nLIST\r\nQUIT\r\n");
    assert_eq!(
        out,
        "+OK\r\n+OK Logged in, 2 messages (320 octets).\r\n+OK 2 320\r\n+OK Message 1 deleted.\r\n\
         +OK 1 messages (200 octets)\r\n2 200\r\n.\r\n+OK Logging out.\r\n"
    );
    assert_eq!(h.committed, Some((vec![0], vec![])));
}

#[test]
fn output_is_the_same_whatever_the_input_chunking() {
    let script: &[u8] =
        b"CAPA\r\nUSER mrose\nPASS tanstaaf\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 2\r\nTOP 1 1\r\n\
        DELE 1\r\nbogus\r\nRSET\r\nDELE 2\r\nUIDL\r\nQUIT\r\n";
    let mut reference = Harness::new(plain_offer(), rfc_messages());
    reference.send_raw(script);
    assert!(reference.closed);
    for chunk in 1..=64 {
        let mut h = Harness::new(plain_offer(), rfc_messages());
        for part in script.chunks(chunk) {
            h.send_raw(part);
        }
        assert_eq!(h.received, reference.received, "chunk size {chunk}");
        assert_eq!(h.committed, reference.committed);
    }
}

#[test]
fn stls_discards_everything_pipelined_after_it() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    let out = h.send_raw(b"STLS\r\nUSER mrose\r\nPASS tanstaaf\r\n");
    assert_eq!(out, "+OK Begin TLS negotiation.\r\n");
    assert!(h.tls_started);
    assert!(!h.session.is_transaction());
    // After TLS the session starts over in AUTHORIZATION, STLS no longer offered.
    transcript(
        &mut h,
        "C: STLS
         S: -ERR Command not permitted when TLS active.",
    );
    let capa = h.send("CAPA");
    assert!(!capa.contains("STLS"));
    h.login();
}

#[test]
fn stls_forgets_a_user_given_before_it() {
    let mut h = Harness::new(plain_offer(), vec![]);
    h.send("USER mrose");
    h.send("STLS");
    assert_eq!(
        h.send("PASS tanstaaf"),
        "-ERR No user name given; send USER first.\r\n"
    );
}

/// Issue 12 (finding 9): under TLS with plaintext logins off altogether,
/// the refusal does not send the client to STLS.
#[test]
fn plaintext_login_refused_under_tls_names_what_would_work() {
    let offer = Offer {
        tls_active: true,
        stls_available: false,
        plaintext_auth: false,
        ..plain_offer()
    };
    let mut h = Harness::new(offer, vec![]);
    let refused = "-ERR [AUTH] Plaintext authentication is disabled. Use APOP, CRAM-MD5 or SCRAM.";
    transcript(
        &mut h,
        &format!(
            "C: USER mrose
             S: {refused}
             C: AUTH PLAIN
             S: {refused}"
        ),
    );
}

#[test]
fn plaintext_login_is_refused_where_not_allowed() {
    let offer = Offer {
        plaintext_auth: false,
        ..plain_offer()
    };
    let mut h = Harness::new(offer, vec![]);
    let refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections. Use STLS.";
    transcript(
        &mut h,
        &format!(
            "C: USER mrose
             S: {refused}
             C: AUTH PLAIN
             S: {refused}
             C: AUTH login
             S: {refused}
             C: CAPA
             S: +OK Capability list follows
             S: TOP
             S: UIDL
             S: RESP-CODES
             S: AUTH-RESP-CODE
             S: PIPELINING
             S: SASL CRAM-MD5
             S: STLS
             S: UTF8
             S: IMPLEMENTATION yubin-test
             S: .
             C: AUTH
             S: +OK
             S: CRAM-MD5
             S: ."
        ),
    );
    assert!(!h.closed, "refused plaintext logins are not bad commands");
}

#[test]
fn capa_in_transaction_keeps_login_capabilities_but_not_stls() {
    let mut h = Harness::new(plain_offer(), vec![]);
    h.login();
    let capa = h.send("CAPA");
    assert!(capa.contains("\r\nUSER\r\n"));
    assert!(capa.contains("\r\nSASL PLAIN LOGIN CRAM-MD5\r\n"));
    assert!(!capa.contains("STLS"));
    assert!(capa.ends_with("\r\n.\r\n"));
}

#[test]
fn capa_announces_login_delay_and_expire_when_configured() {
    let config = SessionConfig {
        login_delay: Some(900),
        expire: Some(Expire::Never),
        implementation: None,
        ..config()
    };
    let mut h = Harness::with_config(config, plain_offer(), vec![]);
    let capa = h.send("CAPA");
    assert!(capa.contains("\r\nLOGIN-DELAY 900\r\n"));
    assert!(capa.contains("\r\nEXPIRE NEVER\r\n"));
    assert!(!capa.contains("IMPLEMENTATION"));
}

/// RFC 5034 §6 examples.
#[test]
fn sasl_plain_with_and_without_initial_response() {
    let mut h = Harness::new(plain_offer(), vec![]);
    assert_eq!(
        h.send("AUTH PLAIN AG1yb3NlAHRhbnN0YWFm"),
        "+OK Logged in, 0 messages (0 octets).\r\n"
    );
    let mut h = Harness::new(plain_offer(), vec![]);
    assert_eq!(h.send("AUTH PLAIN"), "+ \r\n");
    assert_eq!(
        h.send("AG1yb3NlAHRhbnN0YWFm"),
        "+OK Logged in, 0 messages (0 octets).\r\n"
    );
}

#[test]
fn sasl_exchange_can_be_cancelled_and_rejects_bad_base64() {
    let mut h = Harness::new(plain_offer(), vec![]);
    transcript(
        &mut h,
        "C: AUTH PLAIN
         S: + 
         C: *
         S: -ERR Authentication cancelled.
         C: AUTH PLAIN
         S: + 
         C: !!!not base64
         S: -ERR Invalid base64 in response; authentication aborted.
         C: AUTH PLAIN =
         S: -ERR [AUTH] Authentication failed.",
    );
    let mut h = Harness::new(plain_offer(), vec![]);
    transcript(
        &mut h,
        "C: AUTH CRAM-MD5 AAAA
         S: -ERR This mechanism does not take an initial response.
         C: AUTH X-UNKNOWN
         S: -ERR Unsupported authentication mechanism.",
    );
}

/// RFC 5034 §4: one -ERR per AUTH; an overlong response ends the exchange,
/// and what follows is a command again.
#[test]
fn an_overlong_sasl_response_ends_the_exchange() {
    let mut h = Harness::new(plain_offer(), vec![]);
    assert_eq!(h.send("AUTH PLAIN"), "+ \r\n");
    let long = "A".repeat(9000);
    assert_eq!(
        h.send(&long),
        "-ERR Line too long; authentication aborted.\r\n"
    );
    assert!(
        h.send("CAPA")
            .starts_with("+OK Capability list follows\r\n")
    );
}

#[test]
fn utf8_mode_must_be_enabled_again_after_stls() {
    let message = "Subject: Grüße\n\nbody\n".as_bytes().to_vec();
    let mut h = Harness::new(plain_offer(), vec![message]);
    h.send("UTF8");
    h.send("STLS");
    h.login();
    assert!(h.send("RETR 1").starts_with("-ERR [UTF8]"));
}

#[test]
fn sasl_challenge_lines_are_base64() {
    let mut h = Harness::new(plain_offer(), vec![]);
    h.session.receive(b"AUTH LOGIN\r\n");
    assert!(matches!(
        h.session.poll(),
        Poll::Action(Action::SaslStart { .. })
    ));
    h.session.sasl_challenge(b"Username:");
    assert_eq!(h.session.output(), b"+ VXNlcm5hbWU6\r\n");
}

#[test]
fn utf8_mode_gates_messages_with_8bit_headers() {
    let message = "Subject: Grüße\n\nbody\n".as_bytes().to_vec();
    let body_8bit = b"Subject: plain\n\nbody \xe9\n".to_vec();
    let mut h = Harness::new(plain_offer(), vec![message.clone(), body_8bit]);
    h.login();
    assert_eq!(
        h.send("RETR 1"),
        "-ERR [UTF8] Message 1 has UTF-8 headers; enable UTF8 mode to retrieve it.\r\n"
    );
    assert!(
        h.send("RETR 2").starts_with("+OK "),
        "8-bit bodies need no UTF8 mode"
    );
    let mut h = Harness::new(plain_offer(), vec![message]);
    assert_eq!(h.send("UTF8"), "+OK UTF8 enabled.\r\n");
    assert_eq!(h.send_raw("USER mrose\r\n".as_bytes()), "+OK\r\n");
    h.send("PASS tanstaaf");
    assert!(h.send("RETR 1").contains("Grüße"));
}

#[test]
fn a_message_removed_by_another_program_gives_an_error_not_a_hang() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    h.gone.push(0);
    h.login();
    assert_eq!(
        h.send("RETR 1"),
        "-ERR [SYS/PERM] Message 1 was removed from the maildrop by another program.\r\n"
    );
    assert!(h.send("RETR 2").starts_with("+OK 200 octets"));
}

#[test]
fn update_failure_is_reported_with_sys_temp() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    h.login();
    h.send("DELE 1");
    h.session.receive(b"QUIT\r\n");
    assert!(matches!(
        h.session.poll(),
        Poll::Action(Action::Commit { .. })
    ));
    h.session.update_finished(1);
    assert_eq!(
        h.session.output(),
        b"-ERR [SYS/TEMP] 1 deleted messages not removed.\r\n"
    );
    assert_eq!(h.session.poll(), Poll::Close);
}

#[test]
fn long_listings_are_handed_out_in_bounded_pieces() {
    let messages: Vec<Vec<u8>> = (0..20_000).map(|_| b"x\n".to_vec()).collect();
    let mut h = Harness::new(plain_offer(), messages);
    h.login();
    h.session.receive(b"UIDL\r\n");
    let mut flushes = 0;
    let mut total = Vec::new();
    loop {
        let poll = h.session.poll();
        assert!(h.session.output().len() < FLUSH_AT + 100);
        total.extend_from_slice(h.session.output());
        h.session.clear_output();
        match poll {
            Poll::Flush => flushes += 1,
            Poll::NeedInput => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(flushes >= 3);
    let text = String::from_utf8(total).unwrap();
    assert!(text.starts_with("+OK Unique-ID listing follows\r\n1 uid-0\r\n"));
    assert!(text.ends_with("20000 uid-19999\r\n.\r\n"));
    assert_eq!(text.lines().count(), 20_002);
}

#[test]
fn shutdown_ends_the_session_without_update() {
    let mut h = Harness::new(plain_offer(), rfc_messages());
    h.login();
    h.send("DELE 1");
    h.session.shutdown();
    assert_eq!(
        h.session.output(),
        b"-ERR [SYS/TEMP] Server shutting down.\r\n"
    );
    assert_eq!(h.session.poll(), Poll::Close);
    assert_eq!(h.committed, None);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of input from the POP3 grammar, plus noise, so random input
    /// reaches deep states (logged in, mid-SASL, after DELE) and not only
    /// "unknown command".
    fn token() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"USER mrose\r\n".to_vec()),
            Just(b"PASS tanstaaf\r\n".to_vec()),
            Just(b"PASS wrong\r\n".to_vec()),
            Just(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n".to_vec()),
            Just(b"AUTH PLAIN\r\n".to_vec()),
            Just(b"AG1yb3NlAHRhbnN0YWFm\r\n".to_vec()),
            Just(b"*\r\n".to_vec()),
            Just(b"STAT\r\n".to_vec()),
            Just(b"LIST\r\n".to_vec()),
            Just(b"UIDL 2\r\n".to_vec()),
            Just(b"RETR 1\r\n".to_vec()),
            Just(b"TOP 2 1\r\n".to_vec()),
            Just(b"DELE 1\r\n".to_vec()),
            Just(b"RSET\r\n".to_vec()),
            Just(b"CAPA\r\n".to_vec()),
            Just(b"UTF8\r\n".to_vec()),
            Just(b"STLS\r\n".to_vec()),
            Just(b"NOOP\n".to_vec()),
            Just(b"QUIT\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
            "[A-Za-z0-9 +=*.\\-]{0,30}\r\n".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever arrives, in whatever pieces: no panic, every reply line
        /// ends in CRLF, and nothing is committed without a QUIT.
        #[test]
        fn any_input_gives_well_formed_output(
            tokens in prop::collection::vec(token(), 0..40),
            chunk in 1usize..64,
        ) {
            let input: Vec<u8> = tokens.concat();
            let mut h = Harness::new(plain_offer(), rfc_messages());
            for part in input.chunks(chunk) {
                if h.closed {
                    break;
                }
                h.send_raw(part);
            }
            if !h.received.is_empty() {
                prop_assert!(h.received.ends_with(b"\r\n"), "{:?}", String::from_utf8_lossy(&h.received));
            }
            if h.committed.is_some() {
                prop_assert!(h.session.quit_received());
            }
        }
    }
}
