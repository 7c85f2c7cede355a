//! SMTP in, POP3 out: Python's smtplib sends, poplib fetches, over real
//! sockets, plain, STARTTLS and implicit TLS, with and without AUTH.

use crate::harness::{Setup, TestServer, hex_list, yubin};

/// A message with the awkward parts: dot lines (stuffed on the wire),
/// 8-bit UTF-8, empty lines, a long line, no trailing blank.
pub(crate) fn awkward_message() -> Vec<u8> {
    let mut m = b"From: Bob <bob@remote.example>\r\nTo: alice@test.example\r\nSubject: =?UTF-8?B?6YO15L6/?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    m.extend_from_slice(".\r\n..\r\n.leading dot\r\n\r\n\r\n郵便 is post\r\n".as_bytes());
    m.extend_from_slice(&[b'x'; 900]);
    m.extend_from_slice(b"\r\nlast line\r\n");
    m
}

/// Splits what POP3 returned into the lines yubin added and the rest.
fn split_trace(retrieved: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(retrieved);
    // Return-Path, then our Authentication-Results and Received fields
    // with their continuation lines.
    let mut end = 0;
    for (i, line) in text.split_inclusive("\r\n").enumerate() {
        let added = (i == 0 && line.starts_with("Return-Path: "))
            || (i > 0
                && (line.starts_with("Received: ")
                    || line.starts_with("Authentication-Results: ")
                    || line.starts_with('\t')));
        if !added {
            break;
        }
        end += line.len();
    }
    (text[..end].to_owned(), retrieved[end..].to_vec())
}

/// SMTP in → POP3 out returns the same bytes, plus Return-Path and Received.
#[test]
fn smtp_in_pop3_out_returns_the_same_bytes_plus_trace_headers() {
    let server = TestServer::start();
    let message = awkward_message();
    let result = server.python(
        &format!(
            "import smtpclient as s, popclient as p\n\
             r = s.send_once('bob@remote.example', ['alice@test.example'], bytes.fromhex('{}'))\n\
             c = p.connect(); c.user('alice'); c.pass_('alice-pw')\n\
             p.emit([r, p.fetch_all(c)['messages']])",
            hex(&message)
        ),
        &[],
    );
    assert_eq!(result[0]["error"], serde_json::Value::Null, "{result}");
    let fetched = hex_list(&result[1]);
    assert_eq!(fetched.len(), 1);
    let (trace, rest) = split_trace(&fetched[0]);
    assert_eq!(
        rest,
        message,
        "body changed:\n{}",
        String::from_utf8_lossy(&fetched[0])
    );
    // Our Authentication-Results sits above our Received (RFC 8601 §4).
    assert!(
        trace.starts_with(
            "Return-Path: <bob@remote.example>\r\nAuthentication-Results: test.example;"
        ) && trace.contains("\r\nReceived: from "),
        "{trace}"
    );
    assert!(
        trace.contains("by test.example (yubin) with ESMTP id "),
        "{trace}"
    );
    assert!(trace.contains("for <alice@test.example>;"), "{trace}");
    // Stored with LF line ends, and sizes in the name so POP3 reads no file.
    let files = server.message_files("alice");
    assert_eq!(files.len(), 1);
    assert!(
        files[0].contains(",S=") && files[0].contains(",W="),
        "{files:?}"
    );
    assert!(!server.messages("alice")[0].contains(&b'\r'));
}

/// Local recipients are accepted from anyone; unknown ones get 550 5.1.1,
/// non-local ones 554 5.7.1, and nothing is queued.
#[test]
fn an_mx_accepts_local_users_only() {
    let server = TestServer::start();
    let result = server.python(
        "import smtpclient as s\n\
         c = s.connect()\n\
         a = s.send(c, 'x@remote.example', ['alice@test.example', 'nobody@test.example', 'carol@elsewhere.example'], b'Subject: t\\r\\n\\r\\nhi\\r\\n')\n\
         b = s.send(c, 'x@remote.example', ['carol@elsewhere.example'], b'Subject: t\\r\\n\\r\\nhi\\r\\n')\n\
         s.emit([a, b])",
        &[],
    );
    let refused = &result[0]["refused"];
    assert_eq!(refused["nobody@test.example"][0], 550);
    assert!(
        refused["nobody@test.example"][1]
            .as_str()
            .unwrap()
            .starts_with("5.1.1"),
        "{refused}"
    );
    assert_eq!(refused["carol@elsewhere.example"][0], 554);
    assert_eq!(
        refused["carol@elsewhere.example"][1],
        "5.7.1 <carol@elsewhere.example>: Relay access denied"
    );
    assert_eq!(result[1]["error"], "all refused");
    assert_eq!(server.message_files("alice").len(), 1);
    assert!(server.queued().is_empty());
}

/// Submission: STARTTLS, AUTH, then relaying into the queue; without AUTH
/// the sender is refused.
#[test]
fn submission_with_starttls_and_auth_relays_into_the_queue() {
    let server = TestServer::start();
    let result = server.python(
        "import smtpclient as s\n\
         c = s.connect('submission')\n\
         anonymous = s.send(c, 'alice@test.example', ['carol@elsewhere.example'], b'Subject: t\\r\\n\\r\\nhi\\r\\n')\n\
         c.ehlo(); code = c.login('alice', 'alice-pw')[0]\n\
         sent = s.send(c, 'alice@test.example', ['carol@elsewhere.example', 'bob@test.example'], b'Subject: t\\r\\n\\r\\nhi\\r\\n')\n\
         c.quit()\n\
         s.emit([anonymous, code, sent])",
        &[],
    );
    assert_eq!(
        result[0]["error"],
        serde_json::json!([530, "5.7.0 Authentication required"])
    );
    assert_eq!(result[1], 235);
    assert_eq!(result[2]["error"], serde_json::Value::Null, "{result}");
    assert_eq!(server.queued().len(), 1);
    // The relayed copy has a Received line (ESMTPSA: TLS and AUTH) but no
    // Return-Path, which only final delivery adds.
    let entry = server.queued_entry(&server.queued()[0]);
    assert!(
        entry.contains("rcpt <carol@elsewhere.example>\n"),
        "{entry}"
    );
    assert!(entry.contains("with ESMTPSA id"), "{entry}");
    assert!(entry.contains("(authenticated as alice)"), "{entry}");
    assert!(!entry.contains("Return-Path:"), "{entry}");
    assert!(!entry.contains("alice-pw"));
    // bob got his copy locally.
    let bob = server.messages("bob");
    assert_eq!(bob.len(), 1);
    assert!(String::from_utf8_lossy(&bob[0]).starts_with("Return-Path: <alice@test.example>\n"));
}

/// Implicit TLS (port 465 style), AUTH LOGIN and AUTH PLAIN with a
/// SHA512-CRYPT user; AU-02: unknown user and wrong password look alike.
#[test]
fn submissions_with_implicit_tls_and_auth_failures_that_look_alike() {
    let server = TestServer::start();
    let result = server.python(
        "import smtpclient as s, smtplib\n\
         def try_login(mech, user, pw):\n\
         \x20   c = s.connect('submissions'); c.ehlo(); c.user, c.password = user, pw\n\
         \x20   try:\n\
         \x20       r = c.auth(mech, getattr(c, 'auth_' + mech.lower().replace('-', '_')))\n\
         \x20   except smtplib.SMTPAuthenticationError as e:\n\
         \x20       r = (e.smtp_code, e.smtp_error)\n\
         \x20   c.close(); return [r[0], r[1].decode()]\n\
         s.emit([try_login('LOGIN', 'bob', 'secret'), try_login('PLAIN', 'bob', 'secret'),\n\
         \x20       try_login('PLAIN', 'bob', 'wrong'), try_login('PLAIN', 'nobody', 'wrong'),\n\
         \x20       try_login('CRAM-MD5', 'alice', 'alice-pw')])",
        &[],
    );
    assert_eq!(result[0][0], 235, "{result}");
    assert_eq!(result[1][0], 235, "{result}");
    assert_eq!(
        result[2],
        serde_json::json!([535, "5.7.8 Authentication credentials invalid"])
    );
    assert_eq!(
        result[2], result[3],
        "AU-02: unknown user looks like a wrong password"
    );
    assert_eq!(result[4][0], 235, "{result}");
    let log = server.log();
    assert!(
        !log.contains("secret") && !log.contains("alice-pw"),
        "AU-07"
    );
}

/// SCRAM-SHA-256 over SMTP (smtplib has no SCRAM; this is a client written
/// from RFC 5802 in the test helpers).
#[test]
fn scram_sha_256_authenticates_over_smtp() {
    let server = TestServer::with(Setup {
        users: vec![(
            "sam".into(),
            // `doveadm pw -s SCRAM-SHA-256 -p pencil`-style entry made by yubin.
            String::from_utf8(
                yubin(
                    &["pw", "-s", "SCRAM-SHA-256", "--password-stdin"],
                    "pencil\n",
                    std::path::Path::new("/"),
                )
                .stdout,
            )
            .unwrap()
            .trim()
            .to_owned(),
        )],
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s, popclient as p\n\
         r = s.Raw(); r.cmd('EHLO client.example')\n\
         ok = p.scram_login(r, 'sam', 'pencil', cont='334 ')\n\
         r2 = s.Raw(); r2.cmd('EHLO client.example')\n\
         bad = p.scram_login(r2, 'sam', 'crayon', cont='334 ')\n\
         s.emit([ok, bad])",
        &[],
    );
    assert_eq!(result[0], "235 2.7.0 Authentication successful");
    assert_eq!(result[1], "535 5.7.8 Authentication credentials invalid");
}

/// AU-06: off loopback and without TLS, EHLO hides AUTH and AUTH is
/// refused; after STARTTLS it is offered.
#[test]
fn au06_smtp_auth_needs_tls_off_loopback() {
    let server = TestServer::with(Setup {
        any_address: true,
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s, popclient as p\n\
         host = p.non_loopback_address()\n\
         r = s.Raw(port=s.os.environ['SUBMISSION_PORT'], host=host)\n\
         ehlo = r.cmd('EHLO client.example')\n\
         auth = r.cmd('AUTH PLAIN AGFsaWNlAGFsaWNlLXB3')\n\
         c = s.smtplib.SMTP(host, int(s.os.environ['SUBMISSION_PORT']), timeout=30)\n\
         c.starttls(context=s.tls_context()); c.ehlo()\n\
         s.emit([host, ehlo, auth, c.esmtp_features.get('auth', ''), c.login('alice', 'alice-pw')[0]])",
        &[],
    );
    assert!(!result[0].as_str().unwrap().starts_with("127."));
    let ehlo = result[1].as_str().unwrap();
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(result[2], "530 5.7.0 Must issue a STARTTLS command first");
    assert!(result[3].as_str().unwrap().contains("PLAIN"), "{result}");
    assert_eq!(result[4], 235);
}

/// TL-01: commands pipelined after STARTTLS in the same write are
/// discarded, never answered inside the TLS session.
#[test]
fn tl01_commands_injected_after_starttls_are_discarded() {
    let server = TestServer::start();
    let result = server.python(
        "import smtpclient as s\n\
         r = s.Raw(port=s.os.environ['SUBMISSION_PORT']); r.cmd('EHLO client.example')\n\
         r.send(b'STARTTLS\\r\\nRSET\\r\\nMAIL FROM:<evil@x>\\r\\n')\n\
         go = r.reply(); r.starttls()\n\
         first = r.cmd('NOOP')\n\
         mail = r.cmd('MAIL FROM:<a@b.example>')\n\
         again = r.cmd('STARTTLS')\n\
         s.emit([go, first, mail, again])",
        &[],
    );
    assert_eq!(result[0], "220 2.0.0 Ready to start TLS");
    assert_eq!(result[1], "250 2.0.0 OK", "no reply to the injected RSET");
    // TL-02: EHLO is forgotten after TLS; STARTTLS is not available twice.
    assert_eq!(result[2], "503 5.5.1 Send EHLO or HELO first");
    assert_eq!(result[3], "503 5.5.1 TLS already active");
}

/// Sends, over a raw socket, a message with `vector` inside it followed by
/// a smuggled second transaction for bob; returns the reply to the end of
/// data and to a NOOP after it.
fn smuggle(server: &TestServer, vector: &str) -> (String, String) {
    let result = server.python(
        &format!(
            "import smtpclient as s\n\
             r = s.Raw(); r.cmd('EHLO client.example'); r.cmd('MAIL FROM:<a@remote.example>')\n\
             r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
             r.send(b'Subject: legit\\r\\n\\r\\nhi{vector}MAIL FROM:<spoof@remote.example>\\r\\nRCPT TO:<bob@test.example>\\r\\nDATA\\r\\nSubject: spoofed\\r\\n\\r\\nx\\r\\n.\\r\\n')\n\
             end = r.reply(); after = r.cmd('NOOP')\n\
             s.emit([end, after])"
        ),
        &[],
    );
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    (text(&result[0]), text(&result[1]))
}

/// SI-01 over a socket, with bare line ends refused (`bare_lf = "reject"`):
/// bare line ends inside DATA never end it; the message is refused and the
/// smuggled transaction never runs.
#[test]
fn si01_smuggled_transactions_are_never_delivered() {
    let server = TestServer::with(Setup {
        smtp: "bare_lf = \"reject\"\n".into(),
        ..Setup::default()
    });
    for vector in ["\\n.\\r\\n", "\\r.\\r\\n", "\\n.\\n", "\\r\\n.\\n"] {
        let (end, after) = smuggle(&server, vector);
        assert_eq!(
            end, "550 5.5.2 Message contains bare CR or LF; lines must end with CRLF",
            "{vector}"
        );
        assert_eq!(after, "250 2.0.0 OK", "{vector}: session in sync");
    }
    assert!(server.message_files("alice").is_empty());
    assert!(server.message_files("bob").is_empty());
}

/// SI-01 on the defaults (issue 11): a bare LF is a line end, as Postfix
/// takes it, so the smuggled transaction is one message's text and never
/// runs; a bare CR is refused.
#[test]
fn si01_smuggling_on_the_defaults_delivers_one_message_and_runs_nothing() {
    let server = TestServer::start();
    for vector in ["\\n.\\r\\n", "\\n.\\n", "\\r\\n.\\n"] {
        let (end, after) = smuggle(&server, vector);
        assert!(
            end.starts_with("250 2.0.0 Ok: queued as "),
            "{vector}: {end}"
        );
        assert_eq!(after, "250 2.0.0 OK", "{vector}: session in sync");
    }
    for vector in ["\\r.\\r\\n", "\\r\\n.\\r"] {
        let (end, _) = smuggle(&server, vector);
        assert_eq!(
            end, "550 5.5.2 Message contains bare CR or LF; lines must end with CRLF",
            "{vector}"
        );
    }
    let files = server.message_files("alice");
    assert_eq!(files.len(), 3);
    for file in files {
        let stored = std::fs::read(server.maildir("alice").join(&file)).expect("read the message");
        let body = &stored[stored
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("header end")..];
        assert_eq!(
            body,
            b"\n\nhi\n.\nMAIL FROM:<spoof@remote.example>\nRCPT TO:<bob@test.example>\nDATA\nSubject: spoofed\n\nx\n"
        );
    }
    assert!(server.message_files("bob").is_empty());
}

/// Issue 11: a sender whose lines end in a bare LF (a script, an
/// appliance, an old library) gets its mail delivered, line for line.
#[test]
fn issue11_mail_with_lf_line_ends_is_delivered() {
    let server = TestServer::start();
    let result = server.python(
        "import smtpclient as s\n\
         r = s.Raw(); r.cmd('EHLO script.example'); r.cmd('MAIL FROM:<cron@remote.example>')\n\
         r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
         r.send(b'Subject: nightly report\\n\\nall good\\n..leading dot\\n\\r\\n.\\r\\n')\n\
         s.emit([r.reply()])",
        &[],
    );
    assert!(
        result[0].as_str().unwrap_or_default().starts_with("250 "),
        "{result:?}"
    );
    let files = server.message_files("alice");
    assert_eq!(files.len(), 1);
    let stored = std::fs::read(server.maildir("alice").join(&files[0])).expect("read the message");
    assert!(
        stored.ends_with(b"\nSubject: nightly report\n\nall good\n.leading dot\n\n"),
        "{:?}",
        String::from_utf8_lossy(&stored)
    );
}

/// RFC 1870: a message's size counts its CR-LF pairs. With a limit of
/// 10,000 octets, a hundred lines of 98 octets and their CRLFs (exactly
/// 10,000) are taken and one octet more is refused, by DATA as by BDAT.
#[test]
fn rfc1870_the_size_limit_counts_crlf_in_data_as_in_bdat() {
    let server = TestServer::with(Setup {
        smtp: "max_message_size = 10000\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s\n\
         fits = (b'x' * 98 + b'\\r\\n') * 100\n\
         over = b'y' + fits\n\
         r = s.Raw(); r.cmd('EHLO client.example')\n\
         out = []\n\
         for body in (fits, over):\n\
         \x20   r.cmd('MAIL FROM:<a@remote.example>'); r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
         \x20   r.send(body + b'.\\r\\n'); out.append(r.reply())\n\
         for body in (fits, over):\n\
         \x20   r.cmd('MAIL FROM:<a@remote.example>'); r.cmd('RCPT TO:<alice@test.example>')\n\
         \x20   r.send(b'BDAT %d LAST\\r\\n' % len(body) + body); out.append(r.reply())\n\
         r.cmd('QUIT'); s.emit(out)",
        &[],
    );
    let codes: Vec<&str> = result
        .as_array()
        .expect("replies")
        .iter()
        .map(|r| r.as_str().unwrap_or_default().get(..3).unwrap_or_default())
        .collect();
    assert_eq!(codes, ["250", "552", "250", "552"], "{result}");
}

/// SI-06, SI-07, SI-09, SI-10, SI-11, SI-13 in one conversation each.
#[test]
fn si_rules_for_senders_sequence_size_recipients_and_vrfy() {
    let server = TestServer::with(Setup {
        smtp: "auth_failure_delay = \"100ms\"\nmax_message_size = 10000\nmax_recipients = 3\n"
            .into(),
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s\n\
         r = s.Raw()\n\
         early = r.cmd('MAIL FROM:<a@remote.example>')\n\
         ehlo = r.cmd('EHLO evil\\x01name')\n\
         r.cmd('EHLO client(x).example')\n\
         rcpt_first = r.cmd('RCPT TO:<alice@test.example>')\n\
         null = r.cmd('MAIL FROM:<>')\n\
         nested = r.cmd('MAIL FROM:<b@remote.example>')\n\
         null_rcpt = r.cmd('RCPT TO:<>')\n\
         rcpts = [r.cmd('RCPT TO:<alice@test.example>') for _ in range(4)]\n\
         r.cmd('RSET')\n\
         size = r.cmd('MAIL FROM:<a@remote.example> SIZE=99999999999999999999')\n\
         param = r.cmd('MAIL FROM:<a@remote.example> FROBNICATE=1')\n\
         r.cmd('MAIL FROM:<a@remote.example>'); r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
         r.send(b'x' * 990 + b'\\r\\n'); r.send((b'y' * 998 + b'\\r\\n') * 30); r.send(b'.\\r\\n')\n\
         big = r.reply()\n\
         vrfy = [r.cmd('VRFY alice'), r.cmd('VRFY nobody')]\n\
         expn = r.cmd('EXPN staff')\n\
         r.cmd('MAIL FROM:<>'); r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
         bounce = r.cmd('Subject: bounce\\r\\n\\r\\nx\\r\\n.')\n\
         s.emit([early, ehlo, rcpt_first, null, nested, null_rcpt, rcpts, size, param, big, vrfy, expn, bounce])",
        &[],
    );
    let code = |v: &serde_json::Value| v.as_str().unwrap()[..3].to_owned();
    assert_eq!(result[0], "503 5.5.1 Send EHLO or HELO first");
    assert_eq!(result[1], "500 5.5.2 Invalid characters in command");
    assert_eq!(result[2], "503 5.5.1 Send MAIL first");
    assert_eq!(
        result[3], "250 2.1.0 Sender OK",
        "SI-06: null sender accepted"
    );
    assert_eq!(result[4], "503 5.5.1 Sender already given");
    assert_eq!(code(&result[5]), "501", "SI-06: null recipient refused");
    let rcpts: Vec<String> = result[6].as_array().unwrap().iter().map(code).collect();
    assert_eq!(rcpts, ["250", "250", "250", "452"], "SI-10");
    assert_eq!(code(&result[7]), "552", "{}", result[7]);
    assert_eq!(code(&result[8]), "555", "{}", result[8]);
    assert_eq!(
        result[9], "552 5.3.4 Message size exceeds fixed maximum message size",
        "SI-09"
    );
    assert_eq!(result[10][0], result[10][1], "SI-13: VRFY reveals nothing");
    assert_eq!(code(&result[10][0]), "252");
    assert_eq!(code(&result[11]), "502");
    assert!(
        result[12].as_str().unwrap().starts_with("250 2.0.0"),
        "{result}"
    );
    // SI-11: the client's EHLO name reached the header made safe, one line.
    let stored = String::from_utf8(server.messages("alice").concat()).unwrap();
    assert!(
        stored.starts_with("Return-Path: <>\n")
            && stored.contains("\nReceived: from client?x?.example ([127.0.0.1])\n"),
        "{stored}"
    );
}

/// `yubin deliver` for Postfix's mailbox_command: sysexits codes, and the
/// message comes out of POP3 as it went in.
#[test]
fn deliver_command_puts_mail_where_pop3_finds_it() {
    let server = TestServer::start();
    let config = server.config_path();
    let config = config.to_str().unwrap();
    let message = "Subject: via deliver\r\n\r\nbody\r\n..dot stays doubled\r\n";
    let out = yubin(
        &[
            "deliver",
            "--user",
            "alice",
            "-f",
            "bob@remote.example",
            "--config",
            config,
        ],
        message,
        server.dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = yubin(
        &["deliver", "--user", "nobody", "--config", config],
        message,
        server.dir.path(),
    );
    assert_eq!(out.status.code(), Some(67), "EX_NOUSER");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown user nobody"));
    let out = yubin(
        &[
            "deliver",
            "--user",
            "alice",
            "--config",
            "/nonexistent.toml",
        ],
        message,
        server.dir.path(),
    );
    assert_eq!(out.status.code(), Some(75), "EX_TEMPFAIL: the MTA retries");
    let result = server.python(
        "import popclient as p\n\
         c = p.connect(); c.user('alice'); c.pass_('alice-pw')\n\
         p.emit(p.fetch_all(c)['messages'])",
        &[],
    );
    let fetched = hex_list(&result);
    assert_eq!(fetched.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&fetched[0]),
        format!("Return-Path: <bob@remote.example>\r\n{message}")
    );
}

/// The queue survives a restart and `yubin queue list` shows it.
#[test]
fn queued_mail_survives_a_restart_and_is_listed() {
    let mut server = TestServer::with(Setup {
        smtp: "auth_failure_delay = \"100ms\"\nrelay_networks = [\"127.0.0.0/8\"]\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s\n\
         s.emit(s.send_once('alice@test.example', ['carol@elsewhere.example', 'dave@elsewhere.example'], b'Subject: q\\r\\n\\r\\nhi\\r\\n'))",
        &[],
    );
    assert_eq!(result["error"], serde_json::Value::Null);
    server.restart();
    let config = server.config_path();
    let out = yubin(
        &["queue", "list", "--config", config.to_str().unwrap()],
        "",
        server.dir.path(),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("from <alice@test.example>"), "{text}");
    assert!(text.contains("to <carol@elsewhere.example>"), "{text}");
    assert!(text.contains("to <dave@elsewhere.example>"), "{text}");
    assert!(text.contains("(network)"), "{text}");
    assert!(text.ends_with("1 message queued\n"), "{text}");
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 5321 §4.5.3.2.7: the command timeout counts from the last reply, so
/// a command trickled in a byte at a time is cut off with 421 4.4.2, while
/// message content that keeps flowing is not; content trickled below the
/// minimum data rate (500 octets/s on average, after a first timeout) is.
#[test]
fn a_trickled_command_times_out_but_flowing_content_does_not() {
    let server = TestServer::with(Setup {
        smtp: "auth_failure_delay = \"100ms\"\ntimeout = \"2s\"\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s, time\n\
         def trickle(r, data, pause):\n\
         \x20   started = time.monotonic()\n\
         \x20   for byte in data:\n\
         \x20       if s.select.select([r.sock], [], [], pause)[0]: break\n\
         \x20       r.send(bytes([byte]))\n\
         \x20   return [r.reply(), time.monotonic() - started]\n\
         r = s.Raw(); r.cmd('EHLO client.example')\n\
         command = trickle(r, b'NOOP NOOP NOOP NOOP NOOP NOOP', 0.25)\n\
         r = s.Raw(); r.cmd('EHLO client.example'); r.cmd('MAIL FROM:<a@remote.example>')\n\
         r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
         content = trickle(r, b'Subject: trickled' * 10, 1.0)\n\
         r = s.Raw(); r.cmd('EHLO client.example'); r.cmd('MAIL FROM:<a@remote.example>')\n\
         r.cmd('RCPT TO:<alice@test.example>'); r.cmd('DATA')\n\
         r.send(b'Subject: slow\\r\\n\\r\\n')\n\
         for i in range(16):\n\
         \x20   r.send(b'line %d ' % i + b'x' * 1000 + b'\\r\\n'); time.sleep(0.25)\n\
         s.emit([command, content, r.cmd('.')])",
        &[],
    );
    for (what, cut) in [("command", &result[0]), ("content", &result[1])] {
        assert_eq!(
            cut[0], "421 4.4.2 Timeout exceeded; closing connection",
            "{what}"
        );
        let elapsed = cut[1].as_f64().expect("elapsed seconds");
        assert!(
            (1.5..5.0).contains(&elapsed),
            "{what} cut after {elapsed} s"
        );
    }
    assert!(
        result[2].as_str().unwrap().starts_with("250 2.0.0"),
        "{result}"
    );
    assert_eq!(server.messages("alice").len(), 1);
}

/// Issue 14, submission hygiene (RFC 6409 §8): a submitted message without
/// `Date:` or `Message-ID:` gets them, once, in every copy (local and
/// queued); one that has them keeps its own; mail from outside for a local
/// user is stored as it came. With `hide_client`, the Received line of a
/// submission names neither the client's host nor its address.
#[test]
fn issue14_submitted_mail_gets_date_and_message_id() {
    let server = TestServer::with(Setup {
        smtp: "auth_failure_delay = \"100ms\"\nhide_client = true\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s\n\
         c = s.connect('submission'); c.ehlo(); c.login('alice', 'alice-pw')\n\
         bare = s.send(c, 'alice@test.example', ['carol@elsewhere.example', 'bob@test.example'], b'Subject: bare\\r\\n\\r\\nhi\\r\\n')\n\
         own = s.send(c, 'alice@test.example', ['bob@test.example'], b'Subject: own\\r\\nDate: Tue, 1 Dec 2026 10:00:00 +0000\\r\\nMessage-Id: <mine@alice.example>\\r\\n\\r\\nhi\\r\\n')\n\
         c.quit()\n\
         outside = s.send_once('x@remote.example', ['alice@test.example'], b'Subject: from outside\\r\\n\\r\\nhi\\r\\n')\n\
         s.emit([bare, own, outside])",
        &[],
    );
    for (i, sent) in result.as_array().unwrap().iter().enumerate() {
        assert_eq!(
            sent["error"],
            serde_json::Value::Null,
            "message {i}: {result}"
        );
    }
    let count = |text: &str, field: &str| {
        text.lines()
            .take_while(|l| !l.is_empty())
            .filter(|l| l.to_ascii_lowercase().starts_with(field))
            .count()
    };
    let bob: Vec<String> = server
        .messages("bob")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let bare = bob.iter().find(|m| m.contains("Subject: bare")).unwrap();
    let own = bob.iter().find(|m| m.contains("Subject: own")).unwrap();
    assert_eq!(count(bare, "date:"), 1, "{bare}");
    assert_eq!(count(bare, "message-id:"), 1, "{bare}");
    assert!(bare.contains("@test.example>\n"), "{bare}");
    assert_eq!(count(own, "date:"), 1, "{own}");
    assert!(own.contains("Message-Id: <mine@alice.example>"), "{own}");
    assert_eq!(count(own, "message-id:"), 1, "{own}");
    // The queued copy carries the same additions.
    let entry = server.queued_entry(&server.queued()[0]);
    let message = entry.split_once("\n\n").map_or("", |(_, m)| m);
    assert_eq!(count(message, "date:"), 1, "{entry}");
    assert_eq!(count(message, "message-id:"), 1, "{entry}");
    // hide_client: no `from` clause, no address literal, on submissions.
    assert!(
        bare.contains("\nReceived: by test.example (yubin) with ESMTPSA id "),
        "{bare}"
    );
    assert!(!bare.contains("[127.0.0.1]"), "{bare}");
    // Mail from outside is left as it came, and keeps its full trace.
    let alice = String::from_utf8_lossy(&server.messages("alice")[0]).into_owned();
    assert_eq!(count(&alice, "date:"), 0, "{alice}");
    assert_eq!(count(&alice, "message-id:"), 0, "{alice}");
    assert!(
        alice.contains("Received: from ") && alice.contains("[127.0.0.1]"),
        "{alice}"
    );
}
