//! The schema's migrations, embedded in the binary and applied in order.
//! The table `yubin_schema` records each version applied; migrating takes
//! a transaction-wide advisory lock, so two nodes started at once apply
//! each migration once.

use crate::DbError;

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version, from 1, without gaps.
    pub version: u32,
    /// What it does, in a few words.
    pub name: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

/// Every migration this yubin knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "users, maildrops, bodies, locks, grants, penalties, greylisting, queue",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "every passwd-file field, users' version, seen flags, derived sizes",
        sql: include_str!("../migrations/0002_users_and_maildrops.sql"),
    },
    Migration {
        version: 3,
        name: "locks, grants and penalties unlogged",
        sql: include_str!("../migrations/0003_ephemeral_state.sql"),
    },
    Migration {
        version: 4,
        name: "the outbound queue, with claims under a lease",
        sql: include_str!("../migrations/0004_outbound_queue.sql"),
    },
    Migration {
        version: 5,
        name: "maildrop versions, for the listings nodes keep",
        sql: include_str!("../migrations/0005_maildrop_versions.sql"),
    },
    Migration {
        version: 6,
        name: "a POP-before-SMTP grant per client and user",
        sql: include_str!("../migrations/0006_grants_per_user.sql"),
    },
    Migration {
        version: 7,
        name: "a login's lock, grant and listing in one statement",
        sql: include_str!("../migrations/0007_open_maildrop.sql"),
    },
    Migration {
        version: 8,
        name: "a client relays as the user who logged in from it last",
        sql: include_str!("../migrations/0008_newest_grant_wins.sql"),
    },
    Migration {
        version: 9,
        name: "each user's last POP3 login, for LOGIN-DELAY across nodes",
        sql: include_str!("../migrations/0009_login_times.sql"),
    },
];

/// The advisory lock that makes migrating one node's job at a time.
const LOCK: i64 = 0x7975_6269_6e00; // "yubin\0"

/// Where the database's schema stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The versions applied, in order.
    pub applied: Vec<u32>,
    /// The newest version this yubin knows.
    pub known: u32,
}

impl SchemaStatus {
    /// The database's version (0: none applied).
    pub fn current(&self) -> u32 {
        self.applied.last().copied().unwrap_or(0)
    }

    /// The versions this yubin would apply.
    pub fn pending(&self) -> Vec<u32> {
        MIGRATIONS
            .iter()
            .map(|m| m.version)
            .filter(|v| !self.applied.contains(v))
            .collect()
    }

    /// `Ok` for exactly the schema this yubin knows.
    pub fn check(&self) -> Result<(), DbError> {
        let current = self.current();
        if current > self.known {
            return Err(DbError::Schema(format!(
                "the database's schema is version {current}, newer than this yubin knows ({}): \
                 run a yubin that knows it, or restore the database",
                self.known
            )));
        }
        if !self.pending().is_empty() {
            return Err(DbError::Schema(format!(
                "the database's schema is version {current}; this yubin needs {}: run `yubin db migrate`",
                self.known
            )));
        }
        Ok(())
    }
}

/// The versions applied so far (none when the table does not exist).
pub(crate) async fn status(client: &tokio_postgres::Client) -> Result<SchemaStatus, DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('yubin_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    let applied = if exists {
        client
            .query("SELECT version FROM yubin_schema ORDER BY version", &[])
            .await?
            .iter()
            .map(|row| u32::try_from(row.get::<_, i32>(0)).unwrap_or(0))
            .collect()
    } else {
        Vec::new()
    };
    Ok(SchemaStatus {
        applied,
        known: MIGRATIONS.last().map_or(0, |m| m.version),
    })
}

/// Applies what is missing, each migration in its own transaction.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<u32>, DbError> {
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS yubin_schema (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let version = i32::try_from(migration.version).unwrap_or(i32::MAX);
        let had = tx
            .query_opt("SELECT 1 FROM yubin_schema WHERE version = $1", &[&version])
            .await?
            .is_some();
        if !had {
            tx.batch_execute(migration.sql).await?;
            tx.execute(
                "INSERT INTO yubin_schema (version, name) VALUES ($1, $2)",
                &[&version, &migration.name],
            )
            .await?;
            done.push(migration.version);
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "schema migrated"
            );
        }
        tx.commit().await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_run_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn status_says_what_to_do() {
        let known = MIGRATIONS.len() as u32;
        let all: Vec<u32> = (1..=known).collect();
        let fresh = SchemaStatus {
            applied: vec![],
            known,
        };
        assert_eq!(fresh.pending(), all);
        assert!(
            fresh
                .check()
                .is_err_and(|e| e.to_string().contains("yubin db migrate"))
        );
        let behind = SchemaStatus {
            applied: all[..all.len() - 1].to_vec(),
            known,
        };
        assert_eq!(behind.pending(), vec![known]);
        assert!(behind.check().is_err());
        let newer = SchemaStatus {
            applied: (1..=known + 1).collect(),
            known,
        };
        assert!(
            newer
                .check()
                .is_err_and(|e| e.to_string().contains("newer than this yubin knows"))
        );
        let current = SchemaStatus {
            applied: all,
            known,
        };
        assert!(current.check().is_ok());
    }
}
