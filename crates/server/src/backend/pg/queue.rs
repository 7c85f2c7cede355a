//! The outbound queue in the shared database: every node's SMTP server
//! queues there, and every node's delivery engine works from it. An
//! attempt is made under a claim with a lease this node renews
//! ([`PgQueue::renew_claims`]); a claim whose lease could not be renewed in
//! time is lost, and the attempt under it stops before another node may
//! take the entry over. Duplicates are possible only in RFC 5321 §6.1's
//! window: after the remote server's `250`, before the record of it.
//!
//! The [`QueueStore`] methods run on tokio's blocking pool, as the queue
//! directory's file I/O does; they wait there for the database's answer.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::watch;
use yubin_pg::{BodyStore, ClaimResult, Database, DbError, EntryRecord, NewEntry, QueueEnvelope};
use yubin_queue::{Claim, EntryState, Envelope, QueueError, QueueStore, QueuedEntry, StagedEntry};

use super::batch::Batcher;
use super::body::{Bodies, BodyReader, BodyWriter};

/// How long a claim lasts unless renewed: a node that dies holds its
/// entries this long at most before another node takes them over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// How often this node renews its claims, and looks for claims it must
/// give up.
pub const CLAIM_RENEWAL: Duration = Duration::from_secs(5);

/// How long a renewal may take before it counts as failed.
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(4);

/// The claims this node holds: for each token, its entry, when its lease
/// was last known to stand, and who waits for its loss. A lost claim
/// stays until its holder lets go, so that the holder's writes still
/// name its token (and are refused if the entry was taken over).
#[derive(Default)]
struct HeldClaims {
    claims: Mutex<HashMap<String, Held>>,
}

struct Held {
    entry: String,
    renewed: Instant,
    lost: watch::Sender<bool>,
}

impl Held {
    fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    fn lose(&self) {
        if !self.is_lost() {
            tracing::warn!(entry = %self.entry, "queue claim lost");
            self.lost.send_replace(true);
        }
    }
}

impl HeldClaims {
    fn insert(&self, token: &str, entry: &str, taken: Instant) -> watch::Receiver<bool> {
        let (lost, watched) = watch::channel(false);
        let held = Held {
            entry: entry.to_owned(),
            renewed: taken,
            lost,
        };
        crate::lock(&self.claims).insert(token.to_owned(), held);
        watched
    }

    /// Forgets a claim; whether it was held.
    fn remove(&self, token: &str) -> bool {
        crate::lock(&self.claims).remove(token).is_some()
    }

    /// The token of this node's claim on `entry`, lost or not.
    fn token_of(&self, entry: &str) -> Option<String> {
        crate::lock(&self.claims)
            .iter()
            .find(|(_, held)| held.entry == entry)
            .map(|(token, _)| token.clone())
    }

    /// The tokens of the claims not lost.
    fn standing(&self) -> Vec<String> {
        crate::lock(&self.claims)
            .iter()
            .filter(|(_, held)| !held.is_lost())
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// After a renewal of `asked`, sent at `sent`: those it renewed stand
    /// on; those it did not find were taken over or are gone. `None`: the
    /// database did not answer in time, and nothing is known.
    fn renewed(&self, asked: &[String], sent: Instant, renewed: Option<&[String]>) {
        let Some(renewed) = renewed else {
            return;
        };
        let mut claims = crate::lock(&self.claims);
        for token in asked {
            let Some(held) = claims.get_mut(token) else {
                continue;
            };
            if renewed.contains(token) {
                // The lease now runs from no earlier than `sent`.
                held.renewed = held.renewed.max(sent);
            } else {
                held.lose();
            }
        }
    }

    /// Gives up the claims not renewed for `given_up`: their leases may
    /// run out before a renewal gets through, and another node may take
    /// the entries then.
    fn give_up_stale(&self, given_up: Duration) {
        for held in crate::lock(&self.claims).values() {
            if held.renewed.elapsed() >= given_up {
                held.lose();
            }
        }
    }
}

/// The queue in the `queue` table.
pub struct PgQueue {
    db: Database,
    bodies: Bodies,
    runtime: Handle,
    node: String,
    held: Arc<HeldClaims>,
    lease: Duration,
    releaser: Arc<Batcher<String>>,
    /// The flush requests counted when last looked.
    flushes_seen: AtomicI64,
    /// A flush was requested since the engine last asked.
    flush_pending: AtomicBool,
}

impl PgQueue {
    /// The queue in `db`, for node `node` (the name in its claims);
    /// blocking calls wait on the current runtime.
    pub fn new(db: Database, node: &str) -> PgQueue {
        let bodies: Bodies = Arc::new(db.clone());
        let released = db.clone();
        let releaser = Batcher::start("queue claim release", 1000, move |tokens| {
            let db = released.clone();
            async move { db.release_claims(&tokens).await.map(|_| ()) }
        });
        PgQueue {
            db,
            bodies,
            runtime: Handle::current(),
            node: node.to_owned(),
            held: Arc::new(HeldClaims::default()),
            lease: CLAIM_LEASE,
            releaser: Arc::new(releaser),
            flushes_seen: AtomicI64::new(-1),
            flush_pending: AtomicBool::new(false),
        }
    }

    /// The same with bodies in `bodies` instead of the database's own
    /// table (a store beside it).
    pub fn with_bodies(self, bodies: Arc<dyn BodyStore>) -> PgQueue {
        PgQueue { bodies, ..self }
    }

    /// The same with claims that last `lease` unless renewed (tests).
    pub fn with_lease(self, lease: Duration) -> PgQueue {
        PgQueue { lease, ..self }
    }

    /// Renews the leases of the claims this node holds. A claim another
    /// node took over is lost, and so is one not renewed for half its
    /// lease (the database is out of reach): the attempts under them stop.
    pub async fn renew_claims(&self) {
        let tokens = self.held.standing();
        if !tokens.is_empty() {
            let sent = Instant::now();
            let renewal = self.db.renew_claims(&tokens, self.lease);
            match tokio::time::timeout(RENEWAL_TIMEOUT, renewal).await {
                Ok(Ok(renewed)) => self.held.renewed(&tokens, sent, Some(&renewed)),
                Ok(Err(error)) => {
                    tracing::warn!(%error, claims = tokens.len(), "queue claims not renewed");
                    self.held.renewed(&tokens, sent, None);
                }
                Err(_) => {
                    tracing::warn!(
                        claims = tokens.len(),
                        "queue claims not renewed: the database did not answer in time"
                    );
                    self.held.renewed(&tokens, sent, None);
                }
            }
        }
        self.held.give_up_stale(self.lease / 2);
    }

    /// Looks whether someone asked for a flush (`yubin queue flush`, on
    /// any node) since the last look; the engine learns it through
    /// [`QueueStore::take_flush_request`].
    pub async fn watch_flushes(&self) {
        let Ok(now) = self.db.queue_flushes().await else {
            return;
        };
        let seen = self.flushes_seen.swap(now, Ordering::SeqCst);
        if seen >= 0 && seen != now {
            self.flush_pending.store(true, Ordering::SeqCst);
        }
    }

    fn wait<T>(&self, work: impl Future<Output = Result<T, DbError>>) -> Result<T, QueueError> {
        self.runtime.block_on(work).map_err(store_error)
    }

    /// The token of this node's claim on `id`, if any: every write of the
    /// entry is made under it.
    fn token(&self, id: &str) -> Option<String> {
        self.held.token_of(id)
    }
}

fn store_error(error: DbError) -> QueueError {
    QueueError::Store(error.to_string())
}

fn not_queued(id: &str) -> QueueError {
    QueueError::Io {
        path: id.into(),
        error: io::Error::new(io::ErrorKind::NotFound, "not queued"),
    }
}

fn claim_lapsed(id: &str) -> QueueError {
    QueueError::Store(format!(
        "{id}: not changed: another node took it over, or it is gone"
    ))
}

fn not_claimed(id: &str) -> QueueError {
    QueueError::Store(format!("{id}: not changed: this node holds no claim on it"))
}

fn to_row(envelope: &Envelope) -> QueueEnvelope {
    QueueEnvelope {
        id: envelope.id.clone(),
        created: envelope.created,
        sender: envelope.from.clone(),
        recipients: envelope.recipients.clone(),
        client: envelope.client.clone(),
        auth: envelope.auth.clone(),
        body_type: envelope.body.clone(),
        smtputf8: envelope.smtputf8,
        wire_size: envelope.size,
    }
}

fn from_row(row: QueueEnvelope) -> Envelope {
    Envelope {
        id: row.id,
        created: row.created,
        from: row.sender,
        recipients: row.recipients,
        client: row.client,
        auth: row.auth,
        body: row.body_type,
        smtputf8: row.smtputf8,
        size: row.wire_size,
    }
}

fn to_record(state: &EntryState) -> EntryRecord {
    EntryRecord {
        attempts: state.attempts,
        next_attempt: state.next_attempt,
        last_error: state.last_error.clone(),
        done: state.done.clone(),
        warned: state.warned,
        bounce: state.bounce_requested,
    }
}

fn from_record(record: EntryRecord) -> EntryState {
    EntryState {
        attempts: record.attempts,
        next_attempt: record.next_attempt,
        last_error: record.last_error,
        done: record.done,
        warned: record.warned,
        bounce_requested: record.bounce,
    }
}

impl QueueStore for PgQueue {
    fn stage(
        &self,
        envelope: &Envelope,
        write_message: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Box<dyn StagedEntry>, QueueError> {
        let io_error = |error| QueueError::Io {
            path: envelope.id.clone().into(),
            error,
        };
        let mut writer = CountingWriter {
            inner: BodyWriter::new(&*self.bodies, &self.runtime, 0),
            written: 0,
        };
        write_message(&mut writer).map_err(io_error)?;
        let size = writer.written;
        let body = writer.inner.finish().map_err(io_error)?;
        Ok(Box::new(PgStaged {
            db: self.db.clone(),
            chunk: self.bodies.chunk_size(),
            runtime: self.runtime.clone(),
            envelope: to_row(envelope),
            size,
            started: body.started,
            first_seq: body.first_seq,
            pending: body.pending,
        }))
    }

    fn ids(&self) -> Result<Vec<String>, QueueError> {
        self.wait(self.db.queue_ids())
    }

    fn claim(&self, id: &str, due_by: Option<u64>) -> Result<Option<Box<dyn Claim>>, QueueError> {
        let token = yubin_auth::random::alphanumeric(24);
        let taken = Instant::now();
        match self.wait(
            self.db
                .claim_entry(id, &self.node, &token, self.lease, due_by),
        )? {
            ClaimResult::Claimed => {
                let lost = self.held.insert(&token, id, taken);
                Ok(Some(Box::new(PgClaim {
                    db: self.db.clone(),
                    runtime: self.runtime.clone(),
                    held: self.held.clone(),
                    releaser: self.releaser.clone(),
                    token: Some(token),
                    lost,
                })))
            }
            ClaimResult::Busy => Ok(None),
            ClaimResult::Gone => Err(not_queued(id)),
        }
    }

    fn open(&self, id: &str) -> Result<(Envelope, Box<dyn Read + Send>), QueueError> {
        let queued = self
            .wait(self.db.queued(id))?
            .ok_or_else(|| not_queued(id))?;
        let reader = BodyReader::new(
            self.bodies.clone(),
            self.runtime.clone(),
            queued.body,
            queued.size,
        );
        Ok((from_row(queued.envelope), Box::new(reader)))
    }

    fn load_state(&self, id: &str) -> Result<EntryState, QueueError> {
        let record = self
            .wait(self.db.entry_record(id))?
            .ok_or_else(|| not_queued(id))?;
        Ok(from_record(record))
    }

    fn save_state(&self, id: &str, state: &EntryState) -> Result<(), QueueError> {
        let token = self.token(id).ok_or_else(|| not_claimed(id))?;
        let saved = self.wait(self.db.save_entry_record(id, &token, &to_record(state)))?;
        if saved { Ok(()) } else { Err(claim_lapsed(id)) }
    }

    /// Every change is committed with `synchronous_commit` on: a
    /// deferral costs the same as any other record.
    fn save_retry(&self, id: &str, state: &EntryState) -> Result<(), QueueError> {
        self.save_state(id, state)
    }

    fn remove(&self, id: &str) -> Result<(), QueueError> {
        let token = self.token(id).ok_or_else(|| not_claimed(id))?;
        if self.wait(self.db.remove_entry(id, &token))? {
            // The claim went with the row: nothing to let go.
            self.held.remove(&token);
            Ok(())
        } else {
            Err(claim_lapsed(id))
        }
    }

    fn next_attempts(&self, ids: Vec<String>) -> Vec<(String, u64)> {
        match self.wait(self.db.next_attempts(&ids)) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "queue entries' times not read; trying them now");
                ids.into_iter().map(|id| (id, 0)).collect()
            }
        }
    }

    fn request_flush(&self) -> Result<(), QueueError> {
        self.wait(self.db.request_queue_flush())
    }

    fn wake(&self) -> Result<(), QueueError> {
        self.wait(self.db.wake_queue())
    }

    fn take_flush_request(&self) -> bool {
        self.flush_pending.swap(false, Ordering::SeqCst)
    }

    /// Nothing to do: an entry never committed left at most a body, which
    /// the hourly sweep of orphan bodies removes.
    fn recover(&self) -> Result<usize, QueueError> {
        Ok(0)
    }
}

/// Counts what goes through, for the body's size.
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An entry whose message is written (or held), its queue row not yet.
struct PgStaged {
    db: Database,
    /// The body store's chunk size, for what is left to write.
    chunk: usize,
    runtime: Handle,
    envelope: QueueEnvelope,
    size: u64,
    started: Option<i64>,
    first_seq: i32,
    pending: Vec<u8>,
}

impl PgStaged {
    fn enqueue(&self, record: Option<&EntryRecord>) -> Result<(), QueueError> {
        let entry = NewEntry {
            envelope: &self.envelope,
            size: self.size,
            body: self.started,
            first_seq: self.first_seq,
            chunks: self.pending.chunks(self.chunk).collect(),
            record,
        };
        self.runtime
            .block_on(self.db.enqueue(&entry))
            .map_err(store_error)
    }
}

impl StagedEntry for PgStaged {
    fn commit(self: Box<Self>) -> Result<Box<dyn QueuedEntry>, QueueError> {
        self.enqueue(None)?;
        Ok(Box::new(PgQueued {
            db: self.db.clone(),
            runtime: self.runtime.clone(),
            id: self.envelope.id.clone(),
        }))
    }

    /// The record goes in the entry's own row: one statement.
    fn commit_with_state(self: Box<Self>, state: &EntryState) -> Result<(), QueueError> {
        self.enqueue(Some(&to_record(state)))
    }
}

/// An entry queued that its acceptance may still take back.
struct PgQueued {
    db: Database,
    runtime: Handle,
    id: String,
}

impl QueuedEntry for PgQueued {
    fn undo(self: Box<Self>) {
        if let Err(error) = self.runtime.block_on(self.db.unqueue(&self.id)) {
            tracing::error!(%error, id = %self.id, "a queue entry to take back stays queued");
        }
    }
}

/// A claim on an entry, held until dropped or released.
struct PgClaim {
    db: Database,
    runtime: Handle,
    held: Arc<HeldClaims>,
    releaser: Arc<Batcher<String>>,
    token: Option<String>,
    lost: watch::Receiver<bool>,
}

impl Claim for PgClaim {
    fn lost(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let mut lost = self.lost.clone();
        Box::pin(async move {
            // A sender dropped without a loss (the claim was let go) is
            // not a loss: wait forever then.
            if lost.wait_for(|lost| *lost).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }

    fn release(mut self: Box<Self>) {
        if let Some(token) = self.token.take()
            && self.held.remove(&token)
            && let Err(error) = self.runtime.block_on(self.db.release_claims(&[token]))
        {
            tracing::warn!(%error, "queue claim not let go; it lapses with its lease");
        }
    }
}

impl Drop for PgClaim {
    fn drop(&mut self) {
        if let Some(token) = self.token.take()
            && self.held.remove(&token)
        {
            self.releaser.send(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_taken_while_a_renewal_was_out_is_not_judged_by_it() {
        let held = HeldClaims::default();
        let old = held.insert("old", "e1", Instant::now());
        let asked = held.standing();
        let sent = Instant::now();
        let new = held.insert("new", "e2", Instant::now());
        // The renewal found none of the claims it asked about.
        held.renewed(&asked, sent, Some(&[]));
        assert!(*old.borrow(), "the old claim was taken over");
        assert!(!*new.borrow(), "the new one was not asked about");
        assert_eq!(
            held.token_of("e1").as_deref(),
            Some("old"),
            "kept for its holder's writes, which name it"
        );
        assert_eq!(held.standing(), ["new"]);
    }

    #[test]
    fn a_claim_not_renewed_for_half_its_lease_is_given_up() {
        let held = HeldClaims::default();
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(20))
            .expect("up for 20 s");
        let stale = held.insert("a", "e1", long_ago);
        let fresh = held.insert("b", "e2", Instant::now());
        // The database does not answer.
        held.renewed(&["a".into(), "b".into()], Instant::now(), None);
        held.give_up_stale(CLAIM_LEASE / 2);
        assert!(*stale.borrow(), "given up");
        assert!(!*fresh.borrow());
        // An answer that renews it counts from when it was asked.
        let sent = Instant::now();
        held.renewed(&["b".into()], sent, Some(&["b".into()]));
        held.give_up_stale(CLAIM_LEASE / 2);
        assert!(!*fresh.borrow());
    }
}
