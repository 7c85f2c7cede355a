//! TLS: the rustls server configuration, from PEM files or a self-signed
//! pair generated on first start.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Errors while setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS certificate and key do not work together: {0}")]
    Rustls(#[from] rustls::Error),
    /// Generating the self-signed pair failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Builds the server's TLS configuration (TLS 1.2 and 1.3, ring provider).
pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => ensure_self_signed(config)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| TlsError::File {
            path: cert_path.clone(),
            message: format!("cannot read certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: cert_path,
            message: "no certificate found in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::File {
        path: key_path.clone(),
        message: format!("cannot read the private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(tls))
}

/// The generated pair in `{data_dir}/tls/`, made if missing.
fn ensure_self_signed(config: &Config) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = config.data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let names = vec![config.hostname.clone(), "localhost".to_owned()];
    let generate = || -> Result<(String, String), rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, config.hostname.clone());
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "yubin (self-signed)");
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (cert_pem, key_pem) = generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| TlsError::File {
            path,
            message: e.to_string(),
        }
    };
    fs::create_dir_all(&dir).map_err(file_error(&dir))?;
    // The key first: a certificate never names a key that is not there.
    yubin_durable::replace(&key, key_pem.as_bytes(), 0o600).map_err(file_error(&key))?;
    yubin_durable::replace(&cert, cert_pem.as_bytes(), 0o644).map_err(file_error(&cert))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate; set [tls] cert and key for a real one");
    Ok((cert, key))
}

/// The longest a TLS handshake may take: a minute, and never longer than
/// the session's own timeout, so a client that opens a connection and sends
/// half a ClientHello holds a descriptor only that long.
pub(crate) fn handshake_timeout(session_timeout: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(60).min(session_timeout)
}

/// Accepts a TLS handshake on `tcp` within [`handshake_timeout`] of the
/// session's timeout (implicit TLS ports and STARTTLS alike); the error
/// says why it failed, for the log.
pub(crate) async fn accept_within(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    session_timeout: std::time::Duration,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, String> {
    match tokio::time::timeout(handshake_timeout(session_timeout), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}
