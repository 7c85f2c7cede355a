//! Starting and stopping the whole server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::backend::{
    Backend, GreylistTimes, MaildirStore, MemoryGrants, MemoryGreylist, MemoryLoginTimes,
    MemoryPenalties,
};
use crate::config::{Config, ConfigError};
use crate::login_guard::LoginGuard;
use crate::pop3::{self, Pop3Service};
use crate::relay::Aliases;
use crate::sender_logins::SenderLogins;
use crate::smtp::{self, Listener, SmtpService};
use crate::tls::{self, TlsError};
use crate::userstore::UserStore;

/// The most greylisting triplets one node remembers (about 100 bytes
/// each); past it, new triplets pass unrecorded.
const MAX_GREYLIST_TRIPLETS: usize = 500_000;

/// What the POP3 and SMTP services share: configuration, the backend
/// (users, maildrops, relay grants, login penalties), TLS, the login
/// guard, and the shutdown signal.
#[derive(Clone)]
pub struct Shared {
    /// The configuration.
    pub config: Arc<Config>,
    /// Where users, mail, grants and penalties are kept.
    pub backend: Backend,
    /// The TLS acceptor.
    pub tls: TlsAcceptor,
    /// Login turns and penalties, for both protocols.
    pub guard: Arc<LoginGuard>,
    /// Turns true when the server stops.
    pub shutdown: watch::Receiver<bool>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The passwd-file could not be read.
    #[error("cannot read users from {path}: {error}")]
    Users {
        /// The passwd-file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The server secret could not be read or made.
    #[error("users.secret_file {path}: {error}")]
    Secret {
        /// The secret file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A DKIM key could not be read or used.
    #[error("dkim: {0}")]
    Dkim(#[from] yubin_mailauth::dkim::KeyringError),
    /// The aliases file could not be read or parsed.
    #[error("smtp.aliases_file: {0}")]
    Aliases(String),
    /// The sender logins file could not be read or parsed.
    #[error("smtp.sender_logins_file: {0}")]
    SenderLogins(String),
    /// The queue directory could not be prepared.
    #[error("cannot prepare the queue: {0}")]
    Queue(#[from] yubin_queue::QueueError),
    /// The first start's demo user could not be made.
    #[error("first start: {0}")]
    FirstRun(String),
    /// The shared database (`storage.backend = "postgres"`) failed.
    #[error("postgres: {0}")]
    Database(yubin_pg::DbError),
    /// The server cannot run as the configured account.
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
    /// A listening socket could not be opened.
    #[error("cannot listen on {address} ({key}): {error}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The configuration key it came from.
        key: &'static str,
        /// Why.
        error: std::io::Error,
    },
}

/// A listener bound at start, to be served once privileges are dropped.
enum Bound {
    Pop3(TcpListener, bool),
    Smtp(TcpListener, Listener),
    Policy(TcpListener),
}

/// A running server.
pub struct Server {
    /// Where plain POP3 listens (port resolved, so `:0` in tests works).
    pub pop3_addresses: Vec<SocketAddr>,
    /// Where POP3S listens.
    pub pop3s_addresses: Vec<SocketAddr>,
    /// Where SMTP (MX, port 25's role) listens.
    pub smtp_addresses: Vec<SocketAddr>,
    /// Where submission with STARTTLS listens.
    pub submission_addresses: Vec<SocketAddr>,
    /// Where submission with implicit TLS listens.
    pub submissions_addresses: Vec<SocketAddr>,
    /// Where the Postfix policy service listens.
    pub policy_addresses: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pop3: Arc<Pop3Service>,
    smtp: Arc<SmtpService>,
}

impl Server {
    /// Loads users and TLS, binds every listener and starts serving.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Server::start_then(config, |_| Ok(())).await
    }

    /// As [`Server::start`], with `before_serving` called once every
    /// listener is bound and the configured key files are read, before
    /// anything in the data directory is touched and before any connection
    /// is accepted: where `yubin serve` drops root.
    pub async fn start_then(
        config: Config,
        before_serving: impl FnOnce(&Config) -> Result<(), StartError>,
    ) -> Result<Server, StartError> {
        config.validate()?;
        let config = Arc::new(config);
        // As root (if started so), only what needs root: the listeners,
        // and key files named in the configuration (they may be readable by
        // root alone). Everything in the data directory is read and written
        // after `before_serving`, as the account the server runs as: root
        // never follows a path that account could have planted (issue 12).
        let explicit_tls = match (&config.tls.cert, &config.tls.key) {
            (Some(_), Some(_)) => Some(tls::server_config(&config)?),
            _ => None,
        };
        // Every listener first; nothing is served until `before_serving`.
        // "listening on" is logged once the server serves (scripts and
        // tests wait for it), not when the socket is bound.
        let mut announce: Vec<String> = Vec::new();
        let mut pending: Vec<Bound> = Vec::new();
        let mut pop3_addresses = Vec::new();
        let mut pop3s_addresses = Vec::new();
        for (key, addresses, implicit) in [
            ("pop3.listen", config.pop3_listen()?, false),
            ("pop3.listen_tls", config.pop3_listen_tls()?, true),
        ] {
            for address in addresses {
                let listener = bind(address, key, config.listen_backlog)?;
                let bound = listener.local_addr().unwrap_or(address);
                if implicit {
                    announce.push(format!("pop3s listening on {bound} (implicit TLS)"));
                    pop3s_addresses.push(bound);
                } else {
                    announce.push(format!("pop3 listening on {bound} (STLS available)"));
                    pop3_addresses.push(bound);
                }
                pending.push(Bound::Pop3(listener, implicit));
            }
        }

        let mut smtp_addresses = Vec::new();
        let mut submission_addresses = Vec::new();
        let mut submissions_addresses = Vec::new();
        for (key, addresses, kind) in [
            ("smtp.listen", config.smtp_listen()?, Listener::Mx),
            (
                "smtp.submission",
                config.smtp_submission()?,
                Listener::Submission,
            ),
            (
                "smtp.submissions",
                config.smtp_submissions()?,
                Listener::Submissions,
            ),
        ] {
            for address in addresses {
                let listener = bind(address, key, config.listen_backlog)?;
                let bound = listener.local_addr().unwrap_or(address);
                match kind {
                    Listener::Mx => {
                        announce.push(format!("smtp listening on {bound}"));
                        smtp_addresses.push(bound);
                    }
                    Listener::Submission => {
                        announce.push(format!(
                            "submission listening on {bound} (STARTTLS available)"
                        ));
                        submission_addresses.push(bound);
                    }
                    Listener::Submissions => {
                        announce.push(format!("submissions listening on {bound} (implicit TLS)"));
                        submissions_addresses.push(bound);
                    }
                }
                pending.push(Bound::Smtp(listener, kind));
            }
        }

        let mut policy_addresses = Vec::new();
        for address in config.policy_listen()? {
            let listener = bind(
                address,
                "pop_before_smtp.policy_listen",
                config.listen_backlog,
            )?;
            let bound = listener.local_addr().unwrap_or(address);
            announce.push(format!("policy service listening on {bound}"));
            policy_addresses.push(bound);
            pending.push(Bound::Policy(listener));
        }

        before_serving(&config)?;

        let tls = TlsAcceptor::from(match explicit_tls {
            Some(tls) => tls,
            None => tls::server_config(&config)?,
        });
        let passwd = config.passwd_file();
        let secret_path = config.secret_file();
        let secret =
            crate::secret::load_or_create(&secret_path).map_err(|error| StartError::Secret {
                path: secret_path,
                error,
            })?;
        let sender_logins = match &config.smtp.sender_logins_file {
            Some(path) => SenderLogins::load(path).map_err(StartError::SenderLogins)?,
            None => SenderLogins::default(),
        };
        let dkim = config.dkim_keyring()?;
        for key in dkim.keys() {
            tracing::info!(
                domain = %key.domain,
                selector = %key.selector,
                algorithm = %key.algorithm(),
                "DKIM key loaded"
            );
        }
        let aliases = match &config.smtp.aliases_file {
            Some(path) => Aliases::load(path).map_err(StartError::Aliases)?,
            None => Aliases::default(),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let greylist_times = GreylistTimes {
            delay: config.inbound.greylist_delay.0,
            retry_window: Duration::from_secs(24 * 3600),
            keep: Duration::from_secs(35 * 24 * 3600),
        };
        // Where users, mail, grants and penalties live: this machine's
        // files and memory, or the database several nodes share.
        let mut shared_db = None;
        let backend = match config.storage.backend {
            crate::config::Backend::Maildir => {
                let users = UserStore::open_for(&passwd, Some(secret), Some(config.clone()))
                    .map_err(|error| StartError::Users {
                        path: passwd.clone(),
                        error,
                    })?;
                let pbs = &config.pop_before_smtp;
                Backend {
                    users: Arc::new(users),
                    mail: Arc::new(MaildirStore::new(config.clone())),
                    grants: Arc::new(MemoryGrants::new(
                        pbs.window.0,
                        pbs.ipv6_prefix,
                        pbs.max_grants,
                    )),
                    penalties: Arc::new(MemoryPenalties::new(LoginGuard::MAX_ADDRESSES)),
                    login_times: Arc::new(MemoryLoginTimes::default()),
                    greylist: Arc::new(MemoryGreylist::new(greylist_times, MAX_GREYLIST_TRIPLETS)),
                    queue: Arc::new(yubin_queue::Queue::new(config.queue_dir())),
                }
            }
            crate::config::Backend::Postgres => {
                let shared = crate::backend::pg::Shared::open(&config, secret, greylist_times)
                    .await
                    .map_err(StartError::Database)?;
                let backend = shared.backend.clone();
                shared_db = Some(shared);
                backend
            }
        };
        let guard = Arc::new(LoginGuard::new(
            backend.penalties.clone(),
            config.users.login_penalty_max.0,
        ));
        let queue_wake = Arc::new(yubin_queue::engine::Arrivals::default());
        let shared = Shared {
            config: config.clone(),
            backend: backend.clone(),
            tls,
            guard,
            shutdown: shutdown_rx.clone(),
        };
        let pop3 = Arc::new(Pop3Service::new(&shared));
        let smtp = Arc::new(SmtpService::new(
            &shared,
            aliases,
            sender_logins,
            dkim,
            queue_wake.clone(),
        )?);
        // Entries in tmp/ were never acknowledged with 250: the client
        // still has them and will retry.
        let abandoned = smtp.queue.recover()?;
        if abandoned > 0 {
            tracing::info!("removed {abandoned} unacknowledged queue entries left by a crash");
        }
        // Spool files of messages being received when the process died.
        // (A file still open elsewhere stays readable through its descriptor.)
        if let Ok(entries) = std::fs::read_dir(config.data_dir.join("spool")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }

        let mut tasks = Vec::new();
        if let Some(shared) = shared_db {
            tasks.push(tokio::spawn(shared.keep(shutdown_rx.clone())));
        }
        for bound in pending {
            tasks.push(match bound {
                Bound::Pop3(listener, implicit) => {
                    tokio::spawn(pop3::serve(pop3.clone(), listener, implicit))
                }
                Bound::Smtp(listener, kind) => {
                    tokio::spawn(smtp::serve(smtp.clone(), listener, kind))
                }
                Bound::Policy(listener) => tokio::spawn(crate::policy::serve(
                    listener,
                    backend.grants.clone(),
                    shutdown_rx.clone(),
                )),
            });
        }
        // The delivery engine: relayed mail leaves from here.
        let engine = yubin_queue::engine::Engine::new(
            smtp.queue.clone(),
            yubin_queue::engine::EngineConfig {
                hostname: config.hostname.clone(),
                routes: config.queue.routes()?,
                schedule: config.queue.schedule(),
                max_workers: config.queue.max_workers,
                max_per_destination: config.queue.max_per_destination,
                rescan: Duration::from_secs(30),
            },
            yubin_queue::engine::Transport::new(
                config.hostname.clone(),
                config.queue.connect_timeout.0,
                smtp_addresses
                    .iter()
                    .chain(&submission_addresses)
                    .chain(&submissions_addresses)
                    .copied()
                    .collect(),
            )
            .with_timeouts(config.queue.timeouts()),
            {
                let dns = match config.dns_resolver()? {
                    Some(server) => yubin_queue::engine::HickoryDns::server(server),
                    None => yubin_queue::engine::HickoryDns::system(),
                };
                match (config.queue.dane, dns.validates()) {
                    (true, true) => {
                        tracing::info!(
                            "DANE on: the resolver is on this host, its AD bit is believed"
                        );
                        dns
                    }
                    (true, false) => {
                        tracing::info!(
                            "DANE off: it needs a DNSSEC-validating resolver on this host (dns.resolver, e.g. unbound on 127.0.0.1)"
                        );
                        dns.without_dane()
                    }
                    (false, _) => dns.without_dane(),
                }
            },
            smtp.clone(),
            queue_wake,
        );
        let engine = if config.queue.mta_sts {
            engine.with_sts(yubin_queue::engine::sts::Sts::new(
                config.queue_dir().join("mta-sts"),
                config.queue.mta_sts_port,
            ))
        } else {
            engine
        };
        let engine = Arc::new(match tls_reporter(&config, &smtp.dkim) {
            Some(reporter) => engine.with_tls_reports(yubin_queue::engine::TlsReports::new(
                config.queue_dir().join("tls-rpt"),
                reporter,
                config.queue.tls_report_period.0,
            )),
            None => engine,
        });
        tasks.push(tokio::spawn(engine.run(shutdown_rx.clone())));

        // Pick up passwd-file changes (yubin user add) without a restart.
        let mut reload_shutdown = shutdown_rx;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = reload_shutdown.changed() => return,
                }
                let users = backend.users.clone();
                let _ = tokio::task::spawn_blocking(move || users.refresh()).await;
            }
        }));

        for line in announce {
            tracing::info!("{line}");
        }
        Ok(Server {
            pop3_addresses,
            pop3s_addresses,
            smtp_addresses,
            submission_addresses,
            submissions_addresses,
            policy_addresses,
            shutdown,
            tasks,
            pop3,
            smtp,
        })
    }

    /// Runs until SIGINT or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }

    /// Stops accepting, tells every session to end (without UPDATE), and
    /// waits up to 10 seconds for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let pop3_max = u32::try_from(self.pop3.config.pop3.max_connections).unwrap_or(u32::MAX);
        let smtp_max = u32::try_from(self.smtp.config.smtp.max_connections).unwrap_or(u32::MAX);
        let all_closed = async {
            let _pop3 = self.pop3.connections.acquire_many(pop3_max).await;
            let _smtp = self.smtp.connections.acquire_many(smtp_max).await;
        };
        if tokio::time::timeout(Duration::from_secs(10), all_closed)
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not end within 10 s");
        }
    }
}

/// A listening socket with `backlog` (see `Config::listen_backlog`),
/// address reuse as the standard library sets it, and dual-stack `[::]`
/// as the system's default has it.
fn bind(address: SocketAddr, key: &'static str, backlog: u32) -> Result<TcpListener, StartError> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        TcpListener::from_std(socket.into())
    };
    listen().map_err(|error| StartError::Listen {
        address,
        key,
        error,
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Who signs TLS reports (RFC 8460): the contact address's domain is the
/// submitter, and reports go only when a DKIM key signs for it, since
/// receivers ignore unsigned reports (§5.3). `None`: no reports.
fn tls_reporter(
    config: &Config,
    dkim: &yubin_mailauth::dkim::Keyring,
) -> Option<yubin_queue::tls_rpt::Reporter> {
    if !config.queue.tls_reports {
        return None;
    }
    let contact = config
        .queue
        .tls_report_contact
        .clone()
        .unwrap_or_else(|| format!("postmaster@{}", config.hostname));
    let submitter = contact
        .rsplit_once('@')
        .map_or(config.hostname.as_str(), |(_, domain)| domain)
        .to_ascii_lowercase();
    if dkim.for_domain(&submitter).is_empty() {
        tracing::info!(%submitter, "TLS reports off: no DKIM key signs for {submitter}, and receivers ignore unsigned reports (yubin dkim keygen)");
        return None;
    }
    Some(yubin_queue::tls_rpt::Reporter {
        organization: config
            .queue
            .tls_report_organization
            .clone()
            .unwrap_or_else(|| config.hostname.clone()),
        contact,
        submitter,
    })
}
