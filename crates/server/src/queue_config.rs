//! `[queue]`: where relayed mail goes and how hard we try (the delivery
//! engine of `yubin-queue`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use yubin_queue::Schedule;
use yubin_queue::engine::TlsLevel;
use yubin_queue::engine::{Hop, Routes};
use yubin_smtp_proto::client::Credentials;

use crate::config_error::{ConfigError, invalid};
use yubin_duration::HumanDuration;

/// `[queue]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Transport map: domain (or `*`) → `host:port` (Postfix's transport(5)).
    pub routes: BTreeMap<String, String>,
    /// STARTTLS to MX hosts and routes: `none`, `opportunistic`, `required`.
    pub tls: String,
    /// Per destination domain, a STARTTLS policy other than `tls`
    /// (Postfix's `smtp_tls_policy_maps`), e.g. `{ "bank.example" = "required" }`.
    pub tls_policy: BTreeMap<String, String>,
    /// Smarthost for everything the routes do not name: `host:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayhost: Option<String>,
    /// STARTTLS to the smarthost.
    pub relayhost_tls: String,
    /// A file whose first line is `user:password` for AUTH at the smarthost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayhost_auth_file: Option<PathBuf>,
    /// How long a message may wait before it bounces.
    pub max_age: HumanDuration,
    /// When the sender is told a message is delayed; `"0"`: never.
    pub delay_warning: HumanDuration,
    /// The wait after the first failed attempt; it doubles each time.
    pub first_retry: HumanDuration,
    /// The longest wait between attempts.
    pub max_retry: HumanDuration,
    /// Messages delivered at once.
    pub max_workers: usize,
    /// Connections to one destination domain at once.
    pub max_per_destination: usize,
    /// How long a TCP connect to a server may take.
    pub connect_timeout: HumanDuration,
    /// Waiting for the greeting and the answers to EHLO, MAIL, RCPT
    /// (RFC 5321 §4.5.3.2: 5 minutes).
    pub command_timeout: HumanDuration,
    /// Waiting for the answer to DATA (2 minutes).
    pub data_init_timeout: HumanDuration,
    /// Each write of message content (3 minutes).
    pub data_block_timeout: HumanDuration,
    /// Waiting for the answer after the final dot (10 minutes).
    pub data_done_timeout: HumanDuration,
    /// The older name of `dns.resolver` (still read).
    pub dns: String,
    /// The port MX hosts are reached on (25; another one only for tests).
    pub mx_port: u16,
    /// Apply the MTA-STS policies of destination domains (RFC 8461).
    pub mta_sts: bool,
    /// The port MTA-STS policies are fetched from (443; another one only
    /// for tests).
    pub mta_sts_port: u16,
    /// Apply the TLSA records of destination MX hosts (DANE, RFC 7672)
    /// when the resolver validates DNSSEC and is on this host.
    pub dane: bool,
    /// Keep TLS sessions to destinations and send daily reports to the
    /// domains that ask for them (TLS-RPT, RFC 8460).
    pub tls_reports: bool,
    /// The reports' `organization-name` (default: the host name).
    pub tls_report_organization: Option<String>,
    /// The reports' `contact-info` and From: address (default:
    /// `postmaster@` the host name).
    pub tls_report_contact: Option<String>,
    /// How long one report covers (a day; shorter only for tests).
    pub tls_report_period: HumanDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            routes: BTreeMap::new(),
            tls: "opportunistic".into(),
            tls_policy: BTreeMap::new(),
            relayhost: None,
            relayhost_tls: "opportunistic".into(),
            relayhost_auth_file: None,
            max_age: HumanDuration(Duration::from_secs(5 * 86_400)),
            delay_warning: HumanDuration(Duration::from_secs(4 * 3600)),
            first_retry: HumanDuration(Duration::from_secs(5 * 60)),
            max_retry: HumanDuration(Duration::from_secs(3600)),
            max_workers: 20,
            max_per_destination: 5,
            connect_timeout: HumanDuration(Duration::from_secs(30)),
            command_timeout: HumanDuration(Duration::from_secs(300)),
            data_init_timeout: HumanDuration(Duration::from_secs(120)),
            data_block_timeout: HumanDuration(Duration::from_secs(180)),
            data_done_timeout: HumanDuration(Duration::from_secs(600)),
            dns: "system".into(),
            mx_port: 25,
            mta_sts: true,
            mta_sts_port: 443,
            dane: true,
            tls_reports: true,
            tls_report_organization: None,
            tls_report_contact: None,
            tls_report_period: HumanDuration(Duration::from_secs(86_400)),
        }
    }
}

impl QueueConfig {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.routes()?;
        if self.max_workers == 0 {
            return Err(invalid("queue.max_workers", "must be at least 1"));
        }
        if self.max_per_destination == 0 {
            return Err(invalid("queue.max_per_destination", "must be at least 1"));
        }
        if self.first_retry.0.is_zero() {
            return Err(invalid("queue.first_retry", "must be positive"));
        }
        if self.max_retry.0 < self.first_retry.0 {
            return Err(invalid(
                "queue.max_retry",
                "must be at least queue.first_retry",
            ));
        }
        if self.mx_port == 0 {
            return Err(invalid("queue.mx_port", "must be a port number"));
        }
        if self.tls_report_period.0 < Duration::from_secs(1) {
            return Err(invalid("queue.tls_report_period", "must be at least 1s"));
        }
        if let Some(contact) = &self.tls_report_contact
            && (contact.contains(['<', '>', '\r', '\n', ' ']) || !contact.contains('@'))
        {
            return Err(invalid(
                "queue.tls_report_contact",
                "must be one address, such as postmaster@example.org",
            ));
        }
        if self.mta_sts_port == 0 {
            return Err(invalid("queue.mta_sts_port", "must be a port number"));
        }
        for (key, value) in [
            ("queue.connect_timeout", self.connect_timeout),
            ("queue.command_timeout", self.command_timeout),
            ("queue.data_init_timeout", self.data_init_timeout),
            ("queue.data_block_timeout", self.data_block_timeout),
            ("queue.data_done_timeout", self.data_done_timeout),
        ] {
            if value.0.is_zero() {
                return Err(invalid(key, "must be positive"));
            }
        }
        Ok(())
    }

    /// How long the client waits for servers.
    pub fn timeouts(&self) -> yubin_smtp_proto::client::Timeouts {
        yubin_smtp_proto::client::Timeouts {
            command: self.command_timeout.0,
            data_init: self.data_init_timeout.0,
            data_block: self.data_block_timeout.0,
            data_done: self.data_done_timeout.0,
        }
    }

    /// The retry schedule.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            first_retry: self.first_retry.0,
            max_retry: self.max_retry.0,
            max_age: self.max_age.0,
            delay_warning: self.delay_warning.0,
        }
    }

    /// The routing table (reads the smarthost's credentials file).
    pub fn routes(&self) -> Result<Routes, ConfigError> {
        let tls = tls_policy(&self.tls, "queue.tls")?;
        let mut map = Vec::new();
        for (domain, next_hop) in &self.routes {
            let key = format!("queue.routes.{domain:?}");
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty() || domain.contains(['@', ' ', '/']) {
                return Err(invalid(key, "the key must be a domain or \"*\""));
            }
            let (host, port) = host_port(next_hop, &key)?;
            map.push((
                domain,
                Hop {
                    host,
                    port,
                    tls,
                    credentials: None,
                },
            ));
        }
        let mut tls_overrides = Vec::new();
        for (domain, policy) in &self.tls_policy {
            let key = format!("queue.tls_policy.{domain:?}");
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty() || domain.contains(['@', ' ', '/']) {
                return Err(invalid(key, "the key must be a domain"));
            }
            tls_overrides.push((domain, tls_policy(policy, &key)?));
        }
        let relayhost = match &self.relayhost {
            None => None,
            Some(text) => {
                let (host, port) = host_port(text, "queue.relayhost")?;
                Some(Hop {
                    host,
                    port,
                    tls: tls_policy(&self.relayhost_tls, "queue.relayhost_tls")?,
                    credentials: self.credentials()?,
                })
            }
        };
        Ok(Routes {
            map,
            relayhost,
            mx_tls: tls,
            mx_port: self.mx_port,
            tls_overrides,
        })
    }

    fn credentials(&self) -> Result<Option<Credentials>, ConfigError> {
        let Some(path) = &self.relayhost_auth_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|error| {
            invalid(
                "queue.relayhost_auth_file",
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        let line = text.lines().next().unwrap_or_default();
        let Some((user, password)) = line.split_once(':') else {
            return Err(invalid(
                "queue.relayhost_auth_file",
                format!("{}: the first line must be user:password", path.display()),
            ));
        };
        Ok(Some(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        }))
    }
}

fn tls_policy(text: &str, key: &str) -> Result<TlsLevel, ConfigError> {
    match text {
        "none" => Ok(TlsLevel::None),
        "opportunistic" => Ok(TlsLevel::Opportunistic),
        "required" => Ok(TlsLevel::Required),
        "verify" => Ok(TlsLevel::Verify),
        other => Err(invalid(
            key,
            format!(
                "{other:?} is not one of \"none\", \"opportunistic\", \"required\", \"verify\""
            ),
        )),
    }
}

/// `host:port`, `[v6]:port`.
fn host_port(text: &str, key: &str) -> Result<(String, u16), ConfigError> {
    let bad = || {
        invalid(
            key,
            format!("{text:?} is not host:port (example: \"mx.example.net:25\")"),
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_errors_that_name_the_key() {
        let mut config = QueueConfig::default();
        config
            .routes
            .insert("Remote.Test".into(), "127.0.0.1:2526".into());
        config.routes.insert("*".into(), "[::1]:25".into());
        let routes = config.routes().unwrap();
        assert_eq!(routes.map[0].0, "*");
        assert_eq!(
            (routes.map[0].1.host.as_str(), routes.map[0].1.port),
            ("::1", 25)
        );
        assert_eq!(routes.map[1].0, "remote.test");
        config.routes.insert("bad.test".into(), "nowhere".into());
        let error = config.check().unwrap_err().to_string();
        assert!(error.starts_with("queue.routes.\"bad.test\""), "{error}");
        let config = QueueConfig {
            tls: "sometimes".into(),
            ..QueueConfig::default()
        };
        assert!(
            config
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("queue.tls")
        );
    }

    #[test]
    fn smarthost_credentials_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth");
        std::fs::write(&file, "relay:s3:cret\n").unwrap();
        let config = QueueConfig {
            relayhost: Some("smarthost.test:587".into()),
            relayhost_tls: "required".into(),
            relayhost_auth_file: Some(file),
            ..QueueConfig::default()
        };
        let hop = config.routes().unwrap().relayhost.unwrap();
        assert_eq!(hop.tls, TlsLevel::Required);
        let credentials = hop.credentials.unwrap();
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_str()),
            ("relay", "s3:cret")
        );
    }
}
