//! Users and authentication: Dovecot's passwd-file, Dovecot's password
//! schemes, APOP and the SASL mechanisms, server side (and the client's
//! side of them, for `yubin fetch`).
//!
//! Blocking and CPU-bound (password hashing): the server calls into this
//! crate off its async threads. No I/O except reading and atomically
//! rewriting the passwd-file.
//!
//! - [`passwd`]: the file format, read and rewritten with comments kept.
//! - [`scheme`]: `{SCHEME}data` parsing, verification and hashing.
//! - [`users`]: the lookup table a server authenticates against (incl. APOP).
//! - [`sasl`]: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256.
//! - [`grants`]: POP-before-SMTP relay grants.
//! - [`client`]: the client's side: APOP, CRAM-MD5, PLAIN, SCRAM.
//! - [`penalty`]: growing delays after failed logins, per client address.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod authenticated;
pub mod client;
mod client_key;
pub use client_key::{CLIENT_IPV6_PREFIX, ClientKey};
pub mod grants;
mod md5_context;
mod md5_crypt;
pub mod passwd;
pub mod penalty;
pub mod random;
pub mod sasl;
pub mod scheme;
pub mod scram;
pub mod users;

pub use authenticated::Authenticated;
pub use grants::RelayGrants;
pub use md5_context::HmacMd5Contexts;
pub use passwd::{PasswdFile, UserEntry, check_domain, check_user_name};
pub use penalty::LoginPenalties;
pub use scheme::{Scheme, SchemeError, StoredPassword};
pub use users::{User, Users};
