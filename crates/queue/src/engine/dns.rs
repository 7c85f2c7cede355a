//! MX lookups with hickory-resolver: the system's resolver configuration
//! (`/etc/resolv.conf`), or one name server given in the configuration.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

use super::route::{Dns, RouteError};

/// A DNS resolver for MX records.
pub struct HickoryDns {
    resolver: Option<TokioResolver>,
}

impl std::fmt::Debug for HickoryDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryDns")
            .field("configured", &self.resolver.is_some())
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
            },
            Err(error) => {
                tracing::warn!(%error, "no usable DNS resolver configuration; MX records will not be used");
                HickoryDns { resolver: None }
            }
        }
    }
}

impl Dns for HickoryDns {
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
