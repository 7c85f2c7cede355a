//! Small writes that many sessions make at once (a lock let go, a grant),
//! gathered into one statement. A writer task takes whatever has queued up
//! since its last statement and writes it all: one session alone is
//! written at once, a thousand at the same moment in a few statements. No
//! write waits for company.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use yubin_pg::DbError;

/// One queued write, and who waits for it (if anyone).
type Queued<T> = (T, Option<oneshot::Sender<bool>>);

/// The queue of one kind of write.
pub struct Batcher<T> {
    queue: mpsc::Sender<Queued<T>>,
    what: &'static str,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the writer: `write` gets at most `most` items at a time.
    /// Call from within the runtime; the writer ends with the last
    /// `Batcher` handle.
    pub fn start<W, F>(what: &'static str, most: usize, write: W) -> Batcher<T>
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<(), DbError>> + Send,
    {
        let (queue, mut queued) = mpsc::channel::<Queued<T>>(most * 64);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(most);
            while queued.recv_many(&mut batch, most).await > 0 {
                let (items, waiting): (Vec<T>, Vec<_>) = batch.drain(..).unzip();
                let done = match write(items).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(%error, "{what} not written");
                        false
                    }
                };
                for waiter in waiting.into_iter().flatten() {
                    let _ = waiter.send(done);
                }
            }
        });
        Batcher { queue, what }
    }

    /// Queues `item` without waiting. When the queue is full (the database
    /// is far behind), it is dropped with a warning: what this carries can
    /// be lost (a lock then waits out its lease).
    pub fn send(&self, item: T) {
        if self.queue.try_send((item, None)).is_err() {
            tracing::warn!("{} dropped: the database is behind", self.what);
        }
    }

    /// Queues `item` and waits until it is written; `false` if it was not.
    pub async fn write(&self, item: T) -> bool {
        let (done, written) = oneshot::channel();
        if self.queue.send((item, Some(done))).await.is_err() {
            return false;
        }
        written.await.unwrap_or(false)
    }
}
