//! MD5-crypt (`$1$salt$hash`), the FreeBSD scheme Dovecot calls MD5-CRYPT.

use md5::{Digest, Md5};

const MAGIC: &str = "$1$";
const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The salt of a `$1$salt$hash` string (at most 8 characters).
pub(crate) fn salt_of(hash: &str) -> &str {
    let rest = hash.strip_prefix(MAGIC).unwrap_or(hash);
    let end = rest.find('$').unwrap_or(rest.len());
    let salt = &rest[..end];
    // A salt is ASCII; cut at a character boundary anyway.
    match salt.char_indices().nth(8) {
        Some((at, _)) => &salt[..at],
        None => salt,
    }
}

/// Computes `$1$salt$hash` for a password and salt.
pub(crate) fn hash(password: &[u8], salt: &str) -> String {
    let salt = salt_of(salt).as_bytes();
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC.as_bytes());
    ctx.update(salt);

    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut remaining = password.len();
    while remaining > 0 {
        let n = remaining.min(16);
        ctx.update(&alt[..n]);
        remaining -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut digest: [u8; 16] = ctx.finalize().into();

    for round in 0..1000 {
        let mut next = Md5::new();
        if round & 1 == 1 {
            next.update(password);
        } else {
            next.update(digest);
        }
        if round % 3 != 0 {
            next.update(salt);
        }
        if round % 7 != 0 {
            next.update(password);
        }
        if round & 1 == 1 {
            next.update(digest);
        } else {
            next.update(password);
        }
        digest = next.finalize().into();
    }

    let mut out = String::with_capacity(34);
    out.push_str(MAGIC);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let groups = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)];
    for (a, b, c) in groups {
        let v = (u32::from(digest[a]) << 16) | (u32::from(digest[b]) << 8) | u32::from(digest[c]);
        to64(&mut out, v, 4);
    }
    to64(&mut out, u32::from(digest[11]), 2);
    out
}

fn to64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(char::from(ITOA64[(v & 0x3f) as usize]));
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_vector() {
        assert_eq!(
            hash(b"secret", "3Qt.cFAl"),
            "$1$3Qt.cFAl$EY2hr50BF5JQ2y9OmiU/b."
        );
        assert_eq!(salt_of("$1$3Qt.cFAl$EY2hr50BF5JQ2y9OmiU/b."), "3Qt.cFAl");
    }
}
