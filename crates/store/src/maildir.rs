//! A Maildir: listing with sizes, opening messages, delivery and UPDATE.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use yubin_line::WireSize;

use crate::listing::{Listing, Stamp, Sub, UNKNOWN};
use crate::name;

/// Errors from reading or writing a Maildir.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A Maildir directory is a symbolic link or not a directory; we refuse to
    /// follow it (it could point anywhere).
    #[error("{0} is not a directory (or is a symbolic link)")]
    NotADirectory(PathBuf),
    /// An I/O error on a path.
    #[error("{path}: {error}")]
    Io {
        /// Where it happened.
        path: PathBuf,
        /// What happened.
        error: io::Error,
    },
}

impl StoreError {
    /// The underlying I/O error, if this is one (to tell a full disk from
    /// other faults).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::NotADirectory(_) => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Why a message could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file is gone (removed by another program).
    #[error("message file is gone")]
    Gone,
    /// Opening failed.
    #[error("cannot open message: {0}")]
    Io(#[from] io::Error),
}

/// What UPDATE did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Marked messages removed (or already gone).
    pub removed: usize,
    /// Marked messages that could not be removed.
    pub not_removed: usize,
    /// Retrieved messages that could not be flagged seen (harmless).
    pub seen_failed: usize,
}

const BUFFER: usize = 64 * 1024;

/// A Maildir at a path.
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// The Maildir at `root` (nothing is touched yet).
    pub fn new(root: impl Into<PathBuf>) -> Maildir {
        Maildir { root: root.into() }
    }

    /// Its root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the Maildir (root, `tmp`, `new`, `cur`, mode 0700) where missing,
    /// and checks that none of them is a symbolic link.
    pub fn create(&self) -> Result<(), StoreError> {
        if self.check_dirs().is_ok() {
            return Ok(());
        }
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in self.dirs() {
            builder.create(&dir).map_err(io_error(&dir))?;
        }
        self.check_dirs().map(|_| ())
    }

    /// The Maildir++ folder `name` inside this Maildir (`.name`, as
    /// Dovecot and Courier lay folders out). POP3 serves only the Maildir
    /// itself (the INBOX); a folder is where mail goes that its user is
    /// to see elsewhere (a Junk folder, read over IMAP or on disk).
    pub fn folder(&self, name: &str) -> Maildir {
        Maildir::new(self.root.join(format!(".{name}")))
    }

    /// Creates this Maildir as a folder of its parent: the parent checked
    /// as [`Maildir::create`] checks a Maildir (no symbolic links), the
    /// folder's directories, their entries made durable (a message
    /// committed into the folder must not vanish with it in a crash), and
    /// last the `maildirfolder` marker Maildir++ readers look for. The
    /// marker says the folder is complete: until it exists, every
    /// delivery makes sure again.
    pub fn create_folder(&self) -> Result<(), StoreError> {
        let marker = self.root.join("maildirfolder");
        if marker.exists() && self.check_dirs().is_ok() {
            return Ok(());
        }
        let parent = self.root.parent().map(Maildir::new);
        if let Some(parent) = &parent {
            parent.create()?;
        }
        self.create()?;
        for dir in [
            Some(self.root.as_path()),
            parent.as_ref().map(Maildir::root),
        ]
        .into_iter()
        .flatten()
        {
            yubin_durable::sync_dir(dir).map_err(io_error(dir))?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&marker)
            .map_err(io_error(&marker))?;
        yubin_durable::sync_dir(&self.root).map_err(io_error(&self.root))?;
        Ok(())
    }

    fn dirs(&self) -> [PathBuf; 4] {
        [
            self.root.clone(),
            self.root.join("tmp"),
            self.root.join("new"),
            self.root.join("cur"),
        ]
    }

    /// Checks that the Maildir's directories are real directories, and
    /// returns the modification times of `new/` and `cur/`.
    fn check_dirs(&self) -> Result<Stamp, StoreError> {
        let mut mtimes = [0i128; 4];
        for (dir, mtime) in self.dirs().iter().zip(mtimes.iter_mut()) {
            let meta = fs::symlink_metadata(dir).map_err(io_error(dir))?;
            if !meta.is_dir() {
                return Err(StoreError::NotADirectory(dir.clone()));
            }
            *mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        }
        Ok(Stamp {
            new_ns: mtimes[2],
            cur_ns: mtimes[3],
        })
    }

    /// Lists the messages in `new/` and `cur/`, oldest first, with their wire
    /// sizes: from `,W=` in the name, else from the cache, else by reading
    /// the file once. An unchanged Maildir is listed from the cache without
    /// reading its directories (see [`crate::listing`]).
    pub fn scan(&self) -> Result<Listing, StoreError> {
        let stamp = self.check_dirs()?;
        let now = SystemTime::now();
        let cached = match Listing::load_cache(&self.root) {
            Some((cached_stamp, true, listing)) if cached_stamp == stamp => return Ok(listing),
            other => other,
        };
        let mut listing = Listing::default();
        for sub in [Sub::New, Sub::Cur] {
            let dir = self.root.join(sub.dir());
            for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
                let entry = entry.map_err(io_error(&dir))?;
                // Only regular files: a symbolic link could point anywhere.
                match entry.file_type() {
                    Ok(t) if t.is_file() => {}
                    _ => continue,
                }
                let file_name = entry.file_name();
                if !file_name.as_bytes().starts_with(b".") {
                    listing.push(sub, file_name.as_bytes());
                }
            }
        }
        listing.sort_and_dedup();
        if listing.has_unknown() {
            self.fill_sizes(&mut listing, cached.as_ref().map(|(_, _, l)| l));
            listing.retain_known();
        }
        let stable = stable(stamp, now);
        let _ = listing.save_cache(&self.root, stamp, stable);
        Ok(listing)
    }

    /// Sizes for messages without `,W=`: from the previous listing (both
    /// are in the same order, so they are merged, not hashed), or by
    /// reading the file. A message that vanished keeps `UNKNOWN`.
    fn fill_sizes(&self, listing: &mut Listing, previous: Option<&Listing>) {
        let empty = Listing::default();
        let previous = previous.unwrap_or(&empty);
        let mut next = 0;
        for i in 0..listing.len() {
            if listing.size(i) != UNKNOWN {
                continue;
            }
            let key = (listing.delivered(i), listing.base(i));
            while next < previous.len() && (previous.delivered(next), previous.base(next)) < key {
                next += 1;
            }
            let size = if next < previous.len() && previous.base(next) == listing.base(i) {
                previous.size(next)
            } else {
                let path = self
                    .root
                    .join(listing.sub(i).dir())
                    .join(listing.file_name(i));
                read_size(&path).unwrap_or(UNKNOWN)
            };
            listing.set_size(i, size);
        }
    }

    fn path_of(&self, listing: &Listing, i: usize) -> PathBuf {
        self.root
            .join(listing.sub(i).dir())
            .join(listing.file_name(i))
    }

    /// Opens message `i` of a listing for reading. If another program
    /// renamed it meanwhile (moved to `cur/`, changed flags), it is found
    /// again by its base name.
    pub fn open(&self, listing: &Listing, i: usize) -> Result<File, OpenError> {
        match open_no_follow(&self.path_of(listing, i)) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let moved = self.relocate(listing.base(i)).ok_or(OpenError::Gone)?;
                open_no_follow(&moved).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => OpenError::Gone,
                    _ => OpenError::Io(e),
                })
            }
            Err(e) => Err(OpenError::Io(e)),
        }
    }

    /// Finds a message's current file by its base name.
    fn relocate(&self, base: &[u8]) -> Option<PathBuf> {
        for sub in [Sub::Cur, Sub::New] {
            let dir = self.root.join(sub.dir());
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                if name::base(file_name.as_bytes()) == base {
                    return Some(dir.join(file_name));
                }
            }
        }
        None
    }

    /// UPDATE (RFC 1939 §6): removes messages `delete` of a listing, marks
    /// messages `retrieved` seen (moving them to `cur/` with the `S` flag,
    /// as Dovecot and Courier do), and fsyncs the directories, so that when
    /// this returns the removal is durable. Every message is attempted even
    /// if some fail.
    pub fn commit(&self, listing: &Listing, delete: &[usize], retrieved: &[usize]) -> CommitReport {
        let mut report = CommitReport::default();
        // Which of new/ and cur/ had entries removed or renamed, and so need an fsync.
        let mut touched = [false, false];
        let slot = |sub: Sub| usize::from(sub == Sub::Cur);
        for &i in delete.iter().filter(|&&i| i < listing.len()) {
            match self.remove(listing, i) {
                Ok(sub) => {
                    report.removed += 1;
                    touched[slot(sub)] = true;
                }
                Err(_) => report.not_removed += 1,
            }
        }
        for &i in retrieved.iter().filter(|&&i| i < listing.len()) {
            let Some(new_name) = name::with_seen_flag(listing.file_name(i).as_bytes()) else {
                continue;
            };
            let to = self.root.join("cur").join(OsString::from_vec(new_name));
            match fs::rename(self.path_of(listing, i), &to) {
                Ok(()) => {
                    touched[slot(listing.sub(i))] = true;
                    touched[slot(Sub::Cur)] = true;
                }
                Err(_) => report.seen_failed += 1,
            }
        }
        for sub in [Sub::New, Sub::Cur] {
            if touched[slot(sub)] && yubin_durable::sync_dir(&self.root.join(sub.dir())).is_err() {
                // The unlinks happened but might not survive a crash; say so
                // rather than promise a removal that may be undone.
                report.not_removed = report.not_removed.max(1);
            }
        }
        report
    }

    fn remove(&self, listing: &Listing, i: usize) -> io::Result<Sub> {
        match fs::remove_file(self.path_of(listing, i)) {
            Ok(()) => Ok(listing.sub(i)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.relocate(listing.base(i)) {
                Some(moved) => fs::remove_file(&moved).map(|()| listing.sub(i)),
                // Already gone: what the client asked for is true.
                None => Ok(listing.sub(i)),
            },
            Err(e) => Err(e),
        }
    }

    /// Delivers a message (stored as given; LF line ends expected): write to
    /// `tmp/`, fsync, link into `new/` under a name that never overwrites,
    /// fsync `new/`. Returns the file name in `new/`. The name carries `,S=`
    /// and `,W=` so listings need no file reads.
    pub fn deliver(&self, message: &[u8], hostname: &str) -> Result<OsString, StoreError> {
        let staged = self.stage(
            message.len() as u64,
            WireSize::of(message),
            hostname,
            |file| file.write_all(message),
        )?;
        staged.commit()
    }

    /// Removes files in `tmp/` last modified more than `older_than` ago:
    /// deliveries interrupted by a crash, never made visible (the sender
    /// was not told `250` and retries). The Maildir convention is 36 hours,
    /// long enough that no delivery still in progress is touched. Returns
    /// how many were removed; errors only make the clean-up incomplete.
    pub fn clean_tmp(&self, older_than: std::time::Duration) -> usize {
        let tmp = self.root.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else {
            return 0;
        };
        let Some(cutoff) = SystemTime::now().checked_sub(older_than) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let stale = meta.is_file() && meta.modified().is_ok_and(|m| m < cutoff);
            if stale && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The first half of a delivery: writes a message of `size` octets
    /// (wire size `wire`) into `tmp/` with `write`, and fsyncs it. Nothing
    /// is visible until [`Staged::commit`]; [`Staged::abort`] (or dropping
    /// it) removes it. Several recipients' copies can be staged first and
    /// committed together, so a failure leaves none half-delivered.
    pub fn stage(
        &self,
        size: u64,
        wire: u64,
        hostname: &str,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<Staged, StoreError> {
        self.create()?;
        let name = unique_name(&name::escape_hostname(hostname), size, wire);
        let file = yubin_durable::Staged::write(self.root.join("tmp").join(name), 0o600, write)
            .map_err(from_durable)?;
        Ok(Staged {
            file,
            new_dir: self.root.join("new"),
            hostname: hostname.to_owned(),
            size,
            wire,
        })
    }
}

/// A message in `tmp/`, written and fsynced, waiting to be committed.
/// Dropping it removes it.
#[derive(Debug)]
pub struct Staged {
    file: yubin_durable::Staged,
    new_dir: PathBuf,
    hostname: String,
    size: u64,
    wire: u64,
}

impl Staged {
    /// Makes the message visible: linked into `new/` under its `tmp/` name,
    /// or a fresh unique name if that one is taken (a link never replaces
    /// a message), then `new/` fsynced. If `new/` cannot be made durable
    /// the delivery fails and leaves no copy. Returns the name in `new/`.
    pub fn commit(self) -> Result<OsString, StoreError> {
        let name = self
            .file
            .path()
            .file_name()
            .map(OsString::from)
            .unwrap_or_default();
        let host = name::escape_hostname(&self.hostname);
        let (size, wire) = (self.size, self.wire);
        self.file
            .link_into(&self.new_dir, name, || {
                OsString::from(unique_name(&host, size, wire))
            })
            .map_err(from_durable)
    }

    /// Throws the staged message away.
    pub fn abort(self) {
        self.file.abort();
    }
}

fn from_durable(error: yubin_durable::AtPath) -> StoreError {
    StoreError::Io {
        path: error.path,
        error: error.error,
    }
}

/// A Maildir unique name in Dovecot's style, `<secs>.M<usecs>P<pid>Q<n>R<rand>.<host>,S=,W=`.
fn unique_name(host: &str, size: u64, wire: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}R{}.{host},S={size},W={wire}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        crate::next_delivery(),
        crate::random_hex(4),
    )
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Whether a listing made at `now` under `stamp` can be trusted later: both
/// directories unchanged for a while, so no change in the same clock tick
/// as the scan can hide behind an unchanged mtime. File systems that keep
/// whole seconds only (no nanoseconds) get a wider margin.
fn stable(stamp: Stamp, now: SystemTime) -> bool {
    let Ok(now) = now.duration_since(UNIX_EPOCH) else {
        return false;
    };
    let now_ns = i128::try_from(now.as_nanos()).unwrap_or(i128::MAX);
    let coarse = stamp.new_ns % 1_000_000_000 == 0 && stamp.cur_ns % 1_000_000_000 == 0;
    // Linux stamps files from its coarse clock, which moves in ticks of at
    // most 10 ms (HZ=100) and lags the real time by up to a tick; 20 ms is
    // two ticks.
    let margin = if coarse {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(20)
    };
    let margin_ns = i128::try_from(margin.as_nanos()).unwrap_or(i128::MAX);
    now_ns - stamp.new_ns.max(stamp.cur_ns) >= margin_ns
}

fn read_size(path: &Path) -> io::Result<u64> {
    let mut file = open_no_follow(path)?;
    let mut size = WireSize::new();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(size.finish());
        }
        size.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: i128) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }

    #[test]
    fn a_listing_is_trusted_only_two_ticks_after_the_last_change() {
        let base: i128 = 1_795_727_974_040_543_043;
        let stamp = Stamp {
            new_ns: base,
            cur_ns: base - 5_000_000_000,
        };
        assert!(!stable(stamp, at(base + 5_000_000)), "5 ms after a change");
        assert!(!stable(stamp, at(base + 19_000_000)));
        assert!(stable(stamp, at(base + 20_000_000)));
        assert!(
            !stable(stamp, at(base - 1_000_000_000)),
            "a clock behind the change"
        );
        // Whole-second file systems: two seconds.
        let coarse = Stamp {
            new_ns: 1_795_727_974_000_000_000,
            cur_ns: 1_795_727_970_000_000_000,
        };
        assert!(!stable(coarse, at(1_795_727_975_500_000_000)));
        assert!(stable(coarse, at(1_795_727_976_000_000_000)));
    }
}
