//! The single-node mail store: one Maildir per user, where
//! [`crate::mailbox::maildir_for`] puts it, locked with a lock file beside
//! it (as Dovecot's POP3 does).

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use yubin_auth::User;
use yubin_pop3_proto::MessageList;
use yubin_store::{CommitReport, Listing, Maildir, MaildropLock, OpenError, Staged};

use super::mail::{Delivered, Delivery, MailError, MailStore, Maildrop, SizeRule};
use crate::config::Config;

/// Files in a Maildir's `tmp/` older than this are interrupted deliveries
/// (the Maildir convention: 36 hours).
const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

/// Maildirs on this machine's file system.
#[derive(Debug)]
pub struct MaildirStore {
    config: Arc<Config>,
}

impl MaildirStore {
    /// Maildirs where `config` puts them (`mail_location`, `userdb_mail`,
    /// or the default layout under the data directory).
    pub fn new(config: Arc<Config>) -> MaildirStore {
        MaildirStore { config }
    }
}

impl MailStore for MaildirStore {
    fn open(&self, user: &User) -> Result<Arc<dyn Maildrop>, MailError> {
        let maildir = crate::mailbox::maildir_for(&self.config, user)?;
        maildir.create()?;
        let lock = MaildropLock::try_acquire(maildir.root())?;
        let reaped = maildir.clean_tmp(TMP_MAX_AGE);
        if reaped > 0 {
            tracing::info!(maildir = %maildir.root().display(), reaped, "removed interrupted deliveries from tmp/");
        }
        let listing = maildir.scan()?;
        Ok(Arc::new(LockedMaildir {
            maildir,
            listing,
            _lock: lock,
        }))
    }

    fn stage(
        &self,
        user: &User,
        folder: Option<&str>,
        size: u64,
        wire: u64,
        write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Box<dyn Delivery>, MailError> {
        let mut maildir = crate::mailbox::maildir_for(&self.config, user)?;
        if let Some(folder) = folder {
            maildir = maildir.folder(folder);
            maildir.create_folder()?;
        }
        let staged = maildir.stage(size, wire, &self.config.hostname, |file| write(file))?;
        Ok(Box::new(StagedCopy {
            staged,
            new_dir: maildir.root().join("new"),
        }))
    }
}

/// A Maildir, listed and locked for one session.
struct LockedMaildir {
    maildir: Maildir,
    listing: Listing,
    _lock: MaildropLock,
}

impl Maildrop for LockedMaildir {
    fn len(&self) -> usize {
        self.listing.len()
    }

    fn size(&self, i: usize) -> u64 {
        self.listing.size(i)
    }

    fn uid(&self, i: usize) -> Cow<'_, str> {
        self.listing.uid(i)
    }

    fn message_list(&self, sizes: &[Option<u64>]) -> MessageList {
        let listing = &self.listing;
        let mut list = MessageList::with_capacity(listing.len(), listing.len() * 40);
        for i in 0..listing.len() {
            let size = sizes.get(i).copied().flatten();
            list.push(size.unwrap_or(listing.size(i)), &listing.uid(i));
        }
        list
    }

    fn open(&self, i: usize) -> Result<Box<dyn Read + Send>, OpenError> {
        Ok(Box::new(self.maildir.open(&self.listing, i)?))
    }

    fn commit(&self, delete: &[usize], retrieved: &[usize]) -> CommitReport {
        self.maildir.commit(&self.listing, delete, retrieved)
    }

    fn derived_sizes(&self, rule_name: &str, rule: &SizeRule<'_>) -> Vec<Option<u64>> {
        self.maildir
            .derived_sizes(&self.listing, rule_name, |file, listed| rule(file, listed))
    }
}

/// One copy in a Maildir's `tmp/`.
struct StagedCopy {
    staged: Staged,
    new_dir: PathBuf,
}

impl Delivery for StagedCopy {
    fn commit(self: Box<Self>) -> Result<Box<dyn Delivered>, MailError> {
        let name = self.staged.commit()?;
        Ok(Box::new(CommittedCopy {
            path: self.new_dir.join(&name),
            name,
        }))
    }
}

/// One copy in a Maildir's `new/`.
struct CommittedCopy {
    path: PathBuf,
    name: OsString,
}

impl Delivered for CommittedCopy {
    fn undo(self: Box<Self>) {
        let _ = std::fs::remove_file(&self.path);
    }

    fn name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }
}
