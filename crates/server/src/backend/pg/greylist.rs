//! Greylisting's triplets in the shared database, so that a retry
//! reaching another node is not greylisted again. The rule is
//! [`GreylistTimes::judge`]'s, the clock the database's; one attempt's
//! read and write are one transaction, the row locked.

use std::time::Duration;

use async_trait::async_trait;
use yubin_pg::Database;

use crate::backend::greylist::Step;
use crate::backend::{GreylistStore, GreylistTimes, Greylisted, Triplet};

/// Triplets in the `greylist` table.
pub struct PgGreylist {
    db: Database,
    times: GreylistTimes,
}

impl PgGreylist {
    /// Triplets kept in `db`, judged by `times`.
    pub fn new(db: Database, times: GreylistTimes) -> PgGreylist {
        PgGreylist { db, times }
    }

    async fn attempt_in_db(&self, t: &Triplet) -> Result<Greylisted, yubin_pg::DbError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&t.network, &t.sender, &t.recipient];
        let row = tx
            .query_opt(
                "SELECT passed, extract(epoch FROM now() - first_seen)::float8, \
                        extract(epoch FROM now() - last_seen)::float8 \
                 FROM greylist WHERE network = $1 AND sender = $2 AND recipient = $3 FOR UPDATE",
                &key,
            )
            .await?;
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        let verdict = match row {
            None => {
                tx.execute(
                    "INSERT INTO greylist (network, sender, recipient, first_seen, last_seen, passed) \
                     VALUES ($1, $2, $3, now(), now(), false) ON CONFLICT DO NOTHING",
                    &key,
                )
                .await?;
                Greylisted::Wait(self.times.delay)
            }
            Some(row) => {
                let step = self
                    .times
                    .judge(row.get(0), secs(row.get(1)), secs(row.get(2)));
                let (sql, verdict) = match step {
                    Step::Pass => ("UPDATE greylist SET last_seen = now()", Greylisted::Pass),
                    Step::PassFirst => (
                        "UPDATE greylist SET last_seen = now(), passed = true",
                        Greylisted::Pass,
                    ),
                    Step::Wait(left) => (
                        "UPDATE greylist SET last_seen = now()",
                        Greylisted::Wait(left),
                    ),
                    Step::StartOver => (
                        "UPDATE greylist SET first_seen = now(), last_seen = now(), passed = false",
                        Greylisted::Wait(self.times.delay),
                    ),
                };
                tx.execute(
                    &format!("{sql} WHERE network = $1 AND sender = $2 AND recipient = $3"),
                    &key,
                )
                .await?;
                verdict
            }
        };
        tx.commit().await?;
        Ok(verdict)
    }
}

#[async_trait]
impl GreylistStore for PgGreylist {
    async fn attempt(&self, triplet: &Triplet) -> Greylisted {
        match self.attempt_in_db(triplet).await {
            Ok(verdict) => verdict,
            Err(error) => {
                // Without the database, mail is not held up on its account.
                tracing::warn!(%error, "greylisting cannot ask the database; the attempt passes");
                Greylisted::Pass
            }
        }
    }
}
