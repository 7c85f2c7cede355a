//! Looking at a message's header section without parsing it.

/// What the start of a message says about its header section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    /// The header section is plain ASCII.
    Ascii,
    /// The header section has octets above 0x7F: an internationalised
    /// (RFC 6532) or broken message that RFC 6856 §2.1 forbids sending as is
    /// to a client that has not enabled UTF-8 mode.
    EightBit,
    /// The header section goes on past the bytes given.
    Incomplete,
}

/// Examines the header section found at the start of `prefix` (the first
/// bytes of a stored message). The header ends at the first empty line, with
/// LF or CRLF line ends; a message without one is all header.
pub fn check_header(prefix: &[u8], whole_message: bool) -> HeaderCheck {
    let end = header_end(prefix).unwrap_or(prefix.len());
    if !prefix[..end].is_ascii() {
        return HeaderCheck::EightBit;
    }
    if end == prefix.len() && !whole_message {
        HeaderCheck::Incomplete
    } else {
        HeaderCheck::Ascii
    }
}

/// The offset of the empty line that ends the header section, if present.
fn header_end(bytes: &[u8]) -> Option<usize> {
    if bytes.starts_with(b"\n") || bytes.starts_with(b"\r\n") {
        return Some(0);
    }
    let mut from = 0;
    while let Some(lf) = memchr::memchr(b'\n', &bytes[from..]) {
        let after = from + lf + 1;
        let rest = &bytes[after..];
        if rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
            return Some(after);
        }
        from = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_bit_body_is_fine_eight_bit_header_is_not() {
        assert_eq!(
            check_header(b"Subject: hi\n\nb\xc3\xa9\n", true),
            HeaderCheck::Ascii
        );
        assert_eq!(
            check_header(b"Subject: h\xc3\xa9\r\n\r\nbody\r\n", true),
            HeaderCheck::EightBit
        );
        assert_eq!(check_header(b"\nbody \xff", true), HeaderCheck::Ascii);
    }

    #[test]
    fn an_unfinished_header_needs_more_bytes() {
        assert_eq!(
            check_header(b"Subject: a\nFrom: b", false),
            HeaderCheck::Incomplete
        );
        assert_eq!(
            check_header(b"Subject: a\nFrom: b", true),
            HeaderCheck::Ascii
        );
        assert_eq!(check_header(b"Subject: \xff", false), HeaderCheck::EightBit);
    }
}
