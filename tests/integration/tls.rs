//! TLS and STLS (§3.7).

use std::io::BufRead;

use crate::harness::{Setup, TestServer};

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];

/// TL-01: commands pipelined after STLS are discarded, never executed in TLS.
#[test]
fn tl01_plaintext_pipelined_after_stls_is_discarded() {
    let server = TestServer::start();
    let result = server.python(
        "import popclient as p, ssl\n\
         r = p.Raw()\n\
         r.send(b'STLS\\r\\nUSER alice\\r\\n')\n\
         begin = r.line()\n\
         tls = p.tls_context().wrap_socket(r.sock, server_hostname='test.example')\n\
         r.sock = tls; r.buf = b''\n\
         first = r.cmd('PASS alice-pw')\n\
         again = r.cmd('STLS')\n\
         r.cmd('CAPA'); capa = r.multi()\n\
         p.emit([begin, first, again, capa, tls.version()])",
        &[],
    );
    assert_eq!(result[0], "+OK Begin TLS negotiation.");
    assert_eq!(
        result[1], "-ERR No user name given; send USER first.",
        "USER from before TLS was executed"
    );
    assert_eq!(result[2], "-ERR Command not permitted when TLS active.");
    let capa: Vec<&str> = result[3]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!capa.contains(&"STLS"));
    assert!(capa.contains(&"USER"));
}

/// TL-06: plaintext to the POP3S port gets no cleartext banner.
#[test]
fn tl06_plaintext_on_the_tls_port_gets_no_banner() {
    let server = TestServer::start();
    let result = server.python(
        "import socket, os\n\
         s = socket.create_connection(('127.0.0.1', int(os.environ['PORT_TLS'])), timeout=10)\n\
         s.sendall(b'USER alice\\r\\n')\n\
         data = b''\n\
         try:\n\
         \x20   while True:\n\
         \x20       chunk = s.recv(4096)\n\
         \x20       if not chunk: break\n\
         \x20       data += chunk\n\
         except OSError:\n    pass\n\
         import json; print(json.dumps(data.decode('latin-1')))",
        &[],
    );
    assert!(!result.as_str().unwrap().contains("+OK"), "{result}");
}

/// TLS 1.2 and 1.3 both work; the session on POP3S starts in AUTHORIZATION
/// and offers no STLS (RFC 8314 §3.1, RFC 2595 §4).
#[test]
fn pop3s_speaks_tls12_and_tls13() {
    let server = TestServer::start();
    server.put_message("alice", "1700000001.a.host", b"Subject: x\n\nhi\n");
    let result = server.python(
        "import popclient as p, poplib, ssl, os\n\
         out = []\n\
         for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):\n\
         \x20   ctx = p.tls_context(); ctx.minimum_version = version; ctx.maximum_version = version\n\
         \x20   c = poplib.POP3_SSL('127.0.0.1', int(os.environ['PORT_TLS']), context=ctx)\n\
         \x20   capa = c.capa(); p.login(c); out.append([c.sock.version(), 'STLS' in capa, c.stat()[0]]); c.quit()\n\
         p.emit(out)",
        &ALICE,
    );
    assert_eq!(
        result,
        serde_json::json!([["TLSv1.2", false, 1], ["TLSv1.3", false, 1]])
    );
}

/// TL-03: TLS 1.0 and 1.1 are refused by the server (a protocol_version
/// alert) on POP3S and SMTPS, and on STARTTLS/STLS; the client is set up to
/// speak them, so the refusal is the server's.
#[test]
fn tl03_tls_below_1_2_is_refused() {
    let server = TestServer::start();
    let result = server.python(
        "import os, socket, ssl, warnings, popclient as p, smtpclient as s\n\
         warnings.simplefilter('ignore', DeprecationWarning)\n\
         def old_tls(newest=ssl.TLSVersion.TLSv1_1):\n\
         \x20   ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
         \x20   ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
         \x20   ctx.set_ciphers('DEFAULT:@SECLEVEL=0')\n\
         \x20   ctx.minimum_version = ssl.TLSVersion.TLSv1\n\
         \x20   ctx.maximum_version = newest\n\
         \x20   return ctx\n\
         def attempt(sock, newest=ssl.TLSVersion.TLSv1_1):\n\
         \x20   try:\n\
         \x20       return old_tls(newest).wrap_socket(sock).version()\n\
         \x20   except ssl.SSLError as e:\n\
         \x20       return e.reason or str(e)\n\
         out = []\n\
         for port in ['PORT_TLS', 'SUBMISSIONS_PORT']:\n\
         \x20   out.append(attempt(socket.create_connection(('127.0.0.1', int(os.environ[port])), timeout=10)))\n\
         r = p.Raw(); r.cmd('STLS'); out.append(attempt(r.sock))\n\
         r = s.Raw(port=os.environ['SUBMISSION_PORT']); r.cmd('EHLO c'); r.cmd('STARTTLS'); out.append(attempt(r.sock))\n\
         control = attempt(socket.create_connection(('127.0.0.1', int(os.environ['PORT_TLS'])), timeout=10), ssl.TLSVersion.TLSv1_2)\n\
         s.emit([control, out])",
        &[],
    );
    // The same client, allowed TLS 1.2, gets through: it is not the client
    // refusing to speak.
    assert_eq!(result[0], "TLSv1.2");
    for (i, reason) in result[1].as_array().expect("list").iter().enumerate() {
        let reason = reason.as_str().unwrap_or_default();
        // `…_ALERT_…`: an alert received from the server.
        assert!(reason.contains("_ALERT_"), "attempt {i}: {result}");
    }
}

/// TL-04: connections that open the TLS ports and send nothing, or half a
/// ClientHello, are closed at the handshake deadline (at most the session
/// timeout, here 2 s); real clients are served meanwhile, and the server's
/// descriptors come back to where they were while the stalled clients are
/// still there.
#[test]
fn tl04_stalled_handshakes_are_cut_off_and_others_served() {
    let server = TestServer::with(Setup {
        pop3: "auth_failure_delay = \"100ms\"\nidle_timeout = \"2s\"\n".into(),
        smtp: "auth_failure_delay = \"100ms\"\ntimeout = \"2s\"\n".into(),
        ..Setup::default()
    });
    let baseline = server.fd_count();
    let mut holder = server.python_spawn(
        "import os, socket, sys, time\n\
         held = []\n\
         for port in ['PORT_TLS', 'SUBMISSIONS_PORT']:\n\
         \x20   for i in range(100):\n\
         \x20       s = socket.create_connection(('127.0.0.1', int(os.environ[port])))\n\
         \x20       if i % 2: s.sendall(b'\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03')\n\
         \x20       held.append(s)\n\
         print('open', flush=True)\n\
         time.sleep(20)",
        &[],
    );
    let stdout = holder.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("holder output");
    assert_eq!(line.trim(), "open");
    // The kernel completes the connections before the server accepts them.
    let mut held = server.fd_count();
    for _ in 0..50 {
        if held >= baseline + 150 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        held = server.fd_count();
    }
    assert!(held >= baseline + 150, "{baseline} → {held} descriptors");
    let result = server.python(
        "import popclient as p, smtpclient as s\n\
         c = p.connect('ssl'); p.login(c); stat = c.stat(); c.quit()\n\
         m = s.connect('submissions'); code = m.ehlo()[0]; m.quit()\n\
         s.emit([list(stat), code])",
        &ALICE,
    );
    assert_eq!(result[1], 250, "{result}");
    let mut now = server.fd_count();
    for _ in 0..100 {
        if now <= baseline + 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = server.fd_count();
    }
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        now <= baseline + 5,
        "descriptors: {baseline} at rest, {held} held, {now} after the deadline"
    );
}
