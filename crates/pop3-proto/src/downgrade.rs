//! RFC 6858's simplified downgrade: the surrogate header a client that has
//! not enabled UTF-8 mode receives in place of an internationalised one.
//!
//! Only the message's own header section changes; the body, MIME part
//! headers included, goes out as stored (8-bit bodies always have). Field
//! by field, for a field with UTF-8 in it:
//!
//! - An address field (RFC 6858 §2.1: From, To, Cc, Bcc, Reply-To, Sender,
//!   Return-Path and their Resent- forms): each address whose mailbox has
//!   UTF-8 becomes `=?UTF-8?B?…?= <invalid@internationalized-address.invalid>`,
//!   the encoded-words telling the user the original name and address (an
//!   address in `.invalid` can belong to nobody); a UTF-8 display name of
//!   an ASCII address is encoded and the address kept. A field that does
//!   not parse as an address list becomes an empty group whose name is the
//!   whole original value, encoded (RFC 6858's `internationalized-address:;`).
//! - `Content-Type` and `Content-Disposition` lose the parameters that have
//!   UTF-8 in them (§2.2).
//! - Unstructured fields (Subject, Comments, and fields this module does
//!   not know as structured, such as `X-` fields) are encoded as RFC 2047
//!   encoded-words (§2.3, RFC 2047 §5 (1)).
//! - Any other field (Received, Message-ID, References, Date, …, where RFC
//!   2047 forbids encoded-words) is left out (§2.4).
//!
//! Encoded-words are B-encoded UTF-8, at most 75 characters each, never
//! splitting a character (RFC 2047 §2, §5), on lines folded with a space.
//! The function is pure: the same stored header always gives the same
//! surrogate, so the size announced by LIST is the size RETR sends.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The address that stands for an internationalised one (RFC 6858 §2.1).
const INVALID: &str = "invalid@internationalized-address.invalid";

/// The longest encoded-word (RFC 2047 §2).
const MAX_WORD: usize = 75;

/// Raw octets per encoded-word: `=?UTF-8?B?` and `?=` take 12 of the 75,
/// leaving 63 base64 characters, so 45 octets (60 characters).
const WORD_OCTETS: usize = 45;

/// Fields whose addresses RFC 6858 §2.1 replaces.
const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "return-path",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
];

/// Other fields that hold addresses, where an encoded-word may not stand
/// (RFC 2047 §5): left out when they carry UTF-8.
const ADDRESS_LIKE_FIELDS: &[&str] = &[
    "disposition-notification-to",
    "mail-followup-to",
    "mail-reply-to",
    "original-recipient",
    "errors-to",
    "delivered-to",
    "x-original-to",
];

/// Fields whose bodies are structured (RFC 5322, RFC 2045, RFC 5321 trace),
/// where an encoded-word may not stand (RFC 2047 §5): left out when they
/// carry UTF-8. Content-Type and Content-Disposition lose parameters instead.
const STRUCTURED_FIELDS: &[&str] = &[
    "received",
    "message-id",
    "in-reply-to",
    "references",
    "date",
    "resent-date",
    "resent-message-id",
    "mime-version",
    "content-transfer-encoding",
    "content-id",
    "keywords",
    "dkim-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "authentication-results",
    "received-spf",
    "list-id",
    "list-post",
    "list-unsubscribe",
];

/// The surrogate of a header section (the stored bytes up to and including
/// the empty line that ends it, or the whole message if it has none), or
/// `None` when the header needs no downgrade: it is ASCII, or its 8-bit
/// octets are not UTF-8 (legacy mail, sent as it is). The surrogate uses LF
/// line ends and ends as the original did (with the empty line, if any).
pub fn downgrade_header(header: &[u8]) -> Option<Vec<u8>> {
    if header.is_ascii() {
        return None;
    }
    std::str::from_utf8(header).ok()?;
    let mut out = Vec::with_capacity(header.len() + header.len() / 2);
    for field in fields(header) {
        match field {
            Field::Blank(line) => out.extend_from_slice(line),
            Field::Other(raw) if raw.is_ascii() => out.extend_from_slice(raw),
            // A line that is not a field, with UTF-8 in it: nothing to keep.
            Field::Other(_) => {}
            Field::Named { raw, .. } if raw.is_ascii() => out.extend_from_slice(raw),
            Field::Named { name, value, .. } => {
                if let Some(surrogate) = downgrade_field(name, value) {
                    out.extend_from_slice(surrogate.as_bytes());
                }
            }
        }
    }
    Some(out)
}

/// One piece of a header section.
enum Field<'a> {
    /// `name: value` with its continuation lines; `raw` is all of it, line
    /// ends included, `value` the text after the colon.
    Named {
        raw: &'a [u8],
        name: &'a str,
        value: &'a [u8],
    },
    /// The empty line that ends the header.
    Blank(&'a [u8]),
    /// A line that is not a field (no colon, or an invalid name).
    Other(&'a [u8]),
}

/// Splits a header section into fields, keeping every byte of each.
fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < header.len() {
        let line_end = |from: usize| {
            memchr::memchr(b'\n', &header[from..]).map_or(header.len(), |i| from + i + 1)
        };
        let mut end = line_end(at);
        let line = &header[at..end];
        if line == b"\n" || line == b"\r\n" {
            out.push(Field::Blank(line));
            at = end;
            continue;
        }
        // Continuation lines start with a space or a tab (RFC 5322 §2.2.3).
        while end < header.len() && matches!(header[end], b' ' | b'\t') {
            end = line_end(end);
        }
        let raw = &header[at..end];
        let named = memchr::memchr(b':', raw).and_then(|colon| {
            let name = std::str::from_utf8(&raw[..colon]).ok()?;
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic());
            valid.then(|| (name, &raw[colon + 1..]))
        });
        out.push(match named {
            Some((name, value)) => Field::Named { raw, name, value },
            None => Field::Other(raw),
        });
        at = end;
    }
    out
}

/// The surrogate of one field with UTF-8 in it (LF line end included), or
/// `None` to leave it out.
fn downgrade_field(name: &str, value: &[u8]) -> Option<String> {
    let value = unfold(std::str::from_utf8(value).ok()?);
    let lower = name.to_ascii_lowercase();
    // Only folding white space is trimmed: other spaces are text.
    let text = value.trim_matches([' ', '\t']);
    let body = if lower == "return-path" {
        // RFC 5322 §3.6.7: an angle-addr alone, no display name.
        if text.is_ascii() {
            return None;
        }
        format!("<{INVALID}>")
    } else if ADDRESS_FIELDS.contains(&lower.as_str()) {
        address_list(&value)
            .map(|addresses| addresses.join(", "))
            .unwrap_or_else(|| format!("{} :;", encoded_words(text)))
    } else if lower == "content-type" || lower == "content-disposition" {
        ascii_parameters(&value)?
    } else if STRUCTURED_FIELDS.contains(&lower.as_str())
        || ADDRESS_LIKE_FIELDS.contains(&lower.as_str())
    {
        return None;
    } else {
        encoded_words(text)
    };
    Some(fold(name, &body))
}

/// RFC 5322 §2.2.3: a line end followed by white space is only folding.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// `name: body`, with the body's words folded onto lines of at most 76
/// characters where it has spaces to fold at (RFC 2047 §2), and an LF.
fn fold(name: &str, body: &str) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    for word in body.split(' ') {
        // Even the first word goes to a continuation line when it would
        // not fit after the name ("Subject:" CRLF SP word is still folding).
        if line + 1 + word.len() > 76 && line > 1 {
            out.push_str("\n ");
            line = 1;
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out.push('\n');
    out
}

/// `text` as B-encoded UTF-8 encoded-words, separated by spaces (which a
/// decoder drops between adjacent encoded-words, RFC 2047 §6.2).
fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + WORD_OCTETS).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let word = format!("=?UTF-8?B?{}?=", STANDARD.encode(&text[start..end]));
        debug_assert!(word.len() <= MAX_WORD);
        words.push(word);
        start = end;
    }
    if words.is_empty() {
        words.push("=?UTF-8?B??=".to_owned());
    }
    words.join(" ")
}

/// The value of an address field, address by address (see the module
/// documentation), or `None` if it does not parse as an address list.
fn address_list(value: &str) -> Option<Vec<String>> {
    members(value, true)
}

/// The addresses of a list; groups only at the top (RFC 5322 §3.4: a
/// group's members are mailboxes), so hostile nesting cannot recurse deep.
fn members(value: &str, groups: bool) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for item in split_top_level(value, ',')? {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        out.push(address(item, groups)?);
    }
    (!out.is_empty()).then_some(out)
}

/// `text` without its comments (RFC 5322 §3.2.2), outside quoted strings.
fn strip_comments(text: &str) -> String {
    let mut scan = Scanner::default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let in_comment_before = scan.comment > 0;
        scan.step(c);
        if !in_comment_before && scan.comment == 0 && c != ')' {
            out.push(c);
        }
    }
    out
}

/// One address (`name <mailbox>`, a bare mailbox, or a group).
fn address(item: &str, groups: bool) -> Option<String> {
    let item = &strip_comments(item);
    let item = item.trim();
    if let Some(colon) = top_level_find(item, ':')
        && !item[..colon].contains('<')
        && item.trim_end().ends_with(';')
    {
        // A group needs a display name; a nested one is not a group.
        if !groups || item[..colon].trim().is_empty() {
            return None;
        }
        let name = phrase(&item[..colon]);
        let members = item.trim_end().trim_end_matches(';')[colon + 1..].to_owned();
        let members = if members.trim().is_empty() {
            Vec::new()
        } else {
            self::members(&members, false)?
        };
        return Some(format!("{name}: {};", members.join(", ")));
    }
    let (display, mailbox) = match top_level_find(item, '<') {
        Some(open) => {
            let close = item[open..].find('>')? + open;
            if !item[close + 1..].trim().is_empty() {
                return None;
            }
            (item[..open].trim(), item[open + 1..close].trim())
        }
        None => ("", item),
    };
    if mailbox.contains([' ', '<', '>', ',']) {
        return None;
    }
    if mailbox.is_ascii() {
        if display.is_empty() {
            return Some(format!("<{mailbox}>"));
        }
        return Some(format!("{} <{mailbox}>", phrase(display)));
    }
    let shown = if display.is_empty() {
        mailbox.to_owned()
    } else {
        format!("{} ({mailbox})", display.trim_matches('"'))
    };
    Some(format!("{} <{INVALID}>", encoded_words(&shown)))
}

/// A display name as it may stand in a header: as it is if ASCII, else as
/// encoded-words (the quotes of a quoted name dropped; RFC 2047 §5 (3)).
fn phrase(text: &str) -> String {
    let text = text.trim();
    if text.is_ascii() {
        text.to_owned()
    } else {
        encoded_words(text.trim_matches('"'))
    }
}

/// Splits at `separator` outside quoted strings, comments and angle
/// brackets; `None` if the quoting does not balance.
fn split_top_level(text: &str, separator: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut scan = Scanner::default();
    for (i, c) in text.char_indices() {
        if scan.step(c) && c == separator {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    scan.balanced().then(|| {
        parts.push(&text[start..]);
        parts
    })
}

/// The first `wanted` outside quoted strings and comments.
fn top_level_find(text: &str, wanted: char) -> Option<usize> {
    let mut scan = Scanner::default();
    text.char_indices()
        .find(|&(_, c)| scan.step(c) && c == wanted)
        .map(|(i, _)| i)
}

/// Tracks quoted strings, comments and angle brackets.
#[derive(Default)]
struct Scanner {
    quoted: bool,
    escaped: bool,
    comment: u32,
    angle: bool,
}

impl Scanner {
    /// Takes the next character; returns whether it stands at the top level
    /// (outside quotes, comments and `<…>`).
    fn step(&mut self, c: char) -> bool {
        if self.escaped {
            self.escaped = false;
            return false;
        }
        match c {
            '\\' if self.quoted || self.comment > 0 => {
                self.escaped = true;
                false
            }
            '"' if self.comment == 0 => {
                self.quoted = !self.quoted;
                false
            }
            '(' if !self.quoted => {
                self.comment += 1;
                false
            }
            ')' if !self.quoted && self.comment > 0 => {
                self.comment -= 1;
                false
            }
            '<' if !self.quoted && self.comment == 0 => {
                let top = !self.angle;
                self.angle = true;
                top
            }
            '>' if !self.quoted && self.comment == 0 => {
                self.angle = false;
                false
            }
            _ => !self.quoted && self.comment == 0 && !self.angle,
        }
    }

    fn balanced(&self) -> bool {
        !self.quoted && self.comment == 0 && !self.angle
    }
}

/// A Content-Type or Content-Disposition value without the parameters
/// that have UTF-8 in them (RFC 6858 §2.2); `None` if nothing is left.
fn ascii_parameters(value: &str) -> Option<String> {
    let parts = split_top_level(value, ';')?;
    let kept: Vec<&str> = parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty() && p.is_ascii())
        .collect();
    // The type itself (the first part) must survive.
    if parts.first().is_none_or(|first| !first.is_ascii()) {
        return None;
    }
    Some(kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(header: &str) -> String {
        String::from_utf8(downgrade_header(header.as_bytes()).expect("downgraded")).expect("ASCII")
    }

    fn decode_words(text: &str) -> String {
        text.split_whitespace()
            .filter_map(|w| w.strip_prefix("=?UTF-8?B?")?.strip_suffix("?="))
            .map(|b64| String::from_utf8(STANDARD.decode(b64).expect("base64")).expect("UTF-8"))
            .collect()
    }

    #[test]
    fn ascii_and_legacy_headers_need_nothing() {
        assert_eq!(downgrade_header(b"Subject: hi\n\n"), None);
        assert_eq!(downgrade_header(b"Subject: caf\xe9\n\n"), None);
    }

    #[test]
    fn the_surrogate_is_ascii_and_keeps_ascii_fields_byte_for_byte() {
        let header = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
                      Subject: Grüße aus Köln\r\n\
                      Message-ID: <x@y>\r\n\
                      X-Tag: ☕\r\n\
                      \r\n";
        let out = down(header);
        assert!(out.is_ascii());
        assert!(out.starts_with(
            "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: =?UTF-8?B?"
        ));
        assert!(out.contains("Message-ID: <x@y>\r\n"));
        assert!(out.ends_with("\r\n"));
        let subject = out.lines().find(|l| l.starts_with("Subject:")).unwrap();
        assert_eq!(decode_words(&subject[8..]), "Grüße aus Köln");
        let tag = out.lines().find(|l| l.starts_with("X-Tag:")).unwrap();
        assert_eq!(decode_words(&tag[6..]), "☕");
    }

    #[test]
    fn long_values_fold_into_short_encoded_words_without_splitting_characters() {
        let subject = "日本語のとても長い件名です。".repeat(8);
        let out = down(&format!("Subject: {subject}\n\n"));
        for line in out.lines() {
            assert!(line.len() <= 76, "{line}");
            for word in line.split_whitespace().filter(|w| w.starts_with("=?")) {
                assert!(word.len() <= 75, "{word}");
            }
        }
        let value: String = out
            .lines()
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(decode_words(&value["Subject:".len()..]), subject);
    }

    /// RFC 6858 §2.1: internationalised addresses become invalid ones whose
    /// display name tells what they were; ASCII addresses stay.
    #[test]
    fn addresses() {
        let out = down(
            "From: Zoë <zoe@example.org>\n\
             To: jörg@bücher.example, \"Ann\" <ann@example.org>, (c) bob@example.org\n\
             Cc: Füße <füße@example.de>\n\n",
        );
        let from = out.lines().find(|l| l.starts_with("From:")).unwrap();
        assert!(from.ends_with(" <zoe@example.org>"), "{from}");
        assert_eq!(decode_words(&from[5..from.len() - 18]), "Zoë");
        let to: String = out
            .lines()
            .skip_while(|l| !l.starts_with("To:"))
            .take_while(|l| l.starts_with("To:") || l.starts_with(' '))
            .collect();
        assert!(to.contains(&format!("<{INVALID}>")), "{to}");
        assert!(to.contains("\"Ann\" <ann@example.org>"), "{to}");
        assert!(
            to.contains("<bob@example.org>") || to.contains("bob@example.org"),
            "{to}"
        );
        let cc = out.lines().find(|l| l.starts_with("Cc:")).unwrap();
        assert_eq!(
            decode_words(cc[3..].trim_end_matches(&format!("<{INVALID}>"))),
            "Füße (füße@example.de)"
        );
    }

    #[test]
    fn an_unparsable_address_field_becomes_an_empty_group() {
        let out = down("To: Jörg <broken\n\n");
        let to = out.lines().next().unwrap();
        assert!(to.ends_with(" :;"), "{to}");
        assert_eq!(decode_words(&to[3..to.len() - 3]), "Jörg <broken");
    }

    #[test]
    fn mime_parameters_with_utf8_are_left_out_and_structured_fields_dropped() {
        let out = down(
            "Content-Type: text/plain; charset=utf-8; name=\"Grüße.txt\"\n\
             Content-Disposition: attachment; filename=Füße.pdf\n\
             Received: from müller.example by mx; Mon, 1 Jan 2024\n\
             In-Reply-To: <ü@x>\n\n",
        );
        assert_eq!(
            out,
            "Content-Type: text/plain; charset=utf-8\nContent-Disposition: attachment\n\n"
        );
    }

    proptest::proptest! {
        /// Whatever the header, the surrogate is ASCII (so it needs no
        /// second downgrade), and every field name in it was in the input.
        #[test]
        fn surrogates_are_ascii(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["From", "To", "Subject", "Received", "Content-Type", "X-A", "Cc"]),
                    "[ a-zA-Z0-9<>@,;:\"().=\\\\éü☕日-]{0,40}",
                ),
                1..6,
            )
        ) {
            let mut header = String::new();
            for (name, value) in &fields {
                header.push_str(&format!("{name}: {value}\n"));
            }
            header.push('\n');
            if let Some(out) = downgrade_header(header.as_bytes()) {
                proptest::prop_assert!(out.is_ascii());
                proptest::prop_assert_eq!(downgrade_header(&out), None);
                let text = String::from_utf8(out).unwrap();
                for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with(' ')) {
                    let name = line.split(':').next().unwrap();
                    proptest::prop_assert!(fields.iter().any(|(n, _)| *n == name), "{}", line);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any bytes at all: no panic, and an ASCII, stable surrogate.
        #[test]
        fn any_header_is_handled(
            lines in proptest::collection::vec(proptest::prelude::any::<String>(), 0..8),
            ends in proptest::collection::vec(proptest::sample::select(vec!["\n", "\r\n", "\n ", ":", "<", ">;", ","]), 0..8),
        ) {
            let mut header = String::new();
            for (line, end) in lines.iter().zip(ends.iter().cycle()) {
                header.push_str(line);
                header.push_str(end);
            }
            if let Some(out) = downgrade_header(header.as_bytes()) {
                proptest::prop_assert!(out.is_ascii());
                proptest::prop_assert_eq!(downgrade_header(header.as_bytes()), Some(out));
            }
        }
    }

    /// Review findings: deep nesting does not recurse, nothing empty is
    /// encoded, Return-Path stays an angle-addr, groups keep a name.
    #[test]
    fn hostile_and_edge_headers() {
        let mut deep = "To: ü".to_owned();
        for _ in 0..8000 {
            deep.push_str("\n a:");
        }
        deep.push_str("\n x");
        for _ in 0..8000 {
            deep.push_str("\n ;");
        }
        deep.push_str("\n\n");
        assert!(downgrade_header(deep.as_bytes()).unwrap().is_ascii());
        let out = down(
            "Subject: \u{a0}\nReturn-Path: <jörg@x.example>\nTo: :;, ü@x\nDisposition-Notification-To: jörg@x.example\n\n",
        );
        assert!(!out.contains("?B??="), "{out}");
        assert!(
            out.contains(&format!("Return-Path: <{INVALID}>\n")),
            "{out}"
        );
        assert!(!out.contains("To: : ;"), "{out}");
        assert!(!out.contains("Disposition-Notification-To"), "{out}");
    }

    #[test]
    fn the_same_header_gives_the_same_surrogate() {
        let header = "Subject: ☃\nTo: ☃@☃.example\n\n".as_bytes();
        assert_eq!(downgrade_header(header), downgrade_header(header));
    }
}
