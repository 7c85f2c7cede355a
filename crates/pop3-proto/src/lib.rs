//! POP3 on bytes: commands, replies, byte-stuffing and the server session.
//!
//! This crate does no I/O and reads no clock: bytes go in, bytes and
//! [`Action`]s come out, and whoever owns the socket carries the actions out
//! (see [`server`]). That keeps every RFC rule testable in memory and the
//! session fuzzable.
//!
//! - [`line`]: splitting input into command lines, with a length limit.
//! - [`command`]: parsing a line into a [`Command`].
//! - [`msgnum`]: strict message numbers.
//! - [`stuffing`]: stored message → RETR/TOP body ([`Encoder`]) and its size ([`WireSize`]).
//! - [`header`]: the header check behind RFC 6856's `[UTF8]`.
//! - [`downgrade`]: RFC 6858's surrogate header for clients without UTF-8 mode.
//! - [`server`]: the session state machine.
//! - [`client`]: the client's half of a connection, for `yubin fetch` and others.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod command;
pub mod downgrade;
pub mod header;
pub mod msgnum;
mod reply;
pub mod server;
pub use yubin_line::stuffing;

pub use command::Command;
pub use msgnum::MsgNum;
pub use reply::Code;
pub use server::{
    Action, Expire, MessageError, MessageList, Offer, Poll, Refusal, Session, SessionConfig, Stats,
};
pub use stuffing::{Encoder, WireSize};
pub use yubin_line as line;
