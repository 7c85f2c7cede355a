//! Writing files so that they survive a crash.
//!
//! A write is durable once its data and the directory entry that names it
//! are on disk: `fsync` of the file for the first, `fsync` of the directory
//! for the second (a rename or a new name is an entry of the directory, not
//! of the file). Every path that promises durability goes through here:
//!
//! - [`replace`]: a file replaced whole and atomically;
//! - [`Staged`]: a new file written and fsynced under a temporary name,
//!   then made visible by a link that never replaces anything (Maildir
//!   delivery) or a rename (a queue entry), and its directory fsynced;
//! - [`sync_dir`] and [`sync_parent`]: a directory's entries made durable;
//! - [`Journal`]: records appended and fsynced one by one.
//!
//! On failure nothing half-written is left under the final name, and a
//! temporary file is removed; the error says what failed. Each step that
//! can fail goes through [`fault::check`], so the tests can make any one
//! of them fail (a failed fsync, a failed rename, a full disk).
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod fault;
mod staged;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fault::Point;
pub use staged::{AtPath, Staged};

/// Replaces `path` with `contents`, atomically and durably: a new file
/// beside it (created exclusively, with `mode`), written and fsynced, then
/// renamed over `path`, then the directory fsynced. A crash at any point
/// leaves either the old file or the new one. The directory is created if
/// missing.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, contents, mode, true)
}

/// Replaces `path` with `contents` atomically, without waiting for the
/// directory: as [`replace`], but the directory is not fsynced. After a
/// crash `path` holds the old contents or the new ones, whole; only the
/// change itself may be lost. For records whose loss costs a repeat of
/// work, never mail.
pub fn replace_unsynced(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, contents, mode, false)
}

fn write_and_rename(path: &Path, contents: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    let (tmp, mut file) = create_temporary(path, mode)?;
    let written = (|| {
        fault::check(Point::Write)?;
        file.write_all(contents)?;
        fault::check(Point::SyncFile)?;
        file.sync_all()?;
        drop(file);
        fault::check(Point::Rename)?;
        fs::rename(&tmp, path)?;
        if durable { sync_dir(dir) } else { Ok(()) }
    })();
    if written.is_err() {
        // Gone already if the rename happened; then only the directory
        // sync failed, and the new file may or may not survive a crash.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Makes the entries of `dir` durable (files created, renamed or removed
/// in it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fault::check(Point::SyncDir)?;
    File::open(dir)?.sync_all()
}

/// Makes the entry naming `path` durable: [`sync_dir`] of its directory.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(parent(path))
}

/// A file that grows by records, each on disk before [`Journal::append`]
/// returns. A crash can tear only the record being written: readers must
/// recognise a torn last record (a missing line end, a failed check).
#[derive(Debug)]
pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens `path` for appending, creating it with `mode` if missing; a
    /// new or empty journal first gets `header`, and a new one's directory
    /// entry is made durable before any record is appended.
    pub fn open(path: &Path, mode: u32, header: &[u8]) -> io::Result<Journal> {
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(path)?;
        if file.metadata()?.len() == 0 {
            file.write_all(header)?;
            file.sync_data()?;
        }
        sync_parent(path)?;
        Ok(Journal { file })
    }

    /// Appends `record` and returns once it is on disk.
    pub fn append(&mut self, record: &[u8]) -> io::Result<()> {
        fault::check(Point::Write)?;
        self.file.write_all(record)?;
        fault::check(Point::SyncFile)?;
        self.file.sync_data()
    }
}

/// Removes the temporary files [`replace`] left beside `path` when a crash
/// came between creating one and renaming it. Only for a caller that holds
/// whatever serialises the writers of `path` (a lock): another writer's
/// temporary file would go too. Returns how many were removed.
pub fn remove_leftovers(path: &Path) -> io::Result<usize> {
    let Some(name) = path.file_name() else {
        return Ok(0);
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let mut removed = 0;
    for entry in fs::read_dir(parent(path))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix)
            && fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The directory of `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A new, exclusively created file beside `path`: `.NAME.tmp.PID.N`.
fn create_temporary(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let dir = parent(path);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.tmp.{}.{n}",
            name.to_string_lossy(),
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            // Left by a crashed process with our pid, long ago: next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The names in a directory, sorted: what a test expects to be left.
#[cfg(test)]
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replace_writes_the_whole_file_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/users");
        replace(&path, b"first\n", 0o600).unwrap();
        replace(&path, b"second\n", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            entries(&dir.path().join("sub")),
            ["users"],
            "a temporary file was left"
        );
    }

    /// A rename that fails (the target is a directory) leaves the target as
    /// it was and no temporary file behind.
    #[test]
    fn a_failed_rename_leaves_the_old_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(replace(&target, b"new", 0o600).is_err());
        assert!(target.is_dir());
        assert_eq!(entries(dir.path()), ["state"]);
    }

    /// A file that cannot be created (its directory would be under a
    /// regular file) is an error, and nothing beside it changes.
    #[test]
    fn a_file_that_cannot_be_created_is_an_error_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        fs::write(&path, b"old").unwrap();
        let bad = dir.path().join("missing-dir-is-a-file");
        fs::write(&bad, b"").unwrap();
        assert!(replace(&bad.join("x"), b"new", 0o600).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["missing-dir-is-a-file", "users"]);
    }

    /// ENOSPC on a write: the journal reports it and keeps what was
    /// appended before.
    #[test]
    fn a_full_disk_is_an_error() {
        let mut journal = Journal {
            file: OpenOptions::new().append(true).open("/dev/full").unwrap(),
        };
        let error = journal.append(b"record\n").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(28), "{error}");
    }

    /// A failed write (full disk), fsync, rename or directory sync: an
    /// error, the old contents under the name (only a failed directory
    /// sync may leave the new ones, durable or not), and no temporary file.
    #[test]
    fn replace_fails_cleanly_at_every_step() {
        use fault::{Point, fail_at};
        for (point, errno) in [
            (Point::Write, 28),
            (Point::SyncFile, 5),
            (Point::Rename, 18),
            (Point::SyncDir, 5),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("users");
            replace(&path, b"old", 0o600).unwrap();
            let failing = fail_at(point, errno);
            let error = replace(&path, b"new", 0o600).unwrap_err();
            drop(failing);
            assert_eq!(error.raw_os_error(), Some(errno), "{point:?}");
            if point != Point::SyncDir {
                assert_eq!(fs::read(&path).unwrap(), b"old", "{point:?}");
            }
            assert_eq!(entries(dir.path()), ["users"], "{point:?}");
        }
    }

    /// The unsynced replace: the new contents in full, and a failed write
    /// or rename leaves the old ones and no temporary file.
    #[test]
    fn replace_unsynced_is_whole_or_nothing() {
        use fault::{Point, fail_at};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace_unsynced(&path, b"old", 0o600).unwrap();
        replace_unsynced(&path, b"newer", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
        for (point, errno) in [
            (Point::Write, 28),
            (Point::SyncFile, 5),
            (Point::Rename, 18),
        ] {
            let failing = fail_at(point, errno);
            let error = replace_unsynced(&path, b"lost", 0o600).unwrap_err();
            drop(failing);
            assert_eq!(error.raw_os_error(), Some(errno), "{point:?}");
            assert_eq!(fs::read(&path).unwrap(), b"newer", "{point:?}");
            assert_eq!(entries(dir.path()), ["state"], "{point:?}");
        }
    }

    #[test]
    fn a_failed_fsync_of_a_journal_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("j"), 0o600, b"").unwrap();
        let _failing = fault::fail_at(fault::Point::SyncFile, 5);
        assert_eq!(journal.append(b"x\n").unwrap_err().raw_os_error(), Some(5));
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ledger");
        fs::write(&path, b"kept").unwrap();
        fs::write(dir.path().join(".a.ledger.tmp.123.0"), b"torn").unwrap();
        fs::write(dir.path().join(".b.ledger.tmp.123.0"), b"other").unwrap();
        assert_eq!(remove_leftovers(&path).unwrap(), 1);
        assert_eq!(entries(dir.path()), [".b.ledger.tmp.123.0", "a.ledger"]);
    }

    #[test]
    fn a_journal_gets_its_header_once_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.journal");
        let mut journal = Journal::open(&path, 0o600, b"# generation 1\n").unwrap();
        journal.append(b"one\n").unwrap();
        drop(journal);
        let mut journal = Journal::open(&path, 0o600, b"# generation 1\n").unwrap();
        journal.append(b"two\n").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# generation 1\none\ntwo\n"
        );
    }
}
