//! DMARC (RFC 7489) for mail that arrives, without I/O: the policy record,
//! the organisational domain from the Public Suffix List (the `psl` crate,
//! list built in), identifier alignment of the SPF and DKIM results, and
//! the policy to apply, `pct` included.
//!
//! `mail-auth` 0.13 evaluates DMARC as its successor draft does (a DNS
//! tree walk instead of the list, `t=` instead of `pct`); mail in the wild
//! is published for RFC 7489, so this module keeps its rules, and uses
//! `mail-auth` for what it verifies well: SPF and DKIM.

/// What a domain asks receivers to do with mail that fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    /// Nothing: deliver (the domain only wants reports).
    None,
    /// Treat as suspicious (for us: tag it, since POP3 has no Junk folder).
    Quarantine,
    /// Refuse it.
    Reject,
}

impl Policy {
    /// Its name in the record and in Authentication-Results.
    pub fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    /// The next less intensive policy (RFC 7489 §6.6.4, for mail `pct`
    /// leaves out).
    fn weaker(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            Policy::Quarantine | Policy::None => Policy::None,
        }
    }

    fn parse(value: &str) -> Option<Policy> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }
}

/// How closely an authenticated domain must match the From: domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// The same organisational domain (the default).
    Relaxed,
    /// The very same domain.
    Strict,
}

/// A `_dmarc` TXT record (RFC 7489 §6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `p`: for the domain itself.
    pub policy: Policy,
    /// `sp`: for its subdomains (default: `p`).
    pub subdomain_policy: Policy,
    /// `adkim`.
    pub dkim_alignment: Alignment,
    /// `aspf`.
    pub spf_alignment: Alignment,
    /// `pct`: the share of failing mail the policy applies to, 0 to 100.
    pub percent: u8,
}

impl Record {
    /// Reads a record; `None` if it is not a DMARC record a receiver may
    /// use (RFC 7489 §6.6.3: `v=DMARC1` first; a missing or invalid `p`
    /// makes it `p=none` when `rua` names a report address, and no record
    /// otherwise).
    pub fn parse(text: &str) -> Option<Record> {
        let mut tags = text.split(';').map(|tag| {
            let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
            (key.trim().to_ascii_lowercase(), value.trim())
        });
        match tags.next() {
            Some((key, value)) if key == "v" && value == "DMARC1" => {}
            _ => return None,
        }
        let mut policy = None;
        let mut subdomain_policy = None;
        let mut subdomain_invalid = false;
        let mut dkim_alignment = Alignment::Relaxed;
        let mut spf_alignment = Alignment::Relaxed;
        let mut percent = 100;
        let mut reports = false;
        let alignment = |value: &str, default| match value.to_ascii_lowercase().as_str() {
            "s" => Alignment::Strict,
            "r" => Alignment::Relaxed,
            _ => default,
        };
        for (key, value) in tags {
            match key.as_str() {
                "p" => policy = Policy::parse(value),
                "sp" => {
                    subdomain_policy = Policy::parse(value);
                    subdomain_invalid = subdomain_policy.is_none();
                }
                "adkim" => dkim_alignment = alignment(value, Alignment::Relaxed),
                "aspf" => spf_alignment = alignment(value, Alignment::Relaxed),
                // An invalid pct is ignored (the default, 100, applies).
                "pct" => {
                    if let Ok(value) = value.parse::<u8>()
                        && value <= 100
                    {
                        percent = value;
                    }
                }
                "rua" => reports = value.split(',').any(|uri| uri.trim().contains(':')),
                _ => {}
            }
        }
        let policy = match policy {
            Some(policy) if !subdomain_invalid => policy,
            _ if reports => {
                return Some(Record {
                    policy: Policy::None,
                    subdomain_policy: Policy::None,
                    dkim_alignment,
                    spf_alignment,
                    percent,
                });
            }
            _ => return None,
        };
        Some(Record {
            policy,
            subdomain_policy: subdomain_policy.unwrap_or(policy),
            dkim_alignment,
            spf_alignment,
            percent,
        })
    }
}

/// The organisational domain of `domain` (RFC 7489 §3.2): its registrable
/// domain by the Public Suffix List, or the domain itself when the list
/// knows no suffix of it.
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&domain) {
        Some(registrable) => registrable.to_owned(),
        None => domain,
    }
}

/// Whether an authenticated domain is aligned with the From: domain.
pub fn aligned(authenticated: &str, from: &str, mode: Alignment) -> bool {
    let authenticated = authenticated.trim_end_matches('.').to_ascii_lowercase();
    let from = from.trim_end_matches('.').to_ascii_lowercase();
    match mode {
        Alignment::Strict => authenticated == from,
        Alignment::Relaxed => organizational_domain(&authenticated) == organizational_domain(&from),
    }
}

/// The DMARC result (RFC 7489 §11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An aligned SPF or DKIM pass.
    Pass,
    /// A policy, and no aligned pass.
    Fail,
    /// No policy published.
    None,
    /// The policy could not be looked up (DNS trouble): nothing applied.
    TempError,
    /// The From: field has no single domain to judge.
    PermError,
}

impl Outcome {
    /// Its name in Authentication-Results.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }
}

/// Where a policy was found: at the From: domain itself, or at its
/// organisational domain (then `sp` applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The record.
    pub record: Record,
    /// Found at the organisational domain, the From: domain being below it.
    pub inherited: bool,
}

/// The judgement of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The result.
    pub outcome: Outcome,
    /// The policy to apply now (`None` unless the result is a fail).
    pub apply: Policy,
    /// The policy the domain publishes, if any (for the log and the
    /// Authentication-Results field).
    pub published: Option<Policy>,
}

impl Verdict {
    /// A result that applies no policy (none, temperror, permerror).
    pub fn without_policy(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            apply: Policy::None,
            published: None,
        }
    }
}

/// Judges a message from `from_domain` (the RFC 5322 From: domain).
/// `spf_pass` is the MAIL FROM (or HELO) domain SPF passed for, if it
/// passed; `dkim_pass` the `d=` domains of the signatures that verified.
/// `sample` is a uniform draw from 0 to 99, compared with `pct`.
pub fn judge(
    from_domain: &str,
    found: Option<&Found>,
    spf_pass: Option<&str>,
    dkim_pass: &[&str],
    sample: u8,
) -> Verdict {
    let Some(found) = found else {
        return Verdict::without_policy(Outcome::None);
    };
    let record = &found.record;
    let published = if found.inherited {
        record.subdomain_policy
    } else {
        record.policy
    };
    let spf_aligned =
        spf_pass.is_some_and(|domain| aligned(domain, from_domain, record.spf_alignment));
    let dkim_aligned = dkim_pass
        .iter()
        .any(|domain| aligned(domain, from_domain, record.dkim_alignment));
    if spf_aligned || dkim_aligned {
        return Verdict {
            outcome: Outcome::Pass,
            apply: Policy::None,
            published: Some(published),
        };
    }
    let apply = if sample < record.percent {
        published
    } else {
        published.weaker()
    };
    Verdict {
        outcome: Outcome::Fail,
        apply,
        published: Some(published),
    }
}

#[cfg(test)]
mod tests;
