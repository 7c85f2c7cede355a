//! The seams over PostgreSQL (issue 16), for several nodes sharing one
//! database: what one node keeps in memory, kept in tables every node
//! reads. Times are the database's (`now()`), so that nodes whose clocks
//! differ agree. A database that cannot be asked fails safe: no grant, no
//! penalty change, no greylisting verdict against the sender.

mod batch;
mod body;
mod grants;
mod greylist;
mod listings;
mod login_times;
mod mail;
mod penalties;
mod queue;
mod small_bodies;
mod users;

pub use grants::PgGrants;
pub use greylist::PgGreylist;
pub use login_times::PgLoginTimes;
pub use mail::{LOCK_LEASE, LOCK_RENEWAL, PgMailStore};
pub use penalties::PgPenalties;
pub use queue::{CLAIM_LEASE, CLAIM_RENEWAL, PgQueue};
pub use users::PgUsers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use yubin_pg::{Database, DbError};

use crate::backend::{Backend, GreylistTimes};
use crate::config::Config;

/// A body written and never committed (its node died between the two)
/// is removed after this long.
const ORPHAN_AGE: Duration = Duration::from_secs(24 * 3600);

/// How often a node reads the login penalties other nodes recorded.
const PENALTIES_READ: Duration = Duration::from_secs(1);

/// How often the node looks for such bodies.
const ORPHAN_SWEEP: Duration = Duration::from_secs(3600);

/// Every seam over the database `[postgres]` names, for this node.
pub struct Shared {
    /// The seams, as the drivers hold them.
    pub backend: Backend,
    mail: Arc<PgMailStore>,
    queue: Arc<PgQueue>,
    penalties: Arc<PgPenalties>,
    db: Database,
    /// How long a greylisting triplet is kept unseen.
    triplets_kept: Duration,
}

impl Shared {
    /// Connects and reads the users; `secret` is what SCRAM salts that
    /// are not stored derive from. Locks an earlier run of this node left
    /// lapse with their leases: nodes may share a name by mistake (the
    /// host name is the default), and a node must never let go of
    /// another's locks.
    pub async fn open(
        config: &Config,
        secret: Vec<u8>,
        greylist: GreylistTimes,
    ) -> Result<Shared, DbError> {
        let url = config.postgres.url.as_deref().unwrap_or_default();
        let node = config.node_name();
        // An administrator sees which node each connection is.
        let db = Database::connect_as(url, config.postgres.pool_size, &format!("yubin {node}"))?;
        // Bodies stay in the database (`body_chunks`). A store beside it
        // (S3) would be chosen here and given to both with `with_bodies`;
        // nothing else would change.
        let mail = Arc::new(PgMailStore::new(db.clone(), node));
        let queue = Arc::new(PgQueue::new(db.clone(), node));
        queue.watch_flushes().await;
        let started = std::time::Instant::now();
        let users = PgUsers::load(db.clone(), Some(secret)).await?;
        tracing::info!(
            node,
            users = users.snapshot_len(),
            ms = started.elapsed().as_millis(),
            "users read from the database"
        );
        let connections = db.warm_up().await;
        tracing::debug!(node, connections, "database connections opened");
        let pbs = &config.pop_before_smtp;
        let penalties = Arc::new(PgPenalties::new(db.clone()));
        penalties.refresh().await;
        let backend = Backend {
            users: Arc::new(users),
            mail: mail.clone(),
            grants: Arc::new(PgGrants::new(db.clone(), pbs.window.0, pbs.ipv6_prefix)),
            penalties: penalties.clone(),
            login_times: Arc::new(PgLoginTimes::new(db.clone())),
            greylist: Arc::new(PgGreylist::new(db.clone(), greylist)),
            queue: queue.clone(),
        };
        Ok(Shared {
            backend,
            mail,
            queue,
            penalties,
            db,
            triplets_kept: greylist.keep,
        })
    }

    /// Renews this node's maildrop leases and queue claims, reads the
    /// login penalties and looks for queue flush requests every second,
    /// and now and then removes bodies no delivery finished and expired
    /// grants, penalties, triplets and claims, until `shutdown`.
    pub async fn keep(self, shutdown: watch::Receiver<bool>) {
        // Each on its own clock: a slow sweep of a large database must
        // never hold up the leases, or this node's locks would lapse
        // under live sessions.
        let leases = async {
            let mut renew = tokio::time::interval(LOCK_RENEWAL);
            loop {
                renew.tick().await;
                self.mail.renew_leases().await;
            }
        };
        let claims = async {
            let mut renew = tokio::time::interval(CLAIM_RENEWAL);
            loop {
                renew.tick().await;
                self.queue.renew_claims().await;
            }
        };
        let penalties = async {
            let mut read = tokio::time::interval(PENALTIES_READ);
            loop {
                read.tick().await;
                tokio::join!(self.penalties.refresh(), self.queue.watch_flushes());
            }
        };
        let sweeps = async {
            let mut sweep = tokio::time::interval(ORPHAN_SWEEP);
            // Not at once: a node that starts has better things to do.
            sweep.tick().await;
            loop {
                sweep.tick().await;
                self.sweep().await;
            }
        };
        let mut stop = shutdown;
        tokio::select! {
            () = leases => {}
            () = claims => {}
            () = penalties => {}
            () = sweeps => {}
            _ = stop.changed() => {}
        }
    }

    async fn sweep(&self) {
        match self.db.remove_orphan_bodies(ORPHAN_AGE).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "bodies of unfinished deliveries removed"),
            Err(error) => tracing::warn!(%error, "bodies of unfinished deliveries not swept"),
        }
        let forget = yubin_auth::penalty::FORGET_AFTER;
        if let Err(error) = self.db.remove_expired(forget, self.triplets_kept).await {
            tracing::warn!(%error, "expired grants, penalties and triplets not swept");
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod body_store_tests;

#[cfg(test)]
mod mail_tests;

#[cfg(test)]
mod queue_tests;
