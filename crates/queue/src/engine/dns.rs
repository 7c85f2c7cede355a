//! MX lookups with hickory-resolver: the system's resolver configuration
//! (`/etc/resolv.conf`), or one name server given in the configuration.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};

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

impl HickoryDns {
    /// The system's resolvers. Without a usable configuration, MX lookups
    /// find nothing and domains are reached by their address records.
    pub fn system() -> HickoryDns {
        match TokioResolver::builder_tokio() {
            Ok(builder) => HickoryDns {
                resolver: Some(builder.build()),
            },
            Err(error) => {
                tracing::warn!(%error, "no DNS resolver configuration; MX records will not be used");
                HickoryDns { resolver: None }
            }
        }
    }

    /// One name server, asked over UDP (and TCP for long answers).
    pub fn server(address: SocketAddr) -> HickoryDns {
        let servers = NameServerConfigGroup::from_ips_clear(&[address.ip()], address.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).build();
        HickoryDns {
            resolver: Some(resolver),
        }
    }
}

impl Dns for HickoryDns {
    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, RouteError> {
        let Some(resolver) = &self.resolver else {
            return Ok(Vec::new());
        };
        // Fully qualified: no search domains.
        match resolver.mx_lookup(format!("{domain}.")).await {
            Ok(found) => Ok(found
                .iter()
                .map(|mx| {
                    let host = mx.exchange().to_utf8();
                    let host = host.trim_end_matches('.');
                    (
                        mx.preference(),
                        if host.is_empty() {
                            ".".to_owned()
                        } else {
                            host.to_owned()
                        },
                    )
                })
                .collect()),
            Err(error) => match error.proto().map(ProtoError::kind) {
                // An authoritative "no such domain".
                Some(ProtoErrorKind::NoRecordsFound {
                    response_code: ResponseCode::NXDomain,
                    trusted: true,
                    ..
                }) => Err(RouteError::Permanent(format!(
                    "5.1.2 the domain {domain} does not exist"
                ))),
                // The domain exists and has no MX: its address records.
                Some(ProtoErrorKind::NoRecordsFound {
                    response_code: ResponseCode::NoError,
                    ..
                }) => Ok(Vec::new()),
                // SERVFAIL, REFUSED, timeouts, an untrusted NXDOMAIN: the
                // DNS is in trouble, not the domain; try again later.
                _ => Err(RouteError::Temporary(format!(
                    "4.4.3 DNS lookup of {domain} failed: {error}"
                ))),
            },
        }
    }
}
