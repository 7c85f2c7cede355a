//! Replies as the client receives them (RFC 5321 §4.2): `ddd-text` lines
//! ending in one `ddd text` line, parsed strictly and with bounded memory,
//! since the server at the other end may be anything.

use std::fmt;

use yubin_line::{Line, LineReader};

/// Longest reply line we accept (RFC 5321 §4.5.3.1.5 says 512 with CRLF;
/// real servers send longer EHLO lines, nobody sends kilobytes).
const MAX_LINE: usize = 2048;

/// Most lines in one reply (an EHLO answer has a dozen).
const MAX_LINES: usize = 128;

/// A reply from the server, or one we make up for a failure that never got
/// a reply (connection lost, timeout, a policy of ours).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Response {
    /// A reply of our own, `text` starting with its enhanced status code.
    pub fn local(code: u16, text: impl Into<String>) -> Response {
        Response {
            code,
            lines: vec![text.into()],
        }
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: give up.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The enhanced status code (RFC 3463) at the start of the first line,
    /// if the server sent one whose class matches the reply code.
    pub fn enhanced_status(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let status = first.split(' ').next()?;
        let mut parts = status.split('.');
        let class = parts.next()?;
        let valid = status.split('.').count() == 3
            && status
                .split('.')
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && class.parse::<u16>().ok() == Some(self.code / 100);
        valid.then_some(status)
    }

    /// The text of all lines joined, for logs and bounces.
    pub fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// Why the server's bytes are not SMTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Assembles replies from the server's byte stream.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    lines: LineReader,
    line: Vec<u8>,
    code: Option<u16>,
    texts: Vec<String>,
}

impl ResponseReader {
    pub(crate) fn new() -> ResponseReader {
        ResponseReader {
            lines: LineReader::new(MAX_LINE),
            line: Vec::new(),
            code: None,
            texts: Vec::new(),
        }
    }

    /// Adds bytes read from the server.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.lines.push(bytes);
    }

    /// Whether bytes are buffered that have not been returned as a reply.
    pub(crate) fn has_pending(&self) -> bool {
        !self.lines.is_empty() || self.code.is_some()
    }

    /// Drops everything buffered (after STARTTLS: bytes sent before the
    /// handshake must not be read as if they came over TLS).
    pub(crate) fn clear(&mut self) {
        self.lines.clear();
        self.code = None;
        self.texts.clear();
    }

    /// The next whole reply, if one is buffered.
    pub(crate) fn next(&mut self) -> Option<Result<Response, ProtocolError>> {
        loop {
            match self.lines.next_line(&mut self.line)? {
                Line::TooLong => {
                    return Some(Err(ProtocolError(format!(
                        "reply line longer than {MAX_LINE} octets"
                    ))));
                }
                Line::Complete => {}
            }
            let (code, last, text) = match parse_line(&self.line) {
                Ok(parsed) => parsed,
                Err(error) => return Some(Err(error)),
            };
            match self.code {
                Some(first) if first != code => {
                    return Some(Err(ProtocolError(format!(
                        "reply lines with codes {first} and {code}"
                    ))));
                }
                _ => self.code = Some(code),
            }
            if self.texts.len() >= MAX_LINES {
                return Some(Err(ProtocolError(format!(
                    "reply longer than {MAX_LINES} lines"
                ))));
            }
            self.texts.push(text);
            if last {
                self.code = None;
                return Some(Ok(Response {
                    code,
                    lines: std::mem::take(&mut self.texts),
                }));
            }
        }
    }
}

/// `ddd text`, `ddd-text` or `ddd`: the code, whether it is the last line,
/// and the text (control characters made visible, invalid UTF-8 replaced).
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ProtocolError> {
    let shown = || String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned();
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError(format!("not a reply line: {:?}", shown())));
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    if !(200..600).contains(&code) {
        return Err(ProtocolError(format!("reply code {code} out of range")));
    }
    let (last, text) = match line.get(3) {
        None => (true, &line[3..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(ProtocolError(format!("not a reply line: {:?}", shown()))),
    };
    let text = String::from_utf8_lossy(text)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Ok((code, last, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], piece: usize) -> Vec<Result<Response, ProtocolError>> {
        let mut reader = ResponseReader::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            reader.push(chunk);
            while let Some(r) = reader.next() {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn single_and_multi_line_replies_in_any_pieces() {
        let input =
            b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n354\r\n";
        for piece in 1..input.len() {
            let replies = read_all(input, piece);
            assert_eq!(replies.len(), 3, "piece {piece}");
            assert_eq!(replies[0], Ok(Response::local(220, "mx.example ESMTP")));
            let ehlo = replies[1].as_ref().unwrap();
            assert_eq!(ehlo.code, 250);
            assert_eq!(ehlo.lines, ["mx.example", "PIPELINING", "SIZE 1000"]);
            assert_eq!(replies[2], Ok(Response::local(354, "")));
        }
    }

    #[test]
    fn hostile_replies_are_protocol_errors() {
        for bad in [
            &b"hello\r\n"[..],
            b"99 x\r\n",
            b"600 x\r\n",
            b"250x\r\n",
            b"250-a\r\n251 b\r\n",
        ] {
            let replies = read_all(bad, 64);
            assert!(
                matches!(replies.last(), Some(Err(_))),
                "{:?}: {replies:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let endless = vec![b'2'; 100_000];
        assert!(matches!(read_all(&endless, 4096).first(), Some(Err(_))));
        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert!(matches!(read_all(&many, 4096).last(), Some(Err(_))));
    }

    #[test]
    fn enhanced_status_codes_must_match_the_class() {
        assert_eq!(
            Response::local(550, "5.1.1 no such user").enhanced_status(),
            Some("5.1.1")
        );
        assert_eq!(
            Response::local(550, "4.1.1 mismatch").enhanced_status(),
            None
        );
        assert_eq!(Response::local(250, "ok").enhanced_status(), None);
        assert_eq!(Response::local(250, "").enhanced_status(), None);
    }

    #[test]
    fn control_characters_in_text_are_made_visible() {
        let replies = read_all(b"550 bad\x1b[31m\r\n", 64);
        assert_eq!(replies[0], Ok(Response::local(550, "bad?[31m")));
    }
}
