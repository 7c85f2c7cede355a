//! Writing status lines: `+OK …` and `-ERR [CODE] …`.

use std::fmt;
use std::io::Write;

/// Extended response codes (RFC 2449 §8, RFC 3206, RFC 6856 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The credentials were right but the maildrop is locked by another session.
    InUse,
    /// The user logged in too recently (the LOGIN-DELAY capability).
    LoginDelay,
    /// A problem on our side that will probably pass.
    SysTemp,
    /// A problem on our side that needs an administrator.
    SysPerm,
    /// A problem with the credentials, or authentication refused by policy.
    Auth,
    /// The message needs UTF-8 mode, which the client has not enabled.
    Utf8,
}

impl Code {
    /// The code as written between the brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InUse => "IN-USE",
            Code::LoginDelay => "LOGIN-DELAY",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
            Code::Auth => "AUTH",
            Code::Utf8 => "UTF8",
        }
    }
}

/// Appends `+OK <text>` CRLF, or just `+OK` CRLF for empty text.
pub(crate) fn ok(out: &mut Vec<u8>, text: fmt::Arguments<'_>) {
    if text.as_str() == Some("") {
        out.extend_from_slice(b"+OK\r\n");
        return;
    }
    out.extend_from_slice(b"+OK ");
    // Writing into a Vec cannot fail.
    let _ = out.write_fmt(text);
    out.extend_from_slice(b"\r\n");
}

/// Appends `-ERR [CODE] <text>` CRLF.
pub(crate) fn err(out: &mut Vec<u8>, code: Option<Code>, text: fmt::Arguments<'_>) {
    out.extend_from_slice(b"-ERR ");
    if let Some(code) = code {
        out.push(b'[');
        out.extend_from_slice(code.as_str().as_bytes());
        out.extend_from_slice(b"] ");
    }
    let _ = out.write_fmt(text);
    out.extend_from_slice(b"\r\n");
}

/// Appends one line of a multi-line response. Callers only pass lines that
/// cannot start with "." (numbers, capability names), so no stuffing is needed.
pub(crate) fn line(out: &mut Vec<u8>, text: fmt::Arguments<'_>) {
    let _ = out.write_fmt(text);
    out.extend_from_slice(b"\r\n");
}

/// Appends the end of a multi-line response.
pub(crate) fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b".\r\n");
}
