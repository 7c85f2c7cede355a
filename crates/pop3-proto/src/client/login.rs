//! Logging in, without I/O: which method to use ([`choose`], with the rules
//! that keep a password off the wire in clear), and the exchange itself
//! ([`Login`]: USER/PASS, APOP, and SASL PLAIN, LOGIN, CRAM-MD5 and SCRAM),
//! queued on a [`Connection`] and advanced one server reply at a time.
//!
//! ```
//! use yubin_pop3_proto::client::{AuthMethod, Connection, Limits, Login, Progress};
//!
//! let mut pop = Connection::new(Limits::default());
//! pop.receive(b"+OK ready\r\n");
//! pop.next_event().unwrap(); // the greeting
//! let mut login = Login::begin(AuthMethod::User, "alice", "secret", None, &mut pop).unwrap();
//! assert_eq!(pop.output(), b"USER alice\r\n");
//! pop.clear_output();
//! pop.receive(b"+OK\r\n");
//! let reply = pop.next_event().unwrap().unwrap();
//! assert_eq!(login.on_event(reply, &mut pop).unwrap(), Progress::Continue);
//! assert_eq!(pop.output(), b"PASS secret\r\n");
//! pop.receive(b"+OK logged in\r\n");
//! let reply = pop.next_event().unwrap().unwrap();
//! assert_eq!(login.on_event(reply, &mut pop).unwrap(), Progress::Done);
//! ```

use std::fmt;

use yubin_auth::client::{ScramClient, ScramError, apop_digest, cram_md5_response, plain_response};
use yubin_auth::scram::Hash;

use super::{Capabilities, Connection, Event, RequestError, Status};

/// How to log in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// Chosen from CAPA by [`choose`].
    #[default]
    Auto,
    /// USER and PASS.
    User,
    /// APOP (the greeting must carry a valid timestamp).
    Apop,
    /// SASL PLAIN.
    Plain,
    /// SASL LOGIN.
    Login,
    /// SASL CRAM-MD5.
    CramMd5,
    /// SASL SCRAM-SHA-1.
    ScramSha1,
    /// SASL SCRAM-SHA-256.
    ScramSha256,
}

impl AuthMethod {
    /// Parses the names used in configuration: `auto`, `user`, `apop`,
    /// `plain`, `login`, `cram-md5`, `scram-sha-1`, `scram-sha-256`.
    pub fn parse(name: &str) -> Option<AuthMethod> {
        Some(match name.to_ascii_lowercase().as_str() {
            "auto" => AuthMethod::Auto,
            "user" => AuthMethod::User,
            "apop" => AuthMethod::Apop,
            "plain" => AuthMethod::Plain,
            "login" => AuthMethod::Login,
            "cram-md5" => AuthMethod::CramMd5,
            "scram-sha-1" => AuthMethod::ScramSha1,
            "scram-sha-256" => AuthMethod::ScramSha256,
            _ => return None,
        })
    }

    /// The name as [`AuthMethod::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Auto => "auto",
            AuthMethod::User => "user",
            AuthMethod::Apop => "apop",
            AuthMethod::Plain => "plain",
            AuthMethod::Login => "login",
            AuthMethod::CramMd5 => "cram-md5",
            AuthMethod::ScramSha1 => "scram-sha-1",
            AuthMethod::ScramSha256 => "scram-sha-256",
        }
    }

    /// Whether the method sends the password itself (not a proof of it).
    pub fn sends_password(self) -> bool {
        matches!(
            self,
            AuthMethod::User | AuthMethod::Plain | AuthMethod::Login
        )
    }
}

/// What the server offered, as [`choose`] needs it.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// The capabilities (empty if CAPA was refused).
    pub capabilities: &'a Capabilities,
    /// CAPA was answered: a method it does not list is not offered.
    pub capa_known: bool,
    /// The session runs over TLS.
    pub tls: bool,
    /// The greeting, for APOP's timestamp.
    pub greeting: &'a Status,
}

/// No acceptable way to log in; the text says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoMethod(pub String);

impl fmt::Display for NoMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoMethod {}

/// Picks the method. [`AuthMethod::Auto`] picks, over TLS: USER/PASS when
/// offered (or when the server has no CAPA), else SASL PLAIN, LOGIN,
/// SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, APOP; without TLS only
/// SCRAM-SHA-256, SCRAM-SHA-1 and CRAM-MD5, so the password never crosses
/// the network in clear unless a method is forced. APOP, chosen or
/// forced, is used only over TLS (an eavesdropper with the challenge and
/// the digest can guess the password offline) and only with a greeting
/// timestamp of the msg-id form.
pub fn choose(method: AuthMethod, offer: &Offer<'_>) -> Result<AuthMethod, NoMethod> {
    let chosen = match method {
        AuthMethod::Auto if offer.tls => choose_over_tls(offer),
        AuthMethod::Auto => choose_in_clear(offer)?,
        forced => forced,
    };
    if chosen == AuthMethod::Apop {
        if offer.greeting.apop_timestamp().is_none() {
            return Err(NoMethod(
                "APOP needs a greeting with a <local@host> timestamp".into(),
            ));
        }
        if !offer.tls {
            return Err(NoMethod(
                "APOP is not used without TLS: its digest invites offline guessing".into(),
            ));
        }
    }
    Ok(chosen)
}

fn choose_over_tls(offer: &Offer<'_>) -> AuthMethod {
    let sasl = |name: &str| offer.capabilities.has_sasl(name);
    let order = [
        (
            offer.capabilities.user || !offer.capa_known,
            AuthMethod::User,
        ),
        (sasl("PLAIN"), AuthMethod::Plain),
        (sasl("LOGIN"), AuthMethod::Login),
        (sasl("SCRAM-SHA-256"), AuthMethod::ScramSha256),
        (sasl("SCRAM-SHA-1"), AuthMethod::ScramSha1),
        (sasl("CRAM-MD5"), AuthMethod::CramMd5),
        (offer.greeting.apop_timestamp().is_some(), AuthMethod::Apop),
    ];
    order
        .into_iter()
        .find(|(offered, _)| *offered)
        // A server with CAPA that lists no way in: USER is RFC 1939's.
        .map_or(AuthMethod::User, |(_, method)| method)
}

fn choose_in_clear(offer: &Offer<'_>) -> Result<AuthMethod, NoMethod> {
    let sasl = |name: &str| offer.capabilities.has_sasl(name);
    let order = [
        (sasl("SCRAM-SHA-256"), AuthMethod::ScramSha256),
        (sasl("SCRAM-SHA-1"), AuthMethod::ScramSha1),
        (sasl("CRAM-MD5"), AuthMethod::CramMd5),
    ];
    match order.into_iter().find(|(offered, _)| *offered) {
        Some((_, method)) => Ok(method),
        None => Err(NoMethod(
            "without TLS only SCRAM or CRAM-MD5 is chosen automatically, and the server \
             offers neither; refusing to send the password in clear (set the auth method \
             explicitly to override)"
                .into(),
        )),
    }
}

/// Where a login stands after a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Commands are queued: send them and feed the next reply.
    Continue,
    /// Logged in.
    Done,
    /// The server failed SCRAM's checks; `*` is queued to cancel the
    /// exchange. Send it, read (and ignore) one reply, then fail with this.
    Cancel(ScramError),
}

/// Why a login failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// The server refused (see [`Status::in_use`], [`Status::login_delay`]).
    Refused(Status),
    /// The server answered with something no login step expects.
    Unexpected(Event),
    /// A command could not be written (a user name with a line break).
    Request(RequestError),
    /// The method cannot be used as asked (see [`choose`]).
    NoMethod(NoMethod),
    /// [`Login::on_event`] was called after the login ended.
    Over,
}

impl From<RequestError> for LoginError {
    fn from(error: RequestError) -> Self {
        LoginError::Request(error)
    }
}

/// What the next reply is for.
enum Stage {
    /// USER sent; PASS follows its `+OK`.
    User,
    /// An empty challenge, then the initial response that did not fit on
    /// the AUTH line.
    InitialResponse(Vec<u8>, Box<Stage>),
    /// LOGIN: the challenges for the name and the password.
    LoginName,
    LoginPassword,
    /// CRAM-MD5's challenge.
    Cram,
    /// SCRAM's server-first and server-final messages.
    ScramFirst,
    ScramFinal,
    /// The final `+OK` or `-ERR`.
    Outcome,
    /// Ended (logged in, refused or cancelled).
    Over,
}

/// One login exchange in progress.
pub struct Login {
    stage: Stage,
    user: String,
    password: String,
    scram: Option<ScramClient>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Login {
    /// Queues the first command of a login by `method` (a concrete one,
    /// from [`choose`]). `apop_timestamp` is the greeting's, for APOP.
    pub fn begin(
        method: AuthMethod,
        user: &str,
        password: &str,
        apop_timestamp: Option<&str>,
        conn: &mut Connection,
    ) -> Result<Login, LoginError> {
        let mut login = Login {
            stage: Stage::Outcome,
            user: user.to_owned(),
            password: password.to_owned(),
            scram: None,
        };
        login.stage = match method {
            AuthMethod::User => {
                conn.user(user)?;
                Stage::User
            }
            AuthMethod::Apop => {
                let Some(stamp) = apop_timestamp else {
                    return Err(LoginError::NoMethod(NoMethod(
                        "APOP needs a greeting with a <local@host> timestamp".into(),
                    )));
                };
                conn.apop(user, &apop_digest(stamp, password))?;
                Stage::Outcome
            }
            AuthMethod::Plain => sasl_start(
                conn,
                "PLAIN",
                plain_response(user, password),
                Stage::Outcome,
            )?,
            AuthMethod::Login => {
                conn.auth("LOGIN", None)?;
                Stage::LoginName
            }
            AuthMethod::CramMd5 => {
                conn.auth("CRAM-MD5", None)?;
                Stage::Cram
            }
            AuthMethod::ScramSha1 | AuthMethod::ScramSha256 => {
                let (name, hash) = if method == AuthMethod::ScramSha1 {
                    ("SCRAM-SHA-1", Hash::Sha1)
                } else {
                    ("SCRAM-SHA-256", Hash::Sha256)
                };
                let scram = ScramClient::new(hash, user, password);
                let first = scram.client_first();
                login.scram = Some(scram);
                sasl_start(conn, name, first, Stage::ScramFirst)?
            }
            AuthMethod::Auto => {
                return Err(LoginError::NoMethod(NoMethod(
                    "no method chosen (Login::begin takes what choose returns)".into(),
                )));
            }
        };
        Ok(login)
    }

    /// Which reply is awaited, for messages about a timeout.
    pub fn awaiting(&self) -> &'static str {
        match self.stage {
            Stage::User => "USER",
            Stage::Outcome | Stage::Over => "login",
            _ => "AUTH",
        }
    }

    /// Takes the server's next reply and queues what answers it.
    pub fn on_event(
        &mut self,
        event: Event,
        conn: &mut Connection,
    ) -> Result<Progress, LoginError> {
        let stage = std::mem::replace(&mut self.stage, Stage::Over);
        let (stage, challenge) = match (stage, event) {
            (Stage::Over, _) => return Err(LoginError::Over),
            (Stage::User, Event::Status(status)) if status.ok => {
                conn.pass(&self.password)?;
                self.stage = Stage::Outcome;
                return Ok(Progress::Continue);
            }
            (Stage::Outcome, Event::Status(status)) if status.ok => return Ok(Progress::Done),
            (_, Event::Status(status)) => return Err(LoginError::Refused(status)),
            (Stage::User | Stage::Outcome, other) => return Err(LoginError::Unexpected(other)),
            (stage, Event::Challenge(challenge)) => (stage, challenge),
            (_, other) => return Err(LoginError::Unexpected(other)),
        };
        self.stage = match stage {
            Stage::InitialResponse(data, next) => {
                if !challenge.is_empty() {
                    return self.cancel(conn, ScramError::Malformed);
                }
                conn.auth_response(&data)?;
                *next
            }
            Stage::LoginName => {
                conn.auth_response(self.user.as_bytes())?;
                Stage::LoginPassword
            }
            Stage::LoginPassword => {
                conn.auth_response(self.password.as_bytes())?;
                Stage::Outcome
            }
            Stage::Cram => {
                conn.auth_response(&cram_md5_response(&self.user, &self.password, &challenge))?;
                Stage::Outcome
            }
            Stage::ScramFirst => {
                let Some(scram) = self.scram.as_mut() else {
                    return Err(LoginError::Over);
                };
                match scram.client_final(&challenge) {
                    Ok(message) => conn.auth_response(&message)?,
                    Err(error) => return self.cancel(conn, error),
                }
                Stage::ScramFinal
            }
            Stage::ScramFinal => {
                let Some(scram) = self.scram.as_ref() else {
                    return Err(LoginError::Over);
                };
                if let Err(error) = scram.verify_server_final(&challenge) {
                    return self.cancel(conn, error);
                }
                // The server proved it knows the password; an empty
                // response ends the exchange (RFC 5802 §5).
                conn.auth_response(b"")?;
                Stage::Outcome
            }
            Stage::User | Stage::Outcome | Stage::Over => return Err(LoginError::Over),
        };
        Ok(Progress::Continue)
    }

    fn cancel(&mut self, conn: &mut Connection, error: ScramError) -> Result<Progress, LoginError> {
        conn.auth_cancel()?;
        self.stage = Stage::Over;
        Ok(Progress::Cancel(error))
    }
}

/// Queues `AUTH mechanism` with its initial response. RFC 5034 §4 (RFC
/// 2449 §4): a command line is at most 255 octets with its CRLF; a
/// response that does not fit goes after an empty challenge instead.
fn sasl_start(
    conn: &mut Connection,
    mechanism: &str,
    initial: Vec<u8>,
    then: Stage,
) -> Result<Stage, RequestError> {
    let line = "AUTH ".len() + mechanism.len() + 1 + initial.len().div_ceil(3) * 4 + 2;
    if line <= 255 {
        conn.auth(mechanism, Some(&initial))?;
        Ok(then)
    } else {
        conn.auth(mechanism, None)?;
        Ok(Stage::InitialResponse(initial, Box::new(then)))
    }
}

#[cfg(test)]
mod tests;
