//! DANE for SMTP (RFC 7672): a server's certificate checked against the
//! TLSA records its (DNSSEC-validated) name publishes, instead of against
//! the public roots.
//!
//! - DANE-EE(3): the server's own certificate, or its public key, is the
//!   one published. Its names and dates are not looked at (RFC 7672
//!   §3.1.1): the DNS, not a CA, vouches for it.
//! - DANE-TA(2): a certificate in the chain the server sends is the
//!   published trust anchor, and the end-entity certificate must chain to
//!   it and carry the host's name (§3.1.2), as with a public root.
//! - PKIX-TA(0) and PKIX-EE(1) are not for SMTP (§3.1.3) and are not used;
//!   nor are unknown selectors or matching types, or digests of the wrong
//!   length (RFC 7671 §4).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest;

/// DANE-TA: a trust anchor in the server's chain.
const DANE_TA: u8 = 2;
/// DANE-EE: the server's own certificate.
const DANE_EE: u8 = 3;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage: 2 (DANE-TA) and 3 (DANE-EE) are used.
    pub usage: u8,
    /// 0: the whole certificate; 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: the bytes themselves; 1: their SHA-256; 2: their SHA-512.
    pub matching: u8,
    /// What the selected bytes must match.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Tlsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The record's presentation form (RFC 6698 §2.2): `3 1 1 ab12…`.
impl std::fmt::Display for Tlsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: String = self.data.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "{} {} {} {hex}",
            self.usage, self.selector, self.matching
        )
    }
}

impl Tlsa {
    /// Whether an SMTP client can use this record (RFC 7672 §3.1, RFC 7671
    /// §4): DANE-TA or DANE-EE, a known selector, and a known matching
    /// type with data of its length. A host whose TLSA records are all
    /// unusable still gets TLS, without authentication (RFC 7672 §2.2).
    pub fn usable(&self) -> bool {
        let length_right = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        matches!(self.usage, DANE_TA | DANE_EE) && self.selector <= 1 && length_right
    }

    /// Whether `cert` is the certificate (or holds the key) this record
    /// names. A certificate that cannot be parsed matches no SPKI record.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        match self.selector {
            0 => self.matches_bytes(cert.as_ref()),
            1 => match x509_parser::parse_x509_certificate(cert.as_ref()) {
                Ok((_, parsed)) => self.matches_bytes(parsed.public_key().raw),
                Err(_) => false,
            },
            _ => false,
        }
    }

    /// Whether the selected bytes are what the record names.
    fn matches_bytes(&self, selected: &[u8]) -> bool {
        match self.matching {
            0 => selected == self.data.as_slice(),
            1 => sha2::Sha256::digest(selected).as_slice() == self.data.as_slice(),
            2 => sha2::Sha512::digest(selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// Checks the server's chain against the usable records in `tlsa`.
pub(crate) fn verify(
    tlsa: &[Tlsa],
    provider: &Arc<CryptoProvider>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let usable = || tlsa.iter().filter(|r| r.usable());
    if usable().any(|r| r.usage == DANE_EE && r.matches(end_entity)) {
        return Ok(());
    }
    let mut last = None;
    for anchor in intermediates
        .iter()
        .filter(|cert| usable().any(|r| r.usage == DANE_TA && r.matches(cert)))
    {
        let mut roots = RootCertStore::empty();
        if roots.add(anchor.clone()).is_err() {
            continue;
        }
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        match chain.verify_server_cert(end_entity, intermediates, server_name, &[], now) {
            Ok(_) => return Ok(()),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or(rustls::Error::InvalidCertificate(
        rustls::CertificateError::ApplicationVerificationFailure,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PublicKeyData};

    struct Issued {
        ca: CertificateDer<'static>,
        ca_spki: Vec<u8>,
        leaf: CertificateDer<'static>,
        leaf_spki: Vec<u8>,
    }

    /// A CA and a leaf for `name` issued by it.
    fn issue(name: &str) -> Issued {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        Issued {
            ca: ca.der().clone(),
            ca_spki: ca_key.subject_public_key_info(),
            leaf: leaf.der().clone(),
            leaf_spki: leaf_key.subject_public_key_info(),
        }
    }

    fn record(usage: u8, selector: u8, matching: u8, bytes: &[u8]) -> Tlsa {
        let data = match matching {
            1 => sha2::Sha256::digest(bytes).to_vec(),
            2 => sha2::Sha512::digest(bytes).to_vec(),
            _ => bytes.to_vec(),
        };
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    fn check(tlsa: &[Tlsa], issued: &Issued, name: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        verify(
            tlsa,
            &provider,
            &issued.leaf,
            std::slice::from_ref(&issued.ca),
            &server_name,
            UnixTime::now(),
        )
    }

    #[test]
    fn dane_ee_matches_the_certificate_or_its_key_in_every_matching_type() {
        let issued = issue("mx.example.test");
        for selector in 0..=1 {
            let bytes = if selector == 0 {
                issued.leaf.as_ref().to_vec()
            } else {
                issued.leaf_spki.clone()
            };
            for matching in 0..=2 {
                let tlsa = [record(3, selector, matching, &bytes)];
                assert!(tlsa[0].usable());
                // DANE-EE ignores names: the DNS vouches for the key.
                assert!(check(&tlsa, &issued, "other.example.test").is_ok());
            }
        }
    }

    #[test]
    fn another_key_or_a_pkix_usage_does_not_match() {
        let issued = issue("mx.example.test");
        let other = issue("mx.example.test");
        let wrong = [record(3, 1, 1, &other.leaf_spki)];
        assert!(check(&wrong, &issued, "mx.example.test").is_err());
        // PKIX-EE (1) names the right key but is not for SMTP.
        let pkix = [record(1, 1, 1, &issued.leaf_spki)];
        assert!(!pkix[0].usable());
        assert!(check(&pkix, &issued, "mx.example.test").is_err());
        // A digest of the wrong length is unusable.
        let mut short = record(3, 1, 1, &issued.leaf_spki);
        short.data.pop();
        assert!(!short.usable());
        assert!(check(&[short], &issued, "mx.example.test").is_err());
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain_and_the_hosts_name() {
        let issued = issue("mx.example.test");
        for tlsa in [
            record(2, 1, 1, &issued.ca_spki),
            record(2, 0, 2, issued.ca.as_ref()),
        ] {
            assert!(check(std::slice::from_ref(&tlsa), &issued, "mx.example.test").is_ok());
            assert!(
                check(&[tlsa], &issued, "mx.other.test").is_err(),
                "DANE-TA checks the name"
            );
        }
        let stranger = issue("mx.example.test");
        let tlsa = [record(2, 1, 1, &stranger.ca_spki)];
        assert!(check(&tlsa, &issued, "mx.example.test").is_err());
    }
}
