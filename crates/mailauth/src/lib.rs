//! Mail authentication for yubin, built on the maintained `mail-auth`
//! crate: this crate holds what is ours around it (where keys live on
//! disk, which of them signs a message, which header fields are signed,
//! how a key is made and which DNS record publishes it) and leaves the
//! canonicalisation and the cryptography to `mail-auth` and `ring`.
//!
//! Today: DKIM signing of mail that leaves (RFC 6376, RFC 8463), and the
//! judgement of a domain's DNS records for `yubin dns check`
//! ([`records`]). Next: SPF, DKIM, DMARC and ARC verification of mail that
//! arrives.
//!
//! No async and no sockets here; the server calls the signer from its
//! blocking delivery path.

pub mod dkim;
pub mod dmarc;
pub mod records;
