//! Delivery through a command (an MDA: procmail, maildrop, `dovecot-lda`):
//! the message on its standard input, its exit status the verdict. 0 is
//! delivered; 75 (EX_TEMPFAIL) is a temporary failure; anything else, or
//! death by a signal, is a failure that stops the run (the message stays
//! on the server either way).

use std::io::Write;
use std::process::{Command, Stdio};

use super::{Deliver, DeliverError};

/// A command run with `/bin/sh -c` for each message.
#[derive(Debug, Clone)]
pub struct MdaDestination {
    command: String,
}

impl MdaDestination {
    /// Runs `command` (a shell command line) per message.
    pub fn new(command: impl Into<String>) -> Self {
        MdaDestination {
            command: command.into(),
        }
    }
}

impl Deliver for MdaDestination {
    fn deliver(&self, message: &[u8]) -> Result<(), DeliverError> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| DeliverError::temporary(format!("cannot run {:?}: {e}", self.command)))?;
        // An MDA that exits without reading everything has not delivered
        // it; its exit status decides below, so a broken pipe is not fatal here.
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(message))
            .transpose();
        let status = child
            .wait()
            .map_err(|e| DeliverError::temporary(format!("waiting for {:?}: {e}", self.command)))?;
        match status.code() {
            Some(0) if written.is_ok() => Ok(()),
            Some(0) => Err(DeliverError::temporary(format!(
                "{:?} exited 0 without reading the whole message",
                self.command
            ))),
            Some(75) => Err(DeliverError::temporary(format!(
                "{:?} exited 75 (temporary failure)",
                self.command
            ))),
            Some(code) => Err(DeliverError::permanent(format!(
                "{:?} exited {code}",
                self.command
            ))),
            None => Err(DeliverError::permanent(format!(
                "{:?} was killed by a signal",
                self.command
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("mda:{}", self.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_decides() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mda = MdaDestination::new(format!("cat > '{}'", out.display()));
        mda.deliver(b"Subject: x\n\nbody\n").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"Subject: x\n\nbody\n");
        let temp = MdaDestination::new("cat >/dev/null; exit 75").deliver(b"x\n");
        assert!(temp.unwrap_err().temporary);
        let perm = MdaDestination::new("cat >/dev/null; exit 1").deliver(b"x\n");
        assert!(!perm.unwrap_err().temporary);
    }
}
