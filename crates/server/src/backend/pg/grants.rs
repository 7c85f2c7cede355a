//! POP-before-SMTP grants in the shared database: a login on one node
//! lets the address relay through any; the expiry is checked at lookup.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use yubin_auth::ClientKey;
use yubin_pg::Database;

use crate::backend::RelayGrantStore;

/// Grants in the `relay_grants` table.
pub struct PgGrants {
    db: Database,
    window: Duration,
    ipv6_prefix: u8,
}

impl PgGrants {
    /// Grants that last `window` (zero: none), IPv6 addresses keyed by
    /// their first `ipv6_prefix` bits.
    pub fn new(db: Database, window: Duration, ipv6_prefix: u8) -> PgGrants {
        PgGrants {
            db,
            window,
            ipv6_prefix,
        }
    }

    fn key(&self, ip: IpAddr) -> String {
        ClientKey::of(ip, self.ipv6_prefix).to_string()
    }
}

#[async_trait]
impl RelayGrantStore for PgGrants {
    fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    async fn grant(&self, ip: IpAddr, user: &str) {
        if !self.enabled() {
            return;
        }
        let seconds = self.window.as_secs_f64();
        // Expired grants are swept by each node now and then
        // (`Shared::keep`), not on the login's way.
        let result = self
            .db
            .execute(
                "INSERT INTO relay_grants (client, username, expires) \
                 VALUES ($1, $2, now() + make_interval(secs => $3)) \
                 ON CONFLICT (client) DO UPDATE SET username = EXCLUDED.username, expires = EXCLUDED.expires",
                &[&self.key(ip), &user, &seconds],
            )
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "pop-before-smtp grant not recorded");
        }
    }

    async fn lookup(&self, ip: IpAddr) -> Option<String> {
        let result = async {
            let row = self
                .db
                .query_opt(
                    "SELECT username FROM relay_grants WHERE client = $1 AND expires > now()",
                    &[&self.key(ip)],
                )
                .await?;
            Ok::<_, yubin_pg::DbError>(row.map(|r| r.get::<_, String>(0)))
        };
        match result.await {
            Ok(found) => found,
            Err(error) => {
                // No database, no grant: relaying fails closed.
                tracing::warn!(%error, "pop-before-smtp grants cannot be read");
                None
            }
        }
    }
}
