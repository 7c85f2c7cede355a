//! The client side of SMTP, on bytes: one delivery attempt of one message
//! to one server, as the delivery engine makes it (RFC 5321 §3, §4).
//!
//! Like the server [`Session`](crate::Session), the client does no I/O and
//! keeps no clock. The driver connects, feeds what the server sends to
//! [`Client::receive`], writes [`Client::output`] when [`Client::poll`]
//! says [`Poll::Write`], performs the TLS handshake on [`Poll::StartTls`],
//! streams the message on [`Poll::SendContent`] (dot-stuffed, CRLF, with
//! the final `.` line: [`yubin_line::Encoder`]), and enforces
//! [`Client::timeout`]. At [`Poll::Done`], [`Client::results`] says, per
//! recipient, delivered, deferred (4xx: try again later) or failed (5xx:
//! bounce).
//!
//! What the client decides for itself: STARTTLS when offered (and, when
//! required, never a word of the transaction without it; bytes buffered
//! before the handshake are dropped), AUTH only over TLS, PIPELINING when
//! offered (MAIL, every RCPT and DATA in one write, RFC 2920 §3.1), SIZE
//! checked before sending, SMTPUTF8 required when the message needs it, and
//! a server that greets with our own name is a loop, not a destination.
//! With [`ClientConfig::lmtp`] the same machine speaks LMTP (RFC 2033), for
//! local delivery agents such as Dovecot's.

mod extensions;
mod response;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use extensions::Extensions;
use response::ResponseReader;
pub use response::{ProtocolError, Response};

/// Whether the client starts TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never send STARTTLS.
    Never,
    /// STARTTLS when the server offers it; plaintext otherwise.
    #[default]
    Opportunistic,
    /// STARTTLS or nothing: a server that does not offer it, or refuses
    /// it, gets no transaction (the mail waits).
    Required,
}

/// A user name and password for AUTH PLAIN or LOGIN (a smarthost).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"…")
            .finish()
    }
}

/// How the client presents itself.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Our name, sent with EHLO; a server answering with the same name is
    /// ourselves.
    pub helo_name: String,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// AUTH credentials, used over TLS only.
    pub credentials: Option<Credentials>,
    /// How long to wait for the server.
    pub timeouts: Timeouts,
    /// Speak LMTP (RFC 2033) instead: LHLO, and after the content one
    /// reply per accepted recipient.
    pub lmtp: bool,
    /// Refuse a server that greets with our own name (a mail loop). Off
    /// for handing mail to the local MTA, which rightly shares our name.
    pub loop_check: bool,
}

/// How long the client waits for the server (RFC 5321 §4.5.3.2; the
/// defaults are its values, as Postfix's `smtp_*_timeout` are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The greeting and the answers to EHLO, STARTTLS, AUTH, MAIL and RCPT
    /// (5 minutes).
    pub command: Duration,
    /// The answer to DATA (2 minutes).
    pub data_init: Duration,
    /// Each write of message content (3 minutes).
    pub data_block: Duration,
    /// The answer after the final dot (10 minutes).
    pub data_done: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_done: Duration::from_secs(600),
        }
    }
}

/// The envelope of the message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The reverse-path without brackets, `""` for the null sender.
    pub from: String,
    /// The recipients (addresses without brackets).
    pub recipients: Vec<String>,
    /// The size on the wire (CRLF line ends), for `SIZE=`.
    pub size: u64,
    /// The content is 8-bit MIME (`BODY=8BITMIME` when the server knows it).
    pub eight_bit: bool,
    /// The envelope or headers need SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
}

/// What became of one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The server took responsibility (`250` to the end of data).
    Delivered,
    /// A transient failure: try again later.
    Deferred,
    /// A permanent failure: bounce.
    Failed,
}

/// One recipient's result and the reply that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    /// The address.
    pub recipient: String,
    /// Delivered, deferred or failed.
    pub status: Status,
    /// The server's reply, or ours for failures without one.
    pub response: Response,
}

/// What the driver should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Write [`Client::output`], then [`Client::clear_output`].
    Write,
    /// Read from the server and pass the bytes to [`Client::receive`].
    NeedInput,
    /// Start TLS on the connection, then call [`Client::tls_established`].
    StartTls,
    /// Send the message content, dot-stuffed with CRLF line ends and ending
    /// with the `.` line, then call [`Client::content_sent`].
    SendContent,
    /// The conversation is over; read [`Client::results`] and close.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword,
    Transaction,
    Content,
    DataEnd,
    Quit,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt(usize),
    Data,
}

/// One delivery attempt.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    message: Message,
    state: State,
    reader: ResponseReader,
    output: Vec<u8>,
    extensions: Extensions,
    tls_active: bool,
    expect: VecDeque<Expect>,
    next_rcpt: usize,
    data_sent: bool,
    mail_refused: bool,
    /// 354 came with no recipient accepted: the content is an empty message
    /// whose reply does not matter.
    empty_data: bool,
    accepted: Vec<usize>,
    /// LMTP: how many of the per-recipient replies after the content have
    /// arrived.
    lmtp_replies: usize,
    results: Vec<Option<(Status, Response)>>,
    transaction_started: bool,
    starttls_unavailable: bool,
    replies_seen: u64,
}

impl Client {
    /// A client for `message`, on a connection that is already under TLS
    /// (implicit TLS) or not.
    pub fn new(config: ClientConfig, message: Message, tls_active: bool) -> Client {
        let results = vec![None; message.recipients.len()];
        Client {
            config,
            message,
            state: State::Greeting,
            reader: ResponseReader::new(),
            output: Vec::new(),
            extensions: Extensions::default(),
            tls_active,
            expect: VecDeque::new(),
            next_rcpt: 0,
            data_sent: false,
            mail_refused: false,
            empty_data: false,
            accepted: Vec::new(),
            lmtp_replies: 0,
            results,
            transaction_started: false,
            starttls_unavailable: false,
            replies_seen: 0,
        }
    }

    /// Bytes from the server.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.reader.push(bytes);
    }

    /// Bytes to send.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// The output was written.
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// What the server offered in its last EHLO answer.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Whether the conversation is under TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// How many replies the server has sent so far (for the driver's
    /// per-reply timeout).
    pub fn replies_seen(&self) -> u64 {
        self.replies_seen
    }

    /// Whether MAIL was sent: from then on this server's answers are final
    /// for this attempt, and no other server (a lower-preference MX) is
    /// tried (RFC 5321 §5.1 tries the next one only when a connection or
    /// greeting fails).
    pub fn transaction_started(&self) -> bool {
        self.transaction_started
    }

    /// Whether the server did not offer STARTTLS, or refused it, when the
    /// policy wanted it (TLS-RPT's `starttls-not-supported`, RFC 8460).
    pub fn starttls_unavailable(&self) -> bool {
        self.starttls_unavailable
    }

    /// The next step.
    pub fn poll(&mut self) -> Poll {
        loop {
            if !self.output.is_empty() {
                return Poll::Write;
            }
            match self.state {
                State::Done => return Poll::Done,
                State::Handshake => return Poll::StartTls,
                State::Content => return Poll::SendContent,
                _ => {}
            }
            match self.reader.next() {
                None => return Poll::NeedInput,
                Some(Err(error)) => {
                    let text = format!("4.5.0 protocol error from the server: {error}");
                    self.abandon(Response::local(451, text));
                }
                Some(Ok(response)) => {
                    self.replies_seen += 1;
                    self.on_response(response);
                }
            }
        }
    }

    /// How long to wait for the server now (RFC 5321 §4.5.3.2): the driver
    /// gives up with [`Client::timed_out`] after that.
    pub fn timeout(&self) -> Duration {
        let t = &self.config.timeouts;
        match self.state {
            State::Transaction if self.expect.front() == Some(&Expect::Data) => t.data_init,
            // While the driver sends content: per write of a data block.
            State::Content => t.data_block,
            State::DataEnd => t.data_done,
            // The answer to QUIT changes nothing; do not wait long for it.
            State::Quit => t.command.min(Duration::from_secs(30)),
            _ => t.command,
        }
    }

    /// TLS is up (after [`Poll::StartTls`]): EHLO again (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        if self.state == State::Handshake {
            self.tls_active = true;
            self.send_ehlo();
        }
    }

    /// The content and its `.` line were written.
    pub fn content_sent(&mut self) {
        if self.state == State::Content {
            self.state = State::DataEnd;
        }
    }

    /// The connection broke (EOF, reset, TLS failure): whoever has no result
    /// yet is deferred. After the content was sent this may mean a duplicate
    /// later (the server may have taken the message; RFC 1047).
    pub fn connection_lost(&mut self, what: &str) {
        let during = self.activity();
        self.abandon(Response::local(421, format!("4.4.2 {what} {during}")));
    }

    /// The server said nothing for [`Client::timeout`].
    pub fn timed_out(&mut self) {
        let during = self.activity();
        self.abandon(Response::local(421, format!("4.4.2 timeout {during}")));
    }

    /// The connection is no use any more: undecided recipients are
    /// deferred, and nothing more is sent (not even QUIT: writing to a
    /// broken connection would only fail again).
    fn abandon(&mut self, response: Response) {
        if self.state == State::Done {
            return;
        }
        self.decide_rest(Status::Deferred, &response);
        self.output.clear();
        self.state = State::Done;
    }

    /// Gives every recipient without a result this one.
    fn decide_rest(&mut self, status: Status, response: &Response) {
        for result in &mut self.results {
            if result.is_none() {
                *result = Some((status, response.clone()));
            }
        }
    }

    /// Per recipient, in the order given; recipients without a result (the
    /// conversation is not over) are reported deferred.
    pub fn results(&self) -> Vec<RecipientResult> {
        self.message
            .recipients
            .iter()
            .zip(&self.results)
            .map(|(recipient, result)| {
                let (status, response) = result.clone().unwrap_or_else(|| {
                    (
                        Status::Deferred,
                        Response::local(451, "4.4.0 the conversation ended early"),
                    )
                });
                RecipientResult {
                    recipient: recipient.clone(),
                    status,
                    response,
                }
            })
            .collect()
    }

    fn activity(&self) -> &'static str {
        match self.state {
            State::Greeting => "before the greeting",
            State::Ehlo | State::Helo => "after EHLO",
            State::StartTls | State::Handshake => "during STARTTLS",
            State::AuthPlain | State::AuthLoginUser | State::AuthLoginPassword => "during AUTH",
            State::Transaction => match self.expect.front() {
                Some(Expect::Mail) => "after MAIL",
                Some(Expect::Rcpt(_)) => "after RCPT",
                _ => "after DATA",
            },
            State::Content => "while sending the message",
            State::DataEnd => "after the end of data (the message may have been delivered)",
            State::Quit | State::Done => "after QUIT",
        }
    }

    fn send(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn send_ehlo(&mut self) {
        let verb = if self.config.lmtp { "LHLO" } else { "EHLO" };
        let line = format!("{verb} {}", self.config.helo_name);
        self.send(&line);
        self.state = State::Ehlo;
    }

    /// Gives every recipient without a result this one, and ends politely.
    fn finish(&mut self, status: Status, response: Response) {
        self.decide_rest(status, &response);
        self.quit();
    }

    fn quit(&mut self) {
        self.send("QUIT");
        self.state = State::Quit;
    }

    fn on_response(&mut self, response: Response) {
        match self.state {
            State::Greeting if response.code == 220 => self.send_ehlo(),
            State::Greeting => self.finish(Status::Deferred, response),
            State::Ehlo if response.code == 250 => {
                self.extensions = Extensions::parse(&response);
                self.after_ehlo();
            }
            // RFC 5321 §3.2: an old server; HELO, without extensions (not
            // after STARTTLS: a server that did EHLO before must do it now).
            State::Ehlo if response.is_permanent() && !self.tls_active && !self.config.lmtp => {
                let line = format!("HELO {}", self.config.helo_name);
                self.send(&line);
                self.state = State::Helo;
            }
            State::Helo if response.code == 250 => {
                self.extensions = Extensions::parse(&response);
                self.extensions.size = None;
                self.after_ehlo();
            }
            State::Ehlo | State::Helo => self.finish(Status::Deferred, response),
            State::StartTls if response.code == 220 => {
                // Anything already buffered came before the handshake and
                // must not be read as if it came over TLS (RFC 3207 §4.2,
                // the STARTTLS injection class).
                self.reader.clear();
                self.state = State::Handshake;
            }
            State::StartTls => {
                self.starttls_unavailable = true;
                if self.config.tls == TlsPolicy::Required {
                    let text = format!(
                        "4.7.10 TLS is required, and the server refused STARTTLS: {response}"
                    );
                    self.finish(Status::Deferred, Response::local(451, text));
                } else {
                    self.after_tls_decision();
                }
            }
            State::AuthPlain | State::AuthLoginPassword if response.code == 235 => {
                self.start_transaction();
            }
            State::AuthLoginUser if response.code == 334 => {
                let password = self
                    .config
                    .credentials
                    .as_ref()
                    .map(|c| BASE64.encode(&c.password))
                    .unwrap_or_default();
                self.send(&password);
                self.state = State::AuthLoginPassword;
            }
            State::AuthPlain | State::AuthLoginUser | State::AuthLoginPassword => {
                let text = format!("4.7.0 authentication to the server failed: {response}");
                self.finish(Status::Deferred, Response::local(451, text));
            }
            State::Transaction => self.on_transaction_response(response),
            State::DataEnd if self.config.lmtp && !self.empty_data => {
                // RFC 2033 §4.2: one reply per accepted recipient, in order.
                let status = match response.code / 100 {
                    2 => Status::Delivered,
                    3 => Status::Deferred,
                    _ => status_of(&response),
                };
                if let Some(&i) = self.accepted.get(self.lmtp_replies) {
                    self.results[i] = Some((status, response));
                }
                self.lmtp_replies += 1;
                if self.lmtp_replies >= self.accepted.len() {
                    self.quit();
                }
            }
            State::DataEnd => {
                if !self.empty_data {
                    // Only 2xx delivers; a 3xx here is nonsense.
                    let status = match response.code / 100 {
                        2 => Status::Delivered,
                        3 => Status::Deferred,
                        _ => status_of(&response),
                    };
                    for &i in &self.accepted {
                        self.results[i] = Some((status, response.clone()));
                    }
                }
                self.quit();
            }
            State::Quit => self.state = State::Done,
            // Nothing is expected here (the driver is busy); the reply is
            // out of turn: the server is confused.
            State::Handshake | State::Content | State::Done => {
                self.abandon(Response::local(
                    451,
                    format!("4.5.0 reply out of turn: {response}"),
                ));
            }
        }
    }

    fn after_ehlo(&mut self) {
        if self.config.loop_check
            && is_same_host(&self.extensions.server_name, &self.config.helo_name)
        {
            let text = format!(
                "5.4.6 mail loops back to myself (the server calls itself {})",
                self.extensions.server_name
            );
            self.finish(Status::Failed, Response::local(554, text));
            return;
        }
        if !self.tls_active && self.config.tls != TlsPolicy::Never {
            if self.extensions.starttls {
                self.send("STARTTLS");
                self.state = State::StartTls;
                return;
            }
            self.starttls_unavailable = true;
            if self.config.tls == TlsPolicy::Required {
                let text = "4.7.10 TLS is required, and the server does not offer STARTTLS";
                self.finish(Status::Deferred, Response::local(451, text));
                return;
            }
        }
        self.after_tls_decision();
    }

    fn after_tls_decision(&mut self) {
        let Some(credentials) = self.config.credentials.clone() else {
            self.start_transaction();
            return;
        };
        if !self.tls_active {
            let text = "4.7.0 not sending credentials over a connection without TLS";
            self.finish(Status::Deferred, Response::local(451, text));
            return;
        }
        let offers = |m: &str| self.extensions.auth.iter().any(|a| a == m);
        if offers("PLAIN") {
            let token = BASE64.encode(format!("\0{}\0{}", credentials.user, credentials.password));
            self.send(&format!("AUTH PLAIN {token}"));
            self.state = State::AuthPlain;
        } else if offers("LOGIN") {
            let user = BASE64.encode(&credentials.user);
            self.send(&format!("AUTH LOGIN {user}"));
            self.state = State::AuthLoginUser;
        } else {
            let text = "4.7.0 the server offers no mechanism we can use (PLAIN, LOGIN)";
            self.finish(Status::Deferred, Response::local(451, text));
        }
    }

    fn start_transaction(&mut self) {
        if self.message.smtputf8 && !self.extensions.smtputf8 {
            let text = "5.6.7 the message needs SMTPUTF8, which the server does not support";
            self.finish(Status::Failed, Response::local(553, text));
            return;
        }
        if let Some(limit) = self
            .extensions
            .size
            .filter(|&l| l > 0 && self.message.size > l)
        {
            let text = format!(
                "5.3.4 the message ({} octets) is larger than the server takes ({limit})",
                self.message.size
            );
            self.finish(Status::Failed, Response::local(552, text));
            return;
        }
        let unsafe_text = |s: &str| {
            s.bytes()
                .any(|b| b.is_ascii_control() || b == b'<' || b == b'>')
        };
        if unsafe_text(&self.message.from) {
            let text = "5.1.7 the sender address cannot be sent safely";
            self.finish(Status::Failed, Response::local(553, text));
            return;
        }
        for (i, recipient) in self.message.recipients.iter().enumerate() {
            if unsafe_text(recipient) || recipient.is_empty() {
                let text = "5.1.3 the recipient address cannot be sent safely";
                self.results[i] = Some((Status::Failed, Response::local(553, text)));
            }
        }
        self.state = State::Transaction;
        self.transaction_started = true;
        let mut mail = format!("MAIL FROM:<{}>", self.message.from);
        if self.extensions.size.is_some() {
            mail.push_str(&format!(" SIZE={}", self.message.size));
        }
        if self.message.eight_bit && self.extensions.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if self.message.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        self.send(&mail);
        self.expect.push_back(Expect::Mail);
        if self.extensions.pipelining {
            // RFC 2920 §3.1: MAIL, the RCPTs and DATA in one group; DATA
            // is the last command of it.
            while self.send_next_rcpt() {}
            self.send("DATA");
            self.expect.push_back(Expect::Data);
            self.data_sent = true;
        }
    }

    /// Sends the next RCPT not already decided; `false` if none is left.
    fn send_next_rcpt(&mut self) -> bool {
        while self.next_rcpt < self.message.recipients.len() {
            let i = self.next_rcpt;
            self.next_rcpt += 1;
            if self.results[i].is_none() {
                let line = format!("RCPT TO:<{}>", self.message.recipients[i]);
                self.send(&line);
                self.expect.push_back(Expect::Rcpt(i));
                return true;
            }
        }
        false
    }

    fn on_transaction_response(&mut self, response: Response) {
        let Some(expected) = self.expect.pop_front() else {
            return;
        };
        match expected {
            Expect::Mail => {
                if !response.is_positive() {
                    self.mail_refused = true;
                    let status = status_of(&response);
                    for result in &mut self.results {
                        if result.is_none() {
                            *result = Some((status, response.clone()));
                        }
                    }
                }
            }
            // After a refused MAIL, pipelined RCPTs get 503s that mean
            // nothing: the recipients already have MAIL's answer.
            Expect::Rcpt(_) if self.mail_refused => {}
            Expect::Rcpt(i) => {
                if response.is_positive() {
                    self.accepted.push(i);
                } else {
                    self.results[i] = Some((status_of(&response), response));
                }
            }
            Expect::Data => {
                if response.code == 354 && self.reader.has_pending() {
                    // A reply sent before our content could have reached
                    // the server would be taken for the answer to the
                    // content. The server is not speaking SMTP.
                    self.abandon(Response::local(
                        451,
                        "4.5.0 the server replied before the message was sent",
                    ));
                    return;
                }
                if response.code == 354 {
                    self.empty_data = self.accepted.is_empty();
                    if self.empty_data {
                        // A server that says 354 with no valid recipient
                        // (RFC 2920 §3.1 says it must not): end the data at
                        // once; the empty message goes nowhere.
                        self.output.extend_from_slice(b".\r\n");
                        self.state = State::DataEnd;
                    } else {
                        self.state = State::Content;
                    }
                    return;
                }
                // Anything but 354 refuses the content; a positive reply
                // here took no content, so it delivers nothing.
                let status = if response.is_positive() {
                    Status::Deferred
                } else {
                    status_of(&response)
                };
                for &i in &self.accepted {
                    self.results[i] = Some((status, response.clone()));
                }
                self.quit();
                return;
            }
        }
        if !self.expect.is_empty() {
            return;
        }
        // Not pipelining (or the group is answered): the next command.
        if self.mail_refused {
            self.quit();
        } else if self.send_next_rcpt() || self.data_sent {
            // A RCPT went out, or (pipelined) DATA was answered above.
        } else if self.accepted.is_empty() {
            self.quit();
        } else {
            self.send("DATA");
            self.expect.push_back(Expect::Data);
            self.data_sent = true;
        }
    }
}

fn status_of(response: &Response) -> Status {
    if response.is_positive() {
        Status::Delivered
    } else if response.is_transient() {
        Status::Deferred
    } else {
        Status::Failed
    }
}

/// Whether the name a server gives is ours (case and a trailing dot aside).
fn is_same_host(theirs: &str, ours: &str) -> bool {
    let theirs = theirs.trim_end_matches('.');
    let ours = ours.trim_end_matches('.');
    !ours.is_empty() && theirs.eq_ignore_ascii_case(ours)
}
