//! Maildir file names: `<base>[:2,<flags>]`, with Dovecot's `,S=` and `,W=`
//! size fields inside the base (cr.yp.to/proto/maildir.html; Dovecot's
//! maildir documentation).

use std::borrow::Cow;

use md5::{Digest, Md5};

/// The part of a file name before the info (`:2,…`): the message's identity,
/// unchanged when the message moves from `new/` to `cur/` or its flags change.
pub fn base(name: &[u8]) -> &[u8] {
    match memchr::memchr(b':', name) {
        Some(colon) => &name[..colon],
        None => name,
    }
}

/// The flags of a `cur/` name (`:2,FRS` → `FRS`), empty if none.
pub fn flags(name: &[u8]) -> &[u8] {
    let info = &name[base(name).len()..];
    match info.strip_prefix(b":2,") {
        // Dovecot keeps non-standard data after a second comma; flags end there.
        Some(rest) => rest.split(|&b| b == b',').next().unwrap_or_default(),
        None => &[],
    }
}

/// The value of a `,KEY=digits` field in the base, e.g. `S` or `W`.
pub fn size_field(base: &[u8], key: u8) -> Option<u64> {
    // Most names have no comma at all; skip the split for them.
    let first = memchr::memchr(b',', base)?;
    base[first..]
        .split(|&b| b == b',')
        .skip(1)
        .find_map(|field| {
            let digits = field.strip_prefix(&[key, b'='][..])?;
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // At most 19 digits fit in u64; u64::MAX itself is refused as absurd.
            let value = digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            (value != u64::MAX).then_some(value)
        })
}

/// The POP3 unique-id of a message with this base: the base itself when it
/// fits RFC 1939 §7 (1–70 octets in 0x21–0x7E), otherwise the MD5 of the base
/// in hex (32 characters; Dovecot's and tpop3d's `%Mf`). Both are pure
/// functions of the base, so the id never changes while the message exists.
pub fn uid(base: &[u8]) -> String {
    uid_cow(base).into_owned()
}

/// [`uid`], borrowing the base name when it is the id.
pub fn uid_cow(base: &[u8]) -> Cow<'_, str> {
    let fits =
        !base.is_empty() && base.len() <= 70 && base.iter().all(|&b| (0x21..=0x7e).contains(&b));
    match std::str::from_utf8(base) {
        Ok(text) if fits => Cow::Borrowed(text),
        _ => {
            let digest = Md5::digest(base);
            Cow::Owned(digest.iter().map(|b| format!("{b:02x}")).collect())
        }
    }
}

/// The delivery time of a base, used to list messages in delivery order:
/// the leading seconds and, in the `secs.M<usecs>…` form yubin and Dovecot
/// write, the microseconds (`1700000000.M12P2.host` → (1700000000, 12)).
/// The microseconds are not zero-padded, so comparing names as text would
/// put `M99999` after `M100001` within one second.
pub fn delivery_time(base: &[u8]) -> (u64, u32) {
    let digits = |text: &[u8], most: usize| -> (u64, usize) {
        let n = text
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .take(most)
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        (n, text.iter().take_while(|b| b.is_ascii_digit()).count())
    };
    let (secs, len) = digits(base, 19);
    let micros = match base.get(len..) {
        Some([b'.', b'M', rest @ ..]) => {
            let (micros, _) = digits(rest, 6);
            u32::try_from(micros).unwrap_or(0)
        }
        _ => 0,
    };
    (secs, micros)
}

/// The file name of a message after it is marked seen: `base:2,<flags + S>`,
/// flags in ASCII order as the Maildir specification asks.
pub fn with_seen_flag(name: &[u8]) -> Option<Vec<u8>> {
    let current = flags(name);
    if current.contains(&b'S') {
        return None;
    }
    let mut new_flags = current.to_vec();
    new_flags.push(b'S');
    new_flags.sort_unstable();
    let mut out = base(name).to_vec();
    out.extend_from_slice(b":2,");
    out.extend_from_slice(&new_flags);
    // Keep Dovecot's non-standard data after the flags, if any.
    let info = &name[base(name).len()..];
    if let Some(rest) = info.strip_prefix(b":2,")
        && let Some(comma) = memchr::memchr(b',', rest)
    {
        out.extend_from_slice(&rest[comma..]);
    }
    Some(out)
}

/// A host name made safe for a Maildir file name: `/`, `:` and `,` and
/// anything outside printable ASCII are written as `\ooo` octal, as the
/// Maildir specification does for `/` and `:` (Dovecot also escapes `,`).
pub fn escape_hostname(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for b in host.bytes() {
        if b == b'/' || b == b':' || b == b',' || b == b'\\' || !(0x21..=0x7e).contains(&b) {
            out.push_str(&format!("\\{b:03o}"));
        } else {
            out.push(char::from(b));
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_flags_and_sizes() {
        let name = b"1035478339.27041_118.foo.org,S=1000,W=1030:2,S";
        assert_eq!(base(name), b"1035478339.27041_118.foo.org,S=1000,W=1030");
        assert_eq!(flags(name), b"S");
        assert_eq!(size_field(base(name), b'S'), Some(1000));
        assert_eq!(size_field(base(name), b'W'), Some(1030));
        assert_eq!(size_field(b"1.2.host", b'W'), None);
        assert_eq!(size_field(b"1.2.host,W=12x", b'W'), None);
        assert_eq!(flags(b"1.2.host"), b"");
        assert_eq!(flags(b"1.2.host:2,FS,ext"), b"FS");
        assert_eq!(delivery_time(b"1700000000.M1P2.host"), (1_700_000_000, 1));
        assert_eq!(
            delivery_time(b"1700000000.M100001P2.host"),
            (1_700_000_000, 100_001)
        );
        assert!(delivery_time(b"1700000000.M99999P2.h") < delivery_time(b"1700000000.M100001P2.h"));
        assert_eq!(
            delivery_time(b"1035478339.27041_118.foo.org"),
            (1_035_478_339, 0)
        );
        assert_eq!(delivery_time(b"x"), (0, 0));
    }

    #[test]
    fn uids_fit_rfc1939() {
        assert_eq!(uid(b"1700000000.M1P2.host"), "1700000000.M1P2.host");
        let long = b"1491941793.M41850P8566V0000000000000015I0000000004F3030E_0.mx1.example.com,S=1000,W=1030";
        for odd in [&long[..], b"has space", b"", b"caf\xc3\xa9", b"\xff\xfe"] {
            let u = uid(odd);
            assert_eq!(u.len(), 32, "{odd:?}");
            assert!(u.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(u, uid(odd), "stable");
        }
        assert_ne!(uid(b"a b"), uid(b"a  b"));
    }

    #[test]
    fn seen_flag_is_added_in_order() {
        assert_eq!(with_seen_flag(b"1.2.h").as_deref(), Some(&b"1.2.h:2,S"[..]));
        assert_eq!(
            with_seen_flag(b"1.2.h:2,FT").as_deref(),
            Some(&b"1.2.h:2,FST"[..])
        );
        assert_eq!(
            with_seen_flag(b"1.2.h:2,F,x").as_deref(),
            Some(&b"1.2.h:2,FS,x"[..])
        );
        assert_eq!(with_seen_flag(b"1.2.h:2,RS"), None);
    }

    #[test]
    fn hostnames_are_escaped() {
        assert_eq!(escape_hostname("mx1.example.com"), "mx1.example.com");
        assert_eq!(escape_hostname("a/b:c,d"), "a\\057b\\072c\\054d");
        assert_eq!(escape_hostname(""), "localhost");
    }
}
