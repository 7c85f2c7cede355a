//! MTA-STS (RFC 8461, issue 14): the sending server A reads each
//! destination's `_mta-sts` record from a real DNS server on loopback and
//! fetches its policy over HTTPS from a local server whose certificates a
//! test CA signed (tests/integration/py/stspolicy.py). B, the destination
//! for every domain here, has a certificate from the same CA for its MX
//! name, `localhost`.

use yubin_test_dns::TestDns;

use crate::harness::{Setup, TestServer};
use crate::outbound::eventually;
use crate::test_ca::TestCa;

/// The policy server; killed when dropped.
pub(crate) struct PolicyServer {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl PolicyServer {
    pub(crate) fn start(dir: &std::path::Path) -> PolicyServer {
        let (child, port) = crate::harness::python_server("stspolicy.py", &[dir.as_os_str()]);
        PolicyServer { child, port }
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// `enforce` with the MX listed delivers over verified TLS; `enforce`
/// without it waits (never delivered elsewhere, never in plaintext); a
/// policy host with an expired certificate gives no policy (delivery goes
/// on, the failure logged); `testing` delivers and logs what would fail.
/// The policy is kept: the second message to b.test fetches nothing.
#[test]
fn issue14_mta_sts_policies_decide_where_and_how_mail_goes() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(ca_dir.path());
    let policies = tempfile::tempdir().unwrap();
    ca.server(
        policies.path(),
        "server",
        &["mta-sts.b.test", "mta-sts.c.test", "mta-sts.e.test"],
        (2025, 2035),
    );
    // Expired in 2021.
    ca.server(
        policies.path(),
        "mta-sts.d.test",
        &["mta-sts.d.test"],
        (2020, 2021),
    );
    for (domain, text) in [
        ("b.test", policy("enforce", "localhost")),
        ("c.test", policy("enforce", "mx.c.test")),
        ("d.test", policy("enforce", "mx.d.test")),
        ("e.test", policy("testing", "mx.e.test")),
    ] {
        std::fs::write(policies.path().join(format!("mta-sts.{domain}")), text).unwrap();
    }
    let https = PolicyServer::start(policies.path());

    let b = TestServer::with(Setup {
        hostname: "b.test".into(),
        smtp: "auth_failure_delay = \"100ms\"\nlocal_domains = [\"b.test\", \"c.test\", \"d.test\", \"e.test\"]\n".into(),
        tables: ca.server(ca_dir.path(), "b", &["localhost"], (2025, 2035)),
        ..Setup::default()
    });
    let dns = TestDns::start().unwrap();
    for domain in ["b.test", "c.test", "d.test", "e.test"] {
        dns.mx(domain, 10, "localhost");
        dns.txt(&format!("_mta-sts.{domain}"), "v=STSv1; id=20261206;");
        dns.a(&format!("mta-sts.{domain}"), "127.0.0.1".parse().unwrap());
    }
    let a = TestServer::with(Setup {
        tables: format!(
            "[dns]\nresolver = \"{}\"\n[queue]\nmx_port = {}\nmta_sts_port = {}\nfirst_retry = \"1h\"\n",
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
    let send = |to: &str, subject: &str| {
        let sent = crate::outbound::send_via(
            &a,
            &[to],
            format!("Subject: {subject}\r\n\r\nbody\r\n").as_bytes(),
        );
        assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    };
    send("bob@b.test", "enforced");
    send("bob@c.test", "not in the policy");
    send("bob@d.test", "no policy fetched");
    send("bob@e.test", "testing");
    eventually(20, "three deliveries", || b.messages("bob").len() == 3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !a
        .log()
        .contains("no MX host of c.test is in its MTA-STS policy")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no deferral for c.test:\n{}",
            a.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let subjects: Vec<String> = b
        .messages("bob")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    for subject in ["enforced", "no policy fetched", "testing"] {
        assert!(
            subjects
                .iter()
                .any(|m| m.contains(&format!("Subject: {subject}"))),
            "{subject}: {subjects:?}"
        );
    }
    assert!(
        !subjects
            .iter()
            .any(|m| m.contains("Subject: not in the policy")),
        "c.test's mail waits"
    );
    let enforced = subjects
        .iter()
        .find(|m| m.contains("Subject: enforced"))
        .unwrap();
    assert!(enforced.contains("with ESMTPS"), "{enforced}");
    let log = a.log();
    assert!(
        log.contains("MTA-STS policy fetched domain=b.test"),
        "{log}"
    );
    assert!(
        log.contains("MTA-STS policy not fetched domain=d.test"),
        "an expired certificate on the policy host: {log}"
    );
    assert!(
        log.contains("MX host not in the domain's MTA-STS policy domain=e.test host=localhost mode=\"testing\"")
            || log.contains("MX host not in the domain's MTA-STS policy domain=e.test host=localhost mode=testing"),
        "{log}"
    );
    // `yubin queue show` says which policy the waiting message meets.
    let config = a.config_path();
    let config = config.to_str().unwrap();
    let listed = crate::harness::yubin(&["queue", "list", "--config", config], "", a.dir.path());
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let id = listed
        .lines()
        .find(|l| l.contains("from <alice@test.example>"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{listed}"))
        .to_owned();
    let shown = crate::harness::yubin(
        &["queue", "show", &id, "--config", config],
        "",
        a.dir.path(),
    );
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains(
            "tls:       c.test: DANE first for MX hosts with validated TLSA records; \
             verify (MTA-STS enforce, mx mx.c.test, until "
        ),
        "{shown}"
    );
    assert!(
        shown.contains("no MX host of c.test is in its MTA-STS policy"),
        "{shown}"
    );

    // Kept: the next message to b.test uses the cached policy.
    send("bob@b.test", "cached");
    eventually(20, "the fourth delivery", || b.messages("bob").len() == 4);
    assert_eq!(
        a.log()
            .matches("MTA-STS policy fetched domain=b.test")
            .count(),
        1,
        "{}",
        a.log()
    );
    assert!(a.dir.path().join("queue/mta-sts/b.test").exists());
}

/// `enforce` with no MX host in the policy: the mail waits, and when the
/// queue's `max_age` runs out it comes back to the sender, saying why.
#[test]
fn issue14_mta_sts_enforce_without_the_mx_bounces_at_max_age() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(ca_dir.path());
    let policies = tempfile::tempdir().unwrap();
    ca.server(policies.path(), "server", &["mta-sts.c.test"], (2025, 2035));
    std::fs::write(
        policies.path().join("mta-sts.c.test"),
        policy("enforce", "mx.c.test"),
    )
    .unwrap();
    let https = PolicyServer::start(policies.path());
    let dns = TestDns::start().unwrap();
    dns.mx("c.test", 10, "localhost");
    dns.txt("_mta-sts.c.test", "v=STSv1; id=7;");
    dns.a("mta-sts.c.test", "127.0.0.1".parse().unwrap());
    let a = TestServer::with(Setup {
        tables: format!(
            "[dns]\nresolver = \"{}\"\n[queue]\nmta_sts_port = {}\nmax_age = \"3s\"\n\
             delay_warning = \"1h\"\nfirst_retry = \"1s\"\nmax_retry = \"1s\"\n",
            dns.addr(),
            https.port
        ),
        env: vec![(
            "SSL_CERT_FILE".into(),
            ca_dir.path().join("ca.pem").display().to_string(),
        )],
        ..Setup::default()
    });
    let sent = crate::outbound::send_via(&a, &["bob@c.test"], b"Subject: held\r\n\r\nbody\r\n");
    assert_eq!(sent["error"], serde_json::Value::Null, "{sent}");
    eventually(20, "the bounce", || a.messages("alice").len() == 1);
    let bounce = String::from_utf8_lossy(&a.messages("alice")[0]).into_owned();
    assert!(
        bounce.contains("Action: failed") && bounce.contains("4.4.7 delivery time expired"),
        "{bounce}"
    );
    assert!(
        bounce.contains("no MX host of c.test is in its MTA-STS policy"),
        "the reason it waited: {bounce}"
    );
    eventually(10, "A's queue to empty", || a.queued().is_empty());
}
