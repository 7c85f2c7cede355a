//! Where fetched mail goes: a Maildir (the default), an mbox file, or a
//! command (an MDA such as procmail or Dovecot's `dovecot-lda`). Other
//! programs can bring their own destination by implementing [`Deliver`]
//! (the `yubin` binary does, for its own users' mailboxes).
//!
//! Every destination receives the message with LF line ends, the form
//! Maildir, mbox and MDAs use, and must not return `Ok` before the
//! message is durable: the ledger record and the DELE come after it.

mod maildir;
mod mbox;
mod mda;

pub use maildir::MaildirDestination;
pub use mbox::MboxDestination;
pub use mda::MdaDestination;

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DeliverError {
    /// Worth retrying later (a full disk, a busy lock, an MDA's exit 75).
    pub temporary: bool,
    /// What went wrong, for the user.
    pub reason: String,
}

impl DeliverError {
    /// A failure that may pass.
    pub fn temporary(reason: impl Into<String>) -> Self {
        DeliverError {
            temporary: true,
            reason: reason.into(),
        }
    }

    /// A failure that will not pass by itself.
    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliverError {
            temporary: false,
            reason: reason.into(),
        }
    }
}

/// A place messages can be delivered to. Blocking.
pub trait Deliver: Send + Sync {
    /// Delivers one message (LF line ends). `Ok` only once it is durable.
    fn deliver(&self, message: &[u8]) -> Result<(), DeliverError>;

    /// A short description for logs and summaries (`maildir:/home/a/Maildir`).
    fn describe(&self) -> String;
}

/// A message as the server sent it (CRLF) in the stored form (LF). Bare CR
/// and LF inside lines are left as they are.
pub fn to_lf(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut start = 0;
    for crlf in memchr::memmem::find_iter(wire, b"\r\n") {
        out.extend_from_slice(&wire[start..crlf]);
        out.push(b'\n');
        start = crlf + 2;
    }
    out.extend_from_slice(&wire[start..]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn crlf_becomes_lf_and_nothing_else_changes() {
        assert_eq!(super::to_lf(b"a\r\nb\rc\nd\r\n\r\n"), b"a\nb\rc\nd\n\n");
        assert_eq!(super::to_lf(b"no end"), b"no end");
    }
}
