//! The SMTP service: listeners, per-connection drivers and what they share.

mod bounces;
mod client_checks;
mod commit;
mod dkim;
mod driver;
mod free_space;
mod helo_check;
mod hygiene;
mod inbound;
mod screen;

use crate::lock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use yubin_queue::QueueStore;
use yubin_smtp_proto::{Offer, SessionConfig};

use crate::backend::{MailStore, RelayGrantStore, UserDirectory};
use crate::config::{Config, PlaintextAuth};
use crate::relay::{Aliases, Network, Policy};
use crate::userstore::Snapshot;

/// Which kind of listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The MX port: anyone may send to local users.
    Mx,
    /// Submission with STARTTLS: AUTH before MAIL.
    Submission,
    /// Submission with implicit TLS.
    Submissions,
}

/// Everything SMTP connections share.
pub struct SmtpService {
    pub(crate) config: Arc<Config>,
    pub(crate) users: Arc<dyn UserDirectory>,
    /// The maildrops local recipients' copies go to.
    pub(crate) mail: Arc<dyn MailStore>,
    pub(crate) tls: TlsAcceptor,
    pub(crate) grants: Arc<dyn RelayGrantStore>,
    /// Login penalties, shared with POP3.
    pub(crate) guard: Arc<crate::login_guard::LoginGuard>,
    /// The outbound queue's store.
    pub(crate) queue: Arc<dyn QueueStore>,
    pub(crate) aliases: Aliases,
    /// Extra addresses users may send as.
    pub(crate) sender_logins: crate::sender_logins::SenderLogins,
    /// The keys mail that leaves is signed with.
    pub(crate) dkim: Arc<yubin_mailauth::dkim::Keyring>,
    /// Sender authentication on the MX listener (`inbound.authentication`).
    pub(crate) inbound: Option<Arc<yubin_mailauth::inbound::Inbound>>,
    /// Turns for checking large messages, which are read whole into
    /// memory (DKIM needs the body): a few at a time, so that memory stays
    /// bounded however many sessions send 50 MB at once.
    pub(crate) inbound_large: Arc<Semaphore>,
    /// FCrDNS and DNS blocklist lookups, when either is on.
    pub(crate) client_checks: Option<Arc<yubin_mailauth::client::ClientChecks>>,
    /// `inbound.dnsbl`, parsed.
    pub(crate) dnsbl_zones: Vec<yubin_mailauth::dnsbl::Zone>,
    /// Greylisting's triplets.
    pub(crate) greylist: Arc<dyn crate::backend::GreylistStore>,
    pub(crate) relay_networks: Vec<Network>,
    pub(crate) connections: Arc<Semaphore>,
    /// Connections per client address.
    pub(crate) per_ip: Arc<crate::per_ip::PerIpLimit>,
    /// `smtp.proxy_protocol`.
    pub(crate) proxies: Vec<crate::relay::Network>,
    /// Free space where messages are spooled and queued.
    pub(crate) storage: free_space::StorageGauge,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Tells the delivery engine what was queued.
    pub(crate) queue_wake: Arc<yubin_queue::engine::Arrivals>,
    session_config: Mutex<Option<(u64, Arc<SessionConfig>)>>,
    counter: AtomicU64,
}

/// What the DNS checks of mail that arrives ask.
type Resolver = (
    yubin_queue::engine::dns::ResolverConfig,
    yubin_queue::engine::dns::ResolverOpts,
);

/// The settings of `[dns] resolver` for the checks of mail that arrives:
/// an error in the key stops the start; a resolver that cannot be made
/// is the inner error (the checks are then off, with a warning).
fn resolver(config: &Config) -> Result<Result<Resolver, String>, crate::config::ConfigError> {
    Ok(
        yubin_queue::engine::dns::resolver_config(config.dns_resolver()?)
            .map_err(|e| e.to_string()),
    )
}

/// A checker built over the resolver, or, when none could be made, none,
/// with a warning saying what goes unchecked.
fn usable<T>(built: Result<T, String>, unchecked: &str) -> Option<Arc<T>> {
    match built {
        Ok(checker) => Some(Arc::new(checker)),
        Err(error) => {
            tracing::warn!(%error, "no usable DNS resolver: {unchecked}");
            None
        }
    }
}

/// Messages over [`INBOUND_LARGE`] octets checked at once.
const INBOUND_LARGE_AT_ONCE: usize = 4;

/// A message this large waits for a turn before it is checked.
pub(crate) const INBOUND_LARGE: u64 = 1024 * 1024;

impl SmtpService {
    /// Creates the service.
    pub fn new(
        shared: &crate::server::Shared,
        aliases: Aliases,
        sender_logins: crate::sender_logins::SenderLogins,
        dkim: yubin_mailauth::dkim::Keyring,
        queue_wake: Arc<yubin_queue::engine::Arrivals>,
    ) -> Result<SmtpService, crate::config::ConfigError> {
        let config = shared.config.clone();
        let inbound = if config.inbound.authentication {
            let authserv_id = config
                .inbound
                .authserv_id
                .clone()
                .unwrap_or_else(|| config.hostname.clone());
            let built = resolver(&config)?.and_then(|(resolver, options)| {
                yubin_mailauth::inbound::Inbound::new(resolver, options, authserv_id)
            });
            usable(
                built,
                "mail on the MX listener is not checked (SPF, DKIM, DMARC)",
            )
        } else {
            None
        };
        let dnsbl_zones = config
            .inbound
            .dnsbl
            .iter()
            .map(|zone| yubin_mailauth::dnsbl::Zone::parse(zone))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::config_error::invalid("inbound.dnsbl", e))?;
        // FCrDNS and blocklists, and the client's name for content filters.
        let client_checks = if config.inbound.fcrdns.is_on()
            || !dnsbl_zones.is_empty()
            || !config.filter.is_empty()
        {
            let built = resolver(&config)?.and_then(|(resolver, options)| {
                yubin_mailauth::client::ClientChecks::new(resolver, options)
            });
            usable(built, "FCrDNS and DNS blocklists are not checked")
        } else {
            None
        };
        Ok(SmtpService {
            inbound,
            client_checks,
            dnsbl_zones,
            greylist: shared.backend.greylist.clone(),
            inbound_large: Arc::new(Semaphore::new(INBOUND_LARGE_AT_ONCE)),
            connections: Arc::new(Semaphore::new(config.smtp.max_connections)),
            per_ip: crate::per_ip::PerIpLimit::new(config.smtp.max_connections_per_ip),
            proxies: config.proxy_networks("smtp")?,
            storage: free_space::StorageGauge::new(
                spool_dirs(&config),
                free_space::StorageGauge::needed_for(config.smtp.max_message_size),
            ),
            queue: shared.backend.queue.clone(),
            relay_networks: config.relay_networks()?,
            config,
            users: shared.backend.users.clone(),
            mail: shared.backend.mail.clone(),
            tls: shared.tls.clone(),
            grants: shared.backend.grants.clone(),
            guard: shared.guard.clone(),
            aliases,
            sender_logins,
            dkim: Arc::new(dkim),
            shutdown: shared.shutdown.clone(),
            queue_wake,
            session_config: Mutex::new(None),
            counter: AtomicU64::new(0),
        })
    }

    fn session_config(&self, snapshot: &Snapshot) -> Arc<SessionConfig> {
        let mut cached = lock(&self.session_config);
        if let Some((generation, config)) = cached.as_ref()
            && *generation == snapshot.generation
        {
            return config.clone();
        }
        let smtp = &self.config.smtp;
        let config = Arc::new(SessionConfig {
            hostname: self.config.hostname.clone(),
            max_message_size: smtp.max_message_size,
            max_recipients: smtp.max_recipients,
            max_line_len: smtp.max_line_length,
            max_errors: smtp.max_errors,
            sasl_mechanisms: snapshot.mechanisms.clone(),
            max_hops: smtp.max_hops,
            max_junk_commands: smtp.max_junk_commands,
            line_ends: smtp.line_ends(),
            syntax: yubin_smtp_proto::command::Syntax {
                strict_paths: smtp.strict_envelopes,
            },
        });
        *cached = Some((snapshot.generation, config.clone()));
        config
    }

    fn offer(&self, listener: Listener, tls_active: bool, peer: std::net::IpAddr) -> Offer {
        let loopback = crate::peer::is_loopback(peer);
        let plaintext_auth = match self.config.smtp.plaintext_auth {
            PlaintextAuth::Always => true,
            PlaintextAuth::Never => false,
            PlaintextAuth::Tls => tls_active || loopback,
        };
        Offer {
            tls_active,
            starttls_available: !tls_active,
            // AUTH only under TLS or from loopback (issue 4), and at all
            // only if some mechanism may be used.
            auth_allowed: tls_active || loopback,
            plaintext_auth,
            submission: listener != Listener::Mx,
        }
    }

    /// The relay policy over `snapshot`'s users, with `local_domains` (from
    /// [`SmtpService::local_domains`]).
    fn policy<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        local_domains: &'a HashSet<String>,
    ) -> Policy<'a> {
        Policy {
            users: &snapshot.users,
            local_domains,
            aliases: &self.aliases,
            first_user: snapshot.first_user.as_deref(),
            sender_logins: &self.sender_logins,
        }
    }

    /// The local domains: configured, or the users' domains plus the host name.
    fn local_domains(&self, snapshot: &Snapshot) -> HashSet<String> {
        match &self.config.smtp.local_domains {
            Some(domains) => domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            None => {
                let mut domains = snapshot.domains.clone();
                domains.insert(self.config.hostname.to_ascii_lowercase());
                domains
            }
        }
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn timeout(&self) -> Duration {
        self.config.smtp.timeout.0
    }
}

/// Accepts connections until shutdown.
pub async fn serve(service: Arc<SmtpService>, listener: TcpListener, kind: Listener) {
    let reply = |r: yubin_smtp_proto::Reply| {
        let mut bytes = Vec::new();
        r.write_to(&mut bytes);
        bytes
    };
    let gate = crate::accept::Gate {
        protocol: "smtp",
        connections: service.connections.clone(),
        per_ip: service.per_ip.clone(),
        // Over implicit TLS there is no one to tell.
        refusals: (kind != Listener::Submissions).then(|| {
            (
                reply(yubin_smtp_proto::replies::TOO_MANY_CONNECTIONS),
                reply(yubin_smtp_proto::replies::TOO_MANY_FROM_ADDRESS),
            )
        }),
        proxies: service.proxies.clone(),
    };
    let shutdown = service.shutdown.clone();
    crate::accept::serve(gate, listener, shutdown, move |tcp, peer| {
        driver::handle(service.clone(), tcp, peer, kind)
    })
    .await;
}

/// Where a message is written before its `250`: the spool under
/// `data_dir`, and on Maildir the queue's directory too. On PostgreSQL
/// the queue is in the database, and its directory is never made.
fn spool_dirs(config: &Config) -> Vec<std::path::PathBuf> {
    let mut dirs = vec![config.data_dir.clone()];
    if config.storage.backend == crate::config::Backend::Maildir {
        dirs.push(config.queue_dir());
    }
    dirs
}
