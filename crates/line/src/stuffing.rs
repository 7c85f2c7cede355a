//! From stored message bytes to the bytes of a POP3 multi-line response or
//! of SMTP DATA content: the two protocols use the same transparency rule
//! (RFC 1939 §3, RFC 5321 §4.5.2).
//!
//! Stored messages may use LF, CRLF or (rarely) bare CR line ends. On the wire
//! every line ends in CRLF: RFC 1939 §3 says responses are "terminated with
//! CRLF pairs". We therefore treat LF, CRLF and a lone CR each as one line end
//! and send CRLF for it. Passing a lone CR through would let a client that
//! treats CR as a line end see an unstuffed "." line and stop reading early
//! (the bug class of Dovecot's CVE-2026-33604); normalising removes the
//! ambiguity. A last line without a terminator gets one, so every response
//! ends in `CRLF . CRLF` and nothing the message contains can end it early.
//!
//! The size a server reports for a message (STAT, LIST, RETR) is exactly what
//! [`WireSize`] counts: the octets the client receives before byte-stuffing,
//! including the CRLF added to an unterminated last line. [`Encoder`] and
//! [`WireSize`] share one scanner, so they cannot disagree.

use memchr::memchr2;

/// Where the scanner's output goes.
trait Sink {
    /// Line content (no CR or LF in it).
    fn text(&mut self, bytes: &[u8]);
    /// The extra "." that byte-stuffs a line starting with ".".
    fn stuff(&mut self);
    /// One line end (sent as CRLF).
    fn line_end(&mut self);
}

/// Which lines of the message are wanted.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// All of them (RETR, sizes).
    Whole,
    /// Header lines, the blank line, then this many body lines (TOP).
    Headers { body_lines: u64 },
    /// In the body, this many lines still to send.
    Body { remaining: u64 },
}

/// The shared line scanner: finds line ends, marks lines that need stuffing,
/// and counts TOP's body lines.
#[derive(Clone, Debug)]
struct Scanner {
    /// The next byte begins a line.
    line_start: bool,
    /// The previous chunk ended in CR; the next byte decides CRLF or lone CR.
    pending_cr: bool,
    limit: Limit,
    /// TOP's limit is reached; everything else is ignored.
    done: bool,
}

impl Scanner {
    fn new(limit: Limit) -> Self {
        Scanner {
            line_start: true,
            pending_cr: false,
            limit,
            done: false,
        }
    }

    fn feed<S: Sink>(&mut self, input: &[u8], sink: &mut S) {
        if self.done || input.is_empty() {
            return;
        }
        let mut i = 0;
        if self.pending_cr {
            self.pending_cr = false;
            if input[0] == b'\n' {
                i = 1;
            }
            if self.line_end(sink) {
                return;
            }
        }
        while i < input.len() {
            let Some(offset) = memchr2(b'\r', b'\n', &input[i..]) else {
                self.text(&input[i..], sink);
                return;
            };
            let end = i + offset;
            if end > i {
                self.text(&input[i..end], sink);
            }
            if input[end] == b'\n' {
                i = end + 1;
            } else if end + 1 < input.len() {
                i = if input[end + 1] == b'\n' {
                    end + 2
                } else {
                    end + 1
                };
            } else {
                self.pending_cr = true;
                return;
            }
            if self.line_end(sink) {
                return;
            }
        }
    }

    fn finish<S: Sink>(&mut self, sink: &mut S) {
        if self.done {
            return;
        }
        if self.pending_cr {
            self.pending_cr = false;
            if self.line_end(sink) {
                return;
            }
        }
        if !self.line_start {
            self.line_end(sink);
        }
    }

    fn text<S: Sink>(&mut self, segment: &[u8], sink: &mut S) {
        if self.line_start {
            self.line_start = false;
            if segment.first() == Some(&b'.') {
                sink.stuff();
            }
        }
        sink.text(segment);
    }

    /// Emits a line end; returns true when TOP's limit has been reached.
    fn line_end<S: Sink>(&mut self, sink: &mut S) -> bool {
        let blank = self.line_start;
        self.line_start = true;
        sink.line_end();
        match self.limit {
            Limit::Whole => {}
            Limit::Headers { body_lines } => {
                if blank {
                    if body_lines == 0 {
                        self.done = true;
                    } else {
                        self.limit = Limit::Body {
                            remaining: body_lines,
                        };
                    }
                }
            }
            Limit::Body { remaining } => {
                if remaining <= 1 {
                    self.done = true;
                } else {
                    self.limit = Limit::Body {
                        remaining: remaining - 1,
                    };
                }
            }
        }
        self.done
    }
}

/// Counts the octets a message occupies on the wire (see the module documentation).
#[derive(Clone, Debug)]
pub struct WireSize {
    scanner: Scanner,
    count: Counter,
}

#[derive(Clone, Debug)]
struct Counter(u64);

impl Sink for Counter {
    fn text(&mut self, bytes: &[u8]) {
        self.0 += bytes.len() as u64;
    }
    fn stuff(&mut self) {}
    fn line_end(&mut self) {
        self.0 += 2;
    }
}

impl Default for WireSize {
    fn default() -> Self {
        WireSize {
            scanner: Scanner::new(Limit::Whole),
            count: Counter(0),
        }
    }
}

impl WireSize {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the next chunk of the stored message.
    pub fn update(&mut self, chunk: &[u8]) {
        self.scanner.feed(chunk, &mut self.count);
    }

    /// The total, including the CRLF an unterminated last line receives.
    pub fn finish(mut self) -> u64 {
        self.scanner.finish(&mut self.count);
        self.count.0
    }

    /// The wire size of a whole message held in memory.
    pub fn of(message: &[u8]) -> u64 {
        let mut size = WireSize::new();
        size.update(message);
        size.finish()
    }
}

struct Output<'a>(&'a mut Vec<u8>);

impl Sink for Output<'_> {
    fn text(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn stuff(&mut self) {
        self.0.push(b'.');
    }
    fn line_end(&mut self) {
        self.0.extend_from_slice(b"\r\n");
    }
}

/// Turns a stored message, chunk by chunk, into a RETR or TOP response body:
/// CRLF line ends, dot-stuffed, ending with the `.` line.
#[derive(Clone, Debug)]
pub struct Encoder {
    scanner: Scanner,
}

impl Encoder {
    /// The whole message (RETR).
    pub fn whole() -> Self {
        Encoder {
            scanner: Scanner::new(Limit::Whole),
        }
    }

    /// The header, the blank line after it, and `body_lines` lines of the body (TOP).
    pub fn top(body_lines: u64) -> Self {
        Encoder {
            scanner: Scanner::new(Limit::Headers { body_lines }),
        }
    }

    /// Encodes the next chunk, appending to `out`. Returns `false` once the
    /// encoder wants no more input (TOP's limit reached), so the caller can
    /// stop reading the file.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        self.scanner.feed(chunk, &mut Output(out));
        !self.scanner.done
    }

    /// Ends the response: a CRLF for an unterminated last line, then `.` CRLF.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.scanner.finish(&mut Output(out));
        out.extend_from_slice(b".\r\n");
    }

    /// Encodes a whole message held in memory.
    pub fn encode_all(mut self, message: &[u8], out: &mut Vec<u8>) {
        self.encode(message, out);
        self.finish(out);
    }
}

/// The message as it travels, before byte-stuffing: CRLF line ends, and a
/// CRLF after an unterminated last line. This is what a DKIM signature
/// covers (RFC 6376 §5.3), so the signer and the SMTP client, which share
/// the scanner, cannot disagree about the bytes.
#[derive(Clone, Debug)]
pub struct CrlfLines {
    scanner: Scanner,
}

/// Like [`Output`], without the stuffing dot.
struct Plain<'a>(&'a mut Vec<u8>);

impl Sink for Plain<'_> {
    fn text(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn stuff(&mut self) {}
    fn line_end(&mut self) {
        self.0.extend_from_slice(b"\r\n");
    }
}

impl Default for CrlfLines {
    fn default() -> Self {
        CrlfLines {
            scanner: Scanner::new(Limit::Whole),
        }
    }
}

impl CrlfLines {
    /// At the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts the next chunk of the stored message, appending to `out`.
    pub fn convert(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.scanner.feed(chunk, &mut Plain(out));
    }

    /// Ends the message: a CRLF for an unterminated last line.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.scanner.finish(&mut Plain(out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The wire form before stuffing is the RETR body without the
    /// stuffing dots and the final `.` line, whatever the chunking.
    #[test]
    fn crlf_lines_are_the_unstuffed_wire_form() {
        for (stored, wire) in [
            (&b"a\nb"[..], &b"a\r\nb\r\n"[..]),
            (b"a\r\n.b\r\n", b"a\r\n.b\r\n"),
            (b"x\ry\n\n", b"x\r\ny\r\n\r\n"),
            (b"", b""),
        ] {
            for split in 0..=stored.len() {
                let mut lines = CrlfLines::new();
                let mut out = Vec::new();
                lines.convert(&stored[..split], &mut out);
                lines.convert(&stored[split..], &mut out);
                lines.finish(&mut out);
                assert_eq!(out, wire, "{stored:?} split at {split}");
                assert_eq!(out.len() as u64, WireSize::of(stored));
            }
        }
    }

    fn retr(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::whole().encode_all(message, &mut out);
        out
    }

    fn top(message: &[u8], lines: u64) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::top(lines).encode_all(message, &mut out);
        out
    }

    /// What a client does with a multi-line response: split at CRLF, stop at
    /// the "." line, remove one leading "." from stuffed lines.
    fn unstuff(response: &[u8]) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        let mut rest = response;
        loop {
            let at = rest.windows(2).position(|w| w == b"\r\n")?;
            let line = &rest[..at];
            rest = &rest[at + 2..];
            if line == b"." {
                return rest.is_empty().then_some(body);
            }
            body.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            body.extend_from_slice(b"\r\n");
        }
    }

    #[test]
    fn lf_becomes_crlf_and_dots_are_stuffed() {
        assert_eq!(
            retr(b"Subject: x\n\n.hidden\n..two\n.\nend\n"),
            b"Subject: x\r\n\r\n..hidden\r\n...two\r\n..\r\nend\r\n.\r\n"
        );
    }

    #[test]
    fn crlf_is_kept_and_lone_cr_ends_a_line() {
        assert_eq!(retr(b"a\r\nb\rc\r\n"), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(retr(b"a\r.\r\n"), b"a\r\n..\r\n.\r\n");
        assert_eq!(retr(b"a\r\r\n"), b"a\r\n\r\n.\r\n");
    }

    #[test]
    fn an_unterminated_last_line_gets_its_crlf_and_is_counted() {
        assert_eq!(retr(b"a\nno newline"), b"a\r\nno newline\r\n.\r\n");
        assert_eq!(WireSize::of(b"a\nno newline"), 15);
        assert_eq!(retr(b"x\r"), b"x\r\n.\r\n");
        assert_eq!(WireSize::of(b"x\r"), 3);
    }

    #[test]
    fn empty_message() {
        assert_eq!(retr(b""), b".\r\n");
        assert_eq!(WireSize::of(b""), 0);
    }

    #[test]
    fn smuggled_terminators_never_end_the_response() {
        for message in [
            &b"a\n.\nMAIL FROM:<x>\n"[..],
            b"a\r\n.\r\nb",
            b"a\r.\rb",
            b"a\n.\r\nb",
            b"a\r\n.\nb",
            b".",
        ] {
            let out = retr(message);
            let first_end = out.windows(5).position(|w| w == b"\r\n.\r\n");
            assert!(
                first_end.is_none() || first_end == Some(out.len() - 5),
                "{message:?} -> {out:?}"
            );
        }
    }

    #[test]
    fn top_zero_sends_headers_and_the_blank_line() {
        let message = b"From: a\nSubject: b\n\nline 1\nline 2\nline 3\n";
        assert_eq!(top(message, 0), b"From: a\r\nSubject: b\r\n\r\n.\r\n");
        assert_eq!(
            top(message, 2),
            b"From: a\r\nSubject: b\r\n\r\nline 1\r\nline 2\r\n.\r\n"
        );
        assert_eq!(top(message, 3), retr(message));
        assert_eq!(top(message, u64::MAX), retr(message));
    }

    #[test]
    fn top_of_a_message_without_body_is_the_whole_message() {
        assert_eq!(top(b"From: a\nSubject: b", 0), retr(b"From: a\nSubject: b"));
    }

    #[test]
    fn top_stops_asking_for_input_once_done() {
        let mut encoder = Encoder::top(1);
        let mut out = Vec::new();
        assert!(encoder.encode(b"H: v\n\nbody", &mut out));
        assert!(!encoder.encode(b" more\nrest\n", &mut out));
        encoder.finish(&mut out);
        assert_eq!(out, b"H: v\r\n\r\nbody more\r\n.\r\n");
    }

    fn chunked<F: FnMut(&[u8])>(message: &[u8], sizes: &[usize], mut f: F) {
        let mut rest = message;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].clamp(1, rest.len());
            f(&rest[..n]);
            rest = &rest[n..];
            k += 1;
        }
    }

    /// Bytes that exercise every branch: line ends, dots, text.
    fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b'\r'),
                Just(b'\n'),
                Just(b'.'),
                Just(b'a'),
                Just(0xffu8),
                any::<u8>()
            ],
            0..300,
        )
    }

    proptest! {
        #[test]
        fn chunking_changes_nothing(message in message_bytes(), sizes in prop::collection::vec(1usize..17, 1..5), lines in 0u64..5) {
            let mut encoder = Encoder::whole();
            let mut out = Vec::new();
            chunked(&message, &sizes, |c| { encoder.encode(c, &mut out); });
            encoder.finish(&mut out);
            prop_assert_eq!(&out, &retr(&message));

            let mut encoder = Encoder::top(lines);
            let mut out = Vec::new();
            chunked(&message, &sizes, |c| { encoder.encode(c, &mut out); });
            encoder.finish(&mut out);
            prop_assert_eq!(&out, &top(&message, lines));

            let mut size = WireSize::new();
            chunked(&message, &sizes, |c| size.update(c));
            prop_assert_eq!(size.finish(), WireSize::of(&message));
        }

        #[test]
        fn the_client_gets_back_exactly_wire_size_octets(message in message_bytes()) {
            let body = unstuff(&retr(&message)).expect("well-formed response");
            prop_assert_eq!(body.len() as u64, WireSize::of(&message));
            // Every line of the body ends in CRLF and holds no other CR or LF.
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                prop_assert_eq!(line.iter().filter(|&&b| b == b'\r').count(), 1);
                prop_assert_eq!(line.last(), Some(&b'\r'));
            }
        }

        #[test]
        fn lf_only_text_round_trips(lines in prop::collection::vec("[ -~]{0,20}", 0..10)) {
            let mut stored = Vec::new();
            let mut expected = Vec::new();
            for line in &lines {
                stored.extend_from_slice(line.as_bytes());
                stored.push(b'\n');
                expected.extend_from_slice(line.as_bytes());
                expected.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(unstuff(&retr(&stored)).expect("well-formed"), expected);
        }
    }
}
