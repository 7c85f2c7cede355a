//! Integration tests: the real binary over real sockets, with real clients.
#![allow(clippy::unwrap_used)]

mod harness;

mod cli;
mod fidelity;
mod login;
mod robustness;
mod session;
mod tls;
