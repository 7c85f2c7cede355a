//! Maildrops: what a POP3 session lists, reads and updates, and what SMTP
//! and `yubin deliver` put in. Every method may block (file or database
//! I/O); the drivers call them on tokio's blocking pool, except the
//! `_async` ones and [`Maildrop::stream`], which a store whose I/O is
//! asynchronous already (the database) answers without a blocking thread.

use std::borrow::Cow;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;

use yubin_auth::User;
use yubin_pop3_proto::MessageList;
use yubin_store::location::LocationError;
use yubin_store::{CommitReport, LockError, OpenError, StoreError};

/// Why a maildrop could not be opened or delivered to.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The user's maildrop has no valid place (a bad `mail_location`).
    #[error("{0}")]
    Location(#[from] LocationError),
    /// Another session has it locked ([`LockError::InUse`]), or the lock
    /// could not be taken.
    #[error("{0}")]
    Lock(#[from] LockError),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The shared database failed or could not be reached.
    #[error("{0}")]
    Database(#[from] yubin_pg::DbError),
    /// The user has no maildrop in the shared database (removed since
    /// they were read).
    #[error("no maildrop for {0:?}")]
    NoMaildrop(String),
    /// Writing the message failed.
    #[error("cannot write the message: {0}")]
    Write(io::Error),
}

impl MailError {
    /// The I/O error underneath, if any (a full disk is told apart by it).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            MailError::Store(error) => error.io_error(),
            MailError::Write(error) => Some(error),
            MailError::Location(_)
            | MailError::Lock(_)
            | MailError::Database(_)
            | MailError::NoMaildrop(_) => None,
        }
    }

    /// Whether trying again cannot help (a maildrop with no valid place,
    /// or one that is not a directory).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MailError::Location(_) | MailError::Store(StoreError::NotADirectory(_))
        )
    }
}

/// A rule for [`Maildrop::derived_sizes`]: given a message and its listed
/// size, the size of what would be sent instead, or `None` for "as
/// listed".
pub type SizeRule<'a> = dyn Fn(&mut dyn Read, u64) -> io::Result<Option<u64>> + Send + Sync + 'a;

/// A POP-before-SMTP grant for a login, in the form the grant store keeps
/// it ([`RelayGrantStore::with_lock`](crate::backend::RelayGrantStore::with_lock)),
/// for a mail store that writes it with the maildrop's lock.
#[derive(Clone, Debug)]
pub struct GrantWithLock {
    /// The client's key in the grant store.
    pub client: String,
    /// How long the grant lasts.
    pub seconds: f64,
}

/// A maildrop opened from async code.
pub struct Opened {
    /// The maildrop, locked and listed.
    pub maildrop: Arc<dyn Maildrop>,
    /// Whether the store wrote the login's grant with the lock.
    pub granted: bool,
}

/// What the `_async` methods return: work that holds no borrow.
pub type MailFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A piece of a message body as the store read it, handed on uncopied.
pub type Piece = Box<dyn AsRef<[u8]> + Send>;

/// What [`BodyStream::next_piece`] returns.
pub type PieceFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Piece>, OpenError>> + Send + 'a>>;

/// A message body read from async code, a piece at a time, from a store
/// whose reads are asynchronous already ([`Maildrop::stream`]). The store
/// may read ahead of what was asked for.
pub trait BodyStream: Send {
    /// The next piece; `None` after the last. [`OpenError::Gone`] comes
    /// only instead of the first piece, so it can still be told to the
    /// client; a body that ends short of its size is an I/O error.
    fn next_piece(&mut self) -> PieceFuture<'_>;
}

/// Where maildrops are kept.
pub trait MailStore: Send + Sync + 'static {
    /// Opens `user`'s maildrop for one POP3 session: creates it if
    /// missing, locks it against every other session, and lists it. A
    /// maildrop locked elsewhere fails at once with [`LockError::InUse`].
    fn open(&self, user: &User) -> Result<Arc<dyn Maildrop>, MailError>;

    /// [`MailStore::open`] from async code: by default on tokio's blocking
    /// pool. A login waits on it, so a store that can answer without two
    /// thread hand-overs does. A store that keeps the POP-before-SMTP
    /// grants too may write `grant` with the lock ([`Opened::granted`]);
    /// by default it does not.
    fn open_async(
        self: Arc<Self>,
        user: Arc<User>,
        grant: Option<GrantWithLock>,
    ) -> MailFuture<Result<Opened, MailError>> {
        let _ = grant;
        Box::pin(async move {
            let maildrop = tokio::task::spawn_blocking(move || self.open(&user))
                .await
                .map_err(|e| MailError::Lock(LockError::Io(io::Error::other(e))))??;
            Ok(Opened {
                maildrop,
                granted: false,
            })
        })
    }

    /// Starts delivering one message of `size` octets (`wire` on the wire,
    /// CRLF line ends) to `user`, into the maildrop POP3 serves or, with
    /// `folder`, into that folder of the user's (which POP3 does not
    /// serve): `write` writes it, and it is made durable but not visible
    /// until [`Delivery::commit`]. Dropping the delivery throws it away.
    fn stage(
        &self,
        user: &User,
        folder: Option<&str>,
        size: u64,
        wire: u64,
        write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Box<dyn Delivery>, MailError>;

    /// Delivers `message` (LF line ends, as stored) to `user` at once:
    /// staged, then committed. Returns its name in the store.
    fn deliver(&self, user: &User, message: &[u8]) -> Result<String, MailError> {
        let size = message.len() as u64;
        let wire = yubin_line::WireSize::of(message);
        let staged = self.stage(user, None, size, wire, &mut |out| out.write_all(message))?;
        Ok(staged.commit()?.name())
    }
}

/// A maildrop opened and locked for one session; dropping it releases the
/// lock. Messages are numbered from 0 in the order they are listed, which
/// never changes while it is open.
pub trait Maildrop: Send + Sync + 'static {
    /// How many messages.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Message `i`'s size as POP3 reports it (CRLF line ends).
    fn size(&self, i: usize) -> u64;
    /// Message `i`'s unique-id, stable across sessions.
    fn uid(&self, i: usize) -> Cow<'_, str>;
    /// Every message's size and unique-id, in order, as a POP3 session
    /// announces them; `sizes[i]`, where given, replaces message `i`'s
    /// size. One call for the whole maildrop: a listing of 100,000
    /// messages is built in the store's own loop, not through a call per
    /// message.
    fn message_list(&self, sizes: &[Option<u64>]) -> MessageList;
    /// Opens message `i` for reading, as stored.
    fn open(&self, i: usize) -> Result<Box<dyn Read + Send>, OpenError>;
    /// Message `i` for reading from async code, when the store reads it
    /// better that way (a body in the database: no blocking thread, and
    /// for a large one no copy before it is encoded); `None`, the
    /// default: [`Maildrop::open`] on tokio's blocking pool.
    fn stream(&self, i: usize) -> Option<Box<dyn BodyStream>> {
        let _ = i;
        None
    }
    /// UPDATE: removes `delete` (durably, before it returns) and notes
    /// `retrieved` as seen.
    fn commit(&self, delete: &[usize], retrieved: &[usize]) -> CommitReport;

    /// UPDATE from async code, then this handle is let go (and with the
    /// last one, the lock): by default [`Maildrop::commit`] on tokio's
    /// blocking pool. `None` if the work was lost (a panic).
    fn commit_async(
        self: Arc<Self>,
        delete: Vec<usize>,
        retrieved: Vec<usize>,
    ) -> MailFuture<Option<CommitReport>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let report = self.commit(&delete, &retrieved);
                // The lock goes here, after the removal is durable.
                drop(self);
                report
            })
            .await
            .ok()
        })
    }
    /// Each message's size by `rule` (named `rule_name`), computed once
    /// per message and remembered by the store.
    fn derived_sizes(&self, rule_name: &str, rule: &SizeRule<'_>) -> Vec<Option<u64>>;
}

/// A message written and durable, not yet visible.
pub trait Delivery: Send {
    /// Makes it visible in the maildrop. The returned handle can take it
    /// back, while a later part of the same acceptance fails.
    fn commit(self: Box<Self>) -> Result<Box<dyn Delivered>, MailError>;
}

/// A committed delivery that can still be taken back.
pub trait Delivered: Send {
    /// Removes the message again (the acceptance it was part of failed,
    /// and the sender will retry).
    fn undo(self: Box<Self>);
    /// Its name in the store, for logs.
    fn name(&self) -> String;
}
