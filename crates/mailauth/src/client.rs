//! Checks of the client itself, before its mail: forward-confirmed
//! reverse DNS (the `iprev` method of RFC 8601 §3) and DNS blocklists
//! (RFC 5782). Each question is bounded in time; DNS trouble is said as
//! such, never as a pass or a listing.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::net::{DnsError, NetError};

use crate::dnsbl::{Answer, Zone};

/// The longest one check (all its questions) may take.
const BUDGET: Duration = Duration::from_secs(10);
/// The most PTR names followed (RFC 8601 §3 leaves it to us; Postfix and
/// SPF's `ptr` use 10).
const MAX_NAMES: usize = 10;

/// Forward-confirmed reverse DNS of a client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fcrdns {
    /// A PTR name whose A or AAAA records include the address.
    Pass(String),
    /// No PTR name, or none that points back.
    Fail,
    /// A DNS failure or time-out before an answer either way.
    TempError,
}

/// The resolver the checks ask.
pub struct ClientChecks {
    resolver: TokioResolver,
}

impl ClientChecks {
    /// Checks asking the resolver these settings describe.
    pub fn new(config: ResolverConfig, mut options: ResolverOpts) -> Result<ClientChecks, String> {
        options.timeout = Duration::from_secs(5);
        options.attempts = 1;
        let authenticator =
            MessageAuthenticator::new(config, options).map_err(|e| e.to_string())?;
        Ok(ClientChecks {
            resolver: authenticator.resolver().clone(),
        })
    }

    /// Whether `ip` has a name that points back to it.
    pub async fn fcrdns(&self, ip: IpAddr) -> Fcrdns {
        tokio::time::timeout(BUDGET, self.fcrdns_unbounded(ip))
            .await
            .unwrap_or(Fcrdns::TempError)
    }

    async fn fcrdns_unbounded(&self, ip: IpAddr) -> Fcrdns {
        let names: Vec<String> = match self.resolver.reverse_lookup(ip).await {
            Ok(found) => found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    mail_auth::hickory_resolver::proto::rr::RData::PTR(ptr) => Some(ptr.to_ascii()),
                    _ => None,
                })
                .take(MAX_NAMES)
                .collect(),
            Err(e) if not_found(&e) => return Fcrdns::Fail,
            Err(_) => return Fcrdns::TempError,
        };
        let mut trouble = false;
        for name in names {
            let addresses: Result<Vec<IpAddr>, NetError> = match ip {
                IpAddr::V4(_) => self
                    .resolver
                    .ipv4_lookup(name.as_str())
                    .await
                    .map(|l| addresses_in(&l)),
                IpAddr::V6(_) => self
                    .resolver
                    .ipv6_lookup(name.as_str())
                    .await
                    .map(|l| addresses_in(&l)),
            };
            match addresses {
                Ok(found) if found.contains(&ip) => {
                    return Fcrdns::Pass(name.trim_end_matches('.').to_ascii_lowercase());
                }
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(_) => trouble = true,
            }
        }
        if trouble {
            Fcrdns::TempError
        } else {
            Fcrdns::Fail
        }
    }

    /// What `zone` says about `ip`; `Err` on DNS trouble (a zone that does
    /// not answer lists nobody: the caller logs it and goes on).
    pub async fn dnsbl(&self, ip: IpAddr, zone: &Zone) -> Result<Answer, String> {
        let name = zone.query_name(ip);
        let lookup = tokio::time::timeout(BUDGET, self.resolver.ipv4_lookup(name.as_str())).await;
        match lookup {
            Err(_) => Err(format!("{}: no answer in time", zone.name)),
            Ok(Ok(found)) => {
                let answers: Vec<std::net::Ipv4Addr> = addresses_in(&found)
                    .into_iter()
                    .filter_map(|a| match a {
                        IpAddr::V4(v4) => Some(v4),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                Ok(zone.judge(&answers))
            }
            Ok(Err(e)) if not_found(&e) => Ok(Answer::NotListed),
            Ok(Err(e)) => Err(format!("{}: {e}", zone.name)),
        }
    }
}

/// The A and AAAA records of an answer.
fn addresses_in(lookup: &mail_auth::hickory_resolver::lookup::Lookup) -> Vec<IpAddr> {
    use mail_auth::hickory_resolver::proto::rr::RData;
    lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn not_found(error: &NetError) -> bool {
    matches!(error, NetError::Dns(DnsError::NoRecordsFound(_)))
}
