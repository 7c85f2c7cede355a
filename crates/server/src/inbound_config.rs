//! `[inbound]`: sender authentication of mail that arrives on the MX
//! listener (SPF, DKIM, ARC, DMARC) and what a failure gets.

use serde::{Deserialize, Serialize};

use crate::config_error::{ConfigError, invalid};

/// What a message whose domain's DMARC policy says `reject` gets.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DmarcReject {
    /// `550 5.7.1` at the end of DATA: never stored.
    Reject,
    /// Delivered, tagged as `quarantine` is.
    Tag,
}

/// What a message whose SPF check fails (`-all`) gets.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SpfFail {
    /// Delivered with its result in Authentication-Results (forwarded
    /// mail fails SPF; DMARC, with DKIM, is the better judge).
    Tag,
    /// `550 5.7.23` at the end of DATA.
    Reject,
}

/// `[inbound]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// SPF, DKIM, ARC and DMARC on the MX listener, with an
    /// Authentication-Results field added (never for authenticated
    /// submissions or `relay_networks`).
    pub authentication: bool,
    /// The name results are written under; `Authentication-Results`
    /// fields carrying it that arrive from outside are removed. Default:
    /// the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authserv_id: Option<String>,
    /// A DMARC `p=reject` failure: `"reject"` or `"tag"`.
    pub dmarc_reject: DmarcReject,
    /// An SPF `fail`: `"tag"` or `"reject"`.
    pub spf_fail: SpfFail,
    /// What a tagged message's Subject starts with (quarantine: POP3 has
    /// no Junk folder); it also gets `X-Spam-Flag: YES`.
    pub subject_tag: String,
    /// Tagged mail goes to the user's Junk folder, which POP3 does not
    /// serve, instead of the maildrop; a user's `userdb_junk=yes|no`
    /// passwd-file field overrides this.
    pub junk: bool,
    /// The Maildir++ folder tagged mail goes to (`.Junk` in the user's
    /// Maildir).
    pub junk_folder: String,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            authentication: true,
            authserv_id: None,
            dmarc_reject: DmarcReject::Reject,
            spf_fail: SpfFail::Tag,
            subject_tag: "[SPAM]".into(),
            junk: false,
            junk_folder: "Junk".into(),
        }
    }
}

impl InboundConfig {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(id) = &self.authserv_id
            && (id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)))
        {
            return Err(invalid(
                "inbound.authserv_id",
                "must be a host name (letters, digits, '-', '.', '_')",
            ));
        }
        if self.subject_tag.chars().any(char::is_control) {
            return Err(invalid(
                "inbound.subject_tag",
                "must not contain control characters",
            ));
        }
        if self.junk_folder.is_empty()
            || !self
                .junk_folder
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "inbound.junk_folder",
                "must be a folder name of letters, digits, '-' and '_'",
            ));
        }
        Ok(())
    }
}
