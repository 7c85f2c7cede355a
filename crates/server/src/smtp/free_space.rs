//! Free space on the spool's filesystem, checked before a transaction
//! starts: a message that cannot fit is refused at MAIL (`452 4.3.1`)
//! instead of being received in full and refused at the end.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a measurement is trusted: statvfs is cheap, but not free, and
/// free space does not change meaningfully within a second.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Watches the filesystems messages are written to for room for a whole
/// message.
pub(crate) struct StorageGauge {
    dirs: Vec<PathBuf>,
    needed: u64,
    low: AtomicBool,
    /// When last measured. Only one session measures at a time; the others
    /// take the last answer instead of waiting (a hung network filesystem
    /// must not stall every session).
    measured: Mutex<Option<Instant>>,
}

impl StorageGauge {
    /// `needed`: the free bytes below which new transactions are refused,
    /// on any of `dirs`.
    pub(crate) fn new(mut dirs: Vec<PathBuf>, needed: u64) -> StorageGauge {
        dirs.dedup();
        StorageGauge {
            dirs,
            needed,
            low: AtomicBool::new(false),
            measured: Mutex::new(None),
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
        let Ok(mut measured) = self.measured.try_lock() else {
            return self.low.load(Ordering::Relaxed);
        };
        let now = Instant::now();
        if measured.is_some_and(|at| now.duration_since(at) < FRESH_FOR) {
            return self.low.load(Ordering::Relaxed);
        }
        let low = self.dirs.iter().any(|dir| match rustix::fs::statvfs(dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize) < self.needed,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot measure free space");
                false
            }
        });
        let was_low = self.low.swap(low, Ordering::Relaxed);
        if low && !was_low {
            tracing::warn!(
                needed = self.needed,
                "free space low: refusing new mail with 452 4.3.1"
            );
        } else if was_low && !low {
            tracing::info!("free space back: taking mail again");
        }
        *measured = Some(now);
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filesystem_with_room_is_not_low_and_an_impossible_need_is() {
        let dir = tempfile::tempdir().expect("temporary directory");
        assert!(!StorageGauge::new(vec![dir.path().to_owned()], 1).low());
        assert!(StorageGauge::new(vec![dir.path().to_owned()], u64::MAX).low());
    }

    #[test]
    fn the_need_is_one_and_a_half_messages_without_overflow() {
        assert_eq!(StorageGauge::needed_for(100), 150);
        assert_eq!(StorageGauge::needed_for(u64::MAX), u64::MAX);
    }
}
