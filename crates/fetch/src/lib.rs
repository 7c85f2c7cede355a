//! `yubin fetch`: a POP3 client that moves mail off any server into a
//! local mailbox, or leaves it there, and never loses a message.
//!
//! - [`client`]: the async POP3 client (TLS, STLS, APOP and SASL), usable
//!   on its own; the protocol itself is `yubin_pop3_proto::client`.
//! - [`tls`]: certificate trust (system roots or a pinned fingerprint),
//!   from yubin-client-tls, which the delivery engine shares.
//! - [`ledger`]: which messages have been fetched, crash-safe.
//! - [`deliver`]: Maildir, mbox and MDA destinations.
//! - [`account`]: an account and its policy (delete, keep, keep N days).
//! - [`plan`]: what happens to each message (fetch, keep, DELE, skip,
//!   headers only, forget), decided without I/O.
//! - [`run`]: one run of one account, in the order that loses nothing.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod account;
pub mod client;
pub mod config;
pub mod deliver;
mod failpoint;
pub mod ledger;
pub mod plan;
pub mod run;
pub use yubin_client_tls as tls;

pub use account::{Account, Oversize, PasswordSource, Policy, Retention};
pub use client::{AuthMethod, ClientError, Pop3Client, ServerOptions, TlsMode};
pub use run::{FetchError, NoProgress, Progress, Report, RunOptions, fetch};
