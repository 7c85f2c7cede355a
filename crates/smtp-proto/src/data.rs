//! Receiving message content: DATA (dot-terminated, RFC 5321 §4.5.2) and
//! BDAT chunks (RFC 3030).
//!
//! Content is handed on with LF line ends (as Maildir stores it) and with
//! the dot-stuffing removed.
//!
//! SMTP smuggling (CVE-2023-51764 and relatives) needs a receiver that ends
//! DATA on something other than `CRLF . CRLF`. Here only that sequence ends
//! it: the `.` line must follow a CRLF and end in CRLF. What a bare LF or a
//! bare CR (one not part of CRLF) means is the [`LineEnds`] policy's:
//!
//! - [`BareLineEnd::Normalize`]: it ends a line, as CRLF would (stored as
//!   LF), but the line after it can never be the end of data. This is
//!   Postfix's `smtpd_forbid_bare_newline = normalize`, the default for LF:
//!   scripts and appliances that send LF line ends get their mail through,
//!   and a smuggled `LF . LF` or `LF . CRLF` stays content of the one message.
//! - [`BareLineEnd::Reject`]: it is noted and the whole message is refused
//!   once it has ended (550 5.5.2), so nothing that another server might read
//!   as an end of data can sit inside a message we accept.
//!
//! Either way the content we store, deliver and relay has canonical line
//! ends and is stuffed again on the way out, so no receiver after us can
//! find an end of data inside it.

use memchr::memchr2;

/// What a line end other than CRLF inside DATA does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareLineEnd {
    /// It ends a line, like CRLF; a `.` line after it does not end the data.
    Normalize,
    /// The message is refused with 550 5.5.2 once it has ended.
    Reject,
}

/// The policy for bare LF and bare CR in DATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineEnds {
    /// An LF without a CR before it.
    pub bare_lf: BareLineEnd,
    /// A CR without an LF after it.
    pub bare_cr: BareLineEnd,
}

impl Default for LineEnds {
    /// Bare LF normalised (Postfix's default since 3.9); bare CR refused:
    /// no common sender produces it, it is what `CR . CR` smuggling is made
    /// of, and a CR inside a line is not a line end to most software.
    fn default() -> Self {
        LineEnds {
            bare_lf: BareLineEnd::Normalize,
            bare_cr: BareLineEnd::Reject,
        }
    }
}

impl LineEnds {
    /// Both refused: RFC 5321 §2.3.8 to the letter.
    pub const STRICT: LineEnds = LineEnds {
        bare_lf: BareLineEnd::Reject,
        bare_cr: BareLineEnd::Reject,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line. `clean`: the line end before it was CRLF
    /// (or the data just began), so a `.` line here may end the data.
    LineStart { clean: bool },
    /// In a line.
    Text,
    /// A CR was seen in a line; an LF should follow.
    Cr,
    /// A `.` at the start of a line.
    Dot { clean: bool },
    /// `.` CR at the start of a line: an LF ends the data if `clean`.
    DotCr { clean: bool },
    /// The end was seen.
    Done,
}

/// A DATA receiver: feed it bytes until it reports the end.
#[derive(Clone, Debug)]
pub struct DataReceiver {
    state: State,
    /// The message's size so far: the octets kept, a line end counted as
    /// CRLF.
    received: u64,
    limit: u64,
    policy: LineEnds,
    /// A bare line end the policy refuses was seen.
    refused_line_end: bool,
    /// A bare line end was taken as a line end.
    normalized: bool,
}

/// How a DATA transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// A message within the limit whose line ends the policy accepts.
    Complete,
    /// More octets than the size limit; the content was not kept.
    TooBig,
    /// A bare LF or bare CR the policy refuses was found.
    BareLineEnd,
}

impl DataReceiver {
    /// A receiver that keeps at most `limit` octets and treats bare line
    /// ends as `policy` says.
    pub fn new(limit: u64, policy: LineEnds) -> DataReceiver {
        DataReceiver {
            state: State::LineStart { clean: true },
            received: 0,
            limit,
            policy,
            refused_line_end: false,
            normalized: false,
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
        } else if self.refused_line_end {
            DataEnd::BareLineEnd
        } else {
            DataEnd::Complete
        }
    }

    /// Whether a bare LF or CR was taken as a line end (for the log).
    pub fn normalized(&self) -> bool {
        self.normalized
    }

    /// Feeds bytes; content goes to `out` until the limit is passed, after
    /// which the rest is only scanned for the end. Returns
    /// how many bytes were used: after the end, the rest is not DATA.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return i,
                State::LineStart { clean } => {
                    if input[i] == b'.' {
                        self.state = State::Dot { clean };
                        i += 1;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Dot { clean } => match input[i] {
                    b'\r' => {
                        self.state = State::DotCr { clean };
                        i += 1;
                    }
                    // ".\n" is not an end of data (only CRLF.CRLF is). RFC
                    // 5321 §4.5.2 removes a leading dot only when more
                    // follows on the line, so the "." stays.
                    b'\n' => {
                        self.emit(b".", out);
                        self.bare_lf(out);
                        i += 1;
                    }
                    // RFC 5321 §4.5.2: a leading dot with more on the line is removed.
                    _ => self.state = State::Text,
                },
                State::DotCr { clean } => {
                    if input[i] == b'\n' {
                        i += 1;
                        if clean {
                            self.state = State::Done;
                            return i;
                        }
                        // ". CRLF" after a bare line end: a "." line of content.
                        self.emit(b".", out);
                        self.line_end(out);
                        self.state = State::LineStart { clean: true };
                    } else {
                        // ". CR x": a bare CR after the dot.
                        self.emit(b".", out);
                        self.bare_cr(out);
                    }
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        self.line_end(out);
                        self.state = State::LineStart { clean: true };
                        i += 1;
                    } else {
                        self.bare_cr(out);
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
                            self.bare_lf(out);
                        }
                        i = end + 1;
                    }
                },
            }
        }
        i
    }

    /// An LF without a CR before it has been read. Either way the next line
    /// cannot end the data, so `LF . CRLF` and `LF . LF` never do.
    fn bare_lf(&mut self, out: &mut Vec<u8>) {
        self.bare_line_end(self.policy.bare_lf);
        self.line_end(out);
        self.state = State::LineStart { clean: false };
    }

    /// A CR not followed by LF has been read (the byte after it is not used).
    fn bare_cr(&mut self, out: &mut Vec<u8>) {
        self.bare_line_end(self.policy.bare_cr);
        match self.policy.bare_cr {
            BareLineEnd::Normalize => {
                self.line_end(out);
                self.state = State::LineStart { clean: false };
            }
            // The message is refused; the CR starts no line, so `CR . CRLF`
            // cannot end the data.
            BareLineEnd::Reject => {
                self.emit(b"\r", out);
                self.state = State::Text;
            }
        }
    }

    fn bare_line_end(&mut self, policy: BareLineEnd) {
        match policy {
            BareLineEnd::Normalize => self.normalized = true,
            BareLineEnd::Reject => self.refused_line_end = true,
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.received += bytes.len() as u64;
        if self.received <= self.limit {
            out.extend_from_slice(bytes);
        }
    }

    /// A line end, kept as LF. The size counts it as the CRLF it is on the
    /// wire: RFC 1870's message size includes the CR-LF pairs, as BDAT's
    /// chunk sizes do, so DATA and BDAT take the same messages.
    fn line_end(&mut self, out: &mut Vec<u8>) {
        self.received += 2;
        if self.received <= self.limit {
            out.push(b'\n');
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

    fn receive_with(policy: LineEnds, input: &[u8], chunk: usize) -> (Vec<u8>, usize, DataEnd) {
        let mut receiver = DataReceiver::new(1 << 20, policy);
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

    fn receive(input: &[u8], chunk: usize) -> (Vec<u8>, usize, DataEnd) {
        receive_with(LineEnds::default(), input, chunk)
    }

    const POLICIES: [LineEnds; 4] = [
        LineEnds::STRICT,
        LineEnds {
            bare_lf: BareLineEnd::Normalize,
            bare_cr: BareLineEnd::Reject,
        },
        LineEnds {
            bare_lf: BareLineEnd::Reject,
            bare_cr: BareLineEnd::Normalize,
        },
        LineEnds {
            bare_lf: BareLineEnd::Normalize,
            bare_cr: BareLineEnd::Normalize,
        },
    ];

    #[test]
    fn crlf_dot_crlf_ends_and_dots_are_unstuffed() {
        let input = b"Subject: x\r\n\r\n..hidden\r\n.x\r\n...\r\nend\r\n.\r\nQUIT\r\n";
        for policy in POLICIES {
            for chunk in [1, 2, 3, 5, 100] {
                let (out, used, end) = receive_with(policy, input, chunk);
                assert_eq!(out, b"Subject: x\n\n.hidden\nx\n..\nend\n", "chunk {chunk}");
                assert_eq!(&input[used..], b"QUIT\r\n");
                assert_eq!(end, DataEnd::Complete);
            }
        }
        assert_eq!(receive(b".\r\n", 1), (Vec::new(), 3, DataEnd::Complete));
    }

    const SMUGGLING_VECTORS: [&[u8]; 7] = [
        b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r", b"\n.\r",
    ];

    fn smuggle(vector: &[u8]) -> Vec<u8> {
        let mut input = b"Subject: x\r\n\r\na".to_vec();
        input.extend_from_slice(vector);
        input.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nspoof\r\n.\r\n");
        input
    }

    /// SI-01: whatever the policy, the smuggling vectors never end the data.
    #[test]
    fn smuggling_vectors_never_end_data() {
        for policy in POLICIES {
            for vector in SMUGGLING_VECTORS {
                let input = smuggle(vector);
                for chunk in [1, 4, 1000] {
                    let (out, used, _) = receive_with(policy, &input, chunk);
                    assert_eq!(used, input.len(), "{vector:?} ended early under {policy:?}");
                    assert!(out.windows(4).any(|w| w == b"MAIL"));
                }
            }
        }
    }

    /// With both refused, every vector gets the message refused.
    #[test]
    fn strict_policy_refuses_every_vector() {
        for vector in SMUGGLING_VECTORS {
            let (_, _, end) = receive_with(LineEnds::STRICT, &smuggle(vector), 3);
            assert_eq!(end, DataEnd::BareLineEnd, "{vector:?}");
        }
    }

    /// The default: a bare LF is a line end (the smuggled text stays content
    /// of the one message); a bare CR gets the message refused.
    #[test]
    fn default_policy_normalizes_lf_and_refuses_cr() {
        for vector in SMUGGLING_VECTORS {
            let has_bare_cr = vector
                .iter()
                .enumerate()
                .any(|(k, &b)| b == b'\r' && vector.get(k + 1) != Some(&b'\n'));
            let (out, _, end) = receive(&smuggle(vector), 2);
            if has_bare_cr {
                assert_eq!(end, DataEnd::BareLineEnd, "{vector:?}");
            } else {
                assert_eq!(end, DataEnd::Complete, "{vector:?}");
                // The smuggled "." line is content, and every line ends in LF.
                assert!(out.windows(3).any(|w| w == b"\n.\n"), "{vector:?}: {out:?}");
                assert!(!out.contains(&b'\r'));
            }
        }
    }

    #[test]
    fn lf_only_content_is_taken_as_lines() {
        let input = b"Subject: x\n\na\n.\n..b\n.\r\nc\r\n.\r\nNOOP\r\n";
        for chunk in [1, 2, 7, 100] {
            let (out, used, end) = receive(input, chunk);
            // "." after a bare LF stays a line of content (nothing else is
            // on it, so RFC 5321 §4.5.2 removes no dot); "..b" is unstuffed
            // as usual; ". CRLF" after a bare LF ends nothing either.
            assert_eq!(out, b"Subject: x\n\na\n.\n.b\n.\nc\n", "chunk {chunk}");
            assert_eq!(&input[used..], b"NOOP\r\n");
            assert_eq!(end, DataEnd::Complete);
        }
        let mut receiver = DataReceiver::new(100, LineEnds::default());
        receiver.feed(b"a\r\n.\r\n", &mut Vec::new());
        assert!(!receiver.normalized());
        let mut receiver = DataReceiver::new(100, LineEnds::default());
        receiver.feed(b"a\n\r\n.\r\n", &mut Vec::new());
        assert!(receiver.normalized());
    }

    #[test]
    fn bare_cr_normalized_is_a_line_end() {
        let policy = LineEnds {
            bare_lf: BareLineEnd::Reject,
            bare_cr: BareLineEnd::Normalize,
        };
        for chunk in [1, 3, 100] {
            let (out, _, end) = receive_with(policy, b"a\rb\r\r\n.\rc\r\n.\r\n", chunk);
            assert_eq!(out, b"a\nb\n\n.\nc\n", "chunk {chunk}");
            assert_eq!(end, DataEnd::Complete);
        }
    }

    /// RFC 1870: the size counts the CR-LF pairs (and neither the
    /// stuffing dots nor the end of data), as a BDAT chunk's size does.
    #[test]
    fn the_size_counts_each_line_end_as_crlf() {
        for (content, fits) in [
            (&b"1234\r\n..678\r\n.\r\n"[..], true),
            (b"1234\r\n..6789\r\n.\r\n", false),
            // A bare LF taken as a line end counts as the CRLF it becomes.
            (b"1234\n.678\r\n.\r\n", true),
            (b"12345\n6789\r\n.\r\n", false),
        ] {
            let mut receiver = DataReceiver::new(12, LineEnds::default());
            receiver.feed(content, &mut Vec::new());
            assert!(receiver.is_done());
            let want = if fits {
                DataEnd::Complete
            } else {
                DataEnd::TooBig
            };
            assert_eq!(receiver.end(), want, "{content:?}");
        }
    }

    #[test]
    fn oversize_data_is_read_to_the_end_and_not_kept() {
        let mut receiver = DataReceiver::new(10, LineEnds::default());
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
        /// Any bytes, any policy: how the input is split changes nothing.
        #[test]
        fn chunking_changes_nothing(
            bytes in prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a')], 0..64),
            chunk in 1usize..9,
            policy in 0usize..4,
        ) {
            let mut input = bytes;
            input.extend_from_slice(b"\r\n.\r\n");
            let policy = POLICIES[policy];
            let whole = receive_with(policy, &input, input.len());
            prop_assert_eq!(receive_with(policy, &input, chunk), whole);
        }

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
