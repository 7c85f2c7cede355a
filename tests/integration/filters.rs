//! Content filters (issue 15): a milter's verdicts and header edits over
//! a real socket, what it is sent, and the fail mode when a filter is
//! down or silent. Real milters (OpenDKIM, clamav-milter) and rspamd are
//! in the interop script; here the filter side is a scripted milter
//! (`py/fakemilter.py`) or no filter at all.

use std::time::{Duration, Instant};

use crate::harness::{Setup, TestServer, python_server};

/// A scripted milter in `mode`, and the file it logs packets to.
struct FakeMilter {
    child: std::process::Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl FakeMilter {
    fn start(mode: &str) -> FakeMilter {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let (child, port) =
            python_server("fakemilter.py", &[mode.as_ref(), log.path().as_os_str()]);
        FakeMilter { child, port, log }
    }

    /// Every packet it received: (command, data).
    fn packets(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.log.path())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                (
                    v["code"].as_str().unwrap_or_default().to_owned(),
                    v["data"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for FakeMilter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_with(filters: &str) -> TestServer {
    TestServer::with(Setup {
        tables: filters.to_owned(),
        ..Setup::default()
    })
}

fn filter(kind: &str, address: &str, extra: &str) -> String {
    format!("[[filter]]\nkind = \"{kind}\"\naddress = \"{address}\"\n{extra}\n")
}

fn send(server: &TestServer, message: &str) -> serde_json::Value {
    server.python(
        &format!(
            "import smtpclient as s\n\
             s.emit(s.send_once('sender@example.net', ['alice@test.example'], {message:?}.encode()))"
        ),
        &[],
    )
}

const MESSAGE: &str =
    "From: <sender@example.net>\r\nSubject: hello\r\nX-Remove-Me: yes\r\n\r\nbody text\r\n";

/// The messages in `user`'s Junk folder (`.Junk/new`).
fn junk_messages(server: &TestServer, user: &str) -> Vec<Vec<u8>> {
    let dir = server.maildir(user).join(".Junk").join("new");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read(e.expect("an entry").path()).expect("read"))
        .collect()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[test]
fn issue15_a_milter_sees_the_envelope_and_its_edits_and_quarantine_are_applied() {
    let milter = FakeMilter::start("tag");
    let server = server_with(&filter("milter", &format!("127.0.0.1:{}", milter.port), ""));
    let sent = send(&server, MESSAGE);
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");

    // Quarantined: held out of the maildrop POP3 serves, in the Junk
    // folder although alice did not ask for one.
    assert!(server.messages("alice").is_empty());
    let junk = junk_messages(&server, "alice");
    assert_eq!(junk.len(), 1);
    let stored = String::from_utf8_lossy(&junk[0]).into_owned();
    // Its field added, the one it deleted gone, and the spam tag.
    assert!(
        stored.contains("X-Milter: scanned by fakemilter\n"),
        "{stored}"
    );
    assert!(!stored.contains("X-Remove-Me"), "{stored}");
    assert!(stored.contains("Subject: [SPAM] hello\n"), "{stored}");
    assert!(stored.contains("X-Spam-Flag: YES\n"), "{stored}");
    assert!(stored.ends_with("\nbody text\n"), "{stored}");
    let log = server.wait_for_log("smtp message accepted");
    assert!(log.contains("quarantine"), "{log}");

    // What it was told: the client, the envelope, each field (its value
    // without the leading space), the body with CRLF, end of message.
    let packets = milter.packets();
    let codes: String = packets
        .iter()
        .filter(|(c, _)| c != "D")
        .map(|(c, _)| c.as_str())
        .collect();
    assert_eq!(codes, "OCHMRTLLLNBEQ", "{packets:?}");
    let data = |code: &str| -> Vec<String> {
        packets
            .iter()
            .filter(|(c, _)| c == code)
            .map(|(_, d)| d.clone())
            .collect()
    };
    assert!(data("C")[0].contains("127.0.0.1"), "{packets:?}");
    assert_eq!(data("M"), vec!["<sender@example.net>\0".to_owned()]);
    assert_eq!(data("R"), vec!["<alice@test.example>\0".to_owned()]);
    assert_eq!(data("L")[1], "Subject\0hello\0");
    assert_eq!(data("B"), vec!["body text\r\n".to_owned()]);
}

#[test]
fn issue15_a_milters_reject_tempfail_and_discard() {
    for (mode, code, text) in [
        ("reject", 554, "5.7.1 Virus found: Test-Signature"),
        ("tempfail", 451, "4.7.1 Service unavailable"),
    ] {
        let milter = FakeMilter::start(mode);
        let server = server_with(&filter("milter", &format!("127.0.0.1:{}", milter.port), ""));
        let sent = send(&server, MESSAGE);
        assert_eq!(sent["error"][0], code, "{mode}: {sent}");
        assert!(
            sent["error"][1].as_str().unwrap_or_default().contains(text),
            "{mode}: {sent}"
        );
        assert!(server.messages("alice").is_empty(), "{mode}");
        server.wait_for_log("smtp message refused by a content filter");
    }
    // Discard: the client is told 250, nothing is stored, the log says so.
    let milter = FakeMilter::start("discard");
    let server = server_with(&filter("milter", &format!("127.0.0.1:{}", milter.port), ""));
    let sent = send(&server, MESSAGE);
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    server.wait_for_log("smtp message discarded by a content filter");
    assert!(server.messages("alice").is_empty());
}

#[test]
fn issue15_a_filter_that_is_down_or_silent_gets_its_fail_mode() {
    // Down, default "tempfail": 451, nothing stored; the session goes on
    // (a second message on the same connection gets the same answer).
    let down = closed_port();
    let server = server_with(&filter("rspamd", &format!("127.0.0.1:{down}"), ""));
    let answers = server.python(
        &format!(
            "import smtpclient as s\n\
             c = s.connect()\n\
             a = s.send(c, 'sender@example.net', ['alice@test.example'], {MESSAGE:?}.encode())\n\
             b = s.send(c, 'sender@example.net', ['alice@test.example'], {MESSAGE:?}.encode())\n\
             c.quit()\n\
             s.emit([a, b])"
        ),
        &[],
    );
    for answer in answers.as_array().expect("two answers") {
        assert_eq!(answer["error"][0], 451, "{answers}");
        assert!(
            answer["error"][1]
                .as_str()
                .unwrap_or_default()
                .contains("4.7.1"),
            "{answers}"
        );
    }
    assert!(server.messages("alice").is_empty());
    assert!(
        server.log().contains("content filter failed"),
        "{}",
        server.log()
    );

    // A user's submission is not the MX listener's: the same filter does
    // not apply there.
    let submitted = server.python(
        &format!(
            "import smtpclient as s\n\
             c = s.connect('submission'); c.login('alice', 'alice-pw')\n\
             r = s.send(c, 'alice@test.example', ['alice@test.example'], {:?}.encode())\n\
             c.quit(); s.emit(r)",
            "From: <alice@test.example>\r\nSubject: mine\r\n\r\nhi\r\n"
        ),
        &[],
    );
    assert_eq!(submitted["error"], serde_json::Value::Null, "{submitted}");
    assert_eq!(server.messages("alice").len(), 1);
    drop(server);

    // Silent (takes the connection, never answers) with a short timeout,
    // then down, both "accept": delivered after about the timeout.
    let silent = FakeMilter::start("silent");
    let server = server_with(&format!(
        "{}{}",
        filter(
            "milter",
            &format!("127.0.0.1:{}", silent.port),
            "timeout = \"1s\"\non_failure = \"accept\"",
        ),
        filter(
            "milter",
            &format!("127.0.0.1:{down}"),
            "on_failure = \"accept\"",
        )
    ));
    let started = Instant::now();
    let sent = send(&server, MESSAGE);
    let took = started.elapsed();
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let stored = server.messages("alice");
    assert_eq!(stored.len(), 1);
    // Nothing changed by filters that said nothing.
    assert!(String::from_utf8_lossy(&stored[0]).contains("X-Remove-Me: yes"));
    let log = server.wait_for_log("smtp message accepted");
    assert_eq!(log.matches("content filter failed").count(), 2, "{log}");
}

#[test]
fn issue15_filter_settings_are_checked_at_start() {
    for (table, key) in [
        (
            "[[filter]]\nkind = \"milter\"\naddress = \"nowhere\"\n",
            "filter[0].address",
        ),
        (
            "[[filter]]\nkind = \"rspamd\"\naddress = \"127.0.0.1:11333\"\ntimeout = \"0s\"\n",
            "filter[0].timeout",
        ),
        (
            "[[filter]]\nkind = \"spamassassin\"\naddress = \"127.0.0.1:783\"\n",
            "kind",
        ),
        (
            "[[filter]]\nkind = \"rspamd\"\naddress = \"127.0.0.1:11333\"\nlisteners = []\n",
            "filter[0].listeners",
        ),
    ] {
        crate::harness::assert_config_refused(table, key);
    }
}

#[test]
fn issue15_tagged_mail_goes_to_the_junk_folder_of_users_who_want_it() {
    // shop.test's DMARC policy is quarantine: its failing mail is tagged.
    let dns = yubin_test_dns::TestDns::start().expect("a DNS server");
    dns.txt("shop.test", "v=spf1 -all");
    dns.txt("_dmarc.shop.test", "v=DMARC1; p=quarantine");
    let mut setup = Setup {
        tables: format!("[dns]\nresolver = \"{}\"\n", dns.addr()),
        ..Setup::default()
    };
    // carol asks for a Junk folder in the passwd-file; alice keeps the
    // default (off).
    setup.users.push((
        "carol".into(),
        "{PLAIN}carol-pw::::::userdb_junk=yes".into(),
    ));
    let server = TestServer::with(setup);
    let message = "From: <news@shop.test>\r\nSubject: deals\r\n\r\nbuy\r\n";
    let sent = server.python(
        &format!(
            "import smtpclient as s\n\
             s.emit(s.send_once('news@shop.test', ['alice@test.example', 'carol@test.example'], {message:?}.encode()))"
        ),
        &[],
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    // alice: tagged, in the maildrop POP3 serves.
    assert_eq!(server.messages("alice").len(), 1);
    assert!(junk_messages(&server, "alice").is_empty());
    // carol: nothing for POP3; the copy is in .Junk/new, a Maildir++
    // folder.
    assert!(server.messages("carol").is_empty());
    assert!(server.maildir("carol").join(".Junk/maildirfolder").exists());
    let junk = junk_messages(&server, "carol");
    assert_eq!(junk.len(), 1);
    assert!(String::from_utf8_lossy(&junk[0]).contains("X-Spam-Flag: YES"));
    let stat = server.python(
        "import poplib, os\n\
         c = poplib.POP3(os.environ['HOST'], int(os.environ['PORT']))\n\
         c.user('carol'); c.pass_('carol-pw'); n = c.stat()[0]; c.quit()\n\
         print(__import__('json').dumps(n))",
        &[],
    );
    assert_eq!(stat, 0);
}
