//! POP-before-SMTP grants in the shared database: a login on one node
//! lets the address relay through any; the expiry is checked at lookup.
//! A POP3 login's grant goes with its maildrop's lock and listing
//! ([`RelayGrantStore::with_lock`]); other grants made at the same moment
//! are written in one statement. A login still waits until its grant is
//! written, so the client may relay at once.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use yubin_auth::ClientKey;
use yubin_pg::Database;

use super::batch::Batcher;
use crate::backend::{GrantWithLock, RelayGrantStore};

/// Grants in the `relay_grants` table.
pub struct PgGrants {
    db: Database,
    window: Duration,
    ipv6_prefix: u8,
    /// `(client, user)` grants on their way to the table.
    writer: Batcher<(String, String)>,
}

impl PgGrants {
    /// Grants that last `window` (zero: none), IPv6 addresses keyed by
    /// their first `ipv6_prefix` bits.
    pub fn new(db: Database, window: Duration, ipv6_prefix: u8) -> PgGrants {
        let granting = db.clone();
        let seconds = window.as_secs_f64();
        let writer = Batcher::start("pop-before-smtp grant", 1000, move |grants| {
            let db = granting.clone();
            async move {
                let (clients, users): (Vec<String>, Vec<String>) = grants.into_iter().unzip();
                db.write_grants(&clients, &users, seconds).await
            }
        });
        PgGrants {
            db,
            window,
            ipv6_prefix,
            writer,
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
        if !self.writer.write((self.key(ip), user.to_owned())).await {
            tracing::warn!("pop-before-smtp grant not recorded");
        }
    }

    /// In the same database as the maildrops: the login's listing
    /// statement writes the grant, which then costs no statement.
    fn with_lock(&self, ip: IpAddr) -> Option<GrantWithLock> {
        self.enabled().then(|| GrantWithLock {
            client: self.key(ip),
            seconds: self.window.as_secs_f64(),
        })
    }

    async fn lookup(&self, ip: IpAddr) -> Option<String> {
        match self.db.relay_grant(&self.key(ip)).await {
            Ok(found) => found,
            Err(error) => {
                // No database, no grant: relaying fails closed.
                tracing::warn!(%error, "pop-before-smtp grants cannot be read");
                None
            }
        }
    }
}
