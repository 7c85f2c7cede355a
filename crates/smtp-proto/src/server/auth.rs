//! AUTH (RFC 4954) in the session.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::time::Duration;
use yubin_auth::Authenticated;

use super::{Action, Awaiting, Phase, Session};
use crate::reply::{Reply, replies};

/// Mechanisms that carry the password itself.
const PLAINTEXT_MECHANISMS: [&str; 2] = ["PLAIN", "LOGIN"];
/// Mechanisms where the server speaks first: an initial response is an error.
const SERVER_FIRST_MECHANISMS: [&str; 1] = ["CRAM-MD5"];

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A SASL exchange is under way: the next line is a response.
#[derive(Debug)]
pub(super) struct SaslState;

impl<R> Session<R> {
    /// The mechanisms this connection may use now.
    pub(super) fn usable_mechanisms(&self) -> Vec<&str> {
        self.config
            .sasl_mechanisms
            .iter()
            .map(String::as_str)
            .filter(|m| self.offer.plaintext_auth || !PLAINTEXT_MECHANISMS.contains(m))
            .collect()
    }

    pub(super) fn auth(&mut self, mechanism: String, initial: Option<String>) {
        if !self.offer.auth_allowed {
            let reply = if self.offer.starttls_available && !self.offer.tls_active {
                replies::AUTH_NEEDS_TLS
            } else {
                replies::AUTH_NOT_AVAILABLE
            };
            self.error(reply);
            return;
        }
        match self.phase {
            Phase::Connected => return self.error(replies::NEED_EHLO),
            Phase::Ready => {}
            _ => return self.error(replies::AUTH_IN_TRANSACTION),
        }
        if self.authenticated.is_some() {
            self.error(replies::AUTH_ALREADY);
            return;
        }
        if !self.config.sasl_mechanisms.contains(&mechanism) {
            self.error(replies::AUTH_UNSUPPORTED);
            return;
        }
        if !self.offer.plaintext_auth && PLAINTEXT_MECHANISMS.contains(&mechanism.as_str()) {
            // Under TLS encryption would not help: the configuration forbids it.
            self.error(if self.offer.tls_active {
                replies::AUTH_MECHANISM_DISABLED
            } else {
                replies::AUTH_MECHANISM_NEEDS_TLS
            });
            return;
        }
        let initial_response = match initial.as_deref() {
            None => None,
            Some(_) if SERVER_FIRST_MECHANISMS.contains(&mechanism.as_str()) => {
                self.error(Reply::new(
                    501,
                    "5.5.4",
                    "This mechanism takes no initial response",
                ));
                return;
            }
            Some("=") => Some(Vec::new()),
            Some(encoded) => match BASE64.decode(encoded) {
                Ok(decoded) => Some(decoded),
                Err(_) => {
                    self.error(replies::AUTH_BAD_BASE64);
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

    /// A line received during a SASL exchange (RFC 4954 §4).
    pub(super) fn sasl_response(&mut self, line: &[u8]) {
        self.sasl = None;
        if line == b"*" {
            self.junk(replies::AUTH_CANCELLED);
            return;
        }
        match BASE64.decode(line) {
            Ok(response) => self.act(Action::SaslStep { response }, Awaiting::Credentials),
            Err(_) => self.error(replies::AUTH_BAD_BASE64),
        }
    }

    /// A SASL mechanism sends a challenge (`334 base64`).
    pub fn sasl_challenge(&mut self, challenge: &[u8]) {
        if self.take_awaiting(Awaiting::Credentials) {
            let encoded = BASE64.encode(challenge);
            self.output
                .extend_from_slice(format!("334 {encoded}\r\n").as_bytes());
            self.sasl = Some(SaslState);
        }
    }

    /// The credentials are right for `user`.
    pub fn credentials_accepted(&mut self, user: Authenticated) {
        if self.take_awaiting(Awaiting::Credentials) {
            self.authenticated = Some(user.into_name());
            self.reply(replies::AUTH_OK);
        }
    }

    /// The credentials could not be checked (an internal failure): `454`,
    /// so the client retries later instead of doubting its password. Not
    /// counted as a client error.
    pub fn credentials_unverifiable(&mut self) {
        if self.take_awaiting(Awaiting::Credentials) {
            self.reply(replies::AUTH_TEMPORARY_FAILURE);
        }
    }

    /// The credentials are wrong: the same answer after `delay` (the
    /// driver's login penalty, which depends on the client's recent
    /// failures, not on why this one failed).
    pub fn credentials_rejected(&mut self, delay: Duration) {
        if !self.take_awaiting(Awaiting::Credentials) {
            return;
        }
        // The failure is counted when its 535 goes out (`delay_elapsed`), so
        // guessing passwords uses up the session's error allowance.
        if delay.is_zero() {
            self.awaiting = Some(Awaiting::Delay);
            self.delay_elapsed();
        } else {
            self.act(Action::Delay(delay), Awaiting::Delay);
        }
    }
}
