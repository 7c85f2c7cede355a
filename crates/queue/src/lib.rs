//! The outbound queue: mail accepted for remote recipients waits here until
//! it is delivered.
//!
//! Blocking I/O; the server calls it off its async threads.
//!
//! Layout under the queue directory: `tmp/` for entries being written,
//! `active/` for committed ones, `state/` for the delivery engine's record
//! of each ([`state`]), `corrupt/` for damaged files moved aside. While an
//! entry is being delivered, its file in `active/` is locked (flock), so
//! `yubin queue delete` and the engine never work on it at once.
//! An entry is one file: a small text envelope, an empty line, then the
//! message (LF line ends):
//!
//! ```text
//! yubin-queue 1
//! id 19c0b7a4e1d2-0001-8f3a
//! created 1795727974
//! from <sender@example.org>
//! rcpt <user@remote.example>
//! client 192.0.2.7
//! auth pop-before-smtp alice
//!
//! Received: …
//! ```
//!
//! An entry is written to `tmp/`, fsynced, renamed into `active/`, and
//! `active/` fsynced; only then is it queued. A file in `tmp/` after a crash
//! was never acknowledged and is removed at start.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod engine;
pub mod mta_sts;
pub mod schedule;
pub mod state;
pub mod store;
pub mod tls_rpt;

pub use schedule::Schedule;
pub use state::EntryState;
pub use store::{Claim, QueueStore, QueuedEntry, StagedEntry};

const MAGIC: &str = "yubin-queue 1";

/// Errors of the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// An I/O error on a path.
    #[error("{path}: {error}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        error: io::Error,
    },
    /// The store (a database) could not be asked or refused the change;
    /// passing, as far as the queue can tell.
    #[error("{0}")]
    Store(String),
    /// A queue file that does not parse.
    #[error("{path}: damaged queue file: {reason}")]
    Damaged {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl QueueError {
    /// The underlying I/O error, if this is one (to tell a full disk from
    /// other faults).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            QueueError::Io { error, .. } => Some(error),
            QueueError::Damaged { .. } | QueueError::Store(_) => None,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |error| QueueError::Io {
        path: path.to_owned(),
        error,
    }
}

/// The envelope of a queued message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The entry's id (also its file name).
    pub id: String,
    /// When it was queued (Unix seconds).
    pub created: u64,
    /// The reverse-path, `""` for the null sender.
    pub from: String,
    /// The recipients still to deliver to.
    pub recipients: Vec<String>,
    /// The client's address.
    pub client: String,
    /// Why relaying was allowed (`auth alice`, `network`, `pop-before-smtp alice`).
    pub auth: String,
    /// The MAIL `BODY=` value (`7BIT`, `8BITMIME`), empty if not given:
    /// the next hop must be told (RFC 6152 §3).
    pub body: String,
    /// The message was sent with SMTPUTF8 (RFC 6531): the next hop must
    /// support it, or the message cannot go there as it is.
    pub smtputf8: bool,
    /// The message's size on the wire (CRLF line ends), for `SIZE=`; known
    /// when it was queued, so no attempt reads the message just to count.
    /// `None` in entries written without it: then it is counted.
    pub size: Option<u64>,
}

/// A queue directory.
#[derive(Clone, Debug)]
pub struct Queue {
    root: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new queue id: time, process, counter and randomness, hex.
pub fn new_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut random = [0u8; 3];
    // Uniqueness comes from time, pid and counter; the random part only
    // makes ids hard to guess.
    let _ = getrandom::fill(&mut random);
    format!(
        "{:x}{:05x}-{:x}-{:x}-{:02x}{:02x}{:02x}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        random[0],
        random[1],
        random[2]
    )
}

/// A held lock on a queue entry.
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
}

/// Queue ids are file names of our own making: no paths, no dot files.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Text fields must stay on one line of the envelope.
impl Envelope {
    /// The head of a queue file: the envelope's lines and the blank line
    /// before the message. Control characters in a field become `?`, so a
    /// field can never add a line.
    pub fn header(&self) -> String {
        let mut header = format!(
            "{MAGIC}\nid {}\ncreated {}\nfrom <{}>\n",
            one_line(&self.id),
            self.created,
            one_line(&self.from)
        );
        for rcpt in &self.recipients {
            header.push_str(&format!("rcpt <{}>\n", one_line(rcpt)));
        }
        header.push_str(&format!(
            "client {}\nauth {}\n",
            one_line(&self.client),
            one_line(&self.auth)
        ));
        if !self.body.is_empty() {
            header.push_str(&format!("body {}\n", one_line(&self.body)));
        }
        if self.smtputf8 {
            header.push_str("smtputf8\n");
        }
        if let Some(size) = self.size {
            header.push_str(&format!("size {size}\n"));
        }
        header.push('\n');
        header
    }

    /// Reads the head of a queue file ([`Envelope::header`]), leaving
    /// `reader` at the message; `Err` says why it is not one. An error of
    /// the reader itself is `Ok(Err(..))`'s outer error.
    pub fn read_header(reader: &mut impl BufRead) -> io::Result<Result<Envelope, String>> {
        let mut line = String::new();
        let mut envelope = Envelope::default();
        let mut first = true;
        loop {
            line.clear();
            let n = match reader.read_line(&mut line) {
                Ok(n) => n,
                // Not UTF-8: not something we wrote.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Ok(Err("the envelope is not text".into()));
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(Err("ends before the message".into()));
            }
            let text = line.trim_end_matches('\n');
            if first {
                if text != MAGIC {
                    return Ok(Err("not a yubin queue file".into()));
                }
                first = false;
                continue;
            }
            if text.is_empty() {
                break;
            }
            let (key, value) = text.split_once(' ').unwrap_or((text, ""));
            let angle = |v: &str| {
                v.strip_prefix('<')
                    .and_then(|v| v.strip_suffix('>'))
                    .map(str::to_owned)
            };
            match key {
                "id" => envelope.id = value.to_owned(),
                "created" => match value.parse() {
                    Ok(created) => envelope.created = created,
                    Err(_) => return Ok(Err("bad created time".into())),
                },
                "from" => match angle(value) {
                    Some(from) => envelope.from = from,
                    None => return Ok(Err("bad sender".into())),
                },
                "rcpt" => match angle(value) {
                    Some(rcpt) => envelope.recipients.push(rcpt),
                    None => return Ok(Err("bad recipient".into())),
                },
                "client" => envelope.client = value.to_owned(),
                "auth" => envelope.auth = value.to_owned(),
                "body" => envelope.body = value.to_owned(),
                "smtputf8" => envelope.smtputf8 = true,
                "size" => envelope.size = value.parse().ok(),
                _ => {} // later versions may add fields
            }
        }
        if envelope.id.is_empty() || envelope.recipients.is_empty() {
            return Ok(Err("no id or no recipient".into()));
        }
        Ok(Ok(envelope))
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Queue {
    /// The queue in `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Queue {
        Queue { root: root.into() }
    }

    /// The queue's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> Result<PathBuf, QueueError> {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(dir)
    }

    /// Writes an entry to `tmp/` and fsyncs it; [`Staged::commit`] queues it.
    pub fn stage(
        &self,
        envelope: &Envelope,
        write_message: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<Staged, QueueError> {
        let tmp_dir = self.dir("tmp")?;
        let active = self.dir("active")?;
        let file = yubin_durable::Staged::write(tmp_dir.join(&envelope.id), 0o600, |file| {
            file.write_all(envelope.header().as_bytes())?;
            write_message(file)
        })
        .map_err(|e| QueueError::Io {
            path: e.path,
            error: e.error,
        })?;
        Ok(Staged {
            file,
            target: active.join(&envelope.id),
            state_path: self.dir("state")?.join(&envelope.id),
        })
    }

    /// Asks the engine of a running server to try every entry now
    /// (`yubin queue flush`): a marker file it looks for every second.
    pub fn request_flush(&self) -> Result<(), QueueError> {
        fs::create_dir_all(&self.root).map_err(io_at(&self.root))?;
        let path = self.root.join("flush");
        File::create(&path).map(drop).map_err(io_at(&path))
    }

    /// Whether a flush was requested (the request is taken).
    pub fn take_flush_request(&self) -> bool {
        fs::remove_file(self.root.join("flush")).is_ok()
    }

    /// The ids of the committed entries (unordered), without reading them.
    pub fn ids(&self) -> Result<Vec<String>, QueueError> {
        let active = self.root.join("active");
        let read = match fs::read_dir(&active) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(QueueError::Io {
                    path: active,
                    error,
                });
            }
        };
        Ok(read
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| valid_id(name))
            .collect())
    }

    /// Opens an entry for delivery: its envelope, and the file positioned
    /// at the start of the message. A damaged entry is moved to
    /// `corrupt/` and reported.
    pub fn open(&self, id: &str) -> Result<(Envelope, File), QueueError> {
        let path = self.entry_path(id)?;
        let file = File::open(&path).map_err(io_at(&path))?;
        let mut reader = BufReader::new(file);
        let envelope = match parse_envelope(&mut reader, &path) {
            Ok(envelope) => envelope,
            Err(error @ QueueError::Damaged { .. }) => {
                let _ = self.quarantine(&path);
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let start = reader.stream_position().map_err(io_at(&path))?;
        let mut file = reader.into_inner();
        file.seek(SeekFrom::Start(start)).map_err(io_at(&path))?;
        Ok((envelope, file))
    }

    /// Locks an entry against concurrent delivery or removal; `None` if
    /// someone else holds it. The lock goes with the returned value.
    pub fn lock(&self, id: &str) -> Result<Option<EntryLock>, QueueError> {
        let path = self.entry_path(id)?;
        let file = File::open(&path).map_err(io_at(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(EntryLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(errno) => Err(QueueError::Io {
                path,
                error: errno.into(),
            }),
        }
    }

    /// The engine's record of an entry (fresh if none).
    pub fn load_state(&self, id: &str) -> Result<EntryState, QueueError> {
        Ok(EntryState::load(&self.state_path(id)?))
    }

    /// Records the engine's state of an entry, durably.
    pub fn save_state(&self, id: &str, state: &EntryState) -> Result<(), QueueError> {
        let path = self.state_path(id)?;
        state.save(&path).map_err(io_at(&path))
    }

    /// Records a plain deferral of an entry (see [`EntryState::save_retry`]).
    pub fn save_retry(&self, id: &str, state: &EntryState) -> Result<(), QueueError> {
        let path = self.state_path(id)?;
        state.save_retry(&path).map_err(io_at(&path))
    }

    /// Removes a finished entry: the entry first (durably), then its state.
    /// A crash in between leaves a state file without an entry, removed by
    /// [`Queue::clean_tmp`] at the next start.
    pub fn remove(&self, id: &str) -> Result<(), QueueError> {
        let path = self.entry_path(id)?;
        fs::remove_file(&path).map_err(io_at(&path))?;
        let active = self.root.join("active");
        yubin_durable::sync_dir(&active).map_err(io_at(&active))?;
        let _ = fs::remove_file(self.state_path(id)?);
        Ok(())
    }

    fn entry_path(&self, id: &str) -> Result<PathBuf, QueueError> {
        if !valid_id(id) {
            return Err(QueueError::Damaged {
                path: PathBuf::from(id),
                reason: "not a queue id".into(),
            });
        }
        Ok(self.root.join("active").join(id))
    }

    fn state_path(&self, id: &str) -> Result<PathBuf, QueueError> {
        self.entry_path(id)?;
        Ok(self.root.join("state").join(id))
    }

    /// Removes entries left in `tmp/` by a crash (never acknowledged).
    pub fn clean_tmp(&self) -> Result<usize, QueueError> {
        let tmp = self.dir("tmp")?;
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).map_err(io_at(&tmp))?.flatten() {
            if fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        // State files whose entry is gone (a crash during removal), and
        // half-written state files.
        if let Ok(states) = fs::read_dir(self.root.join("state")) {
            for entry in states.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !valid_id(&name) || !self.root.join("active").join(&name).exists() {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(removed)
    }

    fn quarantine(&self, path: &Path) -> Result<(), QueueError> {
        let corrupt = self.dir("corrupt")?;
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        fs::rename(path, corrupt.join(name)).map_err(io_at(path))
    }
}

fn parse_envelope(reader: &mut impl BufRead, path: &Path) -> Result<Envelope, QueueError> {
    match Envelope::read_header(reader) {
        Ok(Ok(envelope)) => Ok(envelope),
        Ok(Err(reason)) => Err(QueueError::Damaged {
            path: path.to_owned(),
            reason,
        }),
        Err(error) => Err(io_at(path)(error)),
    }
}

/// The queue directory is today's [`QueueStore`].
impl QueueStore for Queue {
    fn stage(
        &self,
        envelope: &Envelope,
        write_message: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Box<dyn StagedEntry>, QueueError> {
        let staged = Queue::stage(self, envelope, |file| write_message(file))?;
        Ok(Box::new(staged))
    }

    fn ids(&self) -> Result<Vec<String>, QueueError> {
        Queue::ids(self)
    }

    /// One engine per queue directory: an entry's time is the engine's
    /// own to keep, and `due_by` is not needed.
    fn claim(&self, id: &str, _due_by: Option<u64>) -> Result<Option<Box<dyn Claim>>, QueueError> {
        Ok(self.lock(id)?.map(|lock| Box::new(lock) as Box<dyn Claim>))
    }

    fn open(&self, id: &str) -> Result<(Envelope, Box<dyn Read + Send>), QueueError> {
        let (envelope, file) = Queue::open(self, id)?;
        Ok((envelope, Box::new(file)))
    }

    fn load_state(&self, id: &str) -> Result<EntryState, QueueError> {
        Queue::load_state(self, id)
    }

    fn save_state(&self, id: &str, state: &EntryState) -> Result<(), QueueError> {
        Queue::save_state(self, id, state)
    }

    fn save_retry(&self, id: &str, state: &EntryState) -> Result<(), QueueError> {
        Queue::save_retry(self, id, state)
    }

    fn remove(&self, id: &str) -> Result<(), QueueError> {
        Queue::remove(self, id)
    }

    fn request_flush(&self) -> Result<(), QueueError> {
        Queue::request_flush(self)
    }

    fn take_flush_request(&self) -> bool {
        Queue::take_flush_request(self)
    }

    fn recover(&self) -> Result<usize, QueueError> {
        self.clean_tmp()
    }
}

impl Claim for EntryLock {}

impl StagedEntry for Staged {
    fn commit(self: Box<Self>) -> Result<Box<dyn QueuedEntry>, QueueError> {
        let target = self.target.clone();
        Staged::commit(*self)?;
        Ok(Box::new(Committed { target }))
    }

    /// The record first, durably, then the entry: a crash in between
    /// leaves a record without an entry, which [`Queue::clean_tmp`]
    /// removes at the next start.
    fn commit_with_state(self: Box<Self>, state: &EntryState) -> Result<(), QueueError> {
        state
            .save(&self.state_path)
            .map_err(io_at(&self.state_path))?;
        let state_path = self.state_path.clone();
        if let Err(error) = Staged::commit(*self) {
            let _ = fs::remove_file(&state_path);
            return Err(error);
        }
        Ok(())
    }
}

/// An entry in `active/` that can still be taken back.
struct Committed {
    target: PathBuf,
}

impl QueuedEntry for Committed {
    fn undo(self: Box<Self>) {
        if fs::remove_file(&self.target).is_ok()
            && let Some(active) = self.target.parent()
        {
            let _ = yubin_durable::sync_dir(active);
        }
    }
}

/// An entry in `tmp/`, written and fsynced, waiting to be committed.
/// Dropping it removes it.
#[derive(Debug)]
pub struct Staged {
    file: yubin_durable::Staged,
    target: PathBuf,
    /// Where the entry's delivery record goes.
    state_path: PathBuf,
}

impl Staged {
    /// Queues the entry: renamed into `active/`, `active/` fsynced. Not
    /// durable means not queued: the entry is taken back, the sender
    /// retries.
    pub fn commit(self) -> Result<(), QueueError> {
        self.file
            .rename_to(&self.target)
            .map_err(|e| QueueError::Io {
                path: e.path,
                error: e.error,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry's envelope and its whole message.
    fn read(queue: &Queue, id: &str) -> (Envelope, Vec<u8>) {
        let (envelope, mut file) = Queue::open(queue, id).unwrap();
        let mut message = Vec::new();
        file.read_to_end(&mut message).unwrap();
        (envelope, message)
    }

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            created: 1_795_727_974,
            from: "a@b.example".into(),
            recipients: vec!["x@remote.example".into(), "y@remote.example".into()],
            client: "192.0.2.7".into(),
            auth: "pop-before-smtp alice".into(),
            body: "8BITMIME".into(),
            smtputf8: true,
            size: Some(17),
        }
    }

    #[test]
    fn staged_entries_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path());
        let staged = queue
            .stage(&envelope("one"), |f| f.write_all(b"Subject: x\n\nbody\n"))
            .unwrap();
        assert!(queue.list().unwrap().0.is_empty());
        staged.commit().unwrap();
        let (entries, damaged) = queue.list().unwrap();
        assert!(damaged.is_empty());
        assert_eq!(entries, vec![envelope("one")]);
        let (env, message) = read(&queue, "one");
        assert_eq!(env, envelope("one"));
        assert_eq!(message, b"Subject: x\n\nbody\n");
        // A dropped stage leaves nothing.
        drop(
            queue
                .stage(&envelope("two"), |f| f.write_all(b"x"))
                .unwrap(),
        );
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    /// The queue directory through the seam the engine and the server use.
    #[test]
    fn through_the_store_trait() {
        let dir = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn QueueStore> = std::sync::Arc::new(Queue::new(dir.path()));
        let staged = store
            .stage(&envelope("five"), &mut |out| {
                out.write_all(b"Subject: y\n\nhi\n")
            })
            .unwrap();
        assert!(store.ids().unwrap().is_empty(), "queued before commit");
        let queued = staged.commit().unwrap();
        assert_eq!(store.ids().unwrap(), ["five"]);
        let (opened, mut message) = store.open("five").unwrap();
        assert_eq!(opened.id, "five");
        let mut text = Vec::new();
        message.read_to_end(&mut text).unwrap();
        assert_eq!(text, b"Subject: y\n\nhi\n");

        let claim = store.claim("five", None).unwrap().expect("free");
        assert!(
            store.claim("five", None).unwrap().is_none(),
            "claimed twice"
        );
        drop(claim);
        queued.undo();
        assert!(store.ids().unwrap().is_empty(), "undo left it queued");

        // A crash after staging: recovered at the next start.
        std::mem::forget(
            store
                .stage(&envelope("six"), &mut |out| out.write_all(b"x"))
                .unwrap(),
        );
        assert_eq!(store.recover().unwrap(), 1);
        assert!(!store.take_flush_request());
    }

    #[test]
    fn damaged_files_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path());
        queue
            .stage(&envelope("good"), |f| f.write_all(b"m"))
            .unwrap()
            .commit()
            .unwrap();
        fs::write(
            dir.path().join("active/bad"),
            b"yubin-queue 1\nid bad\nfrom <a@b>\n",
        )
        .unwrap();
        let (entries, damaged) = queue.list().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(damaged.len(), 1);
        assert!(dir.path().join("corrupt/bad").exists());
    }

    #[test]
    fn ids_are_unique_and_fields_stay_on_one_line() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path());
        let mut env = envelope("three");
        env.auth = "auth evil\nrcpt <injected@x>".into();
        queue
            .stage(&env, |f| f.write_all(b"m"))
            .unwrap()
            .commit()
            .unwrap();
        let (read, _) = read(&queue, "three");
        assert_eq!(read.recipients.len(), 2);
    }

    #[test]
    fn open_lock_state_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path());
        queue
            .stage(&envelope("four"), |f| f.write_all(b"Subject: x\n\nbody\n"))
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(queue.ids().unwrap(), ["four"]);
        let (env, mut file) = queue.open("four").unwrap();
        assert_eq!(env.id, "four");
        let mut message = Vec::new();
        file.read_to_end(&mut message).unwrap();
        assert_eq!(message, b"Subject: x\n\nbody\n");

        let lock = queue.lock("four").unwrap().expect("free");
        assert!(queue.lock("four").unwrap().is_none(), "held");
        drop(lock);
        assert!(queue.lock("four").unwrap().is_some());

        let state = EntryState {
            attempts: 1,
            ..EntryState::default()
        };
        queue.save_state("four", &state).unwrap();
        assert_eq!(queue.load_state("four").unwrap(), state);
        queue.remove("four").unwrap();
        assert!(queue.ids().unwrap().is_empty());
        assert_eq!(queue.load_state("four").unwrap(), EntryState::default());
        assert!(queue.open("../etc/passwd").is_err());
        assert!(queue.lock(".hidden").is_err());
    }

    #[test]
    fn orphan_states_are_cleaned_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::new(dir.path());
        queue.save_state("gone", &EntryState::default()).unwrap();
        queue.clean_tmp().unwrap();
        assert_eq!(fs::read_dir(dir.path().join("state")).unwrap().count(), 0);
    }
}
