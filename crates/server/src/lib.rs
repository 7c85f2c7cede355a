//! The tokio side of yubin: configuration, TLS, listeners and the POP3
//! driver that carries out what `yubin-pop3-proto` asks for.
//!
//! Blocking work (password hashing, Maildir I/O) runs on tokio's blocking
//! pool, never on the async threads.
//!
//! - [`config`]: the TOML file, defaults and validation.
//! - [`tls`]: rustls configuration, self-signed default.
//! - [`backend`]: the seams where a second storage backend plugs in
//!   (users, maildrops, grants, penalties), with today's implementations.
//! - [`userstore`]: the passwd-file, reloaded on change.
//! - [`pop3`]: POP3 listeners and per-connection drivers.
//! - [`smtp`]: SMTP listeners, drivers, local delivery and queueing.
//! - [`relay`]: local recipients, aliases, the relay policy.
//! - [`sender_logins`]: extra addresses users may send as.
//! - [`deliver`]: `yubin deliver`, local delivery for another MTA.
//! - [`policy`]: the Postfix policy service for POP before SMTP.
//! - [`server`]: start and shutdown.
//! - [`first_run`]: the demo account of the embedded default.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod accept;
pub mod backend;
pub mod config;
mod config_error;
mod filter;
pub mod filter_config;
pub mod first_run;
mod header_edit;
pub mod inbound_config;
pub mod lda;
mod login;
pub mod login_guard;
mod logtext;
pub mod mailbox;
mod peer;
mod per_ip;
pub mod policy;
pub mod pop3;
pub mod privileges;
pub mod queue_config;
pub mod relay;
mod secret;
pub mod sender_logins;
pub mod server;
pub mod smtp;
mod spool;
mod stream;
pub mod tls;
pub mod userstore;

pub use config::Config;

/// A mutex whose holder panicked still guards consistent data here (every
/// critical section is a single insert, remove or lookup): use it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub use server::Server;
