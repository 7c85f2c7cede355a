//! `yubin serve` and `yubin check-config`.

use std::io::IsTerminal;

use anyhow::Context;
use yubin_server::Config;
use yubin_server::first_run::{self, DemoUser};
use yubin_server::privileges::{self, RunAs};
use yubin_server::server::StartError;

use super::Failure;

/// Runs the server until SIGINT or SIGTERM.
/// With the PostgreSQL backend: the database reachable (retried until it
/// is, with a line in the log each time) and its schema the one this yubin
/// knows, or a clear refusal.
async fn check_database(config: &Config) -> Result<(), Failure> {
    let url = config.postgres.url.as_deref().unwrap_or_default();
    let db = yubin_pg::Database::connect(url, 1).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match db.check_schema().await {
            Ok(()) => break,
            Err(yubin_pg::DbError::Schema(reason)) => {
                return Err(Failure::Usage(format!("postgres: {reason}")));
            }
            Err(error) => {
                tracing::error!(%error, retry_in = ?wait, "the database cannot be reached");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
    Ok(())
}

pub fn serve(config: Config) -> Result<(), Failure> {
    // Before any thread exists: the flag is per thread, and inherited.
    privileges::forbid_new_privileges().context("cannot set no_new_privs")?;
    init_logging(&config);
    let run_as = privileges::plan(&config.server).map_err(|e| Failure::Usage(e.to_string()))?;
    if run_as.is_none() && privileges::running_as_root() {
        tracing::warn!("running as root (server.allow_root = true)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if config.storage.backend == yubin_server::config::Backend::Postgres {
        runtime.block_on(check_database(&config))?;
    }
    let hostname = config.hostname.clone();
    let mut demo = None;
    runtime.block_on(async {
        let server = yubin_server::Server::start_then(config, |config| {
            if let Some(run_as) = &run_as {
                drop_root(config, run_as)?;
            }
            // The first start's demo user and its welcome message: written
            // as the account the server runs as, before the users are read.
            // A cluster's users are the administrator's (`yubin user add`).
            if config.storage.backend == yubin_server::config::Backend::Maildir {
                demo = first_run::ensure_demo_user(config)
                    .map_err(|e| StartError::FirstRun(e.to_string()))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| match e {
            yubin_server::server::StartError::Config(e) => {
                Failure::Usage(format!("configuration error: {e}"))
            }
            yubin_server::server::StartError::Privileges(e) if e.is_configuration() => {
                Failure::Usage(e.to_string())
            }
            e @ (yubin_server::server::StartError::Aliases(_)
            | yubin_server::server::StartError::SenderLogins(_)
            | yubin_server::server::StartError::Dkim(_)) => {
                Failure::Usage(format!("configuration error: {e}"))
            }
            other => Failure::Runtime(other.into()),
        })?;
        if let Some(demo) = demo {
            print_demo(&demo, &server, &hostname);
        }
        server.run_until_signal().await;
        Ok(())
    })
}

/// Listeners are open and keys read: hands the data directory to the
/// account and becomes it, then checks what it can reach.
fn drop_root(config: &Config, run_as: &RunAs) -> Result<(), StartError> {
    let handed = privileges::hand_over(&config.data_dir, run_as)?;
    privileges::become_user(run_as)?;
    privileges::check_access(config, run_as)?;
    tracing::info!(
        user = %run_as.name,
        uid = run_as.uid.as_raw(),
        gid = run_as.gid.as_raw(),
        handed_over = handed,
        "dropped root"
    );
    Ok(())
}

/// Prints the effective configuration, or fails naming the bad key.
pub fn check_config(config: Config) -> Result<(), Failure> {
    let passwd = config.passwd_file();
    let (file, mut problems) = yubin_auth::PasswdFile::load(&passwd).map_err(|e| {
        Failure::Usage(format!(
            "users.passwd_file: cannot read {}: {e}",
            passwd.display()
        ))
    })?;
    let (_, more) = yubin_auth::Users::from_file(&file);
    problems.extend(more);
    if let (Some(_), Some(_)) = (&config.tls.cert, &config.tls.key) {
        yubin_server::tls::server_config(&config)
            .map_err(|e| Failure::Usage(format!("tls: {e}")))?;
    }
    config
        .dkim_keyring()
        .map_err(|e| Failure::Usage(format!("dkim: {e}")))?;
    print!("{}", config.to_toml());
    if !problems.is_empty() {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {p}", passwd.display()))
            .collect();
        return Err(Failure::Usage(format!(
            "users.passwd_file has unusable entries:\n  {}",
            lines.join("\n  ")
        )));
    }
    Ok(())
}

fn init_logging(config: &Config) {
    // rustls warns about every client that sends an IP address as SNI
    // (mpop does); those belong at debug level, not in the operator's log.
    let level = if config.log.level.contains('=') {
        config.log.level.clone()
    } else {
        format!("{},rustls=error", config.log.level)
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn print_demo(demo: &DemoUser, server: &yubin_server::Server, hostname: &str) {
    let DemoUser { name, password } = demo;
    println!();
    println!(
        "First start: created user \"{name}\" with password \"{password}\" (shown only this once)."
    );
    println!("A welcome message is waiting in its maildrop. Fetch it with:");
    if let Some(addr) = server.pop3_addresses.first() {
        println!("  curl --user '{name}:{password}' pop3://{addr}/1");
    }
    if let Some(addr) = server.pop3s_addresses.first() {
        println!(
            "  curl --insecure --user '{name}:{password}' pop3s://{addr}/1   # self-signed certificate"
        );
    }
    if let Some(addr) = server.smtp_addresses.first() {
        println!("Send it more mail by SMTP with:");
        println!(
            "  printf 'Subject: hello\\r\\n\\r\\nHello, {name}.\\r\\n' | curl smtp://{addr} --mail-from you@example.org --mail-rcpt {name}@{hostname} --upload-file -"
        );
    }
    println!();
}
