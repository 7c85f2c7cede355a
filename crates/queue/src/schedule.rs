//! When to try again, when to warn, when to give up: pure functions of the
//! attempts made and the time, so the schedule is tested by moving time.

use std::time::Duration;

/// The retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The wait after the first failed attempt (default 5 minutes).
    pub first_retry: Duration,
    /// The longest wait between attempts (default 1 hour).
    pub max_retry: Duration,
    /// How long a message may wait in all before it bounces (default 5 days).
    pub max_age: Duration,
    /// When to tell the sender the message is delayed (default 4 hours;
    /// zero: never).
    pub delay_warning: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            first_retry: Duration::from_secs(5 * 60),
            max_retry: Duration::from_secs(3600),
            max_age: Duration::from_secs(5 * 86_400),
            delay_warning: Duration::from_secs(4 * 3600),
        }
    }
}

impl Schedule {
    /// The wait after `attempts` failed attempts: `first_retry`, doubling
    /// with each further attempt, never more than `max_retry`.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.first_retry
            .checked_mul(1 << doublings)
            .map_or(self.max_retry, |d| d.min(self.max_retry))
    }

    /// The Unix time of the next attempt after `attempts` failures, the
    /// last one at `now`.
    pub fn next_attempt(&self, attempts: u32, now: u64) -> u64 {
        now.saturating_add(self.retry_delay(attempts).as_secs())
    }

    /// Whether a message queued at `created` has waited too long at `now`.
    pub fn expired(&self, created: u64, now: u64) -> bool {
        now.saturating_sub(created) >= self.max_age.as_secs()
    }

    /// Whether the sender of a message queued at `created` should now be
    /// told it is delayed (once: the caller records that it was).
    pub fn warn_now(&self, created: u64, now: u64, warned: bool) -> bool {
        !warned
            && !self.delay_warning.is_zero()
            && now.saturating_sub(created) >= self.delay_warning.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60;

    #[test]
    fn five_minutes_doubling_to_an_hour() {
        let s = Schedule::default();
        let waits: Vec<u64> = (1..=7)
            .map(|a| s.retry_delay(a).as_secs() / MINUTE)
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(s.retry_delay(0).as_secs(), 5 * MINUTE);
        assert_eq!(s.retry_delay(u32::MAX).as_secs(), 60 * MINUTE);
        assert_eq!(s.next_attempt(2, 1000), 1000 + 10 * MINUTE);
    }

    #[test]
    fn expiry_and_the_delay_warning_move_with_time() {
        let s = Schedule::default();
        let created = 1_000_000;
        assert!(!s.expired(created, created + 5 * 86_400 - 1));
        assert!(s.expired(created, created + 5 * 86_400));
        assert!(!s.warn_now(created, created + 4 * 3600 - 1, false));
        assert!(s.warn_now(created, created + 4 * 3600, false));
        assert!(!s.warn_now(created, created + 4 * 3600, true), "only once");
        let never = Schedule {
            delay_warning: Duration::ZERO,
            ..s
        };
        assert!(!never.warn_now(created, created + 86_400, false));
        // A clock behind the creation time is not an expiry.
        assert!(!s.expired(created, created - 100));
    }
}
