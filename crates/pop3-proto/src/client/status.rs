//! Status lines as the client reads them: `+OK text`, `-ERR [CODE] text`,
//! the greeting's APOP timestamp, and the STAT and scan-listing numbers.

use std::fmt;

/// The most octets of a status line's text we keep. RFC 2449 §4 limits a
/// response line to 512 octets; a server sending megabytes gets them
/// truncated, not buffered.
pub const MAX_STATUS_TEXT: usize = 512;

/// A single-line reply, or the first line of a multi-line one that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `+OK` (true) or `-ERR` (false).
    pub ok: bool,
    /// The extended response code (RFC 2449 §8) without brackets, e.g.
    /// `IN-USE`, `LOGIN-DELAY`, `SYS/TEMP`, `AUTH`.
    pub code: Option<String>,
    /// The rest of the line, from at most [`MAX_STATUS_TEXT`] octets, with
    /// control characters and invalid UTF-8 escaped: safe to log or print.
    pub text: String,
}

impl Status {
    /// Parses a status line (terminator removed). `None` if it is neither
    /// `+OK` nor `-ERR` followed by a space or the end of the line.
    pub(crate) fn parse(line: &[u8]) -> Option<Status> {
        let (ok, rest) = if let Some(rest) = line.strip_prefix(b"+OK") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix(b"-ERR") {
            (false, rest)
        } else {
            return None;
        };
        let rest = match rest {
            [] => rest,
            [b' ', rest @ ..] => rest,
            _ => return None,
        };
        let (code, text) = split_code(rest);
        Some(Status {
            ok,
            code: code.map(escape),
            text: escape(text),
        })
    }

    /// The maildrop is locked by another session (`[IN-USE]`, RFC 2449 §8.1.1).
    pub fn in_use(&self) -> bool {
        self.code.as_deref() == Some("IN-USE")
    }

    /// The server wants more time between logins (`[LOGIN-DELAY]`, §8.1.2).
    pub fn login_delay(&self) -> bool {
        self.code.as_deref() == Some("LOGIN-DELAY")
    }

    /// A temporary failure on the server's side (`[SYS/TEMP]`, RFC 3206).
    pub fn temporary(&self) -> bool {
        self.code.as_deref() == Some("SYS/TEMP")
    }

    /// The numbers of a STAT reply: message count and total size. `None`
    /// unless the text starts with exactly two decimal numbers (RFC 1939 §5).
    pub fn stat(&self) -> Option<(u32, u64)> {
        let mut words = self.text.split(' ');
        let count = parse_decimal(words.next()?)?;
        let size = parse_decimal(words.next()?)?;
        Some((u32::try_from(count).ok()?, size))
    }

    /// The APOP timestamp of a greeting: the last `<…>` in its text, if it
    /// has the form of an RFC 5322 msg-id (`<left@right>`, printable ASCII,
    /// no spaces), as RFC 1939 §7 requires. A challenge in any other form is
    /// refused (`None`), since a server choosing arbitrary challenges can
    /// mount the known MD5 attacks on APOP (CVE-2007-1558).
    pub fn apop_timestamp(&self) -> Option<&str> {
        let start = self.text.rfind('<')?;
        let end = start + self.text[start..].find('>')?;
        let stamp = &self.text[start..=end];
        let inner = &stamp[1..stamp.len() - 1];
        let (left, right) = inner.split_once('@')?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"<>@\\\"()[],;:".contains(&b))
        };
        (stamp.len() <= 256 && valid(left) && valid(right)).then_some(stamp)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.ok { "+OK" } else { "-ERR" })?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// Splits `[CODE] text` into the code and the text.
fn split_code(rest: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if let Some(inner) = rest.strip_prefix(b"[")
        && let Some(close) = inner.iter().position(|&b| b == b']')
    {
        let code = &inner[..close];
        let is_code = !code.is_empty()
            && code.len() <= 64
            && code
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'/');
        if is_code {
            let text = &inner[close + 1..];
            return (Some(code), text.strip_prefix(b" ").unwrap_or(text));
        }
    }
    (None, rest)
}

/// Parses decimal digits only (no sign, no spaces), at most 20 of them.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Server text made safe for a terminal or a log: at most
/// [`MAX_STATUS_TEXT`] octets, invalid UTF-8 replaced, control characters
/// (ANSI escapes included) written as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_STATUS_TEXT)];
    let mut out = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_err_and_codes() {
        let s = Status::parse(b"+OK").unwrap();
        assert!(s.ok && s.code.is_none() && s.text.is_empty());
        let s = Status::parse(b"-ERR [IN-USE] locked by another session").unwrap();
        assert!(!s.ok && s.in_use());
        assert_eq!(s.text, "locked by another session");
        let s = Status::parse(b"-ERR [SYS/TEMP] try later").unwrap();
        assert!(s.temporary());
        let s = Status::parse(b"-ERR [not a code] x").unwrap();
        assert_eq!(s.code, None);
        assert_eq!(s.text, "[not a code] x");
        assert!(Status::parse(b"+OKAY").is_none());
        assert!(Status::parse(b"* OK").is_none());
        assert!(Status::parse(b"").is_none());
    }

    #[test]
    fn hostile_text_is_escaped_and_truncated() {
        let s = Status::parse(b"-ERR \x1b[31mred%n\x00").unwrap();
        assert_eq!(s.text, "\\x1b[31mred%n\\x00");
        let mut long = b"-ERR ".to_vec();
        long.extend(std::iter::repeat_n(b'A', 10_000));
        let s = Status::parse(&long).unwrap();
        assert_eq!(s.text.len(), MAX_STATUS_TEXT);
    }

    #[test]
    fn stat_numbers_strictly() {
        let stat = |t: &[u8]| Status::parse(t).unwrap().stat();
        assert_eq!(stat(b"+OK 2 320"), Some((2, 320)));
        assert_eq!(stat(b"+OK 4294967295 0"), Some((u32::MAX, 0)));
        assert_eq!(stat(b"+OK 4294967296 0"), None);
        assert_eq!(stat(b"+OK -1 0"), None);
        assert_eq!(stat(b"+OK 2"), None);
        assert_eq!(stat(b"+OK two 320"), None);
    }

    #[test]
    fn apop_timestamps_must_be_msg_ids() {
        let stamp = |t: &[u8]| {
            Status::parse(t)
                .unwrap()
                .apop_timestamp()
                .map(str::to_owned)
        };
        assert_eq!(
            stamp(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>").as_deref(),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        assert_eq!(stamp(b"+OK ready"), None);
        assert_eq!(stamp(b"+OK ready <no-at-sign>"), None);
        assert_eq!(stamp(b"+OK ready <a b@c>"), None);
        assert_eq!(stamp(b"+OK ready <\x01@c>"), None);
        assert_eq!(stamp(b"+OK ready <@c>"), None);
    }
}
