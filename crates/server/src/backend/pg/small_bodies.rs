//! Bodies of one chunk, read a megabyte at a time: the RETR of a small
//! message reads the small bodies after it too (clients retrieve in
//! order), so the next RETRs cost no round trip, and no blocking thread
//! either when the session reads from async code.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use yubin_pg::Listing;
use yubin_store::OpenError;

use super::body::Bodies;
use crate::backend::mail::{BodyStream, Piece, PieceFuture};

/// Octets of small bodies a session reads ahead of its RETRs, at most.
const READ_AHEAD: u64 = 1 << 20;

/// Messages read ahead at once, at most.
const READ_AHEAD_MESSAGES: usize = 64;

/// A session's small bodies: its listing, the store, and what was read
/// ahead. Clones share what was read ahead.
#[derive(Clone)]
pub(super) struct SmallBodies {
    listing: Arc<Listing>,
    bodies: Bodies,
    /// Read ahead of their RETR, by body.
    ahead: Arc<Mutex<HashMap<i64, Vec<u8>>>>,
}

impl SmallBodies {
    /// The small bodies of `listing`, in `bodies`.
    pub(super) fn new(listing: Arc<Listing>, bodies: Bodies) -> SmallBodies {
        SmallBodies {
            listing,
            bodies,
            ahead: Arc::default(),
        }
    }

    /// Whether message `i`'s body is one chunk (or none).
    pub(super) fn is_small(&self, i: usize) -> bool {
        self.listing
            .get(i)
            .is_some_and(|m| m.size <= self.bodies.chunk_size() as u64)
    }

    /// Message `i`'s body: from what was read ahead, or read now with the
    /// small bodies after it, at most [`READ_AHEAD`] octets of them.
    pub(super) async fn read(&self, i: usize) -> Result<Vec<u8>, OpenError> {
        let Some(message) = self.listing.get(i) else {
            return Err(OpenError::Gone);
        };
        if let Some(body) = crate::lock(&self.ahead).remove(&message.body) {
            return Ok(body);
        }
        let mut wanted = vec![message.body];
        let mut octets = message.size;
        let chunk = self.bodies.chunk_size() as u64;
        for next in self.listing.iter().skip(i + 1).take(READ_AHEAD_MESSAGES) {
            if next.size > chunk || octets + next.size > READ_AHEAD {
                break;
            }
            octets += next.size;
            wanted.push(next.body);
        }
        let mut read = self
            .bodies
            .first_chunks(&wanted)
            .await
            .map_err(|e| OpenError::Io(io::Error::other(e)))?;
        let body = match read.iter().position(|(body, _)| *body == message.body) {
            Some(at) => read.swap_remove(at).1,
            // An empty body has no chunk; any other is gone.
            None if message.size == 0 => Vec::new(),
            None => return Err(OpenError::Gone),
        };
        let mut ahead = crate::lock(&self.ahead);
        ahead.clear();
        ahead.extend(read);
        Ok(body)
    }

    /// Message `i`'s body as a [`BodyStream`] of one piece.
    pub(super) fn stream(&self, i: usize) -> SmallStream {
        SmallStream {
            small: self.clone(),
            index: i,
            done: false,
        }
    }
}

/// A small body for async code: one piece, then the end.
pub(super) struct SmallStream {
    small: SmallBodies,
    index: usize,
    done: bool,
}

impl BodyStream for SmallStream {
    fn next_piece(&mut self) -> PieceFuture<'_> {
        Box::pin(async move {
            if std::mem::replace(&mut self.done, true) {
                return Ok(None);
            }
            let body = self.small.read(self.index).await?;
            Ok((!body.is_empty()).then(|| Box::new(body) as Piece))
        })
    }
}
