//! DKIM signatures made here, checked by a verifier nobody here wrote
//! (`mail-auth`'s own, the one Stalwart uses), which fetches the public key
//! from a real DNS server on loopback; keys made by `dkim::generate` and
//! read back by the keyring.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use yubin_mailauth::dkim::{self, Algorithm, Keyring, Signing};
use yubin_test_dns::TestDns;

fn verifier(dns: &TestDns) -> MessageAuthenticator {
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.addr().port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns.addr().port();
    let server = NameServerConfig::new(dns.addr().ip(), true, vec![udp, tcp]);
    MessageAuthenticator::new(
        ResolverConfig::from_name_servers(vec![server]),
        ResolverOpts::default(),
    )
    .expect("a resolver")
}

/// The signature fields, then the message as it goes on the wire.
fn signed(keys: &[dkim::Key], stored: &[u8]) -> Vec<u8> {
    let fields = Signing::new(keys)
        .sign(&mut |out: &mut dyn Write| out.write_all(stored))
        .expect("signed");
    let mut message = fields.into_bytes();
    message.extend_from_slice(stored);
    let mut wire = Vec::new();
    let mut lines = yubin_line::CrlfLines::new();
    lines.convert(&message, &mut wire);
    lines.finish(&mut wire);
    wire
}

fn results(dns: &TestDns, wire: &[u8]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let verifier = verifier(dns);
    let message = AuthenticatedMessage::parse(wire).expect("parsed");
    runtime.block_on(async {
        verifier
            .verify_dkim(&message)
            .await
            .iter()
            .map(|output| match output.result() {
                DkimResult::Pass => "pass".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    })
}

/// Messages as they are found: long folded headers, 8-bit text, lines
/// that start with a dot, LF line ends, no final newline, trailing blank
/// lines and whitespace the relaxed body rule strips.
const MESSAGES: &[&[u8]] = &[
    b"From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: plain\n\nhello\n",
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: crlf\r\n\r\nhello\r\n.dot line\r\n..two\r\n",
    "From: \"Ålice\" <alice@example.org>\nSubject: 8-bit ünïcödé, raw\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nMIME-Version: 1.0\n\nGrüße aus Köln\n".as_bytes(),
    b"From: alice@example.org\nTo: a@example.net,\n b@example.net,\n\tc@example.net\nSubject: folded subject line that goes on and on and on and on and on and on and on and on\n  and continues here\nList-Unsubscribe: <mailto:unsub@example.org>\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n\nbody without final newline",
    b"From: alice@example.org\nSubject: trailing space   \n\nline with trailing space   \n\n\n\n",
    b"From: alice@example.org\nSubject: empty body\n\n",
    b"From: alice@example.org\nSubject: no body at all\n",
];

#[test]
fn rsa_and_ed25519_signatures_verify() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = dkim::generate(dir.path(), "example.org", "r2026", Algorithm::Rsa).unwrap();
    let ed = dkim::generate(dir.path(), "example.org", "e2026", Algorithm::Ed25519).unwrap();
    let dns = TestDns::start().unwrap();
    for generated in [&rsa, &ed] {
        dns.txt(&generated.record_name(), &generated.key.record());
    }
    let keyring = Keyring::load(dir.path(), &[]).unwrap();
    let keys = keyring.for_domain("example.org");
    assert_eq!(keys.len(), 2, "both selectors sign");
    for stored in MESSAGES {
        let wire = signed(keys, stored);
        let text = String::from_utf8_lossy(&wire);
        assert_eq!(results(&dns, &wire), ["pass", "pass"], "{text}");
        assert!(text.contains("c=relaxed/relaxed"), "{text}");
        assert!(
            text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"),
            "{text}"
        );
    }
}

/// The closing ";" never stands on a line of its own (dkimpy would fail
/// such a signature), whatever the length of b=.
#[test]
fn no_fold_before_the_closing_semicolon() {
    let dir = tempfile::tempdir().unwrap();
    let key = dkim::generate(dir.path(), "example.org", "rsa1", Algorithm::Rsa).unwrap();
    let keys = vec![key.key];
    // Which fields are present decides h=, and so where b= starts.
    let optional = [
        "Cc",
        "Reply-To",
        "In-Reply-To",
        "References",
        "List-Id",
        "Content-Language",
        "Sender",
    ];
    for mask in 0..(1u32 << optional.len()) {
        let mut message = String::from("From: alice@example.org\n");
        for (i, name) in optional.iter().enumerate() {
            if mask & (1 << i) != 0 {
                message.push_str(&format!("{name}: x\n"));
            }
        }
        message.push_str("\nbody\n");
        let fields = Signing::new(&keys)
            .sign(&mut |out: &mut dyn Write| out.write_all(message.as_bytes()))
            .unwrap();
        assert!(!fields.contains("\n\t;"), "{fields}");
        assert!(fields.ends_with(";\n"), "{fields}");
    }
}

#[test]
fn a_changed_message_fails() {
    let dir = tempfile::tempdir().unwrap();
    let key = dkim::generate(dir.path(), "example.org", "s1", Algorithm::Ed25519).unwrap();
    let dns = TestDns::start().unwrap();
    dns.txt(&key.record_name(), &key.key.record());
    let keys = vec![key.key.clone()];
    let wire = signed(&keys, MESSAGES[0]);
    assert_eq!(results(&dns, &wire), ["pass"]);

    let text = String::from_utf8(wire.clone()).unwrap();
    for changed in [
        text.replace("hello", "hullo"),
        text.replace("Subject: plain", "Subject: plan"),
        // A second From: or Subject: added on the way, or a Reply-To
        // where there was none: the over-signing catches them.
        text.replace("To: bob@", "From: mallory@example.com\r\nTo: bob@"),
        text.replace("To: bob@", "Subject: pay now\r\nTo: bob@"),
        text.replace("To: bob@", "Reply-To: mallory@example.com\r\nTo: bob@"),
    ] {
        let results = results(&dns, changed.as_bytes());
        assert_eq!(results.len(), 1);
        assert_ne!(results[0], "pass", "{changed}");
    }
}

#[test]
fn signed_fields_are_the_present_ones_then_the_oversigned() {
    let fields = dkim::sign::signed_fields(
        b"Received: x\nfrom: a@b.example\nSUBJECT: s\nX-Other: 1\nTo: c\n continued: not a field\nList-Unsubscribe: <u>\n\nTo: body\n",
    );
    let mut expected = vec!["From", "To", "Subject", "List-Unsubscribe"];
    expected.extend(dkim::sign::OVERSIGNED);
    assert_eq!(fields, expected);
    assert_eq!(
        dkim::sign::signed_fields(b"Subject: no from\n\n"),
        ["Subject"]
    );
    let keys: Vec<dkim::Key> = Vec::new();
    assert_eq!(
        Signing::new(&keys)
            .sign(&mut |out: &mut dyn Write| out.write_all(b"Subject: x\n\n"))
            .unwrap(),
        "",
        "no keys, no signature"
    );
}

#[test]
fn keys_are_written_privately_once_and_found_by_domain() {
    let dir = tempfile::tempdir().unwrap();
    let made = dkim::generate(dir.path(), "Example.ORG.", "y2026m12", Algorithm::Ed25519).unwrap();
    assert_eq!(made.path, dir.path().join("example.org/y2026m12.key"));
    let mode = std::fs::metadata(&made.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(dir.path().join("example.org"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    assert_eq!(made.record_name(), "y2026m12._domainkey.example.org");
    assert!(made.key.record().starts_with("v=DKIM1; k=ed25519; p="));
    assert!(
        made.zone_line()
            .starts_with("y2026m12._domainkey.example.org. IN TXT \"")
    );

    let again = dkim::generate(dir.path(), "example.org", "y2026m12", Algorithm::Rsa);
    assert!(
        matches!(again, Err(dkim::KeygenError::Exists(_))),
        "{again:?}"
    );
    for (domain, selector) in [
        ("../etc", "s"),
        ("example.org", "a/b"),
        ("", "s"),
        ("a..b", "s"),
    ] {
        let refused = dkim::generate(dir.path(), domain, selector, Algorithm::Ed25519);
        assert!(
            matches!(refused, Err(dkim::KeygenError::Name { .. })),
            "{domain} {selector}: {refused:?}"
        );
    }

    let keyring = Keyring::load(dir.path(), &[]).unwrap();
    assert_eq!(keyring.for_domain("example.org").len(), 1);
    assert_eq!(
        keyring.for_domain("mx.EXAMPLE.org").len(),
        1,
        "relaxed alignment"
    );
    assert!(keyring.for_domain("example.net").is_empty());
    assert!(keyring.for_domain("org").is_empty());
}

#[test]
fn an_rsa_key_publishes_its_subject_public_key_info() {
    let dir = tempfile::tempdir().unwrap();
    let made = dkim::generate(dir.path(), "example.org", "s", Algorithm::Rsa).unwrap();
    let record = made.key.record();
    // SubjectPublicKeyInfo for rsaEncryption starts with these octets in
    // base64, whatever the key ("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
    // for 2048 bits), and is what OpenDKIM and dkimpy read.
    assert!(
        record.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
        "{record}"
    );
    let zone = made.zone_line();
    assert!(zone.matches('"').count() >= 4, "split into strings: {zone}");
}

#[test]
fn unusable_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let domain = dir.path().join("example.org");
    std::fs::create_dir_all(&domain).unwrap();
    std::fs::write(domain.join("bad.key"), "not a key").unwrap();
    let error = Keyring::load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        error.contains("bad.key") && error.contains("no PEM private key"),
        "{error}"
    );
    // Not a key: ignored.
    std::fs::remove_file(domain.join("bad.key")).unwrap();
    std::fs::write(domain.join("README"), "notes").unwrap();
    assert!(Keyring::load(dir.path(), &[]).unwrap().is_empty());
    // No directory: no keys.
    assert!(
        Keyring::load(&dir.path().join("missing"), &[])
            .unwrap()
            .is_empty()
    );
}
