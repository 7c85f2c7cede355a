//! Signing one message with every key its From: domain has.
//!
//! The signature covers the message as it leaves (RFC 6376 §5.3): CRLF
//! line ends and a terminated last line, the same scanner the SMTP client
//! sends with, and every header field yubin itself put on top. Signing
//! reads the message twice through the caller's writer: once up to the end
//! of the header section, to learn which fields are present, and once
//! whole, streaming the body through the hash without holding it.
//!
//! Signed fields: those the large mailbox providers ask for, when present
//! (From, To, Subject, Date, Message-ID, the MIME fields, List-Unsubscribe
//! and List-Unsubscribe-Post, and their companions). The fields a reader
//! sees ([`OVERSIGNED`]: From, Subject, To, Cc, Reply-To, Sender, Date,
//! Message-ID and the MIME fields) are listed once more than they occur,
//! so one added on the way, or added where there was none, breaks the
//! signature (RFC 6376 §8.15). The List-* fields are not: a mailing list
//! may add its own. Canonicalisation is relaxed/relaxed.

use std::io::{self, Write};

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use yubin_line::CrlfLines;

use super::key::Key;

/// The fields signed when present, in the order they are listed in `h=`.
pub const SIGNED_FIELDS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-ID",
    "Content-Language",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Autocrypt",
    // TLS reports (RFC 8460 §5.3: these SHOULD be signed).
    "TLS-Report-Domain",
    "TLS-Report-Submitter",
];

/// The fields listed once more than they occur (none present: listed
/// once, which forbids adding one).
pub const OVERSIGNED: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// How much of a header section is read to learn its field names; a
/// field that starts beyond it is left unsigned (the signature still
/// verifies).
const HEADER_LIMIT: usize = 1024 * 1024;

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Reading the message failed.
    #[error("reading the message: {0}")]
    Io(#[from] io::Error),
    /// The signature could not be made (no From: field, a key the crypto
    /// library refused).
    #[error("{0}")]
    Dkim(String),
}

/// Signing with one domain's keys.
#[derive(Debug)]
pub struct Signing<'k> {
    keys: &'k [Key],
}

impl<'k> Signing<'k> {
    /// Signs with each of `keys` (one signature per key).
    pub fn new(keys: &'k [Key]) -> Signing<'k> {
        Signing { keys }
    }

    /// The DKIM-Signature fields for the message that `message` writes
    /// (in its stored form: LF or CRLF line ends), one per key, LF line
    /// ends, to be put on top of the message. `message` is called twice
    /// and must write the same bytes both times.
    pub fn sign(
        &self,
        message: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<String, SignError> {
        if self.keys.is_empty() {
            return Ok(String::new());
        }
        let mut header = HeaderSection::default();
        match message(&mut header) {
            Ok(()) => {}
            Err(e) if HeaderSection::is_complete(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let fields = signed_fields(&header.bytes);
        if !fields.iter().any(|f| f == "From") {
            return Err(SignError::Dkim("the message has no From: field".into()));
        }
        let signers: Vec<_> = self
            .keys
            .iter()
            .map(|key| {
                DkimSigner::from_key(key.shared())
                    .domain(key.domain.clone())
                    .selector(key.selector.clone())
                    .headers(fields.iter().cloned())
                    .header_canonicalization(Canonicalization::Relaxed)
                    .body_canonicalization(Canonicalization::Relaxed)
            })
            .collect();
        let mut wire = Wire {
            streams: signers.iter().map(|s| s.sign_streaming()).collect(),
            lines: CrlfLines::new(),
            buffer: Vec::new(),
        };
        message(&mut wire)?;
        let mut rest = Vec::new();
        wire.lines.finish(&mut rest);
        let mut signed = String::new();
        for mut stream in wire.streams {
            stream.write(&rest);
            let signature = stream
                .finish()
                .map_err(|e| SignError::Dkim(e.to_string()))?;
            // mail-auth may fold right before the closing ";" when b= fills
            // a line; RFC 6376 §3.5 has verifiers drop that whitespace with
            // the b= value, but dkimpy keeps it and fails: no fold there.
            let header = signature.to_header().replace("\r\n\t;", ";");
            signed.push_str(&header.replace("\r\n", "\n"));
        }
        Ok(signed)
    }
}

/// The names of the fields to sign: each present one of [`SIGNED_FIELDS`]
/// (`mail-auth` signs every instance of a listed name), then each of
/// [`OVERSIGNED`] once more (`mail-auth` lists a name it cannot find once
/// more in `h=`, which is the over-signing).
pub fn signed_fields(header: &[u8]) -> Vec<String> {
    let present: Vec<&[u8]> = header
        .split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .filter(|line| !matches!(line.first(), Some(b' ' | b'\t')))
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some(line[..colon].trim_ascii_end())
        })
        .collect();
    let mut fields: Vec<String> = SIGNED_FIELDS
        .iter()
        .filter(|name| {
            present
                .iter()
                .any(|p| p.eq_ignore_ascii_case(name.as_bytes()))
        })
        .map(|name| (*name).to_owned())
        .collect();
    if fields.iter().any(|f| f == "From") {
        fields.extend(OVERSIGNED.iter().map(|name| (*name).to_owned()));
    }
    fields
}

/// The first pass: keeps the header section, then stops the writer.
#[derive(Default)]
struct HeaderSection {
    bytes: Vec<u8>,
}

/// The error that ends the first pass early.
#[derive(Debug)]
struct Complete;

impl std::fmt::Display for Complete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("header section complete")
    }
}

impl std::error::Error for Complete {}

impl HeaderSection {
    fn is_complete(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|e| e.is::<Complete>())
    }

    fn ended(&self) -> bool {
        let b = &self.bytes;
        b.starts_with(b"\n") || b.starts_with(b"\r\n") || memchr_blank(b) || b.len() >= HEADER_LIMIT
    }
}

/// A blank line (LF LF or LF CR LF) anywhere in `b`.
fn memchr_blank(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"\n\n") || b.windows(3).any(|w| w == b"\n\r\n")
}

impl Write for HeaderSection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = HEADER_LIMIT.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&buf[..buf.len().min(room)]);
        if self.ended() {
            return Err(io::Error::other(Complete));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The second pass: the stored bytes, as they go on the wire, into every
/// signer's stream.
struct Wire<'s> {
    streams: Vec<mail_auth::dkim::streaming::DkimSigningStream<'s, super::key::SharedKey>>,
    lines: CrlfLines,
    buffer: Vec<u8>,
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.clear();
        self.lines.convert(buf, &mut self.buffer);
        for stream in &mut self.streams {
            stream.write(&self.buffer);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
