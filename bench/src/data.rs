//! Test data: users, Maildirs and the bytes a client must receive.

use std::fs;
use std::io::Write;
use std::os::unix::fs::chown;
use std::path::Path;

use anyhow::{Context, Result};

/// The password every benchmark user has.
pub const PASSWORD: &str = "bench-pw";

/// A benchmark user's name.
pub fn user(n: usize) -> String {
    format!("u{n}")
}

/// A passwd-file (Dovecot's format, read by both servers) for `count` users.
pub fn write_passwd(path: &Path, count: usize, scheme: &str) -> Result<()> {
    let field = match scheme {
        "PLAIN" => format!("{{PLAIN}}{PASSWORD}"),
        // `doveadm pw -s SHA512-CRYPT -p bench-pw`-equivalent, made once.
        "SHA512-CRYPT" => sha512_crypt_field(),
        other => anyhow::bail!("--scheme {other}: use PLAIN or SHA512-CRYPT"),
    };
    let mut text = String::with_capacity(count * 40);
    for n in 0..count {
        text.push_str(&format!("{}:{field}\n", user(n)));
    }
    fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn sha512_crypt_field() -> String {
    // A fixed hash of "bench-pw", made with `yubin pw -s SHA512-CRYPT`
    // (5000 rounds, the default of both servers); both verify it with crypt.
    "{SHA512-CRYPT}$6$rounds=5000$FeM5rcEymLnvmB85$uVGkGBtqjz1QgWDlkUS/FO/HjaRJ.DKBnUbL//1kT0B/KSGiOofOr00.UjUBHBPmVr3MbDyj6oUS4qXcQTN7O.".to_owned()
}

/// A message of about `size` octets, numbered `n` in its Subject, with LF
/// line ends (as stored in Maildir) and some lines starting with a dot.
pub fn message(n: usize, size: usize) -> Vec<u8> {
    let mut out = format!(
        "Return-Path: <sender@bench.example>\nFrom: Sender <sender@bench.example>\nTo: user@bench.example\n\
         Subject: bench message {n}\nMessage-ID: <{n}.bench@bench.example>\nDate: Thu, 26 Nov 2026 12:00:00 +0000\n\n"
    )
    .into_bytes();
    let mut line = 0usize;
    while out.len() < size {
        if line % 23 == 7 {
            out.extend_from_slice(b".a line starting with a dot, stuffed on the wire\n");
        } else {
            out.extend_from_slice(
                format!(
                    "{n:06} {line:06} Lorem ipsum dolor sit amet, consectetur adipiscing elit sed\n"
                )
                .as_bytes(),
            );
        }
        line += 1;
    }
    out
}

/// The number in a message's Subject (`bench message N`), as the client sees it.
pub fn message_number(body: &[u8]) -> Option<usize> {
    let at = memmem(body, b"Subject: bench message ")? + 23;
    let end = body[at..].iter().position(|b| !b.is_ascii_digit())? + at;
    std::str::from_utf8(&body[at..end]).ok()?.parse().ok()
}

fn memmem(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a client receives for a stored message (RFC 1939): CRLF line ends,
/// before byte-stuffing. Written here independently of yubin's code.
pub fn wire(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + stored.len() / 40);
    for line in stored.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Writes messages into a fresh Maildir. With `tagged`, names carry `,S=`
/// and `,W=` as Dovecot's and yubin's deliveries do; without, they are bare
/// (as other programs write them).
pub fn write_maildir(
    root: &Path,
    messages: impl Iterator<Item = (usize, Vec<u8>)>,
    tagged: bool,
) -> Result<usize> {
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(root.join(sub))?;
    }
    let mut count = 0;
    for (n, content) in messages {
        let base = format!("{}.M{n}P1.bench", 1_700_000_000 + n);
        let name = if tagged {
            format!("{base},S={},W={}", content.len(), wire(&content).len())
        } else {
            base
        };
        let mut file = fs::File::create(root.join("new").join(name))?;
        file.write_all(&content)?;
        count += 1;
    }
    Ok(count)
}

/// Gives a tree to `nobody` (Dovecot refuses to run mail processes as root).
pub fn chown_nobody(root: &Path) -> Result<()> {
    let (uid, gid) = (65534, 65534);
    chown(root, Some(uid), Some(gid))?;
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            chown_nobody(&path)?;
        } else {
            chown(&path, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_size_and_number_asked_for() {
        let m = message(42, 10_000);
        assert!(m.len() >= 10_000 && m.len() < 10_100);
        assert_eq!(message_number(&wire(&m)), Some(42));
        assert!(wire(&m).windows(3).any(|w| w == b"\n.a"));
        assert_eq!(wire(b"a\nb"), b"a\r\nb\r\n");
    }
}
