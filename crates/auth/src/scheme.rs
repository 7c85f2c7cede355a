//! Dovecot's password schemes: `{SCHEME}data` in a passwd-file.
//!
//! Hashes made by Dovecot's `doveadm pw` verify unchanged, and [`hash`] makes
//! hashes Dovecot accepts. Formats (Dovecot's password_schemes documentation):
//!
//! | scheme | data |
//! |---|---|
//! | PLAIN, CLEAR, CLEARTEXT | the password (suffix `.b64`/`.hex` for an encoded one) |
//! | CRAM-MD5 | 64 hex digits: the HMAC-MD5 contexts ([`HmacMd5Contexts`]) |
//! | PLAIN-MD5, LDAP-MD5 | MD5 of the password, hex or base64 |
//! | SHA, SHA256, SHA512 | SHA-1/-256/-512 of the password, base64 or hex |
//! | SMD5, SSHA, SSHA256, SSHA512 | base64(H(password ‖ salt) ‖ salt) |
//! | MD5-CRYPT, SHA256-CRYPT, SHA512-CRYPT | `$1$…`, `$5$…`, `$6$…` |
//! | BLF-CRYPT | `$2y$…` (bcrypt) |
//! | CRYPT | any of the crypt forms above, chosen by prefix |
//! | ARGON2I, ARGON2ID | PHC string |
//! | PBKDF2 | `$1$salt$rounds$hex`: PBKDF2-HMAC-SHA1, 20 octets |
//! | SCRAM-SHA-1, SCRAM-SHA-256 | `iter,b64 salt,b64 StoredKey,b64 ServerKey` |

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest;
use subtle::ConstantTimeEq;

use crate::md5_context::{HmacMd5Contexts, hex, unhex};
use crate::{random, scram};

/// A password scheme by Dovecot's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the scheme names in the table above
pub enum Scheme {
    Plain,
    CramMd5,
    PlainMd5,
    LdapMd5,
    Sha,
    Sha256,
    Sha512,
    Smd5,
    Ssha,
    Ssha256,
    Ssha512,
    Md5Crypt,
    Sha256Crypt,
    Sha512Crypt,
    BlfCrypt,
    Crypt,
    Argon2i,
    Argon2id,
    Pbkdf2,
    ScramSha1,
    ScramSha256,
}

/// The schemes `yubin pw` can make, in the order it lists them.
pub const GENERATABLE: &[Scheme] = &[
    Scheme::Plain,
    Scheme::CramMd5,
    Scheme::PlainMd5,
    Scheme::LdapMd5,
    Scheme::Sha,
    Scheme::Sha256,
    Scheme::Sha512,
    Scheme::Smd5,
    Scheme::Ssha,
    Scheme::Ssha256,
    Scheme::Ssha512,
    Scheme::Md5Crypt,
    Scheme::Sha256Crypt,
    Scheme::Sha512Crypt,
    Scheme::BlfCrypt,
    Scheme::Argon2i,
    Scheme::Argon2id,
    Scheme::Pbkdf2,
    Scheme::ScramSha1,
    Scheme::ScramSha256,
];

impl Scheme {
    /// Whether checking a password costs a digest or two: not the schemes
    /// built to be slow (the crypt family, Argon2, PBKDF2, and SCRAM's
    /// iterated keys).
    pub fn is_quick(self) -> bool {
        matches!(
            self,
            Scheme::Plain
                | Scheme::CramMd5
                | Scheme::PlainMd5
                | Scheme::LdapMd5
                | Scheme::Sha
                | Scheme::Sha256
                | Scheme::Sha512
                | Scheme::Smd5
                | Scheme::Ssha
                | Scheme::Ssha256
                | Scheme::Ssha512
        )
    }

    /// Looks a scheme up by name, case-insensitively (`CLEAR` and `CLEARTEXT` are PLAIN).
    pub fn from_name(name: &str) -> Option<Scheme> {
        let upper = name.to_ascii_uppercase();
        Some(match upper.as_str() {
            "PLAIN" | "CLEAR" | "CLEARTEXT" => Scheme::Plain,
            "CRAM-MD5" | "HMAC-MD5" => Scheme::CramMd5,
            "PLAIN-MD5" => Scheme::PlainMd5,
            "LDAP-MD5" => Scheme::LdapMd5,
            "SHA" | "SHA1" => Scheme::Sha,
            "SHA256" => Scheme::Sha256,
            "SHA512" => Scheme::Sha512,
            "SMD5" => Scheme::Smd5,
            "SSHA" => Scheme::Ssha,
            "SSHA256" => Scheme::Ssha256,
            "SSHA512" => Scheme::Ssha512,
            "MD5-CRYPT" | "MD5" => Scheme::Md5Crypt,
            "SHA256-CRYPT" => Scheme::Sha256Crypt,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "BLF-CRYPT" => Scheme::BlfCrypt,
            "CRYPT" => Scheme::Crypt,
            "ARGON2I" => Scheme::Argon2i,
            "ARGON2ID" => Scheme::Argon2id,
            "PBKDF2" => Scheme::Pbkdf2,
            "SCRAM-SHA-1" => Scheme::ScramSha1,
            "SCRAM-SHA-256" => Scheme::ScramSha256,
            _ => return None,
        })
    }

    /// Dovecot's name for the scheme.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Plain => "PLAIN",
            Scheme::CramMd5 => "CRAM-MD5",
            Scheme::PlainMd5 => "PLAIN-MD5",
            Scheme::LdapMd5 => "LDAP-MD5",
            Scheme::Sha => "SHA",
            Scheme::Sha256 => "SHA256",
            Scheme::Sha512 => "SHA512",
            Scheme::Smd5 => "SMD5",
            Scheme::Ssha => "SSHA",
            Scheme::Ssha256 => "SSHA256",
            Scheme::Ssha512 => "SSHA512",
            Scheme::Md5Crypt => "MD5-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Crypt => "CRYPT",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Pbkdf2 => "PBKDF2",
            Scheme::ScramSha1 => "SCRAM-SHA-1",
            Scheme::ScramSha256 => "SCRAM-SHA-256",
        }
    }
}

/// Errors from parsing a stored password or making a hash.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemeError {
    /// The `{…}` names no scheme we know.
    #[error("unknown password scheme {0:?}")]
    UnknownScheme(String),
    /// The `{` has no matching `}`.
    #[error("password field starts with '{{' but has no closing '}}'")]
    Unterminated,
    /// The scheme's data is malformed.
    #[error("malformed {0} password data")]
    Malformed(&'static str),
    /// A parameter (rounds, cost) is out of range.
    #[error("invalid parameter for {0}: {1}")]
    BadParameter(&'static str, String),
}

/// How the data of a PLAIN-family password is encoded (`{PLAIN.b64}` …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Raw,
    Base64,
    Hex,
}

/// A password field from a passwd-file, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPassword {
    scheme: Scheme,
    encoding: Encoding,
    data: String,
}

impl StoredPassword {
    /// Parses `{SCHEME}data`, or bare `data` in the `default` scheme
    /// (Dovecot's passwd-file default is CRYPT).
    pub fn parse(field: &str, default: Scheme) -> Result<StoredPassword, SchemeError> {
        let Some(rest) = field.strip_prefix('{') else {
            return Ok(StoredPassword {
                scheme: default,
                encoding: Encoding::Raw,
                data: field.to_owned(),
            });
        };
        let close = rest.find('}').ok_or(SchemeError::Unterminated)?;
        let (name, data) = (&rest[..close], &rest[close + 1..]);
        let (name, encoding) = match name.rsplit_once('.') {
            Some((base, suffix))
                if suffix.eq_ignore_ascii_case("b64") || suffix.eq_ignore_ascii_case("base64") =>
            {
                (base, Encoding::Base64)
            }
            Some((base, suffix)) if suffix.eq_ignore_ascii_case("hex") => (base, Encoding::Hex),
            _ => (name, Encoding::Raw),
        };
        let scheme =
            Scheme::from_name(name).ok_or_else(|| SchemeError::UnknownScheme(name.to_owned()))?;
        let stored = StoredPassword {
            scheme,
            encoding,
            data: data.to_owned(),
        };
        stored.check()?;
        Ok(stored)
    }

    /// A password in `scheme` that nothing verifies against (a hash of random
    /// bytes), used to spend the same time on unknown users as on known ones.
    pub fn unguessable(scheme: Scheme) -> StoredPassword {
        let secret = random::alphanumeric(32);
        match hash(scheme, secret.as_bytes(), None) {
            Ok(field) => {
                StoredPassword::parse(&field, scheme).unwrap_or_else(|_| Self::plain(&secret))
            }
            Err(_) => Self::plain(&secret),
        }
    }

    fn plain(secret: &str) -> StoredPassword {
        StoredPassword {
            scheme: Scheme::Plain,
            encoding: Encoding::Raw,
            data: secret.to_owned(),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Checks the data's shape now, so a broken passwd-file line is reported
    /// when the file is loaded rather than as a failed login.
    fn check(&self) -> Result<(), SchemeError> {
        let ok = match self.scheme {
            Scheme::Plain => self.plaintext().is_some(),
            Scheme::CramMd5 => HmacMd5Contexts::from_hex(&self.data).is_some(),
            Scheme::PlainMd5 | Scheme::LdapMd5 => digest_bytes(&self.data, 16).is_some(),
            Scheme::Sha => digest_bytes(&self.data, 20).is_some(),
            Scheme::Sha256 => digest_bytes(&self.data, 32).is_some(),
            Scheme::Sha512 => digest_bytes(&self.data, 64).is_some(),
            Scheme::Smd5 => salted(&self.data, 16).is_some(),
            Scheme::Ssha => salted(&self.data, 20).is_some(),
            Scheme::Ssha256 => salted(&self.data, 32).is_some(),
            Scheme::Ssha512 => salted(&self.data, 64).is_some(),
            Scheme::Md5Crypt => self.data.starts_with("$1$"),
            Scheme::Sha256Crypt => self.data.starts_with("$5$"),
            Scheme::Sha512Crypt => self.data.starts_with("$6$"),
            Scheme::BlfCrypt => self.data.starts_with("$2"),
            Scheme::Crypt => true,
            Scheme::Argon2i => self.data.starts_with("$argon2i$"),
            Scheme::Argon2id => self.data.starts_with("$argon2id$"),
            Scheme::Pbkdf2 => parse_pbkdf2(&self.data).is_some(),
            Scheme::ScramSha1 => scram::StoredKeys::parse(&self.data, scram::Hash::Sha1).is_some(),
            Scheme::ScramSha256 => {
                scram::StoredKeys::parse(&self.data, scram::Hash::Sha256).is_some()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(SchemeError::Malformed(self.scheme.name()))
        }
    }

    /// Whether `password` matches. Comparisons of digests are constant-time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let data = self.data.as_str();
        match self.scheme {
            Scheme::Plain => self
                .plaintext()
                .is_some_and(|p| bool::from(p.ct_eq(password))),
            Scheme::CramMd5 => HmacMd5Contexts::from_hex(data)
                .is_some_and(|c| c == HmacMd5Contexts::from_password(password)),
            Scheme::PlainMd5 | Scheme::LdapMd5 => digest_matches(data, &md5::Md5::digest(password)),
            Scheme::Sha => digest_matches(data, &sha1::Sha1::digest(password)),
            Scheme::Sha256 => digest_matches(data, &sha2::Sha256::digest(password)),
            Scheme::Sha512 => digest_matches(data, &sha2::Sha512::digest(password)),
            Scheme::Smd5 => salted_matches::<md5::Md5>(data, 16, password),
            Scheme::Ssha => salted_matches::<sha1::Sha1>(data, 20, password),
            Scheme::Ssha256 => salted_matches::<sha2::Sha256>(data, 32, password),
            Scheme::Ssha512 => salted_matches::<sha2::Sha512>(data, 64, password),
            Scheme::Md5Crypt
            | Scheme::Sha256Crypt
            | Scheme::Sha512Crypt
            | Scheme::BlfCrypt
            | Scheme::Crypt => crypt_matches(data, password),
            Scheme::Argon2i | Scheme::Argon2id => {
                use argon2::PasswordVerifier;
                argon2::Argon2::default()
                    .verify_password(password, data)
                    .is_ok()
            }
            Scheme::Pbkdf2 => parse_pbkdf2(data).is_some_and(|(salt, rounds, expected)| {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt.as_bytes(), rounds, &mut out);
                bool::from(out.ct_eq(&expected[..]))
            }),
            Scheme::ScramSha1 => scram::StoredKeys::parse(data, scram::Hash::Sha1)
                .is_some_and(|k| k.verify_password(password)),
            Scheme::ScramSha256 => scram::StoredKeys::parse(data, scram::Hash::Sha256)
                .is_some_and(|k| k.verify_password(password)),
        }
    }

    /// The password itself, for schemes that store it (APOP and the
    /// challenge-response mechanisms need a shared secret).
    pub fn plaintext(&self) -> Option<Vec<u8>> {
        if self.scheme != Scheme::Plain {
            return None;
        }
        match self.encoding {
            Encoding::Raw => Some(self.data.as_bytes().to_vec()),
            Encoding::Base64 => B64.decode(&self.data).ok(),
            Encoding::Hex => unhex(&self.data),
        }
    }

    /// The HMAC-MD5 contexts CRAM-MD5 needs, if this scheme yields them.
    pub fn cram_md5(&self) -> Option<HmacMd5Contexts> {
        match self.scheme {
            Scheme::CramMd5 => HmacMd5Contexts::from_hex(&self.data),
            Scheme::Plain => self.plaintext().map(|p| HmacMd5Contexts::from_password(&p)),
            _ => None,
        }
    }

    /// The stored SCRAM keys for `hash`, if this is a SCRAM entry for it.
    /// (A PLAIN password's keys are derived by `Users::scram`, which knows
    /// the secret their salt comes from.)
    pub fn scram(&self, hash: scram::Hash) -> Option<scram::StoredKeys> {
        match (self.scheme, hash) {
            (Scheme::ScramSha1, scram::Hash::Sha1) | (Scheme::ScramSha256, scram::Hash::Sha256) => {
                scram::StoredKeys::parse(&self.data, hash)
            }
            _ => None,
        }
    }
}

/// Makes `{SCHEME}data` for a password. `rounds` sets the cost where the
/// scheme has one (crypt rounds, bcrypt cost, PBKDF2/SCRAM iterations).
pub fn hash(scheme: Scheme, password: &[u8], rounds: Option<u32>) -> Result<String, SchemeError> {
    let data = match scheme {
        Scheme::Plain => match std::str::from_utf8(password) {
            // A ':' would end the passwd-file field, so such passwords are stored base64.
            Ok(text) if !text.contains(':') && !text.starts_with('{') => text.to_owned(),
            _ => return Ok(format!("{{PLAIN.b64}}{}", B64.encode(password))),
        },
        Scheme::CramMd5 => HmacMd5Contexts::from_password(password).to_hex(),
        Scheme::PlainMd5 => hex(&md5::Md5::digest(password)),
        Scheme::LdapMd5 => B64.encode(md5::Md5::digest(password)),
        Scheme::Sha => B64.encode(sha1::Sha1::digest(password)),
        Scheme::Sha256 => B64.encode(sha2::Sha256::digest(password)),
        Scheme::Sha512 => B64.encode(sha2::Sha512::digest(password)),
        Scheme::Smd5 => salted_hash::<md5::Md5>(password),
        Scheme::Ssha => salted_hash::<sha1::Sha1>(password),
        Scheme::Ssha256 => salted_hash::<sha2::Sha256>(password),
        Scheme::Ssha512 => salted_hash::<sha2::Sha512>(password),
        Scheme::Md5Crypt => crate::md5_crypt::hash(password, &crypt_salt(8)),
        Scheme::Sha256Crypt | Scheme::Sha512Crypt | Scheme::Crypt => {
            sha_crypt_hash(scheme, password, rounds)?
        }
        Scheme::BlfCrypt => {
            // doveadm's default cost is 5; allow the caller to raise it.
            let cost = rounds.unwrap_or(5);
            bcrypt::hash_with_result(password, cost)
                .map_err(|e| SchemeError::BadParameter("BLF-CRYPT", e.to_string()))?
                .format_for_version(bcrypt::Version::TwoY)
        }
        Scheme::Argon2i | Scheme::Argon2id => argon2_hash(scheme, password, rounds)?,
        Scheme::Pbkdf2 => {
            let rounds = rounds.unwrap_or(5000);
            if rounds == 0 {
                return Err(SchemeError::BadParameter(
                    "PBKDF2",
                    "rounds must be positive".into(),
                ));
            }
            let salt = crypt_salt(16);
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt.as_bytes(), rounds, &mut out);
            format!("$1${salt}${rounds}${}", hex(&out))
        }
        Scheme::ScramSha1 | Scheme::ScramSha256 => {
            let hash = if scheme == Scheme::ScramSha1 {
                scram::Hash::Sha1
            } else {
                scram::Hash::Sha256
            };
            let iterations = rounds.unwrap_or(4096);
            if iterations == 0 {
                return Err(SchemeError::BadParameter(
                    scheme.name(),
                    "rounds must be positive".into(),
                ));
            }
            scram::StoredKeys::derive(hash, password, &random::bytes(16), iterations).to_dovecot()
        }
    };
    Ok(format!("{{{}}}{data}", scheme.name()))
}

fn sha_crypt_hash(
    scheme: Scheme,
    password: &[u8],
    rounds: Option<u32>,
) -> Result<String, SchemeError> {
    use sha_crypt::password_hash::CustomizedPasswordHasher;
    use sha_crypt::{Algorithm, Params, ShaCrypt};
    let algorithm = if scheme == Scheme::Sha256Crypt {
        Algorithm::Sha256Crypt
    } else {
        Algorithm::Sha512Crypt
    };
    let params = Params::new(rounds.unwrap_or(Params::RECOMMENDED_ROUNDS))
        .map_err(|e| SchemeError::BadParameter(scheme.name(), e.to_string()))?;
    // The hasher base64-encodes the salt: 12 random octets give crypt's 16 characters.
    let hashed = ShaCrypt::new(algorithm, params)
        .hash_password_customized(password, &random::bytes(12), None, None, params)
        .map_err(|e| SchemeError::BadParameter(scheme.name(), e.to_string()))?;
    Ok(hashed.to_string())
}

fn argon2_hash(
    scheme: Scheme,
    password: &[u8],
    rounds: Option<u32>,
) -> Result<String, SchemeError> {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let algorithm = if scheme == Scheme::Argon2i {
        Algorithm::Argon2i
    } else {
        Algorithm::Argon2id
    };
    // doveadm's defaults: m=65536 KiB, t=3, p=1.
    let params = Params::new(65536, rounds.unwrap_or(3), 1, None)
        .map_err(|e| SchemeError::BadParameter(scheme.name(), e.to_string()))?;
    let hashed = Argon2::new(algorithm, Version::V0x13, params)
        .hash_password_with_salt(password, &random::bytes(16))
        .map_err(|e| SchemeError::BadParameter(scheme.name(), e.to_string()))?;
    Ok(hashed.to_string())
}

/// Verifies a crypt(3)-style hash by its prefix.
fn crypt_matches(hash: &str, password: &[u8]) -> bool {
    if hash.starts_with("$1$") {
        let computed = crate::md5_crypt::hash(password, crate::md5_crypt::salt_of(hash));
        bool::from(computed.as_bytes().ct_eq(hash.as_bytes()))
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        use sha_crypt::password_hash::PasswordVerifier;
        sha_crypt::ShaCrypt::default()
            .verify_password(password, hash)
            .is_ok()
    } else if hash.starts_with("$2") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else {
        // Traditional DES crypt and other libc-specific forms are not supported.
        false
    }
}

/// `n` characters of crypt's salt alphabet.
fn crypt_salt(n: usize) -> String {
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    random::bytes(n)
        .into_iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect()
}

/// A plain digest stored as hex or base64, told apart by length.
fn digest_bytes(data: &str, len: usize) -> Option<Vec<u8>> {
    if data.len() == len * 2
        && let Some(bytes) = unhex(data)
    {
        return Some(bytes);
    }
    B64.decode(data).ok().filter(|b| b.len() == len)
}

fn digest_matches(data: &str, computed: &[u8]) -> bool {
    digest_bytes(data, computed.len()).is_some_and(|expected| bool::from(expected.ct_eq(computed)))
}

/// Splits base64(digest ‖ salt) into its parts.
fn salted(data: &str, digest_len: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut bytes = B64.decode(data).ok()?;
    if bytes.len() < digest_len {
        return None;
    }
    let salt = bytes.split_off(digest_len);
    Some((bytes, salt))
}

fn salted_matches<D: Digest>(data: &str, digest_len: usize, password: &[u8]) -> bool {
    salted(data, digest_len).is_some_and(|(expected, salt)| {
        let mut hasher = D::new();
        hasher.update(password);
        hasher.update(&salt);
        bool::from(hasher.finalize().as_slice().ct_eq(&expected))
    })
}

fn salted_hash<D: Digest>(password: &[u8]) -> String {
    let salt = random::bytes(8);
    let mut hasher = D::new();
    hasher.update(password);
    hasher.update(&salt);
    let mut out = hasher.finalize().to_vec();
    out.extend_from_slice(&salt);
    B64.encode(out)
}

/// `$1$salt$rounds$hex` → (salt, rounds, 20-octet digest).
fn parse_pbkdf2(data: &str) -> Option<(&str, u32, Vec<u8>)> {
    let rest = data.strip_prefix("$1$")?;
    let mut parts = rest.split('$');
    let salt = parts.next()?;
    let rounds: u32 = parts.next()?.parse().ok().filter(|&r| r > 0)?;
    let digest = unhex(parts.next()?).filter(|d| d.len() == 20)?;
    if parts.next().is_some() {
        return None;
    }
    Some((salt, rounds, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `doveadm pw -p secret -s …` from Dovecot 2.3.19.1 (ecosystem.md §2.3).
    const DOVECOT_VECTORS: &[&str] = &[
        "{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56",
        "{SHA512-CRYPT}$6$gUxx67c9oQ/CKtmm$NJ6jL1fZJFcXEX15LSCxVOqHEaKunNuRq6EsvlZ3nEZYNkutN0VWQE45fa0CILmHMxFG96CbkNwZ2Hib3m/z80",
        "{SHA256-CRYPT}$5$jfQZrwWmN6Upx1kM$xBSMY5P118QVXgmQHEnQ4KDsODCKtrxHh/upMOZW3q9",
        "{BLF-CRYPT}$2y$05$491UQLRv30pIm91vOiGXqeuZpr55m8vCr1uuitpR4o5TjUvLJMZCW",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$6pVqtnumohF1bpywjAibCw$KC2WLjALJsDhhRPB9BYoWd2wU6tlHKaeb7El1rlnnWA",
        "{SSHA256}GDWTYoeWCiUGL8ZeQaIAfw6ztMv6zA9e0614OPPWaoGMiq0K",
        "{SSHA}FYTGHClXXAdyI5o2zDldqGR945Hnq8UF",
        "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
        "{MD5-CRYPT}$1$3Qt.cFAl$EY2hr50BF5JQ2y9OmiU/b.",
        "{PBKDF2}$1$T4/3zdXXj/7pf2Su$5000$2ebea7ad6a7f0b0a69bb2d92e1bb49ccb6a23857",
        "{SCRAM-SHA-256}4096,fWMylOXMmwj7lmzwqIDREQ==,YmELRdm95fV06v/IWdVvXY+cKzRYZVCAsZfTwIWXhgY=,8AO/RPkktE+3KiXIqQv4eoHFs9fqePVXEWhlHtqHrgc=",
        "{PLAIN}secret",
        "{plain}secret",
        "{PLAIN.b64}c2VjcmV0",
        "{CRYPT}$6$gUxx67c9oQ/CKtmm$NJ6jL1fZJFcXEX15LSCxVOqHEaKunNuRq6EsvlZ3nEZYNkutN0VWQE45fa0CILmHMxFG96CbkNwZ2Hib3m/z80",
    ];

    #[test]
    fn dovecot_hashes_verify_unchanged() {
        for vector in DOVECOT_VECTORS {
            let stored = StoredPassword::parse(vector, Scheme::Crypt).expect(vector);
            assert!(stored.verify(b"secret"), "{vector} should accept 'secret'");
            assert!(!stored.verify(b"Secret"), "{vector} should refuse 'Secret'");
            assert!(!stored.verify(b""), "{vector} should refuse ''");
        }
    }

    #[test]
    fn argon2i_verifies() {
        let made = hash(Scheme::Argon2i, b"secret", Some(1)).unwrap();
        assert!(made.starts_with("{ARGON2I}$argon2i$v=19$m=65536,t=1,p=1$"));
        assert!(
            StoredPassword::parse(&made, Scheme::Crypt)
                .unwrap()
                .verify(b"secret")
        );
    }

    #[test]
    fn made_hashes_verify_and_carry_the_scheme_name() {
        for &scheme in GENERATABLE {
            let rounds = match scheme {
                Scheme::Argon2i | Scheme::Argon2id => Some(1),
                Scheme::BlfCrypt => Some(4),
                _ => None,
            };
            let made = hash(scheme, b"pa:ss w\xc3\xb6rd", rounds).unwrap();
            assert!(made.starts_with('{'), "{made}");
            let stored = StoredPassword::parse(&made, Scheme::Crypt).unwrap();
            assert!(
                stored.verify(b"pa:ss w\xc3\xb6rd"),
                "{}: {made}",
                scheme.name()
            );
            assert!(!stored.verify(b"pa:ss word"), "{}: {made}", scheme.name());
            assert!(!made.contains('\n'));
        }
    }

    #[test]
    fn crypt_without_braces_is_the_default_scheme() {
        let stored =
            StoredPassword::parse("$1$3Qt.cFAl$EY2hr50BF5JQ2y9OmiU/b.", Scheme::Crypt).unwrap();
        assert_eq!(stored.scheme(), Scheme::Crypt);
        assert!(stored.verify(b"secret"));
    }

    #[test]
    fn shared_secrets_only_from_schemes_that_keep_them() {
        let plain = StoredPassword::parse("{PLAIN}tanstaaf", Scheme::Crypt).unwrap();
        assert_eq!(plain.plaintext().as_deref(), Some(&b"tanstaaf"[..]));
        assert!(plain.cram_md5().is_some());
        let cram = StoredPassword::parse(DOVECOT_VECTORS[0], Scheme::Crypt).unwrap();
        assert_eq!(cram.plaintext(), None);
        assert!(cram.cram_md5().is_some());
        assert!(cram.scram(scram::Hash::Sha256).is_none());
        let crypt = StoredPassword::parse(DOVECOT_VECTORS[1], Scheme::Crypt).unwrap();
        assert!(crypt.plaintext().is_none() && crypt.cram_md5().is_none());
    }

    #[test]
    fn malformed_fields_are_reported() {
        assert_eq!(
            StoredPassword::parse("{NOPE}x", Scheme::Crypt),
            Err(SchemeError::UnknownScheme("NOPE".into()))
        );
        assert_eq!(
            StoredPassword::parse("{PLAIN", Scheme::Crypt),
            Err(SchemeError::Unterminated)
        );
        assert_eq!(
            StoredPassword::parse("{CRAM-MD5}abc", Scheme::Crypt),
            Err(SchemeError::Malformed("CRAM-MD5"))
        );
        assert_eq!(
            StoredPassword::parse("{SSHA}!!", Scheme::Crypt),
            Err(SchemeError::Malformed("SSHA"))
        );
    }

    #[test]
    fn plain_passwords_with_colons_are_stored_base64() {
        assert_eq!(
            hash(Scheme::Plain, b"a:b", None).unwrap(),
            "{PLAIN.b64}YTpi"
        );
        assert_eq!(hash(Scheme::Plain, b"ab", None).unwrap(), "{PLAIN}ab");
    }
}
