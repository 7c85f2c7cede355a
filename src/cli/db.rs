//! `yubin db migrate` and `yubin db status`: the PostgreSQL schema that
//! `[postgres] url` names.

use clap::Subcommand;
use yubin_pg::Database;
use yubin_server::Config;

use super::Failure;

/// `yubin db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the schema migrations this yubin knows and the database has
    /// not had (safe to run from several nodes at once).
    Migrate,
    /// Show the database's schema version and what a migration would
    /// apply. Exit status 0 when none is pending, 1 otherwise.
    Status,
}

/// The database `[postgres] url` names, and a runtime to ask it on.
pub(super) fn open(config: &Config) -> Result<(tokio::runtime::Runtime, Database), Failure> {
    let Some(url) = &config.postgres.url else {
        return Err(Failure::Usage(
            "postgres.url: not set in the configuration (--config FILE)".into(),
        ));
    };
    let db = Database::connect(url, 2).map_err(|e| Failure::Usage(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    Ok((runtime, db))
}

/// A database whose schema is not the one this yubin knows is a usage
/// error (run `yubin db migrate`); one that cannot be reached is not.
pub(super) fn schema_failure(error: yubin_pg::DbError) -> Failure {
    match error {
        yubin_pg::DbError::Schema(reason) => Failure::Usage(format!("postgres: {reason}")),
        other => Failure::Runtime(other.into()),
    }
}

/// Runs a `db` subcommand.
pub fn run(command: DbCommand, config: &Config) -> Result<(), Failure> {
    let (runtime, db) = open(config)?;
    runtime.block_on(async {
        match command {
            DbCommand::Migrate => {
                let applied = db.migrate().await.map_err(|e| Failure::Runtime(e.into()))?;
                let status = db.status().await.map_err(|e| Failure::Runtime(e.into()))?;
                if applied.is_empty() {
                    println!("the schema is up to date: version {}", status.current());
                } else {
                    let list: Vec<String> = applied.iter().map(u32::to_string).collect();
                    println!(
                        "applied version {}; the schema is now version {}",
                        list.join(", "),
                        status.current()
                    );
                }
                Ok(())
            }
            DbCommand::Status => {
                let status = db.status().await.map_err(|e| Failure::Runtime(e.into()))?;
                println!("schema version: {}", status.current());
                println!("this yubin knows: {}", status.known);
                for migration in yubin_pg::MIGRATIONS {
                    let state = if status.applied.contains(&migration.version) {
                        "applied"
                    } else {
                        "pending"
                    };
                    println!("  {:>3} {state:<8} {}", migration.version, migration.name);
                }
                match status.check() {
                    Ok(()) => Ok(()),
                    Err(e) => Err(Failure::Exit(1, e.to_string())),
                }
            }
        }
    })
}
