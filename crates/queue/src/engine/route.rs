//! Where mail for a domain goes, in order (like Postfix's transport(5),
//! then `relayhost`, then DNS): a transport map entry for the domain or
//! `*`, else the smarthost, else the domain's MX hosts by preference,
//! falling back to its address records (RFC 5321 §5.1). A null MX
//! (RFC 7505) means the domain takes no mail: the message bounces at once.

use std::net::SocketAddr;
use std::sync::Arc;

use yubin_client_tls::Tlsa;
use yubin_smtp_proto::client::{Credentials, TlsPolicy};

/// How a connection to the next server is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsLevel {
    /// Plaintext, never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate; plaintext otherwise (and
    /// after a failed handshake). Postfix's `may`.
    #[default]
    Opportunistic,
    /// STARTTLS or no delivery, any certificate: against eavesdroppers,
    /// not against an attacker in the path. Postfix's `encrypt`.
    Required,
    /// STARTTLS or no delivery, and the certificate must chain to a
    /// system root and name the host: against an attacker in the path
    /// too (Postfix's `secure`).
    Verify,
    /// STARTTLS or no delivery, and the certificate must match the host's
    /// DNSSEC-validated TLSA records ([`Target::tlsa`], RFC 7672).
    Dane,
}

impl TlsLevel {
    /// What the SMTP client session does about STARTTLS.
    pub fn policy(self) -> TlsPolicy {
        match self {
            TlsLevel::None => TlsPolicy::Never,
            TlsLevel::Opportunistic => TlsPolicy::Opportunistic,
            TlsLevel::Required | TlsLevel::Verify | TlsLevel::Dane => TlsPolicy::Required,
        }
    }

    /// The configuration's name for it.
    pub fn name(self) -> &'static str {
        match self {
            TlsLevel::None => "none",
            TlsLevel::Opportunistic => "opportunistic",
            TlsLevel::Required => "required",
            TlsLevel::Verify => "verify",
            TlsLevel::Dane => "dane",
        }
    }

    /// Whether the certificate is checked (against roots or TLSA records).
    pub fn verifies(self) -> bool {
        matches!(self, TlsLevel::Verify | TlsLevel::Dane)
    }
}

/// Where a target's TLS level comes from (for logs and errors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsSource {
    /// The configuration (`queue.tls`, `tls_policy`, `relayhost_tls`).
    #[default]
    Configured,
    /// The destination domain's MTA-STS policy in `enforce` mode.
    MtaSts,
    /// The host's DNSSEC-validated TLSA records (RFC 7672).
    Dane,
}

impl TlsSource {
    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            TlsSource::Configured => "configured",
            TlsSource::MtaSts => "mta-sts",
            TlsSource::Dane => "dane",
        }
    }
}

/// One server to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The host name (for TLS and logs) or address literal.
    pub host: String,
    /// Port (25 for MX hosts).
    pub port: u16,
    /// How the connection is protected.
    pub tls: TlsLevel,
    /// Which policy set `tls`.
    pub tls_source: TlsSource,
    /// AUTH credentials (a smarthost).
    pub credentials: Option<Credentials>,
    /// The host's validated TLSA records, when DANE applies.
    pub tlsa: Option<Arc<[Tlsa]>>,
    /// Under an MTA-STS policy in `testing` mode: the certificate is
    /// checked as `enforce` would, only to report the result (RFC 8460).
    pub observe: bool,
}

/// What DNSSEC says about one host, for DANE (RFC 7672 §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaneHost {
    /// Its address or TLSA records are not validated, or it has no TLSA
    /// records: DANE does not apply, the next policy does.
    NotApplicable,
    /// Its validated TLSA records (perhaps none usable: then TLS is still
    /// required, without authentication).
    Tlsa(Vec<Tlsa>),
    /// Its addresses are validated but its TLSA records could not be
    /// read (bogus signatures answer SERVFAIL): the host must not be used.
    Failed(String),
}

/// A next hop given by configuration: `host:port` and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: TlsLevel,
    /// AUTH credentials.
    pub credentials: Option<Credentials>,
}

impl Hop {
    fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls,
            tls_source: TlsSource::Configured,
            credentials: self.credentials.clone(),
            tlsa: None,
            observe: false,
        }
    }
}

/// Why a domain has no server to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The domain says it takes no mail (null MX), or does not exist:
    /// bounce, with this enhanced status and text.
    Permanent(String),
    /// DNS trouble: try again later.
    Temporary(String),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::Permanent(text) | RouteError::Temporary(text) => f.write_str(text),
        }
    }
}

/// Looks up mail servers in the DNS.
pub trait Dns: Send + Sync {
    /// The MX hosts of `domain` by preference, as `(preference, host)`;
    /// empty if it has none (then its own address is used). A null MX is
    /// one record with host `.` (or empty).
    fn mx(
        &self,
        domain: &str,
    ) -> impl std::future::Future<Output = Result<Vec<(u16, String)>, RouteError>> + Send;

    /// The TXT records at `name` (each record's strings joined); empty if
    /// there are none.
    fn txt(
        &self,
        _name: &str,
    ) -> impl std::future::Future<Output = Result<Vec<String>, RouteError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// The addresses of `name` (A and AAAA).
    fn addresses(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Vec<std::net::IpAddr>, RouteError>> + Send {
        let name = name.to_owned();
        async move {
            tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map(|found| found.map(|a| a.ip()).collect())
                .map_err(|e| RouteError::Temporary(format!("4.4.3 cannot resolve {name}: {e}")))
        }
    }

    /// Whether `domain`'s MX answer (or its denial) is DNSSEC-validated;
    /// DANE applies only then (RFC 7672 §2.2.1; Postfix does the same).
    /// Without a validating resolver: never. `Err`: the validating
    /// resolver did not answer, so nothing can be said, and delivery
    /// waits rather than go on as if the domain had no DANE.
    fn mx_validated(
        &self,
        _domain: &str,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send {
        async { Ok(false) }
    }

    /// DANE's view of `host` reached on `port` (RFC 7672 §2.2.2): TLSA
    /// records are looked up only when its addresses are validated.
    fn dane(&self, _host: &str, _port: u16) -> impl std::future::Future<Output = DaneHost> + Send {
        async { DaneHost::NotApplicable }
    }
}

/// DNS without MX support: every domain is its own mail server (address
/// records only). Used when no resolver is configured, and in tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMx;

impl Dns for NoMx {
    async fn mx(&self, _domain: &str) -> Result<Vec<(u16, String)>, RouteError> {
        Ok(Vec::new())
    }
}

/// The routing table.
#[derive(Clone, Debug)]
pub struct Routes {
    /// Transport map: lower-case domain (or `*`) → next hop.
    pub map: Vec<(String, Hop)>,
    /// The smarthost for everything the map does not name.
    pub relayhost: Option<Hop>,
    /// STARTTLS policy for MX hosts.
    pub mx_tls: TlsLevel,
    /// The port MX hosts are reached on (25; another only for tests).
    pub mx_port: u16,
    /// Per destination domain, a STARTTLS policy that replaces the hop's.
    pub tls_overrides: Vec<(String, TlsLevel)>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            map: Vec::new(),
            relayhost: None,
            mx_tls: TlsLevel::Opportunistic,
            mx_port: 25,
            tls_overrides: Vec::new(),
        }
    }
}

impl Routes {
    /// Whether mail for `domain` goes by its MX records (no route or
    /// smarthost names it): only then do the domain's own TLS policies
    /// (MTA-STS, DANE) apply.
    pub fn by_mx(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.relayhost.is_none() && self.hop(&domain).is_none()
    }

    /// The TLS level the configuration gives `domain`'s mail, and where it
    /// comes from (`route`, `relayhost`, `tls_policy` or `tls`).
    /// A per-domain policy replaces the route's or the MX hosts' one; the
    /// smarthost keeps its own (a domain entry must not weaken
    /// `relayhost_tls = "required"`).
    pub fn configured_tls(&self, domain: &str) -> (TlsLevel, &'static str) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let overridden = self
            .tls_overrides
            .iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, level)| (*level, "tls_policy"));
        if let Some((_, hop)) = self.hop(&domain) {
            return overridden.unwrap_or((hop.tls, "route"));
        }
        if let Some(hop) = &self.relayhost {
            return (hop.tls, "relayhost");
        }
        overridden.unwrap_or((self.mx_tls, "tls"))
    }

    /// The transport map's entry for `domain` (lower case), or its `*`.
    fn hop(&self, domain: &str) -> Option<&(String, Hop)> {
        let mapped = self.map.iter().find(|(d, _)| *d == domain);
        mapped.or_else(|| self.map.iter().find(|(d, _)| d == "*"))
    }

    /// The servers to try for `domain`, best first.
    pub async fn resolve(&self, domain: &str, dns: &impl Dns) -> Result<Vec<Target>, RouteError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let (tls, _) = self.configured_tls(&domain);
        if let Some((_, hop)) = self.hop(&domain) {
            let mut target = hop.target();
            target.tls = tls;
            return Ok(vec![target]);
        }
        if let Some(hop) = &self.relayhost {
            return Ok(vec![hop.target()]);
        }
        if domain.starts_with('[') {
            return Err(RouteError::Permanent(
                "5.1.2 address literals are not routed".into(),
            ));
        }
        let mut mx = dns.mx(&domain).await?;
        if mx.len() == 1 && matches!(mx[0].1.as_str(), "." | "") {
            return Err(RouteError::Permanent(format!(
                "5.1.10 {domain} accepts no mail (null MX, RFC 7505)"
            )));
        }
        mx.retain(|(_, host)| !matches!(host.as_str(), "." | ""));
        // By preference; hosts of equal preference in random order, so
        // the load spreads (RFC 5321 §5.1).
        mx.sort_by_cached_key(|(preference, _)| (*preference, getrandom::u32().unwrap_or(0)));
        let hosts: Vec<String> = if mx.is_empty() {
            vec![domain]
        } else {
            mx.into_iter().map(|(_, host)| host).collect()
        };
        Ok(hosts
            .into_iter()
            .map(|host| Target {
                host: host.trim_end_matches('.').to_owned(),
                port: self.mx_port,
                tls,
                tls_source: TlsSource::Configured,
                credentials: None,
                tlsa: None,
                observe: false,
            })
            .collect())
    }
}

/// Whether `address` is one of ours: delivering there would loop.
pub fn is_own_address(address: SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|o| {
        o.port() == address.port()
            && (o.ip() == address.ip() || (o.ip().is_unspecified() && is_local_ip(address.ip())))
    })
}

/// Whether `ip` belongs to this machine as far as a wildcard listener is
/// concerned (loopback; other local interfaces are not known here).
fn is_local_ip(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeDns(Vec<(u16, String)>);

    impl Dns for FakeDns {
        async fn mx(&self, _domain: &str) -> Result<Vec<(u16, String)>, RouteError> {
            Ok(self.0.clone())
        }
    }

    fn hop(host: &str, port: u16) -> Hop {
        Hop {
            host: host.into(),
            port,
            tls: TlsLevel::None,
            credentials: None,
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn the_map_then_the_smarthost_then_mx_by_preference() {
        let routes = Routes {
            map: vec![("remote.test".into(), hop("127.0.0.1", 2526))],
            relayhost: None,
            mx_tls: TlsLevel::Opportunistic,
            mx_port: 25,
            tls_overrides: vec![("other.test".into(), TlsLevel::Required)],
        };
        let dns = FakeDns(vec![
            (20, "mx2.other.test.".into()),
            (10, "mx1.other.test".into()),
        ]);
        let to = block_on(routes.resolve("Remote.Test.", &dns)).unwrap();
        assert_eq!((to[0].host.as_str(), to[0].port), ("127.0.0.1", 2526));
        let to = block_on(routes.resolve("other.test", &dns)).unwrap();
        let hosts: Vec<_> = to.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(hosts, [("mx1.other.test", 25), ("mx2.other.test", 25)]);
        assert_eq!(to[0].tls, TlsLevel::Required, "the per-domain policy");

        let smarthost = Routes {
            relayhost: Some(hop("smarthost.test", 587)),
            ..routes.clone()
        };
        let to = block_on(smarthost.resolve("other.test", &dns)).unwrap();
        assert_eq!(to[0].host, "smarthost.test");
        let star = Routes {
            map: vec![("*".into(), hop("10.0.0.1", 25))],
            ..routes
        };
        assert_eq!(
            block_on(star.resolve("any.test", &dns)).unwrap()[0].host,
            "10.0.0.1"
        );
    }

    #[test]
    fn equal_preferences_come_in_varying_order() {
        let routes = Routes::default();
        let dns = FakeDns(vec![
            (10, "a.test".into()),
            (10, "b.test".into()),
            (10, "c.test".into()),
            (5, "first.test".into()),
        ]);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            let to = block_on(routes.resolve("x.test", &dns)).unwrap();
            assert_eq!(to[0].host, "first.test");
            orders.insert(to.iter().map(|t| t.host.clone()).collect::<Vec<_>>());
        }
        assert!(orders.len() > 1, "always the same order");
    }

    #[test]
    fn no_mx_means_the_domain_itself_and_a_null_mx_bounces() {
        let routes = Routes::default();
        let to = block_on(routes.resolve("plain.test", &NoMx)).unwrap();
        assert_eq!((to[0].host.as_str(), to[0].port), ("plain.test", 25));
        let null = FakeDns(vec![(0, ".".into())]);
        assert!(matches!(
            block_on(routes.resolve("nomail.test", &null)),
            Err(RouteError::Permanent(text)) if text.starts_with("5.1.10")
        ));
    }

    #[test]
    fn own_addresses_are_loops() {
        let own: Vec<SocketAddr> = vec![
            "127.0.0.1:2525".parse().unwrap(),
            "0.0.0.0:25".parse().unwrap(),
        ];
        assert!(is_own_address("127.0.0.1:2525".parse().unwrap(), &own));
        assert!(is_own_address("127.0.0.1:25".parse().unwrap(), &own));
        assert!(!is_own_address("127.0.0.1:2526".parse().unwrap(), &own));
        assert!(!is_own_address("192.0.2.1:2525".parse().unwrap(), &own));
    }
}
