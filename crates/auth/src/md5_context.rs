//! MD5 computations that Dovecot's `{CRAM-MD5}` scheme and APOP need.
//!
//! Dovecot stores CRAM-MD5 secrets as the two HMAC-MD5 "contexts": the MD5
//! state after hashing one 64-octet block of `key ⊕ 0x5c` (outer) and of
//! `key ⊕ 0x36` (inner), written as 8 little-endian u32 in hex (outer first).
//! With them an HMAC can be finished without knowing the password.

use md5::Digest;
use md5::block_api::compress;

const MD5_INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The two precomputed HMAC-MD5 states for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HmacMd5Contexts {
    /// State after the block `key ⊕ 0x5c`.
    pub outer: [u32; 4],
    /// State after the block `key ⊕ 0x36`.
    pub inner: [u32; 4],
}

impl HmacMd5Contexts {
    /// Computes the contexts of a password.
    pub fn from_password(password: &[u8]) -> Self {
        let mut key = [0u8; 64];
        if password.len() > 64 {
            key[..16].copy_from_slice(&md5::Md5::digest(password));
        } else {
            key[..password.len()].copy_from_slice(password);
        }
        let state_after = |pad: u8| {
            let mut block = [0u8; 64];
            for (b, k) in block.iter_mut().zip(key.iter()) {
                *b = k ^ pad;
            }
            let mut state = MD5_INIT;
            compress(&mut state, &[block]);
            state
        };
        HmacMd5Contexts {
            outer: state_after(0x5c),
            inner: state_after(0x36),
        }
    }

    /// Parses Dovecot's 64-hex-digit form.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut words = [0u32; 8];
        for (i, word) in words.iter_mut().enumerate() {
            let mut bytes = [0u8; 4];
            for (j, byte) in bytes.iter_mut().enumerate() {
                let at = i * 8 + j * 2;
                *byte = u8::from_str_radix(hex.get(at..at + 2)?, 16).ok()?;
            }
            *word = u32::from_le_bytes(bytes);
        }
        Some(HmacMd5Contexts {
            outer: [words[0], words[1], words[2], words[3]],
            inner: [words[4], words[5], words[6], words[7]],
        })
    }

    /// Dovecot's 64-hex-digit form.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for word in self.outer.iter().chain(self.inner.iter()) {
            for byte in word.to_le_bytes() {
                out.push_str(&format!("{byte:02x}"));
            }
        }
        out
    }

    /// HMAC-MD5 of `message` under the key these contexts were made from.
    pub fn hmac(&self, message: &[u8]) -> [u8; 16] {
        let inner = finish(self.inner, message);
        finish(self.outer, &inner)
    }
}

/// Finishes an MD5 whose first 64-octet block has already been compressed into `state`.
fn finish(mut state: [u32; 4], data: &[u8]) -> [u8; 16] {
    let mut blocks = data.chunks_exact(64);
    for block in blocks.by_ref() {
        let mut b = [0u8; 64];
        b.copy_from_slice(block);
        compress(&mut state, &[b]);
    }
    let rest = blocks.remainder();
    let bit_len = ((data.len() as u64) + 64).wrapping_mul(8);
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    tail[tail_len - 8..tail_len].copy_from_slice(&bit_len.to_le_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        let mut b = [0u8; 64];
        b.copy_from_slice(block);
        compress(&mut state, &[b]);
    }
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Decodes hex (either case).
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{KeyInit, Mac};

    /// `doveadm pw -s CRAM-MD5 -p secret` (Dovecot 2.3.19.1).
    const DOVECOT_SECRET: &str = "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56";

    #[test]
    fn contexts_match_dovecot() {
        assert_eq!(
            HmacMd5Contexts::from_password(b"secret").to_hex(),
            DOVECOT_SECRET
        );
        assert_eq!(
            HmacMd5Contexts::from_hex(DOVECOT_SECRET),
            Some(HmacMd5Contexts::from_password(b"secret"))
        );
    }

    #[test]
    fn hmac_from_contexts_equals_hmac_md5() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 200] {
            let message = vec![b'm'; len];
            let mut reference =
                hmac::Hmac::<md5::Md5>::new_from_slice(b"tanstaaftanstaaf").unwrap();
            reference.update(&message);
            let expected: [u8; 16] = reference.finalize().into_bytes().into();
            let contexts = HmacMd5Contexts::from_password(b"tanstaaftanstaaf");
            assert_eq!(contexts.hmac(&message), expected, "length {len}");
        }
    }

    /// RFC 2195 §2's example.
    #[test]
    fn rfc2195_example() {
        let contexts = HmacMd5Contexts::from_password(b"tanstaaftanstaaf");
        let digest = contexts.hmac(b"<1896.697170952@postoffice.reston.mci.net>");
        assert_eq!(hex(&digest), "b913a602c7eda7a495b4e6e7334d3890");
    }

    #[test]
    fn long_keys_are_hashed_first() {
        let key = vec![b'k'; 100];
        let mut reference = hmac::Hmac::<md5::Md5>::new_from_slice(&key).unwrap();
        reference.update(b"data");
        let expected: [u8; 16] = reference.finalize().into_bytes().into();
        assert_eq!(HmacMd5Contexts::from_password(&key).hmac(b"data"), expected);
    }
}
