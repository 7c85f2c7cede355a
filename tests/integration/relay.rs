//! Who may relay: POP before SMTP end to end, the open-relay tricks, and
//! the Postfix policy service. Client addresses are played by binding to
//! other loopback addresses (all of 127.0.0.0/8 is local on Linux).

use std::time::{Duration, Instant};

use crate::harness::{Setup, TestServer};

const RELAY_DENIED: &str = "554 5.7.1 <carol@elsewhere.example>: Relay access denied";

/// Tries to relay one message from `source`; returns the RCPT reply.
const TRY_RELAY: &str = "def relay(source):\n\
    \x20   r = s.Raw(source=source); r.cmd('EHLO client.example')\n\
    \x20   r.cmd('MAIL FROM:<alice@test.example>')\n\
    \x20   rcpt = r.cmd('RCPT TO:<carol@elsewhere.example>')\n\
    \x20   if rcpt.startswith('250'):\n\
    \x20       r.cmd('DATA'); r.cmd('Subject: relayed\\r\\n\\r\\nhi\\r\\n.')\n\
    \x20   r.cmd('QUIT'); return rcpt\n";

fn with_window(window: &str) -> TestServer {
    TestServer::with(Setup {
        tables: format!("[pop_before_smtp]\nwindow = \"{window}\"\n"),
        ..Setup::default()
    })
}

/// PB-01 and PB-03: refused → POP3 login from the same address → allowed;
/// another address that never logged in stays refused; after the window it
/// is refused again, and a new login renews it.
#[test]
fn pop_before_smtp_grants_the_address_that_logged_in_for_the_window() {
    let window = Duration::from_secs(3);
    let server = with_window("3s");
    let run = |script: &str| {
        server.python(
            &format!("import smtpclient as s, popclient as p\n{TRY_RELAY}{script}"),
            &[],
        )
    };
    assert_eq!(run("s.emit(relay('127.0.0.7'))"), RELAY_DENIED);
    let logged_in = Instant::now();
    let result = run(
        "r = p.Raw(source=('127.0.0.7', 0)); r.login('alice', 'alice-pw'); r.cmd('QUIT')\n\
         s.emit([relay('127.0.0.7'), relay('127.0.0.8')])",
    );
    assert_eq!(result[0], "250 2.1.5 Recipient OK", "{result}");
    assert_eq!(result[1], RELAY_DENIED, "127.0.0.8 never logged in");
    assert_eq!(server.queued().len(), 1);
    let log = server.log();
    assert!(
        log.contains("pop-before-smtp grant rip=127.0.0.7 user=alice"),
        "{log}"
    );
    assert!(
        log.contains("smtp relay allowed session=") && log.contains("reason=pop-before-smtp alice"),
        "{log}"
    );

    if let Some(rest) =
        (logged_in + window + Duration::from_millis(500)).checked_duration_since(Instant::now())
    {
        std::thread::sleep(rest);
    }
    assert_eq!(run("s.emit(relay('127.0.0.7'))"), RELAY_DENIED, "expired");
    let result = run(
        "r = p.Raw(source=('127.0.0.7', 0)); r.login('alice', 'alice-pw'); r.cmd('QUIT')\n\
         s.emit(relay('127.0.0.7'))",
    );
    assert_eq!(result, "250 2.1.5 Recipient OK", "a new login renews it");
    assert_eq!(server.queued().len(), 2);
}

/// PB-02: USER alone, a wrong password, a failed APOP or AUTH: no grant.
#[test]
fn pb02_failed_or_partial_logins_never_grant() {
    let server = with_window("10m");
    let result = server.python(
        &format!(
            "import smtpclient as s, popclient as p\n{TRY_RELAY}\
             r = p.Raw(source=('127.0.0.7', 0)); r.cmd('USER alice')\n\
             user_only = relay('127.0.0.7')\n\
             r.cmd('PASS wrong')\n\
             r.cmd('APOP alice 0123456789abcdef0123456789abcdef')\n\
             r.cmd('AUTH PLAIN AGFsaWNlAHdyb25n')\n\
             s.emit([user_only, relay('127.0.0.7')])"
        ),
        &[],
    );
    assert_eq!(result[0], RELAY_DENIED);
    assert_eq!(result[1], RELAY_DENIED);
    assert!(server.queued().is_empty());
    assert!(!server.log().contains("pop-before-smtp grant"));
}

/// PB-05: a window of 0 turns POP before SMTP off.
#[test]
fn pb05_a_zero_window_turns_it_off() {
    let server = with_window("0s");
    let result = server.python(
        &format!(
            "import smtpclient as s, popclient as p\n{TRY_RELAY}\
             r = p.Raw(source=('127.0.0.7', 0)); r.login('alice', 'alice-pw')\n\
             s.emit(relay('127.0.0.7'))"
        ),
        &[],
    );
    assert_eq!(result, RELAY_DENIED);
    assert!(server.queued().is_empty());
}

/// PB-06: the address comes from the socket; a user name that looks like
/// an address grants nothing to that address.
#[test]
fn pb06_the_address_is_the_sockets_never_text() {
    let server = TestServer::with(Setup {
        users: vec![("rip=127.0.0.50".into(), "{PLAIN}pw".into())],
        // The relay below sends as alice, who is not this user: the test
        // is about which address the grant covers, not whose sender it is.
        smtp: "auth_failure_delay = \"100ms\"\nsender_identity = \"off\"\n".into(),
        ..Setup::default()
    });
    let result = server.python(
        &format!(
            "import smtpclient as s, popclient as p\n{TRY_RELAY}\
             r = p.Raw(source=('127.0.0.7', 0)); r.login('rip=127.0.0.50', 'pw')\n\
             s.emit([relay('127.0.0.50'), relay('127.0.0.7')])"
        ),
        &[],
    );
    assert_eq!(result[0], RELAY_DENIED);
    assert_eq!(result[1], "250 2.1.5 Recipient OK");
}

/// SI-05: an unauthorised client (127.0.0.9) tries a route to a remote
/// address; the answer is a 5xx and nothing is queued.
fn assert_not_relayed(rcpt: &str) {
    let server = TestServer::start();
    let result = server.python(
        &format!(
            "import smtpclient as s\n\
             r = s.Raw(source='127.0.0.9'); r.cmd('EHLO client.example')\n\
             r.cmd('MAIL FROM:<x@remote.example>')\n\
             rcpt = r.cmd({rcpt:?})\n\
             data = r.cmd('DATA')\n\
             if data.startswith('354'):\n\
             \x20   data = r.cmd('Subject: t\\r\\n\\r\\nhi\\r\\n.')\n\
             s.emit([rcpt, data])"
        ),
        &[],
    );
    let reply = result[0].as_str().unwrap();
    assert!(reply.starts_with('5'), "{rcpt} → {reply}");
    assert!(server.queued().is_empty(), "{rcpt} was queued");
    assert!(
        server.message_files("alice").is_empty(),
        "{rcpt} reached alice"
    );
}

macro_rules! relay_trick {
    ($($name:ident: $rcpt:expr,)*) => {$(
        #[test]
        fn $name() {
            assert_not_relayed($rcpt);
        }
    )*};
}

relay_trick! {
    si05_plain_remote_address: "RCPT TO:<carol@elsewhere.example>",
    si05_percent_hack: "RCPT TO:<carol%elsewhere.example@test.example>",
    si05_bang_path: "RCPT TO:<elsewhere.example!carol@test.example>",
    si05_quoted_local_part_with_at: "RCPT TO:<\"carol@elsewhere.example\"@test.example>",
    si05_source_route_through_us: "RCPT TO:<@test.example:carol@elsewhere.example>",
    si05_source_route_two_hops: "RCPT TO:<@a.example,@b.example:carol@elsewhere.example>",
    si05_two_at_signs: "RCPT TO:<carol@elsewhere.example@test.example>",
    si05_ipv4_address_literal: "RCPT TO:<carol@[127.0.0.1]>",
    si05_ipv6_address_literal: "RCPT TO:<carol@[IPv6:::1]>",
    si05_unqualified_address: "RCPT TO:<carol>",
    si05_trailing_dot_domain: "RCPT TO:<carol@elsewhere.example.>",
    si05_unknown_local_user: "RCPT TO:<carol@test.example>",
}

/// An upper-case local domain is still local: accepted for an existing
/// user and delivered locally, never queued.
#[test]
fn si05_upper_case_local_domain_is_local() {
    let server = TestServer::start();
    let result = server.python(
        "import smtpclient as s\n\
         s.emit(s.send_once('x@remote.example', ['alice@TEST.EXAMPLE'], b'Subject: t\\r\\n\\r\\nhi\\r\\n', source='127.0.0.9'))",
        &[],
    );
    assert_eq!(result["error"], serde_json::Value::Null, "{result}");
    assert_eq!(server.message_files("alice").len(), 1);
    assert!(server.queued().is_empty());
}

/// The Postfix policy service: DUNNO until the address logs in over POP3,
/// OK after, DUNNO for other addresses; one connection, many requests.
#[test]
fn policy_service_answers_ok_for_live_grants_only() {
    let server = TestServer::with(Setup {
        tables: "[pop_before_smtp]\npolicy_listen = [\"127.0.0.1:0\"]\n".into(),
        ..Setup::default()
    });
    let policy = server.policy.expect("policy service address");
    let result = server.python(
        "import os, socket, popclient as p\n\
         sock = socket.create_connection(('127.0.0.1', int(os.environ['POLICY_PORT'])))\n\
         f = sock.makefile('rwb')\n\
         def ask(ip):\n\
         \x20   f.write(('request=smtpd_access_policy\\nprotocol_state=RCPT\\nprotocol_name=ESMTP\\n'\n\
         \x20            'client_address=%s\\nclient_name=unknown\\nsender=a@b.example\\n'\n\
         \x20            'recipient=c@d.example\\n\\n' % ip).encode()); f.flush()\n\
         \x20   answer = f.readline().decode(); blank = f.readline()\n\
         \x20   return answer.strip() if blank == b'\\n' else 'bad framing'\n\
         before = ask('127.0.0.7')\n\
         r = p.Raw(source=('127.0.0.7', 0)); r.login('alice', 'alice-pw')\n\
         p.emit([before, ask('127.0.0.7'), ask('127.0.0.8'), ask('not-an-address')])",
        &[("POLICY_PORT", &policy.port().to_string())],
    );
    assert_eq!(
        result,
        serde_json::json!(["action=DUNNO", "action=OK", "action=DUNNO", "action=DUNNO"])
    );
}

/// A server with these aliases and POP-before-SMTP grants, for the
/// sender-identity tests; the directory holds the aliases file.
fn identity_server(aliases: &str) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aliases");
    std::fs::write(&file, aliases).unwrap();
    let server = TestServer::with(Setup {
        smtp: format!(
            "auth_failure_delay = \"100ms\"\naliases_file = \"{}\"\n",
            file.display()
        ),
        tables: "[pop_before_smtp]\nwindow = \"10m\"\n".into(),
        ..Setup::default()
    });
    (dir, server)
}

/// Issue 14, sender identity (`[smtp] sender_identity = "enforce"`, the
/// default): an authenticated user, or a client relaying on a user's
/// POP-before-SMTP grant, may use only that user's own addresses (its
/// name, and aliases that reach it) in MAIL FROM; anything else gets
/// `553 5.7.1` at RCPT, as Postfix's `reject_sender_login_mismatch`
/// answers. The grant counts for the user who logged in last from the
/// address. Mail from outside for a local user is not asked.
#[test]
fn issue14_a_user_sends_only_as_itself() {
    let (_aliases, server) = identity_server("sales: alice\nteam: alice, bob\nboss: bob\n");
    let result = server.python(
        "import smtpclient as s, popclient as p\n\
         c = s.connect('submission'); c.ehlo(); c.login('alice', 'alice-pw')\n\
         def as_sender(sender):\n\
         \x20   c.rset(); c.mail(sender); code, text = c.rcpt('carol@elsewhere.example')\n\
         \x20   return [code, text.decode()]\n\
         auth = [as_sender(a) for a in ['alice@test.example', 'sales@test.example', 'team@test.example', 'bob@test.example', 'boss@test.example', 'alice@elsewhere.example', '']]\n\
         c.quit()\n\
         p.Raw(source=('127.0.0.8', 0)).login('bob', 'secret')\n\
         p.Raw(source=('127.0.0.8', 0)).login('alice', 'alice-pw')\n\
         def granted(sender):\n\
         \x20   r = s.Raw(source='127.0.0.8'); r.cmd('EHLO client.example')\n\
         \x20   r.cmd('MAIL FROM:<%s>' % sender); rcpt = r.cmd('RCPT TO:<carol@elsewhere.example>')\n\
         \x20   r.cmd('QUIT'); return rcpt\n\
         grant = [granted('alice@test.example'), granted('bob@test.example')]\n\
         inbound = s.send_once('bob@test.example', ['alice@test.example'], b'Subject: hi\\r\\n\\r\\nx\\r\\n')\n\
         s.emit([auth, grant, inbound])",
        &[],
    );
    let auth = result[0].as_array().unwrap();
    let codes: Vec<u64> = auth.iter().map(|r| r[0].as_u64().unwrap()).collect();
    // Own name, an alias of hers, a list she is on: yes. Another user, an
    // alias of another user, an address elsewhere: no. The null sender: yes.
    assert_eq!(codes, [250, 250, 250, 553, 553, 553, 250], "{result}");
    assert_eq!(
        auth[3][1],
        "5.7.1 <bob@test.example>: Sender address rejected: not owned by user alice"
    );
    // bob logged in from .8 first, alice after him: the grant is alice's.
    assert!(
        result[1][0].as_str().unwrap().starts_with("250 "),
        "{result}"
    );
    assert_eq!(
        result[1][1],
        "553 5.7.1 <bob@test.example>: Sender address rejected: not owned by user alice"
    );
    assert_eq!(result[2]["error"], serde_json::Value::Null, "{result}");
    assert!(
        server.queued().is_empty(),
        "a refused transaction was queued"
    );
}

/// `sender_identity = "log"` accepts the mismatch (and logs it); `"off"`
/// does not look.
#[test]
fn issue14_sender_identity_can_log_or_be_off() {
    for mode in ["log", "off"] {
        let server = TestServer::with(Setup {
            smtp: format!("auth_failure_delay = \"100ms\"\nsender_identity = \"{mode}\"\n"),
            ..Setup::default()
        });
        let result = server.python(
            "import smtpclient as s\n\
             c = s.connect('submission'); c.ehlo(); c.login('alice', 'alice-pw')\n\
             c.mail('bob@test.example'); code, text = c.rcpt('carol@elsewhere.example')\n\
             s.emit([code, text.decode()])",
            &[],
        );
        assert_eq!(result[0], 250, "{mode}: {result}");
        let logged = server.log().contains("smtp sender not owned by the user");
        assert_eq!(logged, mode == "log", "{mode}");
    }
}

/// Issue 14, sender identity in the `From:` field: a user's message may
/// name only the user's addresses there (display names, comments and
/// aliases are fine); another user's address is refused at the end of
/// DATA with `553 5.7.1`, over AUTH and over a grant alike, and nothing
/// is delivered or queued. Mail from outside is not asked.
#[test]
fn issue14_the_from_field_names_only_the_users_addresses() {
    let (_aliases, server) = identity_server("sales: alice\n");
    let result = server.python(
        "import smtpclient as s, popclient as p\n\
         def submit(from_field):\n\
         \x20   c = s.connect('submission'); c.ehlo(); c.login('alice', 'alice-pw')\n\
         \x20   r = s.send(c, 'alice@test.example', ['bob@test.example'], ('From: %s\\r\\nSubject: t\\r\\n\\r\\nhi\\r\\n' % from_field).encode())\n\
         \x20   c.quit(); return r\n\
         auth = [submit(f) for f in ['Alice <alice@test.example>', '\"Sales (team)\" <sales@test.example> (shop)', 'Bob <bob@test.example>', 'alice@test.example, bob@test.example']]\n\
         p.Raw(source=('127.0.0.8', 0)).login('alice', 'alice-pw')\n\
         r = s.Raw(source='127.0.0.8'); r.cmd('EHLO client.example'); r.cmd('MAIL FROM:<alice@test.example>')\n\
         r.cmd('RCPT TO:<carol@elsewhere.example>'); r.cmd('DATA')\n\
         granted = r.cmd('From: bob@test.example\\r\\nSubject: t\\r\\n\\r\\nhi\\r\\n.')\n\
         inbound = s.send_once('x@remote.example', ['alice@test.example'], b'From: bob@test.example\\r\\n\\r\\nx\\r\\n')\n\
         s.emit([auth, granted, inbound])",
        &[],
    );
    let auth = result[0].as_array().unwrap();
    assert_eq!(auth[0]["error"], serde_json::Value::Null, "{result}");
    assert_eq!(auth[1]["error"], serde_json::Value::Null, "{result}");
    assert_eq!(
        auth[2]["error"],
        serde_json::json!([
            553,
            "5.7.1 From: <bob@test.example> is not an address of user alice"
        ]),
        "{result}"
    );
    assert_eq!(auth[3]["error"][0], 553, "{result}");
    assert_eq!(
        result[1],
        "553 5.7.1 From: <bob@test.example> is not an address of user alice"
    );
    assert_eq!(result[2]["error"], serde_json::Value::Null, "{result}");
    assert_eq!(
        server.messages("bob").len(),
        2,
        "only the two accepted ones"
    );
    assert!(server.queued().is_empty());
}

/// Issue 14, sender identity configured: extra addresses per user from a
/// Postfix-style sender logins table (an address, or a whole domain);
/// `sender_identity_domains` relaxes one domain; `relay_networks`
/// clients are exempt until `sender_identity_networks` holds them to the
/// addresses of this server's users. A table with a bad line stops the
/// start, naming the file, with status 2.
#[test]
fn issue14_extra_addresses_domains_and_networks() {
    let dir = tempfile::tempdir().unwrap();
    let logins = dir.path().join("senders");
    std::fs::write(
        &logins,
        "# shared and outside addresses\nsupport@test.example alice\nalice@elsewhere.example alice\n@corp.example bob\n",
    )
    .unwrap();
    let server = TestServer::with(Setup {
        smtp: format!(
            "auth_failure_delay = \"100ms\"\nsender_logins_file = \"{}\"\nsender_identity_domains = {{ \"lists.example\" = \"off\" }}\nrelay_networks = [\"127.0.0.9/32\"]\nsender_identity_networks = true\n",
            logins.display()
        ),
        ..Setup::default()
    });
    let result = server.python(
        "import smtpclient as s\n\
         c = s.connect('submission'); c.ehlo(); c.login('alice', 'alice-pw')\n\
         def as_sender(sender):\n\
         \x20   c.rset(); c.mail(sender); code, text = c.rcpt('carol@elsewhere.example')\n\
         \x20   return code\n\
         auth = [as_sender(a) for a in ['support@test.example', 'alice@elsewhere.example', 'x@corp.example', 'anyone@lists.example', 'bob@test.example']]\n\
         c.rset(); data = s.send(c, 'alice@test.example', ['carol@elsewhere.example'], b'From: Support <support@test.example>\\r\\n\\r\\nhi\\r\\n')\n\
         c.quit()\n\
         def network(sender):\n\
         \x20   r = s.Raw(source='127.0.0.9'); r.cmd('EHLO client.example')\n\
         \x20   r.cmd('MAIL FROM:<%s>' % sender); rcpt = r.cmd('RCPT TO:<carol@elsewhere.example>')\n\
         \x20   r.cmd('QUIT'); return rcpt\n\
         nets = [network(a) for a in ['bob@test.example', 'x@corp.example', 'spoof@bank.example']]\n\
         s.emit([auth, data, nets])",
        &[],
    );
    assert_eq!(
        result[0],
        serde_json::json!([250, 250, 553, 250, 553]),
        "{result}"
    );
    assert_eq!(result[1]["error"], serde_json::Value::Null, "{result}");
    let nets = result[2].as_array().unwrap();
    assert!(nets[0].as_str().unwrap().starts_with("250"), "{result}");
    assert!(nets[1].as_str().unwrap().starts_with("250"), "{result}");
    assert!(
        nets[2]
            .as_str()
            .unwrap()
            .starts_with("553 5.7.1 <spoof@bank.example>: Sender address rejected: not an address of this server's users"),
        "{result}"
    );

    std::fs::write(&logins, "support@test.example\n").unwrap();
    let config = server.config_path();
    let out = crate::harness::yubin(
        &["serve", "--config", config.to_str().unwrap()],
        "",
        server.dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("smtp.sender_logins_file") && stderr.contains("line 1"),
        "{stderr}"
    );
}

/// Issue 14 (review): a From: field that cannot be read, or a message that
/// is all header with no blank line, cannot hide another user's address:
/// the first is refused in `enforce` mode, the second is read to its end.
#[test]
fn issue14_a_from_field_that_cannot_be_checked_is_refused() {
    let (_aliases, server) = identity_server("");
    let result = server.python(
        "import smtpclient as s\n\
         def submit(data):\n\
         \x20   c = s.connect('submission'); c.ehlo(); c.login('alice', 'alice-pw')\n\
         \x20   r = s.send(c, 'alice@test.example', ['carol@elsewhere.example'], data)\n\
         \x20   c.quit(); return r\n\
         s.emit([submit(d) for d in [b'From: Bob <bob@test.example>\\r\\nSubject: only a header', b'From: <bob@test.example> junk\\r\\n\\r\\nx\\r\\n', b'From: Alice <alice@test.example>\\r\\nSubject: mine, header only', b'From: alice@test.example\\r\\nSender: Bob <bob@test.example>\\r\\n\\r\\nx\\r\\n']])",
        &[],
    );
    let results = result.as_array().unwrap();
    assert_eq!(
        results[0]["error"],
        serde_json::json!([
            553,
            "5.7.1 From: <bob@test.example> is not an address of user alice"
        ]),
        "{result}"
    );
    assert_eq!(
        results[1]["error"],
        serde_json::json!([
            553,
            "5.7.1 the From: field cannot be read; write it as Name <address>"
        ]),
        "{result}"
    );
    assert_eq!(results[2]["error"], serde_json::Value::Null, "{result}");
    assert_eq!(
        results[3]["error"],
        serde_json::json!([
            553,
            "5.7.1 From: <bob@test.example> is not an address of user alice"
        ]),
        "a Sender: field is held to the same rule: {result}"
    );
}
