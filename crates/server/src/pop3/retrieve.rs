//! RETR and TOP: streaming a message from the store to the client,
//! converted and byte-stuffed on the way, with backpressure.

use std::io::{self, Read};

use yubin_pop3_proto::header::{HeaderCheck, check_header};
use yubin_pop3_proto::{Encoder, MessageError};
use yubin_store::OpenError;

use super::driver::Connection;
use super::surrogate;
use crate::backend::BodyStream;
use crate::config::Utf8Headers;
use crate::stream::Stream;
use crate::stream::write_all;

/// A message being read, from whichever store.
type Message = Box<dyn Read + Send>;

/// How much of a message is read per blocking call.
const CHUNK: usize = 256 * 1024;

impl Connection {
    /// Carries out `SendMessage`. An `Err` means the connection is broken
    /// (the response was cut off) and must be closed.
    pub(super) async fn send_message(
        &mut self,
        stream: &mut Stream,
        index: usize,
        top: Option<u64>,
        utf8: bool,
    ) -> io::Result<()> {
        // The first read is sized to the message (its wire size is at least
        // its file size), so a small message is one read into a small buffer.
        let first_len = self.maildrop.as_ref().map_or(CHUNK, |m| {
            usize::try_from(m.store.size(index))
                .unwrap_or(CHUNK)
                .saturating_add(1)
                .min(CHUNK)
        });
        let Some(store) = self
            .maildrop
            .as_ref()
            .filter(|m| index < m.store.len())
            .map(|m| m.store.clone())
        else {
            self.session.message_failed(MessageError::Io);
            return Ok(());
        };
        // RFC 6858: this message goes out with a surrogate header.
        let downgrade = !utf8
            && self
                .maildrop
                .as_ref()
                .is_some_and(|m| m.surrogates.get(index).copied().unwrap_or(false));
        if !downgrade && let Some(body) = store.stream(index) {
            return self.send_stream(stream, index, top, utf8, body).await;
        }
        let first =
            tokio::task::spawn_blocking(move || -> Result<(Message, Vec<u8>, bool), OpenError> {
                let mut file = store.open(index)?;
                let mut buf = Vec::with_capacity(first_len);
                let mut eof = read_chunk(&mut file, &mut buf, first_len)?;
                if downgrade {
                    let (len, at_end) = surrogate::read_header(&mut file, &mut buf, eof)?;
                    eof = at_end;
                    if let Some(len) = len
                        && let Some(mut header) = surrogate::surrogate(&buf, len)
                    {
                        header.extend_from_slice(&buf[len..]);
                        buf = header;
                    }
                }
                Ok((file, buf, eof))
            })
            .await;
        let (mut file, mut buf, mut eof) = match first {
            Ok(Ok(opened)) => opened,
            Ok(Err(OpenError::Gone)) => {
                self.session.message_failed(MessageError::Gone);
                return Ok(());
            }
            Ok(Err(OpenError::Io(_))) | Err(_) => {
                self.session.message_failed(MessageError::Io);
                return Ok(());
            }
        };
        if !self.may_send(index, utf8, &buf, eof) {
            return Ok(());
        }
        let (mut out, mut encoder) = self.start_response(top, buf.len());
        let timeout = self.service.idle_timeout();
        let mut wants_more = encoder.encode(&buf, &mut out);
        let mut next = Vec::with_capacity(out.capacity());
        while wants_more && !eof {
            // The next chunk is read, and encoded, while this one is
            // written: the disk (or page cache), the encoder and the socket
            // work at the same time, and memory stays bounded by two
            // chunks; a slow reader slows the reading.
            let reading = async {
                let read = tokio::task::spawn_blocking(move || {
                    buf.clear();
                    let result = read_chunk(&mut file, &mut buf, CHUNK);
                    (file, buf, result)
                })
                .await
                .map_err(io::Error::other)?;
                let (file, buf, at_end) = read;
                // A read error after the status line: the response cannot
                // be completed honestly, so the connection is closed (no
                // UPDATE).
                let at_end = at_end?;
                let more = encoder.encode(&buf, &mut next);
                Ok::<_, io::Error>((file, buf, at_end, more))
            };
            let (written, read) = tokio::join!(write_all(stream, &out, timeout), reading);
            written?;
            (file, buf, eof, wants_more) = read?;
            out.clear();
            std::mem::swap(&mut out, &mut next);
        }
        encoder.finish(&mut out);
        write_all(stream, &out, timeout).await?;
        self.session.message_sent();
        Ok(())
    }

    /// [`Connection::send_message`] from a store that reads from async
    /// code ([`Maildrop::stream`](crate::backend::Maildrop::stream)): each
    /// piece is encoded where the store left it, while the store reads
    /// the next ones.
    async fn send_stream(
        &mut self,
        stream: &mut Stream,
        index: usize,
        top: Option<u64>,
        utf8: bool,
        mut body: Box<dyn BodyStream>,
    ) -> io::Result<()> {
        let mut piece = match body.next_piece().await {
            Ok(piece) => piece,
            Err(OpenError::Gone) => {
                self.session.message_failed(MessageError::Gone);
                return Ok(());
            }
            Err(OpenError::Io(_)) => {
                self.session.message_failed(MessageError::Io);
                return Ok(());
            }
        };
        let first: &[u8] = piece.as_ref().map_or(&[], |p| (**p).as_ref());
        if !self.may_send(index, utf8, first, piece.is_none()) {
            return Ok(());
        }
        let (mut out, mut encoder) = self.start_response(top, first.len());
        let timeout = self.service.idle_timeout();
        let mut wants_more = match piece.take() {
            Some(bytes) => encoder.encode((*bytes).as_ref(), &mut out),
            None => false,
        };
        let mut next = Vec::with_capacity(out.capacity());
        while wants_more {
            // Each piece is encoded while the one before it is written: a
            // client slow to read leaves time to encode, and the database
            // reads on meanwhile.
            let encoding = async {
                match body.next_piece().await? {
                    Some(bytes) => Ok(Some(encoder.encode((*bytes).as_ref(), &mut next))),
                    None => Ok(None),
                }
            };
            let (written, encoded) = tokio::join!(write_all(stream, &out, timeout), encoding);
            written?;
            out.clear();
            std::mem::swap(&mut out, &mut next);
            // A failure after the status line: the response cannot be
            // completed honestly, so the connection is closed (no UPDATE).
            match encoded.map_err(|error| match error {
                OpenError::Io(error) => error,
                OpenError::Gone => io::Error::other(OpenError::Gone),
            })? {
                Some(more) => wants_more = more,
                None => break,
            }
        }
        encoder.finish(&mut out);
        write_all(stream, &out, timeout).await?;
        self.session.message_sent();
        Ok(())
    }

    /// RFC 6856 §2.1: UTF-8 headers are not sent as they are outside
    /// UTF-8 mode, when so configured; whether message `index`, starting
    /// with `head` (`whole`: all of it), may go.
    fn may_send(&mut self, index: usize, utf8: bool, head: &[u8], whole: bool) -> bool {
        if !utf8
            && self.service.config.pop3.utf8_headers == Utf8Headers::Refuse
            && check_header(head, whole) == HeaderCheck::Utf8
        {
            self.log_needs_utf8(index);
            self.session.message_failed(MessageError::NeedsUtf8);
            return false;
        }
        true
    }

    /// The status line, in an output buffer for pieces of about `piece`
    /// octets, and the encoder for RETR or TOP.
    fn start_response(&mut self, top: Option<u64>, piece: usize) -> (Vec<u8>, Encoder) {
        self.session.message_opened();
        let mut out = Vec::with_capacity(piece + piece / 16 + 64);
        out.extend_from_slice(self.session.output());
        self.session.clear_output();
        let encoder = match top {
            Some(lines) => Encoder::top(lines),
            None => Encoder::whole(),
        };
        (out, encoder)
    }
}

/// Reads up to `limit` octets into `buf` (appending); returns whether the
/// file ended before the limit.
fn read_chunk(file: &mut Message, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    let n = file.take(limit as u64).read_to_end(buf)?;
    Ok(n < limit)
}
