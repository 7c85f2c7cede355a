//! TLS for yubin's clients (`yubin fetch`, the delivery engine): a server's
//! certificate checked against the system's roots (RFC 8314 §5.3, RFC 6125
//! names), against a pinned SHA-256 fingerprint for a server with a
//! self-signed certificate, against the host's TLSA records (DANE), or not
//! at all for encryption only (SMTP's opportunistic TLS). Whatever the trust, the handshake's signatures are
//! verified, so the session key is shared with the holder of the presented
//! key. When a check fails, the fingerprint of what the server showed is
//! kept for the error message, so the user can decide to pin it.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod dane;
mod stream;

pub use dane::Tlsa;
pub use stream::{ClientStream, UpgradeError};

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;

/// How the server's certificate is trusted.
#[derive(Clone, PartialEq, Eq)]
pub enum Trust {
    /// A chain to one of the system's root certificates, for the server's name.
    System,
    /// Exactly the certificate with this SHA-256 fingerprint (of its DER).
    Pinned([u8; 32]),
    /// Any certificate: encryption without authentication, as Postfix's
    /// `smtp_tls_security_level = may` and `encrypt` (MX hosts rarely have
    /// certificates for the names they are reached by, and DNS is not
    /// authenticated anyway).
    EncryptionOnly,
    /// The host's DNSSEC-validated TLSA records (RFC 7672): DANE-EE
    /// records name the server's certificate or key, DANE-TA records a
    /// trust anchor in its chain.
    Dane(Arc<[Tlsa]>),
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::System => f.write_str("System"),
            Trust::Pinned(pin) => write!(f, "Pinned({})", fingerprint_text(pin)),
            Trust::EncryptionOnly => f.write_str("EncryptionOnly"),
            Trust::Dane(tlsa) => write!(f, "Dane({tlsa:?})"),
        }
    }
}

/// Parses a SHA-256 fingerprint: 64 hex digits, optionally in colon-separated
/// pairs (as `openssl x509 -fingerprint -sha256` prints them) and
/// optionally prefixed `sha256:`.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let text = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .or_else(|| text.strip_prefix("sha256 Fingerprint="))
        .unwrap_or(text);
    let digits: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// `AB:CD:…`, the form [`parse_fingerprint`] reads and openssl prints.
pub fn fingerprint_text(fingerprint: &[u8; 32]) -> String {
    fingerprint
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The SHA-256 fingerprint of a certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    sha2::Sha256::digest(cert.as_ref()).into()
}

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The system has no usable root certificates.
    #[error(
        "no system root certificates could be loaded (install ca-certificates, or pin the server's fingerprint)"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS client configuration for `trust`, and the slot where a refused
/// certificate's fingerprint is left.
pub fn client_config(
    trust: &Trust,
) -> Result<(rustls::ClientConfig, SeenCertificate), TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = SeenCertificate::default();
    let check = match trust {
        Trust::System => Check::Chain(system_verifier()?),
        Trust::Pinned(pin) => Check::Pinned(*pin),
        Trust::EncryptionOnly => Check::Any,
        Trust::Dane(tlsa) => Check::Dane(tlsa.clone()),
    };
    let verifier = Verifier {
        check,
        provider: provider.clone(),
        seen: seen.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((config, seen))
}

/// rustls's WebPKI verifier with the system's root certificates (or those
/// of `SSL_CERT_FILE`/`SSL_CERT_DIR`), for checking a chain apart from a
/// handshake (MTA-STS `testing` mode reports what `enforce` would refuse).
pub fn system_verifier() -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsSetupError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))
}

/// The fingerprint of the last certificate a verifier refused.
#[derive(Clone, Debug, Default)]
pub struct SeenCertificate(Arc<Mutex<Option<[u8; 32]>>>);

impl SeenCertificate {
    /// The refused certificate's fingerprint, if one was refused.
    pub fn refused(&self) -> Option<[u8; 32]> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a certificate is checked against.
#[derive(Debug)]
enum Check {
    /// rustls's WebPKI verifier, with the system's roots.
    Chain(Arc<WebPkiServerVerifier>),
    /// One certificate, by fingerprint, whatever its names and dates say:
    /// pinning it is the user's decision to trust it.
    Pinned([u8; 32]),
    /// Any certificate.
    Any,
    /// The host's TLSA records.
    Dane(Arc<[Tlsa]>),
}

/// The one verifier of every trust: checks the certificate as `check`
/// says, notes a refused one's fingerprint, and always verifies the
/// handshake's signatures with the provider's algorithms.
#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
    seen: SeenCertificate,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match &self.check {
            Check::Chain(chain) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Check::Pinned(pin) if fingerprint(end_entity) == *pin => {
                Ok(ServerCertVerified::assertion())
            }
            Check::Pinned(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            Check::Any => Ok(ServerCertVerified::assertion()),
            Check::Dane(tlsa) => dane::verify(
                tlsa,
                &self.provider,
                end_entity,
                intermediates,
                server_name,
                now,
            )
            .map(|()| ServerCertVerified::assertion()),
        };
        if result.is_err() {
            *self.seen.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(fingerprint(end_entity));
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_the_forms_people_paste() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons), Some([0xab; 32]));
        assert_eq!(
            parse_fingerprint(&format!("sha256:{colons}")),
            Some([0xab; 32])
        );
        assert_eq!(
            parse_fingerprint(&format!("sha256 Fingerprint={colons}")),
            Some([0xab; 32])
        );
        assert_eq!(parse_fingerprint(&"AB".repeat(31)), None);
        assert_eq!(parse_fingerprint(&"ZZ".repeat(32)), None);
        assert_eq!(
            parse_fingerprint(&fingerprint_text(&[7; 32])),
            Some([7; 32])
        );
    }
}
