//! One delivery attempt to one destination: connect to its servers in
//! order, drive the SMTP client over TCP (and TLS after STARTTLS), stream
//! the message from its queue file, and return per-recipient results.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use yubin_client_tls::{ClientStream, Trust, UpgradeError};
use yubin_line::Encoder;
use yubin_smtp_proto::client::{
    Client, ClientConfig, Message, Poll, RecipientResult, Response, Status, Timeouts,
};

use super::route::{Dns, Target, TlsLevel, is_own_address};
use crate::{QueueStore, tls_rpt};

/// Where a message's content is: a queue entry in its store, read again
/// for each attempt (a message is never held whole in memory).
#[derive(Clone)]
pub struct MessageSource {
    /// The queue's store.
    pub store: Arc<dyn QueueStore>,
    /// The entry.
    pub id: String,
}

impl std::fmt::Debug for MessageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSource")
            .field("id", &self.id)
            .finish()
    }
}

/// How the engine connects.
#[derive(Clone)]
pub struct Transport {
    /// Our name for EHLO.
    pub helo_name: String,
    /// How long a TCP connect may take (Postfix: 30 s).
    pub connect_timeout: Duration,
    /// Our own SMTP listeners: a route to one of them is a loop.
    pub own_addresses: Vec<SocketAddr>,
    /// How long to wait for servers.
    pub timeouts: Timeouts,
    /// Any certificate (opportunistic and required TLS).
    tls: TlsConnector,
    /// Certificates that chain to a system root and name the host
    /// (`verify`); `None` when the system has no root certificates.
    verified: Option<TlsConnector>,
    /// The same check apart from a handshake, for MTA-STS `testing`.
    observer: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("helo_name", &self.helo_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("own_addresses", &self.own_addresses)
            .finish()
    }
}

impl Transport {
    /// The same transport with other timeouts.
    pub fn with_timeouts(self, timeouts: Timeouts) -> Transport {
        Transport { timeouts, ..self }
    }

    /// A transport presenting itself as `helo_name`.
    pub fn new(
        helo_name: String,
        connect_timeout: Duration,
        own_addresses: Vec<SocketAddr>,
    ) -> Transport {
        let config = match yubin_client_tls::client_config(&Trust::EncryptionOnly) {
            Ok((config, _)) => config,
            // The ring provider supports the default versions, so this does
            // not happen; if it did, every STARTTLS would fail (and mail
            // would go on in plaintext where allowed) instead of the start.
            Err(error) => {
                tracing::error!(%error, "TLS client configuration failed");
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        let verified = match yubin_client_tls::client_config(&Trust::System) {
            Ok((config, _)) => Some(TlsConnector::from(Arc::new(config))),
            Err(error) => {
                tracing::warn!(%error, "routes with tls = \"verify\" cannot be delivered");
                None
            }
        };
        Transport {
            helo_name,
            connect_timeout,
            own_addresses,
            timeouts: Timeouts::default(),
            tls: TlsConnector::from(Arc::new(config)),
            verified,
            observer: yubin_client_tls::system_verifier().ok(),
        }
    }

    /// For a target under an MTA-STS policy in `testing` mode: what
    /// `enforce` would have refused in the certificate the server just
    /// presented (reported, not acted on, RFC 8461 §5).
    fn observed_failure(
        &self,
        target: &Target,
        tls: &ClientStream,
    ) -> Option<(&'static str, String)> {
        use rustls::client::danger::ServerCertVerifier;
        if !target.observe || target.tls.verifies() {
            return None;
        }
        // Without root certificates here, nothing can be said about
        // theirs (and our lack is not their failure).
        let observer = self.observer.as_ref()?;
        let certificates = tls.peer_certificates().unwrap_or_default();
        let Some((end_entity, intermediates)) = certificates.split_first() else {
            return Some((tls_rpt::result::VALIDATION_FAILURE, "no certificate".into()));
        };
        let Ok(name) = ServerName::try_from(target.host.clone()) else {
            return Some((
                tls_rpt::result::CERTIFICATE_HOST_MISMATCH,
                "the MX name is not a host name".into(),
            ));
        };
        match observer.verify_server_cert(
            end_entity,
            intermediates,
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        ) {
            Ok(_) => None,
            Err(error) => {
                tracing::info!(host = %target.host, %error, policy = "mta-sts testing", "the certificate would fail an enforced policy");
                Some((certificate_failure(&error), error.to_string()))
            }
        }
    }

    /// Tries `targets` in order until one takes the transaction; returns a
    /// result for every recipient of `message`, and the server that gave
    /// them (none if no server was reached). What became of TLS in each
    /// session is added to `tls_log` (for TLS reports).
    pub async fn deliver(
        &self,
        targets: &[Target],
        message: &Message,
        source: &MessageSource,
        dns: &impl Dns,
        tls_log: &mut Vec<TlsOutcome>,
    ) -> (Vec<RecipientResult>, Option<String>) {
        let mut last = Response::local(451, "4.4.1 no server to try");
        for target in targets {
            // The same resolver as the MX lookup (and DANE's checks).
            let addresses: Vec<SocketAddr> = match dns.addresses(&target.host).await {
                Ok(found) if found.is_empty() => {
                    last = Response::local(
                        451,
                        format!("4.4.3 {} has no address records", target.host),
                    );
                    continue;
                }
                Ok(found) => found
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, target.port))
                    .collect(),
                Err(error) => {
                    last = Response::local(451, error.to_string());
                    continue;
                }
            };
            for address in addresses {
                if is_own_address(address, &self.own_addresses) {
                    let text = format!(
                        "5.4.6 mail for {} loops back to myself ({address})",
                        target.host
                    );
                    return (
                        all(message, Status::Failed, &Response::local(554, text)),
                        None,
                    );
                }
                let connected =
                    tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await;
                let tcp = match connected {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(error)) => {
                        last = Response::local(
                            421,
                            format!("4.4.1 connect to {}[{address}]: {error}", target.host),
                        );
                        continue;
                    }
                    Err(_) => {
                        last = Response::local(
                            421,
                            format!("4.4.1 connect to {}[{address}]: timed out", target.host),
                        );
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (mut results, mut outcome) =
                    self.session(tcp, target, message, source, tls_log).await;
                if outcome == Outcome::TlsFailed && target.tls == TlsLevel::Opportunistic {
                    // Postfix's "may": a server whose TLS we cannot speak
                    // (an old cipher suite) gets the mail in plaintext
                    // rather than never. Never for "required".
                    tracing::info!(host = %target.host, %address, "TLS handshake failed; trying again without TLS");
                    let plain = Target {
                        tls: TlsLevel::None,
                        ..target.clone()
                    };
                    if let Ok(Ok(tcp)) =
                        tokio::time::timeout(self.connect_timeout, TcpStream::connect(address))
                            .await
                    {
                        (results, outcome) =
                            self.session(tcp, &plain, message, source, tls_log).await;
                    }
                }
                let decided = results.iter().any(|r| r.status != Status::Deferred);
                if outcome == Outcome::Started || decided {
                    return (results, Some(format!("{}[{}]", target.host, address.ip())));
                }
                // No transaction here (refused greeting, TLS required and
                // missing, …): the next server may do better.
                if let Some(first) = results.first() {
                    last = first.response.clone();
                }
            }
        }
        (all(message, Status::Deferred, &last), None)
    }

    /// One SMTP conversation; returns the results and how far it got.
    async fn session(
        &self,
        tcp: TcpStream,
        target: &Target,
        message: &Message,
        source: &MessageSource,
        tls_log: &mut Vec<TlsOutcome>,
    ) -> (Vec<RecipientResult>, Outcome) {
        let tcp_addresses = (tcp.peer_addr(), tcp.local_addr());
        let mut note = |failure: Option<(&'static str, String)>| {
            if let Ok(remote) = &tcp_addresses.0 {
                tls_log.push(TlsOutcome {
                    host: target.host.clone(),
                    ip: remote.ip(),
                    local_ip: tcp_addresses.1.as_ref().ok().map(|a| a.ip()),
                    failure,
                });
            }
        };
        let config = ClientConfig {
            lmtp: false,
            loop_check: true,
            helo_name: self.helo_name.clone(),
            tls: target.tls.policy(),
            credentials: target.credentials.clone(),
            timeouts: self.timeouts,
        };
        let mut client = Client::new(config, message.clone(), false);
        let mut conn = Some(ClientStream::Plain(tcp));
        let mut buf = vec![0u8; 16 * 1024];
        let mut tls_failed = false;
        // RFC 5321 §4.5.3.2 times a whole reply, from the command: a server
        // trickling a byte per read cannot stretch it.
        let mut sent_at = tokio::time::Instant::now();
        let mut replies = 0;
        while let Some(stream) = conn.as_mut() {
            match client.poll() {
                Poll::Done => break,
                Poll::Write => {
                    let written =
                        tokio::time::timeout(client.timeout(), stream.write_all(client.output()))
                            .await;
                    client.clear_output();
                    sent_at = tokio::time::Instant::now();
                    if !matches!(written, Ok(Ok(()))) {
                        client.connection_lost("the connection broke");
                    }
                }
                Poll::NeedInput => {
                    // Each reply read restarts the clock for the next one
                    // (pipelined replies each get their own timeout).
                    if client.replies_seen() != replies {
                        replies = client.replies_seen();
                        sent_at = tokio::time::Instant::now();
                    }
                    let deadline = sent_at + client.timeout();
                    match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                        Err(_) => client.timed_out(),
                        Ok(Ok(0)) => client.connection_lost("the server closed the connection"),
                        Ok(Err(error)) => client.connection_lost(&format!("read error ({error})")),
                        Ok(Ok(n)) => client.receive(&buf[..n]),
                    }
                }
                Poll::StartTls => {
                    let Some(plain) = conn.take() else {
                        continue;
                    };
                    let name = ServerName::try_from(target.host.clone()).unwrap_or_else(|_| {
                        ServerName::try_from("invalid.invalid").expect("a valid name")
                    });
                    let verify = target.tls.verifies();
                    let dane;
                    let connector = match (&target.tlsa, target.tls) {
                        (Some(tlsa), TlsLevel::Dane) => {
                            dane = dane_connector(tlsa.clone());
                            dane.as_ref()
                        }
                        // DANE without records never happens; if it did,
                        // no connector rather than an unchecked one.
                        (None, TlsLevel::Dane) => None,
                        (_, TlsLevel::Verify) => self.verified.as_ref(),
                        _ => Some(&self.tls),
                    };
                    let Some(connector) = connector else {
                        tls_failed = true;
                        client.connection_lost(&format!(
                            "the certificate of {} cannot be verified: no {}",
                            target.host,
                            if target.tls == TlsLevel::Dane {
                                "TLS configuration"
                            } else {
                                "system root certificates"
                            }
                        ));
                        continue;
                    };
                    match plain.upgrade(connector, name, client.timeout()).await {
                        Ok(tls) => {
                            note(self.observed_failure(target, &tls));
                            // Which policy applied, as Postfix logs it.
                            tracing::info!(
                                host = %target.host,
                                tls = target.tls.name(),
                                policy = target.tls_source.name(),
                                verified = verify,
                                "{} TLS connection established",
                                if verify { "Verified" } else { "Anonymous" }
                            );
                            conn = Some(tls);
                            client.tls_established();
                        }
                        Err(UpgradeError::Handshake(error)) if verify => {
                            note(Some(failure_type(&error, target.tls == TlsLevel::Dane)));
                            tls_failed = true;
                            client.connection_lost(&format!(
                                "the certificate of {} was not verified ({error}; TLS policy: {}{})",
                                target.host,
                                target.tls_source.name(),
                                if target.tls == TlsLevel::Dane {
                                    ", it matches none of the host's TLSA records"
                                } else {
                                    ""
                                }
                            ));
                        }
                        Err(UpgradeError::Handshake(error)) => {
                            note(Some(failure_type(&error, false)));
                            tls_failed = true;
                            client.connection_lost(&format!("TLS handshake failed ({error})"));
                        }
                        Err(UpgradeError::Timeout) => {
                            note(Some((
                                tls_rpt::result::VALIDATION_FAILURE,
                                "the TLS handshake timed out".into(),
                            )));
                            client.timed_out();
                        }
                        Err(UpgradeError::AlreadyTls) => {
                            client.connection_lost("STARTTLS over TLS")
                        }
                    }
                }
                Poll::SendContent => match send_content(stream, source, client.timeout()).await {
                    Ok(()) => {
                        sent_at = tokio::time::Instant::now();
                        client.content_sent();
                    }
                    Err(error) => {
                        client.connection_lost(&format!("sending the message failed ({error})"));
                    }
                },
            }
        }
        if client.starttls_unavailable() {
            note(Some((
                tls_rpt::result::STARTTLS_NOT_SUPPORTED,
                String::new(),
            )));
        }
        if let Some(mut stream) = conn {
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
        }
        let outcome = if client.transaction_started() {
            Outcome::Started
        } else if tls_failed {
            Outcome::TlsFailed
        } else {
            Outcome::NotStarted
        };
        (client.results(), outcome)
    }
}

/// What became of TLS in one session, for TLS reports (RFC 8460).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOutcome {
    /// The server's host name.
    pub host: String,
    /// Its address.
    pub ip: std::net::IpAddr,
    /// Ours.
    pub local_ip: Option<std::net::IpAddr>,
    /// The failure's RFC 8460 result type and a short text on it;
    /// `None`: TLS as the policy asked.
    pub failure: Option<(&'static str, String)>,
}

/// RFC 8460 §4.3's name for why a handshake failed, and its text; with
/// DANE, a certificate no TLSA record names is `tlsa-invalid`.
fn failure_type(error: &std::io::Error, dane: bool) -> (&'static str, String) {
    let kind = match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        )) if dane => tls_rpt::result::TLSA_INVALID,
        Some(error) => certificate_failure(error),
        None => tls_rpt::result::VALIDATION_FAILURE,
    };
    (kind, error.to_string())
}

/// RFC 8460 §4.3's name for a refused certificate.
fn certificate_failure(error: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    use tls_rpt::result;
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => result::CERTIFICATE_EXPIRED,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                result::CERTIFICATE_HOST_MISMATCH
            }
            C::UnknownIssuer | C::BadSignature | C::BadEncoding => result::CERTIFICATE_NOT_TRUSTED,
            _ => result::VALIDATION_FAILURE,
        },
        _ => result::VALIDATION_FAILURE,
    }
}

/// A connector that checks certificates against `tlsa` (one per DANE
/// session: the records are the host's own).
fn dane_connector(tlsa: Arc<[yubin_client_tls::Tlsa]>) -> Option<TlsConnector> {
    match yubin_client_tls::client_config(&Trust::Dane(tlsa)) {
        Ok((config, _)) => Some(TlsConnector::from(Arc::new(config))),
        Err(error) => {
            tracing::error!(%error, "TLS client configuration for DANE failed");
            None
        }
    }
}

/// How far a conversation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// MAIL was sent: this server's answers decide the attempt.
    Started,
    /// The TLS handshake failed before any transaction.
    TlsFailed,
    /// No transaction (refused greeting, TLS required and missing, …).
    NotStarted,
}

/// The same result for every recipient.
fn all(message: &Message, status: Status, response: &Response) -> Vec<RecipientResult> {
    message
        .recipients
        .iter()
        .map(|recipient| RecipientResult {
            recipient: recipient.clone(),
            status,
            response: response.clone(),
        })
        .collect()
}

/// The message, dot-stuffed with CRLF line ends (RFC 5321 §4.5.2), and the
/// final `.` line. Each write must finish within 3 minutes (§4.5.3.2.5).
async fn send_content(
    stream: &mut ClientStream,
    source: &MessageSource,
    block: Duration,
) -> std::io::Result<()> {
    let (store, id) = (source.store.clone(), source.id.clone());
    let (_, mut message) = tokio::task::spawn_blocking(move || store.open(&id))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|e| match e {
            crate::QueueError::Io { error, .. } => error,
            other => std::io::Error::other(other.to_string()),
        })?;
    let mut encoder = Encoder::whole();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(80 * 1024);
    loop {
        // The store's reads block: one chunk at a time on the blocking
        // pool, as tokio's own files do.
        let (back, buf, read) = tokio::task::spawn_blocking(move || {
            let read = message.read(&mut chunk);
            (message, chunk, read)
        })
        .await
        .map_err(std::io::Error::other)?;
        (message, chunk) = (back, buf);
        let n = read?;
        if n == 0 {
            break;
        }
        out.clear();
        encoder.encode(&chunk[..n], &mut out);
        write_within(stream, &out, block).await?;
    }
    out.clear();
    encoder.finish(&mut out);
    write_within(stream, &out, block).await
}

async fn write_within(
    stream: &mut ClientStream,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        )),
    }
}
