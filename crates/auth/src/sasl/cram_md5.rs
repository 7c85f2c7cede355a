//! CRAM-MD5 (RFC 2195): the server sends `<random.time@host>`, the client
//! answers `user hex(HMAC-MD5(secret, challenge))`.

use subtle::ConstantTimeEq;

use super::Step;
use crate::md5_context::unhex;
use crate::users::Users;

#[derive(Debug)]
pub(super) struct CramMd5 {
    challenge: String,
}

impl CramMd5 {
    pub(super) fn new(hostname: &str) -> CramMd5 {
        let random = u64::from_le_bytes(crate::random::bytes(8).try_into().unwrap_or([0; 8]));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CramMd5 {
            challenge: format!("<{random}.{now}@{hostname}>"),
        }
    }

    pub(super) fn challenge(&self) -> &str {
        &self.challenge
    }

    pub(super) fn finish(self, response: &[u8], users: &Users) -> Step {
        let Ok(response) = std::str::from_utf8(response) else {
            return Step::Failure;
        };
        let Some((user, digest)) = response.rsplit_once(' ') else {
            return Step::Failure;
        };
        let (Some((user, contexts)), Some(digest)) = (users.cram_md5(user), unhex(digest)) else {
            return Step::Failure;
        };
        let expected = contexts.hmac(self.challenge.as_bytes());
        if bool::from(expected.ct_eq(&digest[..])) {
            Step::Success(crate::Authenticated::checked(&user.name))
        } else {
            Step::Failure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::md5_context::{HmacMd5Contexts, hex};
    use crate::sasl::Exchange;

    #[test]
    fn rfc2195_exchange() {
        let users = crate::sasl::tests::users();
        let cram = CramMd5 {
            challenge: "<1896.697170952@postoffice.reston.mci.net>".into(),
        };
        assert_eq!(
            cram.finish(b"tim b913a602c7eda7a495b4e6e7334d3890", &users),
            Step::Success(crate::Authenticated::checked("tim"))
        );
    }

    #[test]
    fn fresh_challenges_and_failures() {
        let users = crate::sasl::tests::users();
        let (mut ex, Step::Challenge(challenge)) =
            Exchange::start("CRAM-MD5", None, &users, "mail.example").unwrap()
        else {
            panic!("CRAM-MD5 starts with a challenge");
        };
        let text = String::from_utf8(challenge.clone()).unwrap();
        assert!(text.starts_with('<') && text.ends_with("@mail.example>"));
        let digest = hex(&HmacMd5Contexts::from_password(b"tanstaaftanstaaf").hmac(&challenge));
        assert_eq!(
            ex.step(format!("tim {digest}").as_bytes(), &users),
            Step::Success(crate::Authenticated::checked("tim"))
        );

        let (_, Step::Challenge(other)) =
            Exchange::start("CRAM-MD5", None, &users, "mail.example").unwrap()
        else {
            panic!()
        };
        assert_ne!(other, challenge);
        // bob's stored password (SSHA) cannot do CRAM-MD5.
        let cram = CramMd5 { challenge: text };
        assert_eq!(
            cram.finish(format!("bob {digest}").as_bytes(), &users),
            Step::Failure
        );
        assert!(matches!(
            Exchange::start("CRAM-MD5", Some(b"x"), &users, "h")
                .unwrap()
                .1,
            Step::Failure
        ));
    }
}
