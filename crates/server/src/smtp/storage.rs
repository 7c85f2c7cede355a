//! Free space on the spool's filesystem, checked before a transaction
//! starts: a message that cannot fit is refused at MAIL (`452 4.3.1`)
//! instead of being received in full and refused at the end.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a measurement is trusted: statvfs is cheap, but not free, and
/// free space does not change meaningfully within a second.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Watches one filesystem for room for a whole message.
pub(crate) struct StorageGauge {
    dir: PathBuf,
    needed: u64,
    last: Mutex<Option<(Instant, bool)>>,
}

impl StorageGauge {
    /// `needed`: the free bytes below which new transactions are refused.
    pub(crate) fn new(dir: PathBuf, needed: u64) -> StorageGauge {
        StorageGauge {
            dir,
            needed,
            last: Mutex::new(None),
        }
    }

    /// The room Postfix asks for: one and a half times the largest
    /// message (its `queue_minfree` rule), so a message that passes the
    /// check also fits while another is being written.
    pub(crate) fn needed_for(max_message_size: u64) -> u64 {
        max_message_size.saturating_add(max_message_size / 2)
    }

    /// Whether free space is under the threshold. A filesystem that cannot
    /// be measured counts as having room: the writes themselves will
    /// report a real failure.
    pub(crate) fn low(&self) -> bool {
        let now = Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, low)) = *last
            && now.duration_since(at) < FRESH_FOR
        {
            return low;
        }
        let low = match rustix::fs::statvfs(&self.dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize) < self.needed,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot measure free space");
                false
            }
        };
        let was_low = last.is_some_and(|(_, low)| low);
        if low && !was_low {
            tracing::warn!(dir = %self.dir.display(), needed = self.needed, "free space low: refusing new mail with 452 4.3.1");
        } else if was_low && !low {
            tracing::info!(dir = %self.dir.display(), "free space back: taking mail again");
        }
        *last = Some((now, low));
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filesystem_with_room_is_not_low_and_an_impossible_need_is() {
        let dir = tempfile::tempdir().expect("temporary directory");
        assert!(!StorageGauge::new(dir.path().to_owned(), 1).low());
        assert!(StorageGauge::new(dir.path().to_owned(), u64::MAX).low());
    }

    #[test]
    fn the_need_is_one_and_a_half_messages_without_overflow() {
        assert_eq!(StorageGauge::needed_for(100), 150);
        assert_eq!(StorageGauge::needed_for(u64::MAX), u64::MAX);
    }
}
