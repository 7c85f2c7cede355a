//! One POP3 session per maildrop (RFC 1939 §4: an exclusive-access lock).
//!
//! The lock is flock(2) on `yubin-pop3.lock` in the Maildir: refused at once
//! if held (no waiting), and released by the kernel when its holder closes
//! the file, so a session that dies, or a server killed with -9, never leaves
//! a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

const FILE_NAME: &str = "yubin-pop3.lock";

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct MaildropLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another session holds it.
    #[error("maildrop is locked by another session")]
    InUse,
    /// The lock file could not be opened or locked.
    #[error("cannot lock maildrop: {0}")]
    Io(#[from] io::Error),
}

impl MaildropLock {
    /// Takes the lock of the Maildir at `root`, or fails at once.
    pub fn try_acquire(root: &Path) -> Result<MaildropLock, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join(FILE_NAME))?;
        match file.try_lock() {
            Ok(()) => Ok(MaildropLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse),
            Err(TryLockError::Error(e)) => Err(LockError::Io(e)),
        }
    }
}
