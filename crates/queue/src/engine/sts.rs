//! MTA-STS for the delivery engine (RFC 8461): a domain's `_mta-sts` TXT
//! record, its policy fetched over HTTPS (the certificate checked against
//! the system roots for `mta-sts.DOMAIN`; no redirects; 64 KiB at most),
//! and a cache, in memory and in `{queue}/mta-sts/DOMAIN`, used until the
//! policy's `max_age` runs out. A policy that cannot be fetched is no
//! policy unless a fresh one is cached (§5.1): an attacker who blocks the
//! fetch gains nothing once the policy was seen.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use yubin_client_tls::Trust;

use super::route::Dns;
use super::{lock, unix_now};
use crate::mta_sts::{MAX_POLICY_SIZE, Policy, txt_id};

/// How long one policy fetch may take (RFC 8461 §3.3 suggests a minute).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Policies by domain.
pub struct Sts {
    dir: PathBuf,
    port: u16,
    tls: Option<TlsConnector>,
    memory: Mutex<HashMap<String, Policy>>,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Sts {
    /// A cache kept in `dir`, fetching policies from `port` (443; another
    /// only for tests).
    pub fn new(dir: PathBuf, port: u16) -> Arc<Sts> {
        let tls = match yubin_client_tls::client_config(&Trust::System) {
            Ok((config, _)) => Some(TlsConnector::from(Arc::new(config))),
            Err(error) => {
                tracing::warn!(%error, "MTA-STS policies cannot be fetched");
                None
            }
        };
        Arc::new(Sts {
            dir,
            port,
            tls,
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// The policy that applies to `domain` now, if any.
    pub async fn policy(&self, domain: &str, dns: &impl Dns) -> Option<Policy> {
        let now = unix_now();
        let cached = self.cached(domain).filter(|p| p.is_fresh(now));
        let id = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => txt_id(&records),
            Err(error) => {
                tracing::info!(%domain, %error, "MTA-STS record lookup failed");
                None
            }
        };
        let Some(id) = id else {
            // No record (or none readable): a policy seen before still
            // holds until it expires.
            return cached;
        };
        if let Some(policy) = &cached
            && policy.id == id
        {
            return cached;
        }
        match self.fetch(domain, &id, dns, now).await {
            Ok(policy) => {
                tracing::info!(%domain, id = %policy.id, mode = policy.mode.name(), max_age = policy.max_age, "MTA-STS policy fetched");
                self.keep(domain, &policy);
                Some(policy)
            }
            Err(error) => {
                tracing::warn!(%domain, %error, "MTA-STS policy not fetched");
                cached
            }
        }
    }

    fn path(&self, domain: &str) -> PathBuf {
        self.dir.join(domain)
    }

    fn cached(&self, domain: &str) -> Option<Policy> {
        if let Some(policy) = lock(&self.memory).get(domain) {
            return Some(policy.clone());
        }
        let text = std::fs::read_to_string(self.path(domain)).ok()?;
        let policy = Policy::from_record(&text)?;
        lock(&self.memory).insert(domain.to_owned(), policy.clone());
        Some(policy)
    }

    fn keep(&self, domain: &str, policy: &Policy) {
        lock(&self.memory).insert(domain.to_owned(), policy.clone());
        // Not fsynced: a policy lost in a crash is fetched again.
        if let Err(error) = yubin_durable::replace_unsynced(
            &self.path(domain),
            policy.to_record().as_bytes(),
            0o600,
        ) {
            tracing::warn!(%domain, %error, "MTA-STS policy not kept on disk");
        }
    }

    async fn fetch(
        &self,
        domain: &str,
        id: &str,
        dns: &impl Dns,
        now: u64,
    ) -> Result<Policy, String> {
        let tls = self.tls.as_ref().ok_or("no system root certificates")?;
        let host = format!("mta-sts.{domain}");
        let addresses = dns.addresses(&host).await.map_err(|e| e.to_string())?;
        let body = tokio::time::timeout(FETCH_TIMEOUT, async {
            let mut last = format!("{host} has no address");
            for ip in addresses {
                match get(tls, &host, SocketAddr::new(ip, self.port)).await {
                    Ok(body) => return Ok(body),
                    Err(error) => last = error,
                }
            }
            Err(last)
        })
        .await
        .map_err(|_| format!("fetching the policy from {host} timed out"))??;
        Policy::parse(&body, id, now)
    }
}

/// `GET /.well-known/mta-sts.txt` from `host` at `address` over TLS,
/// HTTP/1.0 (so the answer is never chunked, and ends with the
/// connection); only a 200 with a body of at most 64 KiB is a policy.
async fn get(tls: &TlsConnector, host: &str, address: SocketAddr) -> Result<String, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect to {host}[{address}]: {e}"))?;
    let mut stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))?;
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\nUser-Agent: yubin\r\nAccept: text/plain\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    // The head, and a body one octet over the limit at most. Many servers
    // close without TLS's close_notify; then only a Content-Length shows
    // that nothing was cut off.
    let limit = MAX_POLICY_SIZE + 16 * 1024 + 1;
    let mut answer = Vec::new();
    let closed_cleanly = match (&mut stream)
        .take(limit as u64)
        .read_to_end(&mut answer)
        .await
    {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(format!("{host}: {e}")),
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(&answer) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Err(format!("{host}: the answer ended early")),
        Err(e) => return Err(format!("{host}: not an HTTP answer ({e})")),
    };
    // RFC 8461 §3.3: no redirects; only 200 is a policy.
    if response.code != Some(200) {
        return Err(format!(
            "{host} answered {} instead of the policy",
            response.code.unwrap_or(0)
        ));
    }
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let mut body = &answer[head..];
    match length {
        Some(length) if body.len() >= length => body = &body[..length],
        Some(_) => return Err(format!("{host}: the policy was cut off")),
        None if !closed_cleanly => {
            return Err(format!(
                "{host}: the connection ended without close_notify or Content-Length (cut off?)"
            ));
        }
        None => {}
    }
    if body.len() > MAX_POLICY_SIZE {
        return Err(format!("{host}: the policy is larger than 64 KiB"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| format!("{host}: the policy is not UTF-8"))
}
