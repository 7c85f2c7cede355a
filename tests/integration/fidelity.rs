//! What clients receive is exactly what is stored (RFC 1939 §3, §11), for
//! messages that are awkward on the wire.

use crate::harness::{TestServer, expected_wire, hex_list, run};

/// Stored messages (LF line ends, as in Maildir) chosen to break sloppy servers.
fn awkward_messages() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = b"Subject: one megabyte\n\n".to_vec();
    let mut i = 0;
    while big.len() < 1 << 20 {
        if i % 50 == 0 {
            big.extend_from_slice(b".a line that starts with a dot\n");
        }
        big.extend_from_slice(
            format!("line {i:07} of a large message, filler filler filler filler\n").as_bytes(),
        );
        i += 1;
    }
    vec![
        ("1700000001.dots.host", b"Subject: dots\n\n.\n..\n.hidden\nend\n".to_vec()),
        ("1700000002.nofinal.host", b"Subject: no final newline\n\nlast line".to_vec()),
        ("1700000003.mixed.host", b"Subject: mixed\r\n\r\ncrlf line\r\nbare lf line\nend\r\n".to_vec()),
        (
            "1700000004.eightbit.host",
            b"Subject: 8bit body\nContent-Type: text/plain; charset=iso-8859-1\n\ncaf\xe9 \xff\xfe\n".to_vec(),
        ),
        ("1700000005.empty.host", b"Subject: empty body\n\n".to_vec()),
        ("1700000006.big.host", big),
        ("1700000007.smuggle.host", b"Subject: x\n\na\n.\nMAIL FROM:<x>\n\r\n.\r\nb\r.\rc\n".to_vec()),
        ("1700000008.barecr.host", b"Subject: cr\n\none\rtwo\n".to_vec()),
    ]
}

fn seeded() -> (TestServer, Vec<(&'static str, Vec<u8>)>) {
    let server = TestServer::start();
    let messages = awkward_messages();
    for (name, content) in &messages {
        server.put_message("alice", name, content);
    }
    (server, messages)
}

/// poplib over `mode` ("plain", "stls", "ssl") receives every message as
/// RFC 1939 sends it, with the LIST sizes, STAT total and UIDLs (the file
/// names) that go with it.
pub fn check_poplib<N: AsRef<str>>(server: &TestServer, messages: &[(N, Vec<u8>)], mode: &str) {
    let result = server.python(
        &format!(
            "import popclient as p\nc = p.connect('{mode}')\np.login(c)\nr = p.fetch_all(c)\nc.quit()\np.emit(r)"
        ),
        &[("USER_NAME", "alice"), ("USER_PASS", "alice-pw")],
    );
    let received = hex_list(&result["messages"]);
    assert_eq!(received.len(), messages.len());
    let mut total = 0;
    for (i, ((name, stored), got)) in messages.iter().zip(&received).enumerate() {
        let expected = expected_wire(stored);
        assert!(
            got == &expected,
            "{mode}: message {} differs ({} vs {} octets)",
            name.as_ref(),
            got.len(),
            expected.len()
        );
        let listed = result["list"][i][1].as_u64().unwrap();
        let name = name.as_ref();
        assert_eq!(listed, expected.len() as u64, "{mode}: LIST size of {name}");
        assert_eq!(
            result["octets"][i].as_u64().unwrap(),
            listed,
            "{mode}: octets of {name}"
        );
        // RFC 1939 §7 allows 1–70 octets; a longer base name is sent as
        // its MD5 in hex (docs/DESIGN.md).
        let uid = result["uidl"][i].as_str().unwrap();
        if name.len() <= 70 {
            assert_eq!(uid, name, "{mode}: UIDL of {name}");
        } else {
            assert!(
                uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit()),
                "{mode}: UIDL {uid} of {name}"
            );
        }
        total += listed;
    }
    assert_eq!(result["stat"][0].as_u64().unwrap(), messages.len() as u64);
    assert_eq!(
        result["stat"][1].as_u64().unwrap(),
        total,
        "STAT equals the sum of LIST"
    );
}

#[test]
fn poplib_plain_stls_and_pop3s_receive_the_exact_bytes() {
    let (server, messages) = seeded();
    for mode in ["plain", "stls", "ssl"] {
        check_poplib(&server, &messages, mode);
    }
}

#[test]
fn a_message_without_final_newline_counts_its_added_crlf() {
    let server = TestServer::start();
    server.put_message("alice", "1700000001.a.host", b"Subject: x\n\nlast");
    let result = server.python(
        "import popclient as p\nc = p.connect()\np.login(c)\np.emit([c.stat()[1], c.list(1).decode()])",
        &[("USER_NAME", "alice"), ("USER_PASS", "alice-pw")],
    );
    // "Subject: x" CRLF CRLF "last" CRLF = 12 + 2 + 6 = 20 (Dovecot says 18).
    assert_eq!(result[0], 20);
    assert_eq!(result[1], "+OK 1 20");
}

#[test]
fn curl_pop3_and_pop3s_receive_the_exact_bytes() {
    let (server, messages) = seeded();
    for (scheme, port, extra) in [
        ("pop3", server.pop3.port(), None),
        ("pop3s", server.pop3s.port(), Some("--insecure")),
    ] {
        let mut args = vec!["-s", "--user", "alice:alice-pw"];
        args.extend(extra);
        let url = format!("{scheme}://127.0.0.1:{port}/");
        let list = run("curl", &[&args[..], &[url.as_str()]].concat());
        assert!(list.status.success(), "curl LIST failed: {list:?}");
        let listing = String::from_utf8(list.stdout).unwrap();
        assert_eq!(listing.lines().count(), messages.len(), "{listing}");
        for (i, (name, stored)) in messages.iter().enumerate() {
            let url = format!("{scheme}://127.0.0.1:{port}/{}", i + 1);
            let out = run("curl", &[&args[..], &[url.as_str()]].concat());
            assert!(out.status.success(), "curl RETR {} failed: {out:?}", i + 1);
            assert!(
                out.stdout == expected_wire(stored),
                "{scheme}: {name} differs"
            );
            assert!(listing.contains(&format!("{} {}\r\n", i + 1, expected_wire(stored).len())));
        }
    }
}
