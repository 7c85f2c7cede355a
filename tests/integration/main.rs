//! Integration tests: the real binary over real sockets, with real clients.
#![allow(clippy::unwrap_used)]

mod harness;

mod cli;
mod client_checks;
mod corpus;
mod dane;
mod dkim;
mod dns;
mod durability;
mod fetch;
mod fidelity;
mod filters;
mod inbound;
mod login;
mod mta_sts;
mod outbound;
mod postgres;
mod postgres_kills;
mod postgres_queue;
mod privileges;
mod proxy;
mod relay;
mod robustness;
mod session;
mod smtp;
mod test_ca;
mod tls;
mod tls_rpt;
