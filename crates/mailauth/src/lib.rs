//! Mail authentication for yubin, built on the maintained `mail-auth`
//! crate: this crate holds what is ours around it (where keys live on
//! disk, which of them signs a message, which header fields are signed,
//! how a key is made and which DNS record publishes it) and leaves the
//! canonicalisation and the cryptography to `mail-auth` and `ring`.
//!
//! - DKIM signing of mail that leaves (RFC 6376, RFC 8463), called from
//!   the server's blocking delivery path.
//! - The judgement of a domain's DNS records for `yubin dns check`
//!   ([`records`]).
//! - Sender authentication of mail that arrives ([`inbound`]: SPF, DKIM
//!   and ARC through `mail-auth`, asynchronous, over its resolver) and the
//!   DMARC rules of RFC 7489 ([`dmarc`], without I/O).
//! - The checks of a client before its mail ([`client`]: forward-confirmed
//!   reverse DNS and DNS blocklists, whose rules are in [`dnsbl`]).

pub mod client;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod inbound;
pub mod records;
