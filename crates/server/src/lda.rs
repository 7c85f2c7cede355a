//! `yubin deliver`: one message from another MTA (Postfix's
//! `mailbox_command` or a `pipe` transport) into a user's Maildir, with the
//! same durability as the SMTP path: written, fsynced and linked into
//! `new/` before the command exits 0. With `storage.backend = "postgres"`
//! the message goes into the user's maildrop in the database, committed
//! before the command exits 0.
//!
//! The input is normalised to the Maildir convention of LF line ends; a
//! leading mbox `From ` separator line (some MTAs add one) is dropped, as
//! dovecot-lda does.

use std::io::{self, Read};

use yubin_auth::User;
use yubin_store::Maildir;

use crate::backend::{MailStore, MaildirStore};
use crate::config::Config;
use crate::spool::Spool;
use crate::userstore::UserStore;

/// Why a delivery did not happen. Each maps to a sysexits code the MTA
/// understands: the MTA bounces on [`DeliverError::UnknownUser`] and keeps
/// the message queued on [`DeliverError::Temporary`].
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// No such user (EX_NOUSER, 67).
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// Anything else: disk, configuration, input (EX_TEMPFAIL, 75).
    #[error("{0}")]
    Temporary(String),
}

/// Reads a message from `input` and delivers it to `user`. `sender` is the
/// envelope sender; it becomes `Return-Path:` unless the message already
/// starts with one. Returns the file name in `new/`.
pub fn deliver(
    config: &Config,
    user: &str,
    sender: Option<&str>,
    input: &mut impl Read,
) -> Result<String, DeliverError> {
    match config.storage.backend {
        crate::config::Backend::Maildir => {
            let entry = user_entry(config, user)?;
            let store = MaildirStore::new(std::sync::Arc::new(config.clone()));
            deliver_to(config, &store, &entry, sender, input)
        }
        crate::config::Backend::Postgres => {
            let temporary = |e: &dyn std::fmt::Display| DeliverError::Temporary(e.to_string());
            // The store waits for the database on this thread, so the
            // runtime that talks to it runs on a thread of its own.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| temporary(&e))?;
            let _inside = runtime.enter();
            let url = config.postgres.url.as_deref().unwrap_or_default();
            let db = yubin_pg::Database::connect(url, 2).map_err(|e| temporary(&e))?;
            runtime
                .block_on(db.check_schema())
                .map_err(|e| temporary(&e))?;
            let entry = runtime
                .block_on(db.user_entry(user))
                .map_err(|e| temporary(&e))?
                .ok_or_else(|| DeliverError::UnknownUser(user.to_owned()))?;
            let (users, _) =
                yubin_auth::Users::from_file(&yubin_auth::PasswdFile::from_entries(vec![entry]));
            let entry = users
                .get(user)
                .cloned()
                .ok_or_else(|| DeliverError::UnknownUser(user.to_owned()))?;
            let store = crate::backend::pg::PgMailStore::new(db, config.node_name());
            deliver_to(config, &store, &entry, sender, input)
        }
    }
}

/// Spools the message from `input` and delivers it into `store`.
fn deliver_to(
    config: &Config,
    store: &dyn MailStore,
    entry: &User,
    sender: Option<&str>,
    input: &mut impl Read,
) -> Result<String, DeliverError> {
    let mut spool = Spool::new(&config.data_dir.join("spool"));
    read_message(input, sender, &mut spool)
        .map_err(|e| DeliverError::Temporary(format!("reading the message: {e}")))?;
    if let Some(error) = spool.failure() {
        return Err(DeliverError::Temporary(format!(
            "spooling the message: {error}"
        )));
    }
    let staged = store
        .stage(entry, None, spool.size(), spool.wire_size(), &mut |out| {
            spool.copy_to(out)
        })
        .map_err(|e| DeliverError::Temporary(e.to_string()))?;
    let delivered = staged
        .commit()
        .map_err(|e| DeliverError::Temporary(e.to_string()))?;
    Ok(delivered.name())
}

/// The Maildir of `user` (named as in the passwd-file), where the POP3
/// server will find its mail.
pub fn user_maildir(config: &Config, user: &str) -> Result<Maildir, DeliverError> {
    let entry = user_entry(config, user)?;
    crate::mailbox::maildir_for(config, &entry).map_err(|e| DeliverError::Temporary(e.to_string()))
}

/// `user`'s passwd-file entry.
fn user_entry(config: &Config, user: &str) -> Result<User, DeliverError> {
    let passwd = config.passwd_file();
    let users = UserStore::open_for(&passwd, None, Some(std::sync::Arc::new(config.clone())))
        .map_err(|e| {
            DeliverError::Temporary(format!("cannot read users from {}: {e}", passwd.display()))
        })?;
    let snapshot = users.snapshot();
    snapshot
        .users
        .get(user)
        .cloned()
        .ok_or_else(|| DeliverError::UnknownUser(user.to_owned()))
}

/// Copies the message into the spool: CRLF (and a lone trailing CR of a
/// chunk) become LF, a leading `From ` line is skipped, `Return-Path:` is
/// added in front when needed.
fn read_message(input: &mut impl Read, sender: Option<&str>, spool: &mut Spool) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(buf.len());
    let mut at_start = true;
    let mut head = Vec::new();
    let mut pending_cr = false;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.clear();
        for &b in &buf[..n] {
            if pending_cr {
                pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                pending_cr = true;
            } else {
                out.push(b);
            }
        }
        if at_start {
            // Hold the first line back until it is complete, to see what it is.
            head.extend_from_slice(&out);
            if let Some(end) = head.iter().position(|&b| b == b'\n') {
                at_start = false;
                start(spool, &head, end, sender);
            }
        } else {
            spool.append(&out);
        }
    }
    if pending_cr {
        // A CR at the very end stays: it is content, not a line end.
        if at_start {
            head.push(b'\r');
        } else {
            spool.append(b"\r");
        }
    }
    if at_start {
        let end = head.len();
        start(spool, &head, end, sender);
    }
    Ok(())
}

/// Writes the beginning of the message: `head` holds everything read so
/// far, its first line ending at `end`.
fn start(spool: &mut Spool, head: &[u8], end: usize, sender: Option<&str>) {
    let rest = if head.starts_with(b"From ") {
        head.get(end + 1..).unwrap_or_default()
    } else {
        head
    };
    let has_return_path = rest.len() >= 12 && rest[..12].eq_ignore_ascii_case(b"return-path:");
    if let (Some(sender), false) = (sender, has_return_path) {
        let sender = sender.replace(['\r', '\n'], "");
        let sender = sender.trim_start_matches('<').trim_end_matches('>');
        spool.append(format!("Return-Path: <{sender}>\n").as_bytes());
    }
    spool.append(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(input: &[u8], sender: Option<&str>, chunk: usize) -> Vec<u8> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path());
        read_message(&mut Chunked(input, chunk), sender, &mut spool).unwrap();
        let mut out = Vec::new();
        spool.copy_to(&mut out).unwrap();
        out
    }

    #[test]
    fn line_ends_become_lf_whatever_the_chunking() {
        let input = b"From MAILER-DAEMON Thu Nov 26\r\nSubject: x\r\n\r\nbody\rstays\r\nend\r";
        let expected = b"Return-Path: <a@b.example>\nSubject: x\n\nbody\rstays\nend\r";
        for chunk in 1..input.len() + 1 {
            assert_eq!(
                convert(input, Some("a@b.example"), chunk),
                expected.to_vec(),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn an_existing_return_path_is_kept_and_none_is_added_without_a_sender() {
        let input = b"Return-Path: <x@y.example>\nSubject: x\n\nbody\n";
        assert_eq!(convert(input, Some("a@b.example"), 7), input.to_vec());
        let input = b"Subject: x\n\nbody\n";
        assert_eq!(convert(input, None, 3), input.to_vec());
        assert_eq!(convert(b"", None, 3), b"".to_vec());
        assert_eq!(convert(b"", Some("<>"), 3), b"Return-Path: <>\n".to_vec());
    }
}
