//! The server secret: 32 random octets in a file (hex), made on the first
//! start and kept. It is what SCRAM salts that are not stored derive from
//! (`yubin_auth::Users::set_secret`), so they stay the same across restarts
//! and on every node that is given the same file (issue 12).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Reads the secret from `path`, or makes one there (mode 0600) if the
/// file does not exist.
pub fn load_or_create(path: &Path) -> io::Result<Vec<u8>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            // The secret exists, so nobody is making one: temporary files
            // beside it are what a crash left while one was being made.
            let _ = yubin_durable::remove_leftovers(path);
            decode(text.trim()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not 64 hexadecimal digits (delete it to have a new one made)",
                )
            })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).map_err(io::Error::other)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)?;
            }
            let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            // Written whole under a temporary name, then linked into
            // place: a crash leaves no torn secret, and of two nodes
            // starting at once on a shared file the second's link fails
            // and it reads the first's.
            let mut tag = [0u8; 8];
            getrandom::fill(&mut tag).map_err(io::Error::other)?;
            // Named as yubin_durable::remove_leftovers expects.
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let tmp = path.with_file_name(format!(
                ".{}.tmp.{}.{}",
                name.unwrap_or_default(),
                std::process::id(),
                u64::from_ne_bytes(tag)
            ));
            let staged = yubin_durable::Staged::write(tmp, 0o600, |file| {
                file.write_all(format!("{text}\n").as_bytes())
            })
            .map_err(|e| e.error)?;
            match staged.link_as(path) {
                Ok(()) => Ok(secret),
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(e) => Err(e.error),
            }
        }
        Err(error) => Err(error),
    }
}

fn decode(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create(&path).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::write(&path, "short\n").unwrap();
        assert!(load_or_create(&path).is_err());
    }

    #[test]
    fn a_crash_while_making_it_leaves_nothing_that_lasts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        // What a crash between writing and linking leaves.
        let torn = dir.path().join(".secret.tmp.4242.7");
        fs::write(&torn, "0123").unwrap();
        let made = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), made);
        assert!(!torn.exists(), "the leftover stayed");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["secret"]);
    }
}
