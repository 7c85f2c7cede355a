//! Every status line the POP3 server sends, in one table. RFC 1939 leaves
//! the text after `+OK` and `-ERR` free; the response codes in brackets
//! (RFC 2449 §8, RFC 3206, RFC 6856) are what clients act on, and each
//! reply here carries the one its situation calls for. The texts of syntax
//! errors come from the parser ([`ParseError::message`]).

use crate::command::ParseError;
use crate::reply::{self, Code};

/// A status line, with what it says.
#[derive(Clone, Copy, Debug)]
pub(super) enum Reply<'a> {
    // Positive (`+OK`).
    /// The greeting, with the APOP timestamp if APOP is offered.
    Greeting { apop_timestamp: Option<&'a str> },
    /// A bare `+OK` (USER, NOOP, a bare AUTH listing).
    Ok,
    /// UTF8 (RFC 6856).
    Utf8Enabled,
    /// QUIT outside TRANSACTION, or an UPDATE that removed everything.
    LoggingOut,
    /// The login succeeded and the maildrop is open.
    LoggedIn { count: u32, size: u64 },
    /// STLS accepted: the handshake comes next.
    BeginTls,
    /// CAPA.
    CapabilityList,
    /// STAT.
    Stat { count: u32, size: u64 },
    /// LIST without an argument: the listing follows.
    ListFollows { count: u32, size: u64 },
    /// UIDL without an argument: the listing follows.
    UidlFollows,
    /// LIST n.
    ListOne { n: usize, size: u64 },
    /// UIDL n.
    UidlOne { n: usize, uid: &'a str },
    /// DELE n.
    MarkedDeleted { n: usize },
    /// RSET.
    Reset { count: u32, size: u64 },
    /// TOP: the header and lines follow.
    TopFollows,
    /// RETR: the message follows.
    MessageFollows { size: u64 },

    // Negative (`-ERR`).
    /// A message number beyond the maildrop.
    NoSuchMessage { n: usize, count: usize },
    /// A message number marked deleted in this session.
    MessageDeleted { n: usize },
    /// The message file vanished (another program removed it).
    MessageGone { n: usize },
    /// The message file cannot be read now.
    MessageUnreadable { n: usize },
    /// The message has UTF-8 in its header and UTF8 mode is off.
    MessageNeedsUtf8 { n: usize },
    /// UPDATE could not remove this many of the messages marked deleted.
    NotRemoved { count: usize },
    /// Wrong credentials, unknown user, malformed exchange: all the same.
    AuthFailed,
    /// The client cancelled a SASL exchange with `*` (RFC 5034 §4).
    AuthCancelled,
    /// The credentials could not be checked in time.
    CannotCheckCredentials,
    /// A plaintext login refused by policy; `disabled` when TLS would not
    /// help either (`plaintext_auth = "never"`).
    PlaintextRefused { disabled: bool },
    /// The maildrop is locked by another session.
    MaildropInUse,
    /// The user logged in too recently (LOGIN-DELAY).
    LoginDelay { seconds: u32 },
    /// The maildrop cannot be opened now.
    MaildropUnavailable,
    /// The maildrop cannot be opened without an administrator.
    MaildropBroken,
    /// The server is shutting down.
    ShuttingDown,
    /// A bad command; `closing` when it was one too many.
    Bad { why: Bad, closing: bool },
}

/// Why a command was refused as bad.
#[derive(Clone, Copy, Debug)]
pub(super) enum Bad {
    /// The command did not parse.
    Syntax(ParseError),
    /// PASS without USER.
    NoUser,
    /// APOP without a timestamp in the greeting.
    ApopUnavailable,
    /// AUTH with a mechanism not offered.
    UnsupportedMechanism,
    /// An initial response to a mechanism that takes none.
    NoInitialResponse,
    /// An initial response that is not base64.
    InitialResponseNotBase64,
    /// A SASL response that is not base64.
    ResponseNotBase64,
    /// STLS under TLS.
    TlsActive,
    /// STLS where TLS is not offered.
    TlsUnavailable,
    /// An overlong line in the middle of a SASL exchange.
    LineTooLongInAuth,
    /// An overlong line.
    LineTooLong,
    /// A TRANSACTION command before login.
    NotLoggedIn,
    /// An AUTHORIZATION command after login.
    AlreadyLoggedIn,
}

impl Bad {
    fn text(self) -> &'static str {
        match self {
            Bad::Syntax(error) => error.message(),
            Bad::NoUser => "No user name given; send USER first.",
            Bad::ApopUnavailable => "APOP is not available.",
            Bad::UnsupportedMechanism => "Unsupported authentication mechanism.",
            Bad::NoInitialResponse => "This mechanism does not take an initial response.",
            Bad::InitialResponseNotBase64 => "Invalid base64 in initial response.",
            Bad::ResponseNotBase64 => "Invalid base64 in response; authentication aborted.",
            Bad::TlsActive => "Command not permitted when TLS active.",
            Bad::TlsUnavailable => "TLS is not available.",
            Bad::LineTooLongInAuth => "Line too long; authentication aborted.",
            Bad::LineTooLong => "Line too long.",
            Bad::NotLoggedIn => "Not logged in; that command is for the TRANSACTION state.",
            Bad::AlreadyLoggedIn => {
                "Already logged in; that command is for the AUTHORIZATION state."
            }
        }
    }
}

impl Reply<'_> {
    /// Appends the status line, CRLF included.
    pub(super) fn write(self, out: &mut Vec<u8>) {
        use Reply::*;
        match self {
            Greeting {
                apop_timestamp: Some(timestamp),
            } => reply::ok(out, format_args!("yubin ready. {timestamp}")),
            Greeting {
                apop_timestamp: None,
            } => reply::ok(out, format_args!("yubin ready.")),
            Ok => reply::ok(out, format_args!("")),
            Utf8Enabled => reply::ok(out, format_args!("UTF8 enabled.")),
            LoggingOut => reply::ok(out, format_args!("Logging out.")),
            LoggedIn { count, size } => reply::ok(
                out,
                format_args!("Logged in, {count} messages ({size} octets)."),
            ),
            BeginTls => reply::ok(out, format_args!("Begin TLS negotiation.")),
            CapabilityList => reply::ok(out, format_args!("Capability list follows")),
            Stat { count, size } => reply::ok(out, format_args!("{count} {size}")),
            ListFollows { count, size } => {
                reply::ok(out, format_args!("{count} messages ({size} octets)"))
            }
            UidlFollows => reply::ok(out, format_args!("Unique-ID listing follows")),
            ListOne { n, size } => reply::ok(out, format_args!("{n} {size}")),
            UidlOne { n, uid } => reply::ok(out, format_args!("{n} {uid}")),
            MarkedDeleted { n } => reply::ok(out, format_args!("Message {n} deleted.")),
            Reset { count, size } => reply::ok(
                out,
                format_args!("Maildrop has {count} messages ({size} octets)."),
            ),
            TopFollows => reply::ok(out, format_args!("Top of message follows.")),
            MessageFollows { size } => reply::ok(out, format_args!("{size} octets")),
            NoSuchMessage { n, count } => reply::err(
                out,
                None,
                format_args!("There is no message {n}; the maildrop has {count} messages."),
            ),
            MessageDeleted { n } => reply::err(out, None, format_args!("Message {n} is deleted.")),
            MessageGone { n } => reply::err(
                out,
                Some(Code::SysPerm),
                format_args!("Message {n} was removed from the maildrop by another program."),
            ),
            MessageUnreadable { n } => reply::err(
                out,
                Some(Code::SysTemp),
                format_args!("Message {n} cannot be read now; try again later."),
            ),
            MessageNeedsUtf8 { n } => reply::err(
                out,
                Some(Code::Utf8),
                format_args!("Message {n} has UTF-8 headers; enable UTF8 mode to retrieve it."),
            ),
            NotRemoved { count } => reply::err(
                out,
                Some(Code::SysTemp),
                format_args!("{count} deleted messages not removed."),
            ),
            AuthFailed => reply::err(
                out,
                Some(Code::Auth),
                format_args!("Authentication failed."),
            ),
            AuthCancelled => reply::err(out, None, format_args!("Authentication cancelled.")),
            CannotCheckCredentials => reply::err(
                out,
                Some(Code::SysTemp),
                format_args!("Cannot check credentials now; try again later."),
            ),
            // Where plaintext logins are off altogether, TLS would not
            // help: saying "Use STLS" there sends the client in circles.
            PlaintextRefused { disabled: true } => reply::err(
                out,
                Some(Code::Auth),
                format_args!("Plaintext authentication is disabled. Use APOP, CRAM-MD5 or SCRAM."),
            ),
            // Dovecot's wording, which clients and users recognise.
            PlaintextRefused { disabled: false } => reply::err(
                out,
                Some(Code::Auth),
                format_args!(
                    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections. Use STLS."
                ),
            ),
            MaildropInUse => reply::err(
                out,
                Some(Code::InUse),
                format_args!("Maildrop is locked by another session."),
            ),
            LoginDelay { seconds } => reply::err(
                out,
                Some(Code::LoginDelay),
                format_args!(
                    "Too soon after the last login; wait {seconds} seconds between logins."
                ),
            ),
            MaildropUnavailable => reply::err(
                out,
                Some(Code::SysTemp),
                format_args!("Maildrop is temporarily unavailable; try again later."),
            ),
            MaildropBroken => reply::err(
                out,
                Some(Code::SysPerm),
                format_args!("Maildrop cannot be opened; contact your administrator."),
            ),
            ShuttingDown => reply::err(
                out,
                Some(Code::SysTemp),
                format_args!("Server shutting down."),
            ),
            Bad {
                why,
                closing: false,
            } => reply::err(out, None, format_args!("{}", why.text())),
            Bad { why, closing: true } => reply::err(
                out,
                None,
                format_args!("{} Too many bad commands; closing connection.", why.text()),
            ),
        }
    }
}
