//! Message bodies on their way in and out of the database, a chunk at a
//! time, for maildrops and the queue alike: a 50 MB message is never held
//! whole on either side.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;

use tokio::runtime::Handle;
use yubin_pg::{BodyStore, Chunk, ReadAhead};
use yubin_store::OpenError;

use crate::backend::mail::{BodyStream, Piece, PieceFuture};

/// The store bodies are written to and read from (the database itself,
/// or one beside it).
pub(super) type Bodies = Arc<dyn BodyStore>;

/// A message body on its way in: one the store takes with the row that
/// names it ([`BodyStore::inline_limit`]: in the database, up to a chunk;
/// a message to 100 local users holds 100 of these at most) stays in
/// memory until the delivery commits; a larger one is written a chunk at
/// a time as it comes. Blocking: for tokio's blocking pool.
pub(super) struct BodyWriter<'a> {
    store: &'a dyn BodyStore,
    runtime: &'a Handle,
    size: u64,
    started: Option<i64>,
    written_chunks: i32,
    pending: Vec<u8>,
}

/// What a [`BodyWriter`] leaves for the statement that names the body.
pub(super) struct WrittenBody {
    /// The body, if its first chunks are written already.
    pub started: Option<i64>,
    /// The sequence number of the first chunk of `pending`.
    pub first_seq: i32,
    /// The rest, not yet written (all of a small body).
    pub pending: Vec<u8>,
}

impl<'a> BodyWriter<'a> {
    /// A body of `size` octets (as far as is known: the statement that
    /// names it may correct it) for `store`.
    pub(super) fn new(store: &'a dyn BodyStore, runtime: &'a Handle, size: u64) -> BodyWriter<'a> {
        BodyWriter {
            store,
            runtime,
            size,
            started: None,
            written_chunks: 0,
            pending: Vec::new(),
        }
    }

    /// What is written, and what is left for the statement that names
    /// the body (nothing, for a store that takes nothing with it).
    pub(super) fn finish(mut self) -> io::Result<WrittenBody> {
        let inline = self.store.inline_limit();
        if inline == 0 || self.pending.len() > inline {
            self.write_out(self.pending.len())?;
        }
        Ok(WrittenBody {
            started: self.started,
            first_seq: self.written_chunks,
            pending: self.pending,
        })
    }

    /// Writes the first `upto` octets held, as chunks (the last one may
    /// be short only when `upto` is all of the body).
    fn write_out(&mut self, upto: usize) -> io::Result<()> {
        let (store, size) = (self.store, self.size);
        let body = match self.started {
            Some(body) => body,
            None => {
                let body = self
                    .runtime
                    .block_on(store.start_body(size))
                    .map_err(io::Error::other)?;
                self.started = Some(body);
                body
            }
        };
        for chunk in self.pending[..upto].chunks(store.chunk_size()) {
            self.runtime
                .block_on(store.write_chunk(body, self.written_chunks, chunk))
                .map_err(io::Error::other)?;
            self.written_chunks += 1;
        }
        self.pending.drain(..upto);
        Ok(())
    }
}

impl Write for BodyWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        let chunk = self.store.chunk_size();
        if self.pending.len() > self.store.inline_limit().max(chunk) {
            self.write_out(self.pending.len() / chunk * chunk)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Chunks fetched per query while reading a body: RETR of a large
/// message is a query per MiB.
const CHUNKS_PER_READ: i32 = 4;

/// Queries on their way at once while a body is read, at most: the
/// database works on the next MiB while the last one is sent, and several
/// of its processes at once, so the stream never waits for a round trip.
/// Beyond the first, each takes the store's leave to read ahead
/// ([`BodyStore::read_ahead`]: in the database, one of the pool's spare
/// connections), so a reader always moves on, and reading ahead holds a
/// bounded number of MiB on a node.
const MOST_AHEAD: usize = 4;

/// A query for chunks on its way, and the leave to read ahead it took, if
/// any (given back once its chunks are taken from it).
struct Fetch {
    chunks: tokio::task::JoinHandle<Result<Vec<Chunk>, yubin_pg::DbError>>,
    _leave: Option<ReadAhead>,
}

impl Drop for Fetch {
    /// A reader let go before its chunks came (the client went mid-RETR)
    /// stops the query, so that the leave it gives back (in the database,
    /// a spare connection) is free indeed; a query that answered already
    /// is not touched.
    fn drop(&mut self) {
        self.chunks.abort();
    }
}

/// A body fetched a few chunks (one query) at a time, the next queries
/// always on their way while the chunks before them are sent.
pub(super) struct ChunkFetcher {
    store: Bodies,
    body: i64,
    size: u64,
    /// Octets not yet handed out.
    left: u64,
    /// The next chunk to ask for.
    asked: i32,
    /// Fetched chunks not yet handed out, in order.
    ahead: VecDeque<Chunk>,
    /// The next chunks, asked for already, in order.
    coming: VecDeque<Fetch>,
}

impl ChunkFetcher {
    /// Body `body` of `size` octets, nothing asked for yet.
    pub(super) fn new(store: Bodies, body: i64, size: u64) -> ChunkFetcher {
        ChunkFetcher {
            store,
            body,
            size,
            left: size,
            asked: 0,
            ahead: VecDeque::new(),
            coming: VecDeque::new(),
        }
    }

    /// Whether every octet has been handed out.
    fn done(&self) -> bool {
        self.left == 0 && self.ahead.is_empty()
    }

    /// Asks for more: one query on its way always, up to [`MOST_AHEAD`]
    /// while the store gives leave, until the whole body is asked for.
    /// Runs in a runtime's context.
    fn ask_ahead(&mut self) {
        let chunk = self.store.chunk_size() as u64;
        while self.coming.len() < MOST_AHEAD
            && u64::try_from(self.asked)
                .unwrap_or(u64::MAX)
                .saturating_mul(chunk)
                < self.size
        {
            let leave = if self.coming.is_empty() {
                None
            } else {
                match self.store.read_ahead() {
                    Some(leave) => Some(leave),
                    None => break,
                }
            };
            let (store, body, first) = (self.store.clone(), self.body, self.asked);
            self.coming.push_back(Fetch {
                chunks: tokio::spawn(async move {
                    store.read_chunks(body, first, CHUNKS_PER_READ).await
                }),
                _leave: leave,
            });
            self.asked = self.asked.saturating_add(CHUNKS_PER_READ);
        }
    }

    /// The next chunk, fetching more when none is left; `None` when the
    /// database has no more (the body ended, or is gone).
    pub(super) async fn next(&mut self) -> io::Result<Option<Chunk>> {
        if self.ahead.is_empty() {
            self.ask_ahead();
            if let Some(mut coming) = self.coming.pop_front() {
                let chunks = (&mut coming.chunks)
                    .await
                    .map_err(io::Error::other)?
                    .map_err(io::Error::other)?;
                self.ahead.extend(chunks);
            }
            // More on its way while these are sent.
            self.ask_ahead();
        }
        let chunk = self.ahead.pop_front();
        if let Some(chunk) = &chunk {
            self.left = self.left.saturating_sub(chunk.bytes().len() as u64);
        }
        Ok(chunk)
    }

    /// The next chunk of a body that must go on: fewer octets than the
    /// size written at delivery is an error, since the message cannot be
    /// sent whole.
    async fn next_of_rest(&mut self) -> io::Result<Chunk> {
        self.next().await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "message body is shorter than its size",
            )
        })
    }
}

/// A body for async code: a [`BodyStream`] of the chunks as fetched.
pub(super) struct ChunkStream {
    fetcher: ChunkFetcher,
    started: bool,
}

impl ChunkStream {
    /// Body `body` of `size` octets (more than nothing).
    pub(super) fn new(store: Bodies, body: i64, size: u64) -> ChunkStream {
        ChunkStream {
            fetcher: ChunkFetcher::new(store, body, size),
            started: false,
        }
    }
}

impl BodyStream for ChunkStream {
    fn next_piece(&mut self) -> PieceFuture<'_> {
        Box::pin(async move {
            if self.fetcher.done() {
                return Ok(None);
            }
            if !std::mem::replace(&mut self.started, true) {
                // Nothing at all: the body went with its message.
                return match self.fetcher.next().await? {
                    Some(chunk) => Ok(Some(Box::new(chunk) as Piece)),
                    None => Err(OpenError::Gone),
                };
            }
            let chunk = self.fetcher.next_of_rest().await?;
            Ok(Some(Box::new(chunk) as Piece))
        })
    }
}

/// A body for blocking code (tokio's blocking pool): `Read` over the
/// chunks as fetched.
pub(super) struct BodyReader {
    fetcher: ChunkFetcher,
    runtime: Handle,
    chunk: Option<Chunk>,
    at: usize,
}

impl BodyReader {
    /// Body `body` of `size` octets, nothing fetched yet.
    pub(super) fn new(store: Bodies, runtime: Handle, body: i64, size: u64) -> BodyReader {
        BodyReader {
            fetcher: ChunkFetcher::new(store, body, size),
            runtime,
            chunk: None,
            at: 0,
        }
    }

    /// Fetches the first chunk now, so that a body removed meanwhile is
    /// told apart (`false`) before anything is sent; `true` for an empty
    /// body.
    pub(super) fn start(&mut self) -> io::Result<bool> {
        if self.fetcher.done() {
            return Ok(true);
        }
        self.chunk = self.runtime.block_on(self.fetcher.next())?;
        self.at = 0;
        Ok(self.chunk.is_some())
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let unread = self.chunk.as_ref().map_or(0, |c| c.bytes().len() - self.at);
        if unread == 0 {
            if self.fetcher.done() {
                return Ok(0);
            }
            self.chunk = Some(self.runtime.block_on(self.fetcher.next_of_rest())?);
            self.at = 0;
        }
        let Some(chunk) = &self.chunk else {
            return Ok(0);
        };
        let bytes = &chunk.bytes()[self.at..];
        let n = out.len().min(bytes.len());
        out[..n].copy_from_slice(&bytes[..n]);
        self.at += n;
        Ok(n)
    }
}
