//! How the server tells the delivery engine what it has just queued: the
//! new entries' ids. The engine then need not read the whole queue
//! directory for each message; with a backlog of thousands that reading
//! was most of its work. It still reads the whole directory now and then
//! (`rescan`), for what arrives by other ways.

use std::sync::Mutex;

use tokio::sync::Notify;

/// New queue entries, announced by whoever committed them.
#[derive(Debug, Default)]
pub struct Arrivals {
    ids: Mutex<Vec<String>>,
    notify: Notify,
}

impl Arrivals {
    /// The entry `id` was committed to the queue.
    pub fn arrived(&self, id: &str) {
        super::lock(&self.ids).push(id.to_owned());
        self.notify.notify_one();
    }

    /// Waits until something arrived.
    pub(super) async fn wait(&self) {
        self.notify.notified().await;
    }

    /// The ids announced since the last call.
    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *super::lock(&self.ids))
    }
}
