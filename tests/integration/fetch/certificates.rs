//! PC-05: certificates checked against the system's roots (here a test CA
//! given through SSL_CERT_FILE, which the system-roots loader honours):
//! a good one passes, a wrong name or an expired one is refused unless
//! its fingerprint is pinned.

use std::fs;
use std::path::Path;

use super::{Client, awkward_messages, fingerprint, put_all, report};
use crate::harness::{Setup, TestServer};
use crate::test_ca::TestCa;

/// Runs a fetch against a server with the given `[tls]` table, trusting
/// the test CA, pinned or not; returns the exit status and the report.
fn fetch_with(tls: String, pin: bool, ca: &Path) -> (i32, serde_json::Value, TestServer) {
    let server = TestServer::with(Setup {
        tables: tls,
        ..Setup::default()
    });
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let mut args = client.unpinned_args(&server);
    if pin {
        let config = fs::read_to_string(server.config_path()).unwrap();
        let cert = config
            .lines()
            .find_map(|l| l.strip_prefix("cert = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        args.push("--fingerprint".into());
        args.push(fingerprint(Path::new(&cert)));
    }
    args.push("--keep".into());
    let output = client
        .command(&args, &[], &[("SSL_CERT_FILE", ca.to_str().unwrap())])
        .output()
        .unwrap();
    let status = output.status.code().unwrap();
    let value = report(&output, status);
    (status, value, server)
}

#[test]
fn certificates_are_checked_against_the_roots_unless_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let roots = dir.path().join("ca.pem");

    let good = ca.server(
        dir.path(),
        "good",
        &["127.0.0.1", "localhost"],
        (2020, 2099),
    );
    let (status, out, _server) = fetch_with(good, false, &roots);
    assert_eq!((status, out["fetched"].as_u64()), (0, Some(3)), "{out}");

    let wrong_name = ca.server(dir.path(), "wrong", &["other.example"], (2020, 2099));
    let (status, out, _server) = fetch_with(wrong_name.clone(), false, &roots);
    assert_eq!(status, 69, "{out}");
    assert!(
        out["error"].as_str().unwrap().contains("certificate"),
        "{out}"
    );

    let expired = ca.server(dir.path(), "expired", &["127.0.0.1"], (2019, 2020));
    let (status, out, _server) = fetch_with(expired.clone(), false, &roots);
    assert_eq!(status, 69, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("expired"),
        "{out}"
    );

    // Pinning is the user's decision to trust that one certificate.
    for tls in [wrong_name, expired] {
        let (status, out, _server) = fetch_with(tls, true, &roots);
        assert_eq!((status, out["fetched"].as_u64()), (0, Some(3)), "{out}");
    }
}
