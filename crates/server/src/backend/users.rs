//! Users and their credentials. The drivers read them from a
//! [`Snapshot`] in memory, so a login, a RCPT or a SASL step never waits
//! on storage; the directory replaces the snapshot when its source
//! changes.

use std::sync::Arc;

use crate::userstore::{Snapshot, UserStore};

/// Where users come from.
pub trait UserDirectory: Send + Sync {
    /// The users as they are now (cheap: a shared snapshot).
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Loads a new snapshot if the source changed. Called every few
    /// seconds on tokio's blocking pool, so it may block.
    fn refresh(&self);
}

impl UserDirectory for UserStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        UserStore::snapshot(self)
    }

    fn refresh(&self) {
        self.reload_if_changed();
    }
}
