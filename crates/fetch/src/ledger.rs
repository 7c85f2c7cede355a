//! The UIDL ledger: which messages of one account have been fetched, and
//! when. It is what lets `yubin fetch` take only new mail, keep mail on
//! the server for N days, and delete only what it has delivered.
//!
//! Two files per account in the state directory:
//! - `NAME.ledger`, the snapshot: a header line, `# generation N`, one `SECS KIND SIZE KEY`
//!   line per message (SECS: when it was first fetched; KIND: `F` fetched
//!   whole, `H` headers only, `K` fetched but to be kept on the server;
//!   SIZE: its size in the server's LIST), and an `# end COUNT` line, so a truncated file is known
//!   to be damaged. Written whole: temporary file, fsync, rename, fsync of
//!   the directory.
//! - `NAME.journal`, the records made since the last snapshot (its first
//!   line names the snapshot's generation; a journal of an older
//!   generation is left over from a crash after the snapshot replaced it,
//!   and is ignored), one line
//!   each, appended and fsynced one by one: `KIND SECS SIZE KEY CHECK`, where
//!   CHECK is the start of a SHA-256 of the rest. A crash can tear only the
//!   last line; a torn last line is ignored (its message was delivered but
//!   not recorded: the one duplicate the design allows). A bad line
//!   anywhere else means the ledger is damaged.
//!
//! Keys are UIDL unique-ids (printable ASCII, no spaces), or `hdr:` and a
//! digest of the headers for servers without usable UIDs.
//!
//! `NAME.lock` holds the account's lock, and once a snapshot has been
//! written it says so: a lock file that says so next to no snapshot and no
//! journal means the ledger was lost, not that this is the first run.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest;
use yubin_durable::Journal;

const HEADER: &str = "# yubin fetch ledger 1";

/// What the lock file says once a snapshot exists.
const WRITTEN: &str = "ledger written\n";

/// How much of a message was delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Delivered whole: may be deleted from the server.
    Whole,
    /// Only its headers were delivered (it was over `max_size`): never
    /// deleted on the strength of this entry, fetched whole once allowed.
    HeadersOnly,
    /// Delivered, but to stay on the server (it arrived shorter than LIST
    /// said, so the server's copy may be the only whole one).
    Kept,
    /// Not delivered: retrieving it broke the session (the server sent
    /// far more than LIST said). Left on the server and passed over, so
    /// it does not stop every later run at the same place.
    Skipped,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Whole => 'F',
            Kind::HeadersOnly => 'H',
            Kind::Kept => 'K',
            Kind::Skipped => 'S',
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        match text {
            "F" => Some(Kind::Whole),
            "H" => Some(Kind::HeadersOnly),
            "K" => Some(Kind::Kept),
            "S" => Some(Kind::Skipped),
            _ => None,
        }
    }
}

/// What the ledger knows of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When it was first fetched (Unix seconds).
    pub first_fetched: u64,
    /// What was delivered.
    pub kind: Kind,
    /// Its size in LIST when it was fetched: a message with the same
    /// unique-id and another size is not the same message (a server that
    /// reuses ids), and is never deleted on the strength of this entry.
    pub size: u64,
}

/// Why the ledger cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage(pub String);

/// An account's ledger, open for recording.
#[derive(Debug)]
pub struct Ledger {
    snapshot: PathBuf,
    journal_path: PathBuf,
    journal: Option<Journal>,
    entries: HashMap<String, Entry>,
    damage: Option<Damage>,
    /// The snapshot's generation; the journal belongs to it.
    generation: u64,
    /// The snapshot on disk no longer says what the ledger knows.
    changed: bool,
    /// Held while the ledger is open: one run per account at a time.
    lock: File,
}

/// Why a ledger could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another run holds the account's lock.
    #[error("another yubin fetch is running for this account ({0} is locked)")]
    Busy(PathBuf),
    /// The files could not be read or created.
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
}

impl Ledger {
    /// Opens the ledger `name` in `dir` (created if missing). A missing
    /// ledger is an empty one; a damaged one loads what it can and
    /// reports the damage in [`Ledger::damage`].
    pub fn open(dir: &Path, name: &str) -> Result<Ledger, OpenError> {
        let io_error = |error| OpenError::Io(dir.to_owned(), error);
        fs::create_dir_all(dir).map_err(io_error)?;
        let lock_path = dir.join(format!("{name}.lock"));
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(OpenError::Busy(lock_path));
        }
        Self::load(dir, name, lock).map_err(io_error)
    }

    fn load(dir: &Path, name: &str, lock: File) -> io::Result<Ledger> {
        let snapshot = dir.join(format!("{name}.ledger"));
        let journal_path = dir.join(format!("{name}.journal"));
        // Snapshots half-written by a crash (we hold the lock: no other
        // writer's file can be among them).
        yubin_durable::remove_leftovers(&snapshot)?;
        let contents = read_contents(
            read_if_present(&snapshot)?.as_deref(),
            read_if_present(&journal_path)?.as_deref(),
        );
        let Contents {
            entries,
            generation,
            ..
        } = contents;
        let mut damage = contents
            .snapshot_damage
            .map(|reason| Damage(format!("{}: {reason}", snapshot.display())));
        if let Some(reason) = contents.journal_damage {
            damage.get_or_insert(Damage(format!("{}: {reason}", journal_path.display())));
        }
        if contents.journal_stale {
            fs::remove_file(&journal_path)?;
        } else if let Some(len) = contents.journal_torn_at {
            // Cut the torn record off, so the next one starts on a line of
            // its own.
            OpenOptions::new()
                .write(true)
                .open(&journal_path)?
                .set_len(len)?;
        }
        let mut lock_text = String::new();
        let _ = io::Read::read_to_string(&mut &lock, &mut lock_text);
        if damage.is_none() && lock_text == WRITTEN && !snapshot.exists() {
            damage = Some(Damage(format!(
                "{} is missing, though this account has been fetched before",
                snapshot.display()
            )));
        }
        if let Some(Damage(reason)) = &damage {
            // Keep the evidence; the next snapshot replaces the files.
            let stamp = now_secs();
            let kept = dir.join(format!("{name}.damaged-{stamp}"));
            let _ = fs::copy(&snapshot, &kept);
            let _ = fs::copy(
                &journal_path,
                dir.join(format!("{name}.damaged-{stamp}.journal")),
            );
            tracing::warn!(%reason, kept = %kept.display(), "the fetch ledger is damaged");
        }
        // A snapshot is written only when it would differ from the one on
        // disk (a journal to fold in, damage to repair, the lock's marker
        // missing), or when the run records or forgets something.
        let stale_snapshot = damage.is_some()
            || journal_path.exists()
            || (snapshot.exists() && lock_text != WRITTEN);
        Ok(Ledger {
            snapshot,
            journal_path,
            journal: None,
            entries,
            damage,
            generation,
            changed: stale_snapshot,
            lock,
        })
    }

    /// Why the ledger is not to be trusted this run, if it is not.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// What is known about `key`.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.entries.get(key).copied()
    }

    /// Whether any entry is keyed by a UIDL (not a header digest).
    pub fn has_unique_ids(&self) -> bool {
        self.entries.keys().any(|key| !key.starts_with("hdr:"))
    }

    /// How many messages the ledger knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ledger knows no message.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that `key` (of LIST size `size`) was delivered, durably,
    /// at `now`, as much as `kind` says. Returns once the record is on disk.
    pub fn record(&mut self, key: &str, kind: Kind, size: u64, now: u64) -> io::Result<()> {
        // Another size is another message under a reused id: its own date.
        let first = self
            .entries
            .get(key)
            .filter(|e| e.size == size)
            .map_or(now, |e| e.first_fetched);
        let entry = Entry {
            first_fetched: first,
            kind,
            size,
        };
        self.append(key, entry)?;
        self.entries.insert(key.to_owned(), entry);
        self.changed = true;
        Ok(())
    }

    /// Forgets `key` (the server has confirmed its removal). Takes effect
    /// at the next [`Ledger::compact`]; if that never comes, the key stays,
    /// which only means a DELE is tried again.
    pub fn forget(&mut self, key: &str) {
        self.changed |= self.entries.remove(key).is_some();
    }

    /// Writes a fresh snapshot and empties the journal, if anything changed
    /// since the snapshot on disk. With `present`, entries whose key is not
    /// in it are dropped (the server no longer has those messages). The
    /// damage, if any, is repaired by this.
    pub fn compact(&mut self, present: Option<&dyn Fn(&str) -> bool>) -> io::Result<()> {
        if let Some(present) = present {
            let before = self.entries.len();
            self.entries.retain(|key, _| present(key));
            self.changed |= self.entries.len() != before;
        }
        if !self.changed {
            // The snapshot on disk says all of it: no rewrite, no fsyncs.
            return Ok(());
        }
        let generation = self.generation + 1;
        let text = snapshot_text(generation, &self.entries);
        yubin_durable::replace(&self.snapshot, text.as_bytes(), 0o600)?;
        // The snapshot holds everything now. A crash before the journal is
        // gone leaves a journal of the old generation, which is ignored
        // (replayed, it would bring back keys forgotten since).
        self.generation = generation;
        self.journal = None;
        match fs::remove_file(&self.journal_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.damage = None;
        self.changed = false;
        if fs::read_to_string(self.snapshot.with_extension("lock"))
            .ok()
            .as_deref()
            != Some(WRITTEN)
        {
            use std::os::unix::fs::FileExt;
            self.lock.set_len(0)?;
            self.lock.write_all_at(WRITTEN.as_bytes(), 0)?;
        }
        Ok(())
    }

    fn append(&mut self, key: &str, entry: Entry) -> io::Result<()> {
        if self.journal.is_none() {
            let header = journal_header(self.generation);
            self.journal = Some(Journal::open(&self.journal_path, 0o600, header.as_bytes())?);
        }
        let line = journal_record(key, &entry);
        let Some(journal) = self.journal.as_mut() else {
            return Err(io::Error::other("journal not open"));
        };
        journal.append(line.as_bytes())
    }
}

/// A file's contents; `None` if it does not exist.
fn read_if_present(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a ledger's two files say, read from memory ([`read_contents`]).
#[derive(Debug, Default)]
pub struct Contents {
    /// Every message known, from the snapshot and the journal.
    pub entries: HashMap<String, Entry>,
    /// The snapshot's generation (0 without one).
    pub generation: u64,
    /// Why the snapshot cannot be trusted, if it cannot.
    pub snapshot_damage: Option<String>,
    /// Why the journal cannot be trusted (a bad record before its last).
    pub journal_damage: Option<String>,
    /// Where the journal's whole records end, when a torn one follows.
    pub journal_torn_at: Option<u64>,
    /// The journal belongs to an older snapshot and is to be removed.
    pub journal_stale: bool,
}

/// Reads a snapshot and a journal (either may be missing), as
/// [`Ledger::open`] does, without touching the disk: what a damaged file
/// still says is kept, and the damage is reported. A torn last journal
/// record is never taken for a record.
pub fn read_contents(snapshot: Option<&[u8]>, journal: Option<&[u8]>) -> Contents {
    let mut contents = Contents::default();
    if let Some(snapshot) = snapshot {
        match read_snapshot(snapshot, &mut contents.entries) {
            Ok(generation) => contents.generation = generation,
            Err(reason) => contents.snapshot_damage = Some(reason),
        }
    }
    if let Some(journal) = journal {
        let replayed = replay_journal(journal, contents.generation, &mut contents.entries);
        contents.journal_damage = replayed.verdict.err();
        contents.journal_torn_at = replayed.torn_at;
        contents.journal_stale = replayed.stale;
    }
    contents
}

/// A snapshot of `entries` as generation `generation` (sorted by key).
pub fn snapshot_text(generation: u64, entries: &HashMap<String, Entry>) -> String {
    let mut keys: Vec<&String> = entries.keys().collect();
    keys.sort();
    let mut text = String::with_capacity(64 * keys.len() + 64);
    text.push_str(HEADER);
    text.push_str(&format!("\n# generation {generation}\n"));
    for key in &keys {
        let e = entries[*key];
        let kind = e.kind.letter();
        text.push_str(&format!("{} {kind} {} {key}\n", e.first_fetched, e.size));
    }
    text.push_str(&format!("# end {}\n", keys.len()));
    text
}

/// A journal's first line: the generation of the snapshot it follows.
pub fn journal_header(generation: u64) -> String {
    format!("# generation {generation}\n")
}

/// One journal record, its check included, with its line end.
pub fn journal_record(key: &str, entry: &Entry) -> String {
    let body = format!(
        "{} {} {} {key}",
        entry.kind.letter(),
        entry.first_fetched,
        entry.size
    );
    format!("{body} {}\n", check(&body))
}

/// The first 8 hex digits of SHA-256: enough to tell a torn line.
fn check(body: &str) -> String {
    let digest = sha2::Sha256::digest(body.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a snapshot into `entries` and returns its generation; `Err(reason)`
/// if it is damaged (what was read before the damage is kept).
fn read_snapshot(data: &[u8], entries: &mut HashMap<String, Entry>) -> Result<u64, String> {
    // Lines as a line reader gives them: no empty piece after a final LF.
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let mut lines = data.split(|&b| b == b'\n');
    match lines.next() {
        Some(line) if line == HEADER.as_bytes() => {}
        _ => return Err("no ledger header".into()),
    }
    let generation = match lines.next() {
        Some(line) => match parse_generation(line) {
            Some(g) => g,
            None => return Err("no generation line".into()),
        },
        None => return Err("truncated (no generation line)".into()),
    };
    // `number` counts the entries read so far (every line before the end
    // line is one, or the file is damaged).
    for (number, line) in lines.enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(format!("line {}: not text", number + 2));
        };
        if let Some(end) = line.strip_prefix("# end ") {
            return if end.parse() == Ok(number) {
                Ok(generation)
            } else {
                Err(format!("end line says {end} entries, found {number}"))
            };
        }
        let mut parts = line.splitn(4, ' ');
        let (Some(secs), Some(kind), Some(size), Some(key)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("line {}: malformed", number + 2));
        };
        let (Ok(first_fetched), Some(kind), Ok(size)) =
            (secs.parse(), Kind::parse(kind), size.parse())
        else {
            return Err(format!("line {}: malformed", number + 2));
        };
        if !valid_key(key) {
            return Err(format!("line {}: malformed key", number + 2));
        }
        entries.insert(
            key.to_owned(),
            Entry {
                first_fetched,
                kind,
                size,
            },
        );
    }
    Err("truncated (no end line)".into())
}

/// What replaying a journal found.
struct Replayed {
    /// `Err(reason)` if a record other than a torn last one is bad (the
    /// good ones are replayed all the same).
    verdict: Result<(), String>,
    /// The length up to the end of the last whole line, when a torn record
    /// follows it.
    torn_at: Option<u64>,
    /// The journal belongs to an older snapshot: remove it.
    stale: bool,
}

/// Replays a journal of snapshot generation `generation` into `entries`;
/// a journal of an older generation is ignored.
fn replay_journal(data: &[u8], generation: u64, entries: &mut HashMap<String, Entry>) -> Replayed {
    let whole = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn_at = (whole < data.len()).then_some(whole as u64);
    if torn_at.is_some() {
        tracing::warn!("the fetch journal ends in a torn record (a crash while writing); ignored");
    }
    let mut lines = data[..whole].split(|&b| b == b'\n');
    lines.next_back(); // the empty piece after the last LF
    let journal_generation = match lines.next() {
        None => {
            return Replayed {
                verdict: Ok(()),
                torn_at,
                stale: false,
            };
        }
        Some(first) => parse_generation(first),
    };
    match journal_generation {
        Some(g) if g == generation => {}
        Some(g) if g < generation => {
            tracing::info!(
                journal = g,
                snapshot = generation,
                "ignoring a journal the snapshot replaced"
            );
            return Replayed {
                verdict: Ok(()),
                torn_at: None,
                stale: true,
            };
        }
        _ => {
            return Replayed {
                verdict: Err("the journal does not belong to the snapshot".into()),
                torn_at,
                stale: false,
            };
        }
    }
    let lines: Vec<&[u8]> = lines.collect();
    let last = lines.len();
    let mut verdict = Ok(());
    for (index, line) in lines.into_iter().enumerate() {
        match parse_record(line) {
            Some((key, record)) => {
                let entry = entries.entry(key.to_owned()).or_insert(record);
                // The latest record says what was delivered last; the
                // first says when (for the same message: the same size).
                if entry.size == record.size {
                    entry.first_fetched = entry.first_fetched.min(record.first_fetched);
                } else {
                    entry.first_fetched = record.first_fetched;
                }
                entry.kind = record.kind;
                entry.size = record.size;
            }
            // A complete last line that fails its check: torn as well
            // (the length reached the disk before the data).
            None if index + 1 == last && torn_at.is_none() => {
                tracing::warn!("the fetch journal's last record is incomplete; ignored");
            }
            // Keep reading: what can be read still counts as fetched.
            None => {
                if verdict.is_ok() {
                    verdict = Err(format!("record {} is damaged", index + 1));
                }
            }
        }
    }
    Replayed {
        verdict,
        torn_at,
        stale: false,
    }
}

/// `# generation N`
fn parse_generation(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line)
        .ok()?
        .strip_prefix("# generation ")?
        .parse()
        .ok()
}

fn parse_record(line: &[u8]) -> Option<(&str, Entry)> {
    let line = std::str::from_utf8(line).ok()?;
    let (body, sum) = line.rsplit_once(' ')?;
    if check(body) != sum {
        return None;
    }
    let mut parts = body.splitn(4, ' ');
    let kind = Kind::parse(parts.next()?)?;
    let first_fetched = parts.next()?.parse().ok()?;
    let size = parts.next()?.parse().ok()?;
    let key = parts.next()?;
    let entry = Entry {
        first_fetched,
        kind,
        size,
    };
    valid_key(key).then_some((key, entry))
}

/// Keys are what UIDL allows (RFC 1939 §7) plus the `hdr:` digests.
pub fn valid_key(key: &str) -> bool {
    (1..=80).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The current time in Unix seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_ledger_is_not_a_first_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), "a").unwrap();
        ledger.record("one", Kind::Whole, 1, 1).unwrap();
        drop(ledger);
        // Never compacted: a crashed first run is still a first run.
        fs::remove_file(dir.path().join("a.journal")).unwrap();
        let mut ledger = Ledger::open(dir.path(), "a").unwrap();
        assert!(ledger.damage().is_none());
        ledger.record("one", Kind::Whole, 1, 1).unwrap();
        ledger.compact(None).unwrap();
        drop(ledger);
        fs::remove_file(dir.path().join("a.ledger")).unwrap();
        let ledger = Ledger::open(dir.path(), "a").unwrap();
        assert!(
            ledger.damage().unwrap().0.contains("missing"),
            "{:?}",
            ledger.damage()
        );
    }

    #[test]
    fn one_run_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ledger::open(dir.path(), "a").unwrap();
        assert!(matches!(
            Ledger::open(dir.path(), "a"),
            Err(OpenError::Busy(_))
        ));
        drop(first);
        Ledger::open(dir.path(), "a").unwrap();
    }

    #[test]
    fn records_survive_reopening_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), "acct").unwrap();
        assert!(ledger.is_empty() && ledger.damage().is_none());
        ledger.record("uid-1", Kind::Whole, 10, 100).unwrap();
        ledger.record("uid-2", Kind::Whole, 20, 200).unwrap();
        ledger.record("uid-1", Kind::Kept, 10, 300).unwrap();
        drop(ledger);
        // Not compacted: everything comes from the journal.
        let mut ledger = Ledger::open(dir.path(), "acct").unwrap();
        assert_eq!(
            ledger.get("uid-1"),
            Some(Entry {
                first_fetched: 100,
                kind: Kind::Kept,
                size: 10
            })
        );
        assert_eq!(ledger.get("uid-2").unwrap().first_fetched, 200);
        ledger.compact(Some(&|key: &str| key != "uid-1")).unwrap();
        assert!(!dir.path().join("acct.journal").exists());
        drop(ledger);
        let ledger = Ledger::open(dir.path(), "acct").unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger.get("uid-2").unwrap().first_fetched, 200);
    }

    #[test]
    fn a_torn_last_record_is_ignored_but_other_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), "a").unwrap();
        ledger.record("one", Kind::Whole, 1, 1).unwrap();
        ledger.record("two", Kind::Whole, 2, 2).unwrap();
        drop(ledger);
        let journal = dir.path().join("a.journal");
        let mut data = fs::read(&journal).unwrap();
        data.extend_from_slice(b"F 3 3 thr");
        fs::write(&journal, &data).unwrap();
        let ledger = Ledger::open(dir.path(), "a").unwrap();
        assert!(ledger.damage().is_none());
        assert_eq!(ledger.len(), 2);
        drop(ledger);
        // The torn piece is cut off, so the next record starts a line.
        assert!(fs::read(&journal).unwrap().ends_with(b"\n"));

        // Damage the first record (after the generation line).
        let first = data.iter().position(|&b| b == b'\n').unwrap() + 3;
        data[first] = b'9';
        fs::write(&journal, &data).unwrap();
        let ledger = Ledger::open(dir.path(), "a").unwrap();
        assert!(ledger.damage().is_some());
        assert_eq!(ledger.get("two").unwrap().first_fetched, 2);
    }

    #[test]
    fn a_journal_left_from_before_the_snapshot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), "a").unwrap();
        ledger.record("gone", Kind::Whole, 1, 1).unwrap();
        let stale = fs::read(dir.path().join("a.journal")).unwrap();
        // The server confirmed removing it; the snapshot forgets it.
        ledger.forget("gone");
        ledger.compact(None).unwrap();
        drop(ledger);
        // A crash between the snapshot's rename and the journal's removal.
        fs::write(dir.path().join("a.journal"), stale).unwrap();
        let mut ledger = Ledger::open(dir.path(), "a").unwrap();
        assert!(ledger.damage().is_none());
        assert!(ledger.get("gone").is_none());
        // New records start a journal of the current generation.
        ledger.record("new", Kind::Whole, 2, 2).unwrap();
        drop(ledger);
        let ledger = Ledger::open(dir.path(), "a").unwrap();
        assert!(ledger.get("new").is_some() && ledger.get("gone").is_none());
    }

    #[test]
    fn a_truncated_snapshot_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path(), "a").unwrap();
        for i in 0..10 {
            ledger
                .record(&format!("uid{i}"), Kind::Whole, i, i)
                .unwrap();
        }
        ledger.compact(None).unwrap();
        drop(ledger);
        let path = dir.path().join("a.ledger");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() / 2]).unwrap();
        let mut ledger = Ledger::open(dir.path(), "a").unwrap();
        assert!(ledger.damage().is_some());
        // What was readable before the cut still counts.
        assert!(ledger.get("uid0").is_some());
        assert!(fs::read_dir(dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("a.damaged-")
        }));
        ledger.compact(None).unwrap();
        drop(ledger);
        assert!(Ledger::open(dir.path(), "a").unwrap().damage().is_none());
        fs::write(&path, "garbage\n").unwrap();
        assert!(Ledger::open(dir.path(), "a").unwrap().damage().is_some());
    }
}
