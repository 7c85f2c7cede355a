//! The numbers both sides agree on in option negotiation (`mfdef.h`).

/// The protocol version we speak.
pub(crate) const VERSION: u32 = 6;
/// The oldest filter version we talk to (version 2 is libmilter 8.12's).
pub(crate) const OLDEST_VERSION: u32 = 2;

/// SMFIF_*: what a filter may do at end of message.
pub(crate) mod action {
    /// Add header fields (`h`, `i`).
    pub const ADD_HEADERS: u32 = 0x01;
    /// Change or delete header fields (`m`).
    pub const CHANGE_HEADERS: u32 = 0x10;
    /// Quarantine the message (`q`).
    pub const QUARANTINE: u32 = 0x20;
    /// Everything, as Postfix offers (0x1FF, up to asking for other
    /// macros, whose lists we read past: every filter gets the same set):
    /// filters such as rspamd's
    /// proxy ask for every action whatever they will do. Changing the
    /// body, the sender or the recipients is accepted in negotiation and
    /// not done when asked for (the outcome says so).
    pub const OFFERED: u32 = 0x1FF;
}

/// SMFIP_*: steps a filter does not want, or will not answer (`NO_*`:
/// not sent; `NR_*`: sent, not answered).
pub(crate) mod step {
    pub const NO_CONNECT: u32 = 0x01;
    pub const NO_HELO: u32 = 0x02;
    pub const NO_MAIL: u32 = 0x04;
    pub const NO_RCPT: u32 = 0x08;
    pub const NO_BODY: u32 = 0x10;
    pub const NO_HEADERS: u32 = 0x20;
    pub const NO_EOH: u32 = 0x40;
    pub const NR_HEADER: u32 = 0x80;
    pub const NO_UNKNOWN: u32 = 0x100;
    pub const NO_DATA: u32 = 0x200;
    /// The filter may answer a body chunk with "skip the rest".
    pub const SKIP: u32 = 0x400;
    /// The filter wants rejected recipients too (we send none: a rejected
    /// recipient never reaches end of data).
    pub const RCPT_REJECTED: u32 = 0x800;
    pub const NR_CONNECT: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x1_0000;
    pub const NR_UNKNOWN: u32 = 0x2_0000;
    pub const NR_EOH: u32 = 0x4_0000;
    pub const NR_BODY: u32 = 0x8_0000;
    /// Header values are sent, and come back, with their leading space.
    pub const HEADER_LEADING_SPACE: u32 = 0x10_0000;
    /// Everything we offer: all of the above, as Postfix does (0x1F_FFFF).
    pub const OFFERED: u32 = NO_CONNECT
        | NO_HELO
        | NO_MAIL
        | NO_RCPT
        | NO_BODY
        | NO_HEADERS
        | NO_EOH
        | NR_HEADER
        | NO_UNKNOWN
        | NO_DATA
        | SKIP
        | RCPT_REJECTED
        | NR_CONNECT
        | NR_HELO
        | NR_MAIL
        | NR_RCPT
        | NR_DATA
        | NR_UNKNOWN
        | NR_EOH
        | NR_BODY
        | HEADER_LEADING_SPACE;
}

// Postfix offers the same steps (its `my_events=0x1fffff`).
const _: () = assert!(step::OFFERED == 0x1F_FFFF);
