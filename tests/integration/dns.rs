//! `yubin dns check DOMAIN` (issue 14) against a real DNS server on
//! loopback: with nothing published it names every record to publish and
//! exits 1; with them published (the DKIM record as `yubin dkim keygen`
//! printed it) everything needed is ok and it exits 0; a wrong SPF record
//! gets the fixed record; `--json` says the same to scripts.

use yubin_test_dns::TestDns;

use crate::harness::yubin;

/// A configuration for `mail.example.test` that asks `dns`.
fn setup(dns: &TestDns) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("yubin.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mail.example.test\"\ndata_dir = \"{}\"\n[server]\nallow_root = true\n[dns]\nresolver = \"{}\"\n",
            dir.path().join("data").display(),
            dns.addr()
        ),
    )
    .unwrap();
    (dir, config.to_str().unwrap().to_owned())
}

fn check(dir: &tempfile::TempDir, config: &str, json: bool) -> (Option<i32>, String) {
    let mut args = vec![
        "dns",
        "check",
        "example.test",
        "--address",
        "192.0.2.1",
        "--config",
        config,
    ];
    if json {
        args.push("--json");
    }
    let out = yubin(&args, "", dir.path());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn issue14_dns_check_names_what_to_publish_until_it_is_published() {
    let dns = TestDns::start().unwrap();
    let (dir, config) = setup(&dns);
    let made = yubin(
        &[
            "dkim",
            "keygen",
            "example.test",
            "-s",
            "s1",
            "-a",
            "ed25519",
            "--config",
            &config,
        ],
        "",
        dir.path(),
    );
    assert!(made.status.success());
    let made = String::from_utf8_lossy(&made.stdout).into_owned();
    let dkim_value = made
        .lines()
        .find_map(|l| l.trim().strip_prefix("value:"))
        .unwrap()
        .trim()
        .to_owned();

    let (code, text) = check(&dir, &config, false);
    assert_eq!(code, Some(1), "{text}");
    for line in [
        "publish: example.test. IN MX 10 mail.example.test.",
        "publish: mail.example.test. IN A 192.0.2.1",
        "publish: example.test. IN TXT \"v=spf1 mx ip4:192.0.2.1 -all\"",
        "publish: s1._domainkey.example.test. IN TXT \"v=DKIM1; k=ed25519; p=",
        "publish: _dmarc.example.test. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.test\"",
        // The port of the configured listener (the defaults' 1465 here).
        "publish: _submissions._tcp.example.test. IN SRV 0 1 1465 mail.example.test.",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(text.contains("MISSING  PTR"), "{text}");

    dns.mx("example.test", 10, "mail.example.test");
    dns.a("mail.example.test", "192.0.2.1".parse().unwrap());
    dns.ptr("192.0.2.1".parse().unwrap(), "mail.example.test");
    dns.txt("example.test", "v=spf1 mx -all");
    dns.txt("s1._domainkey.example.test", &dkim_value);
    dns.txt("_dmarc.example.test", "v=DMARC1; p=quarantine");
    let (code, text) = check(&dir, &config, false);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "ok       SPF      example.test: 192.0.2.1 may send for example.test (SPF pass)"
        ),
        "{text}"
    );
    assert!(text.contains("optional MTA-STS"), "{text}");
    assert!(text.contains("Everything needed is published."), "{text}");

    let (code, json) = check(&dir, &config, true);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["ok"], true);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 12);
    assert!(
        checks
            .iter()
            .all(|c| c["status"] == "ok" || c["status"] == "optional"),
        "{json}"
    );

    // An SPF record that leaves the server out: the fix keeps the rest.
    dns.remove("example.test");
    dns.mx("example.test", 10, "mail.example.test");
    dns.txt("example.test", "v=spf1 ip4:198.51.100.0/24 -all");
    let (code, text) = check(&dir, &config, false);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("WRONG    SPF"), "{text}");
    assert!(
        text.contains(
            "publish: example.test. IN TXT \"v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.1 -all\""
        ),
        "{text}"
    );
    let (_, json) = check(&dir, &config, true);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["ok"], false);

    let bad = yubin(
        &[
            "dns",
            "check",
            "not a domain",
            "--address",
            "192.0.2.1",
            "--config",
            &config,
        ],
        "",
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("DOMAIN"));
}
