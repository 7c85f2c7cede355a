//! The configuration file: one TOML file in which every key has a default.
//!
//! Key names are user-facing and documented in docs/configuration.md; unknown
//! keys are errors (a typo must not silently fall back to a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use yubin_smtp_proto::data::{BareLineEnd, LineEnds};

pub use crate::config_error::ConfigError;
use crate::config_error::invalid;
use yubin_duration::HumanDuration;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This server's name: in greetings, APOP challenges, Maildir file names.
    pub hostname: String,
    /// Where users, mail and generated TLS keys live by default.
    pub data_dir: PathBuf,
    /// TLS certificate and key.
    pub tls: TlsConfig,
    /// Users and their maildrops.
    pub users: UsersConfig,
    /// The POP3 service.
    pub pop3: Pop3Config,
    /// The SMTP service.
    pub smtp: SmtpConfig,
    /// POP-before-SMTP relay grants.
    pub pop_before_smtp: PopBeforeSmtpConfig,
    /// The outbound queue's delivery engine.
    pub queue: crate::queue_config::QueueConfig,
    /// Where DNS questions go.
    pub dns: DnsConfig,
    /// DKIM signing of mail that leaves.
    pub dkim: DkimConfig,
    /// Sender authentication of mail that arrives.
    pub inbound: crate::inbound_config::InboundConfig,
    /// Where users, maildrops and the rest are kept.
    pub storage: StorageConfig,
    /// The PostgreSQL database, for `storage.backend = "postgres"`.
    pub postgres: PostgresConfig,
    /// Content filters (`[[filter]]`), applied in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<crate::filter_config::FilterConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Whom the server runs as.
    pub server: ServerConfig,
    /// How many connections each listener lets the kernel queue before
    /// they are accepted (listen(2)'s backlog; Linux caps it at
    /// `net.core.somaxconn`). The standard library's 128 drops connections
    /// in bursts (issue 12).
    pub listen_backlog: u32,
}

/// `[tls]`
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. Default: a self-signed one generated in `{data_dir}/tls/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// `[users]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// Dovecot passwd-file. Default `{data_dir}/users`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passwd_file: Option<PathBuf>,
    /// Maildir location template (`%u`, `%n`, `%d`, `%h`, `~`). Default:
    /// `{data_dir}/mail/%d/%n`, or `{data_dir}/mail/%u` for names without a domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_location: Option<String>,
    /// Failed logins from one address (POP3 and SMTP together) double the
    /// protocol's `auth_failure_delay` each time, up to this.
    pub login_penalty_max: HumanDuration,
    /// The server secret (made on first start): what SCRAM salts that are
    /// not stored derive from. Default `{data_dir}/secret`; nodes that share
    /// users share this file too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            passwd_file: None,
            mail_location: None,
            login_penalty_max: HumanDuration(Duration::from_secs(15)),
            secret_file: None,
        }
    }
}

/// Where plaintext passwords (USER/PASS, AUTH PLAIN and LOGIN) are accepted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlaintextAuth {
    /// Only under TLS, or from a loopback address.
    #[default]
    Tls,
    /// Everywhere.
    Always,
    /// Nowhere: only APOP, CRAM-MD5 and SCRAM.
    Never,
}

/// What to do with a message whose header has UTF-8 when the client has
/// not enabled UTF-8 mode (RFC 6856 §2.1).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Utf8Headers {
    /// Send it as it is stored, as Dovecot and most servers do: every
    /// client can fetch and delete it.
    #[default]
    Send,
    /// Refuse RETR and TOP with `-ERR [UTF8]`, RFC 6856's strict reading.
    Refuse,
    /// Send an RFC 6858 surrogate: UTF-8 in the header turned into RFC
    /// 2047 encoded-words, internationalised addresses into invalid ones
    /// that show what they were; LIST and STAT give the surrogate's size.
    Downgrade,
}

/// `[pop3]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// Plain POP3 listeners (STLS available).
    pub listen: Vec<String>,
    /// Implicit-TLS POP3S listeners (RFC 8314).
    pub listen_tls: Vec<String>,
    /// Where plaintext passwords are accepted.
    pub plaintext_auth: PlaintextAuth,
    /// Autologout timer (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout: HumanDuration,
    /// Pause before answering a failed login.
    pub auth_failure_delay: HumanDuration,
    /// Minimum time between two logins of a user (LOGIN-DELAY); `"0"` is off.
    pub login_delay: HumanDuration,
    /// EXPIRE capability: `"never"`, a number of days, or unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire: Option<String>,
    /// Whether APOP is offered (only works for users with a PLAIN password).
    pub apop: bool,
    /// Messages with 8-bit headers for clients without UTF8 mode.
    pub utf8_headers: Utf8Headers,
    /// Longest command line accepted, in octets.
    pub max_line_length: usize,
    /// Most simultaneous connections; more are turned away.
    pub max_connections: usize,
    /// Simultaneous connections from one client address (loopback exempt);
    /// 0: no limit.
    pub max_connections_per_ip: usize,
    /// Networks of load balancers whose connections start with a PROXY
    /// protocol header (v1 or v2) naming the client; when set, only they
    /// may connect to the POP3 listeners.
    pub proxy_protocol: Vec<String>,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: vec!["127.0.0.1:1110".into()],
            listen_tls: vec!["127.0.0.1:1995".into()],
            plaintext_auth: PlaintextAuth::Tls,
            idle_timeout: HumanDuration(Duration::from_secs(600)),
            auth_failure_delay: HumanDuration(Duration::from_secs(2)),
            login_delay: HumanDuration(Duration::ZERO),
            expire: None,
            apop: true,
            utf8_headers: Utf8Headers::Send,
            max_line_length: 8190,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            proxy_protocol: Vec::new(),
        }
    }
}

/// `[smtp]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The MX listeners: mail for local users from anyone, relay for the authorised.
    pub listen: Vec<String>,
    /// Submission listeners (port 587 style): STARTTLS, AUTH required to send.
    pub submission: Vec<String>,
    /// Implicit-TLS submission listeners (port 465 style, RFC 8314).
    pub submissions: Vec<String>,
    /// Domains delivered here. Default: the domains of the users in the
    /// passwd-file, plus `hostname`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_domains: Option<Vec<String>>,
    /// Client networks (CIDR) allowed to relay without authentication.
    pub relay_networks: Vec<String>,
    /// Largest message accepted, in octets (the SIZE extension).
    pub max_message_size: u64,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4
    /// says 512; AUTH lines with long initial responses need more).
    pub max_line_length: usize,
    /// Protocol errors tolerated in a session; the next one ends it with 421.
    pub max_errors: u32,
    /// How long a client may stay silent (RFC 5321 §4.5.3.2: at least 5 minutes).
    pub timeout: HumanDuration,
    /// Where AUTH with PLAIN or LOGIN is accepted (as for POP3).
    pub plaintext_auth: PlaintextAuth,
    /// Pause before answering a failed AUTH.
    pub auth_failure_delay: HumanDuration,
    /// Optional aliases file (`alias: target, target`), one level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aliases_file: Option<PathBuf>,
    /// The outbound queue. Default `{data_dir}/queue`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_dir: Option<PathBuf>,
    /// Most simultaneous SMTP connections.
    pub max_connections: usize,
    /// Most `Received:` fields a message may carry before it is refused as
    /// a forwarding loop (RFC 5321 §6.3 asks for at least 100).
    pub max_hops: u32,
    /// Commands that move no mail (NOOP, RSET, VRFY, HELP) allowed in a
    /// session before each counts as an error (Postfix's
    /// `smtpd_junk_command_limit`).
    pub max_junk_commands: u32,
    /// Simultaneous connections from one client address (loopback exempt);
    /// 0: no limit.
    pub max_connections_per_ip: usize,
    /// Networks of load balancers whose connections start with a PROXY
    /// protocol header (v1 or v2) naming the client; when set, only they
    /// may connect to the SMTP listeners.
    pub proxy_protocol: Vec<String>,
    /// A DATA line ending in LF without CR: `"normalize"` takes it as a line
    /// end (Postfix's default), `"reject"` refuses the message (550 5.5.2).
    pub bare_lf: BareLineEndPolicy,
    /// A CR without LF inside DATA: `"reject"` (the default) or `"normalize"`.
    pub bare_cr: BareLineEndPolicy,
    /// Refuse MAIL FROM and RCPT TO addresses without `<` `>` (Postfix's
    /// `strict_rfc821_envelopes`); off by default.
    pub strict_envelopes: bool,
    /// Leave the client's name and address out of the Received line of
    /// submitted mail (a common privacy choice); off by default.
    pub hide_client: bool,
    /// Whether an authenticated client (or one relaying on a
    /// POP-before-SMTP grant) may use only its user's own addresses in
    /// MAIL FROM and the From: field.
    pub sender_identity: SenderIdentity,
    /// `sender_identity` for the addresses of particular domains:
    /// `{ "lists.example.org" = "off" }`.
    pub sender_identity_domains: std::collections::BTreeMap<String, SenderIdentity>,
    /// Hold `relay_networks` clients to the rule too: their senders must be
    /// addresses of this server's users (any user's).
    pub sender_identity_networks: bool,
    /// More addresses users may send as, in Postfix's
    /// `smtpd_sender_login_maps` text form (`address user, user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_logins_file: Option<PathBuf>,
}

/// What happens when a user's mail names a sender that is not the user's.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SenderIdentity {
    /// Refused: `553 5.7.1` (Postfix's `reject_sender_login_mismatch`).
    #[default]
    Enforce,
    /// Accepted, and logged.
    Log,
    /// Not checked.
    Off,
}

/// What a bare LF or bare CR inside DATA does (see `yubin_smtp_proto::data`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndPolicy {
    /// Taken as a line end; the line after it can never end the data.
    Normalize,
    /// The message is refused with 550 5.5.2.
    Reject,
}

impl SmtpConfig {
    /// The sender-identity rule for an address in `domain`: the entry of
    /// `sender_identity_domains` for the domain or its nearest parent
    /// (`"example.org"` covers `pay.example.org`), else `sender_identity`.
    /// `None`: the null sender, which is always allowed.
    pub fn sender_identity_for(&self, domain: Option<&str>) -> SenderIdentity {
        let Some(domain) = domain else {
            return self.sender_identity;
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = domain.as_str();
        loop {
            if let Some((_, mode)) = self
                .sender_identity_domains
                .iter()
                .find(|(k, _)| k.trim_end_matches('.').eq_ignore_ascii_case(candidate))
            {
                return *mode;
            }
            match candidate.split_once('.') {
                Some((_, parent)) => candidate = parent,
                None => return self.sender_identity,
            }
        }
    }

    /// The DATA line-end policy for the protocol core.
    pub fn line_ends(&self) -> LineEnds {
        let policy = |p: BareLineEndPolicy| match p {
            BareLineEndPolicy::Normalize => BareLineEnd::Normalize,
            BareLineEndPolicy::Reject => BareLineEnd::Reject,
        };
        LineEnds {
            bare_lf: policy(self.bare_lf),
            bare_cr: policy(self.bare_cr),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec!["127.0.0.1:2525".into()],
            submission: vec!["127.0.0.1:1587".into()],
            submissions: vec!["127.0.0.1:1465".into()],
            local_domains: None,
            relay_networks: Vec::new(),
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 4096,
            max_errors: 20,
            timeout: HumanDuration(Duration::from_secs(300)),
            plaintext_auth: PlaintextAuth::Tls,
            auth_failure_delay: HumanDuration(Duration::from_secs(2)),
            aliases_file: None,
            queue_dir: None,
            max_connections: 10_000,
            max_hops: 100,
            max_junk_commands: 100,
            max_connections_per_ip: 50,
            bare_lf: BareLineEndPolicy::Normalize,
            bare_cr: BareLineEndPolicy::Reject,
            strict_envelopes: false,
            hide_client: false,
            sender_identity: SenderIdentity::Enforce,
            sender_identity_domains: std::collections::BTreeMap::new(),
            sender_identity_networks: false,
            sender_logins_file: None,
            proxy_protocol: Vec::new(),
        }
    }
}

/// `[pop_before_smtp]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PopBeforeSmtpConfig {
    /// How long a POP3 login authorises its address to relay; `"0"` is off.
    pub window: HumanDuration,
    /// IPv6 clients are matched on this many leading bits (128: exact).
    pub ipv6_prefix: u8,
    /// Most grants kept (expired ones are purged first).
    pub max_grants: usize,
    /// Postfix policy-delegation listeners (SMTPD_POLICY_README), off when empty.
    pub policy_listen: Vec<String>,
}

impl Default for PopBeforeSmtpConfig {
    fn default() -> Self {
        PopBeforeSmtpConfig {
            window: HumanDuration(Duration::from_secs(600)),
            ipv6_prefix: 128,
            max_grants: 100_000,
            policy_listen: Vec::new(),
        }
    }
}

/// `[dns]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// `"system"` (`/etc/resolv.conf`) or one name server as `ip:port`;
    /// used by MX routing and, as they come, DKIM, SPF, DMARC, MTA-STS
    /// and DANE. `queue.dns` is its older name.
    pub resolver: String,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            resolver: "system".into(),
        }
    }
}

/// `[dkim]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DkimConfig {
    /// Sign mail that leaves wherever a key exists for its From: domain.
    pub sign: bool,
    /// A key per domain, in the place of that domain's keys under
    /// `{data_dir}/dkim/DOMAIN/`.
    pub domains: std::collections::BTreeMap<String, DkimDomain>,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            sign: true,
            domains: std::collections::BTreeMap::new(),
        }
    }
}

/// `[dkim.domains."example.org"]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DkimDomain {
    /// The selector its public key is published under.
    pub selector: String,
    /// The PEM private key (RSA of 2048 bits or more, or Ed25519).
    pub key: PathBuf,
}

/// `[server]`: whom the server runs as once its listeners are open.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The account to run as when started as root (default `nobody`);
    /// the data directory is handed to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its group (default: the account's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Keep running as root when started as root and no `user` is set.
    pub allow_root: bool,
    /// This node's name in logs and as the owner of locks and leases.
    /// Default: the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// Where yubin keeps what it holds.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One node: Maildirs, the passwd-file, the queue directory; no
    /// database.
    #[default]
    Maildir,
    /// Several nodes sharing one PostgreSQL database.
    Postgres,
}

/// `[storage]`
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `"maildir"` (the default) or `"postgres"`.
    pub backend: Backend,
}

/// `[postgres]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq-style URL (`postgresql://yubin@127.0.0.1:5432/yubin`) or
    /// `key=value` pairs (`host=/run/postgresql dbname=yubin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Connections per node, at most.
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            pool_size: 16,
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: system_hostname(),
            data_dir: PathBuf::from("yubin-data"),
            tls: TlsConfig::default(),
            users: UsersConfig::default(),
            pop3: Pop3Config::default(),
            smtp: SmtpConfig::default(),
            pop_before_smtp: PopBeforeSmtpConfig::default(),
            queue: crate::queue_config::QueueConfig::default(),
            inbound: crate::inbound_config::InboundConfig::default(),
            filter: Vec::new(),
            storage: StorageConfig::default(),
            postgres: PostgresConfig::default(),
            dns: DnsConfig::default(),
            dkim: DkimConfig::default(),
            log: LogConfig::default(),
            server: ServerConfig::default(),
            listen_backlog: 4096,
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks configuration text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hostname.is_empty()
            || self
                .hostname
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "hostname",
                "must be a non-empty name without spaces",
            ));
        }
        self.pop3_listen()?;
        self.pop3_listen_tls()?;
        let pop3 = &self.pop3;
        if pop3.idle_timeout.0 < Duration::from_secs(1) {
            return Err(invalid(
                "pop3.idle_timeout",
                "must be at least 1s (RFC 1939 recommends 10m or more)",
            ));
        }
        if pop3.max_line_length < 255 {
            return Err(invalid(
                "pop3.max_line_length",
                "must be at least 255 (RFC 2449 §4 requires 255-octet commands)",
            ));
        }
        if pop3.max_connections == 0 {
            return Err(invalid("pop3.max_connections", "must be at least 1"));
        }
        if u32::try_from(pop3.login_delay.0.as_secs()).is_err() {
            return Err(invalid("pop3.login_delay", "is too long"));
        }
        self.expire()?;
        self.smtp_listen()?;
        self.smtp_submission()?;
        self.smtp_submissions()?;
        self.policy_listen()?;
        self.relay_networks()?;
        let smtp = &self.smtp;
        if smtp.timeout.0 < Duration::from_secs(1) {
            return Err(invalid(
                "smtp.timeout",
                "must be at least 1s (RFC 5321 asks for 5m)",
            ));
        }
        if smtp.max_hops == 0 {
            return Err(invalid("smtp.max_hops", "must be positive"));
        }
        if smtp.max_message_size == 0 {
            return Err(invalid("smtp.max_message_size", "must be positive"));
        }
        if smtp.max_recipients == 0 {
            return Err(invalid(
                "smtp.max_recipients",
                "must be at least 1 (RFC 5321 asks servers to take 100)",
            ));
        }
        if smtp.max_connections == 0 {
            return Err(invalid("smtp.max_connections", "must be at least 1"));
        }
        if smtp.max_line_length < 512 {
            return Err(invalid(
                "smtp.max_line_length",
                "must be at least 512 (RFC 5321 §4.5.3.1.4)",
            ));
        }
        self.queue.check()?;
        self.inbound.check()?;
        self.proxy_networks("pop3")?;
        self.proxy_networks("smtp")?;
        if self.storage.backend == Backend::Postgres {
            let Some(url) = &self.postgres.url else {
                return Err(invalid(
                    "postgres.url",
                    "is needed with storage.backend = \"postgres\"",
                ));
            };
            if url.trim().is_empty() {
                return Err(invalid("postgres.url", "is empty"));
            }
        }
        if self.postgres.pool_size == 0 {
            return Err(invalid("postgres.pool_size", "must be at least 1"));
        }
        if let Some(node) = &self.server.node_name
            && !crate::config_error::is_word(node, b"-._")
        {
            return Err(invalid(
                "server.node_name",
                "must be letters, digits, '-', '.' and '_'",
            ));
        }
        for (i, filter) in self.filter.iter().enumerate() {
            filter.check(i)?;
        }
        self.dns_resolver()?;
        for (domain, entry) in &self.dkim.domains {
            let name_ok = |s: &str| {
                !s.is_empty()
                    && s.split('.').all(|l| {
                        !l.is_empty()
                            && l.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    })
            };
            if !name_ok(domain) {
                return Err(invalid(
                    format!("dkim.domains.{domain:?}"),
                    "is not a domain name",
                ));
            }
            if !name_ok(&entry.selector) {
                return Err(invalid(
                    format!("dkim.domains.{domain:?}.selector"),
                    format!(
                        "{:?} is not a selector (letters, digits, '-', '.')",
                        entry.selector
                    ),
                ));
            }
        }
        if self.pop_before_smtp.ipv6_prefix > 128 {
            return Err(invalid("pop_before_smtp.ipv6_prefix", "must be 0 to 128"));
        }
        if let Some(domains) = &smtp.local_domains {
            for (i, d) in domains.iter().enumerate() {
                if d.is_empty() || d.contains(['@', ' ', '/']) {
                    return Err(invalid(
                        format!("smtp.local_domains[{i}]"),
                        format!("{d:?} is not a domain"),
                    ));
                }
            }
        }
        if let Some(template) = &self.users.mail_location {
            yubin_store::location::expand(template, "check@example.org", Some("/home/check"))
                .map_err(|e| invalid("users.mail_location", e.to_string()))?;
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                "tls",
                "set both cert and key, or neither (for a generated self-signed pair)",
            ));
        }
        Ok(())
    }

    /// The parsed `pop3.listen` addresses.
    pub fn pop3_listen(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        parse_addresses("pop3.listen", &self.pop3.listen)
    }

    /// The parsed `pop3.listen_tls` addresses.
    pub fn pop3_listen_tls(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        parse_addresses("pop3.listen_tls", &self.pop3.listen_tls)
    }

    /// The parsed `smtp.listen` addresses.
    pub fn smtp_listen(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        parse_addresses("smtp.listen", &self.smtp.listen)
    }

    /// The parsed `smtp.submission` addresses.
    pub fn smtp_submission(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        parse_addresses("smtp.submission", &self.smtp.submission)
    }

    /// The parsed `smtp.submissions` addresses.
    pub fn smtp_submissions(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        parse_addresses("smtp.submissions", &self.smtp.submissions)
    }

    /// The parsed `pop_before_smtp.policy_listen` addresses.
    pub fn policy_listen(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        parse_addresses(
            "pop_before_smtp.policy_listen",
            &self.pop_before_smtp.policy_listen,
        )
    }

    /// The parsed `smtp.relay_networks`.
    pub fn relay_networks(&self) -> Result<Vec<crate::relay::Network>, ConfigError> {
        self.smtp
            .relay_networks
            .iter()
            .enumerate()
            .map(|(i, n)| {
                crate::relay::Network::parse(n).ok_or_else(|| {
                    invalid(
                        format!("smtp.relay_networks[{i}]"),
                        format!("{n:?} is not a network (examples: \"192.168.0.0/24\", \"2001:db8::/32\")"),
                    )
                })
            })
            .collect()
    }

    /// The networks of `pop3.proxy_protocol` or `smtp.proxy_protocol`.
    pub fn proxy_networks(
        &self,
        protocol: &str,
    ) -> Result<Vec<crate::relay::Network>, ConfigError> {
        let list = if protocol == "pop3" {
            &self.pop3.proxy_protocol
        } else {
            &self.smtp.proxy_protocol
        };
        list.iter()
            .enumerate()
            .map(|(i, n)| {
                crate::relay::Network::parse(n).ok_or_else(|| {
                    invalid(
                        format!("{protocol}.proxy_protocol[{i}]"),
                        format!(
                            "{n:?} is not a network (examples: \"127.0.0.1/32\", \"10.0.0.0/8\")"
                        ),
                    )
                })
            })
            .collect()
    }

    /// The name server for every DNS question (`dns.resolver`, or the
    /// older `queue.dns`); `None`: the system's.
    pub fn dns_resolver(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let parse = |key: &str, value: &str| {
            if value == "system" {
                return Ok(None);
            }
            value
                .parse()
                .map(Some)
                .map_err(|_| invalid(key, format!("{value:?} is neither \"system\" nor ip:port")))
        };
        let resolver = parse("dns.resolver", &self.dns.resolver)?;
        let old = parse("queue.dns", &self.queue.dns)?;
        match (resolver, old) {
            (Some(a), Some(b)) if a != b => Err(invalid(
                "queue.dns",
                "differs from dns.resolver; keep dns.resolver (queue.dns is its older name)",
            )),
            (Some(a), _) => Ok(Some(a)),
            (None, old) => Ok(old),
        }
    }

    /// Where DKIM keys are found: `{data_dir}/dkim/DOMAIN/SELECTOR.key`.
    pub fn dkim_dir(&self) -> PathBuf {
        self.data_dir.join("dkim")
    }

    /// The keys configured per domain.
    pub fn dkim_overrides(&self) -> Vec<yubin_mailauth::dkim::Override> {
        self.dkim
            .domains
            .iter()
            .map(|(domain, entry)| yubin_mailauth::dkim::Override {
                domain: domain.clone(),
                selector: entry.selector.clone(),
                key: entry.key.clone(),
            })
            .collect()
    }

    /// The keys this server signs with: none when `dkim.sign` is off.
    pub fn dkim_keyring(
        &self,
    ) -> Result<yubin_mailauth::dkim::Keyring, yubin_mailauth::dkim::KeyringError> {
        if !self.dkim.sign {
            return Ok(yubin_mailauth::dkim::Keyring::default());
        }
        yubin_mailauth::dkim::Keyring::load(&self.dkim_dir(), &self.dkim_overrides())
    }

    /// The queue directory.
    pub fn queue_dir(&self) -> PathBuf {
        self.smtp
            .queue_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("queue"))
    }

    /// The EXPIRE setting.
    pub fn expire(&self) -> Result<Option<yubin_pop3_proto::Expire>, ConfigError> {
        use yubin_pop3_proto::Expire;
        match self.pop3.expire.as_deref() {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("never") => Ok(Some(Expire::Never)),
            Some(v) => v.parse().map(|d| Some(Expire::Days(d))).map_err(|_| {
                invalid(
                    "pop3.expire",
                    format!("{v:?} is neither \"never\" nor a number of days"),
                )
            }),
        }
    }

    /// This node's name, in logs and as the owner of locks and leases:
    /// `server.node_name`, or the host name.
    pub fn node_name(&self) -> &str {
        self.server.node_name.as_deref().unwrap_or(&self.hostname)
    }

    /// The passwd-file path.
    pub fn passwd_file(&self) -> PathBuf {
        self.users
            .passwd_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("users"))
    }

    /// The server secret (`users.secret_file`, default `{data_dir}/secret`).
    pub fn secret_file(&self) -> PathBuf {
        self.users
            .secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secret"))
    }

    /// The root of the default mail location.
    pub fn mail_root(&self) -> PathBuf {
        self.data_dir.join("mail")
    }

    /// The configuration as TOML, defaults filled in.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

fn parse_addresses(key: &str, values: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.parse().map_err(|_| {
                invalid(
                    format!("{key}[{i}]"),
                    format!(
                        "{v:?} is not an address:port (examples: \"0.0.0.0:110\", \"[::]:110\")"
                    ),
                )
            })
        })
        .collect()
}

/// The machine's host name, from the kernel; `localhost` if unknown.
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            c.pop3_listen().unwrap(),
            vec!["127.0.0.1:1110".parse().unwrap()]
        );
        assert_eq!(c.pop3.idle_timeout.0, Duration::from_secs(600));
        assert_eq!(c.passwd_file(), PathBuf::from("yubin-data/users"));
    }

    #[test]
    fn the_issue_example_parses() {
        let c = parse(
            r#"
hostname = "mail.example.org"
data_dir = "/var/lib/yubin"
[tls]
cert = "/etc/yubin/cert.pem"
key  = "/etc/yubin/key.pem"
[users]
passwd_file = "/etc/yubin/users"
mail_location = "/var/mail/%d/%n/Maildir"
[pop3]
listen = ["0.0.0.0:110"]
listen_tls = ["0.0.0.0:995"]
plaintext_auth = "tls"
idle_timeout = "10m"
auth_failure_delay = "2s"
"#,
        )
        .unwrap();
        assert_eq!(c.hostname, "mail.example.org");
        assert_eq!(c.pop3_listen_tls().unwrap()[0].port(), 995);
        // What check-config prints parses back to the same thing.
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[pop3]\nlisten = [\"nonsense\"]", "pop3.listen[0]"),
            ("[pop3]\nidle_timeout = \"10 minutes\"", "idle_timeout"),
            ("[pop3]\nplaintext_auth = \"sometimes\"", "plaintext_auth"),
            ("[pop3]\nlisten_tsl = []", "listen_tsl"),
            ("hostnme = \"x\"", "hostnme"),
            ("[users]\nmail_location = \"/m/%q\"", "users.mail_location"),
            ("[pop3]\nexpire = \"soon\"", "pop3.expire"),
            ("[tls]\ncert = \"/c.pem\"", "tls"),
            ("[pop3]\nmax_line_length = 10", "pop3.max_line_length"),
        ];
        for (text, key) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(key), "{text:?} gave {message:?}");
        }
    }
}
