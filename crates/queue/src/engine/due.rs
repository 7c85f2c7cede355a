//! When each queued entry is next due, ordered by time: the engine takes
//! the ready ones and finds the next wake-up without walking every entry,
//! so a backlog of many thousands costs nothing per message.

use std::collections::{BTreeSet, HashMap};

/// Entries waiting for their time (not those being attempted now).
#[derive(Debug, Default)]
pub(super) struct Due {
    order: BTreeSet<(u64, String)>,
    when: HashMap<String, u64>,
}

impl Due {
    /// Sets (or moves) `id` to be due at `when` (Unix seconds).
    pub(super) fn set(&mut self, id: String, when: u64) {
        if let Some(old) = self.when.insert(id.clone(), when) {
            self.order.remove(&(old, id.clone()));
        }
        self.order.insert((when, id));
    }

    /// Whether `id` is waiting.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.when.contains_key(id)
    }

    /// Removes and returns every entry due at `now` or before, earliest
    /// first.
    pub(super) fn take_ready(&mut self, now: u64) -> Vec<String> {
        let mut ready = Vec::new();
        while let Some((when, _)) = self.order.first() {
            if *when > now {
                break;
            }
            if let Some((_, id)) = self.order.pop_first() {
                self.when.remove(&id);
                ready.push(id);
            }
        }
        ready
    }

    /// The earliest time anything is due.
    pub(super) fn next(&self) -> Option<u64> {
        self.order.first().map(|(when, _)| *when)
    }

    /// Makes everything due at once (`yubin queue flush`).
    pub(super) fn all_now(&mut self) {
        let ids: Vec<String> = self.when.keys().cloned().collect();
        for id in ids {
            self.set(id, 0);
        }
    }

    /// Keeps only the entries `keep` says are still queued.
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.when.keys().filter(|id| !keep(id)).cloned().collect();
        for id in gone {
            if let Some(when) = self.when.remove(&id) {
                self.order.remove(&(when, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_entries_come_out_in_time_order_once() {
        let mut due = Due::default();
        due.set("c".into(), 30);
        due.set("a".into(), 10);
        due.set("b".into(), 20);
        due.set("c".into(), 5); // moved earlier
        assert_eq!(due.next(), Some(5));
        assert_eq!(due.take_ready(15), ["c", "a"]);
        assert!(!due.contains("a") && due.contains("b"));
        assert_eq!(due.take_ready(15), Vec::<String>::new());
        assert_eq!(due.next(), Some(20));
        due.set("d".into(), 100);
        due.all_now();
        assert_eq!(due.next(), Some(0));
        due.retain(|id| id != "b");
        assert!(!due.contains("b") && due.contains("d"));
        assert_eq!(due.take_ready(0), ["d"]);
        assert_eq!(due.next(), None);
    }
}
