//! DKIM signing of mail that leaves (issue 14): keys made with
//! `yubin dkim keygen`, found in the data directory after a restart; a
//! user's relayed mail and the server's own bounces arrive at the next
//! server signed, and the signatures verify with `mail-auth`'s verifier
//! against the public keys in a real DNS server on loopback. Verification
//! by dkimpy, OpenDKIM and rspamd is in the interop script.

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use yubin_test_dns::TestDns;

use crate::harness::{Setup, TestServer, hex_list, yubin};
use crate::smtp::hex;

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];
const BOB: [(&str, &str); 2] = [("USER_NAME", "bob"), ("USER_PASS", "secret")];

/// Each signature's result, as mail-auth reports it.
pub(crate) fn verify(dns: &TestDns, message: &[u8]) -> Vec<String> {
    // The resolver settings yubin itself uses for one name server.
    let (config, options) = yubin_queue::engine::dns::resolver_config(Some(dns.addr())).unwrap();
    let verifier = MessageAuthenticator::new(config, options).unwrap();
    let parsed = AuthenticatedMessage::parse(message).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        verifier
            .verify_dkim(&parsed)
            .await
            .iter()
            .map(|o| match o.result() {
                DkimResult::Pass => "pass".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    })
}

/// Runs `yubin dkim keygen` for A and publishes the record it prints.
pub(crate) fn keygen(a: &TestServer, dns: &TestDns, args: &[&str]) {
    let config = a.config_path();
    let mut all = vec!["dkim", "keygen"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    let out = yubin(&all, "", a.dir.path());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_owned()
    };
    dns.txt(&field("name:"), &field("value:"));
}

/// The fields of the first DKIM-Signature, unfolded.
fn signature_of(message: &str) -> String {
    let start = message.find("DKIM-Signature:").expect("a signature");
    let mut field = String::new();
    for (i, line) in message[start..].split("\r\n").enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        field.push_str(line.trim());
    }
    field
}

/// Relayed mail from alice (POP before SMTP) and a bounce the server
/// writes for a remote sender both reach B signed with RSA and Ed25519
/// keys; the signature covers the awkward bytes (8-bit text, dot lines, no
/// final newline, long folded fields) and A's own trace fields.
#[test]
fn issue14_relayed_mail_and_bounces_leave_signed() {
    let dns = TestDns::start().unwrap();
    let b = TestServer::with(Setup {
        hostname: "b.test".into(),
        ..Setup::default()
    });
    let mut a = TestServer::with(Setup {
        smtp: "auth_failure_delay = \"100ms\"\nrelay_networks = [\"127.0.0.0/8\"]\n".into(),
        tables: format!(
            "[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{}\" }}\nfirst_retry = \"1s\"\nmax_retry = \"1s\"\n\n[dns]\nresolver = \"{}\"\n",
            b.smtp.port(),
            dns.addr()
        ),
        ..Setup::default()
    });
    keygen(&a, &dns, &["test.example", "--selector", "rsa1"]);
    keygen(
        &a,
        &dns,
        &["test.example", "-s", "ed1", "--algorithm", "ed25519"],
    );
    a.restart();
    assert!(a.log().contains("DKIM key loaded"), "{}", a.log());

    // A message as a mail client writes it, with what is hard to keep
    // intact: no Date or Message-ID (A adds them, under the signature).
    let message = "From: Alice <alice@test.example>\r\nTo: bob@b.test\r\n\
        Subject: a subject line long enough that a mail client folds it, and then\r\n \
        goes on after the fold\r\nContent-Type: text/plain; charset=utf-8\r\n\
        MIME-Version: 1.0\r\n\r\nGrüße, 8-bit\r\n.a dot line\r\n..two dots\r\n\r\n\
        no final newline";
    let sent = a.python(
        &format!(
            "import popclient as p, smtpclient as s\n\
             c = p.connect(); p.login(c); c.quit()\n\
             s.emit(s.send_once('alice@test.example', ['bob@b.test'], bytes.fromhex('{}')))",
            hex(message.as_bytes())
        ),
        &ALICE,
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    crate::outbound::eventually(20, "delivery to B", || b.messages("bob").len() == 1);
    let log = a.log();
    assert!(
        log.contains("dkim=test.example/ed1 test.example/rsa1"),
        "the accept line names the signatures: {log}"
    );
    let fetched = b.python(
        "import popclient as p\nc = p.connect(); p.login(c); p.emit(p.fetch_all(c)['messages'])",
        &BOB,
    );
    let fetched = hex_list(&fetched);
    let text = String::from_utf8_lossy(&fetched[0]).into_owned();
    assert_eq!(verify(&dns, &fetched[0]), ["pass", "pass"], "{text}");
    if std::env::var_os("SHOW").is_some() {
        eprintln!("{text}");
    }
    let signature = signature_of(&text);
    assert!(signature.contains("c=relaxed/relaxed"), "{signature}");
    assert!(signature.contains("d=test.example"), "{signature}");
    let h = signature
        .split(';')
        .find_map(|t| t.trim().strip_prefix("h="))
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(h.matches("from").count(), 2, "From over-signed: {h}");
    for name in [
        "to",
        "subject",
        "date",
        "message-id",
        "content-type",
        "mime-version",
    ] {
        assert!(h.split(':').any(|f| f == name), "{name} signed: {h}");
    }
    // Changed on the way: the signature no longer verifies.
    let tampered = text.replace("Grüße", "Grüsse");
    assert_ne!(verify(&dns, tampered.as_bytes()), ["pass", "pass"]);

    // A trusted network relays for a remote sender; B refuses the
    // recipient; A's bounce to bob@b.test is signed by A's domain.
    let sent = a.python(
        "import smtpclient as s\n\
         s.emit(s.send_once('bob@b.test', ['nobody@b.test'], b'From: bob@b.test\\r\\nSubject: lost\\r\\n\\r\\nx\\r\\n'))",
        &[],
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    crate::outbound::eventually(30, "the bounce at B", || b.messages("bob").len() == 2);
    let fetched = b.python(
        "import popclient as p\nc = p.connect(); p.login(c); p.emit(p.fetch_all(c)['messages'])",
        &BOB,
    );
    let fetched = hex_list(&fetched);
    let bounce = fetched
        .iter()
        .find(|m| String::from_utf8_lossy(m).contains("MAILER-DAEMON@test.example"))
        .expect("the bounce");
    let bounce_text = String::from_utf8_lossy(bounce);
    assert_eq!(verify(&dns, bounce), ["pass", "pass"], "{bounce_text}");
    // Mail from a domain without keys leaves unsigned.
    assert!(!text.contains("d=b.test"));
}

/// With `dkim.sign = false` keys are ignored; with a key file that is not
/// a key the server refuses to start, naming the file, with status 2.
#[test]
fn issue14_signing_can_be_off_and_bad_keys_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let domain = dir.path().join("data/dkim/test.example");
    std::fs::create_dir_all(&domain).unwrap();
    std::fs::write(dir.path().join("data/users"), "").unwrap();
    std::fs::write(
        domain.join("broken.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = dir.path().join("yubin.toml");
    let base = format!(
        "data_dir = \"{}\"\n[server]\nallow_root = true\n[pop3]\nlisten = [\"127.0.0.1:0\"]\nlisten_tls = []\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nsubmission = []\nsubmissions = []\n",
        dir.path().join("data").display()
    );
    std::fs::write(&config, &base).unwrap();
    let out = yubin(
        &["serve", "--config", config.to_str().unwrap()],
        "",
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("broken.key"), "{stderr}");

    let listed = yubin(
        &["dkim", "list", "--config", config.to_str().unwrap()],
        "",
        dir.path(),
    );
    assert_eq!(listed.status.code(), Some(2));

    // Off: the broken key is not even read.
    std::fs::write(&config, format!("{base}[dkim]\nsign = false\n")).unwrap();
    let checked = yubin(
        &["check-config", "--config", config.to_str().unwrap()],
        "",
        dir.path(),
    );
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // A bad [dns] resolver or a conflicting queue.dns names the key.
    for (extra, key) in [
        ("[dns]\nresolver = \"8.8.8.8\"\n", "dns.resolver"),
        (
            "[dns]\nresolver = \"127.0.0.1:53\"\n[queue]\ndns = \"127.0.0.2:53\"\n",
            "queue.dns",
        ),
        (
            "[dkim.domains.\"test.example\"]\nselector = \"a/b\"\nkey = \"k\"\n",
            "dkim.domains.\"test.example\".selector",
        ),
    ] {
        std::fs::write(&config, format!("{base}{extra}")).unwrap();
        let checked = yubin(
            &["check-config", "--config", config.to_str().unwrap()],
            "",
            dir.path(),
        );
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert_eq!(checked.status.code(), Some(2), "{extra}: {stderr}");
        assert!(stderr.contains(key), "{extra}: {stderr}");
    }
}

/// Issue 14 (review): our signature only goes on mail whose From: is the
/// sender's own. With `sender_identity = "log"` another user's address is
/// let through, but unsigned; the user's own address is signed.
#[test]
fn issue14_only_a_users_own_from_is_signed() {
    let dns = TestDns::start().unwrap();
    let b = TestServer::with(Setup {
        hostname: "b.test".into(),
        ..Setup::default()
    });
    let mut a = TestServer::with(Setup {
        smtp: "auth_failure_delay = \"100ms\"\nsender_identity = \"log\"\n".into(),
        tables: format!(
            "[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{}\" }}\nfirst_retry = \"1s\"\nmax_retry = \"1s\"\n",
            b.smtp.port()
        ),
        ..Setup::default()
    });
    keygen(&a, &dns, &["test.example", "-s", "ed1", "-a", "ed25519"]);
    a.restart();
    for from in ["alice@test.example", "bob@test.example"] {
        let sent = a.python(
            &format!(
                "import popclient as p, smtpclient as s\n\
                 c = p.connect(); p.login(c); c.quit()\n\
                 s.emit(s.send_once('alice@test.example', ['bob@b.test'], b'From: {from}\\r\\nSubject: from {from}\\r\\n\\r\\nx\\r\\n'))"
            ),
            &ALICE,
        );
        assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    }
    crate::outbound::eventually(20, "both at B", || b.messages("bob").len() == 2);
    for message in b.messages("bob") {
        let text = String::from_utf8_lossy(&message).into_owned();
        let signed = text.contains("DKIM-Signature:");
        if text.contains("Subject: from alice@") {
            assert!(signed, "the user's own From: is signed: {text}");
            assert_eq!(verify(&dns, &message), ["pass"]);
        } else {
            assert!(!signed, "another user's From: is not: {text}");
        }
    }
}
