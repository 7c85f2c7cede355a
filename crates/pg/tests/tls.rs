//! TLS to the database, against a private cluster with `ssl=on` and a
//! certificate for `localhost` from a test authority: libpq's `sslmode`
//! and `sslrootcert`, in both forms of connection string.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use yubin_pg::{Database, DbError};
use yubin_test_pg::TestPostgres;

/// An authority's certificate (PEM) and a server certificate and key it
/// issued for `names`.
fn issue(names: &[&str]) -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "yubin test authority");
    let ca_cert = ca.self_signed(&ca_key).expect("the authority");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("a key");
    let cert = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .expect("parameters")
        .signed_by(&key, &issuer)
        .expect("the server's certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Why a connection by `url` was refused; the test fails if it was not.
async fn refusal(url: &str) -> String {
    match encrypted(url).await {
        Ok(tls) => panic!("{url}: connected (TLS: {tls})"),
        Err(error) => error.to_string(),
    }
}

/// Whether a connection by `url` is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, DbError> {
    let db = Database::connect(url, 1)?;
    let client = db.client().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmode_and_sslrootcert_work_as_in_libpq() {
    let (ca, cert, key) = issue(&["localhost"]);
    let pg = TestPostgres::start_with_files(
        &["ssl=on"],
        &[
            ("server.crt", cert.as_bytes()),
            ("server.key", key.as_bytes()),
        ],
    )
    .expect("a PostgreSQL cluster with TLS");
    let dir = tempfile::tempdir().expect("a directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).expect("the authority's certificate");
    let (other_ca, _, _) = issue(&["localhost"]);
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, &other_ca).expect("another authority's certificate");
    let port = pg.port();
    let pairs =
        |host: &str, more: &str| format!("host={host} port={port} user=yubin dbname=yubin {more}");
    let root = |file: &std::path::Path| format!("sslrootcert='{}'", file.display());

    // prefer (the default) and require encrypt, checking nothing.
    assert!(encrypted(&pairs("localhost", "")).await.expect("prefer"));
    assert!(
        encrypted(&pairs("127.0.0.1", "sslmode=require"))
            .await
            .expect("require")
    );
    assert!(
        !encrypted(&pairs("localhost", "sslmode=disable"))
            .await
            .expect("disable")
    );

    // verify-full: the authority, and the name connected to.
    let full = format!("sslmode=verify-full {}", root(&ca_file));
    assert!(
        encrypted(&pairs("localhost", &full))
            .await
            .expect("verify-full")
    );
    let error = refusal(&pairs("127.0.0.1", &full)).await;
    assert!(error.contains("not valid for name"), "{error}");
    let elsewhere = format!("sslmode=verify-full {}", root(&other_ca_file));
    let error = refusal(&pairs("localhost", &elsewhere)).await;
    assert!(error.contains("invalid peer certificate"), "{error}");

    // verify-ca: the authority alone; require with a root file is the same.
    let ca_only = format!("sslmode=verify-ca {}", root(&ca_file));
    assert!(
        encrypted(&pairs("127.0.0.1", &ca_only))
            .await
            .expect("verify-ca")
    );
    let require_ca = format!("sslmode=require {}", root(&other_ca_file));
    // (require with a root file checks the chain)
    let error = refusal(&pairs("127.0.0.1", &require_ca)).await;
    assert!(error.contains("invalid peer certificate"), "{error}");

    // The URL form, its query %-encoded.
    let path: String = ca_file
        .display()
        .to_string()
        .replace('%', "%25")
        .replace('/', "%2F");
    let url =
        format!("postgresql://yubin@localhost:{port}/yubin?sslmode=verify-full&sslrootcert={path}");
    assert!(encrypted(&url).await.expect("verify-full in a URL"));

    // PostgreSQL offers no TLS on its unix socket: prefer goes on without.
    assert!(!encrypted(&pg.socket_conninfo()).await.expect("the socket"));
}

#[tokio::test]
async fn require_refuses_a_server_without_tls() {
    let pg = TestPostgres::start().expect("a PostgreSQL cluster");
    let plain = format!("host=127.0.0.1 port={} user=yubin dbname=yubin", pg.port());
    assert!(!encrypted(&plain).await.expect("prefer goes on without TLS"));
    let error = refusal(&format!("{plain} sslmode=require")).await;
    assert!(error.contains("TLS"), "{error}");
}
