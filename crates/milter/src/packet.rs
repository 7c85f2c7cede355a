//! Milter packets: a 32-bit big-endian length (of the command byte and
//! the data), the command byte, the data.

use crate::conversation::Error;

/// The longest packet a filter may send us. libmilter sends at most
/// 65,535 bytes of data unless larger sizes are negotiated (we offer
/// none); a header edit or a reply text is far shorter. The bound keeps
/// a broken filter from making us buffer without end.
pub const MAX_PACKET: usize = 256 * 1024;

/// One packet from a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The command byte (`c`, `a`, `r`, `h`, …).
    pub code: u8,
    /// What follows it.
    pub data: Vec<u8>,
}

/// Appends the packet `code` with `parts` as its data to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, code: u8, parts: &[&[u8]]) {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    // Our packets are at most a 65,535-byte body chunk and short strings.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(code);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Splits what a filter sends into packets.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// A decoder with nothing read.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Adds bytes read from the filter.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `None` when more bytes are needed; an error
    /// for a length of zero or beyond [`MAX_PACKET`] (said before the data
    /// arrives, so nothing is buffered for it).
    pub fn next_packet(&mut self) -> Result<Option<Packet>, Error> {
        let Some(head) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(Error::Protocol(format!("a packet of {len} bytes")));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let code = self.buf[4];
        let data = self.buf[5..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(Packet { code, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_split_wherever_the_bytes_break() {
        let mut wire = Vec::new();
        encode(&mut wire, b'h', &[b"X-A\0", b"1\0"]);
        encode(&mut wire, b'c', &[]);
        for cut in 0..wire.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            d.feed(&wire[..cut]);
            while let Some(p) = d.next_packet().expect("valid packets") {
                got.push(p);
            }
            d.feed(&wire[cut..]);
            while let Some(p) = d.next_packet().expect("valid packets") {
                got.push(p);
            }
            assert_eq!(
                got,
                vec![
                    Packet {
                        code: b'h',
                        data: b"X-A\x001\0".to_vec()
                    },
                    Packet {
                        code: b'c',
                        data: vec![]
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn empty_and_oversized_lengths_are_errors_before_any_data() {
        let mut d = Decoder::new();
        d.feed(&0u32.to_be_bytes());
        assert!(d.next_packet().is_err());
        let mut d = Decoder::new();
        d.feed(&(MAX_PACKET as u32 + 1).to_be_bytes());
        assert!(d.next_packet().is_err());
    }
}
