//! Maildrops on disk: Maildir reading, sizes, locking, delivery and UPDATE.
//!
//! Blocking I/O: the server calls into this crate off its async threads.
//! Maildirs written here are readable and writable by Dovecot, Postfix,
//! Courier and mutt: messages are stored with LF line ends, delivered
//! through `tmp/` with fsync before they appear in `new/`, and named with
//! Dovecot's `,S=` and `,W=` size fields.
//!
//! - [`name`]: file-name anatomy, unique-ids.
//! - [`maildir`]: scanning, opening, delivery, UPDATE.
//! - [`listing`]: a scan's result, compact, and its on-disk cache.
//! - `derived`: sizes derived from message content by a caller's rule, cached.
//! - [`lock`]: one POP3 session per maildrop.
//! - [`location`]: `mail_location` templates.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod derived;
pub mod listing;
pub mod location;
pub mod lock;
pub mod maildir;
pub mod name;

use std::sync::atomic::{AtomicU64, Ordering};

pub use listing::Listing;
pub use lock::{LockError, MaildropLock};
pub use maildir::{CommitReport, Maildir, OpenError, Staged, StoreError};

static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Deliveries made by this process so far (the `Q` part of unique names).
fn next_delivery() -> u64 {
    DELIVERIES.fetch_add(1, Ordering::Relaxed)
}

/// `n` random octets in hex.
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // Uniqueness does not depend on this part alone (time, pid and counter
    // come first), so a failing RNG only makes names less unguessable.
    let _ = getrandom::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A suffix for temporary file names.
fn unique_suffix() -> String {
    format!(
        "{}.{}.{}",
        std::process::id(),
        next_delivery(),
        random_hex(4)
    )
}
