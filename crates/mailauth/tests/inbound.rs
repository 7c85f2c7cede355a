//! Inbound checks against records served by a real DNS server on loopback:
//! SPF for each result a record can give, DKIM signatures that verify and
//! one that was changed on the way, and DMARC's verdicts with and without
//! alignment, DNS trouble giving temperror.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use mail_auth::SpfResult;
use yubin_mailauth::dkim::{self, Algorithm, Signing};
use yubin_mailauth::dmarc::{Outcome, Policy};
use yubin_mailauth::inbound::{Checked, Envelope, Inbound};
use yubin_test_dns::TestDns;

fn inbound(dns: &TestDns) -> Inbound {
    use mail_auth::hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.addr().port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns.addr().port();
    let server = NameServerConfig::new(dns.addr().ip(), true, vec![udp, tcp]);
    Inbound::new(
        ResolverConfig::from_name_servers(vec![server]),
        ResolverOpts::default(),
        "mx.ours.test".into(),
    )
    .unwrap()
}

fn check(dns: &TestDns, message: &[u8], mail_from: &str) -> Checked {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inbound = inbound(dns);
    runtime.block_on(inbound.check(
        message,
        Envelope {
            ip: "192.0.2.10".parse().unwrap(),
            helo: "mail.sender.test",
            mail_from,
        },
    ))
}

fn signed(keys: &[dkim::Key], message: &[u8]) -> Vec<u8> {
    let fields = Signing::new(keys)
        .sign(&mut |out: &mut dyn Write| out.write_all(message))
        .unwrap();
    let mut out = fields.into_bytes();
    out.extend_from_slice(message);
    out
}

#[test]
fn spf_dkim_and_dmarc_results() {
    let dns = TestDns::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dkim::generate(dir.path(), "good.test", "s1", Algorithm::Ed25519).unwrap();
    dns.txt(&key.record_name(), &key.key.record());
    let keys = vec![key.key];
    // SPF records for each result.
    for (domain, record) in [
        ("good.test", "v=spf1 ip4:192.0.2.0/24 -all"),
        ("fail.test", "v=spf1 -all"),
        ("soft.test", "v=spf1 ~all"),
        ("neutral.test", "v=spf1 ?all"),
        // A redirect to itself: past ten lookups, a permanent error
        // (RFC 7208 §4.6.4).
        ("perm.test", "v=spf1 redirect=perm.test"),
        ("sender.test", "v=spf1 -all"),
    ] {
        dns.txt(domain, record);
    }
    dns.servfail("temp.test");
    dns.txt("_dmarc.good.test", "v=DMARC1; p=reject");
    dns.txt("_dmarc.fail.test", "v=DMARC1; p=reject");
    dns.txt("_dmarc.soft.test", "v=DMARC1; p=quarantine");
    dns.txt("_dmarc.neutral.test", "v=DMARC1; p=none");
    let message =
        |from: &str| format!("From: <{from}>\r\nSubject: hi\r\n\r\nbody\r\n").into_bytes();

    let cases: &[(&str, SpfResult)] = &[
        ("good.test", SpfResult::Pass),
        ("fail.test", SpfResult::Fail),
        ("soft.test", SpfResult::SoftFail),
        ("neutral.test", SpfResult::Neutral),
        ("none.test", SpfResult::None),
        ("temp.test", SpfResult::TempError),
        ("perm.test", SpfResult::PermError),
    ];
    for (domain, spf) in cases {
        let checked = check(
            &dns,
            &message(&format!("a@{domain}")),
            &format!("a@{domain}"),
        );
        assert_eq!(checked.spf, *spf, "{domain}: {}", checked.field);
        assert!(
            checked
                .field
                .starts_with("Authentication-Results: mx.ours.test;"),
            "{}",
            checked.field
        );
    }

    // Aligned SPF: DMARC passes, nothing applied.
    let good = check(&dns, &message("a@good.test"), "a@good.test");
    assert_eq!(good.dmarc.outcome, Outcome::Pass, "{}", good.field);
    assert!(
        good.field
            .contains("dmarc=pass header.from=good.test policy.dmarc=reject"),
        "{}",
        good.field
    );
    // No aligned pass under p=reject: reject.
    let fail = check(&dns, &message("a@fail.test"), "a@fail.test");
    assert_eq!(fail.dmarc.outcome, Outcome::Fail, "{}", fail.field);
    assert_eq!(fail.dmarc.apply, Policy::Reject);
    // SPF passes for another domain (not aligned): DMARC fails.
    let unaligned = check(&dns, &message("a@fail.test"), "a@good.test");
    assert_eq!(unaligned.spf, SpfResult::Pass);
    assert_eq!(unaligned.dmarc.apply, Policy::Reject, "{}", unaligned.field);
    // Quarantine and none.
    let soft = check(&dns, &message("a@soft.test"), "a@soft.test");
    assert_eq!(soft.dmarc.apply, Policy::Quarantine, "{}", soft.field);
    let neutral = check(&dns, &message("a@neutral.test"), "a@neutral.test");
    assert_eq!(neutral.dmarc.outcome, Outcome::Fail);
    assert_eq!(neutral.dmarc.apply, Policy::None);
    // No record: none. DNS trouble: temperror, nothing applied.
    assert_eq!(
        check(&dns, &message("a@none.test"), "").dmarc.outcome,
        Outcome::None
    );
    dns.servfail("_dmarc.temp.test");
    let temp = check(&dns, &message("a@temp.test"), "a@temp.test");
    assert_eq!(temp.dmarc.outcome, Outcome::TempError, "{}", temp.field);
    assert_eq!(temp.dmarc.apply, Policy::None);
    assert!(temp.field.contains("spf=temperror"), "{}", temp.field);

    // DKIM: a good signature passes and aligns, even where SPF fails (the
    // mail was forwarded); a changed body fails.
    let signed_message = signed(&keys, &message("a@good.test"));
    let forwarded = check(&dns, &signed_message, "x@fail.test");
    assert!(forwarded.field.contains("dkim=pass"), "{}", forwarded.field);
    assert_eq!(
        forwarded.dmarc.outcome,
        Outcome::Pass,
        "{}",
        forwarded.field
    );
    let mut changed = signed_message.clone();
    let end = changed.len();
    changed[end - 3] = b'X';
    let tampered = check(&dns, &changed, "x@fail.test");
    // (mail-auth calls a body hash mismatch "neutral"; never a pass.)
    assert!(
        tampered
            .field
            .contains("dkim=neutral (body hash did not verify)"),
        "{}",
        tampered.field
    );
    assert_eq!(tampered.dmarc.apply, Policy::Reject, "{}", tampered.field);

    // A HELO that is an address literal has no SPF record to ask.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let literal = runtime.block_on(inbound(&dns).check(
        &message("a@good.test"),
        Envelope {
            ip: "192.0.2.10".parse().unwrap(),
            helo: "[192.0.2.10]",
            mail_from: "a@good.test",
        },
    ));
    assert!(
        literal.field.contains("spf=none") && literal.field.contains("smtp.helo=[192.0.2.10]"),
        "{}",
        literal.field
    );
    assert_eq!(literal.spf, SpfResult::Pass, "MAIL FROM is still checked");

    // Two author domains: each is judged, the strictest applies.
    let two = check(
        &dns,
        b"From: a@good.test, b@fail.test\r\nSubject: two\r\n\r\nx\r\n",
        "a@good.test",
    );
    assert_eq!(two.dmarc.outcome, Outcome::Fail, "{}", two.field);
    assert_eq!(two.dmarc.apply, Policy::Reject, "{}", two.field);
    assert!(
        two.field.contains("dmarc=pass header.from=good.test")
            && two.field.contains("dmarc=fail header.from=fail.test"),
        "{}",
        two.field
    );
    // An author domain that is no host name reaches neither the DNS nor
    // our field.
    let odd = check(
        &dns,
        b"From: <ceo@bank.test; dkim=pass header.d=bank.test>\r\nSubject: odd\r\n\r\nx\r\n",
        "a@good.test",
    );
    assert_eq!(odd.dmarc.outcome, Outcome::PermError, "{}", odd.field);
    assert!(!odd.field.contains("header.d=bank.test"), "{}", odd.field);
    // A final dot is no different domain.
    let dotted = check(&dns, &message("a@fail.test."), "a@fail.test");
    assert_eq!(dotted.dmarc.apply, Policy::Reject, "{}", dotted.field);
    // Two DMARC records: no policy (RFC 7489 §6.6.3); other TXT records
    // beside one DMARC record do not matter.
    dns.txt("_dmarc.twice.test", "v=DMARC1; p=reject");
    dns.txt("_dmarc.twice.test", "v=DMARC1; p=none");
    assert_eq!(
        check(&dns, &message("a@twice.test"), "").dmarc.outcome,
        Outcome::None
    );
    dns.txt("_dmarc.mixed.test", "some other text");
    dns.txt("_dmarc.mixed.test", "v=DMARC1; p=reject");
    assert_eq!(
        check(&dns, &message("a@mixed.test"), "").dmarc.apply,
        Policy::Reject
    );
}
