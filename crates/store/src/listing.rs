//! A maildrop's messages at one moment, kept compact, and the on-disk
//! listing cache that spares a warm login the directory reads.
//!
//! All file names live in one buffer; an entry is a few integers. So a
//! 100,000-message maildrop costs a handful of allocations, and handing it
//! to a session does not copy 100,000 strings.
//!
//! The cache, `yubin-listing` in the Maildir's root, is the last listing
//! with the modification times of `new/` and `cur/` it was made under:
//!
//! ```text
//! yubin-listing 1 <new/ mtime ns> <cur/ mtime ns> <stable 0|1>
//! <size> <n|c> <file name>
//! ```
//!
//! Any delivery, removal or rename in `new/` or `cur/` changes that
//! directory's mtime, so an unchanged pair of mtimes means an unchanged
//! listing. A directory's mtime has the granularity of the kernel's coarse
//! clock (a few ms; a second on some file systems), so a change made in the
//! same tick as the scan could leave the mtime as it was: a listing is
//! marked stable, and trusted later, only if both mtimes were at least two
//! ticks (20 ms; 2 s where the file system keeps whole seconds) in the past
//! when it was made. The sizes in the cache also spare reading files
//! without `,W=` again after a change.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::name;

const FILE_NAME: &str = "yubin-listing";
const MAGIC: &str = "yubin-listing 1";

/// Which subdirectory a message file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sub {
    /// `new/`
    New,
    /// `cur/`
    Cur,
}

impl Sub {
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// A size not known yet (no `,W=` and not cached), or of a message that vanished.
pub(crate) const UNKNOWN: u64 = u64::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: usize,
    len: usize,
    base_len: usize,
    sub: Sub,
    size: u64,
    delivered: (u64, u32),
}

/// The messages of a maildrop, oldest first (message 1 first).
#[derive(Clone, Debug, Default)]
pub struct Listing {
    names: Vec<u8>,
    entries: Vec<Entry>,
}

/// The modification times a listing was made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) new_ns: i128,
    pub(crate) cur_ns: i128,
}

impl Listing {
    /// How many messages there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Message `i`'s wire size: CRLF line ends, before byte-stuffing.
    pub fn size(&self, i: usize) -> u64 {
        self.entries.get(i).map_or(0, |e| e.size)
    }

    /// Message `i`'s file name (in `new/` or `cur/`).
    pub fn file_name(&self, i: usize) -> &OsStr {
        match self.entries.get(i) {
            Some(e) => OsStr::from_bytes(&self.names[e.start..e.start + e.len]),
            None => OsStr::new(""),
        }
    }

    /// Message `i`'s base name (its name before `:2,`).
    pub fn base(&self, i: usize) -> &[u8] {
        match self.entries.get(i) {
            Some(e) => &self.names[e.start..e.start + e.base_len],
            None => &[],
        }
    }

    /// Message `i`'s POP3 unique-id (see [`name::uid`]): borrowed when the
    /// base name itself is the id, as it is for ordinary names.
    pub fn uid(&self, i: usize) -> Cow<'_, str> {
        name::uid_cow(self.base(i))
    }

    pub(crate) fn sub(&self, i: usize) -> Sub {
        self.entries.get(i).map_or(Sub::New, |e| e.sub)
    }

    pub(crate) fn set_size(&mut self, i: usize, size: u64) {
        if let Some(e) = self.entries.get_mut(i) {
            e.size = size;
        }
    }

    pub(crate) fn delivered(&self, i: usize) -> (u64, u32) {
        self.entries.get(i).map_or((0, 0), |e| e.delivered)
    }

    /// Adds a file found in `sub`; its size comes from `,W=` if present.
    pub(crate) fn push(&mut self, sub: Sub, file_name: &[u8]) {
        let base = name::base(file_name);
        let start = self.names.len();
        self.names.extend_from_slice(file_name);
        self.entries.push(Entry {
            start,
            len: file_name.len(),
            base_len: base.len(),
            sub,
            size: name::size_field(base, b'W').unwrap_or(UNKNOWN),
            delivered: name::delivery_time(base),
        });
    }

    /// Puts the messages in delivery order and keeps one entry per base name
    /// (the `cur/` one, if a message was seen in both while it moved).
    pub(crate) fn sort_and_dedup(&mut self) {
        let names = &self.names;
        let base = |e: &Entry| &names[e.start..e.start + e.base_len];
        self.entries.sort_unstable_by(|a, b| {
            a.delivered
                .cmp(&b.delivered)
                .then_with(|| base(a).cmp(base(b)))
                .then_with(|| (b.sub == Sub::Cur).cmp(&(a.sub == Sub::Cur)))
        });
        self.entries
            .dedup_by(|later, earlier| base(later) == base(earlier));
    }

    /// Drops messages whose size is unknown (they vanished while being read).
    pub(crate) fn retain_known(&mut self) {
        self.entries.retain(|e| e.size != UNKNOWN);
    }

    /// Whether some size is still unknown.
    pub(crate) fn has_unknown(&self) -> bool {
        self.entries.iter().any(|e| e.size == UNKNOWN)
    }

    /// Reads the cache: the listing and the stamp and stability it was made with.
    pub(crate) fn load_cache(root: &Path) -> Option<(Stamp, bool, Listing)> {
        let text = fs::read(root.join(FILE_NAME)).ok()?;
        let newline = memchr::memchr(b'\n', &text)?;
        let header = std::str::from_utf8(&text[..newline]).ok()?;
        let mut fields = header.strip_prefix(MAGIC)?.split_ascii_whitespace();
        let stamp = Stamp {
            new_ns: fields.next()?.parse().ok()?,
            cur_ns: fields.next()?.parse().ok()?,
        };
        let stable = fields.next()? == "1";
        // Sized once from the file: a 100,000-message listing grown by
        // doubling would be copied a dozen times into fresh pages.
        let body = &text[newline + 1..];
        let mut listing = Listing {
            names: Vec::with_capacity(body.len()),
            entries: Vec::with_capacity(memchr::memchr_iter(b'\n', body).count() + 1),
        };
        let mut at = newline + 1;
        while at < text.len() {
            let end = memchr::memchr(b'\n', &text[at..]).map_or(text.len(), |n| at + n);
            let line = &text[at..end];
            let space = memchr::memchr(b' ', line)?;
            let size = parse_decimal(&line[..space])?;
            let rest = &line[space + 1..];
            let (sub, file_name) = match rest {
                [b'n', b' ', name @ ..] => (Sub::New, name),
                [b'c', b' ', name @ ..] => (Sub::Cur, name),
                _ => return None,
            };
            if file_name.is_empty() {
                return None;
            }
            listing.push(sub, file_name);
            listing.set_size(listing.len() - 1, size);
            at = end + 1;
        }
        Some((stamp, stable, listing))
    }

    /// Replaces the cache. Failure only costs a directory read next time.
    pub(crate) fn save_cache(
        &self,
        root: &Path,
        stamp: Stamp,
        stable: bool,
    ) -> std::io::Result<()> {
        let mut text = Vec::with_capacity(self.names.len() + self.entries.len() * 16 + 64);
        writeln!(
            text,
            "{MAGIC} {} {} {}",
            stamp.new_ns,
            stamp.cur_ns,
            u8::from(stable)
        )?;
        for (i, e) in self.entries.iter().enumerate() {
            let file_name = self.file_name(i).as_bytes();
            // A name with a newline cannot be written in this format; such a
            // maildrop is simply never cached.
            if file_name.contains(&b'\n') {
                return Ok(());
            }
            let sub = if e.sub == Sub::Cur { 'c' } else { 'n' };
            write!(text, "{} {sub} ", e.size)?;
            text.extend_from_slice(file_name);
            text.push(b'\n');
        }
        // A cache, not mail: renamed into place so no reader sees half of
        // it, but not fsynced (yubin_durable's business); a crash only
        // costs one full directory scan.
        let tmp = root.join(format!(".{FILE_NAME}.{}", crate::unique_suffix()));
        let result = fs::write(&tmp, &text).and_then(|()| fs::rename(&tmp, root.join(FILE_NAME)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}
