//! Greylisting's memory: which (client network, sender, recipient)
//! triplets have tried before, and which have come back after the delay
//! and may pass from now on. One node keeps them in memory (a restart
//! greylists senders once more); several nodes must share them, or a
//! retry that reaches another node is greylisted again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// One delivery attempt's triplet, as compared: the client's network
/// (`/24` or `/64`, as text), and the envelope addresses in lower case.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Triplet {
    /// The client's network.
    pub network: String,
    /// MAIL FROM (empty: the null sender).
    pub sender: String,
    /// RCPT TO.
    pub recipient: String,
}

/// Whether an attempt may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greylisted {
    /// It has waited (or passed before): accept it.
    Pass,
    /// Too soon: come back in this long.
    Wait(Duration),
}

/// Where triplets are kept.
#[async_trait]
pub trait GreylistStore: Send + Sync {
    /// Records an attempt for `triplet`; whether it may pass.
    async fn attempt(&self, triplet: &Triplet) -> Greylisted;
}

/// How a triplet's life goes.
#[derive(Clone, Copy, Debug)]
pub struct GreylistTimes {
    /// How long a first attempt must wait before a retry passes.
    pub delay: Duration,
    /// How long after the first attempt a retry still counts (later, the
    /// triplet starts over): a sender's queue retries well within it.
    pub retry_window: Duration,
    /// How long a triplet that passed keeps passing after its last
    /// attempt (postgrey's 35 days).
    pub keep: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    first: Instant,
    last: Instant,
    passed: bool,
}

/// Triplets in this process's memory, at most `max` of them.
#[derive(Debug)]
pub struct MemoryGreylist {
    table: Mutex<HashMap<Triplet, Entry>>,
    times: GreylistTimes,
    max: usize,
}

impl MemoryGreylist {
    /// An empty memory with these times, keeping at most `max` triplets.
    pub fn new(times: GreylistTimes, max: usize) -> MemoryGreylist {
        MemoryGreylist {
            table: Mutex::new(HashMap::new()),
            times,
            max,
        }
    }

    /// The decision for `triplet` at `now` (the clock is the caller's, so
    /// that tests can move it).
    pub fn attempt_at(&self, triplet: &Triplet, now: Instant) -> Greylisted {
        let times = self.times;
        let mut table = crate::lock(&self.table);
        if let Some(entry) = table.get_mut(triplet) {
            let since_first = now.saturating_duration_since(entry.first);
            if entry.passed && now.saturating_duration_since(entry.last) <= times.keep {
                entry.last = now;
                return Greylisted::Pass;
            }
            if !entry.passed && since_first >= times.delay && since_first <= times.retry_window {
                entry.passed = true;
                entry.last = now;
                return Greylisted::Pass;
            }
            if !entry.passed && since_first < times.delay {
                entry.last = now;
                return Greylisted::Wait(times.delay - since_first);
            }
            // Expired: it starts over.
            *entry = Entry {
                first: now,
                last: now,
                passed: false,
            };
            return Greylisted::Wait(times.delay);
        }
        if table.len() >= self.max {
            table.retain(|_, e| {
                let idle = now.saturating_duration_since(e.last);
                if e.passed {
                    idle <= times.keep
                } else {
                    idle <= times.retry_window
                }
            });
            if table.len() >= self.max {
                // Full of live triplets (a flood of made-up senders): let
                // mail through rather than forget the ones that waited.
                return Greylisted::Pass;
            }
        }
        table.insert(
            triplet.clone(),
            Entry {
                first: now,
                last: now,
                passed: false,
            },
        );
        Greylisted::Wait(times.delay)
    }
}

#[async_trait]
impl GreylistStore for MemoryGreylist {
    async fn attempt(&self, triplet: &Triplet) -> Greylisted {
        self.attempt_at(triplet, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn times() -> GreylistTimes {
        GreylistTimes {
            delay: 5 * MINUTE,
            retry_window: 24 * 60 * MINUTE,
            keep: 35 * 24 * 60 * MINUTE,
        }
    }

    fn triplet(sender: &str) -> Triplet {
        Triplet {
            network: "192.0.2.0/24".into(),
            sender: sender.into(),
            recipient: "alice@ours.test".into(),
        }
    }

    #[test]
    fn a_first_attempt_waits_a_retry_after_the_delay_passes_and_keeps_passing() {
        let grey = MemoryGreylist::new(times(), 100);
        let t0 = Instant::now();
        let t = triplet("a@example.com");
        assert_eq!(grey.attempt_at(&t, t0), Greylisted::Wait(5 * MINUTE));
        assert_eq!(
            grey.attempt_at(&t, t0 + 2 * MINUTE),
            Greylisted::Wait(3 * MINUTE)
        );
        assert_eq!(grey.attempt_at(&t, t0 + 6 * MINUTE), Greylisted::Pass);
        assert_eq!(
            grey.attempt_at(&t, t0 + 20 * 24 * 60 * MINUTE),
            Greylisted::Pass
        );
        // Another sender from the same network is a new triplet.
        assert_eq!(
            grey.attempt_at(&triplet("b@example.com"), t0 + 6 * MINUTE),
            Greylisted::Wait(5 * MINUTE)
        );
    }

    #[test]
    fn a_retry_after_the_window_starts_over_and_a_full_table_lets_mail_through() {
        let grey = MemoryGreylist::new(times(), 2);
        let t0 = Instant::now();
        let t = triplet("a@example.com");
        assert_eq!(grey.attempt_at(&t, t0), Greylisted::Wait(5 * MINUTE));
        assert_eq!(
            grey.attempt_at(&t, t0 + 25 * 60 * MINUTE),
            Greylisted::Wait(5 * MINUTE)
        );
        assert_eq!(
            grey.attempt_at(&triplet("b@x"), t0),
            Greylisted::Wait(5 * MINUTE)
        );
        // Full of live triplets.
        assert_eq!(
            grey.attempt_at(&triplet("c@x"), t0 + MINUTE),
            Greylisted::Pass
        );
        // Once the others are stale, room is made.
        assert_eq!(
            grey.attempt_at(&triplet("c@x"), t0 + 60 * 24 * 60 * MINUTE),
            Greylisted::Wait(5 * MINUTE)
        );
    }
}
