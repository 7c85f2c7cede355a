//! Fault injection for the tests: each step that can fail asks
//! [`check`] first, and a test can make one step fail on its thread. In
//! other builds `check` is an empty inline function.

/// A step of a durable write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    /// Writing the contents.
    Write,
    /// `fsync` of the file.
    SyncFile,
    /// `rename` to the final name.
    Rename,
    /// `link` under the final name.
    Link,
    /// `fsync` of the directory.
    SyncDir,
}

#[cfg(not(test))]
#[inline(always)]
pub(crate) fn check(_: Point) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) use injected::{check, fail_at};

#[cfg(test)]
mod injected {
    use super::Point;
    use std::cell::Cell;
    use std::io;

    thread_local! {
        static FAILING: Cell<Option<(Point, i32)>> = const { Cell::new(None) };
    }

    /// Fails every `point` on this thread with OS error `errno` until the
    /// guard is dropped.
    pub(crate) fn fail_at(point: Point, errno: i32) -> impl Drop {
        FAILING.with(|f| f.set(Some((point, errno))));
        Reset
    }

    struct Reset;

    impl Drop for Reset {
        fn drop(&mut self) {
            FAILING.with(|f| f.set(None));
        }
    }

    pub(crate) fn check(point: Point) -> io::Result<()> {
        match FAILING.with(Cell::get) {
            Some((at, errno)) if at == point => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}
