//! Parsing one command line into a [`Command`].
//!
//! RFC 1939 §3: a case-insensitive keyword of three or four characters,
//! arguments separated by spaces. We accept runs of spaces between arguments
//! and trailing spaces (clients do send them); `PASS` takes everything after
//! its first space verbatim, because RFC 1939 §7 allows a password to contain
//! spaces. Control characters (NUL, CR, TAB, ESC, DEL …) are refused
//! everywhere; octets above 0x7F only in UTF-8 mode (RFC 6856) and only as
//! valid UTF-8, except in the PASS argument, which is taken as it is.

use crate::msgnum::{MsgNum, NumberError, parse_line_count};

/// A parsed POP3 command. Borrowed from the line it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `USER name`
    User(&'a str),
    /// `PASS secret` (everything after the first space)
    Pass(&'a [u8]),
    /// `APOP name digest`
    Apop {
        /// The mailbox name.
        user: &'a str,
        /// 32 lower- or upper-case hex digits.
        digest: &'a str,
    },
    /// `AUTH [mechanism [initial-response]]`
    Auth {
        /// The SASL mechanism name, upper-cased by the session; `None` asks for the list.
        mechanism: Option<&'a str>,
        /// The base64 initial response, or `=` for an empty one.
        initial_response: Option<&'a str>,
    },
    /// `STLS` (RFC 2595)
    Stls,
    /// `CAPA` (RFC 2449)
    Capa,
    /// `UTF8` (RFC 6856)
    Utf8,
    /// `STAT`
    Stat,
    /// `LIST [msg]`
    List(Option<MsgNum>),
    /// `RETR msg`
    Retr(MsgNum),
    /// `DELE msg`
    Dele(MsgNum),
    /// `NOOP`
    Noop,
    /// `RSET`
    Rset,
    /// `QUIT`
    Quit,
    /// `TOP msg lines`
    Top(MsgNum, u64),
    /// `UIDL [msg]`
    Uidl(Option<MsgNum>),
}

/// Why a line is not a valid command. Each variant has its own `-ERR` text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The line is empty.
    Empty,
    /// The line has a control character, or 8-bit octets outside UTF-8 mode,
    /// or invalid UTF-8 in UTF-8 mode.
    InvalidBytes,
    /// The keyword is not a POP3 command we know.
    UnknownCommand,
    /// A required argument is missing.
    MissingArgument,
    /// More arguments than the command takes.
    TooManyArguments,
    /// A message number or line count is malformed.
    BadNumber(NumberError),
    /// An APOP digest that is not 32 hex digits.
    BadDigest,
}

impl ParseError {
    /// The human-readable text of the `-ERR` reply.
    pub fn message(self) -> &'static str {
        match self {
            ParseError::Empty => "Empty command line.",
            ParseError::InvalidBytes => "Invalid characters in command line.",
            ParseError::UnknownCommand => "Unknown command.",
            ParseError::MissingArgument => "Missing argument.",
            ParseError::TooManyArguments => "Too many arguments.",
            ParseError::BadNumber(NumberError::Empty) => "Missing message number.",
            ParseError::BadNumber(NumberError::NotANumber) => "Invalid number.",
            ParseError::BadNumber(NumberError::Zero) => "Message numbers start at 1.",
            ParseError::BadNumber(NumberError::TooLarge) => "Number too large.",
            ParseError::BadDigest => "Invalid APOP digest.",
        }
    }
}

/// The keyword of a line, upper-cased, if it is one we know; used to refuse a
/// command by state before its arguments are even looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    /// USER
    User,
    /// PASS
    Pass,
    /// APOP
    Apop,
    /// AUTH
    Auth,
    /// STLS
    Stls,
    /// CAPA
    Capa,
    /// UTF8
    Utf8,
    /// STAT
    Stat,
    /// LIST
    List,
    /// RETR
    Retr,
    /// DELE
    Dele,
    /// NOOP
    Noop,
    /// RSET
    Rset,
    /// QUIT
    Quit,
    /// TOP
    Top,
    /// UIDL
    Uidl,
}

impl Keyword {
    fn parse(word: &[u8]) -> Option<Keyword> {
        if word.len() > 4 {
            return None;
        }
        let mut upper = [0u8; 4];
        upper[..word.len()].copy_from_slice(word);
        upper.make_ascii_uppercase();
        Some(match &upper[..word.len()] {
            b"USER" => Keyword::User,
            b"PASS" => Keyword::Pass,
            b"APOP" => Keyword::Apop,
            b"AUTH" => Keyword::Auth,
            b"STLS" => Keyword::Stls,
            b"CAPA" => Keyword::Capa,
            b"UTF8" => Keyword::Utf8,
            b"STAT" => Keyword::Stat,
            b"LIST" => Keyword::List,
            b"RETR" => Keyword::Retr,
            b"DELE" => Keyword::Dele,
            b"NOOP" => Keyword::Noop,
            b"RSET" => Keyword::Rset,
            b"QUIT" => Keyword::Quit,
            b"TOP" => Keyword::Top,
            b"UIDL" => Keyword::Uidl,
            _ => return None,
        })
    }

    /// Whether the command belongs to the AUTHORIZATION state (RFC 1939 §4, §7;
    /// RFC 2595 §4; RFC 5034; RFC 6856). CAPA and QUIT belong to both states.
    pub fn is_authorization(self) -> bool {
        matches!(
            self,
            Keyword::User
                | Keyword::Pass
                | Keyword::Apop
                | Keyword::Auth
                | Keyword::Stls
                | Keyword::Utf8
        )
    }

    /// Whether the command belongs to the TRANSACTION state (RFC 1939 §5, §7).
    pub fn is_transaction(self) -> bool {
        matches!(
            self,
            Keyword::Noop
                | Keyword::Stat
                | Keyword::List
                | Keyword::Retr
                | Keyword::Dele
                | Keyword::Rset
                | Keyword::Top
                | Keyword::Uidl
        )
    }
}

/// Splits a line into its keyword and the rest (after one space).
fn split_keyword(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &[]),
    }
}

/// Recognises the keyword of a line without parsing its arguments.
pub fn keyword(line: &[u8]) -> Result<Keyword, ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    Keyword::parse(split_keyword(line).0).ok_or(ParseError::UnknownCommand)
}

/// Parses a command line (terminator already removed).
///
/// `utf8` says whether the client has enabled UTF-8 mode; outside it only
/// printable ASCII and spaces are allowed.
pub fn parse(line: &[u8], utf8: bool) -> Result<Command<'_>, ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    // PASS takes the rest of the line as the password, octets as they are:
    // clients send passwords with 8-bit characters without enabling UTF-8
    // mode (RFC 1939 §7 puts no limit on them). Control characters are
    // still refused.
    if let Ok(Keyword::Pass) = keyword(line) {
        if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(ParseError::InvalidBytes);
        }
        let rest = line.get(5..).unwrap_or_default();
        if rest.is_empty() {
            return Err(ParseError::MissingArgument);
        }
        return Ok(Command::Pass(rest));
    }
    let text = checked_text(line, utf8)?;
    let (word, rest) = split_keyword(text.as_bytes());
    let keyword = Keyword::parse(word).ok_or(ParseError::UnknownCommand)?;
    // `rest` starts after a byte boundary (the ASCII space), so it is valid UTF-8 too.
    let rest_str = &text[text.len() - rest.len()..];
    let mut args = rest_str.split(' ').filter(|a| !a.is_empty());

    let command = match keyword {
        Keyword::User => Command::User(one(&mut args)?),
        // Handled above, before the text checks.
        Keyword::Pass => Command::Pass(rest),
        Keyword::Apop => {
            let user = args.next().ok_or(ParseError::MissingArgument)?;
            let digest = args.next().ok_or(ParseError::MissingArgument)?;
            none(&mut args)?;
            if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseError::BadDigest);
            }
            Command::Apop { user, digest }
        }
        Keyword::Auth => {
            let mechanism = args.next();
            let initial_response = args.next();
            none(&mut args)?;
            Command::Auth {
                mechanism,
                initial_response,
            }
        }
        Keyword::Stls => no_args(&mut args, Command::Stls)?,
        Keyword::Capa => no_args(&mut args, Command::Capa)?,
        Keyword::Utf8 => no_args(&mut args, Command::Utf8)?,
        Keyword::Stat => no_args(&mut args, Command::Stat)?,
        Keyword::Noop => no_args(&mut args, Command::Noop)?,
        Keyword::Rset => no_args(&mut args, Command::Rset)?,
        Keyword::Quit => no_args(&mut args, Command::Quit)?,
        Keyword::List => Command::List(optional_number(&mut args)?),
        Keyword::Uidl => Command::Uidl(optional_number(&mut args)?),
        Keyword::Retr => Command::Retr(number(one(&mut args)?)?),
        Keyword::Dele => Command::Dele(number(one(&mut args)?)?),
        Keyword::Top => {
            let msg = number(args.next().ok_or(ParseError::MissingArgument)?)?;
            let lines = args.next().ok_or(ParseError::MissingArgument)?;
            let lines = parse_line_count(lines.as_bytes()).map_err(ParseError::BadNumber)?;
            none(&mut args)?;
            Command::Top(msg, lines)
        }
    };
    Ok(command)
}

/// Checks the bytes of a line and returns it as text.
fn checked_text(line: &[u8], utf8: bool) -> Result<&str, ParseError> {
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ParseError::InvalidBytes);
    }
    if !utf8 && !line.is_ascii() {
        return Err(ParseError::InvalidBytes);
    }
    std::str::from_utf8(line).map_err(|_| ParseError::InvalidBytes)
}

fn one<'a>(args: &mut impl Iterator<Item = &'a str>) -> Result<&'a str, ParseError> {
    let arg = args.next().ok_or(ParseError::MissingArgument)?;
    none(args)?;
    Ok(arg)
}

fn none<'a>(args: &mut impl Iterator<Item = &'a str>) -> Result<(), ParseError> {
    match args.next() {
        Some(_) => Err(ParseError::TooManyArguments),
        None => Ok(()),
    }
}

fn no_args<'a, 'c>(
    args: &mut impl Iterator<Item = &'a str>,
    command: Command<'c>,
) -> Result<Command<'c>, ParseError> {
    none(args)?;
    Ok(command)
}

fn number(arg: &str) -> Result<MsgNum, ParseError> {
    MsgNum::parse(arg.as_bytes()).map_err(ParseError::BadNumber)
}

fn optional_number<'a>(
    args: &mut impl Iterator<Item = &'a str>,
) -> Result<Option<MsgNum>, ParseError> {
    let arg = args.next();
    none(args)?;
    arg.map(number).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> MsgNum {
        MsgNum::parse(v.to_string().as_bytes()).expect("valid number")
    }

    #[test]
    fn keywords_are_case_insensitive() {
        for line in ["STAT", "stat", "Stat", "sTaT"] {
            assert_eq!(parse(line.as_bytes(), false), Ok(Command::Stat));
        }
        assert_eq!(parse(b"retr 1", false), Ok(Command::Retr(n(1))));
        assert_eq!(parse(b"top 1 0", false), Ok(Command::Top(n(1), 0)));
    }

    #[test]
    fn argument_forms() {
        let ok: &[(&[u8], Command<'_>)] = &[
            (b"LIST", Command::List(None)),
            (b"LIST 2", Command::List(Some(n(2)))),
            (b"LIST  2", Command::List(Some(n(2)))),
            (b"LIST 2 ", Command::List(Some(n(2)))),
            (b"UIDL", Command::Uidl(None)),
            (b"UIDL 3", Command::Uidl(Some(n(3)))),
            (b"USER mrose", Command::User("mrose")),
            (b"PASS secret", Command::Pass(b"secret")),
            (b"PASS with spaces ", Command::Pass(b"with spaces ")),
            (b"PASS  lead", Command::Pass(b" lead")),
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop {
                    user: "mrose",
                    digest: "c4c9334bac560ecc979e58001b3e22fb",
                },
            ),
            (
                b"AUTH",
                Command::Auth {
                    mechanism: None,
                    initial_response: None,
                },
            ),
            (
                b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=",
                Command::Auth {
                    mechanism: Some("PLAIN"),
                    initial_response: Some("dGVzdAB0ZXN0AHRlc3Q="),
                },
            ),
            (b"TOP 1 999999999", Command::Top(n(1), 999_999_999)),
        ];
        for (line, expected) in ok {
            assert_eq!(parse(line, false).as_ref(), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn malformed_lines_get_specific_errors() {
        use NumberError::*;
        let bad: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Empty),
            (b"XYZZY", ParseError::UnknownCommand),
            (b"STATS", ParseError::UnknownCommand),
            (b" STAT", ParseError::UnknownCommand),
            (b"RETR", ParseError::MissingArgument),
            (b"RETR ", ParseError::MissingArgument),
            (b"RETR 0", ParseError::BadNumber(Zero)),
            (b"RETR -1", ParseError::BadNumber(NotANumber)),
            (b"RETR +1", ParseError::BadNumber(NotANumber)),
            (b"RETR 1x", ParseError::BadNumber(NotANumber)),
            (b"RETR 4294967297", ParseError::BadNumber(TooLarge)),
            (b"RETR 1 2", ParseError::TooManyArguments),
            (b"DELE 1 1", ParseError::TooManyArguments),
            (b"STAT 1", ParseError::TooManyArguments),
            (b"TOP 1", ParseError::MissingArgument),
            (b"TOP 1 -1", ParseError::BadNumber(NotANumber)),
            (b"TOP 0 1", ParseError::BadNumber(Zero)),
            (b"TOP 1 1 1", ParseError::TooManyArguments),
            (b"USER", ParseError::MissingArgument),
            (b"USER a b", ParseError::TooManyArguments),
            (b"PASS", ParseError::MissingArgument),
            (b"APOP mrose", ParseError::MissingArgument),
            (b"APOP mrose xyz", ParseError::BadDigest),
            (b"AUTH PLAIN a b", ParseError::TooManyArguments),
            (b"NOOP\0", ParseError::InvalidBytes),
            (b"USER a\0b", ParseError::InvalidBytes),
            (b"USER a\tb", ParseError::InvalidBytes),
            (b"LIST\t1", ParseError::InvalidBytes),
            (b"USER a\rb", ParseError::InvalidBytes),
            (b"USER \x1b[31m", ParseError::InvalidBytes),
            (b"USER \xff", ParseError::InvalidBytes),
            (b"USER j\xc3\xb6rg", ParseError::InvalidBytes),
            (b"PASS a\0b", ParseError::InvalidBytes),
            (b"PASS a\tb", ParseError::InvalidBytes),
        ];
        for (line, expected) in bad {
            assert_eq!(parse(line, false), Err(*expected), "{line:?}");
        }
    }

    #[test]
    fn pass_takes_8bit_passwords_without_utf8_mode() {
        assert_eq!(
            parse(b"PASS p\xc3\xa4ss", false),
            Ok(Command::Pass(b"p\xc3\xa4ss"))
        );
        assert_eq!(parse(b"pass p\xe4ss", false), Ok(Command::Pass(b"p\xe4ss")));
        assert_eq!(parse(b"PASS \xff", true), Ok(Command::Pass(b"\xff")));
    }

    #[test]
    fn utf8_mode_allows_valid_utf8_only() {
        assert_eq!(
            parse("USER jörg".as_bytes(), true),
            Ok(Command::User("jörg"))
        );
        assert_eq!(parse(b"USER \xff", true), Err(ParseError::InvalidBytes));
        assert_eq!(parse(b"USER a\0", true), Err(ParseError::InvalidBytes));
    }

    #[test]
    fn keyword_is_recognised_without_arguments() {
        assert_eq!(keyword(b"retr garbage"), Ok(Keyword::Retr));
        assert_eq!(keyword(b"nope"), Err(ParseError::UnknownCommand));
        assert!(Keyword::Retr.is_transaction());
        assert!(Keyword::Pass.is_authorization());
        assert!(Keyword::Noop.is_transaction());
        assert!(!Keyword::Capa.is_authorization() && !Keyword::Capa.is_transaction());
    }
}
