//! The keys a server signs with: every `{data_dir}/dkim/DOMAIN/SELECTOR.key`
//! with no further configuration, and a configured key per domain that
//! takes that domain's place. Several keys for one domain all sign (two
//! selectors during a key rotation; an RSA and an Ed25519 key side by
//! side).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::key::{Key, KeyError};

/// A domain's key named in the configuration (`[dkim.domains."D"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The `d=` domain.
    pub domain: String,
    /// The `s=` selector.
    pub selector: String,
    /// The PEM key file.
    pub key: PathBuf,
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// One key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key directory could not be read.
    #[error("{path}: {error}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
}

/// Keys by domain (lower case).
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    domains: BTreeMap<String, Vec<Key>>,
}

impl Keyring {
    /// Reads every key under `dir` (`DOMAIN/SELECTOR.key`; a missing `dir`
    /// is no keys), then puts each override in its domain's place.
    pub fn load(dir: &Path, overrides: &[Override]) -> Result<Keyring, KeyringError> {
        let mut domains: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for (domain, selector, path) in discover(dir)? {
            let key = Key::load(&path, &domain, &selector)?;
            warn_if_readable_by_others(&path);
            domains.entry(key.domain.clone()).or_default().push(key);
        }
        for o in overrides {
            let key = Key::load(&o.key, &o.domain, &o.selector)?;
            warn_if_readable_by_others(&o.key);
            domains.insert(key.domain.clone(), vec![key]);
        }
        Ok(Keyring { domains })
    }

    /// A keyring holding `keys` (tests and tools).
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Keyring {
        let mut domains: BTreeMap<String, Vec<Key>> = BTreeMap::new();
        for key in keys {
            domains.entry(key.domain.clone()).or_default().push(key);
        }
        Keyring { domains }
    }

    /// No keys at all.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Every key, by domain then selector.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.domains.values().flatten()
    }

    /// The keys that sign mail from `domain` (the From: field's): the
    /// domain's own, or else those of the nearest parent domain that has
    /// keys, which DMARC's relaxed alignment accepts (mail from
    /// `MAILER-DAEMON@mx.example.org` signed by `example.org`).
    pub fn for_domain(&self, domain: &str) -> &[Key] {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = domain.as_str();
        loop {
            if let Some(keys) = self.domains.get(candidate) {
                return keys;
            }
            match candidate.split_once('.') {
                // Never a bare top-level domain.
                Some((_, parent)) if parent.contains('.') => candidate = parent,
                _ => return &[],
            }
        }
    }
}

/// `(domain, selector, path)` of every `DOMAIN/SELECTOR.key` under `dir`,
/// in name order.
fn discover(dir: &Path) -> Result<Vec<(String, String, PathBuf)>, KeyringError> {
    let unreadable = |path: &Path| {
        let path = path.to_owned();
        move |error| KeyringError::Directory { path, error }
    };
    let domains = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in domains {
        let entry = entry.map_err(unreadable(dir))?;
        let Some(domain) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !entry.path().is_dir() || domain.starts_with('.') {
            continue;
        }
        let files = std::fs::read_dir(entry.path()).map_err(unreadable(&entry.path()))?;
        for file in files {
            let file = file.map_err(unreadable(&entry.path()))?;
            let name = file.file_name();
            let Some(selector) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if selector.is_empty() || selector.starts_with('.') {
                continue;
            }
            found.push((domain.clone(), selector.to_owned(), file.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// A private key anyone on the machine can read is a key anyone can sign
/// our mail with; say so (OpenDKIM refuses such keys outright).
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(path = %path.display(), "DKIM key is readable by every user; chmod 600 it");
    }
}
