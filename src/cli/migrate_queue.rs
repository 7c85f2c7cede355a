//! `yubin migrate` moves the outbound queue too: every entry, with its
//! envelope, message and delivery record (attempts, recipients already
//! done), from the backend's queue to the other's. An entry is committed
//! at the destination before it is removed at the source, so an
//! interrupted run leaves an entry in both places at worst, and the next
//! run finds it at the destination and only removes it at the source.
//! Run it with the servers stopped (on both sides: an engine at the
//! destination could deliver an entry an interrupted run left in both
//! places, and a rerun would copy it again); an entry a running engine at
//! the source holds is left where it is and named.

use std::io;

use yubin_queue::{QueueError, QueueStore};

/// What moving the queue did.
#[derive(Debug, Default)]
pub(super) struct QueueTally {
    /// Entries moved.
    pub moved: usize,
    /// Entries left at the source, and why.
    pub left: Vec<String>,
}

/// Moves every entry of `from` to `to` (blocking: call from a blocking
/// thread). Only a failure to read the source's list stops it; an entry
/// that cannot be moved is left and named.
pub(super) fn move_queue(
    from: &dyn QueueStore,
    to: &dyn QueueStore,
) -> Result<QueueTally, QueueError> {
    let mut tally = QueueTally::default();
    let mut ids = from.ids()?;
    ids.sort();
    for id in ids {
        match move_entry(from, to, &id) {
            Ok(true) => tally.moved += 1,
            Ok(false) => tally.left.push(format!(
                "queue entry {id}: being delivered by a running server; run again once it is stopped"
            )),
            Err(error) => tally.left.push(format!("queue entry {id}: {error}")),
        }
    }
    Ok(tally)
}

/// Moves one entry; `false` if a running engine holds it.
fn move_entry(from: &dyn QueueStore, to: &dyn QueueStore, id: &str) -> Result<bool, QueueError> {
    let Some(claim) = from.claim(id, None)? else {
        return Ok(false);
    };
    let (envelope, mut message) = from.open(id)?;
    let state = from.load_state(id)?;
    // Already there: an earlier run stopped before the removal below.
    if to.open(id).is_err() {
        // With its record in the same commit: an engine at the
        // destination never sees it as fresh, and does not deliver again
        // to the recipients already done.
        to.stage(&envelope, &mut |out| {
            io::copy(&mut message, out).map(|_| ())
        })?
        .commit_with_state(&state)?;
    }
    from.remove(id)?;
    claim.release();
    Ok(true)
}
