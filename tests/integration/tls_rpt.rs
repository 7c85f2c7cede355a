//! TLS reports (RFC 8460, issue 14): A delivers to B under an MTA-STS
//! policy in `testing` mode while B presents an expired certificate, and
//! to a domain without a policy; both domains ask for reports in their
//! `_smtp._tls` records. When A's (shortened) report period is over, each
//! gets a report by mail, through A's own queue, DKIM-signed like any
//! mail from A, with the sessions counted under the right policy.

use std::io::Read;

use yubin_test_dns::TestDns;

use crate::harness::{Setup, TestServer};
use crate::mta_sts::{PolicyServer, policy};
use crate::outbound::eventually;
use crate::test_ca::TestCa;

/// The report a TLS-RPT mail carries, decoded from its gzip attachment.
fn attached_report(mail: &str) -> serde_json::Value {
    let part = mail
        .split("Content-Type: application/tlsrpt+gzip")
        .nth(1)
        .unwrap_or_else(|| panic!("no report attached: {mail}"));
    let body = part.split("\n\n").nth(1).unwrap();
    let encoded: String = body.lines().take_while(|l| !l.starts_with("--")).collect();
    use base64::Engine as _;
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut json)
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn issue14_tls_reports_count_sessions_and_go_where_the_domain_asks() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(ca_dir.path());
    let policies = tempfile::tempdir().unwrap();
    ca.server(policies.path(), "server", &["mta-sts.t.test"], (2025, 2035));
    // x.test's policy host has an expired certificate: no policy.
    ca.server(
        policies.path(),
        "mta-sts.x.test",
        &["mta-sts.x.test"],
        (2020, 2021),
    );
    std::fs::write(
        policies.path().join("mta-sts.x.test"),
        policy("enforce", "localhost"),
    )
    .unwrap();
    std::fs::write(
        policies.path().join("mta-sts.t.test"),
        policy("testing", "localhost"),
    )
    .unwrap();
    let https = PolicyServer::start(policies.path());
    // B's certificate expired in 2021: `enforce` would refuse it.
    let b = TestServer::with(Setup {
        hostname: "b.test".into(),
        smtp: "auth_failure_delay = \"100ms\"\nlocal_domains = [\"t.test\", \"n.test\", \"x.test\", \"reports.test\"]\n".into(),
        tables: ca.server(ca_dir.path(), "b", &["localhost"], (2020, 2021)),
        ..Setup::default()
    });
    let dns = TestDns::start().unwrap();
    for domain in ["t.test", "n.test", "x.test", "reports.test"] {
        dns.mx(domain, 10, "localhost");
    }
    for domain in ["t.test", "x.test"] {
        dns.txt(&format!("_mta-sts.{domain}"), "v=STSv1; id=1;");
        dns.a(&format!("mta-sts.{domain}"), "127.0.0.1".parse().unwrap());
    }
    dns.txt(
        "_smtp._tls.x.test",
        "v=TLSRPTv1; rua=mailto:bob@reports.test",
    );
    dns.txt(
        "_smtp._tls.t.test",
        "v=TLSRPTv1; rua=https://reports.example/x,mailto:bob@reports.test",
    );
    dns.txt(
        "_smtp._tls.n.test",
        "v=TLSRPTv1; rua=mailto:bob@reports.test",
    );
    let mut a = TestServer::with(Setup {
        tables: format!(
            "[dns]\nresolver = \"{}\"\n[queue]\nmx_port = {}\nmta_sts_port = {}\nfirst_retry = \"1h\"\n\
             tls_report_period = \"4s\"\ntls_report_contact = \"tls-reports@test.example\"\n",
            dns.addr(),
            b.smtp.port(),
            https.port
        ),
        env: vec![(
            "SSL_CERT_FILE".into(),
            ca_dir.path().join("ca.pem").display().to_string(),
        )],
        ..Setup::default()
    });
    // Reports go only DKIM-signed (RFC 8460 §5.3): without a key, none.
    assert!(
        a.log()
            .contains("TLS reports off: no DKIM key signs for test.example"),
        "{}",
        a.log()
    );
    crate::dkim::keygen(&a, &dns, &["test.example", "-s", "r1", "-a", "ed25519"]);
    a.restart();
    for to in ["bob@t.test", "bob@n.test", "bob@x.test"] {
        let sent = crate::outbound::send_via(&a, &[to], b"Subject: hello\r\n\r\nbody\r\n");
        assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    }
    eventually(20, "three deliveries", || b.messages("bob").len() == 3);
    assert!(
        a.log()
            .contains("the certificate would fail an enforced policy"),
        "{}",
        a.log()
    );
    // The period ends within 4 s; then one report per domain.
    eventually(30, "three reports", || {
        b.messages("bob")
            .iter()
            .filter(|m| String::from_utf8_lossy(m).contains("TLS-Report-Domain:"))
            .count()
            == 3
    });
    let reports: Vec<String> = b
        .messages("bob")
        .iter()
        // As stored: LF line ends.
        .map(|m| String::from_utf8_lossy(m).replace("\r\n", "\n"))
        .filter(|m| m.contains("TLS-Report-Domain:"))
        .collect();
    let for_domain = |domain: &str| {
        reports
            .iter()
            .find(|m| m.contains(&format!("TLS-Report-Domain: {domain}\n")))
            .unwrap_or_else(|| panic!("no report for {domain}: {reports:?}"))
    };

    let t = for_domain("t.test");
    assert!(t.contains("TLS-Report-Submitter: test.example\n"), "{t}");
    assert!(
        t.contains("Subject: Report Domain: t.test Submitter: test.example Report-ID: <"),
        "{t}"
    );
    assert!(
        t.contains("multipart/report; report-type=\"tlsrpt\""),
        "{t}"
    );
    assert!(
        t.contains("From: TLS reporting <tls-reports@test.example>"),
        "{t}"
    );
    assert!(t.contains("TLS-Required: No"), "{t}");
    // Signed, the report's own fields included.
    assert_eq!(crate::dkim::verify(&dns, t.as_bytes()), ["pass"], "{t}");
    let signature = t.split("DKIM-Signature:").nth(1).unwrap();
    let signature = signature.split_whitespace().collect::<Vec<_>>().join(" ");
    let signed = signature
        .split(";")
        .find_map(|tag| tag.trim().strip_prefix("h="))
        .unwrap();
    let signed = signed.replace(['\n', '\t', ' '], "").to_ascii_lowercase();
    assert!(
        signed.split(':').any(|f| f == "tls-report-domain")
            && signed.split(':').any(|f| f == "tls-report-submitter"),
        "{signed}"
    );
    let report = attached_report(t);
    assert_eq!(report["organization-name"], "test.example");
    assert_eq!(report["contact-info"], "tls-reports@test.example");
    let policies = report["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{report:#}");
    let sts = &policies[0];
    assert_eq!(sts["policy"]["policy-type"], "sts", "{report:#}");
    assert_eq!(sts["policy"]["policy-domain"], "t.test");
    assert_eq!(sts["policy"]["mx-host"][0], "localhost");
    assert!(
        sts["policy"]["policy-string"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("mode: testing")),
        "{report:#}"
    );
    assert_eq!(sts["summary"]["total-successful-session-count"], 0);
    assert_eq!(sts["summary"]["total-failure-session-count"], 1);
    let detail = &sts["failure-details"][0];
    assert_eq!(detail["result-type"], "certificate-expired", "{report:#}");
    assert_eq!(detail["receiving-mx-hostname"], "localhost");
    assert_eq!(detail["receiving-ip"], "127.0.0.1");
    assert_eq!(detail["failed-session-count"], 1);

    let n = attached_report(for_domain("n.test"));
    let policies = n["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{n:#}");
    assert_eq!(policies[0]["policy"]["policy-type"], "no-policy-found");
    assert_eq!(policies[0]["summary"]["total-successful-session-count"], 1);
    assert_eq!(policies[0]["summary"]["total-failure-session-count"], 0);
    // x.test's policy could not be fetched (its host's certificate
    // expired): a failure under the sts type; the delivery itself met no
    // policy.
    let x = attached_report(for_domain("x.test"));
    let policies = x["policies"].as_array().unwrap();
    let sts = policies
        .iter()
        .find(|p| p["policy"]["policy-type"] == "sts")
        .unwrap_or_else(|| panic!("{x:#}"));
    assert_eq!(
        sts["failure-details"][0]["result-type"], "sts-webpki-invalid",
        "{x:#}"
    );
    assert!(
        policies
            .iter()
            .any(|p| p["policy"]["policy-type"] == "no-policy-found"
                && p["summary"]["total-successful-session-count"] == 1),
        "{x:#}"
    );
    assert!(
        a.log().contains("TLS report sent domain=t.test"),
        "{}",
        a.log()
    );
    // Sent once: the period's record is gone.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(a.log().matches("TLS report sent").count(), 3);
}
