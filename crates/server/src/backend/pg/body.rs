//! Message bodies on their way in and out of the database, a chunk at a
//! time, for maildrops and the queue alike: a 50 MB message is never held
//! whole on either side.

use std::io::{self, Read, Write};

use tokio::runtime::Handle;
use yubin_pg::{CHUNK, Database};

/// A body held in memory up to this many octets is written in one
/// statement with the row that names it; a larger one streams its chunks
/// first (a message to 100 local users holds 100 of these at most).
pub(super) const IN_ONE_STATEMENT: usize = CHUNK;

/// A message body on its way in: small ones stay in memory until the
/// delivery commits; a large one is written a chunk at a time as it comes.
/// Blocking: for tokio's blocking pool.
pub(super) struct BodyWriter<'a> {
    db: &'a Database,
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
    /// names it may correct it) for `db`.
    pub(super) fn new(db: &'a Database, runtime: &'a Handle, size: u64) -> BodyWriter<'a> {
        BodyWriter {
            db,
            runtime,
            size,
            started: None,
            written_chunks: 0,
            pending: Vec::new(),
        }
    }

    /// What is written, and what is left.
    pub(super) fn finish(self) -> WrittenBody {
        WrittenBody {
            started: self.started,
            first_seq: self.written_chunks,
            pending: self.pending,
        }
    }
}

impl Write for BodyWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        if self.pending.len() > IN_ONE_STATEMENT {
            let (db, size) = (self.db, self.size);
            let body = match self.started {
                Some(body) => body,
                None => {
                    let body = self
                        .runtime
                        .block_on(db.start_body(size))
                        .map_err(io::Error::other)?;
                    self.started = Some(body);
                    body
                }
            };
            let full = self.pending.len() / CHUNK * CHUNK;
            for chunk in self.pending[..full].chunks(CHUNK) {
                self.runtime
                    .block_on(db.write_chunk(body, self.written_chunks, chunk))
                    .map_err(io::Error::other)?;
                self.written_chunks += 1;
            }
            self.pending.drain(..full);
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

/// Queries on their way at once while a body is read: the database works
/// on the next MiB while the last one is sent, so the stream never waits
/// for a round trip. A session holds at most this many MiB and one more.
const FETCHES_AHEAD: usize = 2;

/// Chunks on their way from the database.
type Fetch = tokio::task::JoinHandle<Result<Vec<Vec<u8>>, yubin_pg::DbError>>;

/// A body read a few chunks (one query) at a time, the next few always on
/// their way while these are sent. Blocking: for tokio's blocking pool.
pub(super) struct BodyReader {
    db: Database,
    runtime: Handle,
    body: i64,
    size: u64,
    /// Octets not yet read out.
    left: u64,
    /// The next chunk to ask for.
    asked: i32,
    /// Fetched chunks not yet read, in order.
    ahead: std::collections::VecDeque<Vec<u8>>,
    /// The next chunks, asked for already, in order.
    coming: std::collections::VecDeque<Fetch>,
    chunk: Vec<u8>,
    at: usize,
}

impl BodyReader {
    /// Body `body` of `size` octets, nothing fetched yet.
    pub(super) fn new(db: Database, runtime: Handle, body: i64, size: u64) -> BodyReader {
        BodyReader {
            db,
            runtime,
            body,
            size,
            left: size,
            asked: 0,
            ahead: std::collections::VecDeque::new(),
            coming: std::collections::VecDeque::new(),
            chunk: Vec::new(),
            at: 0,
        }
    }

    /// Fetches the first chunk now, so that a body removed meanwhile is
    /// told apart (`false`) before anything is sent; `true` for an empty
    /// body.
    pub(super) fn start(&mut self) -> io::Result<bool> {
        if self.left == 0 {
            return Ok(true);
        }
        self.fill()
    }

    /// Asks for more until [`FETCHES_AHEAD`] queries are on their way or
    /// the whole body is asked for.
    fn ask_ahead(&mut self) {
        let chunk = CHUNK as u64;
        while self.coming.len() < FETCHES_AHEAD
            && u64::try_from(self.asked)
                .unwrap_or(u64::MAX)
                .saturating_mul(chunk)
                < self.size
        {
            let (db, body, first) = (self.db.clone(), self.body, self.asked);
            self.coming.push_back(
                self.runtime
                    .spawn(async move { db.read_chunks(body, first, CHUNKS_PER_READ).await }),
            );
            self.asked = self.asked.saturating_add(CHUNKS_PER_READ);
        }
    }

    /// Moves to the next chunk, fetching more when none is left; `false`
    /// when there is none.
    fn fill(&mut self) -> io::Result<bool> {
        if self.ahead.is_empty() {
            self.ask_ahead();
            if let Some(coming) = self.coming.pop_front() {
                let chunks = self
                    .runtime
                    .block_on(coming)
                    .map_err(io::Error::other)?
                    .map_err(io::Error::other)?;
                self.ahead.extend(chunks);
            }
            // More on its way while these are sent.
            self.ask_ahead();
        }
        let Some(chunk) = self.ahead.pop_front() else {
            return Ok(false);
        };
        self.left = self.left.saturating_sub(chunk.len() as u64);
        self.chunk = chunk;
        self.at = 0;
        Ok(true)
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.left == 0 && self.ahead.is_empty() {
                return Ok(0);
            }
            if !self.fill()? {
                // Fewer octets than the size written at delivery: the
                // message cannot be sent whole.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "message body is shorter than its size",
                ));
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
