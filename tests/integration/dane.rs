//! DANE (RFC 7672, issue 14): the sending server A asks a DNS server on
//! loopback, which answers with the AD bit for the zones it calls
//! validated, as a validating resolver does for signed zones. (The
//! interop script runs the same cases through unbound and zones signed
//! with ldns-signzone, bogus signature included.) B, the destination of
//! every domain, presents a certificate from a test CA, with the CA in
//! its chain.

use yubin_test_dns::TestDns;

use crate::harness::{Setup, TestServer};
use crate::outbound::eventually;
use crate::test_ca::TestCa;

/// A matching DANE-EE record delivers, and so does a DANE-TA record for
/// the CA in B's chain; a TLSA record naming another key stops delivery
/// before MAIL, with no plaintext retry; TLSA records of a zone that is
/// not validated are ignored (the next policy, opportunistic TLS,
/// delivers); a TLSA lookup that fails for a validated host (a bogus
/// signature) keeps the mail waiting.
#[test]
fn issue14_dane_decides_by_validated_tlsa_records() {
    let domains = [
        "ee.test",
        "ta.test",
        "bad.test",
        "plain.test",
        "bogus.test",
        "cname.test",
        "unusable.test",
        "slow.test",
    ];
    let mx_hosts: Vec<String> = domains.iter().map(|d| format!("mx.{d}")).collect();
    let names: Vec<&str> = mx_hosts.iter().map(String::as_str).collect();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(ca_dir.path());
    ca.server(ca_dir.path(), "b", &names, (2025, 2035));
    // The chain B sends: its certificate, then the CA's.
    let chain = ca_dir.path().join("b-chain.pem");
    let leaf = std::fs::read_to_string(ca_dir.path().join("b.pem")).unwrap();
    let root = std::fs::read_to_string(ca_dir.path().join("ca.pem")).unwrap();
    std::fs::write(&chain, format!("{leaf}{root}")).unwrap();
    let key_path = ca_dir.path().join("b.key");
    let leaf_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    use rcgen::PublicKeyData;

    let b = TestServer::with(Setup {
        hostname: "b.test".into(),
        smtp: format!(
            "auth_failure_delay = \"100ms\"\nlocal_domains = [{}]\n",
            domains
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        tables: format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            chain.display(),
            key_path.display()
        ),
        ..Setup::default()
    });
    let dns = TestDns::start().unwrap();
    for domain in domains {
        dns.mx(domain, 10, &format!("mx.{domain}"));
        dns.a(&format!("mx.{domain}"), "127.0.0.1".parse().unwrap());
        if domain != "plain.test" {
            dns.validated(domain);
        }
    }
    let tlsa = |domain: &str| format!("_{}._tcp.mx.{domain}", b.smtp.port());
    dns.tlsa(
        &tlsa("ee.test"),
        3,
        1,
        0,
        leaf_key.subject_public_key_info(),
    );
    dns.tlsa(&tlsa("ta.test"), 2, 1, 0, ca.spki.clone());
    dns.tlsa(
        &tlsa("bad.test"),
        3,
        1,
        0,
        other_key.subject_public_key_info(),
    );
    dns.tlsa(
        &tlsa("plain.test"),
        3,
        1,
        0,
        other_key.subject_public_key_info(),
    );
    dns.servfail(&tlsa("bogus.test"));
    // A TLSA record reached through an alias, in another validated zone.
    dns.cname(&tlsa("cname.test"), "tlsa.elsewhere.test");
    dns.validated("elsewhere.test");
    dns.tlsa(
        "tlsa.elsewhere.test",
        3,
        1,
        0,
        leaf_key.subject_public_key_info(),
    );
    // Only a PKIX-EE record, which SMTP does not use: TLS, unauthenticated.
    dns.tlsa(
        &tlsa("unusable.test"),
        1,
        1,
        0,
        leaf_key.subject_public_key_info(),
    );
    // The validating resolver does not answer for the host's address.
    dns.silent("mx.slow.test");

    let a = TestServer::with(Setup {
        tables: format!(
            "[dns]\nresolver = \"{}\"\n[queue]\nmx_port = {}\nfirst_retry = \"1h\"\n",
            dns.addr(),
            b.smtp.port(),
        ),
        ..Setup::default()
    });
    for domain in domains {
        let sent = crate::outbound::send_via(
            &a,
            &[&format!("bob@{domain}")],
            format!("Subject: to {domain}\r\n\r\nbody\r\n").as_bytes(),
        );
        assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    }

    eventually(20, "five deliveries", || b.messages("bob").len() == 5);
    eventually(30, "three deferrals", || {
        a.log().matches(" deferred id=").count() >= 3
    });
    let log = a.log();
    let subjects: Vec<String> = b
        .messages("bob")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    for domain in [
        "ee.test",
        "ta.test",
        "plain.test",
        "cname.test",
        "unusable.test",
    ] {
        let message = subjects
            .iter()
            .find(|m| m.contains(&format!("Subject: to {domain}")))
            .unwrap_or_else(|| panic!("nothing for {domain}: {log}"));
        assert!(message.contains("with ESMTPS"), "{message}");
    }
    for host in ["mx.ee.test", "mx.ta.test", "mx.cname.test"] {
        assert!(
            log.lines()
                .any(|l| l.contains("Verified TLS connection established")
                    && l.contains(host)
                    && l.contains("policy=\"dane\"")),
            "{host}: {log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("Anonymous TLS connection established")
                && l.contains("mx.plain.test")
                && l.contains("policy=\"configured\"")),
        "TLSA records that are not validated are not used: {log}"
    );
    assert!(
        log.contains("rcpt=bob@bad.test")
            && log.contains("it matches none of the host's TLSA records"),
        "{log}"
    );
    assert!(
        log.contains("rcpt=bob@bogus.test")
            && log.contains("DANE: mx.bogus.test: TLSA lookup failed"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("Anonymous TLS connection established")
                && l.contains("mx.unusable.test")
                && l.contains("tls=\"required\"")
                && l.contains("policy=\"dane\"")),
        "validated but unusable records still require TLS: {log}"
    );
    assert!(
        log.contains("rcpt=bob@slow.test") && log.contains("mx.slow.test: address lookup failed"),
        "a resolver that does not answer is not an insecure answer: {log}"
    );
    assert!(
        !log.contains("trying again without TLS"),
        "DANE never falls back to plaintext: {log}"
    );
    let b_log = b.log();
    assert_eq!(
        b_log.matches("smtp message accepted").count(),
        5,
        "nothing else reached B: {b_log}"
    );
}
