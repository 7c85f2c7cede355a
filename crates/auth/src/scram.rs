//! SCRAM key material (RFC 5802 §3), stored in Dovecot's
//! `iterations,base64 salt,base64 StoredKey,base64 ServerKey` form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::Digest;
use subtle::ConstantTimeEq;

/// The hash function of a SCRAM variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SCRAM-SHA-1 (RFC 5802)
    Sha1,
    /// SCRAM-SHA-256 (RFC 7677)
    Sha256,
}

impl Hash {
    /// H()
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    /// HMAC()
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so new_from_slice cannot fail here.
        match self {
            Hash::Sha1 => hmac::Hmac::<sha1::Sha1>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Hash::Sha256 => hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Hi(): PBKDF2 with this HMAC.
    pub fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }
}

/// What a server keeps to run SCRAM without the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKeys {
    /// The hash function.
    pub hash: Hash,
    /// The iteration count `i`.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(ClientKey)
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key")
    pub server_key: Vec<u8>,
}

impl StoredKeys {
    /// Derives the keys from a password.
    pub fn derive(hash: Hash, password: &[u8], salt: &[u8], iterations: u32) -> StoredKeys {
        let salted = hash.hi(password, salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        StoredKeys {
            hash,
            iterations,
            salt: salt.to_vec(),
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }

    /// Parses Dovecot's form.
    pub fn parse(data: &str, hash: Hash) -> Option<StoredKeys> {
        let mut parts = data.split(',');
        let iterations: u32 = parts.next()?.parse().ok().filter(|&i| i > 0)?;
        let salt = B64.decode(parts.next()?).ok()?;
        let stored_key = B64.decode(parts.next()?).ok()?;
        let server_key = B64.decode(parts.next()?).ok()?;
        if parts.next().is_some()
            || stored_key.len() != hash.len()
            || server_key.len() != hash.len()
        {
            return None;
        }
        Some(StoredKeys {
            hash,
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Dovecot's form.
    pub fn to_dovecot(&self) -> String {
        format!(
            "{},{},{},{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    /// Whether a plaintext password (USER/PASS, AUTH PLAIN) matches.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let derived = StoredKeys::derive(self.hash, password, &self.salt, self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_stored_keys_round_trip() {
        let data = "4096,fWMylOXMmwj7lmzwqIDREQ==,YmELRdm95fV06v/IWdVvXY+cKzRYZVCAsZfTwIWXhgY=,8AO/RPkktE+3KiXIqQv4eoHFs9fqePVXEWhlHtqHrgc=";
        let keys = StoredKeys::parse(data, Hash::Sha256).unwrap();
        assert_eq!(keys.to_dovecot(), data);
        assert!(keys.verify_password(b"secret"));
        let derived = StoredKeys::derive(Hash::Sha256, b"secret", &keys.salt, 4096);
        assert_eq!(derived, keys);
    }
}
