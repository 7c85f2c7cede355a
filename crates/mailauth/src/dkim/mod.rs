//! DKIM signing: keys ([`key`]), the set of keys a server signs with
//! ([`keyring`]), signing one message ([`sign`]) and making a new key with
//! the TXT record to publish ([`keygen`]).

pub mod key;
pub mod keygen;
pub mod keyring;
pub mod sign;

pub use key::{Algorithm, Key, KeyError};
pub use keygen::RSA_BITS;
pub use keygen::{Generated, KeygenError, generate};
pub use keyring::{Keyring, KeyringError, Override};
pub use sign::{SignError, Signing};

/// The DNS name of a selector's key record (RFC 6376 §3.6.2.1).
pub fn record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}
