//! The client's side of authentication, for `yubin fetch`: the APOP
//! digest (RFC 1939 §7), CRAM-MD5 (RFC 2195), PLAIN (RFC 4616), and
//! SCRAM-SHA-1/-256 (RFC 5802, RFC 7677) without channel binding.
//! Framing (base64, `+ ` lines) belongs to the protocol crate.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest;
use subtle::ConstantTimeEq;

use crate::md5_context::hex;
use crate::scram::Hash;

/// The APOP digest: lower-case hex MD5 of the server's timestamp (with
/// its angle brackets) followed by the secret.
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let digest = md5::Md5::new()
        .chain_update(timestamp.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize();
    hex(&digest)
}

/// The CRAM-MD5 response to `challenge`: `user hex(HMAC-MD5(secret, challenge))`.
pub fn cram_md5_response(user: &str, secret: &str, challenge: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mac = hmac::Hmac::<md5::Md5>::new_from_slice(secret.as_bytes())
        .map(|m| m.chain_update(challenge).finalize().into_bytes().to_vec())
        .unwrap_or_default();
    format!("{user} {}", hex(&mac)).into_bytes()
}

/// The PLAIN message: no authorization identity, then user and password,
/// NUL-separated.
pub fn plain_response(user: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(user.len() + password.len() + 2);
    out.push(0);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

/// Most PBKDF2 iterations a server may ask of us: more is a way to make
/// the client burn CPU, not a security setting anyone uses.
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// Fewest iterations accepted (RFC 7677 §4: at least 4096): a server
/// asking for fewer weakens what an eavesdropper can brute-force.
pub const MIN_SCRAM_ITERATIONS: u32 = 4096;

/// Why a SCRAM exchange failed on the client's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramError {
    /// The server's message does not follow RFC 5802's grammar.
    Malformed,
    /// The server's nonce does not extend ours.
    NonceMismatch,
    /// The iteration count is below [`MIN_SCRAM_ITERATIONS`] or above
    /// [`MAX_SCRAM_ITERATIONS`].
    Iterations,
    /// The server sent `e=…`, or a signature that proves it does not
    /// know the password: it is not the server we think.
    ServerNotVerified,
}

impl fmt::Display for ScramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScramError::Malformed => "malformed SCRAM message from the server",
            ScramError::NonceMismatch => "the server's SCRAM nonce does not extend ours",
            ScramError::Iterations => "the server asked for an unreasonable SCRAM iteration count",
            ScramError::ServerNotVerified => "the server's SCRAM signature is wrong",
        })
    }
}

impl std::error::Error for ScramError {}

/// A SCRAM exchange, client side: [`ScramClient::client_first`], then
/// [`ScramClient::client_final`] with the server's first message, then
/// [`ScramClient::verify_server_final`] with its last.
pub struct ScramClient {
    hash: Hash,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `user` with a fresh random nonce.
    pub fn new(hash: Hash, user: &str, password: &str) -> ScramClient {
        Self::with_nonce(hash, user, password, &crate::random::alphanumeric(24))
    }

    fn with_nonce(hash: Hash, user: &str, password: &str, nonce: &str) -> ScramClient {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_owned(),
            server_signature: None,
        }
    }

    /// The client-first message (the initial response).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers the server-first message with the client-final one.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed)?;
        let mut attrs = server_first.split(',');
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed)?;
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Malformed)?;
        let iterations: u32 = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        if !(MIN_SCRAM_ITERATIONS..=MAX_SCRAM_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations);
        }
        let hash = self.hash;
        let salted = hash.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        // c=biws is base64("n,,"): no channel binding, no authorization id.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        self.server_signature = Some(hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it knows the
    /// password too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = self
            .server_signature
            .as_ref()
            .ok_or(ScramError::Malformed)?;
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed)?;
        let verifier = text
            .split(',')
            .next()
            .and_then(|a| a.strip_prefix("v="))
            .ok_or(ScramError::ServerNotVerified)?;
        let signature = B64
            .decode(verifier)
            .map_err(|_| ScramError::ServerNotVerified)?;
        if bool::from(signature.ct_eq(expected)) {
            Ok(())
        } else {
            Err(ScramError::ServerNotVerified)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1939_apop_example() {
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }

    #[test]
    fn rfc2195_cram_md5_example() {
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(
            cram_md5_response("tim", "tanstaaftanstaaf", challenge),
            b"tim b913a602c7eda7a495b4e6e7334d3890"
        );
    }

    #[test]
    fn rfc7677_scram_sha256_example() {
        let mut client =
            ScramClient::with_nonce(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = client.client_final(server_first).unwrap();
        assert_eq!(
            client_final,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(
            client.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::ServerNotVerified)
        );
        assert_eq!(
            client.verify_server_final(b"e=other-error"),
            Err(ScramError::ServerNotVerified)
        );
    }

    #[test]
    fn hostile_server_first_messages() {
        let mut client = ScramClient::with_nonce(Hash::Sha256, "u,=", "p", "abc");
        assert_eq!(client.client_first(), b"n,,n=u=2C=3D,r=abc");
        assert_eq!(
            client.client_final(b"r=xyz,s=AA==,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            client.client_final(b"r=abc,s=AA==,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            client.client_final(b"r=abcd,s=AA==,i=4095"),
            Err(ScramError::Iterations)
        );
        assert_eq!(
            client.client_final(b"r=abcd,s=AA==,i=4000000000"),
            Err(ScramError::Iterations)
        );
        assert_eq!(
            client.client_final(b"r=abcd,s=!!,i=4096"),
            Err(ScramError::Malformed)
        );
        assert_eq!(client.client_final(b"garbage"), Err(ScramError::Malformed));
    }
}
