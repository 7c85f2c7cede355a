//! TLS to the database, with libpq's settings: `sslmode` (`disable`,
//! `allow`, `prefer`, `require`, `verify-ca`, `verify-full`) and
//! `sslrootcert` (a PEM file of trusted certificates, or `system`), in the
//! URL's query or among the `key=value` pairs.
//!
//! tokio-postgres knows `disable`, `prefer` and `require`, and no
//! `sslrootcert`; the rest is read here and taken out before it parses the
//! string. As libpq does, `prefer` (the default) and `require` encrypt
//! without checking the server's certificate (`require` with an
//! `sslrootcert` checks its chain, as `verify-ca`), `verify-ca` checks
//! that a trusted authority issued it, and `verify-full` also that it
//! names the host connected to. Where libpq would look for
//! `~/.postgresql/root.crt`, a server process has no such home: without
//! `sslrootcert`, the system's roots are trusted.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use yubin_client_tls::Trust;

use crate::DbError;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Nothing: encryption only (`prefer`, `require`).
    Nothing,
    /// Issued by a trusted authority (`verify-ca`).
    Chain,
    /// That, and for the host connected to (`verify-full`).
    ChainAndName,
}

/// A connection string with the TLS settings tokio-postgres does not know
/// taken out, the `sslmode` to give it, and the TLS it connects with.
pub(crate) struct Settings {
    /// What tokio-postgres parses.
    pub text: String,
    /// The mode tokio-postgres negotiates with.
    pub mode: SslMode,
    /// The TLS client for the connections.
    pub tls: MakeTls,
}

/// Reads the TLS settings of `url` (a libpq-style URL or `key=value`
/// pairs); an error names the setting.
pub(crate) fn settings(url: &str) -> Result<Settings, DbError> {
    let (text, mode, root_cert) = take_tls_settings(url).map_err(DbError::Url)?;
    let (mode, check) = match mode.as_deref() {
        None | Some("prefer" | "allow") => (SslMode::Prefer, Check::Nothing),
        Some("disable") => (SslMode::Disable, Check::Nothing),
        // libpq: "if a root CA file exists, the behavior of
        // sslmode=require will be the same as that of verify-ca".
        Some("require") if root_cert.is_some() => (SslMode::Require, Check::Chain),
        Some("require") => (SslMode::Require, Check::Nothing),
        Some("verify-ca") => (SslMode::Require, Check::Chain),
        Some("verify-full") => (SslMode::Require, Check::ChainAndName),
        Some(other) => {
            return Err(DbError::Url(format!(
                "sslmode {other:?} is none of disable, allow, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    let config = client_config(check, root_cert.as_deref()).map_err(DbError::Url)?;
    Ok(Settings {
        text,
        mode,
        tls: MakeTls(Arc::new(config)),
    })
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query or out of
/// `key=value` pairs; what is left, and the two values.
fn take_tls_settings(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let is_url = url.starts_with("postgresql://") || url.starts_with("postgres://");
    let (mut mode, mut root_cert) = (None, None);
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root_cert = Some(value);
            true
        }
        _ => false,
    };
    let text = if is_url {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(&percent_decoded(key)?, percent_decoded(value)?) {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (key, value) in key_value_pairs(url)? {
            if !take(&key, value.clone()) {
                kept.push(format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                ));
            }
        }
        kept.join(" ")
    };
    Ok((text, mode, root_cert))
}

/// `%XX` escapes decoded, as in a URL's query.
fn percent_decoded(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let byte = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in {text:?}"))?;
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// libpq's `key = value` pairs: a value is a word, or quoted with `'`,
/// with `\` escaping the next character in both.
fn key_value_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("{key:?} has no \"=\" and value"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of {key:?} has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// The rustls client for `check`, trusting `root_cert` (a PEM file, or
/// `system`; the system's roots when not given).
fn client_config(check: Check, root_cert: Option<&str>) -> Result<ClientConfig, String> {
    if check == Check::Nothing {
        return yubin_client_tls::client_config(&Trust::EncryptionOnly)
            .map(|(config, _)| config)
            .map_err(|e| e.to_string());
    }
    let verifier = match root_cert {
        None | Some("system") => {
            yubin_client_tls::system_verifier().map_err(|e| format!("sslrootcert system: {e}"))?
        }
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert {path}: no certificate in it"));
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("sslrootcert {path}: {e}"))?
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(match check {
        Check::ChainAndName => builder.with_webpki_verifier(verifier).with_no_client_auth(),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
            .with_no_client_auth(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `verify-ca`: a chain to a trusted root, whatever names the certificate
/// holds. rustls checks the chain before the name, so a certificate
/// refused only for its name has a good chain.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What the pool connects with: TLS by rustls when the mode and the
/// server agree on it.
#[derive(Clone)]
pub(crate) struct MakeTls(Arc<ClientConfig>);

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = PgTlsStream;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, io::Error> {
        // A unix socket has no host name; PostgreSQL offers no TLS there,
        // so `prefer` goes on without it and nothing is checked.
        let name = ServerName::try_from(domain.to_owned()).ok();
        Ok(Connect {
            connector: tokio_rustls::TlsConnector::from(self.0.clone()),
            name,
        })
    }
}

/// One connection's handshake.
pub(crate) struct Connect {
    connector: tokio_rustls::TlsConnector,
    name: Option<ServerName<'static>>,
}

impl TlsConnect<Socket> for Connect {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS needs the server's host name",
                )
            })?;
            let stream = self.connector.connect(name, stream).await?;
            Ok(PgTlsStream(stream))
        })
    }
}

/// A connection to the database over TLS.
pub(crate) struct PgTlsStream(tokio_rustls::client::TlsStream<Socket>);

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    /// No channel binding: SCRAM then authenticates without it
    /// (`channel_binding=prefer`, the default, allows that).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_tokio_postgres_does_not_know_are_taken_out() {
        let (text, mode, root) = take_tls_settings(
            "postgresql://yubin@db.example:5432/yubin?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=a",
        )
        .unwrap();
        assert_eq!(
            text,
            "postgresql://yubin@db.example:5432/yubin?application_name=a"
        );
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));

        let (text, mode, root) =
            take_tls_settings("postgresql://yubin@db/yubin?sslmode=require").unwrap();
        assert_eq!(text, "postgresql://yubin@db/yubin");
        assert_eq!((mode.as_deref(), root), (Some("require"), None));

        let (text, mode, root) = take_tls_settings(
            "host=db.example dbname = yubin sslmode=verify-ca sslrootcert='/etc/my ca.pem' password='it\\'s'",
        )
        .unwrap();
        assert_eq!(text, "host='db.example' dbname='yubin' password='it\\'s'");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/etc/my ca.pem"));
        // What is left still parses, to the same values.
        let config: tokio_postgres::Config = text.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's"[..]));

        assert!(take_tls_settings("host=db dbname").is_err());
        assert!(take_tls_settings("host='db").is_err());
        assert!(take_tls_settings("postgresql://db/yubin?sslrootcert=%zz").is_err());
    }

    #[test]
    fn an_unknown_mode_or_a_missing_root_file_is_named() {
        let error = settings("host=db sslmode=verify")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("sslmode \"verify\""), "{error}");
        let error = settings("host=db sslmode=verify-full sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("sslrootcert /nonexistent/ca.pem"), "{error}");
        assert!(settings("host=db sslmode=disable").is_ok());
    }
}
