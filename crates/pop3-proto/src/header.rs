//! Looking at a message's header section without parsing it.

/// What the start of a message says about its header section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    /// The header section is plain ASCII.
    Ascii,
    /// The header section has UTF-8 beyond ASCII: an internationalised
    /// message (RFC 6532), which RFC 6856 §2.1 forbids sending as it is to a
    /// client that has not enabled UTF-8 mode.
    Utf8,
    /// The header section has octets above 0x7F that are not UTF-8: legacy
    /// 8-bit mail (raw Latin-1 and the like), not an internationalised
    /// message; servers have always sent it as it is.
    Other8Bit,
    /// The header section goes on past the bytes given and is ASCII so far.
    Incomplete,
}

/// Examines the header section found at the start of `prefix` (the first
/// bytes of a stored message). The header ends at the first empty line, with
/// LF or CRLF line ends; a message without one is all header.
/// `whole_message` says whether `prefix` is the entire message.
pub fn check_header(prefix: &[u8], whole_message: bool) -> HeaderCheck {
    let end = header_end(prefix);
    let header = &prefix[..end.unwrap_or(prefix.len())];
    if header.is_ascii() {
        return if end.is_none() && !whole_message {
            HeaderCheck::Incomplete
        } else {
            HeaderCheck::Ascii
        };
    }
    match std::str::from_utf8(header) {
        Ok(_) => HeaderCheck::Utf8,
        // A character cut off by the end of the prefix is not an error.
        Err(e) if e.error_len().is_none() && end.is_none() && !whole_message => HeaderCheck::Utf8,
        Err(_) => HeaderCheck::Other8Bit,
    }
}

/// The length of the header section at the start of `bytes`, through the
/// empty line that ends it, if that line is there.
pub fn header_len(bytes: &[u8]) -> Option<usize> {
    let end = header_end(bytes)?;
    let blank = if bytes[end] == b'\n' { 1 } else { 2 };
    Some(end + blank)
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
    fn only_utf8_in_the_header_needs_utf8_mode() {
        assert_eq!(
            check_header(b"Subject: hi\n\nb\xc3\xa9\n", true),
            HeaderCheck::Ascii
        );
        assert_eq!(
            check_header("Subject: hé\r\n\r\nbody\r\n".as_bytes(), true),
            HeaderCheck::Utf8
        );
        assert_eq!(
            check_header(b"Subject: h\xe9\n\nbody\n", true),
            HeaderCheck::Other8Bit
        );
        assert_eq!(check_header(b"\nbody \xff", true), HeaderCheck::Ascii);
    }

    #[test]
    fn header_len_runs_through_the_empty_line() {
        assert_eq!(header_len(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(header_len(b"\nbody"), Some(1));
        assert_eq!(header_len(b"A: b\nC: d"), None);
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
        assert_eq!(check_header(b"Subject: \xc3", false), HeaderCheck::Utf8);
        assert_eq!(check_header(b"Subject: \xc3", true), HeaderCheck::Other8Bit);
        assert_eq!(
            check_header(b"Subject: \xff", false),
            HeaderCheck::Other8Bit
        );
    }
}
