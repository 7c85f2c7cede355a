//! The POP3 service: listeners, per-connection drivers and what they share.

pub(crate) mod driver;
mod retrieve;
mod surrogate;

pub(crate) use driver::write_all;

use crate::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use yubin_auth::{User, Users};
use yubin_pop3_proto::{Offer, SessionConfig};
use yubin_store::Maildir;
use yubin_store::location::{self, LocationError};

use crate::config::{Config, PlaintextAuth};
use crate::userstore::{Snapshot, UserStore};

/// Everything POP3 connections share.
pub struct Pop3Service {
    pub(crate) config: Arc<Config>,
    pub(crate) grants: Arc<Mutex<yubin_auth::RelayGrants>>,
    /// Login penalties, shared with SMTP.
    pub(crate) guard: Arc<crate::login_guard::LoginGuard>,
    pub(crate) users: Arc<UserStore>,
    pub(crate) tls: TlsAcceptor,
    pub(crate) connections: Arc<Semaphore>,
    /// Connections per client address.
    pub(crate) per_ip: Arc<crate::per_ip::PerIpLimit>,
    pub(crate) shutdown: watch::Receiver<bool>,
    session_config: Mutex<Option<(u64, Arc<SessionConfig>)>>,
    last_login: Mutex<HashMap<String, Instant>>,
    counter: AtomicU64,
}

impl Pop3Service {
    /// Creates the service.
    pub fn new(shared: &crate::server::Shared) -> Pop3Service {
        let config = shared.config.clone();
        Pop3Service {
            grants: shared.grants.clone(),
            guard: shared.guard.clone(),
            connections: Arc::new(Semaphore::new(config.pop3.max_connections)),
            per_ip: crate::per_ip::PerIpLimit::new(config.pop3.max_connections_per_ip),
            config,
            users: shared.users.clone(),
            tls: shared.tls.clone(),
            shutdown: shared.shutdown.clone(),
            session_config: Mutex::new(None),
            last_login: Mutex::new(HashMap::new()),
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
            PlaintextAuth::Tls => tls_active || is_loopback(peer),
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
    /// the user's previous one, else records this one.
    fn check_login_delay(&self, user: &str) -> Result<(), u32> {
        let delay = self.config.pop3.login_delay.0;
        if delay.is_zero() {
            return Ok(());
        }
        let now = Instant::now();
        let mut last = lock(&self.last_login);
        if let Some(&previous) = last.get(user)
            && now.duration_since(previous) < delay
        {
            return Err(u32::try_from(delay.as_secs()).unwrap_or(u32::MAX));
        }
        if last.len() > 100_000 {
            last.retain(|_, t| now.duration_since(*t) < delay);
        }
        last.insert(user.to_owned(), now);
        Ok(())
    }

    /// Where a user's Maildir is.
    fn maildir_for(&self, user: &User) -> Result<Maildir, LocationError> {
        maildir_for(&self.config, user)
    }

    fn idle_timeout(&self) -> Duration {
        self.config.pop3.idle_timeout.0
    }
}

/// Where a user's Maildir is: the user's `userdb_mail`, else
/// `users.mail_location`, else the default layout under `{data_dir}/mail`.
pub fn maildir_for(config: &Config, user: &User) -> Result<Maildir, LocationError> {
    let home = user.home.as_deref();
    let path = match (&user.mail, &config.users.mail_location) {
        (Some(template), _) | (None, Some(template)) => {
            location::expand(template, &user.name, home)?
        }
        (None, None) => location::default_location(&config.mail_root(), &user.name),
    };
    Ok(Maildir::new(path))
}

/// Two users whose Maildir would be one directory (issue 12, finding 3):
/// a `mail_location` such as `/var/mail/%n` with `bob@a.example` and
/// `bob@b.example`, or `userdb_mail` fields naming one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedMaildir {
    /// The later user in the file: the one left out.
    pub user: String,
    /// The earlier user, whose Maildir it is.
    pub owner: String,
    /// The directory.
    pub path: std::path::PathBuf,
}

/// Every user (in `names`' order, the file's) whose Maildir is an earlier
/// user's. Paths are compared after lexical normalisation (`.`, `..`,
/// repeated and trailing slashes), so `mail/./bob` is `mail/bob`.
pub fn shared_maildirs<'a>(
    config: &Config,
    users: &Users,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<SharedMaildir> {
    let mut owners: std::collections::HashMap<std::path::PathBuf, String> =
        std::collections::HashMap::new();
    let mut shared = Vec::new();
    for name in names {
        let Some(user) = users.get(name) else {
            continue;
        };
        let Ok(maildir) = maildir_for(config, user) else {
            continue;
        };
        let path = normalise(maildir.root());
        match owners.get(&path) {
            Some(owner) if !owner.eq_ignore_ascii_case(&user.name) => shared.push(SharedMaildir {
                user: user.name.clone(),
                owner: owner.clone(),
                path,
            }),
            Some(_) => {}
            None => {
                owners.insert(path, user.name.clone());
            }
        }
    }
    shared
}

fn normalise(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether an address is a loopback address (v4-mapped included).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    crate::relay::canonical_ip(ip).is_loopback()
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
    };
    let shutdown = service.shutdown.clone();
    crate::accept::serve(gate, listener, shutdown, |tcp, peer| {
        driver::handle(service.clone(), tcp, peer, implicit_tls)
    })
    .await;
}

/// Records a POP-before-SMTP grant for a successful login.
pub(crate) fn grant_relay(service: &Pop3Service, ip: IpAddr, user: &str) {
    let mut grants = lock(&service.grants);
    if grants.enabled() {
        grants.grant(ip, user, Instant::now());
        tracing::info!(rip = %ip, user = %crate::logtext::Escaped(user.as_bytes()), "pop-before-smtp grant");
    }
}

/// Addresses for logs: the peer's address without a v4-mapped prefix.
pub(crate) fn display_ip(addr: SocketAddr) -> IpAddr {
    crate::relay::canonical_ip(addr.ip())
}
