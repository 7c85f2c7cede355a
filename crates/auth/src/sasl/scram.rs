//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, without
//! channel binding (we offer no -PLUS variant).
//!
//! POP3 cannot carry data with `+OK` (RFC 5034 §4), so the server-final
//! message `v=…` goes out as a challenge and the client answers it with an
//! empty response before success is declared.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use subtle::ConstantTimeEq;

use super::Step;
use crate::scram::{Hash, StoredKeys};
use crate::users::Users;

#[derive(Debug)]
pub(super) struct Scram {
    hash: Hash,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    ClientFirst,
    ClientFinal {
        /// The canonical user, or `None` for an unknown one (who gets made-up
        /// keys so the exchange looks the same until the proof fails).
        user: Option<String>,
        keys: StoredKeys,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Acknowledge {
        user: crate::Authenticated,
    },
    Done,
}

impl Scram {
    pub(super) fn new(hash: Hash) -> Scram {
        Scram {
            hash,
            phase: Phase::ClientFirst,
        }
    }

    pub(super) fn step(&mut self, response: &[u8], users: &Users) -> Step {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let Ok(text) = std::str::from_utf8(response) else {
            return Step::Failure;
        };
        match phase {
            Phase::ClientFirst => self.client_first(text, users),
            Phase::ClientFinal {
                user,
                keys,
                gs2_header,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let Some(final_without_proof) = text.rsplit_once(",p=").map(|(head, _)| head)
                else {
                    return Step::Failure;
                };
                let proof = text.rsplit_once(",p=").map(|(_, p)| p).unwrap_or_default();
                let mut attrs = final_without_proof.split(',');
                let binding = attrs.next().and_then(|a| a.strip_prefix("c="));
                let client_nonce = attrs.next().and_then(|a| a.strip_prefix("r="));
                // RFC 5802 §5.1: the server MUST validate c=; without channel binding it is base64(gs2-header).
                if binding != Some(B64.encode(&gs2_header).as_str())
                    || client_nonce != Some(nonce.as_str())
                {
                    return Step::Failure;
                }
                let Ok(proof) = B64.decode(proof) else {
                    return Step::Failure;
                };
                let auth_message =
                    format!("{client_first_bare},{server_first},{final_without_proof}");
                let signature = self.hash.hmac(&keys.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Step::Failure;
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let matches = bool::from(self.hash.digest(&client_key).ct_eq(&keys.stored_key));
                match user {
                    Some(user) if matches => {
                        let server_signature =
                            self.hash.hmac(&keys.server_key, auth_message.as_bytes());
                        self.phase = Phase::Acknowledge {
                            user: crate::Authenticated::checked(&user),
                        };
                        Step::Challenge(format!("v={}", B64.encode(server_signature)).into_bytes())
                    }
                    _ => Step::Failure,
                }
            }
            Phase::Acknowledge { user } if response.is_empty() => Step::Success(user),
            Phase::Acknowledge { .. } | Phase::Done => Step::Failure,
        }
    }

    fn client_first(&mut self, text: &str, users: &Users) -> Step {
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Step::Failure;
        };
        // "n": client does not do channel binding; "y": client could, but thinks
        // we cannot (true: we offer no -PLUS); "p=…" asks for binding we lack.
        if flag != "n" && flag != "y" {
            return Step::Failure;
        }
        let authzid = match authzid.strip_prefix("a=") {
            Some(name) => match unescape(name) {
                Some(name) => Some(name),
                None => return Step::Failure,
            },
            None if authzid.is_empty() => None,
            None => return Step::Failure,
        };
        let mut attrs = bare.split(',');
        let (Some(name), Some(client_nonce)) = (
            attrs.next().and_then(|a| a.strip_prefix("n=")),
            attrs.next().and_then(|a| a.strip_prefix("r=")),
        ) else {
            return Step::Failure;
        };
        // "m=" is a mandatory extension we do not know: fail (RFC 5802 §5.1).
        if bare.starts_with("m=") || client_nonce.is_empty() {
            return Step::Failure;
        }
        let Some(name) = unescape(name) else {
            return Step::Failure;
        };
        let (found, keys) = users.scram_keys(&name, self.hash);
        // An authorization identity other than the user fails like a wrong
        // password, at the end, with the same keys shown until then.
        let user = found
            .filter(|user| {
                authzid
                    .as_deref()
                    .is_none_or(|a| a.eq_ignore_ascii_case(&user.name))
            })
            .map(|user| user.name.clone());
        let nonce = format!("{client_nonce}{}", crate::random::alphanumeric(24));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        let gs2_header = text[..text.len() - bare.len()].to_owned();
        self.phase = Phase::ClientFinal {
            user,
            keys,
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Step::Challenge(server_first.into_bytes())
    }
}

/// RFC 5802 §5.1: "=2C" is ',' and "=3D" is '='; any other '=' is an error.
fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::Exchange;

    /// A client computing its side of RFC 5802 §3.
    fn client_final(
        hash: Hash,
        password: &[u8],
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let mut fields = server_first.split(',');
        let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(fields.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = fields
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        let salted = hash.hi(password, &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    fn run(user: &str, password: &[u8], hash: Hash, mechanism: &str) -> Step {
        let users = crate::sasl::tests::users();
        let bare = format!("n={user},r=rOprNGfwEbeRWgbNEkqO");
        let (mut ex, step) = Exchange::start(
            mechanism,
            Some(format!("n,,{bare}").as_bytes()),
            &users,
            "h",
        )
        .unwrap();
        let Step::Challenge(server_first) = step else {
            panic!("{step:?}")
        };
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        let step = ex.step(
            client_final(hash, password, &bare, &server_first).as_bytes(),
            &users,
        );
        match step {
            Step::Challenge(v) => {
                assert!(v.starts_with(b"v="));
                ex.step(b"", &users)
            }
            other => other,
        }
    }

    #[test]
    fn full_exchange_from_plain_and_from_stored_keys() {
        assert_eq!(
            run("user", b"pencil", Hash::Sha256, "SCRAM-SHA-256"),
            Step::Success(crate::Authenticated::checked("user"))
        );
        assert_eq!(
            run("user", b"pencil", Hash::Sha1, "SCRAM-SHA-1"),
            Step::Success(crate::Authenticated::checked("user"))
        );
        assert_eq!(
            run("carol", b"secret", Hash::Sha256, "SCRAM-SHA-256"),
            Step::Success(crate::Authenticated::checked("carol"))
        );
        assert_eq!(
            run("carol", b"wrong", Hash::Sha256, "SCRAM-SHA-256"),
            Step::Failure
        );
        assert_eq!(
            run("nobody", b"x", Hash::Sha256, "SCRAM-SHA-256"),
            Step::Failure
        );
        // bob's SSHA cannot do SCRAM: looks like an unknown user.
        assert_eq!(
            run("bob", b"secret", Hash::Sha256, "SCRAM-SHA-256"),
            Step::Failure
        );
    }

    /// RFC 7677 §3's example, with the server nonce forced.
    #[test]
    fn rfc7677_vector() {
        let hash = Hash::Sha256;
        let keys = StoredKeys::derive(
            hash,
            b"pencil",
            &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            4096,
        );
        let mut scram = Scram {
            hash,
            phase: Phase::ClientFinal {
                user: Some("user".into()),
                keys,
                gs2_header: "n,,".into(),
                client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
                server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
                nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            },
        };
        let users = crate::sasl::tests::users();
        let step = scram.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            &users,
        );
        assert_eq!(
            step,
            Step::Challenge(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec())
        );
        assert_eq!(
            scram.step(b"", &users),
            Step::Success(crate::Authenticated::checked("user"))
        );
    }

    #[test]
    fn malformed_messages_fail() {
        let users = crate::sasl::tests::users();
        for first in [
            "p=tls-unique,,n=user,r=abc",
            "x,,n=user,r=abc",
            "n,,m=ext,n=user,r=abc",
            "n,,n=us=ZZer,r=abc",
            "n,,n=user",
            "garbage",
        ] {
            let (_, step) =
                Exchange::start("SCRAM-SHA-256", Some(first.as_bytes()), &users, "h").unwrap();
            assert_eq!(step, Step::Failure, "{first}");
        }
        assert_eq!(unescape("a=2Cb=3Dc"), Some("a,b=c".into()));
    }
}
