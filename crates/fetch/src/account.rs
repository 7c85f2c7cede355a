//! One account to fetch from, as the runner takes it (the `yubin` command
//! line builds these from its TOML file or its flags).

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::client::{AuthMethod, ServerOptions};

/// Where the password comes from. Never the command line: argv is
/// readable by every user on the machine.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of a file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// The first line a shell command prints (`pass show mail/work`).
    Command(String),
    /// Given directly (by a program using the library).
    Value(String),
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::File(path) => write!(f, "File({path:?})"),
            PasswordSource::Env(name) => write!(f, "Env({name:?})"),
            PasswordSource::Command(command) => write!(f, "Command({command:?})"),
            PasswordSource::Value(_) => f.write_str("Value(…)"),
        }
    }
}

impl PasswordSource {
    /// Reads the password. The error names the source.
    pub fn resolve(&self) -> Result<String, String> {
        let first_line = |text: &str| text.lines().next().unwrap_or("").to_owned();
        let password = match self {
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|text| first_line(&text))
                .map_err(|e| format!("password file {}: {e}", path.display()))?,
            PasswordSource::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?,
            PasswordSource::Command(command) => {
                let output = Command::new("/bin/sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("password command {command:?}: {e}"))?;
                if !output.status.success() {
                    return Err(format!(
                        "password command {command:?} failed ({})",
                        output.status
                    ));
                }
                first_line(&String::from_utf8_lossy(&output.stdout))
            }
            PasswordSource::Value(value) => value.clone(),
        };
        if password.is_empty() {
            return Err(format!("the password from {self:?} is empty"));
        }
        Ok(password)
    }
}

/// What happens to mail on the server once it is fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// DELE each message once it is delivered and recorded: POP moves mail.
    #[default]
    Delete,
    /// Leave everything on the server; fetch only what is new.
    Keep,
    /// Leave mail on the server, and delete it this many days after it was
    /// first fetched.
    KeepDays(u32),
}

/// What to do with messages over [`Policy::max_size`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Oversize {
    /// Leave them on the server, unfetched.
    #[default]
    Skip,
    /// Deliver their headers (TOP n 0) with an `X-Yubin-Fetch-Truncated`
    /// header added; the whole message stays on the server.
    Headers,
}

/// What to fetch and what to leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Delete, keep, or keep for N days.
    pub retention: Retention,
    /// Messages larger than this (LIST size) are not fetched whole.
    pub max_size: Option<u64>,
    /// What to do with them.
    pub oversize: Oversize,
    /// Most new messages fetched per run.
    pub limit: Option<usize>,
}

/// One account.
#[derive(Clone, Debug)]
pub struct Account {
    /// The account's name: the ledger's file name and the label in reports.
    pub name: String,
    /// Where to connect.
    pub server: ServerOptions,
    /// The login name.
    pub user: String,
    /// The password's source.
    pub password: PasswordSource,
    /// How to log in.
    pub auth: AuthMethod,
    /// What to fetch and keep.
    pub policy: Policy,
    /// Where the ledger lives.
    pub state_dir: PathBuf,
    /// How long to wait before trying again when the maildrop is in use
    /// (`[IN-USE]`); two more attempts are made.
    pub in_use_wait: Duration,
}

/// Whether an account name can be a file name: letters, digits, `.`, `_`,
/// `-` and `@`, not starting with a dot.
pub fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret with space\nsecond line\n").unwrap();
        assert_eq!(
            PasswordSource::File(file).resolve().unwrap(),
            "s3cret with space"
        );
        assert_eq!(
            PasswordSource::Command("printf 'from-cmd\\n'".into())
                .resolve()
                .unwrap(),
            "from-cmd"
        );
        assert!(PasswordSource::Command("exit 3".into()).resolve().is_err());
        let missing = PasswordSource::Env("YUBIN_TEST_SURELY_UNSET".into()).resolve();
        assert!(missing.unwrap_err().contains("YUBIN_TEST_SURELY_UNSET"));
        assert!(!format!("{:?}", PasswordSource::Value("x".into())).contains('x'));
    }

    #[test]
    fn account_names() {
        assert!(valid_account_name("work"));
        assert!(valid_account_name("alice@pop.example.org"));
        assert!(!valid_account_name("../x"));
        assert!(!valid_account_name(".hidden"));
        assert!(!valid_account_name(""));
    }
}
