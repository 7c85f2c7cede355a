//! Relayed mail leaves: two yubin instances on loopback, A relaying for a
//! POP-before-SMTP client and routing the remote domain to B
//! (`[queue] routes`), and the faults between them (issue 5).

use std::time::{Duration, Instant};

use yubin_test_dns::TestDns;

use crate::harness::{Setup, TestServer, hex_list};
use crate::smtp::{awkward_message, hex};

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];
const BOB: [(&str, &str); 2] = [("USER_NAME", "bob"), ("USER_PASS", "secret")];

/// B: the recipient's server, `b.test`.
pub(crate) fn receiver(smtp_port: u16) -> TestServer {
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

/// A dead destination that stays dead until revived: the port is bound
/// but not listening, so connections to it are refused, and no other
/// server started by a test running alongside can take it meanwhile (a
/// released port can be handed out again at once; a TLS listener there
/// would leave the attempt waiting for a greeting instead of failing).
pub(crate) struct DeadPort {
    socket: socket2::Socket,
    pub(crate) port: u16,
}

impl DeadPort {
    pub(crate) fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
        socket.bind(&any.into()).expect("a port");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .expect("the bound port");
        DeadPort { socket, port }
    }

    /// Releases the port for the server about to listen on it.
    pub(crate) fn revive(self) -> u16 {
        drop(self.socket);
        self.port
    }
}

/// Waits up to `seconds` for `ready`.
pub fn eventually(seconds: u64, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logs in to A over POP3 (the POP-before-SMTP grant), then sends through
/// A's MX port; returns smtplib's outcome.
pub fn send_via(a: &TestServer, recipients: &[&str], message: &[u8]) -> serde_json::Value {
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
            || line.starts_with("Authentication-Results: ")
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
    // As alice's mail client writes it: from her, with Date and Message-ID
    // (A refuses another user's From: and adds the other two when missing;
    // see the issue14_ tests).
    let awkward = String::from_utf8(awkward_message()).expect("UTF-8");
    let message = format!(
        "Date: Sun, 6 Dec 2026 10:00:00 +0000\r\nMessage-ID: <awkward@test.example>\r\n{}",
        awkward.replace(
            "From: Bob <bob@remote.example>",
            "From: Alice <alice@test.example>"
        )
    )
    .into_bytes();
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
    let dead = DeadPort::new();
    let a = sender(dead.port, "");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: patience\r\n\r\nhello\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(10, "a failed attempt", || a.log().contains("deferred"));
    assert_eq!(a.queued().len(), 1);
    let b = receiver(dead.revive());
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

/// A misbehaving SMTP server (tests/integration/py/fakesmtp.py).
pub(crate) struct FakeSmtp {
    child: std::process::Child,
    pub(crate) port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeSmtp {
    pub(crate) fn start(mode: &str) -> FakeSmtp {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("fake.log");
        let (child, port) = crate::harness::python_server(
            "fakesmtp.py",
            &["0".as_ref(), mode.as_ref(), log.as_os_str()],
        );
        FakeSmtp {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub(crate) fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == kind)
            .collect()
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OQ-01: the server takes the whole message and drops the connection
/// before replying to the final dot. The message may have been delivered,
/// so it is sent again (the documented duplicate), never dropped: the
/// second connection gets it too, and the entry leaves the queue.
#[test]
fn oq01_a_drop_before_the_final_reply_is_retried_not_lost() {
    let fake = FakeSmtp::start("drop-after-dot-once");
    let a = sender(fake.port, "tls = \"none\"\n");
    let sent = send_via(
        &a,
        &["bob@b.test"],
        b"Subject: twice\r\n\r\nmaybe twice\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "a second delivery", || {
        fake.events("message").len() >= 2
    });
    eventually(10, "A's queue to empty", || a.queued().is_empty());
    let messages = fake.events("message");
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[1]["content"]
            .as_str()
            .unwrap()
            .contains("maybe twice")
    );
}

/// OQ-02: a 4xx (here to MAIL) is retried, and the message then delivered
/// exactly once.
#[test]
fn oq02_a_temporary_refusal_is_retried() {
    let fake = FakeSmtp::start("4xx-mail-once");
    let a = sender(fake.port, "tls = \"none\"\n");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: later\r\n\r\nlater\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the delivery", || fake.events("message").len() == 1);
    eventually(10, "A's queue to empty", || a.queued().is_empty());
    assert!(a.log().contains("451 4.3.0 try again later"), "{}", a.log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fake.events("message").len(), 1, "delivered once");
}

/// Kill -9 while the remote server holds the final reply: after the
/// restart the entry is delivered again (at most a duplicate, never lost),
/// and leaves the queue.
#[test]
fn oq01_kill9_during_delivery_redelivers_after_restart() {
    let fake = FakeSmtp::start("slow-250");
    let mut a = sender(fake.port, "tls = \"none\"\n");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: crash\r\n\r\ncrash\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the content to arrive", || {
        fake.events("message").len() == 1
    });
    a.kill9();
    assert_eq!(a.queued().len(), 1, "still queued after the crash");
    a.launch();
    eventually(20, "the redelivery", || fake.events("message").len() == 2);
    eventually(20, "A's queue to empty", || a.queued().is_empty());
}

/// OQ-05: TLS required, and the server offers no STARTTLS: not a word of
/// the transaction in clear; the mail waits (4.7.10), it does not bounce.
#[test]
fn oq05_required_tls_never_sends_in_clear() {
    let fake = FakeSmtp::start("normal");
    let a = sender(fake.port, "tls = \"required\"\n");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: secret\r\n\r\nsecret\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "a deferral", || a.log().contains("TLS is required"));
    let commands: Vec<String> = fake
        .events("command")
        .iter()
        .map(|c| c["line"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        commands
            .iter()
            .all(|c| c.starts_with("EHLO") || c == "QUIT"),
        "{commands:?}"
    );
    assert!(fake.events("message").is_empty());
    assert_eq!(a.queued().len(), 1);
    assert!(a.messages("alice").is_empty(), "no bounce");
}

/// OQ-06: a route that leads back to this server bounces ("mail loops
/// back to myself") instead of circling.
#[test]
fn oq06_a_route_back_to_ourselves_bounces() {
    let port = free_port();
    let a = TestServer::with(Setup {
        smtp_port: port,
        tables: format!("[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{port}\" }}\n"),
        ..Setup::default()
    });
    let sent = send_via(&a, &["bob@b.test"], b"Subject: loop\r\n\r\nloop\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the bounce", || a.messages("alice").len() == 1);
    let bounce = String::from_utf8_lossy(&a.messages("alice")[0]).into_owned();
    assert!(bounce.contains("Status: 5.4.6"), "{bounce}");
    assert!(bounce.contains("loops back to myself"), "{bounce}");
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}

/// OQ-07: a damaged queue file is moved to corrupt/ and logged; the rest
/// of the queue is delivered.
#[test]
fn oq07_a_damaged_queue_file_is_quarantined_and_others_delivered() {
    let b = receiver(0);
    let mut a = sender(b.smtp.port(), "");
    let active = a.dir.path().join("queue/active");
    std::fs::create_dir_all(&active).unwrap();
    std::fs::write(
        active.join("damaged-1"),
        b"yubin-queue 1\nid damaged-1\nfrom <a@b",
    )
    .unwrap();
    // Found when the queue is read at start (a running server reads the
    // whole directory only now and then; what it queues itself it knows).
    a.restart();
    let sent = send_via(&a, &["bob@b.test"], b"Subject: fine\r\n\r\nfine\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "delivery to B", || b.messages("bob").len() == 1);
    eventually(10, "the quarantine", || {
        a.dir.path().join("queue/corrupt/damaged-1").exists()
    });
    assert!(
        a.log().contains("damaged queue entry moved to corrupt/"),
        "{}",
        a.log()
    );
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}

/// OQ-03: a failed message from the null sender gets no bounce; a message
/// past `max_age` bounces with 4.4.7; the sender is warned of a delay
/// once `delay_warning` has passed.
#[test]
fn oq03_no_bounce_for_null_senders_expiry_and_delay_warnings() {
    let b = receiver(0);
    let a = sender(b.smtp.port(), "");
    let sent = a.python(
        "import popclient as p, smtpclient as s\n\
         c = p.connect(); p.login(c); c.quit()\n\
         s.emit(s.send_once('', ['nobody@b.test'], b'Subject: from nobody\\r\\n\\r\\nx\\r\\n'))",
        &ALICE,
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the failure", || {
        a.log()
            .contains("no bounce for a message from the null sender")
    });
    eventually(10, "A's queue to empty", || a.queued().is_empty());
    assert!(a.messages("alice").is_empty());

    let dead = DeadPort::new();
    let a = sender(dead.port, "max_age = \"3s\"\ndelay_warning = \"1s\"\n");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: doomed\r\n\r\ndoomed\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the warning and the bounce", || {
        a.messages("alice").len() == 2
    });
    let reports: Vec<String> = a
        .messages("alice")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert!(
        reports.iter().any(|r| r.contains("Action: delayed")),
        "{reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.contains("Action: failed") && r.contains("4.4.7 delivery time expired")),
        "{reports:?}"
    );
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}

/// `yubin queue` against a running server: list shows attempts and the
/// last error, show the envelope and header, flush retries at once, bounce
/// returns the message to its sender, delete removes one, and an unknown
/// id is a usage error naming the argument.
#[test]
fn queue_commands_work_against_a_running_server() {
    let dead = DeadPort::new();
    let port = dead.port;
    // Slow retries: only a flush can make the second attempt happen soon.
    let a = TestServer::with(Setup {
        tables: format!(
            "[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{port}\" }}\nfirst_retry = \"1h\"\n"
        ),
        ..Setup::default()
    });
    let config = a.config_path();
    let config = config.to_str().unwrap();
    let queue = |args: &[&str]| {
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", config]);
        crate::harness::yubin(&all, "", a.dir.path())
    };
    exercise_queue_commands(&a, dead, &queue, &|| a.messages("alice"), &|| {
        a.queued().is_empty()
    });
}

/// `yubin queue` (run by `queue`) on the queue of `a`, whose mail for
/// `b.test` goes to `dead`: three messages wait; `list` shows them with
/// their attempts and error, `show` one, `delete` another, `bounce` the
/// third (its bounce reaches alice, whose mail `alice_mail` reads); then
/// B comes up at `dead`'s port and only `flush` gets the last message
/// there, and the queue empties (`queue_empty`). An unknown id is a
/// usage error.
pub(crate) fn exercise_queue_commands(
    a: &TestServer,
    dead: DeadPort,
    queue: &dyn Fn(&[&str]) -> std::process::Output,
    alice_mail: &dyn Fn() -> Vec<Vec<u8>>,
    queue_empty: &dyn Fn() -> bool,
) {
    for subject in ["one", "two", "three"] {
        let sent = send_via(
            a,
            &["bob@b.test"],
            format!("Subject: {subject}\r\n\r\nx\r\n").as_bytes(),
        );
        assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    }
    eventually(20, "three failed attempts", || {
        a.log().matches("deferred").count() >= 3
    });
    let listed = queue(&["list"]);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.status.success(), "{text}{listed:?}");
    assert!(text.contains("1 attempt, next in "), "{text}");
    assert!(
        text.contains("last error: 421 4.4.1 connect to 127.0.0.1"),
        "{text}"
    );
    assert!(text.ends_with("3 messages queued\n"), "{text}");
    let ids: Vec<String> = text
        .lines()
        .filter(|l| l.contains("from <alice@test.example>"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 3);

    let shown = queue(&["show", &ids[0]]);
    let text = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(text.contains("to:        <bob@b.test>"), "{text}");
    assert!(text.contains("Subject: "), "{text}");

    let deleted = queue(&["delete", &ids[1]]);
    assert!(deleted.status.success(), "{deleted:?}");
    let bounced = queue(&["bounce", &ids[2]]);
    assert!(bounced.status.success(), "{bounced:?}");
    eventually(20, "the bounce", || alice_mail().len() == 1);
    let bounce = String::from_utf8_lossy(&alice_mail()[0]).into_owned();
    assert!(
        bounce.contains("returned to the sender by the postmaster"),
        "{bounce}"
    );

    // B comes up; only a flush gets the remaining message there now.
    let b = receiver(dead.revive());
    let flushed = queue(&["flush"]);
    assert!(flushed.status.success(), "{flushed:?}");
    eventually(20, "delivery after the flush", || {
        b.messages("bob").len() == 1
    });
    eventually(10, "the queue to empty", queue_empty);

    let unknown = queue(&["delete", "no-such-id"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("id: no queued message"));
}

/// Routing by DNS (no transport map): MX records lead to B; a null MX
/// (RFC 7505) and a domain that does not exist bounce at once, in one
/// report, without a single retry; a domain whose lookup is refused waits,
/// and is delivered once its MX record appears.
#[test]
fn mx_records_route_mail_and_null_mx_or_missing_domains_bounce() {
    let port = free_port();
    let b = TestServer::with(Setup {
        hostname: "b.test".into(),
        smtp_port: port,
        smtp: "local_domains = [\"b.test\", \"refused.test\"]\n".into(),
        ..Setup::default()
    });
    let dns = TestDns::start().expect("the test DNS server");
    dns.mx("b.test", 10, "localhost");
    dns.mx("nullmx.test", 0, ".");
    dns.nxdomain("missing.test");
    dns.refused("refused.test");
    let a = TestServer::with(Setup {
        tables: format!(
            "[queue]\ndns = \"{}\"\nmx_port = {port}\nfirst_retry = \"1s\"\nmax_retry = \"1s\"\n",
            dns.addr()
        ),
        ..Setup::default()
    });
    let sent = send_via(
        &a,
        &[
            "bob@b.test",
            "x@nullmx.test",
            "y@missing.test",
            "bob@refused.test",
        ],
        b"Subject: by MX\r\n\r\nrouted by DNS\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "delivery by MX", || b.messages("bob").len() == 1);
    eventually(20, "the bounce", || a.messages("alice").len() == 1);
    let bounce = String::from_utf8_lossy(&a.messages("alice")[0]).into_owned();
    assert!(
        bounce.contains("Final-Recipient: rfc822; x@nullmx.test\nAction: failed\nStatus: 5.1.10\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Final-Recipient: rfc822; y@missing.test\nAction: failed\nStatus: 5.1.2\n"),
        "{bounce}"
    );
    // REFUSED is DNS trouble, not a missing domain, so bob@refused.test
    // waits instead of bouncing.
    assert!(!bounce.contains("refused.test"), "{bounce}");
    eventually(10, "the DNS failure to be recorded", || {
        a.log().contains("4.4.3 DNS lookup of refused.test failed")
    });
    assert_eq!(a.queued().len(), 1, "bob@refused.test waits");
    // The record appears while everything runs; the next retry finds it.
    dns.mx("refused.test", 10, "localhost");
    eventually(20, "delivery once the MX exists", || {
        b.messages("bob").len() == 2
    });
    eventually(10, "A's queue to empty", || a.queued().is_empty());
    assert!(
        dns.queries()
            .contains(&("nullmx.test".to_owned(), yubin_test_dns::RecordType::MX))
    );
}

/// A destination that accepts connections and never says a word holds up
/// only its own mail: with two workers and one connection per destination,
/// three messages stuck for it do not keep a fourth, for another domain,
/// from being delivered at once (waiting for a busy destination does not
/// hold a worker).
#[test]
fn a_stuck_destination_does_not_hold_up_others() {
    let tarpit = FakeSmtp::start("tarpit");
    let b = receiver(0);
    let a = TestServer::with(Setup {
        tables: format!(
            "[queue]\nroutes = {{ \"slow.test\" = \"127.0.0.1:{}\", \"b.test\" = \"127.0.0.1:{}\" }}\nmax_workers = 2\nmax_per_destination = 1\n",
            tarpit.port,
            b.smtp.port()
        ),
        ..Setup::default()
    });
    for n in 0..3 {
        let subject = format!("Subject: stuck {n}\r\n\r\nstuck\r\n");
        let sent = send_via(&a, &["x@slow.test"], subject.as_bytes());
        assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    }
    eventually(10, "the tarpit to be reached", || {
        !tarpit.events("connect").is_empty()
    });
    let sent = send_via(&a, &["bob@b.test"], b"Subject: free\r\n\r\nfree\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(10, "delivery past the stuck ones", || {
        b.messages("bob").len() == 1
    });
    // (The delivered one leaves A's queue just after B has it.)
    eventually(10, "the delivered one to leave the queue", || {
        a.queued().len() == 3
    });
    assert_eq!(
        tarpit.events("connect").len(),
        1,
        "one connection at a time to the stuck destination"
    );
}

/// Opportunistic TLS that fails in the handshake falls back to plaintext
/// (Postfix's "may"); required TLS never does.
#[test]
fn a_failed_opportunistic_handshake_falls_back_to_plaintext() {
    let fake = FakeSmtp::start("broken-starttls");
    let a = sender(fake.port, "");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: plain\r\n\r\nplain\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the plaintext delivery", || {
        fake.events("message").len() == 1
    });
    eventually(10, "A's queue to empty", || a.queued().is_empty());

    let fake = FakeSmtp::start("broken-starttls");
    let a = sender(fake.port, "tls = \"required\"\n");
    let sent = send_via(&a, &["bob@b.test"], b"Subject: secret\r\n\r\nsecret\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "a deferral", || {
        a.log().contains("TLS handshake failed")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(fake.events("message").is_empty(), "never in clear");
    assert_eq!(a.queued().len(), 1);
}

/// OQ-04: a server that never greets, one that trickles its greeting a
/// byte at a time, and one that goes silent after the final dot are given
/// up on at the RFC 5321 §4.5.3.2 timeouts (shortened here to 1 s), the
/// worker is freed, and the message is tried again later.
#[test]
fn oq04_tarpits_time_out_and_are_retried() {
    for (mode, expected) in [
        ("tarpit", "4.4.2 timeout before the greeting"),
        ("trickle-greeting", "4.4.2 timeout before the greeting"),
        (
            "silent-after-dot",
            "4.4.2 timeout after the end of data (the message may have been delivered)",
        ),
    ] {
        let fake = FakeSmtp::start(mode);
        let a = sender(
            fake.port,
            "tls = \"none\"\ncommand_timeout = \"1s\"\ndata_done_timeout = \"1s\"\n",
        );
        let sent = send_via(&a, &["bob@b.test"], b"Subject: tarpit\r\n\r\nx\r\n");
        assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
        eventually(15, "the timeout", || a.log().contains(expected));
        eventually(15, "a second attempt", || fake.events("connect").len() >= 2);
        assert_eq!(a.queued().len(), 1, "{mode}: still queued");
    }
}

/// OQ-08: ten thousand messages for a dead destination. The server starts
/// listening at once (the queue is read in the
/// background), its memory stays small, the engine works through the
/// backlog, and a flood of due entries leaves new mail deliverable.
#[test]
fn oq08_a_large_backlog_for_a_dead_destination_stays_bounded() {
    let size = 10_000;
    let b = receiver(0);
    let dead = free_port();
    let mut a = TestServer::with(Setup {
        tables: format!(
            "[queue]\nroutes = {{ \"dead.test\" = \"127.0.0.1:{dead}\", \"b.test\" = \"127.0.0.1:{}\" }}\nfirst_retry = \"1h\"\n",
            b.smtp.port()
        ),
        ..Setup::default()
    });
    a.stop();
    let active = a.dir.path().join("queue/active");
    std::fs::create_dir_all(&active).unwrap();
    // Created now: an entry older than `[queue] max_age` would be bounced
    // at once instead of waiting for its destination.
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    for n in 0..size {
        let id = format!("backlog-{n:05}");
        std::fs::write(
            active.join(&id),
            format!(
                "yubin-queue 1\nid {id}\ncreated {created}\nfrom <alice@test.example>\nrcpt <r{n}@dead.test>\nclient 127.0.0.1\nauth network\n\nSubject: backlog {n}\n\nbody\n"
            ),
        )
        .unwrap();
    }
    let started = Instant::now();
    a.launch();
    let startup = started.elapsed();
    // The point: start-up does not wait for the queue to be read. Reading
    // 10,000 entries first would take seconds; listening takes
    // milliseconds, so a generous bound still tells the two apart.
    assert!(
        startup < Duration::from_secs(10),
        "listening after {startup:?}"
    );
    let sent = send_via(&a, &["bob@b.test"], b"Subject: new mail\r\n\r\nnew\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(120, "new mail past the backlog", || {
        b.messages("bob").len() == 1
    });
    let states = || std::fs::read_dir(a.dir.path().join("queue/state")).map_or(0, |d| d.count());
    let worked = Instant::now();
    eventually(600, "the backlog to be worked through", || states() >= size);
    let rss = a.rss_kib();
    eprintln!(
        "oq08: {size} queued; listening after {startup:?}; worked through in {:?}; RSS {rss} KiB",
        worked.elapsed()
    );
    assert!(rss < 128 * 1024, "RSS {rss} KiB with {size} queued");
    eventually(10, "only the backlog left", || a.queued().len() == size);
}

/// SI-03: what goes out is canonical whatever came in: stray CR and LF
/// (taken in by BDAT, which has no end marker) leave as CRLF line ends,
/// and every line starting with a dot is stuffed on the wire.
#[test]
fn si03_relayed_content_is_canonical_on_the_wire() {
    let fake = FakeSmtp::start("normal");
    let a = sender(fake.port, "tls = \"none\"\n");
    let sent = a.python(
        "import popclient as p, smtpclient as s\n\
         c = p.connect(); p.login(c); c.quit()\n\
         r = s.Raw(); r.cmd('EHLO client.example'); r.cmd('MAIL FROM:<alice@test.example>')\n\
         r.cmd('RCPT TO:<bob@b.test>')\n\
         body = b'Subject: stray\\r\\n\\r\\nbare cr\\rbare lf\\n.dot\\r\\n..two\\r\\n.\\r\\nlast'\n\
         r.send(b'BDAT %d LAST\\r\\n' % len(body) + body)\n\
         s.emit(r.reply())",
        &ALICE,
    );
    assert!(sent.as_str().unwrap().starts_with("250 "), "{sent}");
    eventually(20, "the delivery", || fake.events("message").len() == 1);
    let raw = crate::harness::unhex(fake.events("message")[0]["raw"].as_str().unwrap());
    let text = String::from_utf8_lossy(&raw).into_owned();
    for (i, byte) in raw.iter().enumerate() {
        match byte {
            b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}: {text:?}"),
            b'\n' => assert_eq!(raw[i.saturating_sub(1)], b'\r', "bare LF at {i}: {text:?}"),
            _ => {}
        }
    }
    assert!(
        text.ends_with("\r\nbare cr\r\nbare lf\r\n..dot\r\n...two\r\n..\r\nlast\r\n.\r\n"),
        "{text:?}"
    );
}

/// A bounce for a remote sender goes through the queue like any mail: the
/// sender's server (B) receives it from the null sender.
#[test]
fn a_bounce_for_a_remote_sender_is_queued_and_delivered() {
    let b = receiver(0);
    // alice relays mail from a sender at B: only a site that lets users
    // send as any address (`sender_identity = "log"`) allows that.
    let a = TestServer::with(Setup {
        smtp: "auth_failure_delay = \"100ms\"\nsender_identity = \"log\"\n".into(),
        tables: format!(
            "[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{}\" }}\nfirst_retry = \"1s\"\nmax_retry = \"1s\"\n",
            b.smtp.port()
        ),
        ..Setup::default()
    });
    let sent = a.python(
        "import popclient as p, smtpclient as s\n\
         c = p.connect(); p.login(c); c.quit()\n\
         s.emit(s.send_once('bob@b.test', ['nobody@b.test'], b'Subject: to nobody\\r\\n\\r\\nx\\r\\n'))",
        &ALICE,
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the bounce at B", || b.messages("bob").len() == 1);
    let bounce = String::from_utf8_lossy(&b.messages("bob")[0]).into_owned();
    assert!(bounce.starts_with("Return-Path: <>\n"), "{bounce}");
    assert!(
        bounce.contains("Final-Recipient: rfc822; nobody@b.test"),
        "{bounce}"
    );
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}

/// OQ-06 by DNS: an MX record that points back at this server bounces
/// ("loops back to myself") instead of circling.
#[test]
fn oq06_an_mx_pointing_back_at_us_bounces() {
    let port = free_port();
    let dns = TestDns::start().expect("the test DNS server");
    dns.mx("self.test", 10, "localhost");
    let a = TestServer::with(Setup {
        smtp_port: port,
        tables: format!("[queue]\ndns = \"{}\"\nmx_port = {port}\n", dns.addr()),
        ..Setup::default()
    });
    let sent = send_via(&a, &["x@self.test"], b"Subject: loop\r\n\r\nloop\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the bounce", || a.messages("alice").len() == 1);
    let bounce = String::from_utf8_lossy(&a.messages("alice")[0]).into_owned();
    assert!(bounce.contains("Status: 5.4.6"), "{bounce}");
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}

/// Pipelined replies each get their own timeout: a server that takes
/// 0.6 s per RCPT answer (recipient checks) is fine with a 1 s command
/// timeout and three recipients, though all three answers together take
/// longer than that.
#[test]
fn oq04_each_pipelined_reply_has_its_own_timeout() {
    let fake = FakeSmtp::start("slow-rcpt");
    let a = sender(fake.port, "tls = \"none\"\ncommand_timeout = \"1s\"\n");
    let sent = send_via(
        &a,
        &["one@b.test", "two@b.test", "three@b.test"],
        b"Subject: patient\r\n\r\nx\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the delivery", || fake.events("message").len() == 1);
    eventually(10, "A's queue to empty", || a.queued().is_empty());
    assert!(!a.log().contains("timeout"), "{}", a.log());
}

/// `tls = "verify"` (issue 14): a route whose server shows a certificate
/// from a trusted CA for the route's host name gets the mail over TLS; a
/// certificate for another name, or one no trusted root signed, stops
/// delivery before MAIL (never a fallback to plaintext), and the mail
/// waits with the reason in `yubin queue list`.
#[test]
fn issue14_verify_checks_the_next_servers_certificate() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = crate::test_ca::TestCa::new(ca_dir.path());
    let trusted = ca.server(ca_dir.path(), "b", &["localhost"], (2025, 2035));
    let b = TestServer::with(Setup {
        hostname: "b.test".into(),
        tables: trusted,
        ..Setup::default()
    });
    // Its own self-signed certificate: no trusted root.
    let untrusted = TestServer::with(Setup {
        hostname: "d.test".into(),
        smtp: "auth_failure_delay = \"100ms\"\nlocal_domains = [\"d.test\"]\n".into(),
        ..Setup::default()
    });
    let a = TestServer::with(Setup {
        tables: format!(
            "[queue]\nroutes = {{ \"b.test\" = \"localhost:{b}\", \"c.test\" = \"127.0.0.1:{b}\", \"d.test\" = \"localhost:{d}\" }}\n\
             tls_policy = {{ \"b.test\" = \"verify\", \"c.test\" = \"verify\", \"d.test\" = \"verify\" }}\n\
             first_retry = \"1h\"\n",
            b = b.smtp.port(),
            d = untrusted.smtp.port()
        ),
        env: vec![(
            "SSL_CERT_FILE".into(),
            ca_dir.path().join("ca.pem").display().to_string(),
        )],
        ..Setup::default()
    });
    let sent = send_via(
        &a,
        &["bob@b.test", "carol@c.test", "dave@d.test"],
        b"Subject: verified\r\n\r\nonly over verified TLS\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "delivery to B", || b.messages("bob").len() == 1);
    let delivered = String::from_utf8_lossy(&b.messages("bob")[0]).into_owned();
    assert!(delivered.contains("with ESMTPS"), "{delivered}");
    eventually(20, "two deferrals", || {
        a.log().matches("deferred").count() >= 2
    });
    let config = a.config_path();
    let listed = crate::harness::yubin(
        &["queue", "list", "--config", config.to_str().unwrap()],
        "",
        a.dir.path(),
    );
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        text.contains("the certificate of 127.0.0.1 was not verified")
            || text.contains("the certificate of localhost was not verified"),
        "{text}"
    );
    let log = a.log();
    assert!(
        log.contains("rcpt=carol@c.test")
            && log.contains("the certificate of 127.0.0.1 was not verified"),
        "a certificate for another name: {log}"
    );
    assert!(
        log.contains("rcpt=dave@d.test")
            && log.contains("the certificate of localhost was not verified"),
        "a certificate no trusted root signed: {log}"
    );
    assert!(untrusted.messages("dave").is_empty());
    assert!(
        !untrusted.log().contains("smtp message accepted"),
        "nothing went to D, in plaintext or otherwise"
    );
}
