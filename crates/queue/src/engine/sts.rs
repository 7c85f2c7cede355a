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

/// How long one address of the policy host may take to answer a connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed fetch, the same policy is not fetched again for this
/// long (RFC 8461 §3.3: at least five minutes), so a policy host that
/// does not answer does not hold every delivery to its domain.
const RETRY_AFTER_FAILURE: u64 = 300;

/// A fresh policy is fetched again once it is this old, whatever the TXT
/// record says (RFC 8461 §10.2), so that it does not lapse at `max_age`
/// for want of one fetch an attacker could block.
const REFRESH_AFTER: u64 = 86_400;

/// At most this many policies are kept in memory (expired ones go first).
const MEMORY_LIMIT: usize = 10_000;

/// Policies by domain.
pub struct Sts {
    dir: PathBuf,
    port: u16,
    tls: Option<TlsConnector>,
    memory: Mutex<HashMap<String, Policy>>,
    /// (domain, id) → when a fetch of it last failed, and how (RFC
    /// 8460's result type, for TLS reports).
    failed: Mutex<HashMap<(String, String), Failed>>,
}

/// When a policy's fetch failed, and RFC 8460's name for how.
type Failed = (u64, Option<&'static str>);

/// Why a policy was not fetched, as TLS reports name it (RFC 8460
/// §4.3.2.2).
#[derive(Debug)]
enum FetchError {
    /// The policy host's certificate was refused: `sts-webpki-invalid`.
    Webpki(String),
    /// The policy did not parse: `sts-policy-invalid`.
    Invalid(String),
    /// Anything else (DNS, connection, HTTP): `sts-policy-fetch-error`.
    Fetch(String),
    /// Our own lack (no root certificates here): not the domain's failure,
    /// and not reported.
    Local(String),
}

impl FetchError {
    fn result_type(&self) -> Option<&'static str> {
        use crate::tls_rpt::result;
        match self {
            FetchError::Webpki(_) => Some(result::STS_WEBPKI_INVALID),
            FetchError::Invalid(_) => Some(result::STS_POLICY_INVALID),
            FetchError::Fetch(_) => Some(result::STS_POLICY_FETCH_ERROR),
            FetchError::Local(_) => None,
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Webpki(text)
            | FetchError::Invalid(text)
            | FetchError::Fetch(text)
            | FetchError::Local(text) => f.write_str(text),
        }
    }
}

impl From<String> for FetchError {
    fn from(text: String) -> FetchError {
        FetchError::Fetch(text)
    }
}

/// What [`Sts::policy`] found: the policy that applies, or, when none
/// does because its fetch failed, RFC 8460's name for the failure.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// The policy in force.
    pub policy: Option<Policy>,
    /// The domain names a policy that could not be had (TLS reports).
    pub failure: Option<&'static str>,
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
            failed: Mutex::new(HashMap::new()),
        })
    }

    /// The policy that applies to `domain` now, if any.
    pub async fn policy(&self, domain: &str, dns: &impl Dns) -> Lookup {
        let mut failure = None;
        let policy = self.find(domain, dns, &mut failure).await;
        Lookup {
            failure: failure.filter(|_| policy.is_none()),
            policy,
        }
    }

    async fn find(
        &self,
        domain: &str,
        dns: &impl Dns,
        failure: &mut Option<&'static str>,
    ) -> Option<Policy> {
        // The name as the DNS and TLS know it (an internationalised domain
        // in its ASCII form); anything else has no policy, and never
        // becomes a file name.
        let domain = idna::domain_to_ascii(domain).ok()?;
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            || domain.split('.').any(str::is_empty)
        {
            return None;
        }
        let domain = domain.as_str();
        let now = unix_now();
        let cached = self.cached(domain).filter(|p| p.is_fresh(now));
        let id = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => txt_id(&records),
            Err(error) => {
                tracing::info!(%domain, %error, "MTA-STS record lookup failed");
                None
            }
        };
        // Fetch when the record names a policy we do not have, or when the
        // one we have is due for its refresh (record or not).
        let wanted = match (&id, &cached) {
            (Some(id), Some(policy)) if policy.id == *id => {
                now.saturating_sub(policy.fetched) >= REFRESH_AFTER.min(policy.max_age / 2)
            }
            (Some(_), _) => true,
            (None, Some(policy)) => {
                now.saturating_sub(policy.fetched) >= REFRESH_AFTER.min(policy.max_age / 2)
            }
            (None, None) => false,
        };
        let id = id.or_else(|| cached.as_ref().map(|p| p.id.clone()))?;
        if !wanted {
            return cached;
        }
        if let Some(kind) = self.failed_recently(domain, &id, now) {
            *failure = kind;
            return cached;
        }
        match self.fetch(domain, &id, dns, now).await {
            Ok(policy) => {
                tracing::info!(%domain, id = %policy.id, mode = policy.mode.name(), max_age = policy.max_age, "MTA-STS policy fetched");
                self.keep(domain, &policy, now);
                Some(policy)
            }
            Err(error) => {
                tracing::warn!(%domain, %error, "MTA-STS policy not fetched");
                *failure = error.result_type();
                lock(&self.failed).insert((domain.to_owned(), id), (now, error.result_type()));
                cached
            }
        }
    }

    fn failed_recently(&self, domain: &str, id: &str, now: u64) -> Option<Option<&'static str>> {
        let mut failed = lock(&self.failed);
        failed.retain(|_, (at, _)| now.saturating_sub(*at) < RETRY_AFTER_FAILURE);
        failed
            .get(&(domain.to_owned(), id.to_owned()))
            .map(|(_, kind)| *kind)
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

    fn keep(&self, domain: &str, policy: &Policy, now: u64) {
        {
            let mut memory = lock(&self.memory);
            if memory.len() >= MEMORY_LIMIT {
                memory.retain(|_, p| p.is_fresh(now));
            }
            if memory.len() < MEMORY_LIMIT {
                memory.insert(domain.to_owned(), policy.clone());
            }
        }
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
    ) -> Result<Policy, FetchError> {
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| FetchError::Local("no system root certificates".into()))?;
        let host = format!("mta-sts.{domain}");
        let addresses = dns.addresses(&host).await.map_err(|e| e.to_string())?;
        let body = tokio::time::timeout(FETCH_TIMEOUT, async {
            let mut last = FetchError::Fetch(format!("{host} has no address"));
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
        Policy::parse(&body, id, now).map_err(FetchError::Invalid)
    }
}

/// `GET /.well-known/mta-sts.txt` from `host` at `address` over TLS,
/// HTTP/1.0 (so the answer is never chunked, and ends with the
/// connection); only a 200 with a body of at most 64 KiB is a policy.
async fn get(tls: &TlsConnector, host: &str, address: SocketAddr) -> Result<String, FetchError> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("connect to {host}[{address}]: timed out"))?
        .map_err(|e| format!("connect to {host}[{address}]: {e}"))?;
    let mut stream = tls.connect(name, tcp).await.map_err(|e| {
        let text = format!("TLS with {host}: {e}");
        // Only a refused certificate is a PKI failure; a reset or a
        // protocol error is a failed fetch.
        match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidCertificate(_)) => FetchError::Webpki(text),
            _ => FetchError::Fetch(text),
        }
    })?;
    Ok(read_policy(&mut stream, host).await?)
}

/// The request and the answer, over the verified connection.
async fn read_policy(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
) -> Result<String, String> {
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
    let closed_cleanly = match stream.take(limit as u64).read_to_end(&mut answer).await {
        // Stopped by the limit: not an end the server chose.
        Ok(_) if answer.len() >= limit => false,
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
    // RFC 8461 §3.3: no redirects; only 200 is a policy, as text/plain.
    if response.code != Some(200) {
        return Err(format!(
            "{host} answered {} instead of the policy",
            response.code.unwrap_or(0)
        ));
    }
    let content_type = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
    if let Some(content_type) = content_type
        && content_type.split(';').next().map(str::trim) != Some("text/plain")
    {
        return Err(format!(
            "{host}: the policy is {content_type}, not text/plain"
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
