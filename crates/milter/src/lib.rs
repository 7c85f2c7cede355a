//! The MTA side of the Sendmail milter protocol, version 6, as Postfix
//! speaks it, with no I/O: a [`Conversation`] says what to write to a
//! filter and when to read, and turns the filter's answers into an
//! [`Outcome`] (a verdict and the header edits it asked for). The caller
//! owns the socket and the clock, so this can be tested and fuzzed
//! without either.
//!
//! The protocol has no RFC. The facts here come from Sendmail's
//! `mfdef.h`, its libmilter documentation and Postfix's `MILTER_README`:
//! every packet is a 32-bit big-endian length, one command byte and its
//! data; strings end in NUL.

mod conversation;
mod flags;
mod header;
mod packet;

pub use conversation::{
    Conversation, Error, HeaderEdit, Next, Outcome, Reply, Transaction, Verdict,
};
pub use packet::{Decoder, MAX_PACKET, Packet};
