//! Dovecot's passwd-file: `user:password:uid:gid:gecos:home:shell:extra_fields`.
//!
//! Only the first two fields are required. `#` comments and blank lines are
//! kept when the file is rewritten, so an administrator's notes survive
//! `yubin user add`. The file is rewritten atomically: a temporary file in the
//! same directory, fsync, rename over the old one, fsync of the directory.

use std::fs;
use std::io;
use std::path::Path;

/// One user line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    /// `name` or `name@domain`.
    pub name: String,
    /// The password field, `{SCHEME}data`.
    pub password: String,
    /// The uid field (unused by yubin, kept).
    pub uid: String,
    /// The gid field (unused by yubin, kept).
    pub gid: String,
    /// The gecos field.
    pub gecos: String,
    /// The home directory (`%h` in mail_location, `~` in `userdb_mail`).
    pub home: String,
    /// The shell field (unused, kept).
    pub shell: String,
    /// Space-separated `key=value` extra fields; yubin reads `userdb_mail`.
    pub extra: String,
}

impl UserEntry {
    /// A new entry with just a name and a password field.
    pub fn new(name: &str, password: String) -> UserEntry {
        UserEntry {
            name: name.to_owned(),
            password,
            uid: String::new(),
            gid: String::new(),
            gecos: String::new(),
            home: String::new(),
            shell: String::new(),
            extra: String::new(),
        }
    }

    /// Parses one line. The extra fields may contain `:` (as in
    /// `userdb_mail=maildir:~/Maildir`), so the line is split into at most 8 fields.
    pub fn parse(line: &str) -> Result<UserEntry, String> {
        let mut fields = line.splitn(8, ':');
        let name = fields.next().unwrap_or_default();
        let password = fields
            .next()
            .ok_or_else(|| "no password field (expected user:password:…)".to_owned())?;
        if let Err(why) = check_user_name(name) {
            return Err(format!("invalid user name {name:?}: {why}"));
        }
        let mut next = || fields.next().unwrap_or_default().to_owned();
        Ok(UserEntry {
            name: name.to_owned(),
            password: password.to_owned(),
            uid: next(),
            gid: next(),
            gecos: next(),
            home: next(),
            shell: next(),
            extra: next(),
        })
    }

    /// The line as written to the file (without newline). Trailing empty
    /// fields are left out, as Dovecot's examples do.
    pub fn to_line(&self) -> String {
        let fields = [
            self.name.as_str(),
            &self.password,
            &self.uid,
            &self.gid,
            &self.gecos,
            &self.home,
            &self.shell,
            &self.extra,
        ];
        let used = fields.iter().rposition(|f| !f.is_empty()).unwrap_or(0) + 1;
        fields[..used.max(2)].join(":")
    }

    /// The value of an extra field `key=value` (e.g. `userdb_mail`).
    pub fn extra_field(&self, key: &str) -> Option<&str> {
        self.extra
            .split_ascii_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Checks a user name for use in the file, in paths and in logs: 1–255
/// octets, no control characters, spaces, `:`, `/`, `\`, `%`; not starting
/// with `.` or `#` (a passwd-file comment); at most one `@`, with a local
/// part before it and a valid domain name after it. The domain is a
/// directory of the default mail layout (`mail/<domain>/<local>`), so
/// `bob@.` would be bob's own Maildir and `x@.hidden` a hidden directory
/// (issue 12): [`check_domain`] holds it to DNS's rules.
pub fn check_user_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 255 {
        return Err("longer than 255 octets");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains a control character or space");
    }
    if name.contains([':', '/', '\\', '%']) {
        return Err("contains ':', '/', '\\' or '%'");
    }
    if name.starts_with('.') || name.contains("..") {
        return Err("starts with '.' or contains '..'");
    }
    if name.starts_with('#') {
        return Err("starts with '#' (a comment in the passwd-file)");
    }
    let mut parts = name.split('@');
    let local = parts.next().unwrap_or_default();
    match (parts.next(), parts.next()) {
        (None, _) => Ok(()),
        (Some(domain), None) if !local.is_empty() && !domain.is_empty() => check_domain(domain),
        (Some(_), None) => Err("has an empty part before or after '@'"),
        (Some(_), Some(_)) => Err("contains more than one '@'"),
    }
}

/// A domain as DNS names it (RFC 1035 §2.3.1, with RFC 1123's leading
/// digits): dot-separated labels of 1–63 letters, digits and hyphens, not
/// starting or ending with a hyphen, at most 253 octets, no final dot.
/// Letters beyond ASCII are allowed (internationalised domains, RFC 5890
/// U-labels), so `bücher.example` is a domain.
pub fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.len() > 253 {
        return Err("has a domain longer than 253 octets");
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err("has a domain with an empty label (a leading, trailing or double '.')");
        }
        if label.len() > 63 {
            return Err("has a domain label longer than 63 octets");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a domain label that starts or ends with '-'");
        }
        if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err("has a domain with characters other than letters, digits, '-' and '.'");
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum FileLine {
    Other(String),
    User(UserEntry),
}

/// A problem on one line of a passwd-file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// A whole passwd-file, comments included, for reading and rewriting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PasswdFile {
    lines: Vec<FileLine>,
}

impl PasswdFile {
    /// Parses the file's text. Malformed user lines are kept verbatim (so a
    /// rewrite does not destroy them) and reported.
    pub fn parse(text: &str) -> (PasswdFile, Vec<LineError>) {
        let mut lines = Vec::new();
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(FileLine::Other(raw.to_owned()));
                continue;
            }
            match UserEntry::parse(raw) {
                Ok(entry) => {
                    if !seen.insert(entry.name.to_ascii_lowercase()) {
                        errors.push(LineError {
                            line: i + 1,
                            reason: format!(
                                "user {:?} appears again; the first entry wins",
                                entry.name
                            ),
                        });
                    }
                    lines.push(FileLine::User(entry));
                }
                Err(reason) => {
                    errors.push(LineError {
                        line: i + 1,
                        reason,
                    });
                    lines.push(FileLine::Other(raw.to_owned()));
                }
            }
        }
        (PasswdFile { lines }, errors)
    }

    /// Reads a file; a missing file is an empty one.
    pub fn load(path: &Path) -> io::Result<(PasswdFile, Vec<LineError>)> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(PasswdFile::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok((PasswdFile::default(), Vec::new()))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                FileLine::Other(raw) => text.push_str(raw),
                FileLine::User(entry) => text.push_str(&entry.to_line()),
            }
            text.push('\n');
        }
        yubin_durable::replace(path, text.as_bytes(), 0o600)
    }

    /// The user lines.
    pub fn users(&self) -> impl Iterator<Item = &UserEntry> {
        self.lines.iter().filter_map(|l| match l {
            FileLine::User(u) => Some(u),
            FileLine::Other(_) => None,
        })
    }

    /// A user by name (ASCII case-insensitive).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut UserEntry> {
        self.lines.iter_mut().find_map(|l| match l {
            FileLine::User(u) if u.name.eq_ignore_ascii_case(name) => Some(u),
            _ => None,
        })
    }

    /// A file of `entries`, in order, with no comments (users kept
    /// elsewhere, whose names are already unique).
    pub fn from_entries(entries: Vec<UserEntry>) -> PasswdFile {
        PasswdFile {
            lines: entries.into_iter().map(FileLine::User).collect(),
        }
    }

    /// Adds a user at the end; false if the name is taken.
    pub fn add(&mut self, entry: UserEntry) -> bool {
        if self.get_mut(&entry.name).is_some() {
            return false;
        }
        self.lines.push(FileLine::User(entry));
        true
    }

    /// Removes a user; false if there was none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, FileLine::User(u) if u.name.eq_ignore_ascii_case(name)));
        self.lines.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dovecot_lines() {
        let e = UserEntry::parse(
            "user:{plain}pass:1000:1000::/home/user::userdb_mail=maildir:~/Maildir allow_nets=192.168.0.0/24",
        )
        .unwrap();
        assert_eq!(e.name, "user");
        assert_eq!(e.password, "{plain}pass");
        assert_eq!(e.home, "/home/user");
        assert_eq!(e.extra_field("userdb_mail"), Some("maildir:~/Maildir"));
        assert_eq!(e.extra_field("allow_nets"), Some("192.168.0.0/24"));
        assert_eq!(e.extra_field("mail"), None);
        let minimal = UserEntry::parse("bob@example.org:{PLAIN}x").unwrap();
        assert_eq!(minimal.to_line(), "bob@example.org:{PLAIN}x");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            ".hidden",
            "a/b",
            "a:b",
            "../x",
            "a b",
            "a@b@c",
            "@x",
            "x@",
            "a%n",
            "a\u{7}",
            // Issue 12: domains that are not domains.
            "bob@.",
            "x@.hidden",
            "x@-",
            "x@.example.org",
            "x@example.org.",
            "x@-a.org",
            "x@a-.org",
            "x@a_b.org",
            "x@a b.org",
            "#comment",
        ] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "alice",
            "alice@example.org",
            "jörg",
            "a.b-c_d",
            "x@bücher.example",
            "x@localhost",
            "x@a-b.0x.example",
        ] {
            assert!(check_user_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn comments_and_bad_lines_survive_a_rewrite() {
        let text = "# users\n\nalice:{PLAIN}a\nbroken line\nbob:{PLAIN}b:::::\nalice:{PLAIN}dup\n";
        let (mut file, errors) = PasswdFile::parse(text);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 4);
        assert_eq!(errors[1].line, 6);
        assert!(file.add(UserEntry::new("carol", "{PLAIN}c".into())));
        assert!(!file.add(UserEntry::new("ALICE", "{PLAIN}x".into())));
        assert!(file.remove("Bob"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        file.save(&path).unwrap();
        let written = fs::read_to_string(&path).unwrap();
        assert_eq!(
            written,
            "# users\n\nalice:{PLAIN}a\nbroken line\nalice:{PLAIN}dup\ncarol:{PLAIN}c\n"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
