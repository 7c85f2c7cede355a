//! The POP3 client over a socket: [`yubin_pop3_proto::client::Connection`]
//! driven over tokio, with TLS by rustls (implicit, or STLS), every read
//! and write under a timeout, and authentication chosen from CAPA.
//!
//! ```no_run
//! # async fn demo() -> Result<(), yubin_fetch::client::ClientError> {
//! use yubin_fetch::client::{AuthMethod, Pop3Client, ServerOptions};
//!
//! let server = ServerOptions::new("pop.example.org");
//! let mut pop = Pop3Client::connect(&server).await?;
//! pop.login("alice", "secret", AuthMethod::Auto).await?;
//! for entry in pop.list().await?.entries {
//!     let mut message = Vec::new();
//!     pop.retr(entry.number, entry.size + 1024, &mut message).await?;
//!     println!("message {}: {} octets", entry.number, message.len());
//! }
//! pop.quit().await?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use yubin_auth::client::ScramError;
use yubin_pop3_proto::MsgNum;
pub use yubin_pop3_proto::client::AuthMethod;
use yubin_pop3_proto::client::{
    Capabilities, Connection, Event, Limits, Login, LoginError, Offer, Opening, OpeningError,
    Progress, ProtocolError, Ready, RequestError, ScanEntry, Status, UidEntry, choose,
    uidl_refusal_means_absent,
};

use crate::tls::{
    ClientStream, SeenCertificate, TlsSetupError, Trust, UpgradeError, client_config,
    fingerprint_text,
};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (POP3S, port 995, RFC 8314).
    #[default]
    Implicit,
    /// Plain TCP, then STLS before anything else (RFC 2595, port 110).
    /// A server that does not offer or refuses STLS gets no credentials.
    Stls,
    /// No TLS at all. Only challenge-response methods are chosen
    /// automatically; the password goes in clear only if forced.
    None,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Host name (also the name the certificate must carry).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// How the certificate is trusted.
    pub trust: Trust,
    /// Longest wait for any read, write, connect or handshake.
    pub timeout: Duration,
    /// Bounds on listings.
    pub limits: Limits,
}

impl ServerOptions {
    /// Implicit TLS on port 995, system roots, a 60-second timeout.
    pub fn new(host: impl Into<String>) -> Self {
        ServerOptions {
            host: host.into(),
            port: 995,
            tls: TlsMode::Implicit,
            trust: Trust::System,
            timeout: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }
}

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Resolving or connecting failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The server did not answer in time.
    #[error("timed out after {0:?} waiting for the server ({1})")]
    Timeout(Duration, &'static str),
    /// The connection broke.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The TLS setup or handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server refused service at the greeting.
    #[error("the server refused the connection: {0}")]
    Greeting(Status),
    /// TLS was required and the server would not do STLS.
    #[error("STLS required but {0}; no credentials were sent")]
    NoStls(String),
    /// No acceptable way to log in.
    #[error("no acceptable login method: {0}")]
    NoAuthMethod(String),
    /// The server refused the login (see [`Status::in_use`] and
    /// [`Status::login_delay`]).
    #[error("login refused: {0}")]
    Auth(Status),
    /// The server could not be authenticated by SCRAM.
    #[error("SCRAM: {0}")]
    Scram(ScramError),
    /// The server refused a command after login.
    #[error("{0} refused: {1}")]
    Refused(&'static str, Status),
    /// A command could not be written as asked.
    #[error("bad request: {0}")]
    Request(#[from] RequestError),
}

impl From<TlsSetupError> for ClientError {
    fn from(error: TlsSetupError) -> Self {
        ClientError::Tls(error.to_string())
    }
}

/// An open POP3 session.
pub struct Pop3Client {
    stream: Option<ClientStream>,
    conn: Connection,
    greeting: Status,
    capabilities: Capabilities,
    /// CAPA answered `+OK` (an empty answer still counts).
    capa_known: bool,
    options: ServerOptions,
    tls: Option<(TlsConnector, SeenCertificate)>,
    buf: Vec<u8>,
    /// DELEs queued by [`Pop3Client::dele_pipelined`] whose replies are
    /// still to be read.
    unsettled_deles: VecDeque<MsgNum>,
    /// DELEs the server refused (`-ERR`), with its answers.
    refused_deles: Vec<(MsgNum, Status)>,
}

impl fmt::Debug for Pop3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pop3Client")
            .field("host", &self.options.host)
            .field("port", &self.options.port)
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
}

/// A listing and the number of lines the server got wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing<T> {
    /// The well-formed entries.
    pub entries: Vec<T>,
    /// Lines refused as malformed.
    pub rejected: usize,
}

impl Pop3Client {
    /// Connects, starts TLS as the options say, reads the greeting and
    /// the capabilities.
    pub async fn connect(options: &ServerOptions) -> Result<Pop3Client, ClientError> {
        let timeout = options.timeout;
        let target = format!("{}:{}", options.host, options.port);
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&target)).await {
            Err(_) => return Err(ClientError::Timeout(timeout, "connect")),
            Ok(Err(error)) => return Err(ClientError::Connect(target, error)),
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let tls = match options.tls {
            TlsMode::None => None,
            TlsMode::Implicit | TlsMode::Stls => {
                let (config, seen) = client_config(&options.trust)?;
                Some((TlsConnector::from(Arc::new(config)), seen))
            }
        };
        let mut client = Pop3Client {
            stream: Some(ClientStream::Plain(tcp)),
            conn: Connection::new(options.limits),
            greeting: Status {
                ok: false,
                code: None,
                text: String::new(),
            },
            capabilities: Capabilities::default(),
            capa_known: false,
            options: options.clone(),
            tls,
            buf: vec![0; 16 * 1024],
            unsettled_deles: VecDeque::new(),
            refused_deles: Vec::new(),
        };
        if options.tls == TlsMode::Implicit {
            client.handshake().await?;
        }
        // Greeting, CAPA, STLS and UTF8 are decided by the opening; this
        // carries the replies to it and does the handshake when told.
        let mut opening = Opening::new(options.tls == TlsMode::Stls);
        loop {
            client.flush().await?;
            let event = client.event(opening.awaiting()).await?;
            let mut ready = opening
                .on_event(event, &mut client.conn)
                .map_err(opening_error)?;
            if ready == Ready::StartTls {
                client.handshake().await?;
                ready = opening
                    .tls_started(&mut client.conn)
                    .map_err(opening_error)?;
            }
            if ready == Ready::Yes {
                break;
            }
        }
        if let Some(status) = opening.utf8_refused() {
            tracing::debug!(%status, "UTF8 refused");
        }
        if let Some(greeting) = opening.greeting() {
            client.greeting = greeting.clone();
        }
        client.capabilities = opening.capabilities().clone();
        client.capa_known = opening.capa_known();
        Ok(client)
    }

    /// The greeting.
    pub fn greeting(&self) -> &Status {
        &self.greeting
    }

    /// The capabilities (empty if the server has no CAPA).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(ClientStream::is_tls)
    }

    /// Logs in by `method`; [`AuthMethod::Auto`] and the rules that keep
    /// a password off the wire in clear are [`choose`]'s, and the
    /// exchange is [`Login`]'s: this only carries its commands and replies.
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
        method: AuthMethod,
    ) -> Result<(), ClientError> {
        let offer = Offer {
            capabilities: &self.capabilities,
            capa_known: self.capa_known,
            tls: self.is_tls(),
            greeting: &self.greeting,
        };
        let method = choose(method, &offer).map_err(|e| ClientError::NoAuthMethod(e.0))?;
        tracing::debug!(method = method.name(), "logging in");
        let stamp = self.greeting.apop_timestamp().map(str::to_owned);
        let mut login = Login::begin(method, user, password, stamp.as_deref(), &mut self.conn)
            .map_err(login_error)?;
        loop {
            self.flush().await?;
            let event = self.event(login.awaiting()).await?;
            match login.on_event(event, &mut self.conn).map_err(login_error)? {
                Progress::Continue => {}
                Progress::Done => return Ok(()),
                Progress::Cancel(error) => {
                    self.flush().await?;
                    let _ = self.event("AUTH cancel").await;
                    return Err(ClientError::Scram(error));
                }
            }
        }
    }

    /// `STAT`: message count and total size.
    pub async fn stat(&mut self) -> Result<(u32, u64), ClientError> {
        self.conn.stat()?;
        let status = self.status("STAT").await?;
        if !status.ok {
            return Err(ClientError::Refused("STAT", status));
        }
        status
            .stat()
            .ok_or_else(|| ClientError::Protocol(ProtocolError::BadStatusLine(status.to_string())))
    }

    /// `LIST`: every message's number and size.
    pub async fn list(&mut self) -> Result<Listing<ScanEntry>, ClientError> {
        self.conn.list()?;
        self.flush().await?;
        match self.event("LIST").await? {
            Event::Scan { entries, rejected } => Ok(Listing { entries, rejected }),
            Event::Status(status) => Err(ClientError::Refused("LIST", status)),
            other => Err(unexpected(other)),
        }
    }

    /// `UIDL`: every message's unique-id; `None` if the server has no UIDL.
    pub async fn uidl(&mut self) -> Result<Option<Listing<UidEntry>>, ClientError> {
        self.conn.uidl()?;
        self.flush().await?;
        self.uidl_reply().await
    }

    /// LIST and UIDL, in one write when the server offers PIPELINING.
    pub async fn list_and_uidl(
        &mut self,
    ) -> Result<(Listing<ScanEntry>, Option<Listing<UidEntry>>), ClientError> {
        if !self.capabilities.pipelining {
            let list = self.list().await?;
            return Ok((list, self.uidl().await?));
        }
        self.conn.list()?;
        self.conn.uidl()?;
        self.flush().await?;
        let list = match self.event("LIST").await? {
            Event::Scan { entries, rejected } => Listing { entries, rejected },
            Event::Status(status) => {
                // Read UIDL's answer too, so the session stays in step.
                let _ = self.uidl_reply().await?;
                return Err(ClientError::Refused("LIST", status));
            }
            other => return Err(unexpected(other)),
        };
        Ok((list, self.uidl_reply().await?))
    }

    /// `-ERR` means "no UIDL here" only from a server that did not claim
    /// it and gave no reason code; otherwise it is a failure (a `[SYS/TEMP]`
    /// must not make every message look new).
    async fn uidl_reply(&mut self) -> Result<Option<Listing<UidEntry>>, ClientError> {
        match self.event("UIDL").await? {
            Event::Uids { entries, rejected } => Ok(Some(Listing { entries, rejected })),
            Event::Status(status) if uidl_refusal_means_absent(&status, &self.capabilities) => {
                Ok(None)
            }
            Event::Status(status) => Err(ClientError::Refused("UIDL", status)),
            other => Err(unexpected(other)),
        }
    }

    /// `RETR n`: appends the message (CRLF line ends, unstuffed) to `out`.
    /// More than `limit` octets is a protocol error. `Ok(false)` if the
    /// server refused (`-ERR`, e.g. the message is gone).
    pub async fn retr(
        &mut self,
        n: MsgNum,
        limit: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, ClientError> {
        self.conn.retr(n, limit)?;
        self.content("RETR", out).await
    }

    /// `TOP n lines`: appends the headers and `lines` lines of body.
    pub async fn top(
        &mut self,
        n: MsgNum,
        lines: u32,
        limit: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, ClientError> {
        self.conn.top(n, lines, limit)?;
        self.content("TOP", out).await
    }

    /// `DELE n`: marks the message; the server removes it at QUIT.
    pub async fn dele(&mut self, n: MsgNum) -> Result<(), ClientError> {
        self.conn.dele(n)?;
        let status = self.status("DELE").await?;
        if status.ok {
            crate::failpoint::hit("after-dele");
            Ok(())
        } else {
            Err(ClientError::Refused("DELE", status))
        }
    }

    /// `DELE n`, sent with the next command when the server offers
    /// PIPELINING (its reply is read before that command's), or at once
    /// otherwise. A refusal is not an error here: the message is simply
    /// not marked, and [`Pop3Client::refused_deles`] lists it.
    pub async fn dele_pipelined(&mut self, n: MsgNum) -> Result<(), ClientError> {
        self.conn.dele(n)?;
        self.unsettled_deles.push_back(n);
        // Without PIPELINING one at a time; with it, a bounded batch, so
        // neither side's buffers fill with unread replies.
        if !self.capabilities.pipelining || self.unsettled_deles.len() >= 64 {
            self.flush().await?;
        }
        Ok(())
    }

    /// The DELEs the server refused so far, and why.
    pub fn refused_deles(&self) -> &[(MsgNum, Status)] {
        &self.refused_deles
    }

    /// `RSET`: unmarks everything.
    pub async fn rset(&mut self) -> Result<(), ClientError> {
        self.conn.rset()?;
        let status = self.status("RSET").await?;
        if status.ok {
            Ok(())
        } else {
            Err(ClientError::Refused("RSET", status))
        }
    }

    /// `NOOP`
    pub async fn noop(&mut self) -> Result<(), ClientError> {
        self.conn.noop()?;
        self.status("NOOP").await.map(|_| ())
    }

    /// Sends `QUIT` without waiting for the answer; [`Pop3Client::finish_quit`]
    /// reads it. (Split so a crash test can stop in between.) Pipelined
    /// DELEs are sent and their answers checked first: a refused one fails
    /// the run before QUIT commits anything.
    pub async fn send_quit(&mut self) -> Result<(), ClientError> {
        self.settle().await?;
        self.conn.quit()?;
        self.flush().await
    }

    /// Sends what is queued and reads the answers to pipelined DELEs.
    pub async fn settle(&mut self) -> Result<(), ClientError> {
        self.flush().await
    }

    /// Reads the answer to QUIT: `+OK` means the server committed the
    /// deletions (RFC 1939 §6); `-ERR` means it could not remove some.
    pub async fn finish_quit(mut self) -> Result<(), ClientError> {
        let status = match self.event("QUIT").await? {
            Event::Status(status) => status,
            other => return Err(unexpected(other)),
        };
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.shutdown().await;
        }
        if status.ok {
            Ok(())
        } else {
            Err(ClientError::Refused("QUIT", status))
        }
    }

    /// `QUIT`, and its answer.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.send_quit().await?;
        self.finish_quit().await
    }

    async fn handshake(&mut self) -> Result<(), ClientError> {
        let Some((connector, seen)) = self.tls.clone() else {
            return Err(ClientError::Tls("TLS is not configured".into()));
        };
        let name = ServerName::try_from(self.options.host.clone()).map_err(|_| {
            ClientError::Tls(format!(
                "{:?} is not a valid server name",
                self.options.host
            ))
        })?;
        let Some(stream) = self.stream.take() else {
            return Err(ClientError::Closed);
        };
        let timeout = self.options.timeout;
        match stream.upgrade(&connector, name, timeout).await {
            Ok(tls) => {
                self.stream = Some(tls);
                Ok(())
            }
            Err(UpgradeError::Timeout) => Err(ClientError::Timeout(timeout, "TLS handshake")),
            Err(UpgradeError::Handshake(error)) => Err(ClientError::Tls(match seen.refused() {
                Some(fp) => format!(
                    "{error}; the server's certificate has SHA-256 fingerprint {}",
                    fingerprint_text(&fp)
                ),
                None => error.to_string(),
            })),
            Err(error @ UpgradeError::AlreadyTls) => Err(ClientError::Tls(error.to_string())),
        }
    }

    async fn content(
        &mut self,
        what: &'static str,
        out: &mut Vec<u8>,
    ) -> Result<bool, ClientError> {
        self.flush().await?;
        loop {
            match self.event(what).await? {
                Event::Content(piece) => out.extend_from_slice(&piece),
                Event::ContentEnd => return Ok(true),
                Event::Status(status) if !status.ok => return Ok(false),
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Flushes queued commands and reads a status reply.
    async fn status(&mut self, what: &'static str) -> Result<Status, ClientError> {
        self.flush().await?;
        match self.event(what).await? {
            Event::Status(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        if self.conn.output().is_empty() {
            return Ok(());
        }
        self.write_output().await?;
        // Replies to pipelined DELEs come before the reply to what was
        // sent with them.
        while let Some(n) = self.unsettled_deles.pop_front() {
            match self.event("DELE").await? {
                Event::Status(status) if status.ok => crate::failpoint::hit("after-dele"),
                Event::Status(status) => self.refused_deles.push((n, status)),
                other => return Err(unexpected(other)),
            }
        }
        Ok(())
    }

    async fn write_output(&mut self) -> Result<(), ClientError> {
        let timeout = self.options.timeout;
        let output = self.conn.output();
        let Some(stream) = self.stream.as_mut() else {
            return Err(ClientError::Closed);
        };
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(output).await?;
            stream.flush().await
        })
        .await;
        match written {
            Err(_) => Err(ClientError::Timeout(timeout, "write")),
            Ok(Err(error)) => Err(ClientError::Io(error)),
            Ok(Ok(())) => {
                self.conn.clear_output();
                Ok(())
            }
        }
    }

    async fn event(&mut self, what: &'static str) -> Result<Event, ClientError> {
        let timeout = self.options.timeout;
        loop {
            if let Some(event) = self.conn.next_event()? {
                return Ok(event);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(ClientError::Closed);
            };
            let read = tokio::time::timeout(timeout, stream.read(&mut self.buf)).await;
            match read {
                Err(_) => return Err(ClientError::Timeout(timeout, what)),
                Ok(Err(error)) => return Err(ClientError::Io(error)),
                Ok(Ok(0)) => return Err(ClientError::Closed),
                Ok(Ok(n)) => self.conn.receive(&self.buf[..n]),
            }
        }
    }
}

fn opening_error(error: OpeningError) -> ClientError {
    match error {
        OpeningError::Greeting(status) => ClientError::Greeting(status),
        OpeningError::NoStls(why) => ClientError::NoStls(why),
        OpeningError::Unexpected(event) => unexpected(event),
        OpeningError::Request(error) => ClientError::Request(error),
    }
}

fn login_error(error: LoginError) -> ClientError {
    match error {
        LoginError::Refused(status) => ClientError::Auth(status),
        LoginError::Unexpected(event) => unexpected(event),
        LoginError::Request(error) => ClientError::Request(error),
        LoginError::NoMethod(why) => ClientError::NoAuthMethod(why.0),
        LoginError::Over => ClientError::Protocol(ProtocolError::Unsolicited),
    }
}

fn unexpected(event: Event) -> ClientError {
    let shown = match &event {
        Event::Greeting(s) | Event::Status(s) => s.to_string(),
        Event::Challenge(_) => "a SASL challenge".into(),
        Event::Capabilities(_) => "a capability list".into(),
        Event::Scan { .. } | Event::Uids { .. } => "a listing".into(),
        Event::Content(_) | Event::ContentEnd => "message content".into(),
    };
    ClientError::Protocol(ProtocolError::BadStatusLine(shown))
}
