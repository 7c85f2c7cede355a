//! Lines of the LIST and UIDL listings (RFC 1939 §5, §7), parsed strictly:
//! a line that breaks the grammar is rejected, never guessed at.

use crate::MsgNum;

/// Longest listing line accepted (RFC 2449 §4: 512 octets per response line).
pub(crate) const MAX_LINE: usize = 512;

/// One line of a LIST listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanEntry {
    /// The message number.
    pub number: MsgNum,
    /// The size in octets, as the server counts it (CRLF line ends).
    pub size: u64,
}

/// One line of a UIDL listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidEntry {
    /// The message number.
    pub number: MsgNum,
    /// The unique-id: 1 to 70 octets from 0x21 to 0x7E (RFC 1939 §7).
    pub uid: String,
}

/// Parses `n size[ anything]`; RFC 1939 lets servers add information after
/// the size.
pub fn parse_scan(line: &[u8]) -> Option<ScanEntry> {
    let mut words = line.splitn(3, |&b| b == b' ');
    let number = MsgNum::parse(words.next()?).ok()?;
    let size = words.next()?;
    if size.is_empty() || size.len() > 20 || !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(size).ok()?.parse().ok()?;
    Some(ScanEntry { number, size })
}

/// Parses `n unique-id`, refusing ids that are empty, longer than 70
/// octets or hold anything but printable ASCII.
pub fn parse_uid(line: &[u8]) -> Option<UidEntry> {
    let line = line.strip_suffix(b" ").unwrap_or(line);
    let (number, uid) = line.split_at(line.iter().position(|&b| b == b' ')?);
    let uid = &uid[1..];
    let number = MsgNum::parse(number).ok()?;
    let valid = (1..=70).contains(&uid.len()) && uid.iter().all(|&b| (0x21..=0x7e).contains(&b));
    if !valid {
        return None;
    }
    // Only ASCII is left, so this cannot fail.
    let uid = String::from_utf8(uid.to_vec()).ok()?;
    Some(UidEntry { number, uid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_lines() {
        let e = parse_scan(b"1 120").unwrap();
        assert_eq!((e.number.get(), e.size), (1, 120));
        assert_eq!(parse_scan(b"2 200 extra info").unwrap().size, 200);
        for bad in [
            &b"0 1"[..],
            b"1",
            b"1 ",
            b"1 -5",
            b"x 5",
            b"1 5x",
            b" 1 5",
            b"1  5",
        ] {
            assert_eq!(parse_scan(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_scan(b"1 99999999999999999999999"), None);
    }

    #[test]
    fn uid_lines() {
        let e = parse_uid(b"3 whqtswO00WBw418f9t5JxYwZ").unwrap();
        assert_eq!(
            (e.number.get(), e.uid.as_str()),
            (3, "whqtswO00WBw418f9t5JxYwZ")
        );
        assert!(parse_uid(format!("1 {}", "a".repeat(70)).as_bytes()).is_some());
        assert!(parse_uid(format!("1 {}", "a".repeat(71)).as_bytes()).is_none());
        for bad in [
            &b"1"[..],
            b"1 ",
            b"1 a b",
            b"1 a\x00",
            b"1 \xc3\xa9",
            b"0 a",
            b"a b",
        ] {
            assert_eq!(parse_uid(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
