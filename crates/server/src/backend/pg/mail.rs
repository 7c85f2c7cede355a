//! Maildrops in the shared database: a POP3 session on any node locks the
//! maildrop with a leased row, lists it with one query, reads bodies a
//! chunk at a time, and commits UPDATE in one statement. No connection is
//! held for a session: each step borrows one from the pool.
//!
//! A login's lock and listing, UPDATE and a large body's chunks are
//! awaited where the session runs ([`MailStore::open_async`],
//! [`Maildrop::commit_async`], [`Maildrop::stream`]); the other methods
//! run on tokio's blocking pool, as Maildir's file I/O does, and wait
//! there for the database's answer.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use yubin_auth::User;
use yubin_pg::{BodyStore, Database, Listing, Locked, LoginGrant, MaildropLock, NewMessage};
use yubin_pop3_proto::MessageList;
use yubin_store::{CommitReport, LockError, OpenError};

use super::batch::Batcher;
use super::body::{Bodies, BodyReader, BodyWriter, ChunkStream};
use super::listings::Listings;
use super::small_bodies::SmallBodies;
use crate::backend::mail::{
    BodyStream, Delivered, Delivery, GrantWithLock, MailError, MailFuture, MailStore, Maildrop,
    Opened, SizeRule,
};

/// How long a maildrop lock lasts unless renewed. A node that dies holds
/// its locks this long at most, so the next login succeeds within it.
pub const LOCK_LEASE: Duration = Duration::from_secs(20);

/// How often a node renews the leases of the locks it holds.
pub const LOCK_RENEWAL: Duration = Duration::from_secs(5);

/// How long QUIT waits for its lock's release at most.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// The lock sessions this node holds, whose leases it renews.
#[derive(Default)]
struct HeldLocks {
    sessions: Mutex<HashSet<String>>,
}

impl HeldLocks {
    fn insert(&self, session: &str) {
        if let Ok(mut held) = self.sessions.lock() {
            held.insert(session.to_owned());
        }
    }

    fn remove(&self, session: &str) {
        if let Ok(mut held) = self.sessions.lock() {
            held.remove(session);
        }
    }

    fn all(&self) -> Vec<String> {
        self.sessions
            .lock()
            .map(|held| held.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Locks of sessions that ended, let go of together.
type Releaser = Batcher<(i64, String)>;

/// Maildrops in the `messages` table.
pub struct PgMailStore {
    db: Database,
    bodies: Bodies,
    runtime: Handle,
    node: String,
    held: Arc<HeldLocks>,
    lease: Duration,
    releaser: Arc<Releaser>,
    pub(super) listings: Listings,
}

impl PgMailStore {
    /// Maildrops in `db`, as node `node` (the name in its locks and new
    /// UIDLs); blocking calls wait on the current runtime.
    pub fn new(db: Database, node: &str) -> PgMailStore {
        let bodies: Bodies = Arc::new(db.clone());
        // The node's name goes into new UIDLs: printable ASCII of a file
        // name, short enough that a UIDL stays within RFC 1939's 70 octets.
        let node: String = node
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .take(24)
            .collect();
        let released = db.clone();
        let releaser = Batcher::start("maildrop lock release", 1000, move |locks| {
            let db = released.clone();
            async move { db.unlock_maildrops(&locks).await.map(|_| ()) }
        });
        PgMailStore {
            db,
            bodies,
            runtime: Handle::current(),
            node,
            held: Arc::new(HeldLocks::default()),
            lease: LOCK_LEASE,
            releaser: Arc::new(releaser),
            listings: Listings::default(),
        }
    }

    /// The same with bodies in `bodies` instead of the database's own
    /// table (a store beside it).
    pub fn with_bodies(self, bodies: Arc<dyn BodyStore>) -> PgMailStore {
        PgMailStore { bodies, ..self }
    }

    /// The same with locks that last `lease` unless renewed (tests).
    pub fn with_lease(self, lease: Duration) -> PgMailStore {
        PgMailStore { lease, ..self }
    }

    /// Renews the leases of the locks this node holds.
    pub async fn renew_leases(&self) {
        let sessions = self.held.all();
        if let Err(error) = self.db.renew_locks(&sessions, self.lease).await {
            tracing::warn!(%error, sessions = sessions.len(), "maildrop locks not renewed");
        }
    }
}

impl PgMailStore {
    /// [`MailStore::open`], awaited where it is called: a login's lock and
    /// listing need no blocking thread.
    async fn open_now(
        &self,
        user: &User,
        grant: Option<&GrantWithLock>,
    ) -> Result<PgMaildrop, MailError> {
        let session = yubin_auth::random::alphanumeric(24);
        let mut cached = self.listings.key(&user.name);
        let grant = grant.map(|g| LoginGrant {
            client: &g.client,
            user: &user.name,
            seconds: g.seconds,
        });
        let lock = MaildropLock {
            name: &user.name,
            node: &self.node,
            session: &session,
            lease: self.lease,
        };
        let (user_id, listing) = loop {
            let locked = self.db.lock_maildrop(&lock, "", cached, grant).await?;
            let (user_id, key, fresh) = match locked {
                Locked::Taken { user, key, listing } => (user, key, listing),
                Locked::InUse => return Err(MailError::Lock(LockError::InUse)),
                Locked::NoSuchUser => return Err(MailError::NoMaildrop(user.name.clone())),
            };
            match self.listings.settle(&user.name, key, fresh) {
                Some(listing) => break (user_id, listing),
                // The kept listing went meanwhile (another session's took
                // its place): list afresh, under the lock already held
                // (taking it again is this session's own renewal).
                None => cached = None,
            }
        };
        self.held.insert(&session);
        Ok(PgMaildrop {
            db: self.db.clone(),
            bodies: self.bodies.clone(),
            runtime: self.runtime.clone(),
            held: self.held.clone(),
            releaser: self.releaser.clone(),
            user_id,
            session,
            small: SmallBodies::new(listing.clone(), self.bodies.clone()),
            listing,
            released: AtomicBool::new(false),
        })
    }
}

impl MailStore for PgMailStore {
    fn open(&self, user: &User) -> Result<Arc<dyn Maildrop>, MailError> {
        let maildrop = self.runtime.block_on(self.open_now(user, None))?;
        Ok(Arc::new(maildrop))
    }

    fn open_async(
        self: Arc<Self>,
        user: Arc<User>,
        grant: Option<GrantWithLock>,
    ) -> MailFuture<Result<Opened, MailError>> {
        Box::pin(async move {
            let maildrop = self.open_now(&user, grant.as_ref()).await?;
            Ok(Opened {
                maildrop: Arc::new(maildrop),
                granted: grant.is_some(),
            })
        })
    }

    fn stage(
        &self,
        user: &User,
        folder: Option<&str>,
        size: u64,
        wire: u64,
        write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Box<dyn Delivery>, MailError> {
        let mut body = BodyWriter::new(&*self.bodies, &self.runtime, size);
        write(&mut body).map_err(MailError::Write)?;
        let body = body.finish().map_err(MailError::Write)?;
        Ok(Box::new(PgDelivery {
            db: self.db.clone(),
            chunk: self.bodies.chunk_size(),
            runtime: self.runtime.clone(),
            node: self.node.clone(),
            user: user.name.clone(),
            folder: folder.unwrap_or_default().to_owned(),
            size,
            wire,
            started: body.started,
            first_seq: body.first_seq,
            pending: body.pending,
        }))
    }
}

/// A body written (or held), its maildrop row not yet.
struct PgDelivery {
    db: Database,
    /// The body store's chunk size, for what is left to write.
    chunk: usize,
    runtime: Handle,
    node: String,
    user: String,
    folder: String,
    size: u64,
    wire: u64,
    started: Option<i64>,
    first_seq: i32,
    pending: Vec<u8>,
}

impl Delivery for PgDelivery {
    fn commit(self: Box<Self>) -> Result<Box<dyn Delivered>, MailError> {
        let message = NewMessage {
            user: &self.user,
            folder: &self.folder,
            uidl: None,
            node: &self.node,
            size: self.size,
            wire_size: self.wire,
            body: self.started,
            first_seq: self.first_seq,
            chunks: self.pending.chunks(self.chunk).collect(),
            seen: false,
            delivered: None,
        };
        match self.runtime.block_on(self.db.deliver(&message))? {
            Some((id, uidl)) => Ok(Box::new(PgDelivered {
                db: self.db.clone(),
                runtime: self.runtime.clone(),
                id,
                uidl,
            })),
            None => Err(MailError::NoMaildrop(self.user.clone())),
        }
    }
}

/// A message in a maildrop that its acceptance may still take back.
struct PgDelivered {
    db: Database,
    runtime: Handle,
    id: i64,
    uidl: String,
}

impl Delivered for PgDelivered {
    fn undo(self: Box<Self>) {
        if let Err(error) = self.runtime.block_on(self.db.remove_message(self.id)) {
            tracing::error!(%error, uidl = %self.uidl, "a delivery to take back stays in its maildrop");
        }
    }

    fn name(&self) -> String {
        self.uidl.clone()
    }
}

/// A maildrop locked and listed for one session.
struct PgMaildrop {
    db: Database,
    bodies: Bodies,
    runtime: Handle,
    held: Arc<HeldLocks>,
    releaser: Arc<Releaser>,
    user_id: i64,
    session: String,
    listing: Arc<Listing>,
    /// Bodies of one chunk, read ahead of their RETRs.
    small: SmallBodies,
    /// Set once UPDATE released the lock with its commit.
    released: AtomicBool,
}

impl Maildrop for PgMaildrop {
    fn len(&self) -> usize {
        self.listing.len()
    }

    fn size(&self, i: usize) -> u64 {
        self.listing.get(i).map_or(0, |m| m.wire_size)
    }

    fn uid(&self, i: usize) -> Cow<'_, str> {
        Cow::Borrowed(self.listing.get(i).map_or("", |m| m.uidl))
    }

    fn message_list(&self, sizes: &[Option<u64>]) -> MessageList {
        let mut list = MessageList::with_capacity(self.listing.len(), self.listing.uidl_octets());
        for (i, message) in self.listing.iter().enumerate() {
            let size = sizes.get(i).copied().flatten();
            list.push(size.unwrap_or(message.wire_size), message.uidl);
        }
        list
    }

    fn open(&self, i: usize) -> Result<Box<dyn Read + Send>, OpenError> {
        let Some(message) = self.listing.get(i) else {
            return Err(OpenError::Gone);
        };
        if self.small.is_small(i) {
            return self.runtime.block_on(self.small.read(i)).map(|body| {
                let reader: Box<dyn Read + Send> = Box::new(io::Cursor::new(body));
                reader
            });
        }
        let mut reader = BodyReader::new(
            self.bodies.clone(),
            self.runtime.clone(),
            message.body,
            message.size,
        );
        // The first chunk now: a body removed meanwhile is told apart from
        // a failure before the status line goes out.
        if !reader.start().map_err(OpenError::Io)? {
            return Err(OpenError::Gone);
        }
        Ok(Box::new(reader))
    }

    fn stream(&self, i: usize) -> Option<Box<dyn BodyStream>> {
        if self.small.is_small(i) {
            return Some(Box::new(self.small.stream(i)));
        }
        let message = self.listing.get(i)?;
        Some(Box::new(ChunkStream::new(
            self.bodies.clone(),
            message.body,
            message.size,
        )))
    }

    fn commit(&self, delete: &[usize], retrieved: &[usize]) -> CommitReport {
        self.runtime.block_on(self.commit_now(delete, retrieved))
    }

    fn commit_async(
        self: Arc<Self>,
        delete: Vec<usize>,
        retrieved: Vec<usize>,
    ) -> MailFuture<Option<CommitReport>> {
        Box::pin(async move { Some(self.commit_now(&delete, &retrieved).await) })
    }

    fn derived_sizes(&self, rule_name: &str, rule: &SizeRule<'_>) -> Vec<Option<u64>> {
        let ids: Vec<i64> = self.listing.iter().map(|m| m.id).collect();
        let mut known = match self
            .runtime
            .block_on(self.db.derived_sizes(rule_name, &ids))
        {
            Ok(known) => known,
            Err(error) => {
                tracing::warn!(%error, rule = rule_name, "derived sizes not read");
                Default::default()
            }
        };
        let mut computed = Vec::new();
        let sizes = self
            .listing
            .iter()
            .enumerate()
            .map(|(i, message)| {
                if let Some(size) = known.remove(&message.id) {
                    return size;
                }
                let size = self
                    .open(i)
                    .ok()
                    .and_then(|mut body| rule(&mut body, message.wire_size).ok())
                    .flatten();
                computed.push((message.id, size));
                size
            })
            .collect();
        if let Err(error) = self
            .runtime
            .block_on(self.db.store_derived_sizes(rule_name, &computed))
        {
            tracing::warn!(%error, rule = rule_name, "derived sizes not remembered");
        }
        sizes
    }
}

impl PgMaildrop {
    /// [`Maildrop::commit`], awaited where it is called.
    async fn commit_now(&self, delete: &[usize], retrieved: &[usize]) -> CommitReport {
        let ids = |indexes: &[usize]| -> Vec<i64> {
            indexes
                .iter()
                .filter_map(|&i| self.listing.get(i).map(|m| m.id))
                .collect()
        };
        let (delete_ids, seen_ids) = (ids(delete), ids(retrieved));
        if delete_ids.is_empty() && seen_ids.is_empty() {
            // Nothing to change: the lock goes with the others let go at
            // this moment, before QUIT's +OK, so that a client that
            // connects again at once finds its maildrop free.
            if !self.released.swap(true, Ordering::SeqCst) {
                self.held.remove(&self.session);
                let release = self.releaser.write((self.user_id, self.session.clone()));
                // A database slow to answer holds up this QUIT a moment at
                // most; the release is written when it answers.
                match tokio::time::timeout(RELEASE_WAIT, release).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(session = %self.session, "maildrop lock not let go; it lapses with its lease");
                    }
                    Err(_) => {
                        tracing::warn!(session = %self.session, "maildrop lock release is slow; QUIT answered before it");
                    }
                }
            }
            return CommitReport::default();
        }
        let committed = self
            .db
            .commit_update(self.user_id, &self.session, &delete_ids, &seen_ids)
            .await;
        self.released.store(true, Ordering::SeqCst);
        self.held.remove(&self.session);
        match committed {
            Ok(done) if done.lock_held => CommitReport {
                removed: delete.len(),
                not_removed: 0,
                seen_failed: 0,
            },
            Ok(_) => {
                tracing::error!(
                    session = %self.session,
                    "UPDATE not committed: the maildrop lock lapsed and another session took it"
                );
                not_committed(delete, retrieved)
            }
            Err(error) => {
                tracing::error!(%error, "UPDATE not committed");
                // The lock may still be there; the lease lets it go.
                not_committed(delete, retrieved)
            }
        }
    }
}

fn not_committed(delete: &[usize], retrieved: &[usize]) -> CommitReport {
    CommitReport {
        removed: 0,
        not_removed: delete.len(),
        seen_failed: retrieved.len(),
    }
}

impl Drop for PgMaildrop {
    fn drop(&mut self) {
        if self.released.load(Ordering::SeqCst) {
            return;
        }
        // A session that ended without changes: its lock goes now, not
        // when the lease runs out, with the others let go meanwhile.
        self.held.remove(&self.session);
        self.releaser
            .send((self.user_id, std::mem::take(&mut self.session)));
    }
}
