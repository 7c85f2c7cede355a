//! What the delivery engine knows about an entry beyond its envelope:
//! attempts so far, when to try next, the last error, which recipients are
//! finished (delivered or bounced) and whether the sender was warned of the
//! delay. Kept in `state/{id}`, a small text file rewritten atomically (tmp
//! → fsync → rename → fsync the directory), so the entry itself, which may
//! be megabytes, is written once and never rewritten. A plain deferral
//! (only the attempt count, the next time and the last error change) skips
//! the directory fsync: losing it costs an early retry.
//!
//! ```text
//! attempts 3
//! next 1795731574
//! error 451 4.3.0 try later (mx.remote.example)
//! done <bob@remote.example>
//! warned
//! bounce
//! ```
//!
//! A missing state file is a fresh entry. A damaged one is treated as
//! fresh too (it only says what was already done; the worst outcome is a
//! duplicate delivery, never a lost message).

use std::fs;
use std::io;
use std::path::Path;

/// The engine's record of one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryState {
    /// Delivery attempts made.
    pub attempts: u32,
    /// Unix time of the next attempt (0: as soon as possible).
    pub next_attempt: u64,
    /// The last failure, for `yubin queue list` and the bounce.
    pub last_error: String,
    /// Recipients finished: delivered, or bounced.
    pub done: Vec<String>,
    /// The sender was told the message is delayed.
    pub warned: bool,
    /// The postmaster asked for the message to be returned to its sender
    /// (`yubin queue bounce`): the next attempt bounces instead.
    pub bounce_requested: bool,
}

impl EntryState {
    /// Adds what `other`, a record of the same entry, knows: every
    /// recipient it finished, its attempt count, next time and error if
    /// it made more attempts, its delay warning and bounce request. No
    /// finished recipient is forgotten, so none gets the message again.
    pub fn merge(&mut self, other: &EntryState) {
        for recipient in &other.done {
            if !self.is_done(recipient) {
                self.done.push(recipient.clone());
            }
        }
        if other.attempts > self.attempts {
            self.attempts = other.attempts;
            self.next_attempt = other.next_attempt;
            self.last_error = other.last_error.clone();
        }
        self.warned |= other.warned;
        self.bounce_requested |= other.bounce_requested;
    }

    /// Reads `path`; missing or unreadable is a fresh state.
    pub fn load(path: &Path) -> EntryState {
        let Ok(text) = fs::read_to_string(path) else {
            return EntryState::default();
        };
        let mut state = EntryState::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "attempts" => state.attempts = value.parse().unwrap_or(0),
                "next" => state.next_attempt = value.parse().unwrap_or(0),
                "error" => state.last_error = value.to_owned(),
                "done" => {
                    if let Some(address) = value.strip_prefix('<').and_then(|v| v.strip_suffix('>'))
                    {
                        state.done.push(address.to_owned());
                    }
                }
                "warned" => state.warned = true,
                "bounce" => state.bounce_requested = true,
                _ => {}
            }
        }
        state
    }

    /// Writes the state to `path` atomically and durably.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        yubin_durable::replace(path, self.text().as_bytes(), 0o600)
    }

    /// Writes the state to `path` atomically, without the directory fsync:
    /// for a deferral, which changes only the attempt count, the next time
    /// and the last error. After a crash the file is the old state or the
    /// new one, whole; lost, the entry is only tried again sooner.
    pub fn save_retry(&self, path: &Path) -> io::Result<()> {
        yubin_durable::replace_unsynced(path, self.text().as_bytes(), 0o600)
    }

    fn text(&self) -> String {
        let mut text = format!("attempts {}\nnext {}\n", self.attempts, self.next_attempt);
        if !self.last_error.is_empty() {
            text.push_str(&format!("error {}\n", one_line(&self.last_error)));
        }
        for address in &self.done {
            text.push_str(&format!("done <{}>\n", one_line(address)));
        }
        if self.warned {
            text.push_str("warned\n");
        }
        if self.bounce_requested {
            text.push_str("bounce\n");
        }
        text
    }

    /// Whether `address` is finished.
    pub fn is_done(&self, address: &str) -> bool {
        self.done.iter().any(|d| d == address)
    }
}

/// Text fields stay on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record one engine could not write, merged into a newer one
    /// another engine wrote: no finished recipient is forgotten, and the
    /// count never goes back.
    #[test]
    fn merging_keeps_everything_either_record_knows() {
        let stored = EntryState {
            attempts: 3,
            next_attempt: 900,
            last_error: "newer".into(),
            done: vec!["a@x.example".into(), "b@x.example".into()],
            warned: false,
            bounce_requested: false,
        };
        let unsaved = EntryState {
            attempts: 2,
            next_attempt: 500,
            last_error: "older".into(),
            done: vec!["a@x.example".into(), "c@x.example".into()],
            warned: true,
            bounce_requested: false,
        };
        let mut merged = stored.clone();
        merged.merge(&unsaved);
        assert_eq!(merged.done, ["a@x.example", "b@x.example", "c@x.example"]);
        assert_eq!((merged.attempts, merged.next_attempt), (3, 900));
        assert_eq!(merged.last_error, "newer");
        assert!(merged.warned);
        let mut other_way = unsaved.clone();
        other_way.merge(&stored);
        assert_eq!(other_way.attempts, 3);
        assert_eq!(other_way.last_error, "newer");
        assert!(other_way.is_done("b@x.example") && other_way.is_done("c@x.example"));
    }

    #[test]
    fn round_trips_and_survives_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/abc");
        assert_eq!(EntryState::load(&path), EntryState::default());
        let state = EntryState {
            attempts: 3,
            next_attempt: 1_795_731_574,
            last_error: "451 4.3.0 try later\r\ndone <evil@x>".into(),
            done: vec!["bob@remote.example".into()],
            warned: true,
            bounce_requested: true,
        };
        state.save(&path).unwrap();
        let read = EntryState::load(&path);
        assert_eq!(read.attempts, 3);
        assert_eq!(read.next_attempt, 1_795_731_574);
        assert_eq!(read.done, ["bob@remote.example"], "no injected line");
        assert!(read.warned && read.bounce_requested && read.is_done("bob@remote.example"));
        fs::write(&path, b"\xff\xfe garbage").unwrap();
        assert_eq!(EntryState::load(&path), EntryState::default());
        assert_eq!(
            fs::read_dir(dir.path().join("state")).unwrap().count(),
            1,
            "no tmp left"
        );
    }
}
