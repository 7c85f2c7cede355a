//! `[inbound]`: sender authentication of mail that arrives on the MX
//! listener (SPF, DKIM, ARC, DMARC) and what a failure gets.

use serde::{Deserialize, Serialize};

use crate::config_error::{ConfigError, invalid, is_word};
use yubin_duration::HumanDuration;

/// What one of the checks before DATA does when a client fails it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum CheckAction {
    /// `"off"`, `"tag"` or `"reject"`.
    Named(CheckWord),
    /// A score: failures add up, and the total meets `tag_score` or
    /// `reject_score`.
    Score(f64),
}

/// The named actions.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckWord {
    /// Not checked.
    Off,
    /// Checked; a failure is logged and the message tagged as spam.
    Tag,
    /// Checked; a failure refuses the recipient.
    Reject,
}

impl CheckAction {
    /// Whether the check runs at all.
    pub fn is_on(self) -> bool {
        self != CheckAction::Named(CheckWord::Off)
    }
}

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

/// `[inbound.domains."example.org"]`: what one of our domains wants
/// instead of the defaults above it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DomainPolicy {
    /// Its `dmarc_reject`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dmarc_reject: Option<DmarcReject>,
    /// Its `spf_fail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spf_fail: Option<SpfFail>,
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
    /// A client whose address has no name that points back to it
    /// (forward-confirmed reverse DNS).
    pub fcrdns: CheckAction,
    /// A HELO name that is not a fully qualified domain name or an
    /// address literal, is a bare address, names this server, or is a
    /// literal of another address.
    pub helo: CheckAction,
    /// DNS blocklist zones, Postfix's syntax:
    /// `"zen.spamhaus.org=127.0.0.[2..11]"`.
    pub dnsbl: Vec<String>,
    /// What a listing in any of `dnsbl` does.
    pub dnsbl_action: CheckAction,
    /// Scores that add up to this tag the message.
    pub tag_score: f64,
    /// Scores that add up to this refuse the recipient.
    pub reject_score: f64,
    /// Greylisting: a first attempt from a (client network, sender,
    /// recipient) triplet is answered 451 and a retry after
    /// `greylist_delay` passes.
    pub greylisting: bool,
    /// How long a greylisted sender must wait.
    pub greylist_delay: HumanDuration,
    /// Per recipient domain: `dmarc_reject` and `spf_fail` of its own.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub domains: std::collections::BTreeMap<String, DomainPolicy>,
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
            fcrdns: CheckAction::Named(CheckWord::Off),
            helo: CheckAction::Named(CheckWord::Off),
            dnsbl: Vec::new(),
            dnsbl_action: CheckAction::Named(CheckWord::Reject),
            tag_score: 5.0,
            reject_score: 10.0,
            greylisting: false,
            greylist_delay: HumanDuration(std::time::Duration::from_secs(300)),
            domains: std::collections::BTreeMap::new(),
        }
    }
}

impl InboundConfig {
    /// What a message to recipients in `domains` gets: each domain's own
    /// policy or the default, and where they differ the strict one. One
    /// reply answers the whole message, and a spoofer must not get past a
    /// domain that refuses by adding a recipient where mail is only
    /// tagged.
    pub fn policy_for<'a>(
        &self,
        domains: impl IntoIterator<Item = &'a str>,
    ) -> (DmarcReject, SpfFail) {
        let mut dmarc_reject = DmarcReject::Tag;
        let mut spf_fail = SpfFail::Tag;
        let mut any = false;
        for domain in domains {
            any = true;
            let own = self.domains.get(&domain.to_ascii_lowercase());
            if own
                .and_then(|p| p.dmarc_reject)
                .unwrap_or(self.dmarc_reject)
                == DmarcReject::Reject
            {
                dmarc_reject = DmarcReject::Reject;
            }
            if own.and_then(|p| p.spf_fail).unwrap_or(self.spf_fail) == SpfFail::Reject {
                spf_fail = SpfFail::Reject;
            }
        }
        if any {
            (dmarc_reject, spf_fail)
        } else {
            (self.dmarc_reject, self.spf_fail)
        }
    }

    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(id) = &self.authserv_id
            && !is_word(id, b"-._")
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
        for domain in self.domains.keys() {
            let valid = !domain.is_empty()
                && *domain == domain.to_ascii_lowercase()
                && domain.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(invalid(
                    format!("inbound.domains.{domain:?}"),
                    "is not a domain name in lower case",
                ));
            }
        }
        for (i, zone) in self.dnsbl.iter().enumerate() {
            yubin_mailauth::dnsbl::Zone::parse(zone)
                .map_err(|e| invalid(format!("inbound.dnsbl[{i}]"), e))?;
        }
        for (key, action) in [
            ("inbound.fcrdns", self.fcrdns),
            ("inbound.helo", self.helo),
            ("inbound.dnsbl_action", self.dnsbl_action),
        ] {
            if let CheckAction::Score(score) = action
                && !(score.is_finite() && score >= 0.0)
            {
                return Err(invalid(key, "a score must be a number of zero or more"));
            }
        }
        if !(self.tag_score.is_finite() && self.tag_score > 0.0) {
            return Err(invalid("inbound.tag_score", "must be a positive number"));
        }
        if !(self.reject_score.is_finite() && self.reject_score > 0.0) {
            return Err(invalid("inbound.reject_score", "must be a positive number"));
        }
        if self.greylist_delay.0.is_zero()
            || self.greylist_delay.0 > std::time::Duration::from_secs(3600)
        {
            return Err(invalid(
                "inbound.greylist_delay",
                "must be more than zero and at most an hour (senders retry within minutes)",
            ));
        }
        if !is_word(&self.junk_folder, b"-_") {
            return Err(invalid(
                "inbound.junk_folder",
                "must be a folder name of letters, digits, '-' and '_'",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_domain_its_own_policy_and_the_strict_one_for_a_mix() {
        let mut config = InboundConfig::default();
        config.domains.insert(
            "lenient.test".into(),
            DomainPolicy {
                dmarc_reject: Some(DmarcReject::Tag),
                spf_fail: None,
            },
        );
        config.domains.insert(
            "strict.test".into(),
            DomainPolicy {
                dmarc_reject: None,
                spf_fail: Some(SpfFail::Reject),
            },
        );
        assert_eq!(
            config.policy_for(["plain.test"]),
            (DmarcReject::Reject, SpfFail::Tag)
        );
        assert_eq!(
            config.policy_for(["Lenient.Test"]),
            (DmarcReject::Tag, SpfFail::Tag)
        );
        assert_eq!(
            config.policy_for(["strict.test"]),
            (DmarcReject::Reject, SpfFail::Reject)
        );
        assert_eq!(
            config.policy_for(["strict.test", "lenient.test"]),
            (DmarcReject::Reject, SpfFail::Reject)
        );
        assert_eq!(config.policy_for([]), (DmarcReject::Reject, SpfFail::Tag));
    }
}
