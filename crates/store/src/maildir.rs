//! A Maildir: listing with sizes, opening messages, delivery and UPDATE.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use yubin_pop3_proto::WireSize;

use crate::name;
use crate::sizes;

/// Which subdirectory a message file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    New,
    Cur,
}

impl Sub {
    fn index(self) -> usize {
        match self {
            Sub::New => 0,
            Sub::Cur => 1,
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// One message found by [`Maildir::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    sub: Sub,
    file_name: OsString,
    /// Octets on the POP3 wire (CRLF line ends, before byte-stuffing).
    pub size: u64,
    /// The POP3 unique-id (see [`name::uid`]).
    pub uid: String,
}

impl StoredMessage {
    fn base(&self) -> &[u8] {
        name::base(self.file_name.as_bytes())
    }

    /// The file name (in `new/` or `cur/`).
    pub fn file_name(&self) -> &OsStr {
        &self.file_name
    }
}

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

/// A Maildir at a path.
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
}

const BUFFER: usize = 64 * 1024;

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
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in [
            self.root.clone(),
            self.root.join("tmp"),
            self.root.join("new"),
            self.root.join("cur"),
        ] {
            builder.create(&dir).map_err(io_error(&dir))?;
        }
        self.check_dirs()
    }

    fn check_dirs(&self) -> Result<(), StoreError> {
        for dir in [
            self.root.clone(),
            self.root.join("tmp"),
            self.root.join("new"),
            self.root.join("cur"),
        ] {
            let meta = fs::symlink_metadata(&dir).map_err(io_error(&dir))?;
            if !meta.is_dir() {
                return Err(StoreError::NotADirectory(dir));
            }
        }
        Ok(())
    }

    /// Lists the messages in `new/` and `cur/`, oldest first, with their wire
    /// sizes: from `,W=` in the name, else from the size cache, else by
    /// reading the file once (and caching the result).
    pub fn scan(&self) -> Result<Vec<StoredMessage>, StoreError> {
        self.check_dirs()?;
        let mut messages: Vec<StoredMessage> = Vec::new();
        let mut by_base: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut untagged = Vec::new();
        // new/ first: a message moved to cur/ between the two reads is seen
        // twice and the cur/ entry wins, rather than not at all.
        for sub in [Sub::New, Sub::Cur] {
            let dir = self.root.join(sub.dir());
            for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
                let entry = entry.map_err(io_error(&dir))?;
                let file_name = entry.file_name();
                let bytes = file_name.as_bytes();
                if bytes.starts_with(b".") {
                    continue;
                }
                // Only regular files: a symbolic link could point anywhere.
                match entry.file_type() {
                    Ok(t) if t.is_file() => {}
                    _ => continue,
                }
                let base = name::base(bytes);
                let size = name::size_field(base, b'W');
                let message = StoredMessage {
                    sub,
                    uid: name::uid(base),
                    size: size.unwrap_or(0),
                    file_name: file_name.clone(),
                };
                let base = base.to_vec();
                match by_base.get(&base) {
                    Some(&index) => messages[index] = message,
                    None => {
                        by_base.insert(base, messages.len());
                        if size.is_none() {
                            untagged.push(messages.len());
                        }
                        messages.push(message);
                    }
                }
            }
        }

        if !untagged.is_empty() {
            self.fill_sizes(&mut messages, &untagged);
        }
        messages.retain(|m| m.size != u64::MAX);
        messages.sort_by(|a, b| {
            let (ba, bb) = (a.base(), b.base());
            name::timestamp(ba)
                .cmp(&name::timestamp(bb))
                .then_with(|| ba.cmp(bb))
        });
        Ok(messages)
    }

    /// Sizes for messages without `,W=`: from the cache or by reading them.
    /// A message that vanished meanwhile gets `u64::MAX` and is dropped.
    fn fill_sizes(&self, messages: &mut [StoredMessage], untagged: &[usize]) {
        let cache = sizes::load(&self.root);
        let mut computed = 0usize;
        for &index in untagged {
            let message = &messages[index];
            let size = match cache.get(message.base()) {
                Some(&size) => size,
                None => {
                    computed += 1;
                    self.read_size(message).unwrap_or(u64::MAX)
                }
            };
            messages[index].size = size;
        }
        let stale = untagged.len() - computed != cache.len();
        if computed > 0 || stale {
            let entries = untagged
                .iter()
                .map(|&i| &messages[i])
                .filter(|m| m.size != u64::MAX)
                .map(|m| (m.base(), m.size));
            // Losing the cache only costs time; the listing is right either way.
            let _ = sizes::save(&self.root, entries);
        }
    }

    fn read_size(&self, message: &StoredMessage) -> io::Result<u64> {
        let mut file = open_no_follow(&self.path_of(message))?;
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

    fn path_of(&self, message: &StoredMessage) -> PathBuf {
        self.root.join(message.sub.dir()).join(&message.file_name)
    }

    /// Opens a message for reading. If another program renamed it meanwhile
    /// (moved to `cur/`, changed flags), it is found again by its base name.
    pub fn open(&self, message: &StoredMessage) -> Result<File, OpenError> {
        match open_no_follow(&self.path_of(message)) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let moved = self.relocate(message).ok_or(OpenError::Gone)?;
                open_no_follow(&self.path_of(&moved)).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => OpenError::Gone,
                    _ => OpenError::Io(e),
                })
            }
            Err(e) => Err(OpenError::Io(e)),
        }
    }

    /// Finds a message's current file by its base name.
    fn relocate(&self, message: &StoredMessage) -> Option<StoredMessage> {
        let base = message.base();
        for sub in [Sub::Cur, Sub::New] {
            let Ok(entries) = fs::read_dir(self.root.join(sub.dir())) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                if name::base(file_name.as_bytes()) == base {
                    return Some(StoredMessage {
                        sub,
                        file_name,
                        ..message.clone()
                    });
                }
            }
        }
        None
    }

    /// UPDATE (RFC 1939 §6): removes the `delete` messages, marks the
    /// `retrieved` ones seen (moving them to `cur/` with the `S` flag, as
    /// Dovecot and Courier do), and fsyncs the directories, so that when this
    /// returns the removal is durable. Every message is attempted even if
    /// some fail.
    pub fn commit(&self, delete: &[&StoredMessage], retrieved: &[&StoredMessage]) -> CommitReport {
        let mut report = CommitReport::default();
        // Which of new/ and cur/ had entries removed or renamed, and so need an fsync.
        let mut touched = [false, false];
        for message in delete {
            match self.remove(message) {
                Ok(sub) => {
                    report.removed += 1;
                    touched[sub.index()] = true;
                }
                Err(_) => report.not_removed += 1,
            }
        }
        for message in retrieved {
            let Some(new_name) = name::with_seen_flag(message.file_name.as_bytes()) else {
                continue;
            };
            let from = self.path_of(message);
            let to = self.root.join("cur").join(OsString::from_vec(new_name));
            match fs::rename(&from, &to) {
                Ok(()) => {
                    touched[message.sub.index()] = true;
                    touched[Sub::Cur.index()] = true;
                }
                Err(_) => report.seen_failed += 1,
            }
        }
        for sub in [Sub::New, Sub::Cur] {
            if touched[sub.index()] && sync_dir(&self.root.join(sub.dir())).is_err() {
                // The unlinks happened but might not survive a crash; say so
                // rather than promise a removal that may be undone.
                report.not_removed = report.not_removed.max(1);
            }
        }
        report
    }

    fn remove(&self, message: &StoredMessage) -> io::Result<Sub> {
        match fs::remove_file(self.path_of(message)) {
            Ok(()) => Ok(message.sub),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.relocate(message) {
                Some(moved) => fs::remove_file(self.path_of(&moved)).map(|()| moved.sub),
                // Already gone: what the client asked for is true.
                None => Ok(message.sub),
            },
            Err(e) => Err(e),
        }
    }

    /// Delivers a message (stored as given; LF line ends expected): write to
    /// `tmp/`, fsync, link into `new/` under a name that never overwrites,
    /// fsync `new/`. Returns the file name in `new/`. The name carries `,S=`
    /// and `,W=` so listings need no file reads.
    pub fn deliver(&self, message: &[u8], hostname: &str) -> Result<OsString, StoreError> {
        self.create()?;
        let wire = WireSize::of(message);
        let host = name::escape_hostname(hostname);
        let tmp_dir = self.root.join("tmp");
        let new_dir = self.root.join("new");
        loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let unique = format!(
                "{}.M{}P{}Q{}R{}.{host},S={},W={wire}",
                now.as_secs(),
                now.subsec_micros(),
                std::process::id(),
                crate::next_delivery(),
                crate::random_hex(4),
                message.len(),
            );
            let tmp = tmp_dir.join(&unique);
            let write = || -> io::Result<()> {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&tmp)?;
                file.write_all(message)?;
                file.sync_all()
            };
            if let Err(e) = write() {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::Io {
                    path: tmp,
                    error: e,
                });
            }
            let target = new_dir.join(&unique);
            // link(2) fails if the name exists, where rename(2) would overwrite.
            let linked = fs::hard_link(&tmp, &target);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    sync_dir(&new_dir).map_err(io_error(&new_dir))?;
                    return Ok(OsString::from(unique));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        path: target,
                        error: e,
                    });
                }
            }
        }
    }
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
