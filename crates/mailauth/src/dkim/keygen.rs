//! `yubin dkim keygen`: a new private key written where the keyring finds
//! it (`DIR/DOMAIN/SELECTOR.key`, mode 0600, never over an existing key:
//! that one may be live), and the TXT record that publishes it.

use std::path::{Path, PathBuf};

use mail_auth::common::crypto::Ed25519Key;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use yubin_durable::Staged;

use super::key::{Algorithm, Key};

/// RSA keys are made with 2048 bits: what the large providers require and
/// what fits a TXT record without trouble.
pub const RSA_BITS: usize = 2048;

/// A new key, on disk.
#[derive(Debug)]
pub struct Generated {
    /// The key as the keyring will load it.
    pub key: Key,
    /// Where it was written.
    pub path: PathBuf,
}

impl Generated {
    /// The record's name.
    pub fn record_name(&self) -> String {
        super::record_name(&self.key.selector, &self.key.domain)
    }

    /// The record as a zone-file line (see [`Key::zone_line`]).
    pub fn zone_line(&self) -> String {
        self.key.zone_line()
    }
}

/// Why no key was made.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The domain or selector cannot be a DNS label sequence (or would
    /// leave the key directory).
    #[error("{what} {value:?} is not a domain name (letters, digits, '-' and '.')")]
    Name {
        /// "domain" or "selector".
        what: &'static str,
        /// What was given.
        value: String,
    },
    /// A key of that name exists already.
    #[error("{0} exists; choose another selector (a published key may still be in use)")]
    Exists(PathBuf),
    /// The key could not be made or written.
    #[error("{0}")]
    Failed(String),
}

/// Makes a key for `domain` under `selector` in `dir` (the keyring's
/// directory, `{data_dir}/dkim`).
pub fn generate(
    dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
) -> Result<Generated, KeygenError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    check_name("domain", &domain)?;
    check_name("selector", selector)?;
    let pem = match algorithm {
        Algorithm::Rsa => {
            let mut rng = rsa::rand_core::OsRng;
            let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS)
                .map_err(|e| KeygenError::Failed(format!("making an RSA key: {e}")))?;
            key.to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeygenError::Failed(format!("encoding the key: {e}")))?
                .to_string()
        }
        Algorithm::Ed25519 => {
            let der = Ed25519Key::generate_pkcs8()
                .map_err(|e| KeygenError::Failed(format!("making an Ed25519 key: {e}")))?;
            rsa::pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
                .map_err(|e| KeygenError::Failed(format!("encoding the key: {e}")))?
        }
    };
    let key = Key::from_pem(pem.as_bytes(), &domain, selector).map_err(KeygenError::Failed)?;
    let domain_dir = dir.join(&domain);
    create_private_dir(dir)?;
    create_private_dir(&domain_dir)?;
    let path = domain_dir.join(format!("{selector}.key"));
    if path.exists() {
        return Err(KeygenError::Exists(path));
    }
    let tmp = domain_dir.join(format!(".{selector}.key.tmp.{}", std::process::id()));
    let staged = Staged::write(tmp, 0o600, |file| {
        use std::io::Write;
        file.write_all(pem.as_bytes())
    })
    .map_err(|e| KeygenError::Failed(e.to_string()))?;
    staged.link_as(&path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            KeygenError::Exists(path.clone())
        } else {
            KeygenError::Failed(e.to_string())
        }
    })?;
    Ok(Generated {
        key: key.at(path.clone()),
        path,
    })
}

/// Letters, digits, hyphens and dots, no empty label: a DNS name, and so
/// never a path that leaves the directory.
fn check_name(what: &'static str, value: &str) -> Result<(), KeygenError> {
    let fine = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if fine {
        Ok(())
    } else {
        Err(KeygenError::Name {
            what,
            value: value.to_owned(),
        })
    }
}

/// Creates `dir` and any missing parents (mode 0700), durably.
fn create_private_dir(dir: &Path) -> Result<(), KeygenError> {
    use std::os::unix::fs::DirBuilderExt;
    let failed = |e: std::io::Error| KeygenError::Failed(format!("{}: {e}", dir.display()));
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(failed)?;
    yubin_durable::sync_parent(dir).map_err(failed)
}
