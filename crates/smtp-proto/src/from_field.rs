//! The addresses in a message's `From:` field (RFC 5322 §3.6.2), for the
//! sender-identity check on submitted mail. Display names, comments and
//! quoting are read past; only the addr-specs are returned, parsed as
//! SMTP mailboxes so that they compare as envelope addresses do.

use crate::address::{Mailbox, parse_mailbox};

/// Why the `From:` addresses are not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromError {
    /// The header does not end within the octets given.
    Incomplete,
    /// A `From:` field is not a list of mailboxes.
    Unreadable,
}

/// Every mailbox in every `From:` field of the header at the start of
/// `message` (LF or CRLF line ends); empty if there is no `From:` field.
pub fn from_addresses(message: &[u8]) -> Result<Vec<Mailbox>, FromError> {
    addresses_in(message, &[b"from"])
}

/// Every mailbox in the originator fields, `From:` and `Sender:`
/// (RFC 5322 §3.6.2): whom a mail client shows as the author, and on
/// whose behalf.
pub fn originator_addresses(message: &[u8]) -> Result<Vec<Mailbox>, FromError> {
    addresses_in(message, &[b"from", b"sender"])
}

fn addresses_in(message: &[u8], fields: &[&[u8]]) -> Result<Vec<Mailbox>, FromError> {
    let mut found = Vec::new();
    for value in field_values(message, fields)? {
        for item in split_top_level(&strip_comments(&value)).ok_or(FromError::Unreadable)? {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let spec = match (item.find('<'), item.rfind('>')) {
                (Some(open), Some(close))
                    if open < close && item[close + 1..].trim().is_empty() =>
                {
                    &item[open + 1..close]
                }
                (None, None) => item,
                _ => return Err(FromError::Unreadable),
            };
            let mailbox = parse_mailbox(spec.trim()).map_err(|_| FromError::Unreadable)?;
            found.push(mailbox);
        }
    }
    Ok(found)
}

/// The unfolded values of the fields named `fields` (lower case).
fn field_values(message: &[u8], fields: &[&[u8]]) -> Result<Vec<String>, FromError> {
    let mut values: Vec<String> = Vec::new();
    let mut in_from = false;
    let mut rest = message;
    loop {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(FromError::Incomplete);
        };
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        if line.is_empty() {
            return Ok(values);
        }
        if matches!(line[0], b' ' | b'\t') {
            if in_from && let Some(value) = values.last_mut() {
                value.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        in_from = false;
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && fields
                .iter()
                .any(|f| line[..colon].trim_ascii().eq_ignore_ascii_case(f))
        {
            in_from = true;
            values.push(String::from_utf8_lossy(&line[colon + 1..]).into_owned());
        }
    }
}

/// `text` without its comments (RFC 5322 §3.2.2), outside quoted strings.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The items of a comma-separated list, commas inside quotes or angle
/// brackets not counting; `None` for a group (`name: …;`), which `From:`
/// may not hold.
fn split_top_level(text: &str) -> Option<Vec<&str>> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped, mut angle) = (0, false, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ':' | ';' if !quoted && !angle => return None,
            ',' if !quoted && !angle => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(header: &str) -> Result<Vec<String>, FromError> {
        from_addresses(header.as_bytes()).map(|list| list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_forms_clients_write() {
        let cases = [
            ("From: alice@test.example\n\n", vec!["alice@test.example"]),
            (
                "From: Alice <alice@test.example>\n\n",
                vec!["alice@test.example"],
            ),
            (
                "from:\"Smith, Alice\" <alice@test.example>\r\n\r\n",
                vec!["alice@test.example"],
            ),
            (
                "From: =?UTF-8?B?QWxpY2U=?= <alice@test.example>\n\n",
                vec!["alice@test.example"],
            ),
            (
                "From: alice@test.example (Alice, at work)\n\n",
                vec!["alice@test.example"],
            ),
            (
                "Subject: x\nFrom: Alice\n <alice@test.example>,\n\tBob <bob@test.example>\nTo: y\n\n",
                vec!["alice@test.example", "bob@test.example"],
            ),
            ("Subject: no from\n\nFrom: in the body\n", vec![]),
        ];
        for (header, expected) in cases {
            assert_eq!(
                addresses(header),
                Ok(expected.iter().map(|s| s.to_string()).collect()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn the_originators_are_from_and_sender() {
        let header =
            b"Sender: Bob <bob@test.example>\nFrom: alice@test.example\nReply-To: c@x.example\n\n";
        let found: Vec<String> = originator_addresses(header)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["bob@test.example", "alice@test.example"]);
        assert_eq!(from_addresses(header).unwrap().len(), 1);
    }

    #[test]
    fn every_from_field_counts() {
        assert_eq!(
            addresses("From: a@x.example\nFrom: b@y.example\n\n").unwrap(),
            ["a@x.example", "b@y.example"]
        );
    }

    #[test]
    fn what_cannot_be_read_says_so() {
        assert_eq!(
            addresses("From: undisclosed:;\n\n"),
            Err(FromError::Unreadable)
        );
        assert_eq!(
            addresses("From: Alice <alice@\n\n"),
            Err(FromError::Unreadable)
        );
        assert_eq!(
            addresses("From: not an address\n\n"),
            Err(FromError::Unreadable)
        );
        assert_eq!(
            addresses("From: a@b.example\nSubject: cut"),
            Err(FromError::Incomplete)
        );
    }
}
