//! The CAPA response (RFC 2449 §5), as far as a client acts on it.

use std::time::Duration;

/// What the server said it can do. An empty set (the server has no CAPA)
/// means the RFC 1939 minimum: USER/PASS may or may not work, TOP and UIDL
/// are optional and are tried, not assumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// USER/PASS is offered.
    pub user: bool,
    /// STLS is offered (RFC 2595).
    pub stls: bool,
    /// Commands may be sent without waiting for each reply (RFC 2449 §6.6).
    pub pipelining: bool,
    /// TOP is implemented.
    pub top: bool,
    /// UIDL is implemented.
    pub uidl: bool,
    /// Extended response codes are sent.
    pub resp_codes: bool,
    /// `[AUTH]` response codes are sent (RFC 3206).
    pub auth_resp_code: bool,
    /// UTF8 (RFC 6856) is offered.
    pub utf8: bool,
    /// The SASL mechanisms offered, upper-case.
    pub sasl: Vec<String>,
    /// The minimum time between logins, if announced (`LOGIN-DELAY n`).
    pub login_delay: Option<Duration>,
    /// `EXPIRE n` in days: the server deletes retrieved mail itself after
    /// this long (`Some(0)`: at once); `None` for `NEVER` or no announcement.
    pub expire_days: Option<u32>,
    /// The IMPLEMENTATION string, escaped.
    pub implementation: Option<String>,
}

/// Most capability lines we read; real servers send about a dozen.
pub(crate) const MAX_LINES: usize = 256;

impl Capabilities {
    /// Adds one line of the CAPA listing. Unknown capabilities are ignored.
    pub(crate) fn add_line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_ascii_whitespace();
        let Some(name) = words.next() else { return };
        match name.to_ascii_uppercase().as_str() {
            "USER" => self.user = true,
            "STLS" => self.stls = true,
            "PIPELINING" => self.pipelining = true,
            "TOP" => self.top = true,
            "UIDL" => self.uidl = true,
            "UTF8" => self.utf8 = true,
            "RESP-CODES" => self.resp_codes = true,
            "AUTH-RESP-CODE" => self.auth_resp_code = true,
            "SASL" => {
                for mechanism in words.take(32) {
                    let mechanism = mechanism.to_ascii_uppercase();
                    let valid = mechanism.len() <= 20
                        && mechanism
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if valid && !self.sasl.contains(&mechanism) {
                        self.sasl.push(mechanism);
                    }
                }
            }
            "LOGIN-DELAY" => {
                self.login_delay = words
                    .next()
                    .and_then(super::status::parse_decimal)
                    .map(Duration::from_secs);
            }
            "EXPIRE" => {
                self.expire_days = words
                    .next()
                    .and_then(super::status::parse_decimal)
                    .and_then(|d| u32::try_from(d).ok());
            }
            "IMPLEMENTATION" => {
                let rest = text.split_once(' ').map_or("", |(_, r)| r);
                self.implementation = Some(super::status::escape(rest.as_bytes()));
            }
            _ => {}
        }
    }

    /// Whether SASL `mechanism` (upper-case) is offered.
    pub fn has_sasl(&self, mechanism: &str) -> bool {
        self.sasl.iter().any(|m| m == mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_like_listing() {
        let mut caps = Capabilities::default();
        for line in [
            &b"CAPA"[..],
            b"TOP",
            b"UIDL",
            b"RESP-CODES",
            b"PIPELINING",
            b"AUTH-RESP-CODE",
            b"STLS",
            b"USER",
            b"SASL PLAIN LOGIN cram-md5 SCRAM-SHA-256",
            b"LOGIN-DELAY 900",
            b"EXPIRE NEVER",
            b"IMPLEMENTATION yubin \x1b[2J",
        ] {
            caps.add_line(line);
        }
        assert!(caps.top && caps.uidl && caps.pipelining && caps.stls && caps.user);
        assert!(caps.has_sasl("CRAM-MD5") && caps.has_sasl("SCRAM-SHA-256"));
        assert_eq!(caps.login_delay, Some(Duration::from_secs(900)));
        assert_eq!(caps.expire_days, None);
        assert_eq!(caps.implementation.as_deref(), Some("yubin \\x1b[2J"));
    }

    #[test]
    fn hostile_mechanism_names_are_dropped() {
        let mut caps = Capabilities::default();
        caps.add_line(b"SASL PLAIN PLAIN X\x01Y AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(caps.sasl, vec!["PLAIN".to_owned()]);
    }
}
