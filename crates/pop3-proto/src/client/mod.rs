//! The client side of POP3, on bytes (RFC 1939, RFC 2449, RFC 2595,
//! RFC 5034).
//!
//! [`Connection`] does no I/O and keeps no clock. The caller queues
//! commands ([`Connection::user`], [`Connection::retr`], …), writes
//! [`Connection::output`] to the socket, feeds what the server sends to
//! [`Connection::receive`], and takes [`Event`]s from
//! [`Connection::next_event`], one per reply (or per piece of message
//! content). Commands may be queued before earlier replies arrive
//! (PIPELINING, RFC 2449 §6.6); replies are matched to them in order.
//!
//! Everything the server sends is untrusted: status lines are truncated
//! and escaped, listing lines that break the grammar are counted and
//! dropped, listings and message content are capped, a SASL challenge
//! that is not base64 is an error, and bytes that arrive right behind the
//! `+OK` to STLS (before the handshake) are an error, never a reply. No
//! input makes memory grow past the configured [`Limits`].
//!
//! ```
//! use yubin_pop3_proto::client::{Connection, Event, Limits};
//!
//! let mut pop = Connection::new(Limits::default());
//! pop.receive(b"+OK ready\r\n");
//! assert!(matches!(pop.next_event(), Ok(Some(Event::Greeting(s))) if s.ok));
//! pop.stat().unwrap();
//! assert_eq!(pop.output(), b"STAT\r\n");
//! pop.clear_output();
//! pop.receive(b"+OK 2 320\r\n");
//! let Ok(Some(Event::Status(status))) = pop.next_event() else { panic!() };
//! assert_eq!(status.stat(), Some((2, 320)));
//! ```

mod capabilities;
mod content;
mod listing;
mod login;
mod opening;
mod status;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use capabilities::Capabilities;
use content::ContentDecoder;
pub use listing::{ScanEntry, UidEntry, parse_scan, parse_uid};
pub use login::{AuthMethod, Login, LoginError, NoMethod, Offer, Progress, choose};
pub use opening::{Opening, OpeningError, Ready, uidl_refusal_means_absent};
pub use status::{MAX_STATUS_TEXT, Status, escape};

use crate::MsgNum;

/// Bounds on what the server may make the client hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most entries in a LIST or UIDL listing.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
        }
    }
}

/// One reply, or one piece of one, as [`Connection::next_event`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The greeting (`ok` false: the server refuses service).
    Greeting(Status),
    /// A single-line reply, or the `-ERR` to a multi-line command.
    Status(Status),
    /// A SASL challenge (`+ base64`), decoded; answer with
    /// [`Connection::auth_response`] or [`Connection::auth_cancel`].
    Challenge(Vec<u8>),
    /// The CAPA listing.
    Capabilities(Capabilities),
    /// The LIST listing; `rejected` counts lines that broke the grammar.
    Scan {
        /// The valid lines.
        entries: Vec<ScanEntry>,
        /// Lines refused.
        rejected: usize,
    },
    /// The UIDL listing; `rejected` counts lines that broke the grammar.
    Uids {
        /// The valid lines.
        entries: Vec<UidEntry>,
        /// Lines refused.
        rejected: usize,
    },
    /// Message content from RETR or TOP, unstuffed, CRLF line ends as sent.
    /// More pieces may follow; [`Event::ContentEnd`] closes it.
    Content(Vec<u8>),
    /// The end of a RETR or TOP response.
    ContentEnd,
}

/// The server broke the protocol; the connection cannot be trusted further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A line that should be a status line is not one (escaped, truncated).
    BadStatusLine(String),
    /// The server sent something no command asked for.
    Unsolicited,
    /// A listing had more entries than [`Limits::max_entries`].
    TooManyEntries(usize),
    /// RETR or TOP content went past the limit given with the command.
    ContentTooLong(u64),
    /// A SASL challenge that is not valid base64.
    BadChallenge,
    /// Bytes arrived behind the `+OK` to STLS, before the TLS handshake:
    /// an injection attempt (CVE-2021-39272's class) or a broken server.
    DataAfterStls,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadStatusLine(line) => write!(f, "not a POP3 status line: {line:?}"),
            ProtocolError::Unsolicited => f.write_str("the server sent data nobody asked for"),
            ProtocolError::TooManyEntries(max) => {
                write!(f, "the server listed more than {max} messages")
            }
            ProtocolError::ContentTooLong(max) => {
                write!(f, "the message went on past {max} octets")
            }
            ProtocolError::BadChallenge => f.write_str("a SASL challenge that is not base64"),
            ProtocolError::DataAfterStls => {
                f.write_str("data arrived after +OK to STLS, before TLS started (injection?)")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A command that cannot be sent as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// An argument holds CR, LF or NUL, is empty, or is longer than 255
    /// octets (a command line must stay one line of at most 512).
    BadArgument,
    /// STLS must be the only command in flight, and nothing may follow it
    /// before its reply and the handshake.
    StlsPending,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadArgument => {
                f.write_str("argument is empty, too long, or holds CR, LF or NUL")
            }
            RequestError::StlsPending => f.write_str("STLS must be sent alone"),
        }
    }
}

impl std::error::Error for RequestError {}

/// What the reply at the head of the queue will look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Single,
    Stls,
    Sasl,
    Capa,
    Scan,
    Uidl,
    Content { limit: u64 },
}

/// A multi-line reply whose `+OK` has been read.
#[derive(Debug)]
enum Body {
    Capa(Capabilities, usize),
    Scan(Vec<ScanEntry>, usize),
    Uidl(Vec<UidEntry>, usize),
    Content {
        decoder: ContentDecoder,
        received: u64,
        limit: u64,
        /// The terminator has been read; [`Event::ContentEnd`] is next.
        done: bool,
    },
}

/// A line taken from the input, or the start of one that was too long
/// (the rest is discarded as it arrives).
enum Taken {
    Line(Vec<u8>),
    TooLong(Vec<u8>),
}

/// The client's half of one POP3 connection; see the module documentation.
#[derive(Debug)]
pub struct Connection {
    input: Vec<u8>,
    /// First unread byte of `input`.
    pos: usize,
    /// Set after a too-long line: drop input up to the next LF.
    discarding: bool,
    output: Vec<u8>,
    pending: VecDeque<Expect>,
    body: Option<Body>,
    limits: Limits,
    failed: Option<ProtocolError>,
}

impl Connection {
    /// A connection waiting for the server's greeting.
    pub fn new(limits: Limits) -> Self {
        Connection {
            input: Vec::new(),
            pos: 0,
            discarding: false,
            output: Vec::new(),
            pending: VecDeque::from([Expect::Greeting]),
            body: None,
            limits,
            failed: None,
        }
    }

    /// Feeds bytes read from the server. Call [`Connection::next_event`]
    /// until it returns `None` before reading more, so input stays bounded.
    pub fn receive(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
    }

    /// Bytes to write to the server.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Forgets the output after it has been written.
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// Whether replies are still expected.
    pub fn awaiting_reply(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether received bytes are waiting to be read as events.
    pub fn has_buffered_input(&self) -> bool {
        self.pos < self.input.len()
    }

    /// `CAPA`
    pub fn capa(&mut self) -> Result<(), RequestError> {
        self.command(b"CAPA", &[], Expect::Capa)
    }

    /// `STLS`: sent alone; after its `+OK`, start TLS before anything else.
    pub fn stls(&mut self) -> Result<(), RequestError> {
        if !self.pending.is_empty() || !self.output.is_empty() {
            return Err(RequestError::StlsPending);
        }
        self.command(b"STLS", &[], Expect::Stls)
    }

    /// `UTF8` (RFC 6856 §2): UTF-8 mode, in the AUTHORIZATION state, so the
    /// server sends internationalised messages as they are.
    pub fn utf8(&mut self) -> Result<(), RequestError> {
        self.command(b"UTF8", &[], Expect::Single)
    }

    /// `USER name`
    pub fn user(&mut self, name: &str) -> Result<(), RequestError> {
        self.command(b"USER", &[name.as_bytes()], Expect::Single)
    }

    /// `PASS password` (the rest of the line, spaces included, RFC 1939 §7).
    pub fn pass(&mut self, password: &str) -> Result<(), RequestError> {
        self.command(b"PASS", &[password.as_bytes()], Expect::Single)
    }

    /// `APOP name digest`; `digest` from [`apop_digest`].
    pub fn apop(&mut self, name: &str, digest: &str) -> Result<(), RequestError> {
        self.command(
            b"APOP",
            &[name.as_bytes(), digest.as_bytes()],
            Expect::Single,
        )
    }

    /// `AUTH mechanism [initial-response]` (RFC 5034); an empty initial
    /// response is sent as `=`.
    pub fn auth(&mut self, mechanism: &str, initial: Option<&[u8]>) -> Result<(), RequestError> {
        match initial {
            None => self.command(b"AUTH", &[mechanism.as_bytes()], Expect::Sasl),
            Some(data) => {
                let encoded = encode_sasl(data);
                self.command(
                    b"AUTH",
                    &[mechanism.as_bytes(), encoded.as_bytes()],
                    Expect::Sasl,
                )
            }
        }
    }

    /// Answers a SASL challenge.
    pub fn auth_response(&mut self, data: &[u8]) -> Result<(), RequestError> {
        let encoded = BASE64.encode(data);
        self.line(encoded.as_bytes(), Expect::Sasl)
    }

    /// Cancels a SASL exchange (`*`); the server answers `-ERR`.
    pub fn auth_cancel(&mut self) -> Result<(), RequestError> {
        self.line(b"*", Expect::Sasl)
    }

    /// `STAT`
    pub fn stat(&mut self) -> Result<(), RequestError> {
        self.command(b"STAT", &[], Expect::Single)
    }

    /// `LIST` (the whole scan listing).
    pub fn list(&mut self) -> Result<(), RequestError> {
        self.command(b"LIST", &[], Expect::Scan)
    }

    /// `LIST n` (one scan line, in the status).
    pub fn list_one(&mut self, n: MsgNum) -> Result<(), RequestError> {
        self.numbered(b"LIST", n, None, Expect::Single)
    }

    /// `UIDL` (the whole unique-id listing).
    pub fn uidl(&mut self) -> Result<(), RequestError> {
        self.command(b"UIDL", &[], Expect::Uidl)
    }

    /// `RETR n`; content past `limit` octets is a [`ProtocolError`].
    pub fn retr(&mut self, n: MsgNum, limit: u64) -> Result<(), RequestError> {
        self.numbered(b"RETR", n, None, Expect::Content { limit })
    }

    /// `TOP n lines`; content past `limit` octets is a [`ProtocolError`].
    pub fn top(&mut self, n: MsgNum, lines: u32, limit: u64) -> Result<(), RequestError> {
        self.numbered(b"TOP", n, Some(lines), Expect::Content { limit })
    }

    /// `DELE n`
    pub fn dele(&mut self, n: MsgNum) -> Result<(), RequestError> {
        self.numbered(b"DELE", n, None, Expect::Single)
    }

    /// `RSET`
    pub fn rset(&mut self) -> Result<(), RequestError> {
        self.command(b"RSET", &[], Expect::Single)
    }

    /// `NOOP`
    pub fn noop(&mut self) -> Result<(), RequestError> {
        self.command(b"NOOP", &[], Expect::Single)
    }

    /// `QUIT`: in the TRANSACTION state, the server commits deletions
    /// (the UPDATE state) before its `+OK`.
    pub fn quit(&mut self) -> Result<(), RequestError> {
        self.command(b"QUIT", &[], Expect::Single)
    }

    /// The next reply, or piece of content, if enough input is buffered.
    /// After an error every later call returns the same error.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.parse();
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        result
    }

    fn parse(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(body) = self.body.as_mut() {
            let event = parse_body(
                body,
                &self.input,
                &mut self.pos,
                &mut self.discarding,
                self.limits,
            )?;
            if event
                .as_ref()
                .is_some_and(|e| !matches!(e, Event::Content(_)))
            {
                self.body = None;
                self.pending.pop_front();
            }
            return Ok(event);
        }
        if !self.has_buffered_input() {
            return Ok(None);
        }
        let Some(&expect) = self.pending.front() else {
            return Err(ProtocolError::Unsolicited);
        };
        let line = match take_line(
            &self.input,
            &mut self.pos,
            &mut self.discarding,
            MAX_STATUS_TEXT + 8,
        ) {
            None => return Ok(None),
            Some(Taken::Line(line) | Taken::TooLong(line)) => line,
        };
        if expect == Expect::Sasl && (line == b"+" || line.starts_with(b"+ ")) {
            self.pending.pop_front();
            let data = line.get(2..).unwrap_or_default();
            return match BASE64.decode(data) {
                Ok(challenge) => Ok(Some(Event::Challenge(challenge))),
                Err(_) => Err(ProtocolError::BadChallenge),
            };
        }
        let Some(status) = Status::parse(&line) else {
            return Err(ProtocolError::BadStatusLine(escape(&line)));
        };
        let body = match expect {
            _ if !status.ok => None,
            Expect::Capa => Some(Body::Capa(Capabilities::default(), 0)),
            Expect::Scan => Some(Body::Scan(Vec::new(), 0)),
            Expect::Uidl => Some(Body::Uidl(Vec::new(), 0)),
            Expect::Content { limit } => Some(Body::Content {
                decoder: ContentDecoder::new(),
                received: 0,
                limit,
                done: false,
            }),
            Expect::Stls if self.has_buffered_input() => return Err(ProtocolError::DataAfterStls),
            Expect::Greeting | Expect::Single | Expect::Stls | Expect::Sasl => None,
        };
        if let Some(body) = body {
            self.body = Some(body);
            return self.parse();
        }
        self.pending.pop_front();
        Ok(Some(if expect == Expect::Greeting {
            Event::Greeting(status)
        } else {
            Event::Status(status)
        }))
    }

    fn command(&mut self, verb: &[u8], args: &[&[u8]], expect: Expect) -> Result<(), RequestError> {
        if self.pending.back() == Some(&Expect::Stls) {
            return Err(RequestError::StlsPending);
        }
        if args.iter().any(|a| !valid_argument(a)) {
            return Err(RequestError::BadArgument);
        }
        self.output.extend_from_slice(verb);
        for arg in args {
            self.output.push(b' ');
            self.output.extend_from_slice(arg);
        }
        self.output.extend_from_slice(b"\r\n");
        self.pending.push_back(expect);
        Ok(())
    }

    fn numbered(
        &mut self,
        verb: &[u8],
        n: MsgNum,
        extra: Option<u32>,
        expect: Expect,
    ) -> Result<(), RequestError> {
        let n = n.to_string();
        match extra {
            None => self.command(verb, &[n.as_bytes()], expect),
            Some(lines) => {
                let lines = lines.to_string();
                self.command(verb, &[n.as_bytes(), lines.as_bytes()], expect)
            }
        }
    }

    fn line(&mut self, text: &[u8], expect: Expect) -> Result<(), RequestError> {
        if self.pending.back() == Some(&Expect::Stls) {
            return Err(RequestError::StlsPending);
        }
        if text.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(RequestError::BadArgument);
        }
        self.output.extend_from_slice(text);
        self.output.extend_from_slice(b"\r\n");
        self.pending.push_back(expect);
        Ok(())
    }
}

/// Continues a multi-line body. `Ok(Some(event))` when the body is
/// complete (for content: the end marker), `Ok(None)` when more input is
/// needed — except for content, which returns what it decoded as it goes.
fn parse_body(
    body: &mut Body,
    input: &[u8],
    pos: &mut usize,
    discarding: &mut bool,
    limits: Limits,
) -> Result<Option<Event>, ProtocolError> {
    if let Body::Content {
        decoder,
        received,
        limit,
        done,
    } = body
    {
        if *done {
            return Ok(Some(Event::ContentEnd));
        }
        // The rest of an over-long `+OK` line is not content.
        if *discarding {
            match memchr::memchr(b'\n', &input[*pos..]) {
                Some(lf) => {
                    *pos += lf + 1;
                    *discarding = false;
                }
                None => {
                    *pos = input.len();
                    return Ok(None);
                }
            }
        }
        let mut out = Vec::new();
        let (used, finished) = decoder.decode(&input[*pos..], &mut out);
        *pos += used;
        *received += out.len() as u64;
        if *received > *limit {
            return Err(ProtocolError::ContentTooLong(*limit));
        }
        *done = finished;
        // Content goes out as it is decoded; the end marker follows on the
        // next call.
        return Ok(match (out.is_empty(), finished) {
            (true, true) => Some(Event::ContentEnd),
            (true, false) => None,
            (false, _) => Some(Event::Content(out)),
        });
    }
    loop {
        let line = match take_line(input, pos, discarding, listing::MAX_LINE) {
            None => return Ok(None),
            Some(Taken::TooLong(_)) => {
                match body {
                    Body::Capa(_, rejected) | Body::Scan(_, rejected) | Body::Uidl(_, rejected) => {
                        *rejected += 1
                    }
                    Body::Content { .. } => {}
                }
                continue;
            }
            Some(Taken::Line(line)) => line,
        };
        if line == b"." {
            return Ok(Some(
                match std::mem::replace(body, Body::Capa(Capabilities::default(), 0)) {
                    Body::Capa(caps, _) => Event::Capabilities(caps),
                    Body::Scan(entries, rejected) => Event::Scan { entries, rejected },
                    Body::Uidl(entries, rejected) => Event::Uids { entries, rejected },
                    Body::Content { .. } => Event::ContentEnd,
                },
            ));
        }
        // Listing lines never need stuffing, but a server may stuff anyway.
        let line = match line.strip_prefix(b".") {
            Some(rest) => rest,
            None => &line[..],
        };
        match body {
            Body::Capa(caps, count) => {
                *count += 1;
                if *count <= capabilities::MAX_LINES {
                    caps.add_line(line);
                }
            }
            Body::Scan(entries, rejected) => {
                add_entry(entries, rejected, parse_scan(line), limits)?
            }
            Body::Uidl(entries, rejected) => add_entry(entries, rejected, parse_uid(line), limits)?,
            Body::Content { .. } => {}
        }
    }
}

/// Adds a parsed listing line, or counts it as rejected; more entries than
/// [`Limits::max_entries`] is an error.
fn add_entry<T>(
    entries: &mut Vec<T>,
    rejected: &mut usize,
    parsed: Option<T>,
    limits: Limits,
) -> Result<(), ProtocolError> {
    match parsed {
        Some(_) if entries.len() >= limits.max_entries => {
            Err(ProtocolError::TooManyEntries(limits.max_entries))
        }
        Some(entry) => {
            entries.push(entry);
            Ok(())
        }
        None => {
            *rejected += 1;
            Ok(())
        }
    }
}

/// Takes one line of at most `max` octets (CRLF or LF removed). A longer
/// line yields its first `max` octets once; the rest is dropped as it
/// arrives, so it never sits in memory.
fn take_line(input: &[u8], pos: &mut usize, discarding: &mut bool, max: usize) -> Option<Taken> {
    loop {
        let rest = &input[*pos..];
        match memchr::memchr(b'\n', rest) {
            Some(lf) if *discarding => {
                *pos += lf + 1;
                *discarding = false;
            }
            None if *discarding => {
                *pos = input.len();
                return None;
            }
            Some(lf) => {
                let line = &rest[..lf];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                *pos += lf + 1;
                return Some(if line.len() > max {
                    Taken::TooLong(line[..max].to_vec())
                } else {
                    Taken::Line(line.to_vec())
                });
            }
            None if rest.len() > max + 1 => {
                let prefix = rest[..max].to_vec();
                *pos = input.len();
                *discarding = true;
                return Some(Taken::TooLong(prefix));
            }
            None => return None,
        }
    }
}

/// Whether `arg` can go into a command line as one argument.
fn valid_argument(arg: &[u8]) -> bool {
    !arg.is_empty() && arg.len() <= 255 && !arg.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// A SASL initial response: base64, or `=` for an empty one (RFC 5034 §4).
fn encode_sasl(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        BASE64.encode(data)
    }
}
