//! CPU time and memory of a process and its descendants, from /proc.

use std::fs;

/// A snapshot of a process tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// CPU seconds (user + system, including reaped children).
    pub cpu: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Proportional set size, KiB.
    pub pss_kib: u64,
    /// Processes in the tree.
    pub processes: usize,
}

/// The ids of `root` and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found
}

/// Fields of /proc/PID/stat after the command name (state is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Sums CPU and memory over the tree under `root`.
pub fn usage(root: u32) -> Usage {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = Usage::default();
    for pid in tree(root) {
        if let Some(fields) = stat_fields(pid) {
            // utime, stime, cutime, cstime are fields 14–17 of stat (11–14 here).
            let cpu: f64 = fields
                .iter()
                .skip(11)
                .take(4)
                .filter_map(|f| f.parse::<f64>().ok())
                .sum();
            total.cpu += cpu / ticks;
        }
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            total.rss_kib += field_kib(&rollup, "Rss:");
            total.pss_kib += field_kib(&rollup, "Pss:");
        }
        total.processes += 1;
    }
    total
}

fn field_kib(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds this process (the load generator) has used.
pub fn own_cpu() -> f64 {
    usage_of_self()
}

fn usage_of_self() -> f64 {
    let pid = std::process::id();
    stat_fields(pid)
        .map(|f| {
            f.iter()
                .skip(11)
                .take(2)
                .filter_map(|x| x.parse::<f64>().ok())
                .sum::<f64>()
                / 100.0
        })
        .unwrap_or(0.0)
}
