//! Each record's verdict: right, missing, wrong, and a DNS failure, with
//! the line to publish.

use super::*;
use crate::dkim::Key;

/// An Ed25519 key made by `openssl genpkey -algorithm ed25519` for these tests.
const ED_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINt2UVmeq0gMhHbTxnLWsX/uKW8nj/Q2gCbFiKLmi5H0\n-----END PRIVATE KEY-----\n";

fn key() -> Key {
    Key::from_pem(ED_KEY.as_bytes(), "example.org", "s1").expect("the test key")
}

fn all_right(keys: &[Key]) -> Found {
    Found {
        mx: Answer::Records(vec!["10 mail.example.org".into()]),
        host: Answer::Records(vec!["192.0.2.1".into()]),
        ptr: Answer::Records(vec!["mail.example.org".into()]),
        ptr_forward: vec![(
            "mail.example.org".into(),
            Answer::Records(vec!["192.0.2.1".into()]),
        )],
        txt: Answer::Records(vec![
            "google-site-verification=x".into(),
            "v=spf1 mx -all".into(),
        ]),
        spf_result: "pass".into(),
        dkim: keys
            .iter()
            .map(|k| Answer::Records(vec![k.record()]))
            .collect(),
        dmarc: Answer::Records(vec![
            "v=DMARC1; p=quarantine; rua=mailto:d@example.org".into(),
        ]),
        mta_sts: Answer::Records(vec!["v=STSv1; id=20261206".into()]),
        tls_rpt: Answer::Records(vec!["v=TLSRPTv1; rua=mailto:t@example.org".into()]),
        srv: SERVICES
            .iter()
            .map(|(_, port, _)| Answer::Records(vec![format!("0 1 {port} mail.example.org.")]))
            .collect(),
    }
}

fn setup(keys: &[Key]) -> Setup<'_> {
    Setup {
        domain: "example.org".into(),
        hostname: "mail.example.org".into(),
        address: "192.0.2.1".parse().expect("an address"),
        keys,
        ports: SERVICES.map(|(_, port, _)| Some(port)),
    }
}

fn verdict<'c>(checks: &'c [Check], kind: &str) -> &'c Check {
    checks
        .iter()
        .find(|c| c.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} check"))
}

#[test]
fn a_complete_setup_is_all_ok() {
    let keys = vec![key()];
    let checks = evaluate(&setup(&keys), &all_right(&keys));
    for check in &checks {
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.publish.is_none(), "{check:?}");
    }
    let kinds: Vec<&str> = checks.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            "MX", "A", "PTR", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT", "SRV", "SRV", "SRV",
            "SRV"
        ]
    );
}

#[test]
fn nothing_published_says_what_to_publish() {
    let keys = vec![key()];
    let none = Found {
        mx: Answer::None,
        host: Answer::None,
        ptr: Answer::None,
        ptr_forward: Vec::new(),
        txt: Answer::None,
        spf_result: "none".into(),
        dkim: vec![Answer::None],
        dmarc: Answer::None,
        mta_sts: Answer::None,
        tls_rpt: Answer::None,
        srv: vec![Answer::None; 4],
    };
    let checks = evaluate(&setup(&keys), &none);
    let publish = |kind: &str| verdict(&checks, kind).publish.clone().unwrap_or_default();
    assert_eq!(verdict(&checks, "MX").status, Status::Missing);
    assert_eq!(publish("MX"), "example.org. IN MX 10 mail.example.org.");
    assert_eq!(publish("A"), "mail.example.org. IN A 192.0.2.1");
    assert!(publish("PTR").starts_with("1.2.0.192.in-addr.arpa. IN PTR mail.example.org. ;"));
    assert_eq!(
        publish("SPF"),
        "example.org. IN TXT \"v=spf1 mx ip4:192.0.2.1 -all\""
    );
    assert!(
        publish("DKIM").starts_with("s1._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p=")
    );
    assert_eq!(
        publish("DMARC"),
        "_dmarc.example.org. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.org\""
    );
    // Recommended, not needed.
    assert_eq!(verdict(&checks, "MTA-STS").status, Status::Optional);
    assert_eq!(verdict(&checks, "TLS-RPT").status, Status::Optional);
    assert!(!verdict(&checks, "SRV").is_problem());
    assert_eq!(
        verdict(&checks, "SRV").publish.as_deref(),
        Some("_submissions._tcp.example.org. IN SRV 0 1 465 mail.example.org.")
    );
    let problems = checks.iter().filter(|c| c.is_problem()).count();
    assert_eq!(problems, 6, "MX, A, PTR, SPF, DKIM, DMARC");
}

#[test]
fn wrong_records_are_named_with_the_fix() {
    let keys = vec![key()];
    let mut found = all_right(&keys);
    found.mx = Answer::Records(vec!["10 mx.elsewhere.example".into()]);
    found.host = Answer::Records(vec!["198.51.100.7".into()]);
    found.ptr_forward = vec![(
        "mail.example.org".into(),
        Answer::Records(vec!["198.51.100.7".into()]),
    )];
    found.txt = Answer::Records(vec!["v=spf1 include:_spf.provider.example ~all".into()]);
    found.spf_result = "softfail".into();
    found.dkim = vec![Answer::Records(vec!["v=DKIM1; k=ed25519; p=AAAA".into()])];
    found.dmarc = Answer::Records(vec!["v=DMARC1; rua=mailto:x@example.org".into()]);
    let checks = evaluate(&setup(&keys), &found);
    for kind in ["MX", "A", "PTR", "SPF", "DKIM", "DMARC"] {
        assert_eq!(verdict(&checks, kind).status, Status::Wrong, "{kind}");
    }
    assert_eq!(
        verdict(&checks, "SPF").publish.as_deref(),
        Some("example.org. IN TXT \"v=spf1 include:_spf.provider.example ip4:192.0.2.1 ~all\""),
        "our address goes in before the final all"
    );
    assert!(verdict(&checks, "SPF").detail.contains("softfail"));

    // Modifiers after "all" and an upper-case ALL: the address goes in
    // before the "all"; a permerror says the record is broken.
    for (record, fixed) in [
        (
            "v=spf1 a -all exp=explain.example.org",
            "v=spf1 a ip4:192.0.2.1 -all exp=explain.example.org",
        ),
        ("v=spf1 mx ~ALL ", "v=spf1 mx ip4:192.0.2.1 ~ALL"),
        (
            "v=spf1 include:x.example",
            "v=spf1 include:x.example ip4:192.0.2.1",
        ),
    ] {
        let mut found = all_right(&keys);
        found.txt = Answer::Records(vec![record.into()]);
        found.spf_result = "permerror".into();
        let checks = evaluate(&setup(&keys), &found);
        let spf = verdict(&checks, "SPF");
        assert_eq!(
            spf.publish.as_deref(),
            Some(format!("example.org. IN TXT \"{fixed}\"").as_str())
        );
        assert!(spf.detail.contains("broken"), "{}", spf.detail);
    }
    let mut found = all_right(&keys);
    found.txt = Answer::Records(vec!["v=spf10 nonsense".into()]);
    let checks = evaluate(&setup(&keys), &found);
    assert_eq!(
        verdict(&checks, "SPF").status,
        Status::Missing,
        "v=spf10 is not SPF"
    );
    found.txt = Answer::Records(vec!["v=spf1 mx -all".into()]);
    found.spf_result = "temperror".into();
    let checks = evaluate(&setup(&keys), &found);
    assert_eq!(verdict(&checks, "SPF").status, Status::Error);

    let mut twice = all_right(&keys);
    twice.txt = Answer::Records(vec!["v=spf1 mx -all".into(), "v=spf1 a -all".into()]);
    let checks = evaluate(&setup(&keys), &twice);
    assert_eq!(verdict(&checks, "SPF").status, Status::Wrong);
    assert!(verdict(&checks, "SPF").detail.contains("more than one"));
}

#[test]
fn dkim_records_match_by_key_whatever_their_spacing() {
    let keys = vec![key()];
    let mut found = all_right(&keys);
    let record = keys[0].record();
    let (head, p) = record.split_once("p=").expect("a p= tag");
    let spaced = format!("{head} p={} {}", &p[..10], &p[10..]);
    found.dkim = vec![Answer::Records(vec![spaced])];
    let checks = evaluate(&setup(&keys), &found);
    assert_eq!(verdict(&checks, "DKIM").status, Status::Ok);

    let none: Vec<Key> = Vec::new();
    let checks = evaluate(&setup(&none), &all_right(&none));
    let dkim = verdict(&checks, "DKIM");
    assert_eq!(dkim.status, Status::Missing);
    assert!(
        dkim.detail.contains("yubin dkim keygen example.org"),
        "{}",
        dkim.detail
    );
}

#[test]
fn long_txt_values_are_split_and_reverse_names_are_right() {
    let long = "x".repeat(300);
    assert_eq!(
        txt_strings(&long),
        format!("( \"{}\" \"{}\" )", "x".repeat(255), "x".repeat(45))
    );
    assert_eq!(txt_strings("short"), "\"short\"");
    assert_eq!(
        reverse_name("2001:db8::1".parse().expect("an address")),
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    );
    assert_eq!(
        reverse_name("192.0.2.1".parse().expect("an address")),
        "1.2.0.192.in-addr.arpa"
    );
}

#[test]
fn services_not_offered_say_so_and_ports_are_the_listeners() {
    let keys = vec![key()];
    let mut setup = setup(&keys);
    setup.ports = [None, Some(1587), Some(1995), None];
    let mut found = all_right(&keys);
    found.srv = vec![Answer::None; 4];
    let checks = evaluate(&setup, &found);
    let srv: Vec<&Check> = checks.iter().filter(|c| c.kind == "SRV").collect();
    assert_eq!(
        srv[0].publish.as_deref(),
        Some("_submissions._tcp.example.org. IN SRV 0 0 0 .")
    );
    assert_eq!(
        srv[1].publish.as_deref(),
        Some("_submission._tcp.example.org. IN SRV 10 1 1587 mail.example.org.")
    );
    found.srv = vec![
        Answer::Records(vec!["0 0 0 .".into()]),
        Answer::Records(vec!["10 1 1587 mail.example.org.".into()]),
        Answer::Records(vec!["0 1 995 mail.example.org.".into()]),
        Answer::Records(vec!["10 1 110 mail.example.org.".into()]),
    ];
    let checks = evaluate(&setup, &found);
    let srv: Vec<&Check> = checks.iter().filter(|c| c.kind == "SRV").collect();
    assert_eq!(srv[0].status, Status::Ok);
    assert_eq!(srv[1].status, Status::Ok);
    assert_eq!(srv[2].status, Status::Wrong, "995 is not the port here");
    assert_eq!(
        srv[3].status,
        Status::Wrong,
        "POP3 without TLS is not offered"
    );
}

#[test]
fn a_dns_failure_is_an_error_not_a_verdict() {
    let keys = vec![key()];
    let mut found = all_right(&keys);
    found.mx = Answer::Failed("SERVFAIL".into());
    found.dmarc = Answer::Failed("timed out".into());
    let checks = evaluate(&setup(&keys), &found);
    assert_eq!(verdict(&checks, "MX").status, Status::Error);
    assert!(verdict(&checks, "DMARC").detail.contains("timed out"));
    assert!(verdict(&checks, "MX").is_problem());
}

#[test]
fn a_reverse_name_that_is_not_ours_but_confirmed_is_ok() {
    let keys = vec![key()];
    let mut found = all_right(&keys);
    found.ptr = Answer::Records(vec!["host-192-0-2-1.provider.example".into()]);
    found.ptr_forward = vec![(
        "host-192-0-2-1.provider.example".into(),
        Answer::Records(vec!["192.0.2.1".into()]),
    )];
    let checks = evaluate(&setup(&keys), &found);
    let ptr = verdict(&checks, "PTR");
    assert_eq!(ptr.status, Status::Ok);
    assert!(
        ptr.detail.contains("would match the HELO name"),
        "{}",
        ptr.detail
    );
}
