//! Failed logins in the shared database: one address guessing on every
//! node is paced as on one. The rules are yubin_auth's (an hour forgets,
//! the same attempt again does not climb, the penalty doubles up to its
//! cap); the clock is the database's.
//!
//! A failure is written through at once and answers with the count over
//! every node. The wait before a check reads this node's copy of the
//! table, which [`PgPenalties::refresh`] reads again every second: a login
//! costs no round trip for it, and a failure on another node is seen here
//! within a second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yubin_auth::ClientKey;
use yubin_auth::penalty::{FORGET_AFTER, IPV6_PREFIX, penalty};
use yubin_pg::Database;

use crate::backend::PenaltyStore;

/// How many addresses this node's copy holds at most (the most recent
/// failures; under a spread-out attack the oldest are paced by the
/// database's count at their next failure).
const MOST_KNOWN: i64 = 100_000;

/// Failures in the `login_penalties` table.
pub struct PgPenalties {
    db: Database,
    /// This node's copy: failures and when the last one was, per client.
    known: Mutex<HashMap<String, (u32, Instant)>>,
}

impl PgPenalties {
    /// Failures kept in `db`.
    pub fn new(db: Database) -> PgPenalties {
        PgPenalties {
            db,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the table again into this node's copy (every second).
    pub async fn refresh(&self) {
        let asked = Instant::now();
        let rows = self
            .db
            .query(
                "SELECT client, failures, extract(epoch FROM now() - last_failure)::float8 \
                 FROM login_penalties WHERE last_failure > now() - make_interval(secs => $1) \
                 ORDER BY last_failure DESC LIMIT $2",
                &[&FORGET_AFTER.as_secs_f64(), &MOST_KNOWN],
            )
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "login penalties cannot be read; keeping the ones known");
                return;
            }
        };
        let now = Instant::now();
        let mut known: HashMap<String, (u32, Instant)> = rows
            .iter()
            .map(|row| {
                let failures = u32::try_from(row.get::<_, i32>(1)).unwrap_or(0);
                let since = Duration::from_secs_f64(row.get::<_, f64>(2).max(0.0));
                (
                    row.get(0),
                    (failures, now.checked_sub(since).unwrap_or(now)),
                )
            })
            .collect();
        let mut current = crate::lock(&self.known);
        // A failure recorded here while the table was being read is newer
        // than what the read saw.
        for (client, (failures, last)) in current.drain() {
            if last >= asked {
                known.insert(client, (failures, last));
            }
        }
        *current = known;
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
        let failures = match result.await {
            Ok(failures) => u32::try_from(failures).unwrap_or(u32::MAX),
            Err(error) => {
                tracing::warn!(%error, "login failure not recorded");
                // Counted as a first failure, or one more than known here:
                // the answer still waits its delay.
                crate::lock(&self.known)
                    .get(&key(ip))
                    .map_or(1, |(known, _)| known.saturating_add(1))
            }
        };
        crate::lock(&self.known).insert(key(ip), (failures, Instant::now()));
        failures
    }

    async fn wait(&self, ip: IpAddr, base: Duration, cap: Duration) -> Duration {
        let Some((failures, last)) = crate::lock(&self.known).get(&key(ip)).copied() else {
            return Duration::ZERO;
        };
        let since = last.elapsed();
        if failures == 0 || since >= FORGET_AFTER {
            return Duration::ZERO;
        }
        penalty(base, cap, failures).saturating_sub(since)
    }
}
