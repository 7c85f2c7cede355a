//! Text from clients, made safe for one log line.

use std::fmt;

/// Displays client-supplied bytes with control characters, quotes,
/// backslashes and non-UTF-8 octets escaped, cut at 256 characters, so a
/// user name like `a\r\nLogin: user=<admin>` cannot forge log lines.
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
                    c if c.is_control() => write!(f, "\\x{:02x}", u32::from(c))?,
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
            "a\\x0d\\x0aLogin: user=<admin> \\\"x\\\"\\\\"
        );
        assert_eq!(Escaped(b"\xff\x1b[31m").to_string(), "\\xff\\x1b[31m");
        assert_eq!(Escaped("jörg".as_bytes()).to_string(), "jörg");
        assert!(Escaped(&[b'a'; 1000]).to_string().ends_with('…'));
    }
}
