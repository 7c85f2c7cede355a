//! Text from clients, made safe for one log line.

use std::fmt;

/// Displays client-supplied bytes with control characters, quotes,
/// backslashes and non-UTF-8 octets escaped, cut at 256 characters, so a
/// user name like `a\r\nLogin: user=<admin>` cannot forge log lines.
/// Spaces and every character beyond ASCII are escaped too (`\x20`,
/// `\u{a0}`): a log line's fields are separated by spaces, and a name such
/// as `x rip=6.6.6.8` (or with a no-break space, U+2028 or a bidi
/// override) must not plant a field that a fail2ban filter would take for
/// the client's address (issue 12).
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LIMIT: usize = 256;
        let mut written = 0;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if written >= LIMIT {
                    return f.write_str("…");
                }
                match c {
                    '"' | '\\' => write!(f, "\\{c}")?,
                    c if c.is_ascii_control() || c == ' ' => {
                        write!(f, "\\x{:02x}", u32::from(c))?;
                    }
                    c if !c.is_ascii() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                    c => write!(f, "{c}")?,
                }
                written += 1;
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
                written += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(Escaped(b"alice").to_string(), "alice");
        assert_eq!(
            Escaped(b"a\r\nLogin: user=<admin> \"x\"\\").to_string(),
            "a\\x0d\\x0aLogin:\\x20user=<admin>\\x20\\\"x\\\"\\\\"
        );
        assert_eq!(Escaped(b"\xff\x1b[31m").to_string(), "\\xff\\x1b[31m");
        assert_eq!(Escaped("jörg".as_bytes()).to_string(), "j\\u{f6}rg");
        // Issue 12: no space of any kind, no line or bidi control, survives.
        for planted in [
            "x rip=6.6.6.8",
            "x\u{a0}rip=6.6.6.8",
            "x\u{2028}rip=6.6.6.8",
            "x\u{202e}8.6.6.6=pir",
        ] {
            let logged = Escaped(planted.as_bytes()).to_string();
            assert!(logged.is_ascii() && !logged.contains(' '), "{logged}");
        }
        assert!(Escaped(&[b'a'; 1000]).to_string().ends_with('…'));
    }
}
