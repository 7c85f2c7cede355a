//! Mail addresses as SMTP carries them (RFC 5321 §4.1.2, RFC 6531).
//!
//! ```text
//! Path      = "<" [ A-d-l ":" ] Mailbox ">"
//! Mailbox   = Local-part "@" ( Domain / address-literal )
//! Local-part = Dot-string / Quoted-string
//! ```
//!
//! Source routes (`@a,@b:`) are accepted and ignored, as RFC 5321 §4.1.1.3
//! requires. A quoted local part is kept as such, so `"user@remote"@local`
//! is not mistaken for `user@remote`; what the relay policy makes of such
//! forms is the server's business, not the parser's. Non-ASCII (UTF-8)
//! local parts and domains parse; whether they are allowed depends on
//! SMTPUTF8 (RFC 6531), which the session checks.

use std::fmt;

/// The domain part of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A domain name, as written (compare without regard to ASCII case).
    Name(String),
    /// An address literal, without its brackets: `127.0.0.1`, `IPv6:::1`.
    Literal(String),
}

/// `local-part@domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part, unquoted (a quoted-pair's backslash removed).
    pub local: String,
    /// Whether the local part was a quoted string.
    pub quoted: bool,
    /// The domain.
    pub domain: Domain,
}

impl Mailbox {
    /// The domain name in lower case, or `None` for an address literal.
    pub fn domain_name(&self) -> Option<String> {
        match &self.domain {
            Domain::Name(name) => Some(name.to_ascii_lowercase()),
            Domain::Literal(_) => None,
        }
    }

    /// Whether the address has octets beyond ASCII (needs SMTPUTF8).
    pub fn is_utf8(&self) -> bool {
        let domain = match &self.domain {
            Domain::Name(d) | Domain::Literal(d) => d,
        };
        !self.local.is_ascii() || !domain.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    /// The address in RFC 5321 form, quoting the local part when needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted || !is_dot_string(&self.local) {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        } else {
            f.write_str(&self.local)?;
        }
        match &self.domain {
            Domain::Name(d) => write!(f, "@{d}"),
            Domain::Literal(l) => write!(f, "@[{l}]"),
        }
    }
}

/// The argument of RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3: must be accepted).
    Postmaster,
    /// A mailbox.
    Mailbox(Mailbox),
}

/// Why a path did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not enclosed in `<` `>`.
    NoBrackets,
    /// The local part is empty or malformed.
    BadLocalPart,
    /// No `@domain`.
    NoDomain,
    /// The domain or address literal is malformed.
    BadDomain,
    /// A local part over 64 octets or a path over 256 (RFC 5321 §4.5.3.1).
    TooLong,
}

/// Parses `<…>` from the start of `text`; returns the mailbox (`None` for
/// the null path `<>`) and the rest of the text after `>`.
pub fn parse_path(text: &str) -> Result<(Option<Mailbox>, &str), PathError> {
    let inner_start = text.strip_prefix('<').ok_or(PathError::NoBrackets)?;
    if let Some(rest) = inner_start.strip_prefix('>') {
        return Ok((None, rest));
    }
    // Find the closing '>' outside a quoted string.
    let mut in_quotes = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in inner_start.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or(PathError::NoBrackets)?;
    let inner = &inner_start[..end];
    let rest = &inner_start[end + 1..];
    if inner.len() > 254 {
        return Err(PathError::TooLong);
    }
    // A source route: "@a,@b:" before the mailbox; ignored.
    let mailbox = if inner.starts_with('@') {
        let colon = inner.find(':').ok_or(PathError::BadDomain)?;
        for hop in inner[..colon].split(',') {
            let domain = hop.strip_prefix('@').ok_or(PathError::BadDomain)?;
            if !is_domain(domain) {
                return Err(PathError::BadDomain);
            }
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    Ok((Some(parse_mailbox(mailbox)?), rest))
}

/// Parses a mailbox written without the angle brackets RFC 5321 requires
/// (`MAIL FROM:user@example.org`), as some scripts and appliances send it
/// and Postfix accepts unless `strict_rfc821_envelopes` is set: the
/// mailbox runs to the first space and is parsed exactly as inside `<…>`,
/// so it can decide nothing differently. Returns the rest after it.
pub fn parse_bare_mailbox(text: &str) -> Result<(Mailbox, &str), PathError> {
    let (mailbox, rest) = match text.find(' ') {
        Some(space) => (&text[..space], &text[space..]),
        None => (text, ""),
    };
    if mailbox.is_empty() || mailbox.contains(['<', '>', '"']) {
        return Err(PathError::NoBrackets);
    }
    if mailbox.len() > 254 {
        return Err(PathError::TooLong);
    }
    Ok((parse_mailbox(mailbox)?, rest))
}

/// Parses the argument of RCPT TO: `<Postmaster>` or a path with a mailbox.
pub fn parse_forward_path(text: &str) -> Result<(ForwardPath, &str), PathError> {
    if let Some(inner) = text.strip_prefix('<')
        && let Some(end) = inner.find('>')
        && inner[..end].eq_ignore_ascii_case("postmaster")
    {
        return Ok((ForwardPath::Postmaster, &inner[end + 1..]));
    }
    match parse_path(text)? {
        (Some(mailbox), rest) => Ok((ForwardPath::Mailbox(mailbox), rest)),
        (None, _) => Err(PathError::BadLocalPart),
    }
}

/// Parses `local@domain`.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, PathError> {
    let (local, quoted, rest) = if let Some(after) = text.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = after.char_indices();
        let mut close = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped))
                        if escaped == ' ' || escaped.is_ascii_graphic() || !escaped.is_ascii() =>
                    {
                        local.push(escaped)
                    }
                    _ => return Err(PathError::BadLocalPart),
                },
                '"' => {
                    close = Some(i);
                    break;
                }
                c if c == ' ' || c.is_ascii_graphic() || !c.is_ascii() => local.push(c),
                _ => return Err(PathError::BadLocalPart),
            }
        }
        let close = close.ok_or(PathError::BadLocalPart)?;
        (local, true, &after[close + 1..])
    } else {
        let at = text.rfind('@').ok_or(PathError::NoDomain)?;
        let local = &text[..at];
        if !is_dot_string(local) {
            return Err(PathError::BadLocalPart);
        }
        (local.to_owned(), false, &text[at..])
    };
    if local.len() > 64 {
        return Err(PathError::TooLong);
    }
    let domain = rest.strip_prefix('@').ok_or(PathError::NoDomain)?;
    let domain = if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal.strip_suffix(']').ok_or(PathError::BadDomain)?;
        if !is_address_literal(literal) {
            return Err(PathError::BadDomain);
        }
        Domain::Literal(literal.to_owned())
    } else {
        if !is_domain(domain) {
            return Err(PathError::BadDomain);
        }
        Domain::Name(domain.to_owned())
    };
    Ok(Mailbox {
        local,
        quoted,
        domain,
    })
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Dot-string: atoms of atext separated by single dots.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// A domain: labels of letters, digits and hyphens (or UTF-8, RFC 6531),
/// not starting or ending with a hyphen; a trailing dot is refused.
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

fn is_address_literal(s: &str) -> bool {
    if let Some(v6) = s.get(..5).filter(|p| p.eq_ignore_ascii_case("IPv6:")) {
        let _ = v6;
        return s[5..].parse::<std::net::Ipv6Addr>().is_ok();
    }
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(local: &str, quoted: bool, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            quoted,
            domain: Domain::Name(domain.into()),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("<>"), Ok((None, "")));
        assert_eq!(
            parse_path("<a@b.c> SIZE=1"),
            Ok((Some(mailbox("a", false, "b.c")), " SIZE=1"))
        );
        assert_eq!(
            parse_path("<@x.y,@z:a@b>"),
            Ok((Some(mailbox("a", false, "b")), ""))
        );
        assert_eq!(
            parse_path("<\"user@remote\"@local>"),
            Ok((Some(mailbox("user@remote", true, "local")), ""))
        );
        assert_eq!(
            parse_path("<\"a>b\"@c>"),
            Ok((Some(mailbox("a>b", true, "c")), ""))
        );
        assert_eq!(
            parse_path("<user%other@local>"),
            Ok((Some(mailbox("user%other", false, "local")), ""))
        );
        assert_eq!(
            parse_path("<remote!u@local>"),
            Ok((Some(mailbox("remote!u", false, "local")), ""))
        );
        assert_eq!(
            parse_path("<jörg@bücher.de>"),
            Ok((Some(mailbox("jörg", false, "bücher.de")), ""))
        );
        let literal = parse_path("<u@[127.0.0.1]>").unwrap().0.unwrap();
        assert_eq!(literal.domain, Domain::Literal("127.0.0.1".into()));
        assert!(parse_path("<u@[IPv6:::1]>").is_ok());
    }

    #[test]
    fn bad_paths() {
        let cases = [
            ("a@b", PathError::NoBrackets),
            ("<a@b", PathError::NoBrackets),
            ("<user>", PathError::NoDomain),
            ("<u@remote@local>", PathError::BadLocalPart),
            ("<.a@b>", PathError::BadLocalPart),
            ("<a..b@c>", PathError::BadLocalPart),
            ("<a b@c>", PathError::BadLocalPart),
            ("<a@b.>", PathError::BadDomain),
            ("<a@-b.c>", PathError::BadDomain),
            ("<a@[300.1.1.1]>", PathError::BadDomain),
            ("<a@[1.2.3.4>", PathError::BadDomain),
            ("<@a:>", PathError::NoDomain),
        ];
        for (text, error) in cases {
            assert_eq!(parse_path(text).map(|_| ()), Err(error), "{text}");
        }
        let long = format!("<{}@b>", "a".repeat(65));
        assert_eq!(parse_path(&long).map(|_| ()), Err(PathError::TooLong));
    }

    #[test]
    fn postmaster_needs_no_domain() {
        assert_eq!(
            parse_forward_path("<Postmaster>"),
            Ok((ForwardPath::Postmaster, ""))
        );
        assert_eq!(
            parse_forward_path("<postmaster>"),
            Ok((ForwardPath::Postmaster, ""))
        );
        assert_eq!(
            parse_forward_path("<>").map(|_| ()),
            Err(PathError::BadLocalPart)
        );
        assert!(matches!(
            parse_forward_path("<postmaster@x.y>"),
            Ok((ForwardPath::Mailbox(_), ""))
        ));
    }

    #[test]
    fn display_quotes_when_needed() {
        assert_eq!(mailbox("a.b", false, "c").to_string(), "a.b@c");
        assert_eq!(
            mailbox("user@remote", true, "local").to_string(),
            "\"user@remote\"@local"
        );
        assert_eq!(mailbox("a\"b", true, "c").to_string(), "\"a\\\"b\"@c");
    }
}
