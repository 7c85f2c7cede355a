//! The tokio side of yubin: configuration, TLS, listeners and the POP3
//! driver that carries out what `yubin-pop3-proto` asks for.
//!
//! Blocking work (password hashing, Maildir I/O) runs on tokio's blocking
//! pool, never on the async threads.
//!
//! - [`config`]: the TOML file, defaults and validation.
//! - [`tls`]: rustls configuration, self-signed default.
//! - [`userstore`]: the passwd-file, reloaded on change.
//! - [`pop3`]: listeners and per-connection drivers.
//! - [`server`]: start and shutdown.
//! - [`first_run`]: the demo account of the embedded default.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod duration;
pub mod first_run;
mod logtext;
pub mod pop3;
pub mod server;
mod stream;
pub mod tls;
pub mod userstore;

pub use config::Config;
pub use server::Server;
