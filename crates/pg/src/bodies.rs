//! Message bodies, kept apart from the maildrop rows and queue entries
//! that name them and cut into chunks: a 50 MB message is written and
//! read a chunk at a time, never held whole on either side. Nodes reach
//! them through [`BodyStore`]; [`Database`] is the store that keeps them
//! in PostgreSQL, and an S3-compatible store is another implementation of
//! the trait (docs/scaling.md says how).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio::sync::OwnedSemaphorePermit;

use crate::{Database, DbError};

/// What a [`BodyStore`] call returns.
pub type BodyFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DbError>> + Send + 'a>>;

/// Where message bodies are kept. A body is a row of the `bodies` table,
/// by its id, which maildrop rows and queue entries name; its octets are
/// the store's, in chunks of [`BodyStore::chunk_size`], numbered from 0.
/// A body is written whole before the row that names it commits, and is
/// never changed after; the `bodies` row goes with the last row naming it
/// (in UPDATE's transaction), and what the store keeps for it must go
/// with it, or be swept later.
pub trait BodyStore: Send + Sync {
    /// The octets of each chunk but the last.
    fn chunk_size(&self) -> usize;

    /// Bodies up to this many octets are written by the statement that
    /// names them (the delivery, the queue entry), with no statement of
    /// their own; larger ones are written chunk by chunk first. A store
    /// outside the database writes every body itself: 0.
    fn inline_limit(&self) -> usize;

    /// Starts a body of `size` octets, whose chunks follow
    /// ([`BodyStore::write_chunk`]); its id.
    fn start_body(&self, size: u64) -> BodyFuture<'_, i64>;

    /// Writes chunk `seq` of `body`.
    fn write_chunk<'a>(&'a self, body: i64, seq: i32, data: &'a [u8]) -> BodyFuture<'a, ()>;

    /// The first chunk of each of `bodies` (all of a body of one chunk),
    /// as `(body, data)` pairs; a body that is gone is missing.
    fn first_chunks<'a>(&'a self, bodies: &'a [i64]) -> BodyFuture<'a, Vec<(i64, Vec<u8>)>>;

    /// Up to `count` chunks of `body` from `first`, in order; fewer at the
    /// end, none past it (or when the body is gone).
    fn read_chunks(&self, body: i64, first: i32, count: i32) -> BodyFuture<'_, Vec<Chunk>>;

    /// Leave to read more of a body ahead of its sending, or `None` when
    /// the store is busy enough with such reads already.
    fn read_ahead(&self) -> Option<ReadAhead>;
}

/// Leave to read ahead ([`BodyStore::read_ahead`]); given back when
/// dropped.
#[derive(Debug)]
pub struct ReadAhead {
    _permit: OwnedSemaphorePermit,
}

impl ReadAhead {
    /// Leave that lasts as long as `permit`.
    pub fn new(permit: OwnedSemaphorePermit) -> ReadAhead {
        ReadAhead { _permit: permit }
    }
}

/// The bodies in PostgreSQL: the `body_chunks` table, its rows stored
/// out of line (TOAST), uncompressed.
impl BodyStore for Database {
    fn chunk_size(&self) -> usize {
        CHUNK
    }

    fn inline_limit(&self) -> usize {
        CHUNK
    }

    fn start_body(&self, size: u64) -> BodyFuture<'_, i64> {
        Box::pin(Database::start_body(self, size))
    }

    fn write_chunk<'a>(&'a self, body: i64, seq: i32, data: &'a [u8]) -> BodyFuture<'a, ()> {
        Box::pin(Database::write_chunk(self, body, seq, data))
    }

    fn first_chunks<'a>(&'a self, bodies: &'a [i64]) -> BodyFuture<'a, Vec<(i64, Vec<u8>)>> {
        Box::pin(Database::first_chunks(self, bodies))
    }

    fn read_chunks(&self, body: i64, first: i32, count: i32) -> BodyFuture<'_, Vec<Chunk>> {
        Box::pin(Database::read_chunks(self, body, first, count))
    }

    fn read_ahead(&self) -> Option<ReadAhead> {
        self.spare_connection()
    }
}

/// The size of a body chunk. RETR reads this much per query, so a session
/// holds at most one chunk of a message in memory.
pub const CHUNK: usize = 256 * 1024;

/// The first chunk of each of the bodies `$1`.
pub(crate) const FIRST_CHUNKS: &str =
    "SELECT body_id, data FROM body_chunks WHERE body_id = ANY($1) AND seq = 0";

/// Up to `$3` chunks of body `$1` from `$2`, in order.
pub(crate) const READ_CHUNKS: &str =
    "SELECT data FROM body_chunks WHERE body_id = $1 AND seq >= $2 AND seq < $2 + $3 ORDER BY seq";

/// One chunk of a body. From PostgreSQL, the row as the database sent
/// it: the octets are read where the driver received them, never copied
/// out first.
#[derive(Debug)]
pub struct Chunk(Held);

#[derive(Debug)]
enum Held {
    Row(tokio_postgres::Row),
    Owned(Vec<u8>),
}

impl Chunk {
    /// A row whose first column is the chunk, checked once here.
    fn of(row: tokio_postgres::Row) -> Result<Chunk, DbError> {
        row.try_get::<_, &[u8]>(0)?;
        Ok(Chunk(Held::Row(row)))
    }

    /// A chunk a store holds in its own buffer.
    pub fn owned(data: Vec<u8>) -> Chunk {
        Chunk(Held::Owned(data))
    }

    /// The chunk's octets.
    pub fn bytes(&self) -> &[u8] {
        match &self.0 {
            // Checked in `of`: the column is there and is not null.
            Held::Row(row) => row.try_get(0).unwrap_or_default(),
            Held::Owned(data) => data,
        }
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl Database {
    /// Starts a body of `size` octets whose chunks are written one by one
    /// ([`Database::write_chunk`]); its id. Until a maildrop row names it,
    /// it is an orphan that [`Database::remove_orphan_bodies`] takes away
    /// after a day.
    pub async fn start_body(&self, size: u64) -> Result<i64, DbError> {
        let row = self
            .query_one(
                "INSERT INTO bodies (size) VALUES ($1) RETURNING id",
                &[&i64::try_from(size).unwrap_or(i64::MAX)],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Writes chunk `seq` (from 0) of body `body`.
    pub async fn write_chunk(&self, body: i64, seq: i32, data: &[u8]) -> Result<(), DbError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO body_chunks (body_id, seq, data) VALUES ($1, $2, $3)",
                &[&body, &seq, &data],
            )
            .await?;
        Ok(())
    }

    /// The first chunk of each of `bodies` (all of a body of one chunk),
    /// as `(body, data)` pairs; a body that is gone is missing.
    pub async fn first_chunks(&self, bodies: &[i64]) -> Result<Vec<(i64, Vec<u8>)>, DbError> {
        let rows = self.query(FIRST_CHUNKS, &[&bodies]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Up to `count` chunks of body `body` from `first`, in order; fewer
    /// at the end, none past it (or when the body is gone).
    pub async fn read_chunks(
        &self,
        body: i64,
        first: i32,
        count: i32,
    ) -> Result<Vec<Chunk>, DbError> {
        let rows = self.query(READ_CHUNKS, &[&body, &first, &count]).await?;
        rows.into_iter().map(Chunk::of).collect()
    }

    /// Removes what has expired: grants past their window by an hour,
    /// penalties not renewed for `forget`, greylisting triplets not seen
    /// for `forget_triplets`; how many rows.
    pub async fn remove_expired(
        &self,
        forget: Duration,
        forget_triplets: Duration,
    ) -> Result<u64, DbError> {
        let grants = self
            .execute(
                "DELETE FROM relay_grants WHERE expires < now() - interval '1 hour'",
                &[],
            )
            .await?;
        let penalties = self
            .execute(
                "DELETE FROM login_penalties WHERE last_failure < now() - make_interval(secs => $1)",
                &[&forget.as_secs_f64()],
            )
            .await?;
        let triplets = self
            .execute(
                "DELETE FROM greylist WHERE last_seen < now() - make_interval(secs => $1)",
                &[&forget_triplets.as_secs_f64()],
            )
            .await?;
        Ok(grants + penalties + triplets)
    }

    /// Removes bodies that no maildrop row or queue entry names and that
    /// are older than `age` (deliveries cut off between writing the body
    /// and committing it); how many.
    pub async fn remove_orphan_bodies(&self, age: Duration) -> Result<u64, DbError> {
        let removed = self
            .execute(
                "DELETE FROM bodies b WHERE b.created < now() - make_interval(secs => $1) \
                 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = b.id) \
                 AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.body_id = b.id)",
                &[&age.as_secs_f64()],
            )
            .await?;
        Ok(removed)
    }
}

/// Removes those of `bodies` that nothing names any more (their messages
/// were just deleted in the same transaction).
pub(crate) async fn remove_unreferenced(
    client: &impl GenericClient,
    bodies: &[i64],
) -> Result<u64, DbError> {
    if bodies.is_empty() {
        return Ok(0);
    }
    let removed = client
        .execute(
            "DELETE FROM bodies b WHERE b.id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = b.id) \
             AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.body_id = b.id)",
            &[&bodies],
        )
        .await?;
    Ok(removed)
}
