//! The user database a server authenticates against, built from a passwd-file.

use std::collections::HashMap;

use md5::Digest;
use subtle::ConstantTimeEq;

use crate::Authenticated;
use crate::md5_context::{HmacMd5Contexts, unhex};
use crate::passwd::{LineError, PasswdFile, check_user_name};
use crate::scheme::{Scheme, StoredPassword};
use crate::scram;

/// One user, ready for authentication.
#[derive(Clone, Debug)]
pub struct User {
    /// The name as written in the passwd-file (the canonical form).
    pub name: String,
    /// The stored password.
    pub password: StoredPassword,
    /// The home directory, if given.
    pub home: Option<String>,
    /// A per-user mail location (`userdb_mail` extra field), if given.
    pub mail: Option<String>,
    /// Whether mail tagged as spam goes to the user's Junk folder
    /// (`userdb_junk=yes` or `no` extra field); `None`: the server's
    /// default (`inbound.junk`).
    pub junk: Option<bool>,
}

/// All users, looked up by name without regard to ASCII case.
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<String, User>,
    /// Verified against for unknown users, so they cost the same time as known ones.
    dummy: StoredPassword,
    /// The secret behind SCRAM salts that are not stored (see [`Users::scram_keys`]).
    secret: Vec<u8>,
}

impl Users {
    /// Builds the database; lines that cannot be used are reported and skipped.
    pub fn from_file(file: &PasswdFile) -> (Users, Vec<LineError>) {
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, entry) in file.users().enumerate() {
            let key = entry.name.to_ascii_lowercase();
            // The first entry of a name wins, even one that cannot be used
            // (PasswdFile::parse reported the duplicate as such).
            if !seen.insert(key.clone()) {
                continue;
            }
            match StoredPassword::parse(&entry.password, Scheme::Crypt) {
                Ok(password) => {
                    let home = Some(entry.home.clone()).filter(|h| !h.is_empty());
                    let mail = entry.extra_field("userdb_mail").map(str::to_owned);
                    // Anything but yes or no leaves the default: a typo
                    // here must not lock the user out.
                    let junk = match entry.extra_field("userdb_junk") {
                        Some("yes" | "y" | "true" | "1") => Some(true),
                        Some("no" | "n" | "false" | "0") => Some(false),
                        _ => None,
                    };
                    by_name.insert(
                        key,
                        User {
                            name: entry.name.clone(),
                            password,
                            home,
                            mail,
                            junk,
                        },
                    );
                }
                Err(error) => errors.push(LineError {
                    line: index + 1,
                    reason: format!("user {:?}: {error}", entry.name),
                }),
            }
        }
        (
            Users {
                by_name,
                secret: crate::random::bytes(32),
                dummy: dummy_password(),
            },
            errors,
        )
    }

    /// An empty database.
    pub fn empty() -> Users {
        Users {
            by_name: HashMap::new(),
            dummy: dummy_password(),
            secret: crate::random::bytes(32),
        }
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Takes a user out (ASCII case-insensitive); whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(&name.to_ascii_lowercase()).is_some()
    }

    /// Looks a user up (ASCII case-insensitive; invalid names find nobody).
    pub fn get(&self, name: &str) -> Option<&User> {
        if check_user_name(name).is_err() {
            return None;
        }
        self.by_name.get(&name.to_ascii_lowercase())
    }

    /// Checks a name and password (USER/PASS, AUTH PLAIN and LOGIN). Unknown
    /// users cost a hash verification too.
    pub fn verify_password(&self, name: &str, password: &[u8]) -> Option<&User> {
        match self.get(name) {
            Some(user) if user.password.verify(password) => Some(user),
            Some(_) => None,
            None => {
                let _ = self.dummy.verify(password);
                None
            }
        }
    }

    /// Whether checking `name`'s password is quick ([`Scheme::is_quick`]),
    /// so that it may run where the session runs rather than on a thread
    /// of its own. An unknown name is checked against a slow dummy: not
    /// quick.
    pub fn verifies_quickly(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|user| user.password.scheme().is_quick())
    }

    /// [`Users::verify_password`], as the proof a protocol session takes.
    pub fn authenticate_password(&self, name: &str, password: &[u8]) -> Option<Authenticated> {
        self.verify_password(name, password)
            .map(|user| Authenticated::checked(&user.name))
    }

    /// [`Users::verify_apop`], as the proof a protocol session takes.
    pub fn authenticate_apop(
        &self,
        name: &str,
        timestamp: &str,
        digest_hex: &str,
    ) -> Option<Authenticated> {
        self.verify_apop(name, timestamp, digest_hex)
            .map(|user| Authenticated::checked(&user.name))
    }

    /// Checks an APOP digest: MD5(timestamp ‖ secret) in hex (RFC 1939 §7).
    /// Only users whose stored password is a shared secret can use APOP.
    pub fn verify_apop(&self, name: &str, timestamp: &str, digest_hex: &str) -> Option<&User> {
        let user = self.get(name)?;
        let secret = user.password.plaintext()?;
        let expected = unhex(digest_hex)?;
        let mut md5 = md5::Md5::new();
        md5.update(timestamp.as_bytes());
        md5.update(&secret);
        let computed = md5.finalize();
        bool::from(computed.as_slice().ct_eq(&expected)).then_some(user)
    }

    /// The CRAM-MD5 contexts of a user, if the stored password allows CRAM-MD5.
    pub fn cram_md5(&self, name: &str) -> Option<(&User, HmacMd5Contexts)> {
        let user = self.get(name)?;
        user.password.cram_md5().map(|c| (user, c))
    }

    /// The SCRAM keys of a user, if the stored password allows SCRAM with `hash`.
    pub fn scram(&self, name: &str, hash: scram::Hash) -> Option<(&User, scram::StoredKeys)> {
        let user = self.get(name)?;
        match user.password.scheme() {
            // A PLAIN password has no stored salt: derive one that stays
            // the same for the name, as a stored SCRAM entry's does.
            Scheme::Plain => user.password.plaintext().map(|p| {
                (
                    user,
                    scram::StoredKeys::derive(hash, &p, &self.salt(hash, name), 4096),
                )
            }),
            _ => user.password.scram(hash).map(|k| (user, k)),
        }
    }

    /// SCRAM keys for `name` whoever asks: the user's own (stored, or
    /// derived from a PLAIN password), or, for a name that is unknown or
    /// cannot do SCRAM, made-up keys with the same kind of salt and the
    /// default iteration count, so the server-first message tells nothing
    /// (issue 12). Every salt not stored comes from [`Users::set_secret`]'s
    /// secret and the name, so it is the same on every asking, across
    /// restarts and on every node that shares the secret.
    pub fn scram_keys(&self, name: &str, hash: scram::Hash) -> (Option<&User>, scram::StoredKeys) {
        match self.scram(name, hash) {
            Some((user, keys)) => (Some(user), keys),
            None => (
                None,
                scram::StoredKeys {
                    hash,
                    iterations: 4096,
                    salt: self.salt(hash, name),
                    stored_key: hash.hmac(&self.secret, b"stored key of nobody"),
                    server_key: hash.hmac(&self.secret, b"server key of nobody"),
                },
            ),
        }
    }

    /// Sets the secret that SCRAM salts not stored in the file derive
    /// from. Without it, a random one is used (salts then change with
    /// every load, which tells a careful client the name has no stored
    /// SCRAM entry).
    pub fn set_secret(&mut self, secret: &[u8]) {
        self.secret = secret.to_vec();
    }

    /// The salt for a name without a stored one: 16 octets of
    /// HMAC(secret, name), the name compared without case as logins are.
    fn salt(&self, hash: scram::Hash, name: &str) -> Vec<u8> {
        let mut input = b"scram salt:".to_vec();
        input.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        hash.hmac(&self.secret, &input)[..16].to_vec()
    }

    /// Whether any user could log in with APOP (a plaintext secret is stored).
    pub fn any_apop(&self) -> bool {
        self.by_name
            .values()
            .any(|u| u.password.scheme() == Scheme::Plain)
    }

    /// Whether any user could use CRAM-MD5.
    pub fn any_cram_md5(&self) -> bool {
        self.by_name
            .values()
            .any(|u| matches!(u.password.scheme(), Scheme::Plain | Scheme::CramMd5))
    }

    /// Whether any user could use SCRAM with `hash`.
    pub fn any_scram(&self, hash: scram::Hash) -> bool {
        let stored = match hash {
            scram::Hash::Sha1 => Scheme::ScramSha1,
            scram::Hash::Sha256 => Scheme::ScramSha256,
        };
        self.by_name
            .values()
            .any(|u| u.password.scheme() == Scheme::Plain || u.password.scheme() == stored)
    }
}

/// A SHA512-CRYPT hash of a random password, the scheme `yubin user add`
/// uses, so an unknown user costs about what a typical known one does.
fn dummy_password() -> StoredPassword {
    // Making one costs a SHA512-CRYPT; a fuzzer building a database per
    // input would spend its time there instead of in the reader.
    if cfg!(fuzzing) {
        StoredPassword::unguessable(Scheme::Plain)
    } else {
        StoredPassword::unguessable(Scheme::Sha512Crypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, finding 2: SCRAM's server-first message tells nothing
    /// about a name. Unknown names, names without a SCRAM-capable
    /// password, and PLAIN users all get a salt that stays the same for the
    /// name across loads (restarts) and nodes sharing the secret, with the
    /// default iteration count; only the secret changes it.
    #[test]
    fn scram_salts_are_stable_and_alike_for_every_kind_of_name() {
        let text = "alice:{PLAIN}alice-pw\nbob:{SSHA}aGVsbG8gd29ybGQ=\n";
        let load = |secret: &[u8]| {
            let (mut users, _) = Users::from_file(&PasswdFile::parse(text).0);
            users.set_secret(secret);
            users
        };
        let (one, two, other) = (load(b"node secret"), load(b"node secret"), load(b"another"));
        for hash in [scram::Hash::Sha1, scram::Hash::Sha256] {
            for name in ["alice", "bob", "nobody", "Nobody"] {
                let (_, a) = one.scram_keys(name, hash);
                let (_, b) = two.scram_keys(name, hash);
                let (_, c) = other.scram_keys(name, hash);
                assert_eq!(a.salt, b.salt, "{name}: same secret, same salt");
                assert_ne!(a.salt, c.salt, "{name}: another secret, another salt");
                assert_eq!((a.salt.len(), a.iterations), (16, 4096), "{name}");
                assert_eq!(
                    one.scram_keys(name, hash).1.salt,
                    a.salt,
                    "{name}: asked twice"
                );
            }
            assert_ne!(
                one.scram_keys("nobody", hash).1.salt,
                one.scram_keys("alice", hash).1.salt
            );
            assert!(one.scram_keys("alice", hash).0.is_some());
            assert!(one.scram_keys("bob", hash).0.is_none());
        }
    }

    fn users(text: &str) -> Users {
        let (file, errors) = PasswdFile::parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let (users, errors) = Users::from_file(&file);
        assert!(errors.is_empty(), "{errors:?}");
        users
    }

    #[test]
    fn passwords_and_case_insensitive_names() {
        let u =
            users("Alice@Example.org:{PLAIN}secret\nbob:{SSHA}FYTGHClXXAdyI5o2zDldqGR945Hnq8UF\n");
        assert_eq!(
            u.verify_password("alice@example.org", b"secret")
                .map(|u| u.name.as_str()),
            Some("Alice@Example.org")
        );
        assert!(u.verify_password("bob", b"secret").is_some());
        assert!(u.verify_password("bob", b"wrong").is_none());
        assert!(u.verify_password("nobody", b"secret").is_none());
        assert!(u.verify_password("../bob", b"secret").is_none());
    }

    #[test]
    fn only_digest_schemes_are_checked_where_the_session_runs() {
        let u = users(
            "alice:{PLAIN}secret\nbob:{SSHA}FYTGHClXXAdyI5o2zDldqGR945Hnq8UF\n\
             carol:{SHA512-CRYPT}$6$rounds=5000$FeM5rcEymLnvmB85$uVGkGBtqjz1QgWDlkUS/FO/HjaRJ.DKBnUbL//1kT0B/KSGiOofOr00.UjUBHBPmVr3MbDyj6oUS4qXcQTN7O.\n",
        );
        assert!(u.verifies_quickly("ALICE"));
        assert!(u.verifies_quickly("bob"));
        assert!(!u.verifies_quickly("carol"), "built to be slow");
        assert!(!u.verifies_quickly("nobody"), "the dummy is slow");
    }

    #[test]
    fn apop_needs_a_plaintext_secret() {
        let u = users("mrose:{PLAIN}tanstaaf\nbob:{SSHA}FYTGHClXXAdyI5o2zDldqGR945Hnq8UF\n");
        let ts = "<1896.697170952@dbc.mtview.ca.us>";
        assert!(
            u.verify_apop("mrose", ts, "c4c9334bac560ecc979e58001b3e22fb")
                .is_some()
        );
        assert!(
            u.verify_apop("mrose", ts, "C4C9334BAC560ECC979E58001B3E22FB")
                .is_some()
        );
        assert!(
            u.verify_apop("mrose", "<other@x>", "c4c9334bac560ecc979e58001b3e22fb")
                .is_none()
        );
        assert!(
            u.verify_apop("bob", ts, "c4c9334bac560ecc979e58001b3e22fb")
                .is_none()
        );
        assert!(u.any_apop());
        assert!(!users("bob:{SSHA}FYTGHClXXAdyI5o2zDldqGR945Hnq8UF\n").any_apop());
    }

    #[test]
    fn bad_password_fields_are_reported_and_skipped() {
        let (file, _) = PasswdFile::parse("a:{NOPE}x\nb:{PLAIN}y\n");
        let (users, errors) = Users::from_file(&file);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.contains("unknown password scheme"));
        assert_eq!(users.len(), 1);
    }
}
