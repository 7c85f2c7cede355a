//! Receiving message content: DATA (dot-terminated, RFC 5321 §4.5.2) and
//! BDAT chunks (RFC 3030).
//!
//! Content is handed on with LF line ends (as Maildir stores it) and with
//! the dot-stuffing removed.
//!
//! SMTP smuggling (CVE-2023-51764 and relatives) needs a receiver that ends
//! DATA on something other than `CRLF . CRLF`. Here only that sequence ends
//! it; a bare LF or a bare CR anywhere in the content is noted, and the
//! message is refused once it has ended (550 5.5.2), so nothing that another
//! server might read as an end of data can sit inside a message we accept.

use memchr::memchr2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// In a line.
    Text,
    /// A CR was seen in a line; an LF must follow.
    Cr,
    /// A `.` at the start of a line.
    Dot,
    /// `.` CR at the start of a line: an LF ends the data.
    DotCr,
    /// The end was seen.
    Done,
}

/// A DATA receiver: feed it bytes until it reports the end.
#[derive(Clone, Debug)]
pub struct DataReceiver {
    state: State,
    received: u64,
    limit: u64,
    bare_line_end: bool,
}

/// How a DATA transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// A message within the limit and with CRLF line ends only.
    Complete,
    /// More octets than the size limit; the content was not kept.
    TooBig,
    /// A bare LF or bare CR was found.
    BareLineEnd,
}

impl DataReceiver {
    /// A receiver that keeps at most `limit` octets.
    pub fn new(limit: u64) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            received: 0,
            limit,
            bare_line_end: false,
        }
    }

    /// Whether the end of data has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How the transfer ended (meaningful once done).
    pub fn end(&self) -> DataEnd {
        if self.received > self.limit {
            DataEnd::TooBig
        } else if self.bare_line_end {
            DataEnd::BareLineEnd
        } else {
            DataEnd::Complete
        }
    }

    /// Feeds bytes; content goes to `out` until the limit is passed, after
    /// which the rest is only scanned for the end. Returns
    /// how many bytes were used: after the end, the rest is not DATA.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return i,
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Dot => match input[i] {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    // ".\n": not an end of data (only CRLF.CRLF is), and a
                    // bare LF starts no line: a "." after it is just text.
                    b'\n' => {
                        self.bare_line_end = true;
                        self.emit(b".\n", out);
                        self.state = State::Text;
                        i += 1;
                    }
                    // RFC 5321 §4.5.2: a leading dot with more on the line is removed.
                    _ => self.state = State::Text,
                },
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::Done;
                        return i + 1;
                    }
                    // ".\rX": a bare CR.
                    self.bare_line_end = true;
                    self.emit(b".\r", out);
                    self.state = State::Text;
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        self.emit(b"\n", out);
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        self.bare_line_end = true;
                        self.emit(b"\r", out);
                        self.state = State::Text;
                    }
                }
                State::Text => match memchr2(b'\r', b'\n', &input[i..]) {
                    None => {
                        self.emit(&input[i..], out);
                        return input.len();
                    }
                    Some(offset) => {
                        let end = i + offset;
                        self.emit(&input[i..end], out);
                        if input[end] == b'\r' {
                            self.state = State::Cr;
                        } else {
                            // A bare LF: noted, and it starts no line, so
                            // "\n.\r\n" cannot end the data.
                            self.bare_line_end = true;
                            self.emit(b"\n", out);
                            self.state = State::Text;
                        }
                        i = end + 1;
                    }
                },
            }
        }
        i
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.received += bytes.len() as u64;
        if self.received <= self.limit {
            out.extend_from_slice(bytes);
        }
    }
}

/// Converts BDAT content (CRLF line ends) to LF line ends across chunk
/// boundaries. BDAT has no end marker inside the data, so a bare CR or LF
/// cannot end the message; still, a bare CR becomes a line end (LF) here,
/// as POP3 treats one, so no stored message has a CR that a later hop could
/// read as part of `CR.CRLF`.
#[derive(Clone, Debug, Default)]
pub struct BdatConverter {
    pending_cr: bool,
}

impl BdatConverter {
    /// Appends `input`, CRLF turned into LF, to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        let mut rest = input;
        if self.pending_cr {
            self.pending_cr = false;
            out.push(b'\n');
            if rest.first() == Some(&b'\n') {
                rest = &rest[1..];
            }
        }
        while let Some(cr) = memchr::memchr(b'\r', rest) {
            out.extend_from_slice(&rest[..cr]);
            match rest.get(cr + 1) {
                Some(b'\n') => {
                    out.push(b'\n');
                    rest = &rest[cr + 2..];
                }
                Some(_) => {
                    out.push(b'\n');
                    rest = &rest[cr + 1..];
                }
                None => {
                    self.pending_cr = true;
                    return;
                }
            }
        }
        out.extend_from_slice(rest);
    }

    /// Ends the content (a CR left at the very end is a line end too).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.push(b'\n');
            self.pending_cr = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn receive(input: &[u8], chunk: usize) -> (Vec<u8>, usize, DataEnd) {
        let mut receiver = DataReceiver::new(1 << 20);
        let mut out = Vec::new();
        let mut used = 0;
        for part in input.chunks(chunk) {
            let n = receiver.feed(part, &mut out);
            used += n;
            if receiver.is_done() {
                break;
            }
        }
        assert!(receiver.is_done(), "no end found in {input:?}");
        (out, used, receiver.end())
    }

    #[test]
    fn crlf_dot_crlf_ends_and_dots_are_unstuffed() {
        let input = b"Subject: x\r\n\r\n..hidden\r\n.x\r\n...\r\nend\r\n.\r\nQUIT\r\n";
        for chunk in [1, 2, 3, 5, 100] {
            let (out, used, end) = receive(input, chunk);
            assert_eq!(out, b"Subject: x\n\n.hidden\nx\n..\nend\n", "chunk {chunk}");
            assert_eq!(&input[used..], b"QUIT\r\n");
            assert_eq!(end, DataEnd::Complete);
        }
        assert_eq!(receive(b".\r\n", 1), (Vec::new(), 3, DataEnd::Complete));
    }

    /// SI-01: the smuggling vectors never end the data; they mark it refused.
    #[test]
    fn smuggling_vectors_do_not_end_data() {
        for vector in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
        ] {
            let mut input = b"Subject: x\r\n\r\na".to_vec();
            input.extend_from_slice(vector);
            input.extend_from_slice(
                b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nspoof\r\n.\r\n",
            );
            for chunk in [1, 4, 1000] {
                let (out, used, end) = receive(&input, chunk);
                assert_eq!(used, input.len(), "{vector:?} ended early");
                assert_eq!(end, DataEnd::BareLineEnd, "{vector:?}");
                assert!(out.windows(4).any(|w| w == b"MAIL"));
            }
        }
    }

    #[test]
    fn oversize_data_is_read_to_the_end_and_not_kept() {
        let mut receiver = DataReceiver::new(10);
        let mut out = Vec::new();
        let input = b"0123456789abcdef\r\nmore\r\n.\r\nNOOP\r\n";
        let used = receiver.feed(input, &mut out);
        assert!(receiver.is_done());
        assert_eq!(&input[used..], b"NOOP\r\n");
        assert_eq!(receiver.end(), DataEnd::TooBig);
        assert!(out.len() <= 10);
    }

    #[test]
    fn bdat_converts_crlf_across_chunks() {
        let mut conv = BdatConverter::default();
        let mut out = Vec::new();
        for part in [&b"a\r"[..], b"\nb\rc\r", b"", b"\n.\r\n\r"] {
            conv.feed(part, &mut out);
        }
        conv.finish(&mut out);
        // Bare CRs (after "b" and at the very end) become line ends too.
        assert_eq!(out, b"a\nb\nc\n.\n\n");
        // x CR . CRLF (a smuggling pattern in DATA) is stored as two lines.
        let mut out = Vec::new();
        let mut conv = BdatConverter::default();
        conv.feed(b"x\r.\r\n", &mut out);
        conv.finish(&mut out);
        assert_eq!(out, b"x\n.\n");
    }

    proptest! {
        /// Stuffing any content, sending it, and receiving it gives the
        /// content back with LF line ends; chunking changes nothing.
        #[test]
        fn stuffed_content_round_trips(lines in prop::collection::vec("[ -~]{0,12}", 0..12), chunk in 1usize..16) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for line in &lines {
                if line.starts_with('.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(line.as_bytes());
                wire.extend_from_slice(b"\r\n");
                expected.extend_from_slice(line.as_bytes());
                expected.push(b'\n');
            }
            wire.extend_from_slice(b".\r\n");
            let (out, used, end) = receive(&wire, chunk);
            prop_assert_eq!(out, expected);
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(end, DataEnd::Complete);
        }
    }
}
