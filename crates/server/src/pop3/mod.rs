//! The POP3 service: listeners, per-connection drivers and what they share.

pub(crate) mod driver;
mod retrieve;
mod surrogate;

use crate::lock;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use yubin_pop3_proto::{Offer, SessionConfig};

use crate::backend::{LoginTimes, MailStore, RelayGrantStore, UserDirectory};
use crate::config::{Config, PlaintextAuth};
use crate::userstore::Snapshot;

/// Everything POP3 connections share.
pub struct Pop3Service {
    pub(crate) config: Arc<Config>,
    pub(crate) grants: Arc<dyn RelayGrantStore>,
    /// Login penalties, shared with SMTP.
    pub(crate) guard: Arc<crate::login_guard::LoginGuard>,
    pub(crate) users: Arc<dyn UserDirectory>,
    /// The maildrops.
    pub(crate) mail: Arc<dyn MailStore>,
    pub(crate) tls: TlsAcceptor,
    pub(crate) connections: Arc<Semaphore>,
    /// Connections per client address.
    pub(crate) per_ip: Arc<crate::per_ip::PerIpLimit>,
    /// `pop3.proxy_protocol` (checked at start).
    pub(crate) proxies: Vec<crate::relay::Network>,
    pub(crate) shutdown: watch::Receiver<bool>,
    session_config: Mutex<Option<(u64, Arc<SessionConfig>)>>,
    /// Each user's last login (LOGIN-DELAY).
    login_times: Arc<dyn LoginTimes>,
    counter: AtomicU64,
}

impl Pop3Service {
    /// Creates the service.
    pub fn new(shared: &crate::server::Shared) -> Pop3Service {
        let config = shared.config.clone();
        Pop3Service {
            grants: shared.backend.grants.clone(),
            guard: shared.guard.clone(),
            mail: shared.backend.mail.clone(),
            connections: Arc::new(Semaphore::new(config.pop3.max_connections)),
            per_ip: crate::per_ip::PerIpLimit::new(config.pop3.max_connections_per_ip),
            proxies: config.proxy_networks("pop3").unwrap_or_default(),
            config,
            users: shared.backend.users.clone(),
            tls: shared.tls.clone(),
            shutdown: shared.shutdown.clone(),
            session_config: Mutex::new(None),
            login_times: shared.backend.login_times.clone(),
            counter: AtomicU64::new(0),
        }
    }

    /// The session settings for the current users (rebuilt when they change).
    fn session_config(&self, snapshot: &Snapshot) -> Arc<SessionConfig> {
        let mut cached = lock(&self.session_config);
        if let Some((generation, config)) = cached.as_ref()
            && *generation == snapshot.generation
        {
            return config.clone();
        }
        let pop3 = &self.config.pop3;
        let login_delay = u32::try_from(pop3.login_delay.0.as_secs()).unwrap_or(u32::MAX);
        let config = Arc::new(SessionConfig {
            sasl_mechanisms: snapshot.mechanisms.clone(),
            implementation: Some("yubin".to_owned()),
            login_delay: (login_delay > 0).then_some(login_delay),
            expire: self.config.expire().unwrap_or(None),
            max_line_len: pop3.max_line_length,
            ..SessionConfig::default()
        });
        *cached = Some((snapshot.generation, config.clone()));
        config
    }

    /// What a connection from `peer` offers.
    fn offer(&self, tls_active: bool, peer: IpAddr, apop_timestamp: Option<String>) -> Offer {
        let plaintext_auth = match self.config.pop3.plaintext_auth {
            PlaintextAuth::Always => true,
            PlaintextAuth::Never => false,
            PlaintextAuth::Tls => tls_active || crate::peer::is_loopback(peer),
        };
        Offer {
            tls_active,
            stls_available: !tls_active,
            plaintext_auth,
            apop_timestamp,
        }
    }

    /// A fresh APOP timestamp in msg-id form, `<pid.counter.random@host>`,
    /// made only of letters, digits, `.`, `-` and `_` around the `@` (some
    /// clients refuse anything else).
    fn apop_timestamp(&self) -> String {
        let host: String = self
            .config
            .hostname
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        let host = if host.is_empty() {
            "localhost".to_owned()
        } else {
            host
        };
        format!(
            "<{}.{}.{}@{host}>",
            std::process::id(),
            self.next_id(),
            yubin_auth::random::alphanumeric(12)
        )
    }

    /// A number for this connection, for logs and timestamps.
    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// LOGIN-DELAY (RFC 2449 §6.5): refuses a login that comes too soon after
    /// the user's previous one (on any node), else records this one; the
    /// delay in seconds when refused.
    async fn check_login_delay(&self, user: &str) -> Result<(), u32> {
        let delay = self.config.pop3.login_delay.0;
        if delay.is_zero() || self.login_times.admit(user, delay).await {
            return Ok(());
        }
        Err(u32::try_from(delay.as_secs()).unwrap_or(u32::MAX))
    }

    fn idle_timeout(&self) -> Duration {
        self.config.pop3.idle_timeout.0
    }
}

/// Accepts connections until shutdown. `implicit_tls` is the POP3S port.
pub async fn serve(service: Arc<Pop3Service>, listener: TcpListener, implicit_tls: bool) {
    let gate = crate::accept::Gate {
        protocol: "pop3",
        connections: service.connections.clone(),
        per_ip: service.per_ip.clone(),
        // RFC 3206 SYS/TEMP: a passing condition, the client retries. Over
        // implicit TLS there is no one to tell.
        refusals: (!implicit_tls).then(|| {
            (
                b"-ERR [SYS/TEMP] Too many connections; try again later\r\n".to_vec(),
                b"-ERR [SYS/TEMP] Too many connections from your address\r\n".to_vec(),
            )
        }),
        proxies: service.proxies.clone(),
    };
    let shutdown = service.shutdown.clone();
    crate::accept::serve(gate, listener, shutdown, move |tcp, peer| {
        driver::handle(service.clone(), tcp, peer, implicit_tls)
    })
    .await;
}

/// Records a POP-before-SMTP grant for a successful login.
pub(crate) async fn grant_relay(service: &Pop3Service, ip: IpAddr, user: &str) {
    if service.grants.enabled() {
        service.grants.grant(ip, user).await;
        log_grant(ip, user);
    }
}

/// Logs a grant made (by the grant store, or with the maildrop's lock).
pub(crate) fn log_grant(ip: IpAddr, user: &str) {
    tracing::info!(rip = %ip, user = %crate::logtext::Escaped(user.as_bytes()), "pop-before-smtp grant");
}
