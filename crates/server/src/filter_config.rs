//! `[[filter]]`: content filters that see each received message before it
//! is accepted: milters (the Sendmail protocol, as Postfix speaks it) and
//! rspamd's HTTP protocol.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use yubin_duration::HumanDuration;

use crate::config_error::{ConfigError, invalid};

/// What protocol a filter speaks.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FilterKind {
    /// The milter protocol, version 6 (OpenDKIM, clamav-milter, rspamd's
    /// proxy, …).
    Milter,
    /// rspamd's own HTTP protocol (`POST /checkv2`).
    Rspamd,
}

/// What a message gets when its filter cannot be asked (down, too slow,
/// or talking nonsense).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// `451 4.7.1`: the sender tries again later.
    Tempfail,
    /// Delivered as if the filter had said nothing.
    Accept,
}

/// A listener a filter applies to.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FilterListener {
    /// The MX port (`smtp.listen`).
    Mx,
    /// Submission with STARTTLS.
    Submission,
    /// Submission with implicit TLS.
    Submissions,
}

/// Where a filter listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterAddress {
    /// A TCP host (name or address) and port.
    Tcp {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// A unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for FilterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            FilterAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            FilterAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One `[[filter]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `"milter"` or `"rspamd"`.
    pub kind: FilterKind,
    /// milter: `host:port`, `inet:host:port`, `unix:/path` or `/path`;
    /// rspamd: `host:port` or `http://host:port` (its normal worker,
    /// port 11333).
    pub address: String,
    /// When the filter cannot be asked: `"tempfail"` or `"accept"`.
    #[serde(default = "tempfail")]
    pub on_failure: OnFailure,
    /// The longest one message's exchange with the filter may take,
    /// connecting included.
    #[serde(default = "thirty_seconds")]
    pub timeout: HumanDuration,
    /// The listeners whose mail it sees. Default: the MX port only.
    #[serde(default = "mx_only")]
    pub listeners: Vec<FilterListener>,
}

fn tempfail() -> OnFailure {
    OnFailure::Tempfail
}

fn thirty_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn mx_only() -> Vec<FilterListener> {
    vec![FilterListener::Mx]
}

impl FilterConfig {
    /// Where the filter listens, from `address`.
    pub fn endpoint(&self) -> Result<FilterAddress, String> {
        let text = self.address.trim();
        let text = match self.kind {
            FilterKind::Milter => text.strip_prefix("inet:").unwrap_or(text),
            FilterKind::Rspamd => text
                .strip_prefix("http://")
                .map_or(text, |rest| rest.trim_end_matches('/')),
        };
        if self.kind == FilterKind::Milter
            && let Some(path) = text
                .strip_prefix("unix:")
                .or_else(|| text.starts_with('/').then_some(text))
        {
            if path.is_empty() {
                return Err("a unix socket needs a path".into());
            }
            return Ok(FilterAddress::Unix(PathBuf::from(path)));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{:?} is not host:port", self.address))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{:?} has no valid port", self.address))?;
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(format!("{:?} has no valid host", self.address));
        }
        Ok(FilterAddress::Tcp {
            host: host.to_owned(),
            port,
        })
    }

    /// Checks every value of filter number `index`; errors name the key.
    pub fn check(&self, index: usize) -> Result<(), ConfigError> {
        self.endpoint()
            .map_err(|e| invalid(format!("filter[{index}].address"), e))?;
        if self.timeout.0.is_zero() {
            return Err(invalid(
                format!("filter[{index}].timeout"),
                "must be positive",
            ));
        }
        if self.listeners.is_empty() {
            return Err(invalid(
                format!("filter[{index}].listeners"),
                "must name at least one of \"mx\", \"submission\", \"submissions\"",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(kind: FilterKind, address: &str) -> FilterConfig {
        FilterConfig {
            kind,
            address: address.into(),
            on_failure: OnFailure::Tempfail,
            timeout: thirty_seconds(),
            listeners: mx_only(),
        }
    }

    #[test]
    fn addresses_in_the_forms_admins_write_them() {
        let tcp = |host: &str, port| FilterAddress::Tcp {
            host: host.into(),
            port,
        };
        for (kind, text, want) in [
            (
                FilterKind::Milter,
                "127.0.0.1:11332",
                Ok(tcp("127.0.0.1", 11332)),
            ),
            (
                FilterKind::Milter,
                "inet:localhost:8891",
                Ok(tcp("localhost", 8891)),
            ),
            (FilterKind::Milter, "[::1]:8891", Ok(tcp("::1", 8891))),
            (
                FilterKind::Milter,
                "unix:/run/opendkim.sock",
                Ok(FilterAddress::Unix("/run/opendkim.sock".into())),
            ),
            (
                FilterKind::Milter,
                "/run/clamav/milter.sock",
                Ok(FilterAddress::Unix("/run/clamav/milter.sock".into())),
            ),
            (
                FilterKind::Rspamd,
                "http://127.0.0.1:11333/",
                Ok(tcp("127.0.0.1", 11333)),
            ),
            (
                FilterKind::Rspamd,
                "localhost:11333",
                Ok(tcp("localhost", 11333)),
            ),
        ] {
            assert_eq!(filter(kind, text).endpoint(), want, "{text}");
        }
        for (kind, text) in [
            (FilterKind::Milter, "127.0.0.1"),
            (FilterKind::Milter, "127.0.0.1:0"),
            (FilterKind::Milter, "unix:"),
            (FilterKind::Rspamd, "/run/rspamd.sock"),
            (FilterKind::Rspamd, ":11333"),
        ] {
            assert!(filter(kind, text).endpoint().is_err(), "{text}");
        }
    }
}
