//! Failed logins in the shared database: one address guessing on every
//! node is paced as on one. The rules are yubin_auth's (an hour forgets,
//! the same attempt again does not climb, the penalty doubles up to its
//! cap); the clock is the database's.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use yubin_auth::ClientKey;
use yubin_auth::penalty::{FORGET_AFTER, IPV6_PREFIX, penalty};
use yubin_pg::Database;

use crate::backend::PenaltyStore;

/// Failures in the `login_penalties` table.
pub struct PgPenalties {
    db: Database,
}

impl PgPenalties {
    /// Failures kept in `db`.
    pub fn new(db: Database) -> PgPenalties {
        PgPenalties { db }
    }
}

fn key(ip: IpAddr) -> String {
    ClientKey::of(ip, IPV6_PREFIX).to_string()
}

#[async_trait]
impl PenaltyStore for PgPenalties {
    async fn failure(&self, ip: IpAddr, attempt: u64) -> u32 {
        // The digest's bits, as PostgreSQL's bigint.
        let attempt = i64::from_ne_bytes(attempt.to_ne_bytes());
        let forget = FORGET_AFTER.as_secs_f64();
        let result = async {
            let row = self.db
                .query_one(
                    "INSERT INTO login_penalties AS p (client, failures, last_failure, last_attempt) \
                     VALUES ($1, 1, now(), $2) \
                     ON CONFLICT (client) DO UPDATE SET \
                       failures = CASE \
                         WHEN p.last_failure < now() - make_interval(secs => $3) THEN 1 \
                         WHEN p.last_attempt = EXCLUDED.last_attempt AND p.failures > 0 THEN p.failures \
                         ELSE p.failures + 1 END, \
                       last_failure = now(), last_attempt = EXCLUDED.last_attempt \
                     RETURNING failures",
                    &[&key(ip), &attempt, &forget],
                )
                .await?;
            Ok::<_, yubin_pg::DbError>(row.get::<_, i32>(0))
        };
        match result.await {
            Ok(failures) => u32::try_from(failures).unwrap_or(u32::MAX),
            Err(error) => {
                tracing::warn!(%error, "login failure not recorded");
                // Counted as a first failure: the answer still waits its
                // base delay.
                1
            }
        }
    }

    async fn wait(&self, ip: IpAddr, base: Duration, cap: Duration) -> Duration {
        let result = async {
            let row = self
                .db
                .query_opt(
                    "SELECT failures, extract(epoch FROM now() - last_failure)::float8 \
                     FROM login_penalties WHERE client = $1",
                    &[&key(ip)],
                )
                .await?;
            Ok::<_, yubin_pg::DbError>(row.map(|r| (r.get::<_, i32>(0), r.get::<_, f64>(1))))
        };
        match result.await {
            Ok(Some((failures, since))) => {
                let since = Duration::from_secs_f64(since.max(0.0));
                if failures <= 0 || since >= FORGET_AFTER {
                    return Duration::ZERO;
                }
                penalty(base, cap, u32::try_from(failures).unwrap_or(u32::MAX))
                    .saturating_sub(since)
            }
            Ok(None) => Duration::ZERO,
            Err(error) => {
                tracing::warn!(%error, "login penalties cannot be read");
                Duration::ZERO
            }
        }
    }
}
