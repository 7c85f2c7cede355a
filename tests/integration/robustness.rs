//! Faults and hostile input against the running server (reliability.md
//! §3.3 and §3.4), and the response codes that only show up in them.

use std::io::BufRead;
use std::time::Duration;

use crate::harness::{Setup, TestServer, expected_wire, hex_list};

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];

/// PS-03: a crash (kill -9) during UPDATE removes only messages marked
/// deleted; every unmarked message survives with its unique-id.
#[test]
fn ps03_crash_during_update_removes_only_marked_messages() {
    let mut server = TestServer::start();
    let maildir = server.maildir("alice");
    for i in 0..2000 {
        std::fs::write(
            maildir.join(format!("new/{}.m{i}.host", 1_700_000_000 + i)),
            format!("Subject: {i}\n\nx\n"),
        )
        .unwrap();
    }
    let script = "import popclient as p\n\
                  r = p.Raw(); r.login()\n\
                  r.send(b''.join(b'DELE %d\\r\\n' % n for n in range(1, 2001, 2)))\n\
                  for n in range(1000): r.line()\n\
                  r.send(b'QUIT\\r\\n')\n\
                  print('sent', flush=True)\n\
                  import time; time.sleep(5)";
    let mut child = server.python_spawn(script, &ALICE);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "sent");
    server.kill9();
    let _ = child.kill();
    let _ = child.wait();
    // Messages 1, 3, 5, … were marked (i even); all odd i must be there.
    let present: std::collections::HashSet<usize> = server
        .message_files("alice")
        .iter()
        .filter_map(|f| f.split(".m").nth(1)?.split('.').next()?.parse().ok())
        .collect();
    for i in (1..2000).step_by(2) {
        assert!(present.contains(&i), "unmarked message {i} was removed");
    }
    let removed = 2000 - present.len();
    assert!(removed <= 1000);
    server.launch();
    let stat = server.python(
        "import popclient as p\nr = p.Raw(); r.login(); p.emit(r.cmd('STAT'))",
        &ALICE,
    );
    assert!(
        stat.as_str()
            .unwrap()
            .starts_with(&format!("+OK {} ", present.len())),
        "{stat}"
    );
}

/// PS-04: when some removals fail, QUIT answers -ERR [SYS/TEMP] and the
/// other marked messages are still removed.
#[test]
fn ps04_a_failed_removal_is_reported_and_the_rest_done() {
    let server = TestServer::start();
    for i in 1..=3 {
        server.put_message(
            "alice",
            &format!("170000000{i}.m{i}.host"),
            b"Subject: x\n\nx\n",
        );
    }
    let new = server.maildir("alice").join("new");
    let result = server.python(
        &format!(
            "import popclient as p, os\n\
             r = p.Raw(); r.login(); r.cmd('DELE 1'); r.cmd('DELE 2')\n\
             # Another program swaps message 1 for a directory: unlink(2) now fails.\n\
             os.remove('{0}/1700000001.m1.host'); os.mkdir('{0}/1700000001.m1.host')\n\
             p.emit(r.cmd('QUIT'))",
            new.display()
        ),
        &ALICE,
    );
    assert_eq!(result, "-ERR [SYS/TEMP] 1 deleted messages not removed.");
    let files = server.message_files("alice");
    assert_eq!(
        files,
        vec![
            "new/1700000001.m1.host".to_owned(),
            "new/1700000003.m3.host".to_owned()
        ]
    );
}

/// PS-07: clients that drop in the middle of a large RETR leave nothing
/// behind: no UPDATE, the lock freed at once, no leaked descriptors.
#[test]
fn ps07_dropping_mid_retr_leaks_nothing() {
    let server = TestServer::start();
    let mut big = b"Subject: big\n\n".to_vec();
    while big.len() < 20 << 20 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\n",
        );
    }
    server.put_message("alice", "1700000001.big.host", &big);
    server.put_message("alice", "1700000002.small.host", b"Subject: small\n\nx\n");
    server.python(
        "import popclient as p\nr = p.Raw(); r.login(); r.cmd('QUIT'); p.emit(0)",
        &ALICE,
    );
    std::thread::sleep(Duration::from_millis(200));
    let baseline = server.fd_count();
    let result = server.python(
        "import popclient as p, time\n\
         for i in range(10):\n\
         \x20   r = p.Raw(); r.login(); r.send(b'DELE 2\\r\\nRETR 1\\r\\n')\n\
         \x20   got = 0\n\
         \x20   while got < 1000000: got += len(r.sock.recv(65536))\n\
         \x20   r.sock.close()\n\
         time.sleep(0.3)\n\
         r = p.Raw(); p.emit([r.login(), r.cmd('STAT')])",
        &ALICE,
    );
    assert!(
        result[0]
            .as_str()
            .unwrap()
            .starts_with("+OK Logged in, 2 messages"),
        "{result}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = server.fd_count();
    assert!(
        after <= baseline + 2,
        "descriptors: {baseline} before, {after} after"
    );
    assert_eq!(
        server.message_files("alice").len(),
        2,
        "DELE without QUIT removed something"
    );
}

/// PI-02: a huge line without a newline, before login, costs no memory and
/// gets one -ERR; the session then goes on.
#[test]
fn pi02_endless_line_before_login_is_bounded() {
    let server = TestServer::start();
    let before = server.rss_kib();
    let result = server.python(
        "import popclient as p\n\
         r = p.Raw()\n\
         for i in range(160): r.send(b'A' * 65536)\n\
         first = r.line()\n\
         r.send(b'still the long line\\r\\nCAPA\\r\\n'); capa = r.line(); r.multi()\n\
         p.emit([first, capa])",
        &[],
    );
    assert_eq!(result[0], "-ERR Line too long.");
    assert_eq!(result[1], "+OK Capability list follows");
    let after = server.rss_kib();
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB over a 10 MB line"
    );
}

/// PI-07: path-like and odd user names get the generic failure.
#[test]
fn pi07_odd_user_names_are_plain_failures() {
    let server = TestServer::with(Setup {
        pop3: "auth_failure_delay = \"0\"\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import popclient as p\n\
         out = []\n\
         for name in ['../../etc', 'a/../alice', 'alice@../../x', '.', 'ALICE', 'alice ', '%s%n', '${jndi:x}']:\n\
         \x20   r = p.Raw(); r.cmd('USER ' + name); out.append(r.cmd('PASS alice-pw'))\n\
         p.emit(out)",
        &[],
    );
    let replies: Vec<&str> = result
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // ALICE is alice (names compare without regard to ASCII case); 'alice '
    // is one argument plus a trailing space, which is allowed.
    assert!(replies[4].starts_with("+OK Logged in"), "{replies:?}");
    assert!(replies[5].starts_with("+OK Logged in"), "{replies:?}");
    for (i, reply) in replies
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4 && *i != 5)
    {
        assert_eq!(*reply, "-ERR [AUTH] Authentication failed.", "name {i}");
    }
    assert!(!server.dir.path().join("etc").exists());
}

/// PI-08: SASL abuse: cancel, bad base64, authzid for another user, an
/// oversized blob, an unknown mechanism.
#[test]
fn pi08_sasl_abuse_is_refused() {
    let server = TestServer::with(Setup {
        pop3: "auth_failure_delay = \"0\"\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import popclient as p, base64\n\
         r = p.Raw(); out = [r.cmd('AUTH PLAIN'), r.cmd('*')]\n\
         out.append(r.cmd('AUTH PLAIN =AAA'))\n\
         out.append(r.cmd('AUTH PLAIN ' + base64.b64encode(b'bob\\0alice\\0alice-pw').decode()))\n\
         r = p.Raw(); r.cmd('AUTH PLAIN'); out.append(r.cmd('A' * 100000)); out.append(r.cmd('QUIT'))\n\
         r = p.Raw(); out.append(r.cmd('AUTH NTLM'))\n\
         r = p.Raw(); out.append(r.cmd('AUTH PLAIN ' + base64.b64encode(b'\\0alice\\0alice-pw').decode()))\n\
         p.emit(out)",
        &[],
    );
    let r: Vec<&str> = result
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(r[0], "+ ");
    assert_eq!(r[1], "-ERR Authentication cancelled.");
    assert_eq!(r[2], "-ERR Invalid base64 in initial response.");
    assert_eq!(
        r[3], "-ERR [AUTH] Authentication failed.",
        "authzid of another user"
    );
    assert_eq!(r[4], "-ERR Line too long; authentication aborted.");
    assert_eq!(
        r[5], "+OK Logging out.",
        "the line after an aborted exchange is a command"
    );
    assert_eq!(r[6], "-ERR Unsupported authentication mechanism.");
    assert!(r[7].starts_with("+OK Logged in"));
}

/// PI-09: a fresh APOP timestamp for every connection.
#[test]
fn pi09_apop_timestamps_never_repeat() {
    let server = TestServer::start();
    let result = server.python(
        "import popclient as p\n\
         seen = set()\n\
         for i in range(500):\n\
         \x20   r = p.Raw(); seen.add(r.greeting); r.sock.close()\n\
         p.emit(len(seen))",
        &[],
    );
    assert_eq!(result, 500);
}

/// LOGIN-DELAY (RFC 2449 §6.5): announced and enforced after the credentials.
#[test]
fn login_delay_is_announced_and_enforced() {
    let server = TestServer::with(Setup {
        pop3: "login_delay = \"30s\"\nauth_failure_delay = \"0\"\nexpire = \"never\"\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import popclient as p\n\
         c = p.connect(); capa = c.capa(); p.login(c); c.quit()\n\
         r = p.Raw(); r.cmd('USER alice'); wrong = r.cmd('PASS wrong')\n\
         r.cmd('USER alice'); again = r.cmd('PASS alice-pw')\n\
         p.emit([capa.get('LOGIN-DELAY'), capa.get('EXPIRE'), wrong, again])",
        &ALICE,
    );
    assert_eq!(result[0], serde_json::json!(["30"]));
    assert_eq!(result[1], serde_json::json!(["NEVER"]));
    assert_eq!(
        result[2], "-ERR [AUTH] Authentication failed.",
        "a wrong password is not a login delay"
    );
    assert!(
        result[3]
            .as_str()
            .unwrap()
            .starts_with("-ERR [LOGIN-DELAY] "),
        "{}",
        result[3]
    );
}

/// Issue 11: on the defaults, a maildrop with a UTF-8 header among other
/// messages is fetched and emptied by a client that never sends `UTF8`
/// (poplib's retrieval loop, as every common client does it): every message
/// arrives as it is stored, with the size LIST announced.
#[test]
fn issue11_utf8_headers_reach_clients_without_utf8_mode() {
    let server = TestServer::start();
    let messages: [&[u8]; 4] = [
        b"Subject: first\n\none\n",
        "From: Zoë <zoe@example.org>\nSubject: café ☕\n\nbody\n".as_bytes(),
        b"Subject: Gr\xfc\xdfe (Latin-1)\n\nHallo\n",
        b"Subject: last\n\nfour\n",
    ];
    for (i, message) in messages.iter().enumerate() {
        server.put_message("alice", &format!("170000000{i}.m{i}.host"), message);
    }
    let result = server.python(
        "import popclient as p\n\
         c = p.connect(); p.login(c); got = p.fetch_all(c)\n\
         for n in range(1, len(got['list']) + 1): c.dele(n)\n\
         c.quit(); p.emit(got)",
        &ALICE,
    );
    let expected: Vec<String> = messages
        .iter()
        .map(|m| {
            expected_wire(m)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect();
    assert_eq!(result["messages"], serde_json::json!(expected));
    for (listed, message) in result["list"].as_array().unwrap().iter().zip(&expected) {
        assert_eq!(listed[1].as_u64(), Some(message.len() as u64 / 2));
    }
    assert!(server.message_files("alice").is_empty(), "all deleted");
}

/// RFC 6856 with `utf8_headers = "refuse"`: messages with UTF-8 headers
/// need UTF8 mode; `[UTF8]` says so. Legacy 8-bit (non-UTF-8) headers are
/// sent as they are.
#[test]
fn utf8_mode_and_the_utf8_response_code() {
    let server = TestServer::with(Setup {
        pop3: "utf8_headers = \"refuse\"\n".into(),
        ..Setup::default()
    });
    server.put_message(
        "alice",
        "1700000001.a.host",
        "Subject: Grüße aus Köln\n\nHallo\n".as_bytes(),
    );
    server.put_message(
        "alice",
        "1700000002.b.host",
        b"Subject: Gr\xfc\xdfe (Latin-1)\n\nHallo\n",
    );
    let result = server.python(
        "import popclient as p\n\
         r = p.Raw(); r.login(); refused = r.cmd('RETR 1'); top = r.cmd('TOP 1 0'); late = r.cmd('UTF8')\n\
         legacy = r.cmd('RETR 2'); legacy_body = r.multi(); r.cmd('QUIT')\n\
         r = p.Raw(); r.cmd('CAPA'); capa = r.multi(); ok = r.cmd('UTF8'); r.login(); status = r.cmd('RETR 1'); body = r.multi()\n\
         p.emit([refused, top, late, 'UTF8' in capa, ok, status, body, legacy, legacy_body[0]])",
        &ALICE,
    );
    assert_eq!(
        result[0],
        "-ERR [UTF8] Message 1 has UTF-8 headers; enable UTF8 mode to retrieve it."
    );
    assert_eq!(result[1], result[0]);
    assert_eq!(
        result[2],
        "-ERR Already logged in; that command is for the AUTHORIZATION state."
    );
    assert_eq!(result[3], true);
    assert_eq!(result[4], "+OK UTF8 enabled.");
    assert!(result[5].as_str().unwrap().starts_with("+OK "));
    // The raw client decodes as Latin-1: the UTF-8 octets arrived unchanged.
    assert!(result[7].as_str().unwrap().starts_with("+OK "));
    assert_eq!(result[8], "Subject: Grüße (Latin-1)");
    server.wait_for_log("has UTF-8 headers; refused");
    assert_eq!(
        result[6][0],
        "Subject: Grüße aus Köln"
            .as_bytes()
            .iter()
            .map(|&b| char::from(b))
            .collect::<String>()
    );
}

/// Passwords with 8-bit characters work with USER/PASS without UTF8 mode,
/// as clients send them.
#[test]
fn eight_bit_passwords_work_with_user_pass() {
    let server = TestServer::with(Setup {
        users: vec![
            ("jo".into(), "{PLAIN}päss".into()),
            ("lat".into(), "{PLAIN.hex}70e47373".into()),
        ],
        ..Setup::default()
    });
    let result = server.python(
        "import popclient as p\n\
         r = p.Raw(); r.cmd('USER jo'); r.send('PASS päss\\r\\n'.encode()); a = r.line()\n\
         r = p.Raw(); r.cmd('USER lat'); r.send(b'PASS p\\xe4ss\\r\\n'); b = r.line()\n\
         p.emit([a, b])",
        &[],
    );
    assert!(
        result[0].as_str().unwrap().starts_with("+OK Logged in"),
        "{result}"
    );
    assert!(
        result[1].as_str().unwrap().starts_with("+OK Logged in"),
        "{result}"
    );
}

/// Over `max_connections` a client is told to come back later (POP3
/// `-ERR [SYS/TEMP]`, SMTP `421 4.3.2`) instead of seeing a bare reset,
/// and a slot that frees up is usable again.
#[test]
fn connections_over_the_limit_are_told_to_retry() {
    let server = TestServer::with(Setup {
        pop3: "auth_failure_delay = \"100ms\"\nmax_connections = 2\n".into(),
        smtp: "auth_failure_delay = \"100ms\"\nmax_connections = 2\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        "import popclient as p, smtpclient as s\n\
         pops = [p.Raw(), p.Raw()]\n\
         over_pop = p.Raw().greeting\n\
         smtps = [s.Raw(), s.Raw()]\n\
         over_smtp = s.Raw().greeting\n\
         pops[0].cmd('QUIT'); smtps[0].cmd('QUIT')\n\
         import time; time.sleep(0.5)\n\
         s.emit([over_pop, over_smtp, p.Raw().greeting, s.Raw().greeting])",
        &[],
    );
    assert_eq!(
        result[0],
        "-ERR [SYS/TEMP] Too many connections; try again later"
    );
    assert_eq!(result[1], "421 4.3.2 Too many connections; try again later");
    assert!(result[2].as_str().unwrap().starts_with("+OK"), "{result}");
    assert!(result[3].as_str().unwrap().starts_with("220 "), "{result}");
}

/// One address cannot take every connection: past
/// `max_connections_per_ip` (here 2) it is told to come back later, while
/// other addresses, and loopback (exempt), are served.
#[test]
fn one_address_cannot_take_every_connection() {
    let server = TestServer::with(Setup {
        pop3: "auth_failure_delay = \"100ms\"\nmax_connections_per_ip = 2\n".into(),
        smtp: "auth_failure_delay = \"100ms\"\nmax_connections_per_ip = 2\n".into(),
        any_address: true,
        ..Setup::default()
    });
    let result = server.python(
        "import popclient as p, smtpclient as s\n\
         host = p.non_loopback_address()\n\
         pops = [p.Raw(host=host) for _ in range(2)]\n\
         smtps = [s.Raw(host=host) for _ in range(2)]\n\
         over = [p.Raw(host=host).greeting, s.Raw(host=host).greeting]\n\
         local = [p.Raw().greeting for _ in range(3)] + [s.Raw().greeting for _ in range(3)]\n\
         pops[0].cmd('QUIT'); smtps[0].cmd('QUIT')\n\
         import time; time.sleep(0.5)\n\
         again = [p.Raw(host=host).greeting, s.Raw(host=host).greeting]\n\
         s.emit([host, over, local, again])",
        &[],
    );
    assert!(!result[0].as_str().unwrap().starts_with("127."));
    assert_eq!(
        result[1],
        serde_json::json!([
            "-ERR [SYS/TEMP] Too many connections from your address",
            "421 4.7.0 Too many connections from your address; try again later"
        ])
    );
    for greeting in result[2].as_array().unwrap() {
        let greeting = greeting.as_str().unwrap();
        assert!(
            greeting.starts_with("+OK") || greeting.starts_with("220 "),
            "{greeting}"
        );
    }
    assert!(
        result[3][0].as_str().unwrap().starts_with("+OK"),
        "{result}"
    );
    assert!(
        result[3][1].as_str().unwrap().starts_with("220 "),
        "{result}"
    );
}

/// Issue 11, `utf8_headers = "downgrade"` (RFC 6858): a client without UTF8
/// mode gets a surrogate (UTF-8 turned into RFC 2047 encoded-words, the
/// internationalised address into an invalid one), with LIST, STAT and the
/// octets received in agreement; UIDL does not change; a client in UTF8
/// mode gets the message as stored; ASCII messages are untouched; TOP
/// counts the surrogate's lines; and the sizes come from the cache the
/// second time.
#[test]
fn issue11_downgrade_sends_a_surrogate_with_exact_sizes() {
    let server = TestServer::with(Setup {
        pop3: "utf8_headers = \"downgrade\"\n".into(),
        ..Setup::default()
    });
    let utf8 =
        "From: Zoë <zoë@bücher.example>\nSubject: Grüße aus Köln\nMessage-ID: <1@x>\n\nHallo ☕\n";
    server.put_message("alice", "1700000001.u.host", utf8.as_bytes());
    server.put_message("alice", "1700000002.a.host", b"Subject: plain\n\nascii\n");
    let script = "import popclient as p, base64\n\
         c = p.connect(); p.login(c); got = p.fetch_all(c)\n\
         top = c.top(1, 0)[1]\n\
         c.quit()\n\
         r = p.Raw(); r.cmd('UTF8'); r.login(); r.cmd('RETR 1'); raw = r.multi(); r.cmd('QUIT')\n\
         p.emit([got, [l.decode() for l in top], raw])";
    for round in 0..2 {
        let result = server.python(script, &ALICE);
        let got = &result[0];
        let messages = hex_list(&got["messages"]);
        let surrogate = String::from_utf8(messages[0].clone()).expect("UTF-8");
        let header = &surrogate[..surrogate.find("\r\n\r\n").expect("a header")];
        assert!(header.is_ascii(), "{surrogate}");
        assert!(
            surrogate.contains("Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"),
            "{surrogate}"
        );
        assert!(
            surrogate.contains("<invalid@internationalized-address.invalid>"),
            "{surrogate}"
        );
        assert!(surrogate.contains("Message-ID: <1@x>\r\n"));
        // The body goes as stored (8-bit bodies always have).
        assert!(messages[0].ends_with("\r\nHallo ☕\r\n".as_bytes()));
        assert_eq!(messages[1], b"Subject: plain\r\n\r\nascii\r\n");
        for i in 0..2 {
            assert_eq!(
                got["list"][i][1].as_u64(),
                Some(messages[i].len() as u64),
                "round {round}: LIST {i}"
            );
            assert_eq!(got["octets"][i].as_u64(), Some(messages[i].len() as u64));
        }
        assert_eq!(
            got["stat"][1].as_u64(),
            Some((messages[0].len() + messages[1].len()) as u64)
        );
        assert_eq!(got["uidl"][0], "1700000001.u.host");
        // TOP 1 0: the surrogate header and the empty line.
        let top = result[1].as_array().unwrap();
        assert_eq!(top.last().unwrap(), "");
        assert!(
            top.iter()
                .any(|l| l.as_str().unwrap().starts_with("Subject: =?UTF-8?B?"))
        );
        // In UTF8 mode the stored message (the raw client decodes Latin-1).
        let raw: Vec<u8> = result[2]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l.as_str().unwrap().chars().map(|c| c as u8).chain(*b"\r\n"))
            .collect();
        assert_eq!(raw, expected_wire(utf8.as_bytes()));
    }
    assert!(server.maildir("alice").join("yubin-surrogates-1").exists());
}
