//! LOGIN-DELAY's last logins in the shared database (`pop3_logins`): one
//! statement records a login unless the last one is too recent, so two
//! nodes letting in the same user at once cannot both succeed. The clock
//! is the database's.

use std::time::Duration;

use async_trait::async_trait;
use yubin_pg::Database;

use crate::backend::LoginTimes;

/// The `pop3_logins` table.
pub struct PgLoginTimes {
    db: Database,
}

impl PgLoginTimes {
    /// Times kept in `db`.
    pub fn new(db: Database) -> PgLoginTimes {
        PgLoginTimes { db }
    }
}

#[async_trait]
impl LoginTimes for PgLoginTimes {
    async fn admit(&self, user: &str, delay: Duration) -> bool {
        let recorded = self
            .db
            .query_opt(
                "INSERT INTO pop3_logins AS l (name_key, last) VALUES ($1, now()) \
                 ON CONFLICT (name_key) DO UPDATE SET last = now() \
                 WHERE l.last <= now() - make_interval(secs => $2) RETURNING 1",
                &[&user.to_ascii_lowercase(), &delay.as_secs_f64()],
            )
            .await;
        match recorded {
            Ok(row) => row.is_some(),
            // The maildrop was opened from this database a moment ago; a
            // failure now lets the login in rather than refuse it for a
            // reason that is not the user's.
            Err(error) => {
                tracing::warn!(%error, "cannot check the login delay; letting the login in");
                true
            }
        }
    }
}
