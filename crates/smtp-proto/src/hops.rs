//! Counting `Received:` header fields while a message streams in: each
//! relay adds one (RFC 5321 §4.4), so too many means a forwarding loop
//! (RFC 5321 §6.3), and the message is refused instead of circling.

/// The field name, lower-case, with its colon.
const RECEIVED: &[u8] = b"received:";

/// Counts `Received:` fields in the header section of LF-terminated content
/// fed in pieces of any size; stops looking at the first empty line.
#[derive(Clone, Debug)]
pub struct HopCounter {
    count: u32,
    in_header: bool,
    at_line_start: bool,
    /// Octets of `received:` matched at the start of the current line.
    matched: Option<usize>,
}

impl Default for HopCounter {
    fn default() -> Self {
        HopCounter {
            count: 0,
            in_header: true,
            at_line_start: true,
            matched: None,
        }
    }
}

impl HopCounter {
    /// Takes the next piece of content.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if !self.in_header {
                return;
            }
            if self.at_line_start {
                self.at_line_start = false;
                if byte == b'\n' {
                    self.in_header = false;
                    return;
                }
                self.matched = Some(0);
            }
            if byte == b'\n' {
                self.at_line_start = true;
                self.matched = None;
                continue;
            }
            if let Some(i) = self.matched {
                self.matched = if byte.to_ascii_lowercase() == RECEIVED[i] {
                    if i + 1 == RECEIVED.len() {
                        self.count += 1;
                        None
                    } else {
                        Some(i + 1)
                    }
                } else {
                    None
                };
            }
        }
    }

    /// `Received:` fields seen so far.
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(content: &[u8], piece: usize) -> u32 {
        let mut counter = HopCounter::default();
        for chunk in content.chunks(piece) {
            counter.feed(chunk);
        }
        counter.count()
    }

    #[test]
    fn counts_header_fields_only_in_any_piece_size() {
        let content = b"Received: from a\n\tby b; date\nRECEIVED:from c\nX-Received: no\nSubject: Received: no\n received: folded, no\n\nReceived: in the body, no\n";
        for piece in 1..content.len() {
            assert_eq!(count(content, piece), 2, "piece {piece}");
        }
    }

    #[test]
    fn a_message_without_a_body_or_header() {
        assert_eq!(count(b"", 4), 0);
        assert_eq!(count(b"\nReceived: x\n", 4), 0);
        assert_eq!(count(b"Received: x", 3), 1);
    }
}
