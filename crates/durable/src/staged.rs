//! A new file made durable in two halves: written and fsynced under a
//! temporary name ([`Staged::write`]), then given its final name and the
//! directory fsynced ([`Staged::link_into`] or [`Staged::rename_to`]).
//! Several files can be staged first and committed together, so a failure
//! while writing any of them leaves none visible.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::fault::{self, Point};
use crate::sync_dir;

/// How many taken names [`Staged::link_into`] tries before it gives up:
/// with unique names a second collision already means something is wrong.
const LINK_ATTEMPTS: usize = 16;

/// An I/O error and the path it happened at.
#[derive(Debug)]
pub struct AtPath {
    /// The file or directory.
    pub path: PathBuf,
    /// What failed.
    pub error: io::Error,
}

impl fmt::Display for AtPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for AtPath {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> AtPath + '_ {
    move |error| AtPath {
        path: path.to_owned(),
        error,
    }
}

/// Links `tmp` as `target` and fsyncs the directory; if the directory
/// cannot be made durable, `target` is removed again.
fn link(tmp: &Path, target: &Path) -> Result<(), AtPath> {
    fault::check(Point::Link)
        .and_then(|()| fs::hard_link(tmp, target))
        .map_err(at(target))?;
    let dir = crate::parent(target);
    sync_dir(dir).map_err(|error| {
        let _ = fs::remove_file(target);
        at(dir)(error)
    })
}

/// A file written and fsynced under a temporary name, not yet visible
/// under its final one. Dropping it removes it.
#[derive(Debug)]
pub struct Staged {
    tmp: Option<PathBuf>,
}

impl Staged {
    /// Creates `tmp` (exclusively: an existing file or a symbolic link
    /// there is an error, never followed) with `mode`, lets `write` fill
    /// it, and fsyncs it. On failure the file is removed.
    pub fn write(
        tmp: PathBuf,
        mode: u32,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<Staged, AtPath> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(at(&tmp))?;
        // From here on the file is ours: dropping `staged` removes it.
        let staged = Staged { tmp: Some(tmp) };
        let written = fault::check(Point::Write)
            .and_then(|()| write(&mut file))
            .and_then(|()| fault::check(Point::SyncFile))
            .and_then(|()| file.sync_all());
        match written {
            Ok(()) => Ok(staged),
            Err(error) => Err(AtPath {
                path: staged.path().to_owned(),
                error,
            }),
        }
    }

    /// The temporary name.
    pub fn path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(Path::new(""))
    }

    /// Makes the file visible in `dir` under `name`, or, if that name is
    /// taken, under the next one `another` gives: link(2) fails where
    /// rename(2) would replace. Then fsyncs `dir` and removes the
    /// temporary name. If `dir` cannot be made durable the new name is
    /// removed again and that is the error: a caller that reports failure
    /// must leave no copy behind (a sender that retries would make it a
    /// duplicate). Returns the name the file got.
    pub fn link_into(
        mut self,
        dir: &Path,
        name: OsString,
        mut another: impl FnMut() -> OsString,
    ) -> Result<OsString, AtPath> {
        let tmp = self.tmp.take().unwrap_or_default();
        let mut name = name;
        let mut attempts = 1;
        let result = loop {
            match link(&tmp, &dir.join(&name)) {
                Err(e)
                    if e.error.kind() == io::ErrorKind::AlreadyExists
                        && attempts < LINK_ATTEMPTS =>
                {
                    attempts += 1;
                    name = another();
                }
                linked => break linked.map(|()| name),
            }
        };
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Makes the file visible as `target`, which must not exist yet (an
    /// error of kind `AlreadyExists` if it does: whoever made it first
    /// wins), then fsyncs `target`'s directory, as [`Staged::link_into`].
    pub fn link_as(mut self, target: &Path) -> Result<(), AtPath> {
        let tmp = self.tmp.take().unwrap_or_default();
        let result = link(&tmp, target);
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Makes the file visible as `target` (replacing what is there), then
    /// fsyncs `target`'s directory. If the directory cannot be made
    /// durable, `target` is removed again and that is the error.
    pub fn rename_to(mut self, target: &Path) -> Result<(), AtPath> {
        let tmp = self.tmp.take().unwrap_or_default();
        let renamed = fault::check(Point::Rename).and_then(|()| fs::rename(&tmp, target));
        if let Err(error) = renamed {
            let _ = fs::remove_file(&tmp);
            return Err(at(target)(error));
        }
        let dir = crate::parent(target);
        sync_dir(dir).map_err(|error| {
            let _ = fs::remove_file(target);
            at(dir)(error)
        })
    }

    /// Throws the file away.
    pub fn abort(self) {}
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries as names;
    use crate::fault::fail_at;
    use std::io::Write;

    const EIO: i32 = 5;
    const EXDEV: i32 = 18;
    const ENOSPC: i32 = 28;

    /// A mailbox-like layout: `tmp/` and `new/`.
    fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        let new = root.path().join("new");
        fs::create_dir(&tmp).unwrap();
        fs::create_dir(&new).unwrap();
        (root, tmp, new)
    }

    fn stage(tmp: &Path) -> Result<Staged, AtPath> {
        Staged::write(tmp.join("m1"), 0o600, |f| f.write_all(b"message\n"))
    }

    #[test]
    fn link_into_makes_it_visible_under_a_free_name() {
        let (_root, tmp, new) = layout();
        fs::write(new.join("taken"), b"someone else").unwrap();
        let mut n = 0;
        let name = stage(&tmp)
            .unwrap()
            .link_into(&new, "taken".into(), || {
                n += 1;
                format!("free{n}").into()
            })
            .unwrap();
        assert_eq!(name, "free1");
        assert_eq!(fs::read(new.join("taken")).unwrap(), b"someone else");
        assert_eq!(fs::read(new.join("free1")).unwrap(), b"message\n");
        assert!(names(&tmp).is_empty(), "the temporary name was left");
    }

    #[test]
    fn link_as_never_replaces() {
        let (_root, tmp, new) = layout();
        stage(&tmp).unwrap().link_as(&new.join("secret")).unwrap();
        let second = Staged::write(tmp.join("m2"), 0o600, |f| f.write_all(b"other")).unwrap();
        let error = second.link_as(&new.join("secret")).unwrap_err();
        assert_eq!(error.error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(new.join("secret")).unwrap(), b"message\n");
        assert!(names(&tmp).is_empty());
    }

    #[test]
    fn rename_to_replaces_and_leaves_no_temporary() {
        let (_root, tmp, new) = layout();
        fs::write(new.join("entry"), b"old").unwrap();
        stage(&tmp).unwrap().rename_to(&new.join("entry")).unwrap();
        assert_eq!(fs::read(new.join("entry")).unwrap(), b"message\n");
        assert!(names(&tmp).is_empty());
    }

    #[test]
    fn dropped_or_aborted_it_is_gone() {
        let (_root, tmp, _new) = layout();
        drop(stage(&tmp).unwrap());
        assert!(names(&tmp).is_empty());
        stage(&tmp).unwrap().abort();
        assert!(names(&tmp).is_empty());
    }

    #[test]
    fn an_existing_file_or_link_at_the_temporary_name_is_never_written() {
        let (root, tmp, _new) = layout();
        let victim = root.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.join("m1")).unwrap();
        let error = stage(&tmp).unwrap_err();
        assert_eq!(error.error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    }

    /// Every step that can fail, failing: the error says where, nothing is
    /// visible under the final name, and no temporary file is left.
    #[test]
    fn a_failure_at_any_step_leaves_nothing_behind() {
        for (point, errno) in [
            (Point::Write, ENOSPC),
            (Point::SyncFile, EIO),
            (Point::Link, EIO),
            (Point::SyncDir, EIO),
        ] {
            let (_root, tmp, new) = layout();
            let _failing = fail_at(point, errno);
            let result = stage(&tmp).and_then(|s| s.link_into(&new, "m1".into(), || "m2".into()));
            let error = result.unwrap_err();
            assert_eq!(error.error.raw_os_error(), Some(errno), "{point:?}");
            assert!(names(&tmp).is_empty(), "{point:?}: temporary left");
            assert!(names(&new).is_empty(), "{point:?}: visible after a failure");
        }
        for (point, errno) in [(Point::Rename, EXDEV), (Point::SyncDir, EIO)] {
            let (_root, tmp, new) = layout();
            let _failing = fail_at(point, errno);
            let error = stage(&tmp)
                .and_then(|s| s.rename_to(&new.join("entry")))
                .unwrap_err();
            assert_eq!(error.error.raw_os_error(), Some(errno), "{point:?}");
            assert!(
                names(&tmp).is_empty() && names(&new).is_empty(),
                "{point:?}"
            );
        }
    }

    #[test]
    fn a_writer_that_fails_leaves_nothing() {
        let (_root, tmp, _new) = layout();
        let error = Staged::write(tmp.join("m1"), 0o600, |f| {
            f.write_all(b"half")?;
            Err(io::Error::from_raw_os_error(ENOSPC))
        })
        .unwrap_err();
        assert_eq!(error.path, tmp.join("m1"));
        assert!(names(&tmp).is_empty());
    }
}
