//! DKIM signatures for mail that leaves: the user's submissions and the
//! server's own bounces, signed with the keys of the domain in their
//! From: field (or of its nearest parent with keys) when there are any.
//! The signature covers everything the message carries when it leaves,
//! our own trace and submission fields included.

use std::io::{self, Write};

use yubin_mailauth::dkim::{Keyring, SignError, Signing};
use yubin_smtp_proto::from_field::from_addresses;

/// A message's signature fields, and what made them (for the log).
pub(super) struct Signed {
    /// The DKIM-Signature fields to put on top (LF line ends).
    pub(super) fields: String,
    /// `d=` and `s=` of each signature, as `domain/selector`.
    pub(super) by: Vec<String>,
}

/// Signs the message `write` writes (twice) whose header begins with
/// `head`. `None` when the From: domain has no key (or the From: field
/// cannot be read: then there is nothing to align with). An error only
/// when the message could not be read.
pub(super) fn sign(
    keyring: &Keyring,
    head: &[u8],
    write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<Option<Signed>> {
    if keyring.is_empty() {
        return Ok(None);
    }
    let Some(domain) = from_addresses(head)
        .ok()
        .and_then(|from| from.first().and_then(|m| m.domain_name()))
    else {
        return Ok(None);
    };
    let keys = keyring.for_domain(&domain);
    if keys.is_empty() {
        return Ok(None);
    }
    match Signing::new(keys).sign(write) {
        Ok(fields) => Ok(Some(Signed {
            fields,
            by: keys
                .iter()
                .map(|k| format!("{}/{}", k.domain, k.selector))
                .collect(),
        })),
        Err(SignError::Io(error)) => Err(error),
        // A key the crypto library refuses now, after it loaded: the mail
        // still goes, unsigned, and the administrator hears of it.
        Err(SignError::Dkim(reason)) => {
            tracing::error!(%domain, %reason, "DKIM signing failed; sending unsigned");
            Ok(None)
        }
    }
}
