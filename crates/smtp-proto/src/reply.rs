//! SMTP replies with enhanced status codes (RFC 5321 §4.2, RFC 3463, RFC 2034).

use std::borrow::Cow;
use std::fmt;

/// One reply: a code, an enhanced status code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code (`2.1.5`), or `""` where none is sent (the
    /// greeting and the EHLO answer, RFC 2034 §3).
    pub status: &'static str,
    /// Human-readable text.
    pub text: Cow<'static, str>,
}

impl Reply {
    /// A reply with static text.
    pub const fn new(code: u16, status: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Borrowed(text),
        }
    }

    /// A reply with formatted text.
    pub fn with_text(code: u16, status: &'static str, text: String) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Owned(text),
        }
    }

    /// Whether the code is 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the reply, CRLF-terminated.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status.is_empty() {
            write!(f, "{} {}", self.code, self.text)
        } else {
            write!(f, "{} {} {}", self.code, self.status, self.text)
        }
    }
}

/// Writes a multi-line reply (`250-…`, last `250 …`).
pub(crate) fn multiline(out: &mut Vec<u8>, code: u16, lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
}

/// Replies the session sends; named so the driver's and the tests' agree.
#[allow(missing_docs)] // each name says what it is
pub mod replies {
    use super::Reply;

    pub const OK: Reply = Reply::new(250, "2.0.0", "OK");
    pub const SENDER_OK: Reply = Reply::new(250, "2.1.0", "Sender OK");
    pub const RECIPIENT_OK: Reply = Reply::new(250, "2.1.5", "Recipient OK");
    pub const START_DATA: Reply = Reply::new(354, "", "End data with <CR><LF>.<CR><LF>");
    pub const BYE: Reply = Reply::new(221, "2.0.0", "Bye");
    pub const VRFY: Reply = Reply::new(
        252,
        "2.5.0",
        "Cannot VRFY user, but will accept message and attempt delivery",
    );
    pub const EXPN: Reply = Reply::new(502, "5.5.1", "EXPN is not available");
    pub const HELP: Reply = Reply::new(
        214,
        "2.0.0",
        "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
    );
    pub const TLS_GO: Reply = Reply::new(220, "2.0.0", "Ready to start TLS");
    pub const TLS_ACTIVE: Reply = Reply::new(503, "5.5.1", "TLS already active");
    pub const TLS_UNAVAILABLE: Reply = Reply::new(454, "4.7.0", "TLS not available");
    pub const AUTH_OK: Reply = Reply::new(235, "2.7.0", "Authentication successful");
    pub const AUTH_FAILED: Reply = Reply::new(535, "5.7.8", "Authentication credentials invalid");
    pub const AUTH_CANCELLED: Reply = Reply::new(501, "5.7.0", "Authentication cancelled");
    pub const AUTH_BAD_BASE64: Reply = Reply::new(501, "5.5.2", "Invalid base64 data");
    pub const AUTH_UNSUPPORTED: Reply =
        Reply::new(504, "5.5.4", "Unrecognized authentication type");
    pub const AUTH_ALREADY: Reply = Reply::new(503, "5.5.1", "Already authenticated");
    pub const AUTH_NEEDS_TLS: Reply =
        Reply::new(530, "5.7.0", "Must issue a STARTTLS command first");
    /// RFC 4954 §6: this mechanism needs an encrypted connection.
    pub const AUTH_MECHANISM_NEEDS_TLS: Reply = Reply::new(
        538,
        "5.7.11",
        "Encryption required for requested authentication mechanism",
    );
    /// The mechanism is disabled here whatever the connection (configuration).
    pub const AUTH_MECHANISM_DISABLED: Reply =
        Reply::new(504, "5.5.4", "Authentication mechanism not allowed here");
    /// RFC 4954 §6: the server could not check the credentials just now.
    pub const AUTH_TEMPORARY_FAILURE: Reply =
        Reply::new(454, "4.7.0", "Temporary authentication failure");
    pub const AUTH_NOT_AVAILABLE: Reply = Reply::new(503, "5.5.1", "Authentication not available");
    pub const AUTH_REQUIRED: Reply = Reply::new(530, "5.7.0", "Authentication required");
    pub const AUTH_IN_TRANSACTION: Reply =
        Reply::new(503, "5.5.1", "AUTH not allowed during a mail transaction");
    pub const NEED_EHLO: Reply = Reply::new(503, "5.5.1", "Send EHLO or HELO first");
    pub const NEED_MAIL: Reply = Reply::new(503, "5.5.1", "Send MAIL first");
    pub const NESTED_MAIL: Reply = Reply::new(503, "5.5.1", "Sender already given");
    pub const NEED_RCPT: Reply = Reply::new(503, "5.5.1", "Send RCPT first");
    pub const NO_VALID_RECIPIENTS: Reply = Reply::new(554, "5.5.1", "No valid recipients");
    pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3", "Too many recipients");
    pub const TOO_BIG: Reply = Reply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    );
    pub const BARE_LINE_END: Reply = Reply::new(
        550,
        "5.5.2",
        "Message contains bare CR or LF; lines must end with CRLF",
    );
    pub const NEEDS_SMTPUTF8: Reply =
        Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
    pub const UNKNOWN_COMMAND: Reply = Reply::new(500, "5.5.1", "Command unrecognized");
    pub const INVALID_BYTES: Reply = Reply::new(500, "5.5.2", "Invalid characters in command");
    pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.2", "Line too long");
    pub const BAD_ADDRESS: Reply = Reply::new(501, "5.1.3", "Bad address syntax");
    pub const BAD_SENDER: Reply = Reply::new(501, "5.1.7", "Bad sender address syntax");
    pub const TOO_MANY_ERRORS: Reply =
        Reply::new(421, "4.7.0", "Too many errors; closing connection");
    /// RFC 5321 §3.1: a server that cannot take the connection says so.
    pub const TOO_MANY_CONNECTIONS: Reply =
        Reply::new(421, "4.3.2", "Too many connections; try again later");
    /// Over the per-address connection limit.
    pub const TOO_MANY_FROM_ADDRESS: Reply = Reply::new(
        421,
        "4.7.0",
        "Too many connections from your address; try again later",
    );
    pub const SHUTTING_DOWN: Reply = Reply::new(421, "4.3.2", "Server shutting down");
    pub const TIMEOUT: Reply = Reply::new(421, "4.4.2", "Timeout exceeded; closing connection");
    /// RFC 5321 §4.2.3 452 / RFC 3463 X.3.1: the disk is full for now.
    pub const INSUFFICIENT_STORAGE: Reply = Reply::new(452, "4.3.1", "Insufficient system storage");
    /// Input that ignored a refused DATA (RFC 2920 §3.1).
    pub const SYNC_ERROR: Reply = Reply::new(
        421,
        "4.5.0",
        "Protocol synchronization error; closing connection",
    );
    /// RFC 5321 §6.3 loop detection; RFC 3463 X.4.6 routing loop.
    pub const TOO_MANY_HOPS: Reply =
        Reply::new(554, "5.4.6", "Too many hops; mail forwarding loop detected");
    /// A user's quota is exhausted (RFC 3463 X.2.2), for now.
    pub const MAILBOX_FULL: Reply = Reply::new(452, "4.2.2", "Mailbox full");
    pub const LOCAL_ERROR: Reply =
        Reply::new(451, "4.3.0", "Local error in processing; try again later");
    pub const DATA_AFTER_BDAT: Reply = Reply::new(503, "5.5.1", "DATA not allowed after BDAT");
}
