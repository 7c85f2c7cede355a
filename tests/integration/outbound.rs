//! Relayed mail leaves: two yubin instances on loopback, A relaying for a
//! POP-before-SMTP client and routing the remote domain to B
//! (`[queue] routes`), and the faults between them (issue 5).

use std::time::{Duration, Instant};

use crate::harness::{Setup, TestServer, hex_list};
use crate::smtp::{awkward_message, hex};

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];
const BOB: [(&str, &str); 2] = [("USER_NAME", "bob"), ("USER_PASS", "secret")];

/// B: the recipient's server, `b.test`.
fn receiver(smtp_port: u16) -> TestServer {
    TestServer::with(Setup {
        hostname: "b.test".into(),
        smtp_port,
        ..Setup::default()
    })
}

/// A: the sender's server, routing `b.test` to `port`, retrying fast.
fn sender(port: u16, extra: &str) -> TestServer {
    TestServer::with(Setup {
        tables: format!(
            "[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{port}\" }}\nfirst_retry = \"1s\"\nmax_retry = \"1s\"\n{extra}"
        ),
        ..Setup::default()
    })
}

/// A port nobody listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits up to `seconds` for `ready`.
fn eventually(seconds: u64, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logs in to A over POP3 (the POP-before-SMTP grant), then sends through
/// A's MX port; returns smtplib's outcome.
fn send_via(a: &TestServer, recipients: &[&str], message: &[u8]) -> serde_json::Value {
    let recipients: Vec<String> = recipients.iter().map(|r| format!("'{r}'")).collect();
    a.python(
        &format!(
            "import popclient as p, smtpclient as s\n\
             c = p.connect(); p.login(c); c.quit()\n\
             s.emit(s.send_once('alice@test.example', [{}], bytes.fromhex('{}')))",
            recipients.join(", "),
            hex(message)
        ),
        &ALICE,
    )
}

/// Strips the trace lines servers add on top (Return-Path, Received and
/// their continuation lines); returns them and the rest.
fn split_trace(message: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(message);
    let mut end = 0;
    for line in text.split_inclusive("\r\n") {
        let added = line.starts_with("Return-Path: ")
            || line.starts_with("Received: ")
            || line.starts_with('\t');
        if !added {
            break;
        }
        end += line.len();
    }
    (text[..end].to_owned(), message[end..].to_vec())
}

/// The main path: a POP-before-SMTP client relays through A; A's engine
/// delivers to B; bob fetches it from B with poplib, bytes intact (dot
/// lines, 8-bit text, long lines), under both servers' trace headers.
#[test]
fn relayed_mail_reaches_the_other_server_intact() {
    let b = receiver(0);
    let a = sender(b.smtp.port(), "");
    let message = awkward_message();
    let sent = send_via(&a, &["bob@b.test"], &message);
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "delivery to B", || b.messages("bob").len() == 1);
    let fetched = b.python(
        "import popclient as p\nc = p.connect(); p.login(c); p.emit(p.fetch_all(c)['messages'])",
        &BOB,
    );
    let fetched = hex_list(&fetched);
    assert_eq!(fetched.len(), 1);
    let (trace, rest) = split_trace(&fetched[0]);
    assert_eq!(
        rest,
        message,
        "changed on the way:\n{}",
        String::from_utf8_lossy(&fetched[0])
    );
    assert!(
        trace.starts_with("Return-Path: <alice@test.example>\r\n"),
        "{trace}"
    );
    assert!(
        trace.contains("by b.test (yubin) with ESMTPS id "),
        "over STARTTLS: {trace}"
    );
    assert!(
        trace.contains("by test.example (yubin) with ESMTP id "),
        "{trace}"
    );
    eventually(10, "A's queue to empty", || a.queued().is_empty());
    let log = a.log();
    assert!(
        log.contains("delivered") && log.contains("removed from the queue"),
        "{log}"
    );
}

/// B down: the message waits, is retried, and is delivered once B is up;
/// `yubin queue list` meanwhile shows the attempts and the last error.
#[test]
fn a_dead_destination_is_retried_until_it_answers() {
    let port = free_port();
    let a = sender(port, "");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: patience\r\n\r\nhello\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(10, "a failed attempt", || a.log().contains("deferred"));
    assert_eq!(a.queued().len(), 1);
    let b = receiver(port);
    eventually(20, "delivery after B came up", || {
        b.messages("bob").len() == 1
    });
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}

/// A 5xx for one recipient and 250 for another: one delivered, one
/// bounced; the bounce (a multipart/report from the null sender) lands in
/// the sender's local maildrop, and the entry leaves the queue.
#[test]
fn one_recipient_refused_one_delivered_and_the_bounce_comes_home() {
    let b = receiver(0);
    let a = sender(b.smtp.port(), "");
    let sent = send_via(
        &a,
        &["bob@b.test", "nobody@b.test"],
        b"Subject: half\r\nMessage-ID: <half@test.example>\r\n\r\nhello\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "delivery to bob", || b.messages("bob").len() == 1);
    eventually(20, "the bounce to alice", || a.messages("alice").len() == 1);
    let bounce = String::from_utf8_lossy(&a.messages("alice")[0]).into_owned();
    assert!(bounce.starts_with("Return-Path: <>\n"), "{bounce}");
    assert!(
        bounce.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Final-Recipient: rfc822; nobody@b.test\nAction: failed\nStatus: 5.1.1\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Message-ID: <half@test.example>"),
        "original headers: {bounce}"
    );
    assert!(
        !bounce.contains("Final-Recipient: rfc822; bob@b.test"),
        "{bounce}"
    );
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}
