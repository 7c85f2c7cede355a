//! Splitting a client's byte stream into command lines (POP3, SMTP).
//!
//! A line ends at LF; one CR before it is dropped, so `CRLF` and a bare `LF`
//! both end a line (RFC 1939 asks for CRLF; most servers accept LF and so do
//! we). A line longer than the limit is reported once as [`Line::TooLong`] and
//! the rest of it, up to the next LF, is thrown away without being buffered, so
//! a client sending megabytes without a newline costs a bounded amount of
//! memory.
//!
//! [`stuffing`] turns stored messages (LF line ends) into dot-stuffed CRLF
//! text, for POP3 RETR/TOP and for SMTP DATA sent by the delivery engine.
//!
//! [`date`] writes the dates of mail headers (RFC 5322) and mbox `From `
//! lines, for everything that stamps a message.
//!
//! No I/O and no dependency on either protocol: both cores use it.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod date;
pub mod stuffing;

pub use stuffing::{CrlfLines, Encoder, WireSize};

/// One unit of input, as returned by [`LineReader::next_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, terminator removed, copied into the caller's buffer.
    Complete,
    /// A line passed the length limit; its remaining bytes are being
    /// discarded. The caller's buffer holds its first [`PREFIX`] octets (or
    /// fewer), so a protocol can tell what kind of line it was.
    TooLong,
}

/// How many leading octets of an overlong line are handed back.
pub const PREFIX: usize = 16;

/// An incremental line splitter with a length limit.
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
    /// Bytes from `start` up to here are known to hold no LF.
    scanned: usize,
    max_len: usize,
    /// Set after a `TooLong`: drop input until the next LF.
    discarding: bool,
}

impl LineReader {
    /// A reader that refuses lines longer than `max_len` octets (terminator excluded).
    pub fn new(max_len: usize) -> Self {
        LineReader {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_len,
            discarding: false,
        }
    }

    /// Appends bytes read from the client.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.discarding {
            match memchr::memchr(b'\n', data) {
                None => return,
                Some(lf) => {
                    self.discarding = false;
                    data = &data[lf + 1..];
                }
            }
        }
        self.buf.extend_from_slice(data);
    }

    /// Takes the next line, if a whole one (or an overlong one) is buffered.
    /// A complete line is copied into `line`, without its CRLF or LF.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Option<Line> {
        let pending = &self.buf[self.scanned..];
        match memchr::memchr(b'\n', pending) {
            Some(offset) => {
                let lf = self.scanned + offset;
                let mut end = lf;
                if end > self.start && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
                if end - self.start > self.max_len {
                    self.keep_prefix(line);
                    self.consume(lf + 1);
                    return Some(Line::TooLong);
                }
                line.clear();
                line.extend_from_slice(&self.buf[self.start..end]);
                self.consume(lf + 1);
                Some(Line::Complete)
            }
            None => {
                self.scanned = self.buf.len();
                // One more byte than the limit may be a CR that belongs to the terminator.
                if self.buf.len() - self.start > self.max_len + 1 {
                    self.keep_prefix(line);
                    self.clear();
                    self.discarding = true;
                    return Some(Line::TooLong);
                }
                None
            }
        }
    }

    /// Copies the first octets of the current (overlong) line into `line`.
    fn keep_prefix(&self, line: &mut Vec<u8>) {
        line.clear();
        let end = (self.start + PREFIX).min(self.buf.len());
        line.extend_from_slice(&self.buf[self.start..end]);
    }

    /// Whether no byte is waiting to be read as a line.
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Takes the bytes buffered after the last complete line, for a protocol
    /// that switches from lines to raw data (SMTP's DATA and BDAT).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.clear();
        rest
    }

    /// Forgets everything buffered, including a partly discarded long line.
    /// Used when TLS starts: nothing sent in plaintext may be read afterwards.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.discarding = false;
    }

    /// Releases the buffer's memory if it is empty (for idle sessions).
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.start = 0;
            self.scanned = 0;
        }
    }

    fn consume(&mut self, to: usize) {
        if to >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        } else {
            self.start = to;
            self.scanned = to;
            // Compact now and then so a long pipeline does not grow the buffer.
            if self.start >= 4096 && self.start * 2 >= self.buf.len() {
                self.buf.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes and collects what comes out.
    fn split(input: &[u8], chunk: usize, max: usize) -> Vec<Option<Vec<u8>>> {
        let mut reader = LineReader::new(max);
        let mut out = Vec::new();
        let mut line = Vec::new();
        for part in input.chunks(chunk) {
            reader.push(part);
            while let Some(l) = reader.next_line(&mut line) {
                out.push(match l {
                    Line::Complete => Some(line.clone()),
                    Line::TooLong => None,
                });
            }
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf_both_end_a_line() {
        let input = b"USER a\r\nPASS b\nSTAT\r\n\r\nx";
        let expected = vec![
            Some(b"USER a".to_vec()),
            Some(b"PASS b".to_vec()),
            Some(b"STAT".to_vec()),
            Some(Vec::new()),
        ];
        for chunk in [1, 2, 3, 4, 7, 64] {
            assert_eq!(split(input, chunk, 100), expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn only_one_cr_before_lf_is_dropped() {
        assert_eq!(split(b"A\r\r\n", 1, 100), vec![Some(b"A\r".to_vec())]);
    }

    #[test]
    fn a_line_at_the_limit_passes_one_over_does_not() {
        let mut input = vec![b'a'; 10];
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&[b'b'; 11]);
        input.extend_from_slice(b"\r\nNOOP\r\n");
        for chunk in [1, 2, 5, 100] {
            assert_eq!(
                split(&input, chunk, 10),
                vec![Some(vec![b'a'; 10]), None, Some(b"NOOP".to_vec())],
                "chunk size {chunk}"
            );
        }
    }

    /// The caller learns how an overlong line began (SMTP must know whether
    /// it was a BDAT, whose chunk follows it).
    #[test]
    fn an_overlong_line_hands_back_its_first_octets() {
        for input in [
            &b"BDAT 93 LAST xxxxxxxxxxxxxxxxxxxxxxxx\r\n"[..],
            b"BDAT 93 LAST xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            let mut reader = LineReader::new(20);
            let mut line = Vec::new();
            reader.push(input);
            assert_eq!(reader.next_line(&mut line), Some(Line::TooLong));
            assert_eq!(line, &input[..PREFIX]);
        }
    }

    #[test]
    fn an_endless_line_is_reported_once_and_not_buffered() {
        let mut reader = LineReader::new(16);
        let mut line = Vec::new();
        let mut reports = 0;
        for _ in 0..10_000 {
            reader.push(&[b'x'; 1000]);
            while let Some(l) = reader.next_line(&mut line) {
                assert_eq!(l, Line::TooLong);
                reports += 1;
            }
            assert!(reader.buf.len() <= 1000 + 17);
        }
        reader.push(b"tail\r\nNOOP\r\n");
        assert_eq!(reader.next_line(&mut line), Some(Line::Complete));
        assert_eq!(line, b"NOOP");
        assert_eq!(reports, 1);
    }

    #[test]
    fn the_rest_after_a_line_can_be_taken() {
        let mut reader = LineReader::new(100);
        let mut line = Vec::new();
        reader.push(b"DATA\r\nSubject: x\r\n\r\nbody");
        assert_eq!(reader.next_line(&mut line), Some(Line::Complete));
        assert_eq!(reader.take_rest(), b"Subject: x\r\n\r\nbody");
        assert!(reader.is_empty());
    }

    #[test]
    fn clear_forgets_pipelined_input() {
        let mut reader = LineReader::new(100);
        let mut line = Vec::new();
        reader.push(b"STLS\r\nUSER evil\r\n");
        assert_eq!(reader.next_line(&mut line), Some(Line::Complete));
        reader.clear();
        assert_eq!(reader.next_line(&mut line), None);
        assert!(reader.is_empty());
    }
}
