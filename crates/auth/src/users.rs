//! The user database a server authenticates against, built from a passwd-file.

use std::collections::HashMap;

use md5::Digest;
use subtle::ConstantTimeEq;

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
}

/// All users, looked up by name without regard to ASCII case.
#[derive(Debug)]
pub struct Users {
    by_name: HashMap<String, User>,
    /// Verified against for unknown users, so they cost the same time as known ones.
    dummy: StoredPassword,
}

impl Users {
    /// Builds the database; lines that cannot be used are reported and skipped.
    pub fn from_file(file: &PasswdFile) -> (Users, Vec<LineError>) {
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        for (index, entry) in file.users().enumerate() {
            let key = entry.name.to_ascii_lowercase();
            if by_name.contains_key(&key) {
                continue; // PasswdFile::parse reported the duplicate.
            }
            match StoredPassword::parse(&entry.password, Scheme::Crypt) {
                Ok(password) => {
                    let home = Some(entry.home.clone()).filter(|h| !h.is_empty());
                    let mail = entry.extra_field("userdb_mail").map(str::to_owned);
                    by_name.insert(
                        key,
                        User {
                            name: entry.name.clone(),
                            password,
                            home,
                            mail,
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
        user.password.scram(hash).map(|k| (user, k))
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
    StoredPassword::unguessable(Scheme::Sha512Crypt)
}

#[cfg(test)]
mod tests {
    use super::*;

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
