//! Sender authentication on the MX listener (issue 15): SPF, DKIM and
//! DMARC against records a DNS server on loopback serves. A `p=reject`
//! failure is refused at the end of DATA and never reaches a Maildir; a
//! `quarantine` failure is delivered tagged; a forged Authentication-Results
//! field under our authserv-id is removed and ours added; a user's own
//! submission is not checked.

use yubin_test_dns::TestDns;

use crate::harness::{Setup, TestServer};

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];

fn send(server: &TestServer, from: &str, message: &str) -> serde_json::Value {
    server.python(
        &format!(
            "import smtpclient as s\n\
             s.emit(s.send_once({from:?}, ['alice@test.example'], {message:?}.encode()))"
        ),
        &[],
    )
}

#[test]
fn issue15_dmarc_spf_and_forged_results_on_the_mx_listener() {
    let dns = TestDns::start().unwrap();
    // bank.test allows no one and asks for rejection; shop.test for
    // quarantine; ok.test allows 127.0.0.1.
    dns.txt("bank.test", "v=spf1 -all");
    dns.txt("_dmarc.bank.test", "v=DMARC1; p=reject");
    dns.txt("shop.test", "v=spf1 -all");
    dns.txt("_dmarc.shop.test", "v=DMARC1; p=quarantine");
    dns.txt("ok.test", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt("_dmarc.ok.test", "v=DMARC1; p=reject");
    let server = TestServer::with(Setup {
        tables: format!("[dns]\nresolver = \"{}\"\n", dns.addr()),
        ..Setup::default()
    });

    // p=reject, no aligned pass: 550, nothing stored.
    let refused = send(
        &server,
        "ceo@bank.test",
        "From: CEO <ceo@bank.test>\r\nSubject: wire the money\r\n\r\nnow\r\n",
    );
    assert_eq!(refused["error"][0], 550, "{refused}");
    assert!(
        refused["error"][1]
            .as_str()
            .unwrap()
            .contains("5.7.1 Message rejected: the DMARC policy of bank.test"),
        "{refused}"
    );
    assert!(server.messages("alice").is_empty());
    assert!(
        server
            .log()
            .contains("smtp message refused by sender authentication"),
        "{}",
        server.log()
    );

    // p=quarantine: delivered, tagged.
    let sent = send(
        &server,
        "news@shop.test",
        "From: <news@shop.test>\r\nSubject: deals\r\nX-Spam-Flag: NO\r\n\r\nbuy\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");

    // Passes (SPF aligned), and carries a forged result under our id.
    let sent = send(
        &server,
        "a@ok.test",
        "From: <a@ok.test>\r\nAuthentication-Results: test.example; dkim=pass header.d=bank.test\r\n\
         Authentication-Results: elsewhere.example; spf=pass\r\nSubject: fine\r\n\r\nhello\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");

    let stored: Vec<String> = server
        .messages("alice")
        .iter()
        .map(|m| String::from_utf8_lossy(m).replace("\r\n", "\n"))
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    let deals = stored.iter().find(|m| m.contains("deals")).unwrap();
    assert!(deals.contains("Subject: [SPAM] deals"), "{deals}");
    assert!(deals.contains("X-Spam-Flag: YES"), "{deals}");
    assert!(!deals.contains("X-Spam-Flag: NO"), "{deals}");
    assert!(
        deals.contains("dmarc=fail header.from=shop.test policy.dmarc=quarantine"),
        "{deals}"
    );
    let fine = stored.iter().find(|m| m.contains("Subject: fine")).unwrap();
    assert_eq!(
        fine.matches("Authentication-Results: test.example;")
            .count(),
        1,
        "only ours: {fine}"
    );
    assert!(
        !fine.contains("header.d=bank.test"),
        "the forgery is gone: {fine}"
    );
    assert!(
        fine.contains("Authentication-Results: elsewhere.example; spf=pass"),
        "others' results stay: {fine}"
    );
    assert!(fine.contains("spf=pass"), "{fine}");
    assert!(
        fine.contains("dmarc=pass header.from=ok.test policy.dmarc=reject"),
        "{fine}"
    );

    // A user's own mail (a POP-before-SMTP grant) is not checked.
    let own = server.python(
        "import popclient as p, smtpclient as s\n\
         c = p.connect(); p.login(c); c.quit()\n\
         s.emit(s.send_once('alice@test.example', ['alice@test.example'], \
         b'From: <ceo@bank.test>\\r\\nSubject: own\\r\\n\\r\\nx\\r\\n'))",
        &ALICE,
    );
    assert_eq!(own["error"], serde_json::Value::Null, "{own}");
    let own = server
        .messages("alice")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .find(|m| m.contains("Subject: own"))
        .unwrap();
    assert!(!own.contains("Authentication-Results"), "{own}");
}

/// A signature with simple canonicalisation (the default when `c=` is
/// absent), made by mail-auth's signer, survives the way in: the check
/// reads the message with the CRLF line ends it was sent with, not as the
/// Maildir keeps it.
#[test]
fn issue15_a_simple_canonicalised_signature_passes() {
    use base64::Engine as _;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::dkim::{Canonicalization, DkimSigner};

    let dns = TestDns::start().unwrap();
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    dns.txt(
        "s1._domainkey.simple.test",
        &format!(
            "v=DKIM1; k=ed25519; p={}",
            base64::engine::general_purpose::STANDARD.encode(key.public_key())
        ),
    );
    dns.txt("_dmarc.simple.test", "v=DMARC1; p=reject");
    let server = TestServer::with(Setup {
        tables: format!("[dns]\nresolver = \"{}\"\n", dns.addr()),
        ..Setup::default()
    });
    let message = "From: <news@simple.test>\r\nTo: <alice@test.example>\r\nSubject: simple\r\n\r\nline one\r\n\r\nline three\r\n";
    let signature = DkimSigner::from_key(key)
        .domain("simple.test")
        .selector("s1")
        .headers(["From", "To", "Subject"])
        .header_canonicalization(Canonicalization::Simple)
        .body_canonicalization(Canonicalization::Simple)
        .sign(message.as_bytes())
        .unwrap();
    let signed = format!("{}{message}", signature.to_header());
    // From another domain's bounce address: SPF cannot align, DKIM must.
    let sent = send(&server, "bounce@esp.test", &signed);
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    let stored = String::from_utf8_lossy(&server.messages("alice")[0]).replace("\r\n", "\n");
    assert!(stored.contains("dkim=pass"), "{stored}");
    assert!(
        stored.contains("dmarc=pass header.from=simple.test"),
        "{stored}"
    );
}

/// A domain of ours may want DMARC `p=reject` failures tagged, not
/// refused; another keeps the default.
#[test]
fn issue15_dmarc_policy_per_recipient_domain() {
    let dns = TestDns::start().unwrap();
    dns.txt("bank.test", "v=spf1 -all");
    dns.txt("_dmarc.bank.test", "v=DMARC1; p=reject");
    let server = TestServer::with(Setup {
        tables: format!(
            "[dns]\nresolver = \"{}\"\n[inbound.domains.\"lenient.test\"]\ndmarc_reject = \"tag\"\n",
            dns.addr()
        ),
        users: vec![
            ("alice".into(), "{PLAIN}alice-pw".into()),
            ("carol@lenient.test".into(), "{PLAIN}carol-pw".into()),
        ],
        ..Setup::default()
    });
    let message = "From: CEO <ceo@bank.test>\r\nSubject: wire the money\r\n\r\nnow\r\n";
    let send_to = |rcpt: &str| {
        server.python(
            &format!(
                "import smtpclient as s\n\
                 s.emit(s.send_once('ceo@bank.test', [{rcpt:?}], {message:?}.encode()))"
            ),
            &[],
        )
    };
    let strict = send_to("alice@test.example");
    assert_eq!(strict["error"][0], 550, "{strict}");
    let lenient = send_to("carol@lenient.test");
    assert_eq!(lenient["error"], serde_json::Value::Null, "{lenient}");
    let stored = server.messages("lenient.test/carol");
    assert_eq!(stored.len(), 1);
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(text.contains("Subject: [SPAM] wire the money"), "{text}");
}

/// With `authentication = false` nothing is checked or added, but a field
/// that claims our authserv-id is still a forgery and goes.
#[test]
fn issue15_forged_results_go_even_without_authentication() {
    let server = TestServer::with(Setup {
        tables: "[inbound]\nauthentication = false\n".into(),
        ..Setup::default()
    });
    let sent = send(
        &server,
        "a@example.net",
        "From: <a@example.net>\r\nAuthentication-Results: test.example; dmarc=pass header.from=bank.test\r\n\
         Subject: forged\r\n\r\nx\r\n",
    );
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    let stored = server.messages("alice");
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(!text.contains("Authentication-Results"), "{text}");
    assert!(text.contains("Subject: forged"), "{text}");
}

/// A header padded past what the spool keeps at hand (64 KiB) still has
/// its forgery under our authserv-id removed.
#[test]
fn issue15_a_forgery_behind_a_long_header_goes_too() {
    let server = TestServer::with(Setup {
        tables: "[inbound]\nauthentication = false\n".into(),
        ..Setup::default()
    });
    let padding: String = (0..2000)
        .map(|n| format!("X-Pad-{n}: {}\r\n", "p".repeat(40)))
        .collect();
    let message = format!(
        "From: <a@example.net>\r\n{padding}Authentication-Results: test.example; dmarc=pass header.from=bank.test\r\n\
         Subject: padded\r\n\r\nbody\r\n"
    );
    let sent = send(&server, "a@example.net", &message);
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    let stored = server.messages("alice");
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(text.len() > 100_000);
    assert!(
        !text.contains("Authentication-Results"),
        "the forgery stayed"
    );
    assert!(text.contains("X-Pad-1999: "));
    assert!(text.ends_with("Subject: padded\n\nbody\n"));
}
