//! Submission hygiene (RFC 6409 §8): a message a user submits without a
//! `Date:` or a `Message-ID:` gets one from us, so it is not refused or
//! binned further on (Gmail, for one, rejects mail without a
//! Message-ID). Only for submissions: mail arriving for our users from
//! elsewhere is stored as it came.

use crate::spool::HEAD;

/// The header fields to put in front of a submitted message whose first
/// octets are `head` (LF line ends, as spooled): `Date:` and `Message-ID:`
/// when the header has none. A header that does not end within the
/// [`HEAD`] octets kept is not looked through further, and gets nothing.
/// `id` is unique (the queue id), `date` is
/// the current time as RFC 5322 writes it. Empty when nothing is missing,
/// or when the end of the header is not within `head`.
pub(crate) fn missing_fields(head: &[u8], date: &str, id: &str, hostname: &str) -> String {
    let Some(fields) = header_fields(head) else {
        return String::new();
    };
    let mut added = String::new();
    if !fields.iter().any(|name| name.eq_ignore_ascii_case(b"date")) {
        added.push_str(&format!("Date: {date}\n"));
    }
    if !fields
        .iter()
        .any(|name| name.eq_ignore_ascii_case(b"message-id"))
    {
        added.push_str(&format!("Message-ID: <{id}@{hostname}>\n"));
    }
    added
}

/// The names of the header's fields, or `None` if the header does not end
/// within `head` (it could hold the field further on). A message that is
/// all header (no blank line) ends with `head`, if `head` is all of it.
fn header_fields(head: &[u8]) -> Option<Vec<&[u8]>> {
    let mut names = Vec::new();
    let mut rest = head;
    loop {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], Some(&rest[end + 1..])),
            None => (rest, None),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Some(names);
        }
        // A continuation line belongs to the field before it.
        if !matches!(line[0], b' ' | b'\t')
            && let Some(colon) = line.iter().position(|&b| b == b':')
        {
            names.push(trim_end(&line[..colon]));
        }
        match next {
            Some(next) => rest = next,
            // No line end: the whole message was this (short) header only
            // if the caller saw all of it.
            None => return (head.len() < HEAD).then_some(names),
        }
    }
}

fn trim_end(name: &[u8]) -> &[u8] {
    let end = name
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sun, 06 Dec 2026 19:40:00 +0000";

    fn added(head: &str) -> String {
        missing_fields(head.as_bytes(), DATE, "abc-1", "mx.example")
    }

    #[test]
    fn both_are_added_when_missing() {
        assert_eq!(
            added("From: a@b\nSubject: hi\n\nbody\n"),
            format!("Date: {DATE}\nMessage-ID: <abc-1@mx.example>\n")
        );
    }

    #[test]
    fn present_fields_are_not_added_again_whatever_their_case() {
        assert_eq!(added("DATE: x\nmessage-id: <m@x>\n\nbody\n"), "");
        assert_eq!(added("Message-Id : <m@x>\n\n"), format!("Date: {DATE}\n"));
        assert_eq!(
            added("Date: x\r\nSubject: y\r\n\r\n"),
            "Message-ID: <abc-1@mx.example>\n"
        );
    }

    #[test]
    fn only_the_header_counts() {
        // A Date: in the body or on a continuation line is not a field.
        assert_eq!(
            added("Subject: a\n Date: folded\n\nDate: in the body\nMessage-ID: too\n"),
            format!("Date: {DATE}\nMessage-ID: <abc-1@mx.example>\n")
        );
    }

    #[test]
    fn a_header_that_does_not_end_in_view_gets_nothing() {
        let long = format!("X-Long: {}\n", "a".repeat(HEAD));
        assert_eq!(added(&long[..HEAD]), "");
        // A short message that is all header, without a final line end.
        assert_eq!(
            added("Subject: only"),
            format!("Date: {DATE}\nMessage-ID: <abc-1@mx.example>\n")
        );
    }
}
