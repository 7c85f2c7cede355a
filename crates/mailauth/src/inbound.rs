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

use crate::dmarc::{self, Found, Outcome, Policy, Record, Verdict};

/// The longest a whole check may take.
pub const TIME_LIMIT: Duration = Duration::from_secs(30);

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
    /// The DMARC judgement.
    pub dmarc: Verdict,
    /// The From: domain DMARC judged (empty if none).
    pub from_domain: String,
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
                dmarc: Verdict {
                    outcome: Outcome::TempError,
                    apply: Policy::None,
                    published: None,
                },
                from_domain: String::new(),
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
        // RFC 7208 §4.3: a HELO that is not a multi-label domain name (an
        // address literal, a bare word) has no SPF record: "none".
        let helo_is_domain =
            helo.contains('.') && !helo.starts_with('[') && helo.parse::<IpAddr>().is_err();
        let spf_helo = if helo_is_domain {
            self.authenticator
                .verify_spf(SpfParameters::verify_ehlo(ip, helo, host))
                .await
        } else {
            mail_auth::SpfOutput::new(helo.to_owned()).with_result(SpfResult::None)
        };
        // RFC 7208 §2.4: the null sender is checked as postmaster@HELO.
        let spf_mail = if mail_from.is_empty() {
            spf_helo.clone()
        } else {
            self.authenticator
                .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, mail_from))
                .await
        };
        let mut results = AuthenticationResults::new(host);
        let parsed = AuthenticatedMessage::parse(message);
        let from_domains: Vec<String> = parsed
            .as_ref()
            .map(|m| {
                let mut domains: Vec<String> = m
                    .from
                    .iter()
                    .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
                    .collect();
                domains.sort();
                domains.dedup();
                domains
            })
            .unwrap_or_default();
        let from_domain = from_domains.first().cloned().unwrap_or_default();
        let dkim = match &parsed {
            Some(message) => self.authenticator.verify_dkim(message).await,
            None => Vec::new(),
        };
        results = results.with_dkim_results(&dkim, &from_domain);
        if let Some(message) = &parsed
            && !message.as_headers.is_empty()
        {
            let arc = self.authenticator.verify_arc(message).await;
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
        let dmarc = match from_domains.as_slice() {
            // RFC 7489 §6.6.1: one author domain, or no judgement.
            [domain] => match self.policy(domain).await {
                Ok(found) => {
                    let sample = u8::try_from(getrandom::u32().unwrap_or(0) % 100).unwrap_or(0);
                    dmarc::judge(domain, found.as_ref(), spf_pass, &dkim_pass, sample)
                }
                Err(()) => Verdict {
                    outcome: Outcome::TempError,
                    apply: Policy::None,
                    published: None,
                },
            },
            _ => Verdict {
                outcome: Outcome::PermError,
                apply: Policy::None,
                published: None,
            },
        };
        let mut field = format!("Authentication-Results: {results}");
        field.push_str(&format!(";\r\n\tdmarc={}", dmarc.outcome.name()));
        if !from_domain.is_empty() {
            field.push_str(&format!(" header.from={from_domain}"));
        }
        if let Some(policy) = dmarc.published {
            field.push_str(&format!(" policy.dmarc={}", policy.name()));
        }
        field.push_str("\r\n");
        Checked {
            field,
            spf: spf_mail.result(),
            dmarc,
            from_domain,
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

    async fn record(&self, domain: &str) -> Result<Option<Record>, ()> {
        match self
            .authenticator
            .txt_raw_lookup(format!("_dmarc.{domain}."))
            .await
        {
            Ok(text) => Ok(Record::parse(&String::from_utf8_lossy(&text))),
            Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_))) => Ok(None),
            Err(_) => Err(()),
        }
    }
}
