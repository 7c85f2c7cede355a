//! Users from the `users` table. Each node keeps a snapshot in memory, as
//! it does of the passwd-file, so a login, an RCPT or a SASL step never
//! waits on the database. Every refresh asks for one number, the users'
//! version, and reads the table again only when it moved.

use std::sync::{Arc, RwLock};

use tokio::runtime::Handle;
use yubin_auth::passwd::LineError;
use yubin_auth::{PasswdFile, check_user_name};
use yubin_pg::{Database, DbError};

use crate::backend::UserDirectory;
use crate::userstore::Snapshot;

/// What the log calls this source.
const SOURCE: &str = "postgres users";

/// The users table, with the snapshot last read from it.
pub struct PgUsers {
    db: Database,
    runtime: Handle,
    secret: Option<Vec<u8>>,
    current: RwLock<(i64, Arc<Snapshot>)>,
}

impl PgUsers {
    /// Reads the users once; `secret` is what SCRAM salts that are not
    /// stored derive from. Refreshes run on `runtime`.
    pub async fn load(db: Database, secret: Option<Vec<u8>>) -> Result<PgUsers, DbError> {
        let (version, snapshot) = read(&db, 0, secret.as_deref()).await?;
        Ok(PgUsers {
            db,
            runtime: Handle::current(),
            secret,
            current: RwLock::new((version, Arc::new(snapshot))),
        })
    }

    /// How many users the snapshot holds.
    pub fn snapshot_len(&self) -> usize {
        self.current().1.users.len()
    }

    fn current(&self) -> (i64, Arc<Snapshot>) {
        let guard = match self.current.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        (guard.0, guard.1.clone())
    }

    /// Reads the table again if the users changed; keeps the snapshot it
    /// has when the database cannot be asked.
    pub async fn refresh_now(&self) {
        let (version, snapshot) = self.current();
        let started = std::time::Instant::now();
        let result = async {
            if self.db.users_version().await? == version {
                return Ok(None);
            }
            let generation = snapshot.generation + 1;
            read(&self.db, generation, self.secret.as_deref())
                .await
                .map(Some)
        }
        .await;
        match result {
            Ok(None) => {}
            Ok(Some((version, snapshot))) => {
                tracing::info!(
                    users = snapshot.users.len(),
                    ms = started.elapsed().as_millis(),
                    "users reloaded from the database"
                );
                let mut guard = match self.current.write() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *guard = (version, Arc::new(snapshot));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the users; keeping the ones read before");
            }
        }
    }
}

async fn read(
    db: &Database,
    generation: u64,
    secret: Option<&[u8]>,
) -> Result<(i64, Snapshot), DbError> {
    let (version, entries) = db.user_entries().await?;
    // Rows written with SQL by hand get the checks the passwd-file's lines
    // get; "line" is the row's place in the table's order.
    let mut problems = Vec::new();
    let mut usable = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        match check_user_name(&entry.name) {
            Ok(()) => usable.push(entry),
            Err(why) => problems.push(LineError {
                line: index + 1,
                reason: format!("invalid user name {:?}: {why}", entry.name),
            }),
        }
    }
    let file = PasswdFile::from_entries(usable);
    // Maildrops are the users' own rows, so no two names can share one:
    // the shared-Maildir check has nothing to check here.
    let snapshot = Snapshot::build(&file, problems, generation, secret, None, SOURCE);
    Ok((version, snapshot))
}

impl UserDirectory for PgUsers {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.current().1
    }

    fn refresh(&self) {
        // Called on tokio's blocking pool, where waiting is allowed.
        self.runtime.block_on(self.refresh_now());
    }
}
