//! Message numbers and line counts, parsed strictly.
//!
//! Three index spaces meet in a POP3 server (Dovecot's pop3 sources name them
//! for the same reason): the 1-based number on the wire, the 0-based index into
//! the session's message list, and whatever the store uses. [`MsgNum`] is the
//! wire number; [`MsgNum::index`] is the only way to turn it into an index.

use std::fmt;
use std::num::NonZeroU32;

/// A message number as a client writes it: decimal digits only, 1 ..= 2³²−1.
///
/// `0`, `-1`, `+1`, `1x`, ` 1` and `4294967296` are all errors, never another
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgNum(NonZeroU32);

/// Why a message number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberError {
    /// The argument is empty.
    Empty,
    /// The argument has a byte that is not an ASCII digit (a sign, a letter, a space).
    NotANumber,
    /// The argument is zero; messages are numbered from 1.
    Zero,
    /// The argument does not fit in 32 bits.
    TooLarge,
}

impl MsgNum {
    /// Parses a message-number argument; see the type's documentation for the rules.
    pub fn parse(arg: &[u8]) -> Result<Self, NumberError> {
        let value = parse_digits(arg)?;
        let value = u32::try_from(value).map_err(|_| NumberError::TooLarge)?;
        NonZeroU32::new(value).map(MsgNum).ok_or(NumberError::Zero)
    }

    /// Builds a message number from a 0-based index into the session's list.
    /// Returns `None` past 2³²−2, which no maildrop the session accepts reaches.
    pub fn from_index(index: usize) -> Option<Self> {
        let n = u32::try_from(index.checked_add(1)?).ok()?;
        NonZeroU32::new(n).map(MsgNum)
    }

    /// The number as written on the wire.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The 0-based index into the session's message list.
    pub fn index(self) -> usize {
        // u32 always fits in usize on the 32- and 64-bit targets we build for.
        (self.0.get() - 1) as usize
    }
}

impl fmt::Display for MsgNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses the line-count argument of `TOP`: decimal digits only. A count larger
/// than any message means "the whole message", so values beyond `u64` saturate
/// instead of failing.
pub fn parse_line_count(arg: &[u8]) -> Result<u64, NumberError> {
    match parse_digits(arg) {
        Err(NumberError::TooLarge) => Ok(u64::MAX),
        other => other,
    }
}

fn parse_digits(arg: &[u8]) -> Result<u64, NumberError> {
    if arg.is_empty() {
        return Err(NumberError::Empty);
    }
    if !arg.iter().all(u8::is_ascii_digit) {
        return Err(NumberError::NotANumber);
    }
    let mut value: u64 = 0;
    for digit in arg {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .ok_or(NumberError::TooLarge)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimal_numbers() {
        assert_eq!(MsgNum::parse(b"1").map(MsgNum::get), Ok(1));
        assert_eq!(MsgNum::parse(b"42").map(MsgNum::get), Ok(42));
        assert_eq!(MsgNum::parse(b"01").map(MsgNum::get), Ok(1));
        assert_eq!(MsgNum::parse(b"4294967295").map(MsgNum::get), Ok(u32::MAX));
    }

    #[test]
    fn refuses_everything_that_is_not_a_message_number() {
        let cases: &[(&[u8], NumberError)] = &[
            (b"", NumberError::Empty),
            (b"0", NumberError::Zero),
            (b"00", NumberError::Zero),
            (b"-1", NumberError::NotANumber),
            (b"+1", NumberError::NotANumber),
            (b"1x", NumberError::NotANumber),
            (b"01x", NumberError::NotANumber),
            (b" 1", NumberError::NotANumber),
            (b"1.0", NumberError::NotANumber),
            (b"\xd9\xa1", NumberError::NotANumber), // ARABIC-INDIC DIGIT ONE
            (b"4294967296", NumberError::TooLarge),
            (b"4294967297", NumberError::TooLarge),
            (b"99999999999999999999", NumberError::TooLarge),
            (b"999999999999999999999999999999", NumberError::TooLarge),
        ];
        for (input, expected) in cases {
            assert_eq!(MsgNum::parse(input), Err(*expected), "input {input:?}");
        }
    }

    #[test]
    fn index_and_number_are_one_apart() {
        let n = MsgNum::parse(b"7").expect("valid");
        assert_eq!(n.index(), 6);
        assert_eq!(MsgNum::from_index(6), Some(n));
    }

    #[test]
    fn line_counts_saturate_but_stay_strict() {
        assert_eq!(parse_line_count(b"0"), Ok(0));
        assert_eq!(parse_line_count(b"999999999"), Ok(999_999_999));
        assert_eq!(parse_line_count(b"99999999999999999999999"), Ok(u64::MAX));
        assert_eq!(parse_line_count(b"-1"), Err(NumberError::NotANumber));
        assert_eq!(parse_line_count(b""), Err(NumberError::Empty));
    }
}
