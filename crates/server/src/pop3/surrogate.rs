//! `pop3.utf8_headers = "downgrade"`: RFC 6858 surrogates for clients that
//! have not enabled UTF-8 mode. The surrogate header comes from
//! `yubin_pop3_proto::downgrade`; here it is read from the Maildir, sized
//! for LIST and STAT (cached per message by `yubin_store`), and put in front
//! of the body for RETR and TOP.

use std::io::{self, Read};

use yubin_pop3_proto::WireSize;
use yubin_pop3_proto::downgrade::downgrade_header;
use yubin_pop3_proto::header::header_len;

/// The name of the per-Maildir cache of surrogate sizes (`yubin-surrogates-1`).
/// The version is part of the name: a changed surrogate means new sizes.
pub(super) const CACHE: &str = "surrogates-1";

/// A header section longer than this is sent as it is stored: nothing
/// legitimate has one, and a surrogate must be built in memory.
const MAX_HEADER: usize = 1 << 20;

/// Reads on from `file` into `buf` (which holds the first `buf.len()`
/// octets of the message; `eof` says whether that is all of it) until the
/// header section is complete. Returns its length and whether the file has
/// ended; no length if the header runs past [`MAX_HEADER`].
pub(super) fn read_header(
    file: &mut (impl Read + ?Sized),
    buf: &mut Vec<u8>,
    mut eof: bool,
) -> io::Result<(Option<usize>, bool)> {
    loop {
        if let Some(len) = header_len(buf) {
            return Ok((Some(len), eof));
        }
        if eof {
            // No empty line: the whole message is header.
            return Ok((Some(buf.len()), true));
        }
        if buf.len() >= MAX_HEADER {
            return Ok((None, false));
        }
        let want = (MAX_HEADER - buf.len()).min(64 * 1024);
        let got = file.take(want as u64).read_to_end(buf)?;
        eof = got < want;
    }
}

/// The surrogate of the header section `buf[..len]`, if it needs one.
pub(super) fn surrogate(buf: &[u8], len: usize) -> Option<Vec<u8>> {
    downgrade_header(&buf[..len])
}

/// The wire size of a message whose listed (stored) wire size is `listed`
/// once its header is replaced by its surrogate, or `None` if it needs no
/// surrogate. The rule behind the `yubin-surrogates-1` cache.
pub(super) fn surrogate_size(
    file: &mut (impl Read + ?Sized),
    listed: u64,
) -> io::Result<Option<u64>> {
    let mut buf = Vec::new();
    let (Some(len), _) = read_header(file, &mut buf, false)? else {
        return Ok(None);
    };
    let header = &buf[..len];
    // The header ends at a line end (or is the whole message), so the wire
    // size of the message is that of its header plus that of its body.
    // `listed` may come from a foreign `,W=` that counts differently; never
    // let it wrap.
    Ok(
        surrogate(&buf, len)
            .map(|s| listed.saturating_sub(WireSize::of(header)) + WireSize::of(&s)),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn sized(message: &[u8]) -> Option<u64> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(message).unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        surrogate_size(&mut file, WireSize::of(message)).unwrap()
    }

    /// The size announced is the size of what RETR sends.
    #[test]
    fn the_size_is_that_of_the_surrogate_message() {
        for message in [
            "Subject: Grüße\r\nTo: jörg@bücher.example\r\n\r\nbody\nmore\n".as_bytes(),
            "Subject: ☕\n\n.\nlast line without end".as_bytes(),
            "Subject: only a header, ☕".as_bytes(),
            "X: ☕\n\n".as_bytes(),
        ] {
            let len = header_len(message).unwrap_or(message.len());
            let mut sent = surrogate(message, len).unwrap();
            sent.extend_from_slice(&message[len..]);
            assert_eq!(sized(message), Some(WireSize::of(&sent)), "{message:?}");
        }
        assert_eq!(sized(b"Subject: ascii\n\nbody \xc3\xa9\n"), None);
    }
}
