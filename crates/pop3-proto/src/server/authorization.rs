//! The AUTHORIZATION state (RFC 1939 §4, §7; RFC 2595; RFC 5034; RFC 6856).

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::time::Duration;
use yubin_auth::Authenticated;

use super::messages::MessageList;
use super::replies::{Bad, Reply};
use super::transaction::Maildrop;
use super::{Action, Awaiting, Offer, Refusal, Session, SessionConfig, State};
use crate::command::Command;
use crate::reply;

/// Mechanisms that carry the password itself (RFC 4616; the LOGIN draft).
const PLAINTEXT_MECHANISMS: [&str; 2] = ["PLAIN", "LOGIN"];

/// Mechanisms where the server speaks first, so an initial response is an
/// error (RFC 5034 §4). LOGIN is server-first on paper, but clients commonly
/// send the user name as an initial response and servers accept it.
const SERVER_FIRST_MECHANISMS: [&str; 1] = ["CRAM-MD5"];

/// Base64 as RFC 5034 §4 wants it: the standard alphabet, "=" only at the
/// end; missing padding is forgiven, as most servers do.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the AUTHORIZATION state remembers between commands.
#[derive(Debug, Default)]
pub(super) struct Authorization {
    /// The name from a successful USER, waiting for PASS.
    user: Option<String>,
    /// A SASL exchange is under way: the next line is a response, not a command.
    sasl: bool,
}

impl Authorization {
    pub(super) fn in_sasl_exchange(&self) -> bool {
        self.sasl
    }

    pub(super) fn end_sasl_exchange(&mut self) {
        self.sasl = false;
    }
}

/// The mechanisms a connection may use now.
pub(super) fn usable_mechanisms<'a>(
    config: &'a SessionConfig,
    offer: &Offer,
) -> impl Iterator<Item = &'a str> {
    let plaintext = offer.plaintext_auth;
    config
        .sasl_mechanisms
        .iter()
        .map(String::as_str)
        .filter(move |m| plaintext || !PLAINTEXT_MECHANISMS.contains(m))
}

impl Session {
    fn auth_state(&mut self) -> Option<&mut Authorization> {
        match &mut self.state {
            State::Authorization(auth) => Some(auth),
            _ => None,
        }
    }

    pub(super) fn authorization_command(&mut self, command: Command<'_>) {
        // RFC 1939 §7: PASS must follow USER immediately.
        let pending_user = self.auth_state().and_then(|a| a.user.take());
        match command {
            Command::User(name) => {
                if !self.offer.plaintext_auth {
                    self.refuse_plaintext();
                    return;
                }
                // The same answer for every name (RFC 1939 §13: no user enumeration).
                if let Some(auth) = self.auth_state() {
                    auth.user = Some(name.to_owned());
                }
                Reply::Ok.write(&mut self.output);
            }
            Command::Pass(password) => match pending_user {
                Some(user) => self.act(
                    Action::CheckPassword {
                        user,
                        password: password.to_vec(),
                    },
                    Awaiting::Credentials,
                ),
                None => self.bad_command(Bad::NoUser),
            },
            Command::Apop { user, digest } => {
                if self.offer.apop_timestamp.is_none() {
                    self.bad_command(Bad::ApopUnavailable);
                    return;
                }
                self.act(
                    Action::CheckApop {
                        user: user.to_owned(),
                        digest: digest.to_ascii_lowercase(),
                    },
                    Awaiting::Credentials,
                );
            }
            Command::Auth {
                mechanism: None, ..
            } => {
                // Not in RFC 5034 (its grammar requires a mechanism), but Outlook
                // and others send a bare AUTH to list the mechanisms, as in RFC 1734's days.
                Reply::Ok.write(&mut self.output);
                for mechanism in usable_mechanisms(&self.config, &self.offer) {
                    reply::line(&mut self.output, format_args!("{mechanism}"));
                }
                reply::end(&mut self.output);
            }
            Command::Auth {
                mechanism: Some(mechanism),
                initial_response,
            } => self.auth_start(mechanism, initial_response),
            Command::Stls => self.stls(),
            Command::Utf8 => {
                self.utf8 = true;
                Reply::Utf8Enabled.write(&mut self.output);
            }
            Command::Quit => {
                // RFC 1939 §6: QUIT in AUTHORIZATION does not enter UPDATE.
                Reply::LoggingOut.write(&mut self.output);
                self.quit = true;
                self.state = State::Closed;
            }
            _ => self.wrong_state(),
        }
    }

    /// Refuses USER or a plaintext SASL mechanism, saying what would help:
    /// TLS where it would make the login acceptable, else another method.
    fn refuse_plaintext(&mut self) {
        Reply::PlaintextRefused {
            disabled: self.offer.tls_active,
        }
        .write(&mut self.output);
    }

    fn auth_start(&mut self, mechanism: &str, initial_response: Option<&str>) {
        let mechanism = mechanism.to_ascii_uppercase();
        if !self.config.sasl_mechanisms.contains(&mechanism) {
            self.bad_command(Bad::UnsupportedMechanism);
            return;
        }
        if !self.offer.plaintext_auth && PLAINTEXT_MECHANISMS.contains(&mechanism.as_str()) {
            self.refuse_plaintext();
            return;
        }
        let initial_response = match initial_response {
            None => None,
            Some(_) if SERVER_FIRST_MECHANISMS.contains(&mechanism.as_str()) => {
                self.bad_command(Bad::NoInitialResponse);
                return;
            }
            Some("=") => Some(Vec::new()),
            Some(encoded) => match BASE64.decode(encoded) {
                Ok(decoded) => Some(decoded),
                Err(_) => {
                    self.bad_command(Bad::InitialResponseNotBase64);
                    return;
                }
            },
        };
        self.act(
            Action::SaslStart {
                mechanism,
                initial_response,
            },
            Awaiting::Credentials,
        );
    }

    /// A line received during a SASL exchange.
    pub(super) fn sasl_response(&mut self, line: &[u8]) {
        if let Some(auth) = self.auth_state() {
            auth.sasl = false;
        }
        if line == b"*" {
            // RFC 5034 §4: a cancelled exchange is answered with -ERR.
            Reply::AuthCancelled.write(&mut self.output);
            return;
        }
        match BASE64.decode(line) {
            Ok(response) => self.act(Action::SaslStep { response }, Awaiting::Credentials),
            Err(_) => self.bad_command(Bad::ResponseNotBase64),
        }
    }

    /// A SASL mechanism wants to send a challenge; the next line is the answer.
    pub fn sasl_challenge(&mut self, challenge: &[u8]) {
        if self.take_awaiting(|a| a == Awaiting::Credentials).is_none() {
            return;
        }
        self.output.extend_from_slice(b"+ ");
        let start = self.output.len();
        let encoded_len = base64::encoded_len(challenge.len(), true).unwrap_or(0);
        self.output.resize(start + encoded_len, 0);
        let written = BASE64
            .encode_slice(challenge, &mut self.output[start..])
            .unwrap_or(0);
        self.output.truncate(start + written);
        self.output.extend_from_slice(b"\r\n");
        if let Some(auth) = self.auth_state() {
            auth.sasl = true;
        }
    }

    /// The credentials (USER/PASS, APOP or SASL) are right for `user`.
    pub fn credentials_accepted(&mut self, user: Authenticated) {
        if self.take_awaiting(|a| a == Awaiting::Credentials).is_some() {
            let user = user.into_name();
            self.user = Some(user.clone());
            self.act(Action::OpenMaildrop { user }, Awaiting::Maildrop);
        }
    }

    /// The credentials are wrong, the user unknown, or the exchange malformed:
    /// all get the same answer after `delay` (the driver's login penalty,
    /// which depends on the client's recent failures, not on why this one
    /// failed).
    pub fn credentials_rejected(&mut self, delay: Duration) {
        if self.take_awaiting(|a| a == Awaiting::Credentials).is_none() {
            return;
        }
        if delay.is_zero() {
            self.awaiting = Some(Awaiting::Delay);
            self.delay_elapsed();
        } else {
            self.act(Action::Delay(delay), Awaiting::Delay);
        }
    }

    /// The credentials could not be checked now (the client's address had
    /// to wait too long for its turn): `-ERR [SYS/TEMP]`, right away and
    /// not as a failure, so the client may simply try again later.
    pub fn credentials_unverifiable(&mut self) {
        if self.take_awaiting(|a| a == Awaiting::Credentials).is_some() {
            Reply::CannotCheckCredentials.write(&mut self.output);
        }
    }

    /// The maildrop is locked and listed: enter TRANSACTION.
    pub fn maildrop_opened(&mut self, messages: MessageList) {
        let Some(Awaiting::Maildrop) = self.take_awaiting(|a| a == Awaiting::Maildrop) else {
            return;
        };
        let maildrop = Maildrop::new(messages);
        let (count, size) = maildrop.totals();
        self.stats.messages = count;
        self.stats.size = size;
        Reply::LoggedIn { count, size }.write(&mut self.output);
        self.state = State::Transaction(maildrop);
        self.bad_commands = 0;
    }

    /// The maildrop could not be opened; stay in AUTHORIZATION.
    pub fn maildrop_refused(&mut self, refusal: Refusal) {
        if self.take_awaiting(|a| a == Awaiting::Maildrop).is_none() {
            return;
        }
        self.user = None;
        let out = &mut self.output;
        match refusal {
            Refusal::InUse => Reply::MaildropInUse,
            Refusal::LoginDelay(seconds) => Reply::LoginDelay { seconds },
            Refusal::Temporary => Reply::MaildropUnavailable,
            Refusal::Permanent => Reply::MaildropBroken,
        }
        .write(out);
    }

    fn stls(&mut self) {
        if self.offer.tls_active {
            self.bad_command(Bad::TlsActive);
            return;
        }
        if !self.offer.stls_available {
            self.bad_command(Bad::TlsUnavailable);
            return;
        }
        Reply::BeginTls.write(&mut self.output);
        // Anything pipelined after STLS was sent in plaintext and must never be
        // executed inside TLS (CVE-2011-0411 and its many relatives).
        self.lines.clear();
        self.act(Action::StartTls, Awaiting::Tls);
    }
}
