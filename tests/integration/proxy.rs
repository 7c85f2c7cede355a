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
