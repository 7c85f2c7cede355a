//! The seam between the outbound queue and where its entries are kept.
//! The delivery engine, the SMTP server and `yubin queue` see only
//! [`QueueStore`]: the queue directory ([`crate::Queue`]) is one
//! implementation, the shared database (yubin-server's `backend::pg`)
//! the other.
//!
//! Every method may block (file or database I/O): callers run them on
//! tokio's blocking pool. [`QueueStore::take_flush_request`] alone is
//! asked from the engine's own task and must not block.

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;

use crate::{EntryState, Envelope, QueueError};

/// Where queue entries are kept.
pub trait QueueStore: Send + Sync {
    /// Writes an entry (its `envelope`, then what `write_message` writes)
    /// and makes it durable without queueing it: [`StagedEntry::commit`]
    /// does that; dropping the staged entry throws it away.
    fn stage(
        &self,
        envelope: &Envelope,
        write_message: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Box<dyn StagedEntry>, QueueError>;

    /// The ids of the queued entries, in no order, without reading them.
    fn ids(&self) -> Result<Vec<String>, QueueError>;

    /// Claims an entry for one delivery attempt, against every other
    /// attempt and against removal; `None` if it is claimed elsewhere.
    /// With `due_by` (Unix seconds), also `None` unless the entry's next
    /// attempt is due by then: where several engines share the store,
    /// another may have tried it meanwhile. The claim lasts as long as the
    /// returned value.
    fn claim(&self, id: &str, due_by: Option<u64>) -> Result<Option<Box<dyn Claim>>, QueueError>;

    /// An entry's envelope, and its message from the start (LF line ends,
    /// as stored). A damaged entry is set aside and reported.
    fn open(&self, id: &str) -> Result<(Envelope, Box<dyn Read + Send>), QueueError>;

    /// The queued entries' envelopes, oldest first, and the entries that
    /// could not be read (damaged ones are set aside, as by
    /// [`QueueStore::open`]). Entries gone meanwhile are left out.
    fn list(&self) -> Result<(Vec<Envelope>, Vec<QueueError>), QueueError> {
        let mut entries = Vec::new();
        let mut unreadable = Vec::new();
        for id in self.ids()? {
            match self.open(&id) {
                Ok((envelope, _)) => entries.push(envelope),
                // Delivered meanwhile: not an error.
                Err(QueueError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => unreadable.push(error),
            }
        }
        entries.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok((entries, unreadable))
    }

    /// The engine's record of an entry (fresh if none).
    fn load_state(&self, id: &str) -> Result<EntryState, QueueError>;

    /// Records the engine's state of an entry, durably.
    fn save_state(&self, id: &str, state: &EntryState) -> Result<(), QueueError>;

    /// Records a plain deferral (attempts, next time, last error changed;
    /// nothing else), which need not be durable: lost, the entry is only
    /// tried again sooner.
    fn save_retry(&self, id: &str, state: &EntryState) -> Result<(), QueueError>;

    /// Removes a finished entry and its state, durably.
    fn remove(&self, id: &str) -> Result<(), QueueError>;

    /// When each of `ids` is next due (Unix seconds; an entry whose state
    /// cannot be read is due now). One [`QueueStore::load_state`] each,
    /// unless the store can do better.
    fn next_attempts(&self, ids: Vec<String>) -> Vec<(String, u64)> {
        ids.into_iter()
            .map(|id| {
                let next = self.load_state(&id).map_or(0, |s| s.next_attempt);
                (id, next)
            })
            .collect()
    }

    /// Makes every entry due now and asks the running engines to try them
    /// (`yubin queue flush`).
    fn request_flush(&self) -> Result<(), QueueError>;

    /// Asks the running engines to look at every entry again, without
    /// making any due (an entry's record was changed: `yubin queue
    /// bounce`). The directory's one engine takes it as a flush.
    fn wake(&self) -> Result<(), QueueError> {
        self.request_flush()
    }

    /// Whether an administrator asked for every entry to be tried now
    /// (`yubin queue flush`); the request is taken.
    fn take_flush_request(&self) -> bool;

    /// Removes what a crash left half-done: entries never committed (never
    /// acknowledged, so their senders retry) and records without an
    /// entry. Returns how many entries were removed.
    fn recover(&self) -> Result<usize, QueueError>;
}

/// An entry written and durable, not yet queued.
pub trait StagedEntry: Send {
    /// Queues it. The returned handle can take it back, while a later part
    /// of the same acceptance fails.
    fn commit(self: Box<Self>) -> Result<Box<dyn QueuedEntry>, QueueError>;

    /// Queues it with a delivery record already (an entry moved from
    /// another store, `yubin migrate`): no engine ever sees it without
    /// that record, so no finished recipient gets it again.
    fn commit_with_state(self: Box<Self>, state: &EntryState) -> Result<(), QueueError>;
}

/// A committed entry that can still be taken back.
pub trait QueuedEntry: Send {
    /// Removes it again (the acceptance it was part of failed; the sender
    /// will retry).
    fn undo(self: Box<Self>);
}

/// A claim on an entry (see [`QueueStore::claim`]); dropping it lets go.
pub trait Claim: Send + Sync {
    /// Resolves if the claim is lost while held (its lease lapsed: the
    /// store was out of reach, and another engine may take the entry
    /// over); the attempt made under it must stop. A claim that cannot
    /// be lost never resolves.
    fn lost(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::pending())
    }

    /// Lets go now and waits until it is let go (dropping may leave that
    /// to later: a process about to exit calls this).
    fn release(self: Box<Self>) {}
}
