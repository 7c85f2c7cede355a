//! Issue 11: real-world mail that nobody here wrote (tests/corpus: CPython's
//! and mail-parser's test messages, and damaged variants of them), plus
//! mail that arrives over SMTP with SMTPUTF8 and with bare LF line ends,
//! served on yubin's defaults, reaches poplib and curl whole, byte for
//! byte, in keep mode and in delete mode; nothing is left behind.

use std::path::Path;

use crate::fidelity::check_poplib;
use crate::harness::{TestServer, expected_wire, hex_list, run};

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];

/// Writes the corpus into alice's Maildir; returns each message's file
/// name and stored bytes, in the order POP3 lists them.
fn seed_corpus(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    let maildir = server.maildir("alice");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/corpus.py");
    let out = run(
        "python3",
        &[
            &script.display().to_string(),
            "seed",
            &maildir.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let names: Vec<String> = serde_json::from_slice(&out.stdout).expect("file names");
    assert_eq!(names.len(), 79, "the whole corpus was seeded");
    names
        .into_iter()
        .map(|name| {
            let data = std::fs::read(maildir.join("new").join(&name)).expect("seeded message");
            (name, data)
        })
        .collect()
}

/// Sends two messages over SMTP as their senders do: one with SMTPUTF8 and
/// UTF-8 in its header fields, one from a script with LF line ends. Returns
/// them as stored (with the trace fields the server adds), after the corpus.
fn send_by_smtp(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    let before = server.message_files("alice");
    let result = server.python(
        "import smtpclient as s\n\
         c = s.connect()\n\
         utf8 = 'From: Zoë <zoë@example.org>\\r\\nTo: alice@test.example\\r\\nSubject: Grüße, 日本\\r\\n\\r\\nUTF-8 everywhere\\r\\n'.encode()\n\
         refused = c.sendmail('zoë@example.org', ['alice@test.example'], utf8, mail_options=['SMTPUTF8'])\n\
         c.quit()\n\
         r = s.Raw(); r.cmd('EHLO script.example'); r.cmd('MAIL FROM:<cron@example.org>')\n\
         r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
         r.send(b'Subject: nightly\\nFrom: cron@example.org\\n\\nall fine\\n..dot\\n\\r\\n.\\r\\n')\n\
         s.emit([refused, r.reply()])",
        &[],
    );
    assert_eq!(result[0], serde_json::json!({}), "{result}");
    assert!(
        result[1].as_str().unwrap_or_default().starts_with("250 "),
        "{result}"
    );
    let maildir = server.maildir("alice");
    let mut arrived: Vec<(String, Vec<u8>)> = server
        .message_files("alice")
        .into_iter()
        .filter(|name| !before.contains(name))
        .map(|path| {
            let data = std::fs::read(maildir.join(&path)).expect("delivered message");
            // The POP3 unique-id is the base name, without new/ or cur/.
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            (name, data)
        })
        .collect();
    assert_eq!(arrived.len(), 2);
    // In delivery order, as POP3 lists them: the names' microseconds are
    // not zero-padded, so name order would swap them now and then.
    arrived.sort_by_key(|(name, _)| yubin_store::name::delivery_time(name.as_bytes()));
    let text: Vec<String> = arrived
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect();
    assert!(
        text.iter()
            .any(|t| t.ends_with("Subject: Grüße, 日本\n\nUTF-8 everywhere\n")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.ends_with("Subject: nightly\nFrom: cron@example.org\n\nall fine\n.dot\n\n")),
        "{text:?}"
    );
    arrived
}

fn corpus_and_smtp(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    let mut messages = seed_corpus(server);
    messages.extend(send_by_smtp(server));
    messages
}

#[test]
fn issue11_poplib_keeps_then_deletes_the_whole_corpus() {
    let server = TestServer::start();
    let messages = corpus_and_smtp(&server);
    // Keep: every message, exact bytes, sizes, UIDLs; twice, and nothing
    // goes away.
    check_poplib(&server, &messages, "plain");
    check_poplib(&server, &messages, "ssl");
    assert_eq!(server.message_files("alice").len(), messages.len());
    // Delete: each message retrieved, then DELE, then QUIT.
    let result = server.python(
        "import popclient as p\n\
         c = p.connect(); p.login(c); got = []\n\
         for n in range(1, c.stat()[0] + 1):\n\
         \x20   _, lines, _ = c.retr(n); got.append((b'\\r\\n'.join(lines) + b'\\r\\n').hex()); c.dele(n)\n\
         c.quit(); p.emit(got)",
        &ALICE,
    );
    let received = hex_list(&result);
    assert_eq!(received.len(), messages.len());
    for ((name, stored), got) in messages.iter().zip(&received) {
        assert!(got == &expected_wire(stored), "{name} differs");
    }
    assert!(
        server.message_files("alice").is_empty(),
        "left behind: {:?}",
        server.message_files("alice")
    );
}

#[test]
fn issue11_curl_keeps_then_deletes_the_whole_corpus() {
    let server = TestServer::start();
    let messages = corpus_and_smtp(&server);
    let base = format!("pop3://127.0.0.1:{}/", server.pop3.port());
    let curl = |extra: &[&str], path: &str| {
        let url = format!("{base}{path}");
        let out = run(
            "curl",
            &[&["-s", "--user", "alice:alice-pw"], extra, &[url.as_str()]].concat(),
        );
        assert!(out.status.success(), "curl {extra:?} {url}: {out:?}");
        out.stdout
    };
    let listing = String::from_utf8(curl(&[], "")).expect("ASCII listing");
    assert_eq!(listing.lines().count(), messages.len(), "{listing}");
    // Keep: each message by number.
    for (i, (name, stored)) in messages.iter().enumerate() {
        let expected = expected_wire(stored);
        assert!(
            curl(&[], &(i + 1).to_string()) == expected,
            "{name} differs"
        );
        assert!(listing.contains(&format!("{} {}\r\n", i + 1, expected.len())));
    }
    assert_eq!(server.message_files("alice").len(), messages.len());
    // Delete: the first message, then DELE of it, in a session each; the
    // next session's message 1 is the next one.
    for (name, stored) in &messages {
        assert!(curl(&[], "1") == expected_wire(stored), "{name} differs");
        curl(&["-X", "DELE", "-I"], "1");
    }
    assert!(
        server.message_files("alice").is_empty(),
        "left behind: {:?}",
        server.message_files("alice")
    );
}

/// `utf8_headers = "downgrade"` over the whole corpus: for every message
/// LIST announces exactly the octets RETR sends; messages whose header has
/// no UTF-8 go out as stored; surrogate headers are ASCII.
#[test]
fn issue11_downgrade_sizes_agree_over_the_corpus() {
    let server = TestServer::with(crate::harness::Setup {
        pop3: "utf8_headers = \"downgrade\"\n".into(),
        ..crate::harness::Setup::default()
    });
    let messages = corpus_and_smtp(&server);
    let result = server.python(
        "import popclient as p\nc = p.connect(); p.login(c); r = p.fetch_all(c); c.quit(); p.emit(r)",
        &ALICE,
    );
    let received = hex_list(&result["messages"]);
    assert_eq!(received.len(), messages.len());
    let mut downgraded = 0;
    for (i, ((name, stored), got)) in messages.iter().zip(&received).enumerate() {
        assert_eq!(
            result["list"][i][1].as_u64(),
            Some(got.len() as u64),
            "{name}: LIST and RETR disagree"
        );
        let header_end = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(got.len());
        // RFC 6532: a header with UTF-8 beyond ASCII (legacy 8-bit
        // octets that are not UTF-8 are not downgraded).
        let stored_header = stored
            .windows(2)
            .position(|w| w == b"\n\n")
            .map_or(&stored[..], |end| &stored[..end]);
        let stored_header_is_utf8 =
            !stored_header.is_ascii() && std::str::from_utf8(stored_header).is_ok();
        if stored_header_is_utf8 {
            downgraded += 1;
            assert!(got[..header_end].is_ascii(), "{name}: surrogate not ASCII");
        } else {
            assert!(got == &expected_wire(stored), "{name} differs");
        }
    }
    // mail-parser's mail_test_12, the raw UTF-8 Subject variant and the
    // SMTPUTF8 message.
    assert_eq!(downgraded, 3);
}
