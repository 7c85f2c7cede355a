//! A message being received: kept in memory while small, spilled to a file
//! in `{data_dir}/spool/` when large, so a 50 MB message costs no 50 MB of
//! memory per session.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use yubin_pop3_proto::WireSize;

/// Content beyond this size goes to a file.
const IN_MEMORY: usize = 1024 * 1024;

/// How much of the beginning [`Spool::head`] keeps.
pub(crate) const HEAD: usize = 64 * 1024;

/// The content of one message (LF line ends).
pub(crate) struct Spool {
    dir: PathBuf,
    /// The first octets, kept even after a spill: the header is there.
    head: Vec<u8>,
    memory: Vec<u8>,
    file: Option<(PathBuf, File)>,
    size: u64,
    wire: WireSize,
    failed: Option<io::Error>,
}

impl Spool {
    pub(crate) fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_owned(),
            head: Vec::new(),
            memory: Vec::new(),
            file: None,
            size: 0,
            wire: WireSize::new(),
            failed: None,
        }
    }

    /// Appends content. A write error is kept and reported at the end
    /// (the client is still reading DATA; the reply comes then).
    pub(crate) fn append(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.wire.update(bytes);
        let room = HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        if self.failed.is_some() {
            return;
        }
        if self.file.is_none() && self.memory.len() + bytes.len() <= IN_MEMORY {
            self.memory.extend_from_slice(bytes);
            return;
        }
        if let Err(error) = self.spill(bytes) {
            self.failed = Some(error);
        }
    }

    fn spill(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(yubin_queue::new_id());
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some((path, file));
        }
        if let Some((_, file)) = &mut self.file {
            file.write_all(bytes)?;
        }
        Ok(())
    }

    /// The first octets of the content (at most [`HEAD`]).
    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }

    /// Octets of content.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Octets on the POP3 wire (for `,W=`).
    pub(crate) fn wire_size(&self) -> u64 {
        self.wire.clone().finish()
    }

    /// A write error met while receiving, if any.
    pub(crate) fn failure(&self) -> Option<&io::Error> {
        self.failed.as_ref()
    }

    /// Replaces the first `old` octets (the header section) with `header`,
    /// keeping the rest: the content is written anew, in memory or in a
    /// new file, and the old file goes.
    pub(crate) fn replace_header(&mut self, old: usize, header: &[u8]) -> io::Result<()> {
        let mut new = Spool::new(&self.dir);
        new.append(header);
        match &mut self.file {
            None => new.append(self.memory.get(old..).unwrap_or_default()),
            Some((_, file)) => {
                file.seek(SeekFrom::Start(old as u64))?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    new.append(&buf[..n]);
                }
            }
        }
        if let Some(error) = new.failed.take() {
            return Err(error);
        }
        *self = new;
        Ok(())
    }

    /// The first `limit` octets of the content (all of it if shorter): a
    /// header section longer than [`HEAD`] is read from here.
    pub(crate) fn prefix(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        match &mut self.file {
            None => Ok(self.memory[..limit.min(self.memory.len())].to_vec()),
            Some((_, file)) => {
                file.seek(SeekFrom::Start(0))?;
                let mut out = Vec::new();
                file.take(limit as u64).read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }

    /// Copies the content into `out` (once per recipient).
    pub(crate) fn copy_to(&mut self, out: &mut (impl Write + ?Sized)) -> io::Result<()> {
        match &mut self.file {
            None => out.write_all(&self.memory),
            Some((_, file)) => {
                file.seek(SeekFrom::Start(0))?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&buf[..n])?;
                }
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some((path, _)) = self.file.take() {
            let _ = fs::remove_file(path);
        }
    }
}
