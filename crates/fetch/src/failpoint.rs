//! Crash points for the kill -9 tests (`--features failpoints`, which the
//! workspace's test build turns on and a release build never has).
//!
//! With `YUBIN_FETCH_FAILPOINT=NAME` (or `NAME:N`, the Nth time) in the
//! environment, the process sends itself SIGKILL when it reaches that
//! point: no destructor runs, nothing is flushed, exactly like `kill -9`.
//! The points: `after-deliver`, `after-record`, `after-dele`,
//! `after-quit-sent`.

/// Dies here if the environment says so.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) {
    use std::sync::Mutex;
    static HITS: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());
    let Ok(wanted) = std::env::var("YUBIN_FETCH_FAILPOINT") else {
        return;
    };
    let (point, nth) = match wanted.split_once(':') {
        Some((point, n)) => (point, n.parse().unwrap_or(1)),
        None => (wanted.as_str(), 1),
    };
    if point != name {
        return;
    }
    let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
    let count = match hits.iter_mut().find(|(n, _)| n == name) {
        Some((_, count)) => {
            *count += 1;
            *count
        }
        None => {
            hits.push((name.to_owned(), 1));
            1
        }
    };
    if count == nth {
        eprintln!("failpoint {name}: killing myself");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Without the feature, crash points compile to nothing.
#[cfg(not(feature = "failpoints"))]
pub(crate) fn hit(_name: &str) {}
