//! Greylisting's memory: which (client network, sender, recipient)
//! triplets have tried before, and which have come back after the delay
//! and may pass from now on. One node keeps them in memory (a restart
//! greylists senders once more); several nodes must share them, or a
//! retry that reaches another node is greylisted again.

use std::collections::{HashMap, VecDeque};
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

/// What an attempt on a triplet seen before gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// It passed before, recently enough: it passes.
    Pass,
    /// It waited long enough: it passes, from now on.
    PassFirst,
    /// Too soon: this much longer.
    Wait(Duration),
    /// Its time ran out: it starts over (and waits the whole delay).
    StartOver,
}

impl GreylistTimes {
    /// The rule, whatever keeps the triplets: `passed` before, first seen
    /// `since_first` ago, last `since_last` ago.
    pub(crate) fn judge(&self, passed: bool, since_first: Duration, since_last: Duration) -> Step {
        if passed && since_last <= self.keep {
            Step::Pass
        } else if !passed && since_first >= self.delay && since_first <= self.retry_window {
            Step::PassFirst
        } else if !passed && since_first < self.delay {
            Step::Wait(self.delay - since_first)
        } else {
            Step::StartOver
        }
    }
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
    table: Mutex<Table>,
    times: GreylistTimes,
    max: usize,
}

/// The triplets, and those waiting to pass in the order they came: when
/// the table is full the oldest waiting one makes room (a flood of
/// made-up senders pushes out only its own kind, never a triplet that
/// passed, and never turns greylisting off).
#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Triplet, Entry>,
    waiting: VecDeque<(Triplet, Instant)>,
}

impl Table {
    /// Forgets the oldest triplet that is still waiting; whether there
    /// was one.
    fn evict_oldest_waiting(&mut self) -> bool {
        while let Some((triplet, first)) = self.waiting.pop_front() {
            // The queue may name a triplet that has since passed or
            // started over (then a later queue entry stands for it).
            if self
                .entries
                .get(&triplet)
                .is_some_and(|e| !e.passed && e.first == first)
            {
                self.entries.remove(&triplet);
                return true;
            }
        }
        false
    }
}

impl MemoryGreylist {
    /// An empty memory with these times, keeping at most `max` triplets.
    pub fn new(times: GreylistTimes, max: usize) -> MemoryGreylist {
        MemoryGreylist {
            table: Mutex::new(Table::default()),
            times,
            max,
        }
    }

    /// The decision for `triplet` at `now` (the clock is the caller's, so
    /// that tests can move it).
    pub fn attempt_at(&self, triplet: &Triplet, now: Instant) -> Greylisted {
        let times = self.times;
        let mut table = crate::lock(&self.table);
        let table = &mut *table;
        if let Some(entry) = table.entries.get_mut(triplet) {
            let step = times.judge(
                entry.passed,
                now.saturating_duration_since(entry.first),
                now.saturating_duration_since(entry.last),
            );
            entry.last = now;
            return match step {
                Step::Pass => Greylisted::Pass,
                Step::PassFirst => {
                    entry.passed = true;
                    Greylisted::Pass
                }
                Step::Wait(left) => Greylisted::Wait(left),
                Step::StartOver => {
                    entry.first = now;
                    entry.passed = false;
                    table.waiting.push_back((triplet.clone(), now));
                    Greylisted::Wait(times.delay)
                }
            };
        }
        if table.entries.len() >= self.max && !table.evict_oldest_waiting() {
            // Full of triplets that passed: the stale ones go, or, if
            // none is stale, this one passes unrecorded rather than push
            // out mail that already waited.
            table
                .entries
                .retain(|_, e| now.saturating_duration_since(e.last) <= times.keep);
            if table.entries.len() >= self.max {
                return Greylisted::Pass;
            }
        }
        table.entries.insert(
            triplet.clone(),
            Entry {
                first: now,
                last: now,
                passed: false,
            },
        );
        table.waiting.push_back((triplet.clone(), now));
        // The queue holds stale names of triplets that passed; keep it
        // from outgrowing the table.
        if table.waiting.len() > 2 * self.max.max(1) {
            let entries = &table.entries;
            table.waiting.retain(|(t, first)| {
                entries
                    .get(t)
                    .is_some_and(|e| !e.passed && e.first == *first)
            });
        }
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
    fn a_retry_after_the_window_starts_over_and_a_flood_pushes_out_only_waiting_triplets() {
        let grey = MemoryGreylist::new(times(), 2);
        let t0 = Instant::now();
        let t = triplet("a@example.com");
        assert_eq!(grey.attempt_at(&t, t0), Greylisted::Wait(5 * MINUTE));
        assert_eq!(
            grey.attempt_at(&t, t0 + 25 * 60 * MINUTE),
            Greylisted::Wait(5 * MINUTE)
        );
        // a@ passes; b@ waits; the table is full.
        let later = t0 + 31 * 60 * MINUTE;
        assert_eq!(grey.attempt_at(&t, later), Greylisted::Pass);
        assert_eq!(
            grey.attempt_at(&triplet("b@x"), later),
            Greylisted::Wait(5 * MINUTE)
        );
        // A flood of new senders: each pushes out the oldest waiting one,
        // and is greylisted itself; a@, which passed, stays.
        for n in 0..100 {
            assert_eq!(
                grey.attempt_at(&triplet(&format!("flood{n}@x")), later),
                Greylisted::Wait(5 * MINUTE)
            );
        }
        assert_eq!(grey.attempt_at(&t, later + MINUTE), Greylisted::Pass);
        // b@ was pushed out: it starts over.
        assert_eq!(
            grey.attempt_at(&triplet("b@x"), later + 6 * MINUTE),
            Greylisted::Wait(5 * MINUTE)
        );
    }

    #[test]
    fn a_table_full_of_passed_triplets_lets_new_ones_through_unrecorded() {
        let grey = MemoryGreylist::new(times(), 1);
        let t0 = Instant::now();
        let t = triplet("a@example.com");
        assert_eq!(grey.attempt_at(&t, t0), Greylisted::Wait(5 * MINUTE));
        assert_eq!(grey.attempt_at(&t, t0 + 6 * MINUTE), Greylisted::Pass);
        assert_eq!(
            grey.attempt_at(&triplet("b@x"), t0 + 7 * MINUTE),
            Greylisted::Pass
        );
        // Once a@ is stale, room is made.
        assert_eq!(
            grey.attempt_at(&triplet("b@x"), t0 + 60 * 24 * 60 * MINUTE),
            Greylisted::Wait(5 * MINUTE)
        );
    }
}
