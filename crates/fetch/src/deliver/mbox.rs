//! Delivery into an mbox file in the mboxrd form: a `From ` separator
//! line, every body line matching `>*From ` quoted with one more `>`, and
//! a blank line after the message, so the quoting can be undone exactly.
//!
//! The file is locked with a POSIX fcntl lock (the lock mutt, Dovecot and
//! procmail take, among others), appended to, and fsynced; if a write fails the file is cut back
//! to its old length, so a failed delivery leaves no partial message.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use super::{Deliver, DeliverError, return_path};

/// How long to wait for another program's lock on the mbox.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// An mbox file (created if missing).
#[derive(Debug, Clone)]
pub struct MboxDestination {
    path: PathBuf,
}

impl MboxDestination {
    /// Appends to the mbox at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        MboxDestination { path: path.into() }
    }

    fn append(&self, file: &mut File, message: &[u8]) -> io::Result<()> {
        let old_len = file.seek(SeekFrom::End(0))?;
        let mut out = Vec::with_capacity(message.len() + 128);
        if old_len > 0 && !ends_with_blank_line(file, old_len)? {
            out.push(b'\n');
        }
        out.extend_from_slice(&separator(message, crate::ledger::now_secs()));
        quote_into(message, &mut out);
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.push(b'\n');
        let written = file.write_all(&out).and_then(|()| file.sync_all());
        if let Err(error) = written {
            // Leave the mbox as it was: no partial message for readers.
            let _ = file.set_len(old_len);
            let _ = file.sync_all();
            return Err(error);
        }
        Ok(())
    }
}

impl Deliver for MboxDestination {
    fn deliver(&self, message: &[u8]) -> Result<(), DeliverError> {
        let shown = self.path.display();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| DeliverError::temporary(format!("{shown}: {e}")))?;
        let deadline = Instant::now() + LOCK_WAIT;
        while rustix::fs::fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            if Instant::now() >= deadline {
                return Err(DeliverError::temporary(format!(
                    "{shown}: locked by another program for {LOCK_WAIT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let result = self
            .append(&mut file, message)
            .map_err(|e| DeliverError::temporary(format!("{shown}: {e}")));
        let _ = rustix::fs::fcntl_lock(&file, FlockOperation::Unlock);
        result
    }

    fn describe(&self) -> String {
        format!("mbox:{}", self.path.display())
    }
}

fn ends_with_blank_line(file: &mut File, len: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut tail = [0u8; 2];
    let start = len.saturating_sub(2);
    let n = file.read_at(&mut tail[..(len - start) as usize], start)?;
    Ok(&tail[..n] == b"\n\n" || (n == 1 && tail[0] == b'\n'))
}

/// `From SENDER DATE`: the sender from the Return-Path header, or
/// MAILER-DAEMON; the date in asctime form, UTC.
fn separator(message: &[u8], now: u64) -> Vec<u8> {
    let sender = return_path(message).unwrap_or_else(|| "MAILER-DAEMON".to_owned());
    format!("From {sender} {}\n", yubin_line::date::asctime(now)).into_bytes()
}

/// mboxrd: `>*From ` at the start of a line gets one more `>`.
fn quote_into(message: &[u8], out: &mut Vec<u8>) {
    for line in message.split_inclusive(|&b| b == b'\n') {
        let unquoted = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
        if line[unquoted..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mboxrd_quoting_and_separators() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        let mbox = MboxDestination::new(&path);
        mbox.deliver(b"Return-Path: <a@example.org>\nSubject: one\n\nFrom here\n>From there\nx")
            .unwrap();
        mbox.deliver(b"Subject: two\n\nbody\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(lines[0].starts_with("From a@example.org "), "{text}");
        assert_eq!(
            &lines[1..8],
            [
                "Return-Path: <a@example.org>",
                "Subject: one",
                "",
                ">From here",
                ">>From there",
                "x",
                ""
            ]
        );
        assert!(lines[8].starts_with("From MAILER-DAEMON "));
        assert_eq!(&lines[9..], ["Subject: two", "", "body", "", ""]);
    }

    #[test]
    fn a_locked_mbox_waits_for_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        std::fs::write(&path, b"").unwrap();
        // Another process (as a mail reader would be) holds an fcntl lock.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg("import fcntl,sys,time; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(0.6)")
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "locked\n");
        let mbox = MboxDestination::new(&path);
        let writer = std::thread::spawn(move || mbox.deliver(b"Subject: x\n\nbody\n"));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        holder.wait().unwrap();
        writer.join().unwrap().unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("body"));
    }
}
