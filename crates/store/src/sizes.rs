//! The size cache: wire sizes of messages whose names carry no `,W=`, so
//! they are read once, not at every login.
//!
//! File `yubin-sizes` in the Maildir's root: a header line `yubin-sizes 1`,
//! then `<size> <base>` lines. Messages never change once delivered, so a
//! base name is a sufficient key. The file is replaced atomically (temporary
//! file and rename); a damaged or foreign file is ignored and rebuilt.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

const FILE_NAME: &str = "yubin-sizes";
const HEADER: &str = "yubin-sizes 1";

/// Cached wire sizes by base name.
pub(crate) type SizeCache = HashMap<Vec<u8>, u64>;

/// Reads the cache; a missing or unreadable file gives an empty one.
pub(crate) fn load(root: &Path) -> SizeCache {
    let Ok(bytes) = fs::read(root.join(FILE_NAME)) else {
        return SizeCache::new();
    };
    let mut lines = bytes.split(|&b| b == b'\n');
    if lines.next() != Some(HEADER.as_bytes()) {
        return SizeCache::new();
    }
    let mut cache = SizeCache::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(space) = memchr::memchr(b' ', line) else {
            return SizeCache::new();
        };
        let size = std::str::from_utf8(&line[..space])
            .ok()
            .and_then(|s| s.parse().ok());
        match size {
            Some(size) => {
                cache.insert(line[space + 1..].to_vec(), size);
            }
            None => return SizeCache::new(),
        }
    }
    cache
}

/// Replaces the cache with `entries`. Failure only costs a re-read next time.
pub(crate) fn save<'a>(
    root: &Path,
    entries: impl Iterator<Item = (&'a [u8], u64)>,
) -> io::Result<()> {
    let mut text = Vec::with_capacity(4096);
    text.extend_from_slice(HEADER.as_bytes());
    text.push(b'\n');
    for (base, size) in entries {
        // A base with a newline would break the format; such a message is just not cached.
        if base.contains(&b'\n') {
            continue;
        }
        text.extend_from_slice(size.to_string().as_bytes());
        text.push(b' ');
        text.extend_from_slice(base);
        text.push(b'\n');
    }
    let tmp = root.join(format!(".{FILE_NAME}.{}", crate::unique_suffix()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(&text)?;
        fs::rename(&tmp, root.join(FILE_NAME))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
