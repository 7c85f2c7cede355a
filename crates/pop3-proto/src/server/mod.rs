//! The server side of a POP3 session, as a state machine on bytes.
//!
//! The driver (the code that owns the socket) feeds received bytes in with
//! [`Session::receive`] and calls [`Session::poll`] until it asks for more
//! input. Between polls it writes out [`Session::output`]. When the session
//! needs something from the outside world it returns an [`Action`]; the driver
//! carries it out and reports back with the matching method (each action's
//! documentation names it). While an action is outstanding the session
//! processes no further input, so pipelined commands (RFC 2449 §6.6) are
//! answered strictly in order.
//!
//! ```text
//! AUTHORIZATION --credentials + maildrop--> TRANSACTION --QUIT--> UPDATE --> closed
//!       \--QUIT, timeout, disconnect: nothing is removed
//! ```

mod authorization;
mod capa;
mod messages;
mod replies;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use crate::command::{self, Command, Keyword};
use crate::line::{Line, LineReader};

use authorization::Authorization;
pub use messages::MessageList;
use replies::{Bad, Reply};
use transaction::Maildrop;

/// Output beyond this size is handed to the driver before more is produced,
/// so a long listing or a flood of pipelined commands cannot grow it without bound.
const FLUSH_AT: usize = 64 * 1024;

/// Settings shared by every session of a server.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// SASL mechanisms the server supports, upper-case (e.g. `PLAIN`,
    /// `SCRAM-SHA-256`). PLAIN and LOGIN are hidden and refused where
    /// plaintext authentication is not allowed.
    pub sasl_mechanisms: Vec<String>,
    /// The argument of the IMPLEMENTATION capability, if it is to be announced.
    pub implementation: Option<String>,
    /// Minimum seconds between logins (LOGIN-DELAY capability, RFC 2449 §6.5).
    pub login_delay: Option<u32>,
    /// Minimum retention announced with the EXPIRE capability (RFC 2449 §6.7).
    pub expire: Option<Expire>,
    /// Longest accepted command line, terminator excluded.
    pub max_line_len: usize,
    /// Bad commands tolerated before login; the next one closes the session.
    pub max_bad_commands_before_login: u32,
    /// Bad commands tolerated after login; the next one closes the session.
    pub max_bad_commands_after_login: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            sasl_mechanisms: Vec::new(),
            implementation: None,
            login_delay: None,
            expire: None,
            // RFC 2449 §4 asks for 255 octets; SASL responses (RFC 5034 §4) and
            // long passwords need more, so allow a comfortable multiple.
            max_line_len: 8190,
            max_bad_commands_before_login: 3,
            max_bad_commands_after_login: 20,
        }
    }
}

/// The EXPIRE policy announced in CAPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expire {
    /// `EXPIRE NEVER`: the server does not delete messages.
    Never,
    /// `EXPIRE n`: messages are kept at least this many days.
    Days(u32),
}

/// What this connection offers; it changes when TLS starts.
#[derive(Clone, Debug, Default)]
pub struct Offer {
    /// The connection is encrypted.
    pub tls_active: bool,
    /// STLS can be offered (TLS is configured and not yet active).
    pub stls_available: bool,
    /// USER/PASS and the PLAIN and LOGIN mechanisms are allowed.
    pub plaintext_auth: bool,
    /// The APOP challenge, `<…@…>`, if APOP is offered (it then appears in the greeting).
    pub apop_timestamp: Option<String>,
}

/// A request for the driver. Each names the method that reports its outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Check a USER/PASS pair. Report with [`Session::credentials_accepted`]
    /// or [`Session::credentials_rejected`].
    CheckPassword {
        /// The name given with USER.
        user: String,
        /// The argument of PASS.
        password: Vec<u8>,
    },
    /// Check an APOP digest against the greeting's timestamp. Report as for
    /// `CheckPassword`.
    CheckApop {
        /// The name given with APOP.
        user: String,
        /// The digest, lower-cased hex.
        digest: String,
    },
    /// Begin a SASL exchange. Report with [`Session::sasl_challenge`],
    /// [`Session::credentials_accepted`] or [`Session::credentials_rejected`].
    SaslStart {
        /// The mechanism, upper-case, one of [`SessionConfig::sasl_mechanisms`].
        mechanism: String,
        /// The decoded initial response, if the client sent one.
        initial_response: Option<Vec<u8>>,
    },
    /// Continue the SASL exchange with the client's decoded response. Report as
    /// for `SaslStart`.
    SaslStep {
        /// The decoded response.
        response: Vec<u8>,
    },
    /// The user is authenticated: lock the maildrop and list it. Report with
    /// [`Session::maildrop_opened`] or [`Session::maildrop_refused`].
    OpenMaildrop {
        /// The authenticated user.
        user: String,
    },
    /// Write out the output, then start TLS on the connection. Report with
    /// [`Session::tls_established`]; if the handshake fails, close the connection.
    StartTls,
    /// Send a message (RETR) or its first lines (TOP). Open it, then report
    /// with [`Session::message_opened`] and stream the body with
    /// [`crate::Encoder`] after writing out the output, then call
    /// [`Session::message_sent`]; or report [`Session::message_failed`].
    SendMessage {
        /// 0-based index into the list given to `maildrop_opened`.
        index: usize,
        /// `Some(n)`: TOP with n body lines.
        top: Option<u64>,
        /// The client has enabled UTF-8 mode (RFC 6856).
        utf8: bool,
    },
    /// UPDATE state (RFC 1939 §6): remove the marked messages. Report with
    /// [`Session::update_finished`]. Then close the connection.
    Commit {
        /// 0-based indexes of the messages marked deleted.
        delete: Vec<usize>,
        /// 0-based indexes of messages retrieved with RETR and not deleted.
        retrieved: Vec<usize>,
    },
    /// Wait this long, then call [`Session::delay_elapsed`] (failed logins).
    Delay(Duration),
}

/// What the driver should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Write out the output, then carry out this action.
    Action(Action),
    /// Write out the output, then poll again.
    Flush,
    /// Write out the output, then read from the client and call `receive`.
    NeedInput,
    /// Write out the output, then close the connection.
    Close,
    /// An action is outstanding; report its outcome first. (A driver bug.)
    Pending,
}

/// Why an authenticated user's maildrop could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another session holds the maildrop.
    InUse,
    /// The user logged in less than this many seconds ago (LOGIN-DELAY).
    LoginDelay(u32),
    /// A passing failure (I/O, resources).
    Temporary,
    /// A failure that needs an administrator (bad configuration, damaged maildrop).
    Permanent,
}

/// Why a message could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// The file is gone (removed by another program).
    Gone,
    /// Reading it failed.
    Io,
    /// Its header has 8-bit octets and the client has not enabled UTF-8 mode.
    NeedsUtf8,
}

/// Counters for the logout log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages in the maildrop at login.
    pub messages: u32,
    /// Their total size.
    pub size: u64,
    /// RETR commands answered with a message.
    pub retrieved: u32,
    /// Octets of those messages (their sizes).
    pub retrieved_bytes: u64,
    /// TOP commands answered.
    pub top: u32,
    /// Messages marked deleted at QUIT.
    pub deleted: u32,
    /// Their total size.
    pub deleted_bytes: u64,
    /// Marked messages that could not be removed in UPDATE.
    pub not_removed: u32,
}

enum State {
    Authorization(Authorization),
    Transaction(Maildrop),
    Update,
    Closed,
}

/// What the session is waiting for after returning an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Credentials,
    Maildrop,
    Tls,
    Message { index: usize, top: bool },
    MessageBody { index: usize, top: bool },
    Update,
    Delay,
}

/// One POP3 server session.
pub struct Session {
    config: Arc<SessionConfig>,
    offer: Offer,
    state: State,
    lines: LineReader,
    line: Vec<u8>,
    output: Vec<u8>,
    next_action: Option<Action>,
    awaiting: Option<Awaiting>,
    bad_commands: u32,
    quit: bool,
    utf8: bool,
    user: Option<String>,
    stats: Stats,
}

impl Session {
    /// Starts a session; the greeting is already in the output.
    pub fn new(config: Arc<SessionConfig>, offer: Offer) -> Session {
        let mut output = Vec::with_capacity(128);
        match &offer.apop_timestamp {
            // RFC 1939 §7: the APOP timestamp goes in the greeting.
            Some(timestamp) => Reply::Greeting {
                apop_timestamp: Some(timestamp),
            }
            .write(&mut output),
            None => Reply::Greeting {
                apop_timestamp: None,
            }
            .write(&mut output),
        }
        Session {
            lines: LineReader::new(config.max_line_len),
            config,
            offer,
            state: State::Authorization(Authorization::default()),
            line: Vec::new(),
            output,
            next_action: None,
            awaiting: None,
            bad_commands: 0,
            quit: false,
            utf8: false,
            user: None,
            stats: Stats::default(),
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
    }

    /// The authenticated user, once logged in.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the client has enabled UTF-8 mode.
    pub fn utf8(&self) -> bool {
        self.utf8
    }

    /// Counters for the logout log line.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What this connection offers now.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Whether the client ended the session with QUIT (rather than the
    /// session being closed for bad commands or by the server).
    pub fn quit_received(&self) -> bool {
        self.quit
    }

    /// Whether the session is in the TRANSACTION state.
    pub fn is_transaction(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// Processes buffered input until the driver has something to do.
    pub fn poll(&mut self) -> Poll {
        if let Some(action) = self.next_action.take() {
            return Poll::Action(action);
        }
        if self.awaiting.is_some() {
            return Poll::Pending;
        }
        loop {
            if matches!(self.state, State::Closed) {
                return Poll::Close;
            }
            if let State::Transaction(maildrop) = &mut self.state
                && maildrop.continue_listing(&mut self.output, FLUSH_AT)
            {
                return Poll::Flush;
            }
            if self.output.len() >= FLUSH_AT {
                return Poll::Flush;
            }
            match self.lines.next_line(&mut self.line) {
                None => return Poll::NeedInput,
                Some(Line::TooLong) => self.line_too_long(),
                Some(Line::Complete) => self.handle_line(),
            }
            if let Some(action) = self.next_action.take() {
                return Poll::Action(action);
            }
        }
    }

    /// Closes the session without UPDATE because the server is stopping.
    pub fn shutdown(&mut self) {
        if !matches!(self.state, State::Update | State::Closed) {
            Reply::ShuttingDown.write(&mut self.output);
            self.state = State::Closed;
        }
    }

    fn line_too_long(&mut self) {
        // A response that long ends a SASL exchange (RFC 5034 §4: one -ERR
        // for the AUTH command), so the lines after it are commands again.
        if let State::Authorization(auth) = &mut self.state
            && auth.in_sasl_exchange()
        {
            auth.end_sasl_exchange();
            self.bad_command(Bad::LineTooLongInAuth);
            return;
        }
        self.bad_command(Bad::LineTooLong);
    }

    fn handle_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if let State::Authorization(auth) = &self.state
            && auth.in_sasl_exchange()
        {
            self.sasl_response(&line);
            self.line = line;
            return;
        }
        match command::keyword(&line) {
            // A known keyword in the wrong state gets the state error, whatever
            // its arguments: that tells the client the most.
            Ok(keyword) if !self.allowed(keyword) => self.wrong_state(),
            _ => match command::parse(&line, self.utf8) {
                Ok(command) => self.dispatch(command),
                Err(error) => self.bad_command(Bad::Syntax(error)),
            },
        }
        self.line = line;
    }

    fn allowed(&self, keyword: Keyword) -> bool {
        match &self.state {
            State::Authorization(_) => !keyword.is_transaction(),
            State::Transaction(_) => !keyword.is_authorization(),
            State::Update | State::Closed => false,
        }
    }

    fn dispatch(&mut self, command: Command<'_>) {
        // RFC 2449 §5: CAPA is valid in both states.
        if command == Command::Capa {
            let transaction = self.is_transaction();
            capa::write(&mut self.output, &self.config, &self.offer, transaction);
            return;
        }
        match &mut self.state {
            State::Authorization(_) => self.authorization_command(command),
            State::Transaction(_) => self.transaction_command(command),
            State::Update | State::Closed => {}
        }
    }

    fn wrong_state(&mut self) {
        let why = match self.state {
            State::Authorization(_) => Bad::NotLoggedIn,
            _ => Bad::AlreadyLoggedIn,
        };
        self.bad_command(why);
    }

    /// Answers a bad command and closes the session once there are too many.
    fn bad_command(&mut self, why: Bad) {
        self.bad_commands += 1;
        let limit = match self.state {
            State::Authorization(_) => self.config.max_bad_commands_before_login,
            _ => self.config.max_bad_commands_after_login,
        };
        let closing = self.bad_commands >= limit;
        Reply::Bad { why, closing }.write(&mut self.output);
        if closing {
            self.state = State::Closed;
        }
    }

    fn act(&mut self, action: Action, awaiting: Awaiting) {
        self.next_action = Some(action);
        self.awaiting = Some(awaiting);
    }

    fn take_awaiting(&mut self, expected: fn(Awaiting) -> bool) -> Option<Awaiting> {
        match self.awaiting {
            Some(a) if expected(a) => self.awaiting.take(),
            _ => None,
        }
    }

    /// The outcome of `Delay`.
    pub fn delay_elapsed(&mut self) {
        if self.take_awaiting(|a| a == Awaiting::Delay).is_some() {
            Reply::AuthFailed.write(&mut self.output);
        }
    }

    /// The outcome of `StartTls`: the handshake succeeded. RFC 2595 §4: the
    /// session stays in AUTHORIZATION and forgets everything from before.
    pub fn tls_established(&mut self, offer: Offer) {
        if self.take_awaiting(|a| a == Awaiting::Tls).is_some() {
            self.offer = offer;
            self.lines.clear();
            // UTF8 sent in plaintext could have been injected; it must be sent again.
            self.utf8 = false;
            self.state = State::Authorization(Authorization::default());
        }
    }
}

#[cfg(test)]
mod tests;
