//! Conversations with scripted servers, written from RFC 5321, 2920, 3207
//! and 4954.

use super::*;

fn config(tls: TlsPolicy) -> ClientConfig {
    ClientConfig {
        helo_name: "mx.yubin.test".into(),
        tls,
        credentials: None,
        timeouts: Timeouts::default(),
        lmtp: false,
        loop_check: true,
    }
}

fn message(recipients: &[&str]) -> Message {
    Message {
        from: "alice@yubin.test".into(),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        size: 1000,
        eight_bit: false,
        smtputf8: false,
    }
}

/// Drives a client against a script: each step is what the server sends,
/// then what the client must have written in answer (in one write).
struct Conversation {
    client: Client,
    /// Polls that were not Write/NeedInput, in order.
    events: Vec<Poll>,
}

impl Conversation {
    fn new(client: Client) -> Conversation {
        Conversation {
            client,
            events: Vec::new(),
        }
    }

    /// The server sends `server`; returns what the client writes before it
    /// needs input again (or stops).
    fn step(&mut self, server: &str) -> String {
        self.client.receive(server.as_bytes());
        self.drain()
    }

    fn drain(&mut self) -> String {
        let mut written = Vec::new();
        loop {
            match self.client.poll() {
                Poll::Write => {
                    written.extend_from_slice(self.client.output());
                    self.client.clear_output();
                }
                Poll::NeedInput => break,
                other => {
                    self.events.push(other);
                    if other == Poll::Done || self.events.len() > 50 {
                        break;
                    }
                    if other == Poll::SendContent {
                        written.extend_from_slice(b"<content>.\r\n");
                        self.client.content_sent();
                    } else if other == Poll::StartTls {
                        written.extend_from_slice(b"<handshake>");
                        self.client.tls_established();
                    }
                }
            }
        }
        String::from_utf8(written).unwrap()
    }

    fn statuses(&self) -> Vec<(Status, u16)> {
        self.client
            .results()
            .iter()
            .map(|r| (r.status, r.response.code))
            .collect()
    }
}

const EHLO_FULL: &str = "250-mx.remote.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";

/// RFC 2920 §3.1: MAIL, the RCPTs and DATA go in one write; per-recipient
/// results are kept; the content goes after 354; 250 at the end delivers
/// the accepted ones only.
#[test]
fn pipelined_delivery_with_one_recipient_refused() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["bob@remote.test", "nobody@remote.test", "carol@remote.test"]),
        false,
    ));
    assert_eq!(
        c.step("220 mx.remote.test ESMTP\r\n"),
        "EHLO mx.yubin.test\r\n"
    );
    assert_eq!(
        c.step(EHLO_FULL),
        "MAIL FROM:<alice@yubin.test> SIZE=1000\r\nRCPT TO:<bob@remote.test>\r\n\
         RCPT TO:<nobody@remote.test>\r\nRCPT TO:<carol@remote.test>\r\nDATA\r\n"
    );
    assert_eq!(
        c.step("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n450 4.2.1 try later\r\n354 go\r\n"),
        "<content>.\r\n"
    );
    assert_eq!(c.step("250 2.0.0 queued as X\r\n"), "QUIT\r\n");
    assert_eq!(c.step("221 bye\r\n"), "");
    assert_eq!(c.events.last(), Some(&Poll::Done));
    assert_eq!(
        c.statuses(),
        [
            (Status::Delivered, 250),
            (Status::Failed, 550),
            (Status::Deferred, 450)
        ]
    );
    assert_eq!(
        c.client.results()[1].response.enhanced_status(),
        Some("5.1.1")
    );
}

/// Without PIPELINING, one command at a time; an old server that refuses
/// EHLO gets HELO (RFC 5321 §3.2) and no extensions are used.
#[test]
fn one_command_at_a_time_and_helo_fallback() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Opportunistic),
        message(&["bob@remote.test", "carol@remote.test"]),
        false,
    ));
    c.step("220 old.remote.test\r\n");
    assert_eq!(c.step("502 what?\r\n"), "HELO mx.yubin.test\r\n");
    assert_eq!(
        c.step("250 old.remote.test\r\n"),
        "MAIL FROM:<alice@yubin.test>\r\n"
    );
    assert_eq!(c.step("250 ok\r\n"), "RCPT TO:<bob@remote.test>\r\n");
    assert_eq!(c.step("250 ok\r\n"), "RCPT TO:<carol@remote.test>\r\n");
    assert_eq!(c.step("250 ok\r\n"), "DATA\r\n");
    assert_eq!(c.step("354 go\r\n"), "<content>.\r\n");
    assert_eq!(c.step("250 ok\r\n"), "QUIT\r\n");
    assert_eq!(
        c.statuses(),
        [(Status::Delivered, 250), (Status::Delivered, 250)]
    );
}

/// STARTTLS when offered; EHLO again after the handshake (RFC 3207 §4.2);
/// a reply the server pushed before the handshake is never read as if it
/// came over TLS.
#[test]
fn opportunistic_starttls_and_injected_replies_are_dropped() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Opportunistic),
        message(&["bob@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    assert_eq!(
        c.step("250-mx.remote.test\r\n250 STARTTLS\r\n"),
        "STARTTLS\r\n"
    );
    // "250 injected" arrives with the 220, before TLS: it must be dropped,
    // or it would answer the EHLO sent under TLS.
    assert_eq!(
        c.step("220 go ahead\r\n250 injected\r\n"),
        "<handshake>EHLO mx.yubin.test\r\n"
    );
    assert!(c.client.tls_active());
    assert_eq!(
        c.step("250-mx.remote.test\r\n250 PIPELINING\r\n"),
        "MAIL FROM:<alice@yubin.test>\r\nRCPT TO:<bob@remote.test>\r\nDATA\r\n"
    );
}

/// Required TLS: no transaction when STARTTLS is missing or refused; the
/// mail is deferred, not bounced, and not sent in clear.
#[test]
fn required_tls_never_falls_back_to_plaintext() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Required),
        message(&["bob@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    assert_eq!(
        c.step("250-mx.remote.test\r\n250 PIPELINING\r\n"),
        "QUIT\r\n"
    );
    assert_eq!(c.statuses(), [(Status::Deferred, 451)]);
    assert!(
        c.client.results()[0]
            .response
            .text()
            .contains("TLS is required")
    );

    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Required),
        message(&["bob@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    c.step("250-mx.remote.test\r\n250 STARTTLS\r\n");
    assert_eq!(c.step("454 4.7.0 TLS not available\r\n"), "QUIT\r\n");
    assert_eq!(c.statuses(), [(Status::Deferred, 451)]);

    // Opportunistic: a refused STARTTLS goes on in plaintext.
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Opportunistic),
        message(&["bob@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    c.step("250-mx.remote.test\r\n250 STARTTLS\r\n");
    assert_eq!(
        c.step("454 4.7.0 TLS not available\r\n"),
        "MAIL FROM:<alice@yubin.test>\r\n"
    );
}

/// A server calling itself by our name is ourselves: the mail would loop.
#[test]
fn a_server_with_our_name_is_a_loop() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["bob@remote.test"]),
        false,
    ));
    c.step("220 MX.YUBIN.TEST ESMTP\r\n");
    assert_eq!(
        c.step("250-MX.yubin.test.\r\n250 PIPELINING\r\n"),
        "QUIT\r\n"
    );
    assert_eq!(c.statuses(), [(Status::Failed, 554)]);
    assert_eq!(
        c.client.results()[0].response.enhanced_status(),
        Some("5.4.6")
    );
}

/// SIZE (RFC 1870) and SMTPUTF8 (RFC 6531) are checked before MAIL; 8-bit
/// content is declared where the server knows 8BITMIME.
#[test]
fn size_smtputf8_and_8bitmime() {
    let big = Message {
        size: 20_000,
        ..message(&["bob@remote.test"])
    };
    let mut c = Conversation::new(Client::new(config(TlsPolicy::Never), big, false));
    c.step("220 mx.remote.test\r\n");
    assert_eq!(c.step(EHLO_FULL), "QUIT\r\n");
    assert_eq!(c.statuses(), [(Status::Failed, 552)]);

    let utf8 = Message {
        smtputf8: true,
        ..message(&["bob@remote.test"])
    };
    let mut c = Conversation::new(Client::new(config(TlsPolicy::Never), utf8.clone(), false));
    c.step("220 mx.remote.test\r\n");
    assert_eq!(c.step(EHLO_FULL), "QUIT\r\n");
    assert_eq!(c.statuses(), [(Status::Failed, 553)]);

    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        Message {
            eight_bit: true,
            ..utf8
        },
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    assert!(
        c.step("250-mx.remote.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            .starts_with("MAIL FROM:<alice@yubin.test> BODY=8BITMIME SMTPUTF8\r\n")
    );
}

/// A refused MAIL decides every recipient; the pipelined RCPT and DATA
/// answers after it change nothing.
#[test]
fn refused_mail_decides_all_recipients() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["bob@remote.test", "carol@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    c.step(EHLO_FULL);
    assert_eq!(
        c.step(
            "451 4.3.0 try later\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n"
        ),
        "QUIT\r\n"
    );
    assert_eq!(
        c.statuses(),
        [(Status::Deferred, 451), (Status::Deferred, 451)]
    );
}

/// The end-of-data reply decides the accepted recipients: 4xx defers them
/// (retry), 5xx fails them (bounce).
#[test]
fn the_final_reply_decides_the_accepted_recipients() {
    for (final_reply, status) in [
        ("451 4.3.0 disk full\r\n", Status::Deferred),
        ("554 5.6.0 content refused\r\n", Status::Failed),
    ] {
        let mut c = Conversation::new(Client::new(
            config(TlsPolicy::Never),
            message(&["bob@remote.test", "nobody@remote.test"]),
            false,
        ));
        c.step("220 mx.remote.test\r\n");
        c.step(EHLO_FULL);
        c.step("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n");
        assert_eq!(c.step(final_reply), "QUIT\r\n");
        assert_eq!(c.statuses()[0].0, status);
        assert_eq!(c.statuses()[1], (Status::Failed, 550));
    }
}

/// No recipient accepted: no DATA content is ever sent (pipelined DATA
/// refused), and a server that wrongly answers 354 gets an empty message.
#[test]
fn no_accepted_recipient_means_no_content() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["nobody@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    c.step(EHLO_FULL);
    assert_eq!(
        c.step("250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n"),
        "QUIT\r\n"
    );
    assert!(!c.events.contains(&Poll::SendContent));
    assert_eq!(c.statuses(), [(Status::Failed, 550)]);

    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["nobody@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    c.step(EHLO_FULL);
    assert_eq!(c.step("250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n"), ".\r\n");
    assert_eq!(c.step("250 ok, empty\r\n"), "QUIT\r\n");
    assert!(!c.events.contains(&Poll::SendContent));
    assert_eq!(c.statuses(), [(Status::Failed, 550)]);
}

/// Connection lost or a timeout: every undecided recipient is deferred;
/// decided ones keep their result.
#[test]
fn lost_connections_and_timeouts_defer() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["bob@remote.test", "nobody@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    c.step(EHLO_FULL);
    c.step("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n");
    assert_eq!(
        c.client.timeout(),
        Duration::from_secs(600),
        "DATA termination"
    );
    c.client.connection_lost("connection closed");
    assert_eq!(
        c.client.poll(),
        Poll::Done,
        "nothing more to write on a broken connection"
    );
    c.client.connection_lost("again");
    assert_eq!(
        c.statuses(),
        [(Status::Deferred, 421), (Status::Failed, 550)]
    );
    assert!(
        c.client.results()[0]
            .response
            .text()
            .contains("may have been delivered")
    );

    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["bob@remote.test"]),
        false,
    ));
    assert_eq!(c.client.timeout(), Duration::from_secs(300), "greeting");
    c.client.timed_out();
    assert_eq!(c.statuses(), [(Status::Deferred, 421)]);
}

/// A greeting that is not 220 (RFC 5321 §3.1: 554 means no service here)
/// defers; garbage from the server defers; neither bounces.
#[test]
fn bad_greetings_and_garbage_defer() {
    for (greeting, answer) in [
        ("554 no service\r\n", "QUIT\r\n"),
        ("421 busy\r\n", "QUIT\r\n"),
        // Not SMTP at all: hang up without a word.
        ("HTTP/1.1 400 Bad\r\n", ""),
    ] {
        let mut c = Conversation::new(Client::new(
            config(TlsPolicy::Never),
            message(&["bob@remote.test"]),
            false,
        ));
        assert_eq!(c.step(greeting), answer, "{greeting}");
        assert_eq!(c.statuses()[0].0, Status::Deferred, "{greeting}");
        assert!(!c.events.contains(&Poll::SendContent));
    }
}

/// AUTH only over TLS: PLAIN with an initial response where offered,
/// LOGIN otherwise; a failure defers (it is our configuration, not the
/// mail, that is wrong).
#[test]
fn auth_over_tls_only() {
    let with_credentials = |tls| ClientConfig {
        credentials: Some(Credentials {
            user: "relay".into(),
            password: "s3cret".into(),
        }),
        ..config(tls)
    };
    let mut c = Conversation::new(Client::new(
        with_credentials(TlsPolicy::Opportunistic),
        message(&["bob@remote.test"]),
        false,
    ));
    c.step("220 smarthost.test\r\n");
    assert_eq!(
        c.step("250-smarthost.test\r\n250 AUTH PLAIN\r\n"),
        "QUIT\r\n"
    );
    assert_eq!(c.statuses(), [(Status::Deferred, 451)]);

    let mut c = Conversation::new(Client::new(
        with_credentials(TlsPolicy::Required),
        message(&["bob@remote.test"]),
        true,
    ));
    c.step("220 smarthost.test\r\n");
    assert_eq!(
        c.step("250-smarthost.test\r\n250 AUTH LOGIN PLAIN\r\n"),
        "AUTH PLAIN AHJlbGF5AHMzY3JldA==\r\n"
    );
    assert_eq!(c.step("235 ok\r\n"), "MAIL FROM:<alice@yubin.test>\r\n");

    let mut c = Conversation::new(Client::new(
        with_credentials(TlsPolicy::Required),
        message(&["bob@remote.test"]),
        true,
    ));
    c.step("220 smarthost.test\r\n");
    assert_eq!(
        c.step("250-smarthost.test\r\n250 AUTH LOGIN\r\n"),
        "AUTH LOGIN cmVsYXk=\r\n"
    );
    assert_eq!(c.step("334 UGFzc3dvcmQ6\r\n"), "czNjcmV0\r\n");
    assert_eq!(c.step("535 5.7.8 no\r\n"), "QUIT\r\n");
    assert_eq!(c.statuses(), [(Status::Deferred, 451)]);
}

/// Addresses that would break the command line are never sent.
#[test]
fn unsafe_addresses_are_not_sent() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["bob@remote.test", "x>\r\nRCPT TO:<evil@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    let sent = c.step(EHLO_FULL);
    assert!(!sent.contains("evil"), "{sent}");
    assert_eq!(c.statuses()[1], (Status::Failed, 553));
}

/// The null sender is `MAIL FROM:<>` (bounces, RFC 5321 §4.5.5).
#[test]
fn the_null_sender() {
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        Message {
            from: String::new(),
            ..message(&["bob@remote.test"])
        },
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    assert!(c.step(EHLO_FULL).starts_with("MAIL FROM:<> SIZE=1000\r\n"));
}

/// Only 354 starts the content and only 2xx after it delivers: a server
/// that answers DATA with 250, or pushes a reply before the content was
/// sent, or answers the content with 3xx, delivers nothing (the mail waits).
#[test]
fn only_354_then_2xx_delivers() {
    for (server, expected) in [
        ("250 ok\r\n250 ok\r\n250 2.0.0 pretend\r\n", "QUIT\r\n"),
        ("250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 too early\r\n", ""),
    ] {
        let mut c = Conversation::new(Client::new(
            config(TlsPolicy::Never),
            message(&["bob@remote.test"]),
            false,
        ));
        c.step("220 mx.remote.test\r\n");
        c.step(EHLO_FULL);
        assert_eq!(c.step(server), expected, "{server:?}");
        assert_eq!(c.statuses()[0].0, Status::Deferred, "{server:?}");
        assert!(!c.events.contains(&Poll::SendContent), "{server:?}");
    }
    let mut c = Conversation::new(Client::new(
        config(TlsPolicy::Never),
        message(&["bob@remote.test"]),
        false,
    ));
    c.step("220 mx.remote.test\r\n");
    c.step(EHLO_FULL);
    c.step("250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(c.step("354 again?\r\n"), "QUIT\r\n");
    assert_eq!(c.statuses()[0].0, Status::Deferred);
}

/// RFC 2033 §4.2: LHLO instead of EHLO, and after the content one reply
/// per accepted recipient, in RCPT order; a refused RCPT gets none.
#[test]
fn lmtp_gives_each_recipient_its_own_final_reply() {
    let lmtp = ClientConfig {
        lmtp: true,
        ..config(TlsPolicy::Never)
    };
    let mut c = Conversation::new(Client::new(
        lmtp,
        message(&[
            "a@local.test",
            "b@local.test",
            "c@local.test",
            "d@local.test",
        ]),
        false,
    ));
    assert_eq!(c.step("220 lmtp ready\r\n"), "LHLO mx.yubin.test\r\n");
    assert_eq!(
        c.step("250-lmtp\r\n250 PIPELINING\r\n"),
        "MAIL FROM:<alice@yubin.test>\r\nRCPT TO:<a@local.test>\r\nRCPT TO:<b@local.test>\r\n\
         RCPT TO:<c@local.test>\r\nRCPT TO:<d@local.test>\r\nDATA\r\n"
    );
    assert_eq!(
        c.step("250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        "<content>.\r\n"
    );
    // Three accepted, three replies: the first two alone do not end it.
    // b was refused at RCPT: a, c and d are accepted.
    assert_eq!(
        c.step("250 2.0.0 a delivered\r\n452 4.2.2 c over quota\r\n"),
        ""
    );
    assert_eq!(c.step("552 5.2.2 d mailbox full\r\n"), "QUIT\r\n");
    assert_eq!(
        c.statuses(),
        [
            (Status::Delivered, 250),
            (Status::Failed, 550),
            (Status::Deferred, 452),
            (Status::Failed, 552),
        ]
    );
}

/// An LMTP server that refuses LHLO gets no HELO: LMTP has none.
#[test]
fn lmtp_never_falls_back_to_helo() {
    let lmtp = ClientConfig {
        lmtp: true,
        ..config(TlsPolicy::Never)
    };
    let mut c = Conversation::new(Client::new(lmtp, message(&["a@local.test"]), false));
    c.step("220 ready\r\n");
    assert_eq!(c.step("500 what\r\n"), "QUIT\r\n");
    assert_eq!(c.statuses(), [(Status::Deferred, 500)]);
}
