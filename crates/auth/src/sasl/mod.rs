//! SASL mechanisms, server side: PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195) and SCRAM-SHA-1 /
//! SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding.
//!
//! A mechanism is a small state machine: [`Exchange::start`] with the
//! client's initial response (if any), then [`Exchange::step`] with each
//! later response, until it says [`Step::Success`] or [`Step::Failure`].
//! Framing (base64, `+ ` lines, `*`) belongs to the protocol, not here.

mod cram_md5;
mod scram;

use crate::Authenticated;
use crate::scram::Hash;
use crate::users::Users;

/// The mechanisms yubin implements, strongest last.
pub const MECHANISMS: &[&str] = &["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"];

/// What a mechanism wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge; the client's answer goes to [`Exchange::step`].
    Challenge(Vec<u8>),
    /// Authenticated as this user (the canonical name from the passwd-file).
    Success(Authenticated),
    /// Authentication failed. Always the same, whatever the reason.
    Failure,
}

/// An exchange in progress.
#[derive(Debug)]
pub struct Exchange {
    state: State,
}

#[derive(Debug)]
enum State {
    Plain,
    LoginUser,
    LoginPassword { user: String },
    CramMd5(cram_md5::CramMd5),
    Scram(Box<scram::Scram>),
    Done,
}

impl Exchange {
    /// Starts `mechanism` (upper-case name) for a client; `hostname` appears in
    /// CRAM-MD5's challenge. Returns `None` for a mechanism we do not implement.
    pub fn start(
        mechanism: &str,
        initial_response: Option<&[u8]>,
        users: &Users,
        hostname: &str,
    ) -> Option<(Exchange, Step)> {
        let state = match mechanism {
            "PLAIN" => State::Plain,
            "LOGIN" => State::LoginUser,
            "CRAM-MD5" => State::CramMd5(cram_md5::CramMd5::new(hostname)),
            "SCRAM-SHA-1" => State::Scram(Box::new(scram::Scram::new(Hash::Sha1))),
            "SCRAM-SHA-256" => State::Scram(Box::new(scram::Scram::new(Hash::Sha256))),
            _ => return None,
        };
        let mut exchange = Exchange { state };
        let step = match (&exchange.state, initial_response) {
            (State::CramMd5(cram), None) => Step::Challenge(cram.challenge().as_bytes().to_vec()),
            // RFC 5034 §4: a server-first mechanism refuses an initial response.
            (State::CramMd5(_), Some(_)) => {
                exchange.state = State::Done;
                Step::Failure
            }
            (State::LoginUser, None) => Step::Challenge(b"Username:".to_vec()),
            // RFC 4422 §5: no initial response means an empty challenge first.
            (_, None) => Step::Challenge(Vec::new()),
            (_, Some(response)) => exchange.step(response, users),
        };
        Some((exchange, step))
    }

    /// Feeds the client's next response.
    pub fn step(&mut self, response: &[u8], users: &Users) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Plain => plain(response, users),
            State::LoginUser => match String::from_utf8(response.to_vec()) {
                Ok(user) => {
                    self.state = State::LoginPassword { user };
                    Step::Challenge(b"Password:".to_vec())
                }
                Err(_) => Step::Failure,
            },
            State::LoginPassword { user } => users
                .verify_password(&user, response)
                .map_or(Step::Failure, |u| {
                    Step::Success(Authenticated::checked(&u.name))
                }),
            State::CramMd5(cram) => cram.finish(response, users),
            State::Scram(mut scram) => {
                let step = scram.step(response, users);
                if matches!(step, Step::Challenge(_)) {
                    self.state = State::Scram(scram);
                }
                step
            }
            State::Done => Step::Failure,
        }
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`. We do not let one user act
/// as another, so authzid must be empty or name the same user.
fn plain(message: &[u8], users: &Users) -> Step {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Failure;
    };
    let (Ok(authzid), Ok(authcid)) = (std::str::from_utf8(authzid), std::str::from_utf8(authcid))
    else {
        return Step::Failure;
    };
    match users.verify_password(authcid, password) {
        Some(user) if authzid.is_empty() || authzid.eq_ignore_ascii_case(&user.name) => {
            Step::Success(Authenticated::checked(&user.name))
        }
        _ => Step::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passwd::PasswdFile;

    pub(super) fn users() -> Users {
        let (file, _) = PasswdFile::parse(
            "tim:{PLAIN}tanstaaftanstaaf\nuser:{PLAIN}pencil\nbob:{SSHA}FYTGHClXXAdyI5o2zDldqGR945Hnq8UF\n\
             carol:{SCRAM-SHA-256}4096,fWMylOXMmwj7lmzwqIDREQ==,YmELRdm95fV06v/IWdVvXY+cKzRYZVCAsZfTwIWXhgY=,8AO/RPkktE+3KiXIqQv4eoHFs9fqePVXEWhlHtqHrgc=\n",
        );
        Users::from_file(&file).0
    }

    #[test]
    fn plain_with_and_without_authzid() {
        let u = users();
        let start = |ir: &[u8]| Exchange::start("PLAIN", Some(ir), &u, "h").unwrap().1;
        assert_eq!(
            start(b"\0bob\0secret"),
            Step::Success(crate::Authenticated::checked("bob"))
        );
        assert_eq!(
            start(b"bob\0bob\0secret"),
            Step::Success(crate::Authenticated::checked("bob"))
        );
        assert_eq!(start(b"tim\0bob\0secret"), Step::Failure);
        assert_eq!(start(b"\0bob\0wrong"), Step::Failure);
        assert_eq!(start(b"\0bob"), Step::Failure);
        assert_eq!(start(b"\0bob\0secret\0extra"), Step::Failure);
        let (mut ex, step) = Exchange::start("PLAIN", None, &u, "h").unwrap();
        assert_eq!(step, Step::Challenge(Vec::new()));
        assert_eq!(
            ex.step(b"\0bob\0secret", &u),
            Step::Success(crate::Authenticated::checked("bob"))
        );
        assert_eq!(
            ex.step(b"\0bob\0secret", &u),
            Step::Failure,
            "an exchange ends once"
        );
    }

    #[test]
    fn login_prompts_for_name_then_password() {
        let u = users();
        let (mut ex, step) = Exchange::start("LOGIN", None, &u, "h").unwrap();
        assert_eq!(step, Step::Challenge(b"Username:".to_vec()));
        assert_eq!(ex.step(b"bob", &u), Step::Challenge(b"Password:".to_vec()));
        assert_eq!(
            ex.step(b"secret", &u),
            Step::Success(crate::Authenticated::checked("bob"))
        );
        // Many clients send the user name as an initial response.
        let (mut ex, step) = Exchange::start("LOGIN", Some(b"bob"), &u, "h").unwrap();
        assert_eq!(step, Step::Challenge(b"Password:".to_vec()));
        assert_eq!(ex.step(b"nope", &u), Step::Failure);
    }

    #[test]
    fn unknown_mechanisms_are_not_started() {
        assert!(Exchange::start("NTLM", None, &users(), "h").is_none());
    }
}
