use super::*;

fn record(text: &str) -> Record {
    Record::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
}

#[test]
fn records_as_published() {
    let r = record(
        "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=25; rua=mailto:d@example.com",
    );
    assert_eq!(r.policy, Policy::Reject);
    assert_eq!(r.subdomain_policy, Policy::Quarantine);
    assert_eq!(r.dkim_alignment, Alignment::Strict);
    assert_eq!(r.spf_alignment, Alignment::Relaxed);
    assert_eq!(r.percent, 25);
    // Defaults: sp = p, relaxed, 100 %.
    let r = record("v=DMARC1;p=quarantine");
    assert_eq!(r.subdomain_policy, Policy::Quarantine);
    assert_eq!(r.percent, 100);
    assert_eq!(r.dkim_alignment, Alignment::Relaxed);
    // Case of values does not matter; a bad pct is ignored.
    assert_eq!(record("v=DMARC1; p=REJECT; pct=500").percent, 100);
    // Not DMARC: the version must come first and be exact.
    for text in [
        "p=reject; v=DMARC1",
        "v=DMARC2; p=reject",
        "v=spf1 -all",
        "",
    ] {
        assert_eq!(Record::parse(text), None, "{text}");
    }
    // No valid p: none if reports are asked for, else no record (§6.6.3).
    assert_eq!(
        record("v=DMARC1; p=bogus; rua=mailto:d@example.com").policy,
        Policy::None
    );
    assert_eq!(Record::parse("v=DMARC1; p=bogus"), None);
    assert_eq!(Record::parse("v=DMARC1; p=reject; sp=bogus"), None);
}

#[test]
fn organisational_domains_come_from_the_public_suffix_list() {
    for (domain, org) in [
        ("mail.example.com", "example.com"),
        ("example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("MX.Example.COM.", "example.com"),
    ] {
        assert_eq!(organizational_domain(domain), org, "{domain}");
    }
    assert!(aligned(
        "mail.example.com",
        "example.com",
        Alignment::Relaxed
    ));
    assert!(!aligned(
        "mail.example.com",
        "example.com",
        Alignment::Strict
    ));
    assert!(aligned("Example.com", "example.com.", Alignment::Strict));
    // Different registrants under one public suffix are not aligned.
    assert!(!aligned("a.co.uk", "b.co.uk", Alignment::Relaxed));
}

fn found(text: &str, inherited: bool) -> Found {
    Found {
        record: record(text),
        inherited,
    }
}

/// One row per rule: the verdict, and the same inputs with each aligned
/// pass taken away turning it into a fail.
#[test]
fn verdicts() {
    let reject = found("v=DMARC1; p=reject", false);
    let strict = found("v=DMARC1; p=reject; adkim=s; aspf=s", false);
    let sub = found("v=DMARC1; p=none; sp=reject", true);
    let half = found("v=DMARC1; p=reject; pct=50", false);
    let zero = found("v=DMARC1; p=quarantine; pct=0", false);
    type Row<'a> = (
        &'a str,
        Option<&'a Found>,
        Option<&'a str>,
        &'a [&'a str],
        u8,
        Outcome,
        Policy,
    );
    let rows: &[Row] = &[
        // No record: none.
        (
            "example.com",
            None,
            None,
            &[],
            0,
            Outcome::None,
            Policy::None,
        ),
        // Aligned SPF (relaxed: a subdomain's bounce address counts).
        (
            "example.com",
            Some(&reject),
            Some("bounce.example.com"),
            &[],
            0,
            Outcome::Pass,
            Policy::None,
        ),
        // Aligned DKIM.
        (
            "example.com",
            Some(&reject),
            None,
            &["example.com"],
            0,
            Outcome::Pass,
            Policy::None,
        ),
        // Passes for other domains: fail, and p applies.
        (
            "example.com",
            Some(&reject),
            Some("other.net"),
            &["other.net"],
            0,
            Outcome::Fail,
            Policy::Reject,
        ),
        // Strict alignment: the subdomain no longer counts.
        (
            "example.com",
            Some(&strict),
            Some("bounce.example.com"),
            &["mail.example.com"],
            0,
            Outcome::Fail,
            Policy::Reject,
        ),
        // Found at the organisational domain: sp applies.
        (
            "news.example.com",
            Some(&sub),
            None,
            &[],
            0,
            Outcome::Fail,
            Policy::Reject,
        ),
        // pct: inside the sample the policy applies, outside one weaker.
        (
            "example.com",
            Some(&half),
            None,
            &[],
            49,
            Outcome::Fail,
            Policy::Reject,
        ),
        (
            "example.com",
            Some(&half),
            None,
            &[],
            50,
            Outcome::Fail,
            Policy::Quarantine,
        ),
        (
            "example.com",
            Some(&zero),
            None,
            &[],
            0,
            Outcome::Fail,
            Policy::None,
        ),
    ];
    for (i, (from, record, spf, dkim, sample, outcome, apply)) in rows.iter().enumerate() {
        let verdict = judge(from, *record, *spf, dkim, *sample);
        assert_eq!(verdict.outcome, *outcome, "row {i}");
        assert_eq!(verdict.apply, *apply, "row {i}");
        if *outcome == Outcome::Pass {
            let without = judge(from, *record, None, &[], *sample);
            assert_eq!(without.outcome, Outcome::Fail, "row {i} without its passes");
        }
    }
}
