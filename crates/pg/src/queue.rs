//! The outbound queue in the database: one row per entry (its envelope and
//! the delivery engine's record of it), its message a body like a
//! maildrop's, and claims that make one attempt at a time per entry
//! across the cluster.
//!
//! A claim is written on the entry's row: a token and a lease. It is taken
//! only for an entry whose row no other transaction holds (`FOR UPDATE
//! SKIP LOCKED`) and whose earlier claim, if any, has lapsed; its node
//! renews it while the attempt lasts. Every write of the entry's record
//! and its removal name the claim's token in their `WHERE`, which
//! PostgreSQL checks against the row's newest version: a node whose claim
//! was taken over (it was cut off, its lease ran out) changes nothing.

use std::time::Duration;

use tokio_postgres::types::ToSql;

use crate::{Database, DbError};

/// A new entry, as [`Database::enqueue`] writes it.
#[derive(Debug)]
pub struct NewEntry<'a> {
    /// Its envelope.
    pub envelope: &'a QueueEnvelope,
    /// Octets of the message as stored (LF line ends).
    pub size: u64,
    /// The body, when its first chunks were written already
    /// ([`Database::start_body`]).
    pub body: Option<i64>,
    /// The sequence number of the first of `chunks`.
    pub first_seq: i32,
    /// The message's last chunks (all of it, for a small one).
    pub chunks: Vec<&'a [u8]>,
    /// Its delivery record, if it has one already (moved from elsewhere).
    pub record: Option<&'a EntryRecord>,
}

/// An entry's envelope, as the queue keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueEnvelope {
    /// The entry's id.
    pub id: String,
    /// When it was queued (Unix seconds).
    pub created: u64,
    /// The reverse-path, `""` for the null sender.
    pub sender: String,
    /// Every recipient (finished ones included: see [`EntryRecord::done`]).
    pub recipients: Vec<String>,
    /// The client's address.
    pub client: String,
    /// Why relaying was allowed.
    pub auth: String,
    /// The MAIL `BODY=` value, `""` if not given.
    pub body_type: String,
    /// Sent with SMTPUTF8.
    pub smtputf8: bool,
    /// Octets on the wire (CRLF line ends), if known.
    pub wire_size: Option<u64>,
}

/// A queued entry: its envelope and where its message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The envelope.
    pub envelope: QueueEnvelope,
    /// Its message's body.
    pub body: i64,
    /// Octets of the message as stored.
    pub size: u64,
}

/// The delivery engine's record of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryRecord {
    /// Attempts made.
    pub attempts: u32,
    /// Unix time of the next attempt (0: now).
    pub next_attempt: u64,
    /// The last failure.
    pub last_error: String,
    /// Recipients finished: delivered or bounced.
    pub done: Vec<String>,
    /// The sender was told of the delay.
    pub warned: bool,
    /// The postmaster asked for the message to be returned.
    pub bounce: bool,
}

/// What claiming an entry came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimResult {
    /// Claimed, under the token given.
    Claimed,
    /// Another attempt holds it, or it is not due yet.
    Busy,
    /// No such entry.
    Gone,
}

const ENQUEUE: &str = "WITH b AS ( \
         INSERT INTO bodies (size) SELECT $1 WHERE $2::bigint IS NULL RETURNING id), \
     body AS (SELECT id FROM b UNION ALL SELECT $2::bigint WHERE $2::bigint IS NOT NULL), \
     sized AS (UPDATE bodies SET size = $1 WHERE id = $2::bigint), \
     c AS ( \
         INSERT INTO body_chunks (body_id, seq, data) \
         SELECT body.id, $3::int + (s.n - 1)::int, s.data \
         FROM body, unnest($4::bytea[]) WITH ORDINALITY AS s(data, n)) \
     INSERT INTO queue (id, created, sender, recipients, client, auth, body_type, smtputf8, \
         wire_size, body_id, attempts, next_attempt, last_error, done, warned, bounce) \
     SELECT $5, $6, $7, $8, $9, $10, $11, $12, $13, body.id, $14, $15, $16, $17, $18, $19 FROM body";

/// An [`EntryRecord`] as the statements' last six parameters.
struct RecordColumns<'a> {
    record: &'a EntryRecord,
    attempts: i32,
    next: i64,
}

impl<'a> RecordColumns<'a> {
    fn of(record: &'a EntryRecord) -> RecordColumns<'a> {
        RecordColumns {
            record,
            attempts: i32::try_from(record.attempts).unwrap_or(i32::MAX),
            next: signed(record.next_attempt),
        }
    }

    /// attempts, next_attempt, last_error, done, warned, bounce.
    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.attempts,
            &self.next,
            &self.record.last_error,
            &self.record.done,
            &self.record.warned,
            &self.record.bounce,
        ]
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Database {
    /// Queues an entry, as one statement: the body (unless started
    /// already), its last chunks and the queue row. Committed (with
    /// `synchronous_commit` on) when this returns.
    pub async fn enqueue(&self, entry: &NewEntry<'_>) -> Result<(), DbError> {
        let envelope = entry.envelope;
        let size = signed(entry.size);
        let created = signed(envelope.created);
        let wire_size = envelope.wire_size.map(signed);
        let fresh = EntryRecord::default();
        let record = RecordColumns::of(entry.record.unwrap_or(&fresh));
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &size,
            &entry.body,
            &entry.first_seq,
            &entry.chunks,
            &envelope.id,
            &created,
            &envelope.sender,
            &envelope.recipients,
            &envelope.client,
            &envelope.auth,
            &envelope.body_type,
            &envelope.smtputf8,
            &wire_size,
        ];
        params.extend(record.params());
        self.execute(ENQUEUE, &params).await?;
        Ok(())
    }

    /// The ids of the queued entries, in no order.
    pub async fn queue_ids(&self) -> Result<Vec<String>, DbError> {
        let rows = self.query("SELECT id FROM queue", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// When each of `ids` is due, as `(id, next attempt)`; ids no longer
    /// queued are missing.
    pub async fn next_attempts(&self, ids: &[String]) -> Result<Vec<(String, u64)>, DbError> {
        let rows = self
            .query(
                "SELECT id, next_attempt FROM queue WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), unsigned(r.get(1))))
            .collect())
    }

    /// An entry's envelope and body; `None` if it is not queued.
    pub async fn queued(&self, id: &str) -> Result<Option<Queued>, DbError> {
        let row = self
            .query_opt(
                "SELECT q.created, q.sender, q.recipients, q.client, q.auth, q.body_type, \
                 q.smtputf8, q.wire_size, q.body_id, b.size \
                 FROM queue q JOIN bodies b ON b.id = q.body_id WHERE q.id = $1",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| Queued {
            envelope: QueueEnvelope {
                id: id.to_owned(),
                created: unsigned(r.get(0)),
                sender: r.get(1),
                recipients: r.get(2),
                client: r.get(3),
                auth: r.get(4),
                body_type: r.get(5),
                smtputf8: r.get(6),
                wire_size: r.get::<_, Option<i64>>(7).map(unsigned),
            },
            body: r.get(8),
            size: unsigned(r.get(9)),
        }))
    }

    /// The engine's record of an entry; `None` if it is not queued.
    pub async fn entry_record(&self, id: &str) -> Result<Option<EntryRecord>, DbError> {
        let row = self
            .query_opt(
                "SELECT attempts, next_attempt, last_error, done, warned, bounce \
                 FROM queue WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| EntryRecord {
            attempts: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
            next_attempt: unsigned(r.get(1)),
            last_error: r.get(2),
            done: r.get(3),
            warned: r.get(4),
            bounce: r.get(5),
        }))
    }

    /// Claims entry `id` for `node` under `token`, for `lease`. With
    /// `due_by`, only if its next attempt is due by then (Unix seconds):
    /// another node may have tried it meanwhile and set a later time.
    pub async fn claim_entry(
        &self,
        id: &str,
        node: &str,
        token: &str,
        lease: Duration,
        due_by: Option<u64>,
    ) -> Result<ClaimResult, DbError> {
        let due_by = due_by.map(signed);
        let row = self
            .query_one(
                "WITH entry AS ( \
                     SELECT id FROM queue WHERE id = $1 \
                     AND ($5::bigint IS NULL OR next_attempt <= $5) \
                     AND (claim_token IS NULL OR lease_until < now()) \
                     FOR UPDATE SKIP LOCKED), \
                 claimed AS ( \
                     UPDATE queue q SET claim_node = $2, claim_token = $3, \
                         lease_until = now() + make_interval(secs => $4) \
                     FROM entry WHERE q.id = entry.id RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM claimed), EXISTS (SELECT 1 FROM queue WHERE id = $1)",
                &[&id, &node, &token, &lease.as_secs_f64(), &due_by],
            )
            .await?;
        Ok(match (row.get(0), row.get(1)) {
            (true, _) => ClaimResult::Claimed,
            (false, true) => ClaimResult::Busy,
            (false, false) => ClaimResult::Gone,
        })
    }

    /// Renews the leases of the claims under `tokens`; the tokens whose
    /// claims still stood (the others were taken over, or their entries
    /// are gone).
    pub async fn renew_claims(
        &self,
        tokens: &[String],
        lease: Duration,
    ) -> Result<Vec<String>, DbError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .query(
                "UPDATE queue SET lease_until = now() + make_interval(secs => $2) \
                 WHERE claim_token = ANY($1) RETURNING claim_token",
                &[&tokens, &lease.as_secs_f64()],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Lets go of the claims under `tokens`.
    pub async fn release_claims(&self, tokens: &[String]) -> Result<u64, DbError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        self.execute(
            "UPDATE queue SET claim_node = NULL, claim_token = NULL, lease_until = NULL \
             WHERE claim_token = ANY($1)",
            &[&tokens],
        )
        .await
    }

    /// Records the engine's state of entry `id`, if the claim under
    /// `token` is still the entry's; whether it was written.
    pub async fn save_entry_record(
        &self,
        id: &str,
        token: &str,
        record: &EntryRecord,
    ) -> Result<bool, DbError> {
        let record = RecordColumns::of(record);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &token];
        params.extend(record.params());
        let changed = self
            .execute(
                "UPDATE queue SET attempts = $3, next_attempt = $4, last_error = $5, \
                 done = $6, warned = $7, bounce = $8 \
                 WHERE id = $1 AND claim_token = $2",
                &params,
            )
            .await?;
        Ok(changed == 1)
    }

    /// Removes entry `id` and its body, if the claim under `token` is
    /// still the entry's; whether it was removed.
    pub async fn remove_entry(&self, id: &str, token: &str) -> Result<bool, DbError> {
        let row = self
            .query_one(
                "WITH gone AS ( \
                     DELETE FROM queue WHERE id = $1 AND claim_token = $2 RETURNING body_id), \
                 body AS ( \
                     DELETE FROM bodies b USING gone WHERE b.id = gone.body_id \
                     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = b.id)) \
                 SELECT count(*) FROM gone",
                &[&id, &token],
            )
            .await?;
        Ok(row.get::<_, i64>(0) == 1)
    }

    /// Takes back an entry just queued (the acceptance it was part of
    /// failed), claimed or not.
    pub async fn unqueue(&self, id: &str) -> Result<(), DbError> {
        self.execute(
            "WITH gone AS (DELETE FROM queue WHERE id = $1 RETURNING body_id) \
             DELETE FROM bodies b USING gone WHERE b.id = gone.body_id",
            &[&id],
        )
        .await?;
        Ok(())
    }

    /// `yubin queue flush`: every entry is due now, and every node's
    /// engine is told.
    pub async fn request_queue_flush(&self) -> Result<(), DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE queue SET next_attempt = 0 WHERE next_attempt <> 0",
            &[],
        )
        .await?;
        tx.execute("UPDATE queue_flushes SET requests = requests + 1", &[])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Tells every node's engine to look at the queue again now, without
    /// making anything due (an entry changed by `yubin queue bounce`).
    pub async fn wake_queue(&self) -> Result<(), DbError> {
        self.execute("UPDATE queue_flushes SET requests = requests + 1", &[])
            .await?;
        Ok(())
    }

    /// How many flushes were ever requested (a node acts when it moves).
    pub async fn queue_flushes(&self) -> Result<i64, DbError> {
        let row = self
            .query_one("SELECT requests FROM queue_flushes", &[])
            .await?;
        Ok(row.get(0))
    }
}
