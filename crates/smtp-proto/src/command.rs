//! Parsing one SMTP command line (RFC 5321 §4.1, with RFC 1870 SIZE, RFC
//! 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3030 BDAT, RFC 4954 AUTH).
//!
//! Written here rather than taken from the `smtp-proto` crate: that parser
//! reads `<Postmaster>` as the null path, loses the quoting of a local part
//! (so `"a@b"@c` becomes `a@b@c`), and accepts `DATA x`; the relay policy
//! needs those distinctions.

use crate::address::{self, ForwardPath, Mailbox, PathError};

/// The BODY parameter of MAIL (RFC 6152).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Body {
    /// Not given.
    #[default]
    Unspecified,
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
}

/// The parameters of MAIL FROM that we support.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): the client's estimate of the message size.
    pub size: Option<u64>,
    /// `BODY=`
    pub body: Body,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `AUTH=` (RFC 4954 §5), the submitter's identity; accepted and ignored.
    pub auth: Option<String>,
}

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`
    Ehlo(String),
    /// `HELO domain`
    Helo(String),
    /// `MAIL FROM:<path> [params]`; `None` is the null sender `<>`.
    Mail {
        /// The reverse-path.
        from: Option<Mailbox>,
        /// Its parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path>`
    Rcpt(ForwardPath),
    /// `DATA`
    Data,
    /// `BDAT size [LAST]`
    Bdat {
        /// Octets that follow the command line.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [text]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY text`
    Vrfy,
    /// `EXPN text`
    Expn,
    /// `HELP [topic]`
    Help,
    /// `STARTTLS`
    StartTls,
    /// `AUTH mechanism [initial-response]`
    Auth {
        /// The mechanism, upper-cased.
        mechanism: String,
        /// The base64 initial response (`=` for empty), if given.
        initial_response: Option<String>,
    },
}

/// Why a line is not a valid command; each maps to its own reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a command we know (500 5.5.1).
    Unknown,
    /// Control characters or invalid UTF-8 (500 5.5.2).
    InvalidBytes,
    /// The arguments do not fit the command's syntax (501 5.5.4).
    Syntax(&'static str),
    /// A malformed address (501 5.1.3 / 553 5.1.3).
    Path(PathError),
    /// A parameter we do not support (555 5.5.4).
    UnsupportedParameter(String),
}

/// Parses a command line (CRLF removed).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    parse_with(line, Syntax::default())
}

/// How strictly command arguments are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Syntax {
    /// Refuse MAIL and RCPT paths without `<` `>` (RFC 5321 §4.1.2 to the
    /// letter). Off by default: some senders leave them out, and Postfix
    /// takes such paths unless `strict_rfc821_envelopes` is set.
    pub strict_paths: bool,
}

/// Parses one command line (without its line end) under `syntax`.
pub fn parse_with(line: &[u8], syntax: Syntax) -> Result<Command, ParseError> {
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ParseError::InvalidBytes);
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::InvalidBytes)?;
    let (verb, rest) = match text.find(' ') {
        Some(space) => (&text[..space], &text[space + 1..]),
        None => (text, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |command: Command, syntax: &'static str| {
        if rest.trim().is_empty() {
            Ok(command)
        } else {
            Err(ParseError::Syntax(syntax))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let domain = rest.trim();
            if domain.is_empty() || domain.contains(' ') {
                return Err(ParseError::Syntax(if verb == "EHLO" {
                    "EHLO domain"
                } else {
                    "HELO domain"
                }));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(domain.into())
            } else {
                Command::Helo(domain.into())
            })
        }
        "MAIL" => mail(rest, syntax),
        "RCPT" => rcpt(rest, syntax),
        "DATA" => no_args(Command::Data, "DATA"),
        "RSET" => no_args(Command::Rset, "RSET"),
        "QUIT" => no_args(Command::Quit, "QUIT"),
        "STARTTLS" => no_args(Command::StartTls, "STARTTLS"),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" if !rest.trim().is_empty() => Ok(Command::Vrfy),
        "VRFY" => Err(ParseError::Syntax("VRFY string")),
        "EXPN" if !rest.trim().is_empty() => Ok(Command::Expn),
        "EXPN" => Err(ParseError::Syntax("EXPN string")),
        "BDAT" => bdat(rest),
        "AUTH" => {
            let mut args = rest.split(' ').filter(|a| !a.is_empty());
            let mechanism = args
                .next()
                .ok_or(ParseError::Syntax("AUTH mechanism [initial-response]"))?;
            let initial_response = args.next().map(str::to_owned);
            if args.next().is_some() {
                return Err(ParseError::Syntax("AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial_response,
            })
        }
        _ => Err(ParseError::Unknown),
    }
}

/// `FROM:` or `TO:`, case-insensitive, with the space some clients put after the colon.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(rest[keyword.len()..].trim_start_matches(' '))
}

fn mail(rest: &str, syntax: Syntax) -> Result<Command, ParseError> {
    const SYNTAX: &str = "MAIL FROM:<address> [parameters]";
    let path = strip_keyword(rest, "FROM:").ok_or(ParseError::Syntax(SYNTAX))?;
    let (from, rest) = if path.starts_with('<') || syntax.strict_paths {
        address::parse_path(path).map_err(ParseError::Path)?
    } else {
        let (mailbox, rest) = address::parse_bare_mailbox(path).map_err(ParseError::Path)?;
        (Some(mailbox), rest)
    };
    let mut params = MailParams::default();
    for param in rest.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v))
                if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) =>
            {
                params.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => params.body = Body::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                params.body = Body::EightBitMime
            }
            ("SMTPUTF8", None) => params.smtputf8 = true,
            ("AUTH", Some(v)) if !v.is_empty() => params.auth = Some(v.to_owned()),
            ("SIZE" | "BODY" | "AUTH", _) | ("SMTPUTF8", Some(_)) => {
                return Err(ParseError::Syntax(SYNTAX));
            }
            _ => return Err(ParseError::UnsupportedParameter(param.to_owned())),
        }
    }
    Ok(Command::Mail { from, params })
}

fn rcpt(rest: &str, syntax: Syntax) -> Result<Command, ParseError> {
    const SYNTAX: &str = "RCPT TO:<address>";
    let path = strip_keyword(rest, "TO:").ok_or(ParseError::Syntax(SYNTAX))?;
    let (to, rest) = if path.starts_with('<') || syntax.strict_paths {
        address::parse_forward_path(path).map_err(ParseError::Path)?
    } else if path
        .get(..10)
        .is_some_and(|head| head.eq_ignore_ascii_case("postmaster"))
        && path[10..].chars().next().is_none_or(|c| c == ' ')
    {
        (ForwardPath::Postmaster, &path[10..])
    } else {
        let (mailbox, rest) = address::parse_bare_mailbox(path).map_err(ParseError::Path)?;
        (ForwardPath::Mailbox(mailbox), rest)
    };
    // DSN (NOTIFY, ORCPT) is not offered, so no RCPT parameter is supported.
    match rest.split(' ').find(|p| !p.is_empty()) {
        Some(param) => Err(ParseError::UnsupportedParameter(param.to_owned())),
        None => Ok(Command::Rcpt(to)),
    }
}

fn bdat(rest: &str) -> Result<Command, ParseError> {
    const SYNTAX: &str = "BDAT size [LAST]";
    let mut args = rest.split(' ').filter(|a| !a.is_empty());
    let size = args
        .next()
        .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::Syntax(SYNTAX))?;
    let last = match args.next() {
        None => false,
        Some(l) if l.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::Syntax(SYNTAX)),
    };
    if args.next().is_some() {
        return Err(ParseError::Syntax(SYNTAX));
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Domain;

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            quoted: false,
            domain: Domain::Name(domain.into()),
        }
    }

    #[test]
    fn commands() {
        let ok: Vec<(&[u8], Command)> = vec![
            (
                b"EHLO client.example",
                Command::Ehlo("client.example".into()),
            ),
            (b"helo [1.2.3.4]", Command::Helo("[1.2.3.4]".into())),
            (
                b"MAIL FROM:<a@b>",
                Command::Mail {
                    from: Some(mb("a", "b")),
                    params: MailParams::default(),
                },
            ),
            (
                b"mail from: <a@b>",
                Command::Mail {
                    from: Some(mb("a", "b")),
                    params: MailParams::default(),
                },
            ),
            (
                b"MAIL FROM:<>",
                Command::Mail {
                    from: None,
                    params: MailParams::default(),
                },
            ),
            (
                b"MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME SMTPUTF8 AUTH=<>",
                Command::Mail {
                    from: Some(mb("a", "b")),
                    params: MailParams {
                        size: Some(100),
                        body: Body::EightBitMime,
                        smtputf8: true,
                        auth: Some("<>".into()),
                    },
                },
            ),
            (
                b"RCPT TO:<c@d>",
                Command::Rcpt(ForwardPath::Mailbox(mb("c", "d"))),
            ),
            (
                b"RCPT TO:<Postmaster>",
                Command::Rcpt(ForwardPath::Postmaster),
            ),
            (b"DATA", Command::Data),
            (
                b"BDAT 100 LAST",
                Command::Bdat {
                    size: 100,
                    last: true,
                },
            ),
            (
                b"bdat 0",
                Command::Bdat {
                    size: 0,
                    last: false,
                },
            ),
            (b"NOOP anything", Command::Noop),
            (b"VRFY bob", Command::Vrfy),
            (
                b"AUTH plain AAAA",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial_response: Some("AAAA".into()),
                },
            ),
            (b"STARTTLS", Command::StartTls),
        ];
        for (line, expected) in ok {
            assert_eq!(
                parse(line),
                Ok(expected),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// Issue 11: paths without angle brackets, as some senders write them,
    /// are the same mailboxes as with them; `strict_paths` refuses them.
    #[test]
    fn paths_without_brackets() {
        let strict = Syntax { strict_paths: true };
        for (bare, bracketed) in [
            (
                &b"MAIL FROM:a@b.example"[..],
                &b"MAIL FROM:<a@b.example>"[..],
            ),
            (
                b"MAIL FROM: a@b.example SIZE=10",
                b"MAIL FROM:<a@b.example> SIZE=10",
            ),
            (b"RCPT TO:c@d.example", b"RCPT TO:<c@d.example>"),
            (b"RCPT TO: Postmaster", b"RCPT TO:<Postmaster>"),
            (b"RCPT TO:user%other@local", b"RCPT TO:<user%other@local>"),
        ] {
            assert_eq!(
                parse(bare),
                parse(bracketed),
                "{}",
                String::from_utf8_lossy(bare)
            );
            assert!(parse(bracketed).is_ok());
            assert_eq!(
                parse_with(bare, strict),
                Err(ParseError::Path(PathError::NoBrackets)),
                "{}",
                String::from_utf8_lossy(bare)
            );
        }
        for bad in [
            &b"MAIL FROM:"[..],
            b"MAIL FROM:a@b>",
            b"MAIL FROM:\"a b\"@c",
            b"RCPT TO:postmasterx",
            b"RCPT TO:nodomain",
            // A multi-byte character across the tenth octet, where
            // "postmaster" would end (found by the smtp_session fuzz
            // target: slicing there panicked).
            "RCPT TO: TPLAIN  -\u{85}".as_bytes(),
            "RCPT TO:postmaste\u{e9}".as_bytes(),
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn errors() {
        let bad: Vec<(&[u8], ParseError)> = vec![
            (b"XYZZY", ParseError::Unknown),
            (b"EHLO", ParseError::Syntax("EHLO domain")),
            (
                b"MAIL <a@b>",
                ParseError::Syntax("MAIL FROM:<address> [parameters]"),
            ),
            (b"MAIL FROM:<a@b", ParseError::Path(PathError::NoBrackets)),
            (
                b"MAIL FROM:<a@b> FOO=bar",
                ParseError::UnsupportedParameter("FOO=bar".into()),
            ),
            (
                b"MAIL FROM:<a@b> BODY=BINARYMIME",
                ParseError::Syntax("MAIL FROM:<address> [parameters]"),
            ),
            (
                b"MAIL FROM:<a@b> SIZE=x",
                ParseError::Syntax("MAIL FROM:<address> [parameters]"),
            ),
            (b"RCPT TO:<>", ParseError::Path(PathError::BadLocalPart)),
            (b"RCPT TO:<user>", ParseError::Path(PathError::NoDomain)),
            (
                b"RCPT TO:<a@b> NOTIFY=NEVER",
                ParseError::UnsupportedParameter("NOTIFY=NEVER".into()),
            ),
            (b"DATA x", ParseError::Syntax("DATA")),
            (b"BDAT x", ParseError::Syntax("BDAT size [LAST]")),
            (b"BDAT 1 FIRST", ParseError::Syntax("BDAT size [LAST]")),
            (b"MAIL FROM:<a@b>\rRCPT TO:<c@d>", ParseError::InvalidBytes),
            (b"NOOP \x00", ParseError::InvalidBytes),
            (b"MAIL FROM:<\xff@b>", ParseError::InvalidBytes),
        ];
        for (line, expected) in bad {
            assert_eq!(
                parse(line),
                Err(expected),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn huge_sizes_saturate() {
        let Ok(Command::Mail { params, .. }) = parse(b"MAIL FROM:<a@b> SIZE=99999999999999999999")
        else {
            panic!("parses");
        };
        assert_eq!(params.size, Some(u64::MAX));
    }
}
