//! Sender authentication of mail that arrives on the MX listener: SPF
//! (RFC 7208) for HELO and MAIL FROM, every DKIM signature (RFC 6376, RFC
//! 8463) and the ARC chain (RFC 8617) through `mail-auth`; DMARC (RFC
//! 7489) by [`crate::dmarc`]. The results become one
//! `Authentication-Results` field (RFC 8601) under our authserv-id.
//!
//! DNS trouble gives `temperror`, never a pass, and the whole check is
//! bounded in time, so a slow DNS server cannot hold a session.

use std::net::IpAddr;
use std::time::Duration;

pub use mail_auth::SpfResult;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DkimResult, MessageAuthenticator};

use crate::dmarc::{self, Found, Outcome, Record, Verdict};

/// The longest a whole check may take.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Each part's own budget: the DMARC record (first, so that slow SPF or
/// DKIM lookups cannot push it out), each SPF check, all DKIM and ARC.
const DMARC_BUDGET: Duration = Duration::from_secs(10);
const SPF_BUDGET: Duration = Duration::from_secs(10);
const DKIM_BUDGET: Duration = Duration::from_secs(20);

/// The verifier, with its resolver and our authserv-id.
pub struct Inbound {
    authenticator: MessageAuthenticator,
    authserv_id: String,
    time_limit: Duration,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("authserv_id", &self.authserv_id)
            .finish_non_exhaustive()
    }
}

/// What the checks found about one message.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The `Authentication-Results: …` field, CRLF line ends, folded.
    pub field: String,
    /// The SPF result for MAIL FROM (or HELO, for the null sender).
    pub spf: SpfResult,
    /// The DMARC judgement: the strictest over the From: domains.
    pub dmarc: Verdict,
    /// The From: domain DMARC judged (the first, if several).
    pub from_domain: String,
    /// A check that could have passed did not finish (DNS trouble, a
    /// budget spent): a failure may not be the sender's fault.
    pub unsure: bool,
}

/// The SMTP facts a check needs.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    /// The client's address.
    pub ip: IpAddr,
    /// Its HELO/EHLO name.
    pub helo: &'a str,
    /// The MAIL FROM address (empty for the null sender).
    pub mail_from: &'a str,
}

/// A From: domain as DMARC may use it: lower case, no final dot, a host
/// name of at least two labels (letters, digits, hyphens); `None`
/// otherwise, so nothing else reaches a DNS query or our header field.
fn from_domain(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let valid = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(domain)
}

impl Inbound {
    /// A verifier asking the resolver these settings describe, writing
    /// `authserv_id` in the results.
    pub fn new(
        config: ResolverConfig,
        mut options: ResolverOpts,
        authserv_id: String,
    ) -> Result<Inbound, String> {
        // Each question is short; the whole check is bounded too.
        options.timeout = Duration::from_secs(5);
        options.attempts = 1;
        let authenticator =
            MessageAuthenticator::new(config, options).map_err(|e| e.to_string())?;
        Ok(Inbound {
            authenticator,
            authserv_id,
            time_limit: TIME_LIMIT,
        })
    }

    /// The authserv-id results are written under.
    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    /// Checks `message` (its header and body, as received), within the
    /// time limit; past it, everything is `temperror`.
    pub async fn check(&self, message: &[u8], envelope: Envelope<'_>) -> Checked {
        match tokio::time::timeout(self.time_limit, self.check_all(message, envelope)).await {
            Ok(checked) => checked,
            Err(_) => Checked {
                field: format!(
                    "Authentication-Results: {};\r\n\tspf=temperror (checks timed out);\r\n\tdkim=temperror;\r\n\tdmarc=temperror\r\n",
                    self.authserv_id
                ),
                spf: SpfResult::TempError,
                dmarc: Verdict::without_policy(Outcome::TempError),
                from_domain: String::new(),
                unsure: true,
            },
        }
    }

    async fn check_all(&self, message: &[u8], envelope: Envelope<'_>) -> Checked {
        let Envelope {
            ip,
            helo,
            mail_from,
        } = envelope;
        let host = self.authserv_id.as_str();
        let parsed = AuthenticatedMessage::parse(message);
        // Every author domain (RFC 7489 §6.6.1); one that is not a host
        // name cannot be judged.
        let mut from_domains: Vec<Option<String>> = parsed
            .as_ref()
            .map(|m| m.from.iter().map(|a| from_domain(a)).collect())
            .unwrap_or_default();
        from_domains.sort();
        from_domains.dedup();
        // The policies first, within their own budget.
        let mut policies = Vec::new();
        for domain in from_domains.iter().flatten() {
            let found = tokio::time::timeout(DMARC_BUDGET, self.policy(domain))
                .await
                .unwrap_or(Err(()));
            policies.push((domain.clone(), found));
        }
        // RFC 7208 §4.3: a HELO that is not a multi-label domain name (an
        // address literal, a bare word) has no SPF record: "none".
        let helo_is_domain =
            helo.contains('.') && !helo.starts_with('[') && helo.parse::<IpAddr>().is_err();
        let spf_temperror = |domain: &str| {
            mail_auth::SpfOutput::new(domain.to_owned()).with_result(SpfResult::TempError)
        };
        let spf_helo = if helo_is_domain {
            tokio::time::timeout(
                SPF_BUDGET,
                self.authenticator
                    .verify_spf(SpfParameters::verify_ehlo(ip, helo, host)),
            )
            .await
            .unwrap_or_else(|_| spf_temperror(helo))
        } else {
            mail_auth::SpfOutput::new(helo.to_owned()).with_result(SpfResult::None)
        };
        // RFC 7208 §2.4: the null sender is checked as postmaster@HELO.
        let spf_mail = if mail_from.is_empty() {
            spf_helo.clone()
        } else {
            tokio::time::timeout(
                SPF_BUDGET,
                self.authenticator
                    .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, mail_from)),
            )
            .await
            .unwrap_or_else(|_| spf_temperror(mail_from))
        };
        let first_domain = from_domains
            .iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_default();
        let (dkim, dkim_finished) = match &parsed {
            Some(message) => {
                match tokio::time::timeout(DKIM_BUDGET, self.authenticator.verify_dkim(message))
                    .await
                {
                    Ok(dkim) => (dkim, true),
                    Err(_) => (Vec::new(), false),
                }
            }
            None => (Vec::new(), true),
        };
        let mut results = AuthenticationResults::new(host);
        let mut dkim_clause = String::new();
        if dkim.is_empty() {
            dkim_clause = if dkim_finished {
                ";\r\n\tdkim=none".to_owned()
            } else {
                ";\r\n\tdkim=temperror (timed out)".to_owned()
            };
        } else {
            results = results.with_dkim_results(&dkim, &first_domain);
        }
        if let Some(message) = &parsed
            && !message.as_headers.is_empty()
            && let Ok(arc) =
                tokio::time::timeout(DKIM_BUDGET, self.authenticator.verify_arc(message)).await
        {
            results = results.with_arc_result(&arc, ip);
        }
        results = results.with_spf_ehlo_result(&spf_helo, ip, helo);
        if !mail_from.is_empty() {
            results = results.with_spf_mailfrom_result(&spf_mail, ip, mail_from, helo);
        }
        let dkim_pass: Vec<&str> = dkim
            .iter()
            .filter(|o| *o.result() == DkimResult::Pass)
            .filter_map(|o| o.signature().map(|s| s.d.as_str()))
            .collect();
        let spf_domain = if mail_from.is_empty() {
            helo
        } else {
            mail_from.rsplit_once('@').map_or(helo, |(_, d)| d)
        };
        let spf_pass = (spf_mail.result() == SpfResult::Pass).then_some(spf_domain);
        let unsure = !dkim_finished
            || matches!(spf_mail.result(), SpfResult::TempError)
            || dkim
                .iter()
                .any(|o| matches!(o.result(), DkimResult::TempError(_)));
        let mut field = format!("Authentication-Results: {results}{dkim_clause}");
        let mut verdicts = Vec::new();
        if from_domains.is_empty() || from_domains.iter().any(Option::is_none) {
            // No From:, or an author domain that is no host name.
            field.push_str(";\r\n\tdmarc=permerror");
            verdicts.push(Verdict::without_policy(Outcome::PermError));
        }
        for (domain, found) in &policies {
            let verdict = match found {
                Ok(found) => {
                    let sample = u8::try_from(getrandom::u32().unwrap_or(0) % 100).unwrap_or(0);
                    dmarc::judge(domain, found.as_ref(), spf_pass, &dkim_pass, sample)
                }
                Err(()) => Verdict::without_policy(Outcome::TempError),
            };
            field.push_str(&format!(
                ";\r\n\tdmarc={} header.from={domain}",
                verdict.outcome.name()
            ));
            if let Some(policy) = verdict.published {
                field.push_str(&format!(" policy.dmarc={}", policy.name()));
            }
            verdicts.push(verdict);
        }
        field.push_str("\r\n");
        Checked {
            field,
            spf: spf_mail.result(),
            dmarc: strictest(verdicts),
            from_domain: first_domain,
            unsure,
        }
    }

    /// The DMARC record for `domain`: its own, else its organisational
    /// domain's (RFC 7489 §6.6.3). `Err` on DNS trouble.
    async fn policy(&self, domain: &str) -> Result<Option<Found>, ()> {
        if let Some(record) = self.record(domain).await? {
            return Ok(Some(Found {
                record,
                inherited: false,
            }));
        }
        let organizational = dmarc::organizational_domain(domain);
        if organizational == domain {
            return Ok(None);
        }
        Ok(self.record(&organizational).await?.map(|record| Found {
            record,
            inherited: true,
        }))
    }

    /// `_dmarc.DOMAIN`: of its TXT records, those that start with
    /// `v=DMARC1`; exactly one must, or there is no policy (RFC 7489
    /// §6.6.3). `Err` on DNS trouble.
    async fn record(&self, domain: &str) -> Result<Option<Record>, ()> {
        use mail_auth::hickory_resolver::net::{DnsError, NetError};
        use mail_auth::hickory_resolver::proto::rr::RData;
        let lookup = self
            .authenticator
            .resolver()
            .txt_lookup(format!("_dmarc.{domain}."))
            .await;
        let found = match lookup {
            Ok(found) => found,
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => return Ok(None),
            Err(_) => return Err(()),
        };
        let texts: Vec<String> = found
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .filter(|text| {
                text.split(';')
                    .next()
                    .is_some_and(|v| v.trim().replace(' ', "") == "v=DMARC1")
            })
            .collect();
        match texts.as_slice() {
            [one] => Ok(Record::parse(one)),
            _ => Ok(None),
        }
    }
}

/// The strictest of several verdicts (RFC 7489 §6.6.1: each author domain
/// is judged; the strictest policy applies).
fn strictest(verdicts: Vec<Verdict>) -> Verdict {
    let rank = |v: &Verdict| {
        let outcome = match v.outcome {
            Outcome::Fail => 4,
            Outcome::TempError => 3,
            Outcome::PermError => 2,
            Outcome::None => 1,
            Outcome::Pass => 0,
        };
        (v.apply, outcome)
    };
    verdicts
        .into_iter()
        .max_by_key(rank)
        .unwrap_or(Verdict::without_policy(Outcome::None))
}
