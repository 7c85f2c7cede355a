use std::io::Read;

use super::*;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn one_versioned_record_names_the_mailto_addresses() {
    let asked = rua(&strings(&[
        "v=TLSRPTv1; rua=mailto:tls@example.net,https://reports.example.net/x, MAILTO:b%40d@example.net?subject=x",
        "v=spf1 -all",
    ]));
    assert_eq!(asked, strings(&["tls@example.net", "b@d@example.net"]));
    // More than one TLSRPT record, or none: no reports (RFC 8460 §3).
    let two = strings(&[
        "v=TLSRPTv1; rua=mailto:a@example.net",
        "v=TLSRPTv1; rua=mailto:b@example.net",
    ]);
    assert!(rua(&two).is_empty());
    assert!(rua(&strings(&["rua=mailto:a@example.net"])).is_empty());
    assert!(rua(&strings(&["v=TLSRPTv1"])).is_empty());
    // Not an address, or a broken escape.
    assert!(rua(&strings(&["v=TLSRPTv1; rua=mailto:nobody"])).is_empty());
    assert!(rua(&strings(&["v=TLSRPTv1; rua=mailto:a%4@example.net"])).is_empty());
    assert!(rua(&strings(&["v=TLSRPTv1; rua=mailto:a<b>@example.net"])).is_empty());
}

fn session(kind: &str, host: &str, failure: Option<&str>) -> Session {
    Session {
        domain: "example.net".into(),
        policy_type: kind.into(),
        policy: if kind == policy::STS {
            strings(&[
                "version: STSv1",
                "mode: testing",
                "mx: *.example.net",
                "max_age: 86400",
            ])
        } else if kind == policy::TLSA {
            strings(&["3 1 1 abcd"])
        } else {
            Vec::new()
        },
        mx: if kind == policy::STS {
            strings(&["*.example.net"])
        } else {
            Vec::new()
        },
        failure: failure.map(str::to_owned),
        reason: String::new(),
        host: host.into(),
        ip: "192.0.2.7".into(),
        sender_ip: "198.51.100.1".into(),
    }
}

fn reporter() -> Reporter {
    Reporter {
        organization: "mail.example.org".into(),
        contact: "postmaster@mail.example.org".into(),
        submitter: "mail.example.org".into(),
    }
}

#[test]
fn a_report_counts_sessions_per_policy_and_groups_failures() {
    let sessions = vec![
        session(policy::STS, "mx1.example.net", None),
        session(
            policy::STS,
            "mx1.example.net",
            Some(result::CERTIFICATE_EXPIRED),
        ),
        session(
            policy::STS,
            "mx1.example.net",
            Some(result::CERTIFICATE_EXPIRED),
        ),
        session(
            policy::STS,
            "mx2.example.net",
            Some(result::STARTTLS_NOT_SUPPORTED),
        ),
        Session {
            reason: "mx-not-in-policy".into(),
            ..session(
                policy::STS,
                "mx9.example.net",
                Some(result::VALIDATION_FAILURE),
            )
        },
        session(policy::TLSA, "mx3.example.net", None),
        session(policy::NONE, "mx4.example.net", None),
        Session {
            domain: "other.example".into(),
            ..session(policy::NONE, "mx.other.example", None)
        },
    ];
    let value = report(
        &reporter(),
        "r1@mail.example.org",
        "example.net",
        86_400,
        172_799,
        &sessions,
    );
    assert_eq!(value["organization-name"], "mail.example.org");
    assert_eq!(value["contact-info"], "postmaster@mail.example.org");
    assert_eq!(value["report-id"], "r1@mail.example.org");
    assert_eq!(
        value["date-range"]["start-datetime"],
        "1970-01-02T00:00:00Z"
    );
    assert_eq!(value["date-range"]["end-datetime"], "1970-01-02T23:59:59Z");
    let policies = value["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 3, "{value:#}");
    let sts = policies
        .iter()
        .find(|p| p["policy"]["policy-type"] == "sts")
        .unwrap();
    assert_eq!(sts["policy"]["policy-domain"], "example.net");
    assert_eq!(sts["policy"]["mx-host"][0], "*.example.net");
    assert_eq!(sts["policy"]["policy-string"][1], "mode: testing");
    assert_eq!(sts["summary"]["total-successful-session-count"], 1);
    assert_eq!(sts["summary"]["total-failure-session-count"], 4);
    let details = sts["failure-details"].as_array().unwrap();
    assert_eq!(details.len(), 3);
    let mismatch = details
        .iter()
        .find(|d| d["result-type"] == "validation-failure")
        .unwrap();
    assert_eq!(mismatch["failure-reason-code"], "mx-not-in-policy");
    assert!(
        details
            .iter()
            .filter(|d| d["result-type"] != "validation-failure")
            .all(|d| d.get("failure-reason-code").is_none())
    );
    let expired = details
        .iter()
        .find(|d| d["result-type"] == "certificate-expired")
        .unwrap();
    assert_eq!(expired["failed-session-count"], 2);
    assert_eq!(expired["receiving-mx-hostname"], "mx1.example.net");
    assert_eq!(expired["receiving-ip"], "192.0.2.7");
    assert_eq!(expired["sending-mta-ip"], "198.51.100.1");
    let tlsa = policies
        .iter()
        .find(|p| p["policy"]["policy-type"] == "tlsa")
        .unwrap();
    assert_eq!(tlsa["policy"]["mx-host"][0], "mx3.example.net");
    assert_eq!(tlsa["policy"]["policy-string"][0], "3 1 1 abcd");
    let none = policies
        .iter()
        .find(|p| p["policy"]["policy-type"] == "no-policy-found")
        .unwrap();
    assert!(none["policy"].get("policy-string").is_none());
    assert_eq!(none["summary"]["total-successful-session-count"], 1);
}

#[test]
fn the_mail_carries_the_report_gzipped() {
    let sessions = vec![session(policy::NONE, "mx.example.net", None)];
    let value = report(
        &reporter(),
        "r2@mail.example.org",
        "example.net",
        0,
        86_399,
        &sessions,
    );
    let mail = message(
        &reporter(),
        "r2@mail.example.org",
        "example.net",
        (0, 86_399),
        &value,
        "tls@example.net",
        86_500,
    )
    .unwrap();
    let text = String::from_utf8(mail).unwrap();
    assert!(text.contains("\r\nSubject: Report Domain: example.net Submitter: mail.example.org Report-ID: <r2@mail.example.org>\r\n"), "{text}");
    assert!(text.contains("\r\nTLS-Report-Domain: example.net\r\n"));
    assert!(text.contains("\r\nTLS-Report-Submitter: mail.example.org\r\n"));
    assert!(text.contains("Content-Type: multipart/report; report-type=\"tlsrpt\""));
    assert!(text.contains("filename=\"mail.example.org!example.net!0!86399.json.gz\""));
    assert!(
        text.split("\r\n").all(|l| !l.contains('\n')),
        "CRLF line ends only"
    );
    assert!(text.split("\r\n").all(|l| l.len() <= 998));
    // The attachment decodes back to the report.
    let part = text
        .split("Content-Type: application/tlsrpt+gzip\r\n")
        .nth(1)
        .unwrap();
    let body = part.split("\r\n\r\n").nth(1).unwrap();
    let encoded: String = body.lines().take_while(|l| !l.starts_with("--")).collect();
    use base64::Engine as _;
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut json)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), value);
}

#[test]
fn a_session_line_reads_back() {
    let line = serde_json::to_string(&session(
        policy::STS,
        "mx1.example.net",
        Some("certificate-expired"),
    ))
    .unwrap();
    assert!(!line.contains('\n'));
    let back: Session = serde_json::from_str(&line).unwrap();
    assert_eq!(
        back,
        session(policy::STS, "mx1.example.net", Some("certificate-expired"))
    );
}
