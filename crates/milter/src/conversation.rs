//! One message's conversation with one filter: option negotiation, then
//! connect, HELO, MAIL, RCPT, DATA, the header fields, end of header, the
//! body and end of message, each step left out or sent without waiting
//! as the filter asked; then the filter's edits and its verdict.
//!
//! yubin holds the whole message when filters run (end of DATA), so the
//! steps are sent one after another, as Postfix does for one message. A
//! verdict at an early step ends the conversation there.

use std::net::IpAddr;

use crate::flags::{OLDEST_VERSION, VERSION, action, step};
use crate::header;
use crate::packet::{Packet, encode};

/// The longest body chunk (libmilter's `MILTER_CHUNK_SIZE`).
const CHUNK: usize = 65_535;
/// How much is written at once when the filter answers nothing in
/// between (no-reply steps), so that a large body is not copied whole.
const BATCH: usize = 64 * 1024;
/// The most header edits one filter may ask for, and their bytes: a
/// filter is trusted, but not to make us hold without bound.
const MAX_EDITS: usize = 1000;
const MAX_EDIT_BYTES: usize = 1024 * 1024;

/// What the conversation is about: the client, the envelope and the
/// message.
#[derive(Clone, Debug)]
pub struct Transaction<'a> {
    /// Our host name (the `j` macro).
    pub our_name: &'a str,
    /// The client's host name as checked, or `[address]` when it has none
    /// (then `{client_name}` says `unknown`, as Postfix's does).
    pub client_name: &'a str,
    /// The client's address; `None` sends the family "unknown".
    pub client_ip: Option<IpAddr>,
    /// The client's port.
    pub client_port: u16,
    /// What the client said in HELO or EHLO.
    pub helo: &'a str,
    /// MAIL FROM without its brackets (empty: the null sender).
    pub mail_from: &'a str,
    /// RCPT TO addresses without brackets.
    pub recipients: &'a [String],
    /// Our queue id for the message (the `i` macro: filters log it).
    pub queue_id: &'a str,
    /// The user who authenticated (`{auth_authen}`), if any.
    pub user: Option<&'a str>,
    /// The message as it came, with CRLF line ends.
    pub message: &'a [u8],
}

/// A reply the filter chose, to be given to the SMTP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// 4xx or 5xx.
    pub code: u16,
    /// The text after the code, lines joined with a space; it may start
    /// with an enhanced status code.
    pub text: String,
}

/// What the filter decided about the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: deliver it, with the edits (the filter said "continue" at
    /// end of message).
    Continue,
    /// Deliver it; the filter wants to see no more of it.
    Accept,
    /// Refuse it, with the filter's reply if it gave one.
    Reject(Option<Reply>),
    /// Refuse it for now, with the filter's reply if it gave one.
    Tempfail(Option<Reply>),
    /// Accept it and throw it away (the client is told 250).
    Discard,
}

/// A change the filter asked for in the header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Append a field at the end of the header.
    Add {
        /// The field's name.
        name: String,
        /// Its value, with LF line ends, starting with its space.
        value: String,
    },
    /// Insert a field before the `index`th field (0: at the top).
    Insert {
        /// Where, counting the fields the message arrived with.
        index: u32,
        /// The field's name.
        name: String,
        /// Its value, as for `Add`.
        value: String,
    },
    /// Replace the `index`th field called `name` (1: the first); an empty
    /// value deletes it.
    Change {
        /// Which occurrence, from 1.
        index: u32,
        /// The field's name.
        name: String,
        /// Its new value, as for `Add`; empty deletes the field.
        value: String,
    },
}

/// The end of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What the filter decided.
    pub verdict: Verdict,
    /// Header changes to make if the message is delivered, in order.
    pub edits: Vec<HeaderEdit>,
    /// The filter asked for quarantine, with this reason.
    pub quarantine: Option<String>,
    /// What the filter asked for that is not done (changing the body, the
    /// sender or the recipients), as command letters, for the log.
    pub ignored: Vec<char>,
}

/// What the caller does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write these bytes to the filter, then ask again.
    Send(Vec<u8>),
    /// Read one packet from the filter, give it to
    /// [`Conversation::receive`], then ask again.
    Receive,
    /// The conversation is over (our QUIT has been handed out); close the
    /// connection.
    Done(Outcome),
}

/// Why a conversation failed: the filter is treated as down.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The filter sent something the protocol does not allow here.
    #[error("milter protocol: {0}")]
    Protocol(String),
    /// Option negotiation failed (an old version, or a step or action we
    /// did not offer).
    #[error("milter negotiation: {0}")]
    Negotiation(String),
}

/// Where the conversation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Negotiate,
    Connect,
    Helo,
    Mail,
    Rcpt(usize),
    Data,
    Header(usize),
    EndOfHeader,
    Body(usize),
    EndOfMessage,
    Quit,
    Over,
}

/// One message's conversation with one filter.
#[derive(Debug)]
pub struct Conversation<'a> {
    tx: Transaction<'a>,
    fields: Vec<header::Field<'a>>,
    body_start: usize,
    stage: Stage,
    /// The step just sent waits for an answer.
    waiting: bool,
    /// What the filter asked for in negotiation.
    actions: u32,
    steps: u32,
    verdict: Option<Verdict>,
    edits: Vec<HeaderEdit>,
    edit_bytes: usize,
    quarantine: Option<String>,
    ignored: Vec<char>,
}

impl<'a> Conversation<'a> {
    /// A conversation about `tx`, nothing sent yet.
    pub fn new(tx: Transaction<'a>) -> Self {
        let (fields, body_start) = header::split(tx.message);
        Conversation {
            tx,
            fields,
            body_start,
            stage: Stage::Negotiate,
            waiting: false,
            actions: 0,
            steps: 0,
            verdict: None,
            edits: Vec::new(),
            edit_bytes: 0,
            quarantine: None,
            ignored: Vec::new(),
        }
    }

    /// What to do next.
    pub fn next_step(&mut self) -> Next {
        if self.waiting {
            return Next::Receive;
        }
        let mut out = Vec::new();
        loop {
            match self.stage {
                Stage::Over => {
                    if !out.is_empty() {
                        return Next::Send(out);
                    }
                    return Next::Done(Outcome {
                        verdict: self.verdict.take().unwrap_or(Verdict::Continue),
                        edits: std::mem::take(&mut self.edits),
                        quarantine: self.quarantine.take(),
                        ignored: std::mem::take(&mut self.ignored),
                    });
                }
                Stage::Quit => {
                    encode(&mut out, b'Q', &[]);
                    self.stage = Stage::Over;
                }
                stage => {
                    self.waiting = self.write_stage(stage, &mut out);
                    if self.waiting {
                        return Next::Send(out);
                    }
                    // Sent without an answer due: on to the next step
                    // before handing the batch over.
                    self.stage = self.after(stage);
                    if out.len() >= BATCH {
                        return Next::Send(out);
                    }
                }
            }
        }
    }

    /// Takes the filter's answer to what was sent.
    pub fn receive(&mut self, packet: Packet) -> Result<(), Error> {
        if !self.waiting {
            return Err(Error::Protocol(format!(
                "an unasked-for packet '{}'",
                printable(packet.code)
            )));
        }
        if self.stage == Stage::Negotiate {
            self.negotiated(&packet.data, packet.code)?;
            self.waiting = false;
            self.stage = Stage::Connect;
            return Ok(());
        }
        let eom = self.stage == Stage::EndOfMessage;
        let data = &packet.data;
        match packet.code {
            b'p' => return Ok(()),
            b'c' if !eom => self.stage = self.after(self.stage),
            b'c' => self.finish(Verdict::Continue),
            b'a' => self.finish(Verdict::Accept),
            b'r' => self.finish(Verdict::Reject(None)),
            b't' => self.finish(Verdict::Tempfail(None)),
            b'd' => self.finish(Verdict::Discard),
            b'y' => {
                let reply = parse_reply(data)?;
                self.finish(if reply.code >= 500 {
                    Verdict::Reject(Some(reply))
                } else {
                    Verdict::Tempfail(Some(reply))
                });
            }
            b's' if matches!(self.stage, Stage::Body(_)) && self.steps & step::SKIP != 0 => {
                self.stage = Stage::EndOfMessage;
            }
            b'h' | b'i' | b'm' | b'q' if eom => {
                self.edit(packet.code, data)?;
                return Ok(());
            }
            // Asked for in negotiation (filters such as rspamd's proxy ask
            // for every action), not done: noted for the log. Mail for our
            // users is not redirected or rewritten by a filter.
            b'b' | b'+' | b'-' | b'2' | b'e' if eom => {
                if self.ignored.len() < 16 && !self.ignored.contains(&char::from(packet.code)) {
                    self.ignored.push(char::from(packet.code));
                }
                return Ok(());
            }
            // The filter is shutting down, or wants the connection failed:
            // try again later (Sendmail answers 421).
            b'4' | b'f' => self.finish(Verdict::Tempfail(Some(Reply {
                code: 421,
                text: "4.7.0 Content filter shutting down".into(),
            }))),
            code => {
                return Err(Error::Protocol(format!(
                    "'{}' is not an answer at {:?}",
                    printable(code),
                    self.stage
                )));
            }
        }
        self.waiting = false;
        Ok(())
    }

    /// A verdict: the conversation ends with QUIT.
    fn finish(&mut self, verdict: Verdict) {
        self.verdict = Some(verdict);
        self.stage = Stage::Quit;
    }

    /// The filter's answer to option negotiation.
    fn negotiated(&mut self, data: &[u8], code: u8) -> Result<(), Error> {
        if code != b'O' || data.len() < 12 {
            return Err(Error::Negotiation(format!(
                "answered with '{}' and {} bytes",
                printable(code),
                data.len()
            )));
        }
        let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let (version, actions, steps) = (word(0), word(4), word(8));
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(Error::Negotiation(format!("version {version}")));
        }
        if actions & !action::OFFERED != 0 {
            return Err(Error::Negotiation(format!(
                "asks for actions {:#x}; offered {:#x}",
                actions,
                action::OFFERED
            )));
        }
        if steps & !step::OFFERED != 0 {
            return Err(Error::Negotiation(format!("asks for steps {steps:#x}")));
        }
        // What follows (macro lists asked for with SETSYMLIST) is read
        // past: we send the same macros to every filter.
        self.actions = actions;
        self.steps = steps;
        Ok(())
    }

    /// Writes `stage`'s packets (none if the filter left it out); whether
    /// an answer is due.
    fn write_stage(&self, stage: Stage, out: &mut Vec<u8>) -> bool {
        let tx = &self.tx;
        let skipped = |flag: u32| self.steps & flag != 0;
        let answered = |flag: u32| self.steps & flag == 0;
        match stage {
            Stage::Negotiate => {
                let mut data = Vec::with_capacity(12);
                data.extend_from_slice(&VERSION.to_be_bytes());
                data.extend_from_slice(&action::OFFERED.to_be_bytes());
                data.extend_from_slice(&step::OFFERED.to_be_bytes());
                encode(out, b'O', &[&data]);
                true
            }
            Stage::Connect if !skipped(step::NO_CONNECT) => {
                let ip = tx.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
                let port = tx.client_port.to_string();
                let underscore = format!("{} [{}]", tx.client_name, ip);
                macros(
                    out,
                    b'C',
                    &[
                        ("j", tx.our_name),
                        ("{daemon_name}", "yubin"),
                        ("v", "yubin"),
                        ("_", &underscore),
                        ("{client_addr}", &ip),
                        ("{client_port}", &port),
                        (
                            "{client_name}",
                            if tx.client_name.starts_with('[') {
                                "unknown"
                            } else {
                                tx.client_name
                            },
                        ),
                    ],
                );
                let name = nul_free(tx.client_name);
                match tx.client_ip {
                    Some(addr) => {
                        let family: &[u8] = if addr.is_ipv4() { b"4" } else { b"6" };
                        encode(
                            out,
                            b'C',
                            &[
                                name.as_bytes(),
                                b"\0",
                                family,
                                &tx.client_port.to_be_bytes(),
                                ip.as_bytes(),
                                b"\0",
                            ],
                        );
                    }
                    None => encode(out, b'C', &[name.as_bytes(), b"\0U"]),
                }
                answered(step::NR_CONNECT)
            }
            Stage::Helo if !skipped(step::NO_HELO) => {
                encode(out, b'H', &[nul_free(tx.helo).as_bytes(), b"\0"]);
                answered(step::NR_HELO)
            }
            Stage::Mail if !skipped(step::NO_MAIL) => {
                let mut pairs = vec![("i", tx.queue_id), ("{mail_addr}", tx.mail_from)];
                if let Some(user) = tx.user {
                    pairs.extend([("{auth_type}", "PLAIN"), ("{auth_authen}", user)]);
                }
                macros(out, b'M', &pairs);
                let from = format!("<{}>", nul_free(tx.mail_from));
                encode(out, b'M', &[from.as_bytes(), b"\0"]);
                answered(step::NR_MAIL)
            }
            Stage::Rcpt(i) if !skipped(step::NO_RCPT) => match tx.recipients.get(i) {
                Some(rcpt) => {
                    macros(out, b'R', &[("{rcpt_addr}", rcpt)]);
                    let to = format!("<{}>", nul_free(rcpt));
                    encode(out, b'R', &[to.as_bytes(), b"\0"]);
                    answered(step::NR_RCPT)
                }
                None => false,
            },
            Stage::Data if !skipped(step::NO_DATA) => {
                encode(out, b'T', &[]);
                answered(step::NR_DATA)
            }
            Stage::Header(i) if !skipped(step::NO_HEADERS) => match self.fields.get(i) {
                Some(field) => {
                    let value = if self.steps & step::HEADER_LEADING_SPACE != 0 {
                        field.value
                    } else {
                        trim_leading_space(field.value)
                    };
                    // Folds go as LF, as Postfix sends them; NUL would end
                    // the string early.
                    let value: Vec<u8> = value
                        .iter()
                        .copied()
                        .filter(|&b| b != b'\r' && b != 0)
                        .collect();
                    encode(out, b'L', &[field.name, b"\0", &value, b"\0"]);
                    answered(step::NR_HEADER)
                }
                None => false,
            },
            Stage::EndOfHeader if !skipped(step::NO_EOH) => {
                encode(out, b'N', &[]);
                answered(step::NR_EOH)
            }
            Stage::Body(at) if !skipped(step::NO_BODY) => {
                let body = &tx.message[self.body_start.min(tx.message.len())..];
                match body.get(at..) {
                    Some(rest) if !rest.is_empty() => {
                        let chunk = &rest[..rest.len().min(CHUNK)];
                        encode(out, b'B', &[chunk]);
                        answered(step::NR_BODY)
                    }
                    _ => false,
                }
            }
            Stage::EndOfMessage => {
                macros(out, b'E', &[("i", tx.queue_id)]);
                encode(out, b'E', &[]);
                true
            }
            _ => false,
        }
    }

    /// The stage after `stage` once it is done.
    fn after(&self, stage: Stage) -> Stage {
        match stage {
            Stage::Negotiate => Stage::Connect,
            Stage::Connect => Stage::Helo,
            Stage::Helo => Stage::Mail,
            Stage::Mail => Stage::Rcpt(0),
            Stage::Rcpt(i)
                if i + 1 < self.tx.recipients.len() && self.steps & step::NO_RCPT == 0 =>
            {
                Stage::Rcpt(i + 1)
            }
            Stage::Rcpt(_) => Stage::Data,
            Stage::Data => Stage::Header(0),
            Stage::Header(i) if i + 1 < self.fields.len() && self.steps & step::NO_HEADERS == 0 => {
                Stage::Header(i + 1)
            }
            Stage::Header(_) => Stage::EndOfHeader,
            Stage::EndOfHeader => Stage::Body(0),
            Stage::Body(at) => {
                let body = self.tx.message.len().saturating_sub(self.body_start);
                if at + CHUNK < body && self.steps & step::NO_BODY == 0 {
                    Stage::Body(at + CHUNK)
                } else {
                    Stage::EndOfMessage
                }
            }
            Stage::EndOfMessage | Stage::Quit => Stage::Quit,
            Stage::Over => Stage::Over,
        }
    }

    /// A header edit or quarantine at end of message.
    fn edit(&mut self, code: u8, data: &[u8]) -> Result<(), Error> {
        let needed = match code {
            b'h' | b'i' => action::ADD_HEADERS,
            b'm' => action::CHANGE_HEADERS,
            _ => action::QUARANTINE,
        };
        if self.actions & needed == 0 {
            return Err(Error::Protocol(format!(
                "'{}' without having asked for it",
                printable(code)
            )));
        }
        self.edit_bytes += data.len();
        if self.edits.len() >= MAX_EDITS || self.edit_bytes > MAX_EDIT_BYTES {
            return Err(Error::Protocol("too many header edits".into()));
        }
        if code == b'q' {
            let [reason] = strings::<1>(data)?;
            self.quarantine = Some(reason);
            return Ok(());
        }
        let (index, rest) = if code == b'h' {
            (0, data)
        } else {
            let Some((index, rest)) = data.split_first_chunk::<4>() else {
                return Err(Error::Protocol("a header edit without its index".into()));
            };
            (u32::from_be_bytes(*index), rest)
        };
        let [name, value] = strings::<2>(rest)?;
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(Error::Protocol(format!("a header name {name:?}")));
        }
        let value = self.stored_value(&value);
        self.edits.push(match code {
            b'h' => HeaderEdit::Add { name, value },
            b'i' => HeaderEdit::Insert { index, name, value },
            _ => HeaderEdit::Change { index, name, value },
        });
        Ok(())
    }

    /// A value from the filter as it will be stored: LF line ends, every
    /// line after the first starting with white space (a filter cannot
    /// add a field by folding), the leading space put back unless the
    /// filter sends it itself.
    fn stored_value(&self, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        let value = value.trim_end_matches(['\r', '\n', ' ', '\t']);
        if value.is_empty() {
            return String::new();
        }
        let mut out = String::with_capacity(value.len() + 2);
        if self.steps & step::HEADER_LEADING_SPACE == 0 {
            out.push(' ');
        }
        for (i, line) in value.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if i > 0 {
                out.push('\n');
                if !line.starts_with([' ', '\t']) {
                    out.push('\t');
                }
            }
            out.extend(line.chars().filter(|&c| c != '\r'));
        }
        out
    }
}

/// Appends a macro packet for `stage` (the command it precedes).
fn macros(out: &mut Vec<u8>, stage: u8, pairs: &[(&str, &str)]) {
    let mut data = vec![stage];
    for (name, value) in pairs {
        data.extend_from_slice(name.as_bytes());
        data.push(0);
        data.extend_from_slice(nul_free(value).as_bytes());
        data.push(0);
    }
    encode(out, b'D', &[&data]);
}

/// `s` without NUL bytes (they end a milter string).
fn nul_free(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "").into()
    } else {
        s.into()
    }
}

fn trim_leading_space(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    &value[start..]
}

/// `N` NUL-terminated strings at the start of `data` (text that is not
/// UTF-8 is taken lossily).
fn strings<const N: usize>(data: &[u8]) -> Result<[String; N], Error> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    let mut rest = data;
    for slot in &mut out {
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            return Err(Error::Protocol("a string without its NUL".into()));
        };
        *slot = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 1..];
    }
    Ok(out)
}

/// The text of a `y` packet: `550 5.7.1 text`, one line or several
/// (`550-…\r\n550 …`), into one code and one line of text.
fn parse_reply(data: &[u8]) -> Result<Reply, Error> {
    let text = data.strip_suffix(b"\0").unwrap_or(data);
    let text = String::from_utf8_lossy(text);
    let mut code = None;
    let mut parts = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        let digits = line.get(..3).and_then(|d| d.parse::<u16>().ok());
        let Some(this) = digits.filter(|c| (400..600).contains(c)) else {
            return Err(Error::Protocol(format!("a reply {line:?}")));
        };
        if *code.get_or_insert(this) != this {
            return Err(Error::Protocol("a reply with two codes".into()));
        }
        let rest = line[3..].trim_start_matches(['-', ' ']);
        let rest: String = rest.chars().filter(|c| !c.is_control()).collect();
        if !rest.is_empty() {
            parts.push(rest);
        }
    }
    let Some(code) = code else {
        return Err(Error::Protocol("an empty reply".into()));
    };
    // Every line after the first repeats the enhanced code: keep the first.
    let mut text = String::new();
    for (i, part) in parts.iter().enumerate() {
        let part = if i > 0 {
            strip_enhanced(part)
        } else {
            part.as_str()
        };
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(part);
    }
    Ok(Reply { code, text })
}

/// `part` without a leading enhanced status code (`5.7.1 `).
fn strip_enhanced(part: &str) -> &str {
    let mut words = part.splitn(2, ' ');
    match (words.next(), words.next()) {
        (Some(first), Some(rest))
            if first.split('.').count() == 3
                && first
                    .split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            rest
        }
        _ => part,
    }
}

fn printable(code: u8) -> char {
    if code.is_ascii_graphic() {
        code as char
    } else {
        '?'
    }
}

#[cfg(test)]
mod tests;
