//! SMTP on bytes: commands, addresses, replies, the DATA and BDAT receivers
//! and the server and client sessions.
//!
//! No I/O and no clock: bytes go in, bytes and [`Action`]s come out, and
//! whoever owns the socket carries the actions out (see [`server`]).
//!
//! - [`address`]: paths and mailboxes (RFC 5321 §4.1.2).
//! - [`client`]: the client session, for the delivery engine.
//! - [`command`]: parsing a command line.
//! - [`data`]: DATA (dot-terminated, smuggling-proof) and BDAT content.
//! - [`from_field`]: the addresses of a message's `From:` field.
//! - [`hops`]: counting `Received:` fields (mail loops).
//! - [`reply`]: replies with enhanced status codes.
//! - [`server`]: the session state machine.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod from_field;
pub mod hops;
pub mod reply;
pub mod server;

pub use address::{Domain, ForwardPath, Mailbox};
pub use command::{Body, MailParams};
pub use reply::{Reply, replies};
pub use server::{Action, Envelope, Offer, Poll, Recipient, Session, SessionConfig};
