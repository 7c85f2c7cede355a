//! Where fetched mail goes: a Maildir (the default), an mbox file, a
//! command (an MDA such as procmail or Dovecot's `dovecot-lda`), or an
//! SMTP or LMTP server (the local MTA, Dovecot's LMTP). Other
//! programs can bring their own destination by implementing [`Deliver`]
//! (the `yubin` binary does, for its own users' mailboxes).
//!
//! Every destination receives the message with LF line ends, the form
//! Maildir, mbox and MDAs use, and must not return `Ok` before the
//! message is durable: the ledger record and the DELE come after it.

mod maildir;
mod mbox;
mod mda;
mod smtp;

pub use maildir::MaildirDestination;
pub use mbox::MboxDestination;
pub use mda::MdaDestination;
pub use smtp::{Endpoint, SmtpDestination};

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
/// and LF inside lines are left as they are. So is the CRLF of a line whose
/// text ends in CR (Dovecot sends a stored lone CR that way, as `CR CRLF`):
/// written as `CR LF`, it would read back as a CRLF line end and the CR
/// would be lost, so the only faithful stored form is the one received.
pub fn to_lf(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut start = 0;
    for crlf in memchr::memmem::find_iter(wire, b"\r\n") {
        if crlf > start && wire[crlf - 1] == b'\r' {
            continue;
        }
        out.extend_from_slice(&wire[start..crlf]);
        out.push(b'\n');
        start = crlf + 2;
    }
    out.extend_from_slice(&wire[start..]);
    out
}

/// The address in the first Return-Path header, if it is one plain word
/// (the envelope sender for mbox separators and SMTP's MAIL FROM).
pub(crate) fn return_path(message: &[u8]) -> Option<String> {
    for line in message.split(|&b| b == b'\n') {
        if line.is_empty() {
            break;
        }
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let value = String::from_utf8_lossy(&line[12..]);
            let address = value.trim().trim_start_matches('<').trim_end_matches('>');
            let plain = !address.is_empty()
                && address.len() <= 256
                && address
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
            return plain.then(|| address.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn crlf_becomes_lf_and_nothing_else_changes() {
        assert_eq!(super::to_lf(b"a\r\nb\rc\nd\r\n\r\n"), b"a\nb\rc\nd\n\n");
        assert_eq!(super::to_lf(b"no end"), b"no end");
    }

    /// Issue 11: a line whose text ends in CR keeps its CRLF, so the CR
    /// is still there when the stored message is read back.
    #[test]
    fn a_line_ending_in_cr_keeps_its_crlf() {
        assert_eq!(super::to_lf(b"a\r\r\n"), b"a\r\r\n");
        assert_eq!(super::to_lf(b"a\n\r\r\nb\r\n"), b"a\n\r\r\nb\n");
        assert_eq!(super::to_lf(b"\r\r\n\r\n"), b"\r\r\n\n");
    }
}
