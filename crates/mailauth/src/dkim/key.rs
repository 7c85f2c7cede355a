//! One DKIM private key as it lies on disk: a PEM file holding an RSA key
//! (PKCS#1 or PKCS#8, 2048 bits or more) or an Ed25519 key (PKCS#8, as
//! `openssl genpkey -algorithm ed25519` and `yubin dkim keygen` write it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use mail_auth::common::crypto::{
    Algorithm as Signing, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey,
};
use mail_auth::common::headers::Writable;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::EncodePublicKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// The signing algorithms yubin offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `rsa-sha256`: what every verifier knows.
    Rsa,
    /// `ed25519-sha256` (RFC 8463): short keys, not yet checked everywhere,
    /// so best published next to an RSA key.
    Ed25519,
}

impl Algorithm {
    /// The record's `k=` tag.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Rsa => "rsa-sha256",
            Algorithm::Ed25519 => "ed25519-sha256",
        })
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The file holds no private key we can sign with.
    #[error("{path}: {reason}")]
    Unusable {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A loaded signing key, shared by every message it signs.
#[derive(Clone)]
pub struct Key {
    /// The `d=` domain it signs for.
    pub domain: String,
    /// The `s=` selector its public half is published under.
    pub selector: String,
    /// Where it was read from.
    pub path: PathBuf,
    algorithm: Algorithm,
    public: Vec<u8>,
    signer: Arc<DkimKey>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Reads the PEM key at `path` for `domain` and `selector`.
    pub fn load(path: &Path, domain: &str, selector: &str) -> Result<Key, KeyError> {
        let pem = std::fs::read(path).map_err(|error| KeyError::Read {
            path: path.to_owned(),
            error,
        })?;
        Key::from_pem(&pem, domain, selector)
            .map(|key| key.at(path.to_owned()))
            .map_err(|reason| KeyError::Unusable {
                path: path.to_owned(),
                reason,
            })
    }

    /// The same key, read from `path`.
    pub(crate) fn at(self, path: PathBuf) -> Key {
        Key { path, ..self }
    }

    /// Parses a PEM private key.
    pub fn from_pem(pem: &[u8], domain: &str, selector: &str) -> Result<Key, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|error| {
            format!("no PEM private key in it ({error}); expected an RSA or Ed25519 key")
        })?;
        let (algorithm, signer, public) = match &der {
            PrivateKeyDer::Pkcs8(pkcs8) => {
                // An Ed25519 PKCS#8 key from OpenSSL is version 1 (no public
                // key inside): accepted, the public key is derived.
                match Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                    Ok(key) => {
                        let public = key.public_key();
                        (Algorithm::Ed25519, DkimKey::Ed25519(key), public)
                    }
                    Err(_) => rsa_key(&der)?,
                }
            }
            PrivateKeyDer::Pkcs1(_) => rsa_key(&der)?,
            _ => return Err("an EC key is not a DKIM key; use RSA or Ed25519".into()),
        };
        Ok(Key {
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_owned(),
            path: PathBuf::new(),
            algorithm,
            public,
            signer: Arc::new(signer),
        })
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The TXT record that publishes its public half (RFC 6376 §3.6.1;
    /// RFC 8463 §4.2 for Ed25519's bare 32-octet key).
    pub fn record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.key_type(),
            base64::engine::general_purpose::STANDARD.encode(&self.public)
        )
    }

    /// The record as a zone-file line, split into strings of at most 255
    /// octets (RFC 1035 §3.3.14; verifiers join them, RFC 6376 §3.6.2.2).
    pub fn zone_line(&self) -> String {
        format!(
            "{}. IN TXT {}",
            super::record_name(&self.selector, &self.domain),
            crate::records::txt_strings(&self.record())
        )
    }

    /// The key as `mail-auth` signs with it.
    pub(crate) fn shared(&self) -> SharedKey {
        SharedKey(self.signer.clone())
    }
}

/// An RSA key; the public half as the SubjectPublicKeyInfo that verifiers
/// (OpenDKIM among them) expect in `p=`, not ring's bare PKCS#1 form.
fn rsa_key(der: &PrivateKeyDer<'_>) -> Result<(Algorithm, DkimKey, Vec<u8>), String> {
    let key = RsaKey::<Sha256>::from_key_der(der.clone_key()).map_err(|error| {
        format!("not a usable RSA key ({error}); DKIM keys need 2048 bits or more")
    })?;
    let public = rsa::RsaPublicKey::from_pkcs1_der(&key.public_key())
        .and_then(|public| {
            public
                .to_public_key_der()
                .map(|spki| spki.as_bytes().to_vec())
                .map_err(|_| rsa::pkcs1::Error::Crypto)
        })
        .map_err(|error| format!("its public key cannot be encoded ({error})"))?;
    Ok((Algorithm::Rsa, DkimKey::Rsa(key), public))
}

/// One key behind an `Arc`: `mail-auth` takes its key by value per
/// signer, and a signer is built per message (its header list is the
/// message's own).
pub(crate) struct SharedKey(Arc<DkimKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Signing {
        self.0.algorithm()
    }
}
