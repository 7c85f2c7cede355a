//! The `users` table: one row per passwd-file entry, every field kept as
//! the file has it, in the order the users were added (the first user
//! receives postmaster's mail when no one else does). Names are unique
//! without regard to ASCII case, as in the file.

use tokio_postgres::types::ToSql;
use yubin_auth::UserEntry;

use crate::{Database, DbError};

/// The columns an entry is read from, in [`entry`]'s order.
const COLUMNS: &str = "name, password, uid, gid, gecos, home, shell, extra";

/// Adds a user unless the name is taken.
const INSERT: &str = "INSERT INTO users (name, name_key, password, uid, gid, gecos, home, shell, extra) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name_key) DO NOTHING";

/// Replaces a user's fields (the parameters as [`INSERT`]'s).
const UPDATE: &str = "UPDATE users SET name = $1, password = $3, uid = $4, gid = $5, gecos = $6, \
     home = $7, shell = $8, extra = $9 WHERE name_key = $2";

/// What `yubin user import` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Users added.
    pub added: usize,
    /// Users that were there already and were replaced.
    pub replaced: usize,
    /// Users that were there already and were left as they were.
    pub kept: usize,
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn entry(row: &tokio_postgres::Row) -> UserEntry {
    UserEntry {
        name: row.get(0),
        password: row.get(1),
        uid: row.get(2),
        gid: row.get(3),
        gecos: row.get(4),
        home: row.get(5),
        shell: row.get(6),
        extra: row.get(7),
    }
}

/// An entry's fields as [`INSERT`] and [`UPDATE`] take them.
fn params<'a>(user: &'a UserEntry, name_key: &'a String) -> [&'a (dyn ToSql + Sync); 9] {
    [
        &user.name,
        name_key,
        &user.password,
        &user.uid,
        &user.gid,
        &user.gecos,
        &user.home,
        &user.shell,
        &user.extra,
    ]
}

impl Database {
    /// A number that changes whenever a user is added, changed or removed.
    pub async fn users_version(&self) -> Result<i64, DbError> {
        let row = self
            .query_one("SELECT version FROM users_version", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Every user, in the order they were added, with the version they
    /// were read at (one snapshot: a change made meanwhile is in both or
    /// in neither).
    pub async fn user_entries(&self) -> Result<(i64, Vec<UserEntry>), DbError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let version: i64 = tx
            .query_one("SELECT version FROM users_version", &[])
            .await?
            .get(0);
        let rows = tx
            .query(&format!("SELECT {COLUMNS} FROM users ORDER BY id"), &[])
            .await?;
        tx.commit().await?;
        Ok((version, rows.iter().map(entry).collect()))
    }

    /// One user, by name in any ASCII case.
    pub async fn user_entry(&self, name: &str) -> Result<Option<UserEntry>, DbError> {
        let row = self
            .query_opt(
                &format!("SELECT {COLUMNS} FROM users WHERE name_key = $1"),
                &[&key(name)],
            )
            .await?;
        Ok(row.as_ref().map(entry))
    }

    /// Adds `user`; `false` when the name is taken.
    pub async fn add_user(&self, user: &UserEntry) -> Result<bool, DbError> {
        let client = self.client().await?;
        let name_key = key(&user.name);
        let added = client.execute(INSERT, &params(user, &name_key)).await?;
        Ok(added == 1)
    }

    /// Replaces a user's stored password; `false` when there is no such
    /// user.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<bool, DbError> {
        let changed = self
            .execute(
                "UPDATE users SET password = $2 WHERE name_key = $1",
                &[&key(name), &password],
            )
            .await?;
        Ok(changed == 1)
    }

    /// How many messages a user has, in every folder.
    pub async fn message_count(&self, name: &str) -> Result<i64, DbError> {
        let row = self
            .query_one(
                "SELECT count(*) FROM messages m JOIN users u ON u.id = m.user_id WHERE u.name_key = $1",
                &[&key(name)],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Removes a user, and with them their maildrop (the rows cascade;
    /// bodies no one else holds are removed with them). `false` when there
    /// is no such user.
    pub async fn remove_user(&self, name: &str) -> Result<bool, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let bodies: Vec<i64> = tx
            .query(
                "SELECT m.body_id FROM messages m JOIN users u ON u.id = m.user_id WHERE u.name_key = $1",
                &[&key(name)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            "DELETE FROM maildrop_locks WHERE user_id = (SELECT id FROM users WHERE name_key = $1)",
            &[&key(name)],
        )
        .await?;
        let removed = tx
            .execute("DELETE FROM users WHERE name_key = $1", &[&key(name)])
            .await?;
        crate::bodies::remove_unreferenced(&tx, &bodies).await?;
        tx.commit().await?;
        Ok(removed == 1)
    }

    /// Adds every entry in one transaction, in order. A name already
    /// there is replaced when `replace`, kept otherwise; the report says
    /// which.
    pub async fn import_users(
        &self,
        entries: &[UserEntry],
        replace: bool,
    ) -> Result<ImportReport, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let insert = tx.prepare(INSERT).await?;
        let update = tx.prepare(UPDATE).await?;
        let mut report = ImportReport::default();
        for user in entries {
            let name_key = key(&user.name);
            let params = params(user, &name_key);
            if tx.execute(&insert, &params).await? == 1 {
                report.added += 1;
            } else if replace {
                tx.execute(&update, &params).await?;
                report.replaced += 1;
            } else {
                report.kept += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}
