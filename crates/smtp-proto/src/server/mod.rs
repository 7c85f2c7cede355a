//! The server side of an SMTP session (RFC 5321), as a state machine on bytes.
//!
//! Same shape as the POP3 session: the driver feeds bytes with
//! [`Session::receive`], calls [`Session::poll`], writes out
//! [`Session::output`], and carries out [`Action`]s, reporting each outcome
//! with the method its documentation names. Commands are answered strictly
//! in order (PIPELINING, RFC 2920): output is written whenever the session
//! needs more input.
//!
//! ```text
//! connected --EHLO/HELO--> ready --MAIL--> mail --RCPT--> rcpt --DATA/BDAT--> ready
//!     \---- STARTTLS: back to connected, everything forgotten ----/
//! ```

mod auth;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use yubin_line::{Line, LineReader};

use crate::address::{ForwardPath, Mailbox};
use crate::command::{self, Command, MailParams, ParseError};
use crate::data::{BdatConverter, DataReceiver, LineEnds};
use crate::reply::{Reply, multiline, replies};

/// Content is handed to the driver in pieces of about this size.
const DATA_CHUNK: usize = 256 * 1024;
/// Output beyond this size is written before more is produced.
const FLUSH_AT: usize = 64 * 1024;

/// Settings shared by every session of a listener.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This server's name, in the greeting and the EHLO answer.
    pub hostname: String,
    /// The largest message accepted, in octets (SIZE, RFC 1870).
    pub max_message_size: u64,
    /// The most recipients per message.
    pub max_recipients: usize,
    /// Longest command line accepted (RFC 5321 §4.5.3.1.4 says 512; clients
    /// send longer AUTH lines).
    pub max_line_len: usize,
    /// Errors tolerated; the next one closes the session with 421.
    pub max_errors: u32,
    /// SASL mechanisms the server supports, upper-case.
    pub sasl_mechanisms: Vec<String>,
    /// Most `Received:` fields a message may carry; more is a forwarding
    /// loop (RFC 5321 §6.3) and the message is refused.
    pub max_hops: u32,
    /// Commands that move no mail (NOOP, RSET, VRFY, HELP) allowed before
    /// each one counts as an error.
    pub max_junk_commands: u32,
    /// What a bare LF or bare CR inside DATA does.
    pub line_ends: LineEnds,
    /// How strictly command arguments are read.
    pub syntax: command::Syntax,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_len: 4096,
            max_errors: 20,
            sasl_mechanisms: Vec::new(),
            max_hops: 100,
            max_junk_commands: 100,
            line_ends: LineEnds::default(),
            syntax: command::Syntax::default(),
        }
    }
}

/// What this connection offers; it changes when TLS starts.
#[derive(Clone, Debug, Default)]
pub struct Offer {
    /// The connection is encrypted.
    pub tls_active: bool,
    /// STARTTLS can be offered.
    pub starttls_available: bool,
    /// AUTH is offered at all (RFC 4954 is not offered in plaintext off loopback).
    pub auth_allowed: bool,
    /// The PLAIN and LOGIN mechanisms (which carry the password) are allowed.
    pub plaintext_auth: bool,
    /// A submission listener: MAIL needs authentication first.
    pub submission: bool,
}

/// How a recipient was accepted; the driver decides, the session keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient<R = String> {
    /// The address as the client gave it.
    pub path: ForwardPath,
    /// The driver's decision, kept as it gave it (where the copies go, and
    /// why relaying was allowed); the session never looks inside.
    pub route: R,
}

/// The envelope handed over at the end of the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<R = String> {
    /// The reverse-path; `None` is the null sender.
    pub from: Option<Mailbox>,
    /// MAIL's parameters.
    pub params: MailParams,
    /// The accepted recipients, in order.
    pub recipients: Vec<Recipient<R>>,
}

/// A request for the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<R = String> {
    /// Decide about a recipient (local user, relay, or refusal). Report with
    /// [`Session::recipient_accepted`] or [`Session::recipient_refused`].
    CheckRecipient {
        /// The address.
        path: ForwardPath,
        /// The user authenticated in this session, if any.
        authenticated: Option<String>,
    },
    /// Begin a SASL exchange; report as in the POP3 core:
    /// [`Session::sasl_challenge`], [`Session::credentials_accepted`] or
    /// [`Session::credentials_rejected`].
    SaslStart {
        /// The mechanism, upper-case.
        mechanism: String,
        /// The decoded initial response, if any.
        initial_response: Option<Vec<u8>>,
    },
    /// Continue the SASL exchange.
    SaslStep {
        /// The decoded response.
        response: Vec<u8>,
    },
    /// Write out the output, then start TLS. Report with
    /// [`Session::tls_established`]; on failure close the connection.
    StartTls,
    /// Take the next piece of message content with [`Session::take_data`]
    /// (LF line ends, un-stuffed) and store it. No report.
    MessageData,
    /// The message is complete: take the last content with
    /// [`Session::take_data`], make it durable for every recipient, then
    /// report with [`Session::message_accepted`] or [`Session::message_refused`].
    EndOfMessage(Envelope<R>),
    /// The message was refused (too big, bare line ends): throw away what
    /// was stored. No report.
    DiscardMessage,
    /// Wait, then call [`Session::delay_elapsed`] (failed authentication).
    Delay(Duration),
}

/// What the driver should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll<R = String> {
    /// Write out the output, then carry out this action.
    Action(Action<R>),
    /// Write out the output, then poll again.
    Flush,
    /// Write out the output, then read from the client and call `receive`.
    NeedInput,
    /// Write out the output, then close the connection.
    Close,
    /// An action is outstanding; report its outcome first. (A driver bug.)
    Pending,
}

#[derive(Debug)]
enum Phase<R> {
    /// Before EHLO/HELO.
    Connected,
    /// Greeted, no transaction.
    Ready,
    /// In a transaction (MAIL given; maybe recipients).
    Transaction(transaction::Transaction<R>),
    /// Receiving DATA.
    Data(transaction::Transaction<R>, DataReceiver),
    /// Receiving a BDAT chunk: octets still to come.
    Bdat {
        transaction: Option<transaction::Transaction<R>>,
        remaining: u64,
        last: bool,
        /// The reply the chunk gets when it cannot be accepted.
        refusal: Option<Reply>,
    },
    /// Closed.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Recipient,
    Credentials,
    Tls,
    Delivery,
    Delay,
}

/// One SMTP server session.
pub struct Session<R = String> {
    config: Arc<SessionConfig>,
    offer: Offer,
    phase: Phase<R>,
    lines: LineReader,
    line: Vec<u8>,
    output: Vec<u8>,
    data: Vec<u8>,
    next_action: Option<Action<R>>,
    awaiting: Option<Awaiting>,
    errors: u32,
    esmtp: bool,
    client_name: Option<String>,
    authenticated: Option<String>,
    sasl: Option<auth::SaslState>,
    quit: bool,
    /// The driver says the spool's filesystem is nearly full.
    storage_low: bool,
    /// Commands so far that moved no mail.
    junk_commands: u32,
    /// BDAT content of the current message, converted as it arrives.
    bdat: BdatConverter,
    /// A transaction that BDAT has started (so DATA is no longer allowed).
    bdat_started: bool,
    /// The driver holds content of the current message (`MessageData` was
    /// handed out and neither `EndOfMessage` nor `DiscardMessage` since).
    data_handed: bool,
    /// The transaction ended without its message (RSET, EHLO, STARTTLS):
    /// the driver must be told to drop what it holds.
    discard_owed: bool,
}

impl<R> Session<R> {
    /// Starts a session; the greeting is already in the output.
    pub fn new(config: Arc<SessionConfig>, offer: Offer) -> Session<R> {
        let mut output = Vec::with_capacity(128);
        Reply::with_text(220, "", format!("{} ESMTP yubin", config.hostname)).write_to(&mut output);
        Session {
            lines: LineReader::new(config.max_line_len),
            config,
            offer,
            phase: Phase::Connected,
            line: Vec::new(),
            output,
            data: Vec::new(),
            next_action: None,
            awaiting: None,
            errors: 0,
            esmtp: false,
            client_name: None,
            authenticated: None,
            sasl: None,
            quit: false,
            storage_low: false,
            junk_commands: 0,
            bdat: BdatConverter::default(),
            bdat_started: false,
            data_handed: false,
            discard_owed: false,
        }
    }

    /// Bytes received from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.lines.push(bytes);
    }

    /// Bytes to send to the client.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Marks the output as written.
    pub fn clear_output(&mut self) {
        self.output.clear();
        if self.output.capacity() > FLUSH_AT * 2 {
            self.output = Vec::new();
        }
    }

    /// Lets go of buffer memory while the session waits for the client.
    pub fn shrink_buffers(&mut self) {
        if self.output.is_empty() {
            self.output = Vec::new();
        }
        self.lines.shrink();
        self.line = Vec::new();
        if self.data.is_empty() {
            self.data = Vec::new();
        }
    }

    /// Takes the message content received so far (LF line ends, un-stuffed).
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// The user authenticated with AUTH in this session.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// The reverse-path of the transaction in progress (`None`: no
    /// transaction, or the null sender).
    pub fn sender(&self) -> Option<&Mailbox> {
        match &self.phase {
            Phase::Transaction(t) => t.sender(),
            _ => None,
        }
    }

    /// The client's EHLO/HELO name.
    pub fn client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// Whether the client used EHLO (ESMTP) rather than HELO.
    pub fn esmtp(&self) -> bool {
        self.esmtp
    }

    /// What the connection offers now.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Whether the client ended with QUIT.
    pub fn quit_received(&self) -> bool {
        self.quit
    }

    /// Tells the session whether there is room for a new message; while
    /// there is not, MAIL is answered `452 4.3.1` (the client retries later).
    pub fn set_storage_low(&mut self, low: bool) {
        self.storage_low = low;
    }

    /// Whether the session is receiving message content (for the driver's timeouts).
    pub fn in_data(&self) -> bool {
        matches!(self.phase, Phase::Data(..) | Phase::Bdat { .. })
    }

    /// Processes buffered input until the driver has something to do.
    pub fn poll(&mut self) -> Poll<R> {
        if let Some(action) = self.next_action.take() {
            return Poll::Action(self.handing_out(action));
        }
        if std::mem::take(&mut self.discard_owed) {
            return Poll::Action(Action::DiscardMessage);
        }
        if self.awaiting.is_some() {
            return Poll::Pending;
        }
        loop {
            if matches!(self.phase, Phase::Closed) {
                return Poll::Close;
            }
            if self.output.len() >= FLUSH_AT {
                return Poll::Flush;
            }
            if self.data.len() >= DATA_CHUNK {
                return Poll::Action(self.handing_out(Action::MessageData));
            }
            if self.in_data() {
                if !self.content() {
                    return Poll::NeedInput;
                }
            } else {
                match self.lines.next_line(&mut self.line) {
                    None => return Poll::NeedInput,
                    Some(Line::TooLong) => {
                        self.sasl = None;
                        self.error(replies::LINE_TOO_LONG);
                        if is_verb(&self.line, b"BDAT") {
                            self.end_unsynchronised();
                        }
                    }
                    Some(Line::Complete) => self.handle_line(),
                }
            }
            if let Some(action) = self.next_action.take() {
                return Poll::Action(self.handing_out(action));
            }
            if std::mem::take(&mut self.discard_owed) {
                return Poll::Action(Action::DiscardMessage);
            }
        }
    }

    /// Keeps track of whether the driver holds message content.
    fn handing_out(&mut self, action: Action<R>) -> Action<R> {
        match action {
            Action::MessageData => self.data_handed = true,
            Action::EndOfMessage(_) | Action::DiscardMessage => {
                self.data_handed = false;
                self.discard_owed = false;
            }
            _ => {}
        }
        action
    }

    /// Ends the session because the server is stopping (no message is lost:
    /// nothing was acknowledged that is not stored).
    pub fn shutdown(&mut self) {
        if !matches!(self.phase, Phase::Closed) {
            replies::SHUTTING_DOWN.write_to(&mut self.output);
            self.phase = Phase::Closed;
        }
    }

    /// Ends the session after the idle timeout (RFC 5321 §4.5.3.2).
    pub fn timed_out(&mut self) {
        if !matches!(self.phase, Phase::Closed) {
            replies::TIMEOUT.write_to(&mut self.output);
            self.phase = Phase::Closed;
        }
    }

    /// DATA refused. RFC 2920 §3.1 makes DATA the last command of a
    /// pipelined group, so input already waiting behind it is message
    /// content sent without waiting for `354`: running it as commands could
    /// execute a smuggled transaction. The session ends instead.
    fn refuse_data(&mut self, reply: Reply) {
        if self.lines.is_empty() {
            self.error(reply);
        } else {
            reply.write_to(&mut self.output);
            replies::SYNC_ERROR.write_to(&mut self.output);
            self.phase = Phase::Closed;
        }
    }

    /// Ends the session with 421 4.5.0: what follows cannot be told apart
    /// from commands.
    fn end_unsynchronised(&mut self) {
        if !matches!(self.phase, Phase::Closed) {
            replies::SYNC_ERROR.write_to(&mut self.output);
            self.phase = Phase::Closed;
        }
    }

    fn handle_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if self.sasl.is_some() {
            self.sasl_response(&line);
        } else {
            match command::parse_with(&line, self.config.syntax) {
                Ok(command) => self.dispatch(command),
                Err(error) => {
                    self.parse_error(error, is_verb(&line, b"MAIL"));
                    // A BDAT line that does not parse has no size to trust:
                    // the octets behind it are a chunk of unknown length,
                    // and reading them as commands could run a smuggled
                    // transaction (issue 12). The session ends instead.
                    if is_verb(&line, b"BDAT") {
                        self.end_unsynchronised();
                    }
                }
            }
        }
        self.line = line;
    }

    /// `mail`: the line was a MAIL command, whose bad path is the sender's
    /// (RFC 3463 X.1.7) rather than a recipient's (X.1.3).
    fn parse_error(&mut self, error: ParseError, mail: bool) {
        let reply = match error {
            ParseError::Unknown => replies::UNKNOWN_COMMAND,
            ParseError::InvalidBytes => replies::INVALID_BYTES,
            ParseError::Syntax(syntax) => {
                Reply::with_text(501, "5.5.4", format!("Syntax: {syntax}"))
            }
            ParseError::Path(_) if mail => replies::BAD_SENDER,
            ParseError::Path(_) => replies::BAD_ADDRESS,
            ParseError::UnsupportedParameter(p) => {
                // The parameter is client text; only a short, printable form is echoed.
                let shown: String = p
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(40)
                    .collect();
                Reply::with_text(555, "5.5.4", format!("Unsupported parameter {shown}"))
            }
        };
        self.error(reply);
    }

    /// Answers a command that moves no mail (NOOP, RSET, VRFY, HELP, a
    /// cancelled AUTH). Each one resets the client's command timeout, so
    /// past `max_junk_commands` they count as errors (Postfix's
    /// `smtpd_junk_command_limit`): a client cannot hold a connection for
    /// ever with NOOPs.
    pub(super) fn junk(&mut self, reply: Reply) {
        self.junk_commands = self.junk_commands.saturating_add(1);
        if self.junk_commands > self.config.max_junk_commands {
            self.error(reply);
        } else {
            self.reply(reply);
        }
    }

    /// Answers with an error reply and closes after too many.
    fn error(&mut self, reply: Reply) {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            reply.write_to(&mut self.output);
            replies::TOO_MANY_ERRORS.write_to(&mut self.output);
            self.phase = Phase::Closed;
        } else {
            reply.write_to(&mut self.output);
        }
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
    }

    fn act(&mut self, action: Action<R>, awaiting: Awaiting) {
        self.next_action = Some(action);
        self.awaiting = Some(awaiting);
    }

    fn take_awaiting(&mut self, expected: Awaiting) -> bool {
        if self.awaiting == Some(expected) {
            self.awaiting = None;
            true
        } else {
            false
        }
    }

    fn dispatch(&mut self, command: Command) {
        match command {
            Command::Ehlo(name) => self.greet(name, true),
            Command::Helo(name) => self.greet(name, false),
            Command::Noop => self.junk(replies::OK),
            Command::Quit => {
                self.quit = true;
                self.reply(replies::BYE);
                self.phase = Phase::Closed;
            }
            Command::Rset => {
                self.reset_transaction();
                self.junk(replies::OK);
            }
            Command::Vrfy => self.junk(replies::VRFY),
            Command::Expn => self.error(replies::EXPN),
            Command::Help => self.junk(replies::HELP),
            Command::StartTls => self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt(path) => self.rcpt(path),
            Command::Data => self.data_command(),
            Command::Bdat { size, last } => self.bdat_command(size, last),
        }
    }

    fn greet(&mut self, name: String, esmtp: bool) {
        // RFC 5321 §4.1.4: EHLO/HELO also reset any transaction.
        self.reset_transaction();
        self.phase = Phase::Ready;
        self.esmtp = esmtp;
        if !esmtp {
            self.reply(Reply::with_text(
                250,
                "",
                format!("{} Hello", self.config.hostname),
            ));
            self.client_name = Some(name);
            return;
        }
        let mut lines = vec![format!("{} Hello", self.config.hostname)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.config.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("CHUNKING".into());
        if self.offer.starttls_available && !self.offer.tls_active {
            lines.push("STARTTLS".into());
        }
        let mechanisms = self.usable_mechanisms();
        if self.offer.auth_allowed && !mechanisms.is_empty() {
            lines.push(format!("AUTH {}", mechanisms.join(" ")));
        }
        lines.push("HELP".into());
        multiline(&mut self.output, 250, &lines);
        self.client_name = Some(name);
    }

    fn starttls(&mut self) {
        if self.offer.tls_active {
            self.error(replies::TLS_ACTIVE);
            return;
        }
        if !self.offer.starttls_available {
            self.error(replies::TLS_UNAVAILABLE);
            return;
        }
        self.reply(replies::TLS_GO);
        // RFC 3207 §4.2 and CVE-2011-0411: nothing sent before the handshake
        // may be acted on after it.
        self.lines.clear();
        self.act(Action::StartTls, Awaiting::Tls);
    }

    /// The outcome of `StartTls`: the handshake succeeded. RFC 3207 §4.2:
    /// the session starts over; the client must send EHLO again.
    pub fn tls_established(&mut self, offer: Offer) {
        if self.take_awaiting(Awaiting::Tls) {
            self.offer = offer;
            self.lines.clear();
            self.reset_transaction();
            self.phase = Phase::Connected;
            self.esmtp = false;
            self.client_name = None;
            self.authenticated = None;
        }
    }

    /// The outcome of `Delay`.
    pub fn delay_elapsed(&mut self) {
        if self.take_awaiting(Awaiting::Delay) {
            self.error(replies::AUTH_FAILED);
        }
    }
}

/// Whether a command line starts with `verb` (any case) followed by a
/// space or nothing.
fn is_verb(line: &[u8], verb: &[u8]) -> bool {
    line.len() >= verb.len()
        && line[..verb.len()].eq_ignore_ascii_case(verb)
        && line.get(verb.len()).is_none_or(|&b| b == b' ')
}

#[cfg(test)]
mod tests;
