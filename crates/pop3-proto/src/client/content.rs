//! Undoing the byte-stuffing of a multi-line response (RFC 1939 §3) as it
//! streams in, whatever the length of its lines: a message may have lines
//! of any length, so content is never split into bounded lines.

/// Where the decoder is within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    Middle,
    /// After a `.` that started a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
}

/// An incremental decoder for the body of a multi-line response: drops the
/// leading `.` of stuffed lines and stops at the `.` CRLF line. The output
/// is the message as the server holds it, CRLF line ends included.
#[derive(Clone, Debug)]
pub(crate) struct ContentDecoder {
    at: At,
}

impl ContentDecoder {
    /// A decoder at the start of the body (just after the `+OK` line).
    pub(crate) fn new() -> Self {
        ContentDecoder { at: At::LineStart }
    }

    /// Decodes from `input` into `out`. Returns how many input bytes were
    /// used and whether the terminating line was reached (bytes after it
    /// are left unread: they belong to the next reply).
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            match self.at {
                At::Middle => {
                    // Copy up to and including the next LF in one go.
                    match memchr::memchr(b'\n', &input[i..]) {
                        Some(lf) => {
                            out.extend_from_slice(&input[i..=i + lf]);
                            i += lf + 1;
                            self.at = At::LineStart;
                        }
                        None => {
                            out.extend_from_slice(&input[i..]);
                            i = input.len();
                        }
                    }
                }
                At::LineStart => {
                    let b = input[i];
                    i += 1;
                    if b == b'.' {
                        self.at = At::Dot;
                    } else {
                        out.push(b);
                        self.at = if b == b'\n' {
                            At::LineStart
                        } else {
                            At::Middle
                        };
                    }
                }
                At::Dot => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'\r' => self.at = At::DotCr,
                        // A bare LF ends the response too: servers that send
                        // bare LF lines send the terminator that way as well.
                        b'\n' => return (i, true),
                        _ => {
                            // A stuffed line: the first dot goes, the rest stays.
                            out.push(b);
                            self.at = At::Middle;
                        }
                    }
                }
                At::DotCr => {
                    if input[i] == b'\n' {
                        return (i + 1, true);
                    }
                    // `.` CR then something else: a stuffed line whose text
                    // starts with CR. Keep the CR and read on.
                    out.push(b'\r');
                    self.at = At::Middle;
                }
            }
        }
        (i, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(wire: &[u8], piece: usize) -> (Vec<u8>, Option<usize>) {
        let mut decoder = ContentDecoder::new();
        let mut out = Vec::new();
        let mut offset = 0;
        for chunk in wire.chunks(piece) {
            let (used, done) = decoder.decode(chunk, &mut out);
            if done {
                return (out, Some(offset + used));
            }
            offset += used;
        }
        (out, None)
    }

    #[test]
    fn unstuffs_and_stops_at_the_terminator_in_any_split() {
        let wire = b"Subject: x\r\n\r\n..leading dot\r\n...\r\n.x\r\nend\r\n.\r\n+OK next";
        for piece in 1..wire.len() {
            let (out, end) = decode_in_pieces(wire, piece);
            assert_eq!(out, b"Subject: x\r\n\r\n.leading dot\r\n..\r\nx\r\nend\r\n");
            assert_eq!(end, Some(wire.len() - b"+OK next".len()), "piece {piece}");
        }
    }

    #[test]
    fn empty_body_and_missing_terminator() {
        assert_eq!(decode_in_pieces(b".\r\n", 1), (Vec::new(), Some(3)));
        let (out, end) = decode_in_pieces(b"line\r\nno end\r\n", 4);
        assert_eq!(out, b"line\r\nno end\r\n");
        assert_eq!(end, None);
    }

    #[test]
    fn dot_in_the_middle_of_a_line_is_content() {
        let (out, end) = decode_in_pieces(b"a.\r\n b .\r\n.\r\n", 2);
        assert_eq!(out, b"a.\r\n b .\r\n");
        assert!(end.is_some());
    }

    #[test]
    fn encoder_output_round_trips() {
        let stored = b"From: a\n\n.\n..\nx.\n.y\nlast";
        let mut wire = Vec::new();
        yubin_line::Encoder::whole().encode_all(stored, &mut wire);
        let (out, end) = decode_in_pieces(&wire, 3);
        assert_eq!(out, b"From: a\r\n\r\n.\r\n..\r\nx.\r\n.y\r\nlast\r\n");
        assert_eq!(end, Some(wire.len()));
    }
}
