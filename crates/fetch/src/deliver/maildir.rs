//! Delivery into a Maildir, through `yubin-store`: written to `tmp/`,
//! fsynced, linked into `new/` under a name that never overwrites, and
//! `new/` fsynced, before `Ok`.

use std::path::PathBuf;

use yubin_store::maildir::Maildir;

use super::{Deliver, DeliverError};

/// A Maildir (created if missing).
#[derive(Debug, Clone)]
pub struct MaildirDestination {
    maildir: Maildir,
    hostname: String,
}

impl MaildirDestination {
    /// Delivers into the Maildir at `path`; `hostname` goes into file names.
    pub fn new(path: impl Into<PathBuf>, hostname: impl Into<String>) -> Self {
        MaildirDestination {
            maildir: Maildir::new(path),
            hostname: hostname.into(),
        }
    }
}

impl Deliver for MaildirDestination {
    fn deliver(&self, message: &[u8]) -> Result<(), DeliverError> {
        self.maildir
            .deliver(message, &self.hostname)
            .map(|_| ())
            // Disk full, permissions, a quota: nothing is left half-written,
            // and the message stays on the server for the next run.
            .map_err(|error| DeliverError::temporary(error.to_string()))
    }

    fn describe(&self) -> String {
        format!("maildir:{}", self.maildir.root().display())
    }
}
