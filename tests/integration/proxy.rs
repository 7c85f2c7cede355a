//! PROXY protocol (issue 16) on the POP3 and SMTP listeners: behind a load
//! balancer the client's address is the one the header names (the POP-
//! before-SMTP grant and the relay decision follow it, and the log shows
//! it); a connection without a header, or from outside the balancers'
//! networks, is refused with a log line. The headers are written here as
//! HAProxy writes them (`send-proxy` and `send-proxy-v2`); HAProxy itself
//! is in the interop script.

use crate::harness::{Setup, TestServer};

fn behind(networks: &str) -> TestServer {
    TestServer::with(Setup {
        // The clients the headers name are not on loopback: USER/PASS
        // without TLS only when allowed.
        pop3: format!(
            "auth_failure_delay = \"100ms\"\nplaintext_auth = \"always\"\nproxy_protocol = [{networks}]\n"
        ),
        smtp: format!("auth_failure_delay = \"100ms\"\nproxy_protocol = [{networks}]\n"),
        ..Setup::default()
    })
}

/// Python: a v1 header line and a v2 header for a client address.
const HEADERS: &str = "import socket, struct, os, json\n\
def v1(client, port):\n\
\x20   return ('PROXY TCP4 %s 127.0.0.1 40000 %d\\r\\n' % (client, port)).encode()\n\
def v2(client, port):\n\
\x20   body = socket.inet_aton(client) + socket.inet_aton('127.0.0.1') + struct.pack('>HH', 40000, port)\n\
\x20   return b'\\r\\n\\r\\n\\x00\\r\\nQUIT\\n' + bytes([0x21, 0x11]) + struct.pack('>H', len(body)) + body\n\
def closed(s):
    try:
        return s.recv(100).decode()
    except ConnectionResetError:
        return ''
def session(port, header, lines):\n\
\x20   s = socket.create_connection(('127.0.0.1', port), timeout=20)\n\
\x20   if header:\n\
\x20       s.sendall(header)\n\
\x20   f = s.makefile('rb')\n\
\x20   out = [f.readline().decode().strip()]\n\
\x20   for line in lines:\n\
\x20       s.sendall(line.encode() + b'\\r\\n')\n\
\x20       out.append(f.readline().decode().strip())\n\
\x20       while out[-1][3:4] == '-':\n\
\x20           out.append(f.readline().decode().strip())\n\
\x20   s.close()\n\
\x20   return out\n";

#[test]
fn issue16_behind_a_balancer_the_client_is_the_one_the_header_names() {
    let server = behind("\"127.0.0.1/32\"");
    let result = server.python(
        &format!(
            "{HEADERS}\
             pop = int(os.environ['PORT']); smtp = int(os.environ['SMTP_PORT'])\n\
             login = session(pop, v1('192.0.2.77', pop), ['USER alice', 'PASS alice-pw', 'QUIT'])\n\
             relay = ['EHLO client.example', 'MAIL FROM:<alice@test.example>', 'RCPT TO:<carol@elsewhere.example>', 'QUIT']\n\
             granted = session(smtp, v2('192.0.2.77', smtp), relay)\n\
             other = session(smtp, v1('192.0.2.78', smtp), relay)\n\
             print(json.dumps([login, granted, other]))"
        ),
        &[],
    );
    let login = &result[0];
    assert!(
        login[0].as_str().unwrap_or_default().starts_with("+OK"),
        "{result}"
    );
    assert!(
        login[2].as_str().unwrap_or_default().starts_with("+OK"),
        "{result}"
    );
    // The grant is for the client the header named, not the balancer.
    let granted = result[1].as_array().expect("replies");
    assert!(
        granted
            .iter()
            .any(|l| l.as_str().unwrap_or_default().starts_with("250 2.1.5")),
        "{result}"
    );
    let other = result[2].as_array().expect("replies");
    assert!(
        other.iter().any(|l| l
            .as_str()
            .unwrap_or_default()
            .contains("Relay access denied")),
        "{result}"
    );
    let log = server.log();
    assert!(log.contains("rip=192.0.2.77"), "{log}");
    assert!(log.contains("pop-before-smtp grant"), "{log}");
}

#[test]
fn issue16_no_header_or_a_stranger_is_refused() {
    let server = behind("\"127.0.0.1/32\"");
    // No header: the first octets are not one; the connection closes
    // without a greeting.
    let result = server.python(
        &format!(
            "{HEADERS}\
             s = socket.create_connection(('127.0.0.1', int(os.environ['PORT'])), timeout=20)\n\
             s.sendall(b'USER alice\\r\\n')\n\
             print(json.dumps(closed(s)))"
        ),
        &[],
    );
    assert_eq!(result, "", "no greeting without a header");
    server.wait_for_log("connection refused: PROXY header");

    // A balancer network that is not ours: every connection refused.
    let elsewhere = behind("\"10.0.0.0/8\"");
    let result = elsewhere.python(
        &format!(
            "{HEADERS}\
             s = socket.create_connection(('127.0.0.1', int(os.environ['SMTP_PORT'])), timeout=20)\n\
             s.sendall(v1('192.0.2.77', 25))\n\
             print(json.dumps(closed(s)))"
        ),
        &[],
    );
    assert_eq!(result, "", "no greeting for a stranger");
    elsewhere.wait_for_log("not from a proxy_protocol network");
}

#[test]
fn issue16_proxy_networks_are_checked_at_start() {
    crate::harness::assert_config_refused(
        "[pop3]\nproxy_protocol = [\"nonsense\"]\n",
        "pop3.proxy_protocol[0]",
    );
    crate::harness::assert_config_refused(
        "[smtp]\nproxy_protocol = [\"127.0.0.1/33\"]\n",
        "smtp.proxy_protocol[0]",
    );
}

/// Behind a balancer every connection comes from its address, so whatever
/// is counted per client must count the address the header names: the
/// per-address connection limit (loopback, the balancer's own address,
/// would be exempt), the login penalty (failures from one client double
/// its delay, not another's; each guess is a new password, as a repeated
/// one does not climb), and the `Received:` line of a delivery.
#[test]
fn issue16_limits_penalties_and_received_follow_the_proxied_client() {
    let server = TestServer::with(Setup {
        pop3: "auth_failure_delay = \"200ms\"\nplaintext_auth = \"always\"\n\
               max_connections_per_ip = 2\nproxy_protocol = [\"127.0.0.1/32\"]\n"
            .into(),
        smtp: "auth_failure_delay = \"200ms\"\nproxy_protocol = [\"127.0.0.1/32\"]\n".into(),
        login_penalty_max: "1600ms".into(),
        ..Setup::default()
    });
    let result = server.python(
        &format!(
            "{HEADERS}\
             import time\n\
             pop = int(os.environ['PORT']); smtp = int(os.environ['SMTP_PORT'])\n\
             def greeted(client):\n\
             \x20   s = socket.create_connection(('127.0.0.1', pop), timeout=20)\n\
             \x20   s.sendall(v1(client, pop))\n\
             \x20   return s, s.makefile('rb').readline().decode().strip()\n\
             held = [greeted('192.0.2.10') for _ in range(2)]\n\
             over = greeted('192.0.2.10')[1]\n\
             other = greeted('192.0.2.11')[1]\n\
             def failed(client, guess):\n\
             \x20   s = socket.create_connection(('127.0.0.1', pop), timeout=20)\n\
             \x20   s.sendall(v2(client, pop)); f = s.makefile('rb'); f.readline()\n\
             \x20   s.sendall(b'USER alice\\r\\n'); f.readline()\n\
             \x20   t = time.monotonic(); s.sendall(b'PASS %s\\r\\n' % guess.encode()); reply = f.readline().decode()\n\
             \x20   s.close()\n\
             \x20   return round(time.monotonic() - t, 2) if reply.startswith('-ERR') else reply\n\
             guesses = [failed('192.0.2.20', 'guess%d' % n) for n in range(3)]\n\
             elsewhere = failed('192.0.2.21', 'other')\n\
             mail = session(smtp, v2('192.0.2.30', smtp), ['EHLO client.example', 'MAIL FROM:<bob@elsewhere.example>',\n\
             \x20   'RCPT TO:<alice@test.example>', 'DATA', 'Subject: proxied\\r\\n\\r\\nhello\\r\\n.', 'QUIT'])\n\
             print(json.dumps([[h[1] for h in held], over, other, guesses, elsewhere, mail]))"
        ),
        &[],
    );
    for greeting in result[0].as_array().expect("greetings") {
        assert!(
            greeting.as_str().unwrap_or_default().starts_with("+OK"),
            "{result}"
        );
    }
    assert_eq!(
        result[1], "-ERR [SYS/TEMP] Too many connections from your address",
        "{result}"
    );
    assert!(
        result[2].as_str().unwrap_or_default().starts_with("+OK"),
        "{result}"
    );

    let secs = |v: &serde_json::Value| v.as_f64().unwrap_or(-1.0);
    for (i, want) in [0.2, 0.4, 0.8].into_iter().enumerate() {
        let got = secs(&result[3][i]);
        assert!(got >= want * 0.9 && got < want + 0.5, "guess {i}: {result}");
    }
    let fresh = secs(&result[4]);
    assert!(
        (0.18..0.7).contains(&fresh),
        "another client is not paced: {result}"
    );

    let replies = result[5].as_array().expect("smtp replies");
    assert!(
        replies
            .iter()
            .any(|l| l.as_str().unwrap_or_default().starts_with("250 2.0.0")),
        "{result}"
    );
    let delivered = server.messages("alice");
    let message = delivered
        .iter()
        .map(|m| String::from_utf8_lossy(m))
        .find(|m| m.contains("Subject: proxied"))
        .expect("the message reached alice");
    // The trace field, unfolded: everything from "Received:" to the next
    // field.
    let start = message.find("Received: ").expect("a Received: field");
    let trace: String = message[start..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l)
        .collect();
    assert!(
        trace.contains("[192.0.2.30]"),
        "Received: names the client: {trace}"
    );
    assert!(!trace.contains("127.0.0.1"), "{trace}");
}
