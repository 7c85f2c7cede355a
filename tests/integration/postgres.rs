//! The PostgreSQL backend (issue 16), against a private cluster made from
//! the machine's own PostgreSQL: `yubin db status` and `yubin db migrate`,
//! and a node that refuses a database without the schema it knows.

use yubin_test_pg::TestPostgres;

use crate::harness::{assert_config_refused, yubin};

fn config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("yubin.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[server]\nallow_root = true\n[storage]\nbackend = \"postgres\"\n\
             [postgres]\nurl = \"{url}\"\npool_size = 4\n",
            dir.display()
        ),
    )
    .expect("write the configuration");
    path
}

#[test]
fn issue16_db_status_and_migrate_and_a_node_refuses_an_unknown_schema() {
    let pg = TestPostgres::start().expect("a PostgreSQL cluster");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &pg.url());
    let path = config.to_str().expect("UTF-8");

    let status = yubin(&["db", "status", "--config", path], "", dir.path());
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(text.contains("schema version: 0"), "{text}");
    assert!(text.contains("pending"), "{text}");

    let migrated = yubin(&["db", "migrate", "--config", path], "", dir.path());
    let text = String::from_utf8_lossy(&migrated.stdout);
    assert!(migrated.status.success(), "{text}");
    assert!(text.contains("applied version 1"), "{text}");
    let again = yubin(&["db", "migrate", "--config", path], "", dir.path());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    let status = yubin(&["db", "status", "--config", path], "", dir.path());
    assert_eq!(status.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&status.stdout).contains("applied"));

    // A schema from a later yubin: the node refuses to start, saying so.
    pg.psql("INSERT INTO yubin_schema (version, name) VALUES (99, 'later')")
        .expect("psql");
    let serve = yubin(&["serve", "--config", path], "", dir.path());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert_eq!(serve.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("newer than this yubin knows"), "{stderr}");
}

#[test]
fn issue16_storage_settings_are_checked() {
    assert_config_refused("[storage]\nbackend = \"postgres\"\n", "postgres.url");
    assert_config_refused("[storage]\nbackend = \"sqlite\"\n", "backend");
    assert_config_refused(
        "[postgres]\nurl = \"postgresql://x@127.0.0.1/y\"\npool_size = 0\n",
        "postgres.pool_size",
    );
    assert_config_refused("[server]\nnode_name = \"a b\"\n", "server.node_name");
}
