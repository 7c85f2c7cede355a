//! yubin on PostgreSQL in the benchmark (issue 16): a private cluster per
//! server start, from the machine's own binaries; the users and the
//! Maildirs a scenario seeded are moved in with `yubin migrate`, the way a
//! site moves in; then a node serves from it.
//!
//! The cluster loads `pg_stat_statements`. yubin prepares each statement
//! once per connection and runs it in one round trip, so the statements
//! the node ran while a scenario measured, divided by its operations, are
//! its round trips per operation.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use yubin_test_pg::TestPostgres;

use crate::servers::Env;

/// A cluster with the scenario's users and mail in it.
pub fn cluster(env: &Env, dir: &Path) -> Result<TestPostgres> {
    let cluster = TestPostgres::start_with(&["shared_preload_libraries=pg_stat_statements"])
        .context("a PostgreSQL cluster (initdb and pg_ctl)")?;
    let config = dir.join("migrate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{dir}\"\n[server]\nallow_root = true\n\
             [users]\npasswd_file = \"{users}\"\nmail_location = \"{mail}/%u\"\n\
             [postgres]\nurl = \"{url}\"\n",
            dir = dir.display(),
            users = env.users.display(),
            mail = env.mail.display(),
            url = cluster.url(),
        ),
    )?;
    for args in [
        &["db", "migrate"][..],
        &["migrate", "--from", "maildir", "--to", "postgres"][..],
    ] {
        let out = Command::new(&env.yubin)
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .with_context(|| format!("yubin {}", args.join(" ")))?;
        ensure!(
            out.status.success(),
            "yubin {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.psql("CREATE EXTENSION pg_stat_statements")?;
    Ok(cluster)
}

/// Forgets the statements counted so far.
pub fn reset(cluster: &TestPostgres) -> Result<()> {
    cluster.psql("SELECT pg_stat_statements_reset()")?;
    Ok(())
}

/// The statements the node ran since [`reset`], leaving out what it runs
/// on its own whatever the load (the users' version and the login
/// penalties it reads each second, the lease renewals) and this count's
/// own queries.
pub fn statements(cluster: &TestPostgres) -> Result<u64> {
    let text = cluster.psql(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
         WHERE query NOT LIKE '%users_version%' \
         AND query NOT LIKE 'UPDATE maildrop_locks SET lease_until%' \
         AND query NOT LIKE 'SELECT client, failures%' \
         AND query NOT LIKE '%pg_stat_statements%'",
    )?;
    text.trim()
        .parse()
        .with_context(|| format!("statement count {text:?}"))
}

/// How many messages the maildrops hold.
pub fn messages(cluster: &TestPostgres) -> Result<u64> {
    let text = cluster.psql("SELECT count(*) FROM messages")?;
    text.trim()
        .parse()
        .with_context(|| format!("message count {text:?}"))
}
