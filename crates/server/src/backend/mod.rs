//! The seams for a second storage backend. Everything yubin keeps that
//! several nodes would have to share goes through one of these traits; the
//! drivers hold them as `Arc<dyn …>` and never name an implementation.
//! The single-node implementations live beside them; the PostgreSQL
//! backend is a module per trait ([`pg`]), chosen where the server
//! starts, not an edit in every driver.
//!
//! | Trait | What it keeps | Today |
//! |---|---|---|
//! | [`UserDirectory`] | users and their credentials | the passwd-file ([`crate::userstore::UserStore`]) |
//! | [`MailStore`] | maildrops: list, read, deliver, update, lock | Maildir ([`MaildirStore`]) |
//! | [`RelayGrantStore`] | POP-before-SMTP grants | memory ([`MemoryGrants`]) |
//! | [`PenaltyStore`] | failed logins per client address | memory ([`MemoryPenalties`]) |
//! | [`GreylistStore`] | greylisting's triplets | memory ([`MemoryGreylist`]) |
//! | [`yubin_queue::QueueStore`] | the outbound queue | the queue directory ([`yubin_queue::Queue`]) |
//!
//! Over PostgreSQL ([`pg`], `storage.backend = "postgres"`): all of them.
//!
//! The queue's seam lives in yubin-queue, beside its delivery engine,
//! which uses nothing else.
//!
//! Grants, penalties and greylisting are consulted on the async threads, so their
//! methods are async. Users are read from a snapshot in memory, and the
//! mail store is called on tokio's blocking pool (as Maildir I/O always
//! was): a backend that talks to a database blocks there, never on the
//! async threads.

mod grants;
pub(crate) mod greylist;
mod login_times;
mod mail;
mod maildir;
mod penalties;
pub mod pg;
mod users;

use std::sync::Arc;

pub use grants::{MemoryGrants, RelayGrantStore};
pub use greylist::{GreylistStore, GreylistTimes, Greylisted, MemoryGreylist, Triplet};
pub use login_times::{LoginTimes, MemoryLoginTimes};
pub use mail::{
    BodyStream, Delivered, Delivery, GrantWithLock, MailError, MailStore, Maildrop, Opened, Piece,
    SizeRule,
};
pub use maildir::MaildirStore;
pub use penalties::{MemoryPenalties, PenaltyStore};
pub use users::UserDirectory;

/// One implementation of each seam, as the server uses them.
#[derive(Clone)]
pub struct Backend {
    /// Users and credentials.
    pub users: Arc<dyn UserDirectory>,
    /// Maildrops.
    pub mail: Arc<dyn MailStore>,
    /// POP-before-SMTP grants.
    pub grants: Arc<dyn RelayGrantStore>,
    /// Failed logins per address.
    pub penalties: Arc<dyn PenaltyStore>,
    /// Each user's last POP3 login (LOGIN-DELAY).
    pub login_times: Arc<dyn LoginTimes>,
    /// Greylisting's triplets.
    pub greylist: Arc<dyn GreylistStore>,
    /// The outbound queue.
    pub queue: Arc<dyn yubin_queue::QueueStore>,
}

#[cfg(test)]
mod tests;
