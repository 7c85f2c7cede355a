//! MX lookups with hickory-resolver: the system's resolver configuration
//! (`/etc/resolv.conf`), or one name server given in the configuration.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts};
/// The settings `resolver_config` makes, for other users of the same
/// resolver (the server's checks of mail that arrives).
pub use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

use hickory_resolver::proto::rr::RecordType;
use yubin_client_tls::Tlsa;

use super::dnssec::Validator;
use super::route::{DaneHost, Dns, RouteError};

/// A DNS resolver for MX records.
pub struct HickoryDns {
    resolver: Option<TokioResolver>,
    /// The same resolvers asked for their AD bit, when they are on this
    /// host (DANE); `None`: nothing is validated.
    validator: Option<Validator>,
}

impl std::fmt::Debug for HickoryDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryDns")
            .field("configured", &self.resolver.is_some())
            .field("dnssec", &self.validator.is_some())
            .finish()
    }
}

/// The resolver settings for `address` (one name server, over UDP and
/// TCP for long answers), or the system's (`/etc/resolv.conf`) for `None`:
/// the one configuration every DNS user in yubin shares (`dns.resolver`).
/// `/etc/hosts` is never consulted: what yubin asks about (MX, SPF, DKIM,
/// reverse names) is what the rest of the Internet sees in the DNS.
pub fn resolver_config(
    address: Option<SocketAddr>,
) -> Result<(ResolverConfig, ResolverOpts), NetError> {
    let (config, mut options) = match address {
        None => hickory_resolver::system_conf::read_system_conf()?,
        Some(address) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = address.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = address.port();
            let server = NameServerConfig::new(address.ip(), true, vec![udp, tcp]);
            (
                ResolverConfig::from_name_servers(vec![server]),
                ResolverOpts::default(),
            )
        }
    };
    options.use_hosts_file = ResolveHosts::Never;
    Ok((config, options))
}

/// The name servers [`resolver_config`] asks.
fn name_servers(address: Option<SocketAddr>) -> Vec<SocketAddr> {
    match resolver_config(address) {
        Ok((config, _)) => config
            .name_servers()
            .iter()
            .map(|server| {
                let port = server.connections.first().map_or(53, |c| c.port);
                SocketAddr::new(server.ip, port)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether DNSSEC answers from these resolvers are believed (they are all
/// on this host), which DANE needs.
pub fn validating_resolver(address: Option<SocketAddr>) -> bool {
    Validator::local(name_servers(address)).is_some()
}

/// A resolver with [`resolver_config`]'s settings.
pub fn resolver(address: Option<SocketAddr>) -> Result<TokioResolver, NetError> {
    let (config, options) = resolver_config(address)?;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
}

impl HickoryDns {
    /// The system's resolvers. Without a usable configuration, MX lookups
    /// find nothing and domains are reached by their address records.
    pub fn system() -> HickoryDns {
        HickoryDns::with(None)
    }

    /// One name server, asked over UDP (and TCP for long answers).
    pub fn server(address: SocketAddr) -> HickoryDns {
        HickoryDns::with(Some(address))
    }

    fn with(address: Option<SocketAddr>) -> HickoryDns {
        match resolver(address) {
            Ok(resolver) => HickoryDns {
                resolver: Some(resolver),
                validator: Validator::local(name_servers(address)),
            },
            Err(error) => {
                tracing::warn!(%error, "no usable DNS resolver configuration; MX records will not be used");
                HickoryDns {
                    resolver: None,
                    validator: None,
                }
            }
        }
    }

    /// The same resolver, with DANE off (`queue.dane = false`): no answer
    /// counts as validated.
    pub fn without_dane(self) -> HickoryDns {
        HickoryDns {
            validator: None,
            ..self
        }
    }

    /// Whether answers can count as DNSSEC-validated: the resolvers are
    /// all on this host (see the `dnssec` module).
    pub fn validates(&self) -> bool {
        self.validator.is_some()
    }
}

/// A TLSA record as the client-TLS crate checks certificates with it.
fn tlsa(rdata: &RData) -> Option<Tlsa> {
    match rdata {
        RData::TLSA(record) => Some(Tlsa {
            usage: record.cert_usage.into(),
            selector: record.selector.into(),
            matching: record.matching.into(),
            data: record.cert_data.clone(),
        }),
        _ => None,
    }
}

impl Dns for HickoryDns {
    async fn mx_validated(&self, domain: &str) -> Result<bool, String> {
        let Some(validator) = &self.validator else {
            return Ok(false);
        };
        validator
            .ask(domain, RecordType::MX)
            .await
            .map(|answer| answer.secure)
    }

    async fn dane(&self, host: &str, port: u16) -> DaneHost {
        let Some(validator) = &self.validator else {
            return DaneHost::NotApplicable;
        };
        // RFC 7672 §2.2.2: TLSA records count only for a host whose
        // address records are validated. A lookup that fails is not an
        // insecure answer: the host is not used (a forged or blocked
        // answer must not turn DANE off).
        let mut secure = false;
        for kind in [RecordType::A, RecordType::AAAA] {
            match validator.ask(host, kind).await {
                Ok(answer) if !answer.records.is_empty() => {
                    secure = answer.secure;
                    break;
                }
                Ok(_) => continue,
                Err(error) => {
                    return DaneHost::Failed(format!("address lookup failed: {error}"));
                }
            }
        }
        if !secure {
            return DaneHost::NotApplicable;
        }
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        match validator.ask(&name, RecordType::TLSA).await {
            Ok(answer) if answer.secure && !answer.records.is_empty() => {
                DaneHost::Tlsa(answer.records.iter().filter_map(tlsa).collect())
            }
            // No records, or records from an unsigned zone: no DANE.
            Ok(_) => DaneHost::NotApplicable,
            Err(error) => DaneHost::Failed(format!("TLSA lookup failed: {error}")),
        }
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, RouteError> {
        let Some(resolver) = &self.resolver else {
            return Ok(Vec::new());
        };
        match resolver
            .txt_lookup(format!("{}.", name.trim_end_matches('.')))
            .await
        {
            Ok(found) => Ok(found
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(Vec::new()),
            Err(error) => Err(RouteError::Temporary(format!(
                "4.4.3 DNS lookup of {name} failed: {error}"
            ))),
        }
    }

    async fn addresses(&self, name: &str) -> Result<Vec<std::net::IpAddr>, RouteError> {
        // An address literal (a route's `127.0.0.1:25`, `[::1]:25`).
        if let Ok(ip) = name.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            return Ok(vec![ip]);
        }
        let Some(resolver) = &self.resolver else {
            return tokio::net::lookup_host((name, 0))
                .await
                .map(|found| found.map(|a| a.ip()).collect())
                .map_err(|e| RouteError::Temporary(format!("4.4.3 cannot resolve {name}: {e}")));
        };
        match resolver
            .lookup_ip(format!("{}.", name.trim_end_matches('.')))
            .await
        {
            Ok(found) => Ok(found.iter().collect()),
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(Vec::new()),
            Err(error) => Err(RouteError::Temporary(format!(
                "4.4.3 cannot resolve {name}: {error}"
            ))),
        }
    }

    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, RouteError> {
        let Some(resolver) = &self.resolver else {
            return Ok(Vec::new());
        };
        // Fully qualified: no search domains.
        match resolver.mx_lookup(format!("{domain}.")).await {
            Ok(found) => Ok(found
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::MX(mx) => Some(mx),
                    _ => None,
                })
                .map(|mx| {
                    let host = mx.exchange.to_utf8();
                    let host = host.trim_end_matches('.');
                    (
                        mx.preference,
                        if host.is_empty() {
                            ".".to_owned()
                        } else {
                            host.to_owned()
                        },
                    )
                })
                .collect()),
            Err(error) => match &error {
                // "No such domain" (the resolver trusts negative answers).
                NetError::Dns(DnsError::NoRecordsFound(NoRecords {
                    response_code: ResponseCode::NXDomain,
                    ..
                })) => Err(RouteError::Permanent(format!(
                    "5.1.2 the domain {domain} does not exist"
                ))),
                // The domain exists and has no MX: its address records.
                NetError::Dns(DnsError::NoRecordsFound(NoRecords {
                    response_code: ResponseCode::NoError,
                    ..
                })) => Ok(Vec::new()),
                // SERVFAIL, REFUSED, timeouts, an untrusted NXDOMAIN: the
                // DNS is in trouble, not the domain; try again later.
                _ => Err(RouteError::Temporary(format!(
                    "4.4.3 DNS lookup of {domain} failed: {error}"
                ))),
            },
        }
    }
}
