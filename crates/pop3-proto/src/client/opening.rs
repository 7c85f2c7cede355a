//! The start of a session, without I/O: the greeting, CAPA, STLS when
//! asked for (and CAPA again after it, RFC 2595 §4), and UTF8 when offered
//! (RFC 6856). The caller does the TLS handshake when told to; everything
//! else is queued on the [`Connection`] and advanced one reply at a time.
//!
//! ```
//! use yubin_pop3_proto::client::{Connection, Limits, Opening, Ready};
//!
//! let mut pop = Connection::new(Limits::default());
//! let mut opening = Opening::new(false);
//! pop.receive(b"+OK ready\r\n+OK\r\nUSER\r\n.\r\n");
//! let event = pop.next_event().unwrap().unwrap();
//! assert_eq!(opening.on_event(event, &mut pop).unwrap(), Ready::No);
//! assert_eq!(pop.output(), b"CAPA\r\n");
//! let event = pop.next_event().unwrap().unwrap();
//! assert_eq!(opening.on_event(event, &mut pop).unwrap(), Ready::Yes);
//! assert!(opening.capabilities().user);
//! ```

use std::fmt;

use super::{Capabilities, Connection, Event, RequestError, Status};

/// Where the opening stands after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// Commands are queued (or the greeting is awaited): send them and
    /// feed the next reply.
    No,
    /// STLS was accepted: do the TLS handshake now, then call
    /// [`Opening::tls_started`].
    StartTls,
    /// The session is open: log in.
    Yes,
}

/// Why a session could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpeningError {
    /// The greeting was `-ERR`: the server refuses service.
    Greeting(Status),
    /// STLS was required and the server does not offer it or refused it;
    /// nothing secret was sent.
    NoStls(String),
    /// The server answered with something no step of the opening expects.
    Unexpected(Event),
    /// A command could not be queued.
    Request(RequestError),
}

impl fmt::Display for OpeningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpeningError::Greeting(status) => write!(f, "the server refused service: {status}"),
            OpeningError::NoStls(why) => write!(f, "STLS required but {why}"),
            OpeningError::Unexpected(_) => f.write_str("unexpected reply while opening"),
            OpeningError::Request(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for OpeningError {}

impl From<RequestError> for OpeningError {
    fn from(error: RequestError) -> Self {
        OpeningError::Request(error)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Greeting,
    Capa,
    Stls,
    /// Waiting for the caller's handshake.
    Handshake,
    Utf8,
    Open,
}

/// The opening of one session.
#[derive(Clone, Debug)]
pub struct Opening {
    stage: Stage,
    stls: bool,
    greeting: Option<Status>,
    capabilities: Capabilities,
    capa_known: bool,
    utf8_refused: Option<Status>,
}

impl Opening {
    /// An opening that awaits the greeting; `stls`: upgrade with STLS
    /// before anything else (implicit TLS is the caller's, before this).
    pub fn new(stls: bool) -> Opening {
        Opening {
            stage: Stage::Greeting,
            stls,
            greeting: None,
            capabilities: Capabilities::default(),
            capa_known: false,
            utf8_refused: None,
        }
    }

    /// The greeting, once it came.
    pub fn greeting(&self) -> Option<&Status> {
        self.greeting.as_ref()
    }

    /// The capabilities (empty while unknown or if CAPA was refused).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// CAPA was answered: what it does not list is not offered.
    pub fn capa_known(&self) -> bool {
        self.capa_known
    }

    /// The server's `-ERR` to UTF8, if it refused (nothing changes: the
    /// client takes any octets).
    pub fn utf8_refused(&self) -> Option<&Status> {
        self.utf8_refused.as_ref()
    }

    /// Which reply is awaited, for messages about a timeout.
    pub fn awaiting(&self) -> &'static str {
        match self.stage {
            Stage::Greeting => "greeting",
            Stage::Capa => "CAPA",
            Stage::Stls | Stage::Handshake => "STLS",
            Stage::Utf8 => "UTF8",
            Stage::Open => "nothing",
        }
    }

    /// Takes the server's next reply and queues what follows it.
    pub fn on_event(&mut self, event: Event, conn: &mut Connection) -> Result<Ready, OpeningError> {
        match (self.stage, event) {
            (Stage::Greeting, Event::Greeting(status)) if status.ok => {
                self.greeting = Some(status);
                self.ask_capabilities(conn)
            }
            (Stage::Greeting, Event::Greeting(status)) => Err(OpeningError::Greeting(status)),
            (Stage::Capa, Event::Capabilities(capabilities)) => {
                self.capabilities = capabilities;
                self.capa_known = true;
                self.after_capabilities(conn)
            }
            (Stage::Capa, Event::Status(_)) => {
                self.capabilities = Capabilities::default();
                self.capa_known = false;
                self.after_capabilities(conn)
            }
            (Stage::Stls, Event::Status(status)) if status.ok => {
                self.stage = Stage::Handshake;
                Ok(Ready::StartTls)
            }
            (Stage::Stls, Event::Status(status)) => Err(OpeningError::NoStls(format!(
                "the server refused it: {status}"
            ))),
            (Stage::Utf8, Event::Status(status)) => {
                if !status.ok {
                    self.utf8_refused = Some(status);
                }
                self.stage = Stage::Open;
                Ok(Ready::Yes)
            }
            (_, other) => Err(OpeningError::Unexpected(other)),
        }
    }

    /// The handshake succeeded: forget what was learnt before TLS and ask
    /// again (RFC 2595 §4).
    pub fn tls_started(&mut self, conn: &mut Connection) -> Result<Ready, OpeningError> {
        self.stls = false;
        self.capabilities = Capabilities::default();
        self.capa_known = false;
        self.ask_capabilities(conn)
    }

    fn ask_capabilities(&mut self, conn: &mut Connection) -> Result<Ready, OpeningError> {
        conn.capa()?;
        self.stage = Stage::Capa;
        Ok(Ready::No)
    }

    fn after_capabilities(&mut self, conn: &mut Connection) -> Result<Ready, OpeningError> {
        if self.stls {
            if self.capa_known && !self.capabilities.stls {
                return Err(OpeningError::NoStls("the server does not offer it".into()));
            }
            conn.stls()?;
            self.stage = Stage::Stls;
            return Ok(Ready::No);
        }
        if self.capabilities.utf8 {
            // RFC 6856: messages with UTF-8 headers may be sent only in
            // UTF-8 mode. The client takes any octets, so the mode costs
            // nothing, and a refusal changes nothing.
            conn.utf8()?;
            self.stage = Stage::Utf8;
            return Ok(Ready::No);
        }
        self.stage = Stage::Open;
        Ok(Ready::Yes)
    }
}

/// What a `-ERR` to UIDL means. "This server has no UIDL" only from a
/// server that did not list UIDL in CAPA and gave no response code;
/// otherwise it is a failure, since a `[SYS/TEMP]` must not make every
/// message look new.
pub fn uidl_refusal_means_absent(status: &Status, capabilities: &Capabilities) -> bool {
    status.code.is_none() && !capabilities.uidl
}

#[cfg(test)]
mod tests;
