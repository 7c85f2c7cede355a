//! Sizes derived from a message's content by a rule the caller brings (the
//! POP3 server's: the size of a message's RFC 6858 surrogate), cached per
//! message in a file of the Maildir's root.
//!
//! A message file never changes while it has its base name, so a derived
//! size is computed once, at the first login that needs it, and read from
//! the cache after that. The cache is only a cache: a damaged or foreign
//! one is ignored and rebuilt, and it is written without fsync (a lost
//! cache costs one recomputation).
//!
//! ```text
//! yubin-derived 1 <rule>
//! <base name> <size>     a derived size
//! <base name> -          the rule gives nothing for this message
//! ```

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::listing::Listing;
use crate::maildir::Maildir;

const MAGIC: &str = "yubin-derived 1";

impl Maildir {
    /// For every message of `listing`, what `rule` derives from its file and
    /// listed size (`None`: nothing, e.g. no downgrade needed), from the
    /// cache named `yubin-<rule_name>` or computed now and cached. A message
    /// that cannot be read gets `None` and is not cached.
    pub fn derived_sizes(
        &self,
        listing: &Listing,
        rule_name: &str,
        rule: impl Fn(&mut File, u64) -> io::Result<Option<u64>>,
    ) -> Vec<Option<u64>> {
        let path = self.root().join(format!("yubin-{rule_name}"));
        let cached = load(&path, rule_name);
        let mut changed = cached.len() != listing.len();
        let mut now: HashMap<Vec<u8>, Option<u64>> = HashMap::with_capacity(listing.len());
        let mut sizes = Vec::with_capacity(listing.len());
        for i in 0..listing.len() {
            let base = listing.base(i);
            let size = match cached.get(base) {
                Some(&size) => Some(size),
                None => {
                    changed = true;
                    self.open(listing, i)
                        .ok()
                        .and_then(|mut file| rule(&mut file, listing.size(i)).ok())
                }
            };
            if let Some(size) = size {
                now.insert(base.to_vec(), size);
            }
            sizes.push(size.flatten());
        }
        if changed {
            // A cache that cannot be written is recomputed next time.
            let _ = save(&path, rule_name, &now);
        }
        sizes
    }
}

fn load(path: &Path, rule_name: &str) -> HashMap<Vec<u8>, Option<u64>> {
    let Ok(text) = fs::read(path) else {
        return HashMap::new();
    };
    let mut lines = text.split(|&b| b == b'\n');
    let header = format!("{MAGIC} {rule_name}");
    if lines.next() != Some(header.as_bytes()) {
        return HashMap::new();
    }
    let mut out = HashMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some(space) = line.iter().rposition(|&b| b == b' ') else {
            return HashMap::new();
        };
        let (base, value) = (&line[..space], &line[space + 1..]);
        let size = match value {
            b"-" => None,
            digits => match std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
            {
                Some(size) => Some(size),
                None => return HashMap::new(),
            },
        };
        out.insert(base.to_vec(), size);
    }
    out
}

fn save(path: &Path, rule_name: &str, sizes: &HashMap<Vec<u8>, Option<u64>>) -> io::Result<()> {
    let mut text = Vec::with_capacity(sizes.len() * 64);
    writeln!(text, "{MAGIC} {rule_name}")?;
    for (base, size) in sizes {
        text.extend_from_slice(base);
        match size {
            Some(size) => writeln!(text, " {size}")?,
            None => text.extend_from_slice(b" -\n"),
        }
    }
    // A cache, not mail: renamed into place so no reader sees half of it,
    // but not fsynced (yubin_durable's business); a crash only costs
    // recomputing it.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &text).and_then(|()| fs::rename(&tmp, path))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::Read;

    use super::*;

    #[test]
    fn derived_sizes_are_computed_once_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::new(dir.path());
        maildir.deliver(b"Subject: a\n\nx\n", "h").unwrap();
        maildir.deliver(b"Subject: bb\n\ny\n", "h").unwrap();
        let listing = maildir.scan().unwrap();
        let calls = Cell::new(0);
        let rule = |file: &mut File, listed: u64| {
            calls.set(calls.get() + 1);
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            Ok(text.contains("bb").then_some(listed + 100))
        };
        let first = maildir.derived_sizes(&listing, "test", rule);
        assert_eq!(first, vec![None, Some(listing.size(1) + 100)]);
        assert_eq!(calls.get(), 2);
        let again = maildir.derived_sizes(&listing, "test", rule);
        assert_eq!(again, first);
        assert_eq!(calls.get(), 2, "read from the cache");

        // A new message is computed; a damaged cache is rebuilt.
        maildir.deliver(b"Subject: bb again\n\n", "h").unwrap();
        let listing = maildir.scan().unwrap();
        assert_eq!(maildir.derived_sizes(&listing, "test", rule).len(), 3);
        assert_eq!(calls.get(), 3);
        fs::write(dir.path().join("yubin-test"), "garbage").unwrap();
        let rebuilt = maildir.derived_sizes(&listing, "test", rule);
        assert_eq!(calls.get(), 6);
        assert_eq!(rebuilt[2], Some(listing.size(2) + 100));
    }
}
