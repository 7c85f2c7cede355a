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

/// What removing a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed, with this many messages.
    Removed(usize),
    /// Not removed: the maildrop holds this many messages.
    HasMail(usize),
    /// No such user.
    NoSuchUser,
}

/// Users written per statement by an import.
const IMPORT_BATCH: usize = 1000;

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

/// An entry's fields as [`INSERT`] takes them.
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

    /// Removes a user, and with them their maildrop (the rows cascade;
    /// bodies no one else holds are removed with them), unless the
    /// maildrop holds mail and `with_mail` is false. The count and the
    /// removal are one transaction: a delivery meanwhile waits for it (it
    /// needs the user's row) or comes after.
    pub async fn remove_user(&self, name: &str, with_mail: bool) -> Result<Removal, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(user) = tx
            .query_opt(
                "SELECT id FROM users WHERE name_key = $1 FOR UPDATE",
                &[&key(name)],
            )
            .await?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Ok(Removal::NoSuchUser);
        };
        let bodies: Vec<i64> = tx
            .query("SELECT body_id FROM messages WHERE user_id = $1", &[&user])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !bodies.is_empty() && !with_mail {
            return Ok(Removal::HasMail(bodies.len()));
        }
        tx.execute("DELETE FROM maildrop_locks WHERE user_id = $1", &[&user])
            .await?;
        tx.execute("DELETE FROM users WHERE id = $1", &[&user])
            .await?;
        crate::bodies::remove_unreferenced(&tx, &bodies).await?;
        tx.commit().await?;
        Ok(Removal::Removed(bodies.len()))
    }

    /// Adds every entry in one transaction, in order. A name already
    /// there is replaced when `replace`, kept otherwise; the report says
    /// which.
    pub async fn import_users(
        &self,
        entries: &[UserEntry],
        replace: bool,
    ) -> Result<ImportReport, DbError> {
        let mut report = ImportReport::default();
        // The first entry of a name wins, as when the file is served.
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&UserEntry> = entries
            .iter()
            .filter(|e| {
                let first = seen.insert(key(&e.name));
                if !first {
                    report.kept += 1;
                }
                first
            })
            .collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        for batch in unique.chunks(IMPORT_BATCH) {
            // In the file's order, so that ids (and the first user) follow it.
            let added: std::collections::HashSet<String> = tx
                .query(
                    "INSERT INTO users (name_key, name, password, uid, gid, gecos, home, shell, extra) \
                     SELECT k, n, p, u, g, c, h, s, x FROM unnest($1::text[], $2::text[], $3::text[], \
                         $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
                         WITH ORDINALITY AS e(k, n, p, u, g, c, h, s, x, i) ORDER BY i \
                     ON CONFLICT (name_key) DO NOTHING RETURNING name_key",
                    &Columns::of(batch).params(),
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            report.added += added.len();
            let existing: Vec<&UserEntry> = batch
                .iter()
                .copied()
                .filter(|e| !added.contains(&key(&e.name)))
                .collect();
            if !replace || existing.is_empty() {
                report.kept += existing.len();
                continue;
            }
            tx.execute(
                "UPDATE users SET name = e.n, password = e.p, uid = e.u, gid = e.g, gecos = e.c, \
                     home = e.h, shell = e.s, extra = e.x \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::text[]) AS e(k, n, p, u, g, c, h, s, x) \
                 WHERE users.name_key = e.k",
                &Columns::of(&existing).params(),
            )
            .await?;
            report.replaced += existing.len();
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// Entries as columns (`unnest`'s arrays): keys, then the eight fields.
struct Columns<'a> {
    keys: Vec<String>,
    fields: [Vec<&'a str>; 8],
}

impl<'a> Columns<'a> {
    fn of(entries: &[&'a UserEntry]) -> Columns<'a> {
        let column = |field: fn(&'a UserEntry) -> &'a str| -> Vec<&'a str> {
            entries.iter().map(|e| field(e)).collect()
        };
        Columns {
            keys: entries.iter().map(|e| key(&e.name)).collect(),
            fields: [
                column(|e| &e.name),
                column(|e| &e.password),
                column(|e| &e.uid),
                column(|e| &e.gid),
                column(|e| &e.gecos),
                column(|e| &e.home),
                column(|e| &e.shell),
                column(|e| &e.extra),
            ],
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        let f = &self.fields;
        [
            &self.keys, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7],
        ]
    }
}
