//! The `yubin fetch` configuration file: accounts in TOML (documented in
//! docs/fetch.md). Part of the library so that the file is read the same
//! wherever the fetcher is used; [`resolve`] turns settings into an
//! [`Account`](crate::Account).
//!
//! ```toml
//! [accounts.work]
//! server = "pop.example.org"      # implicit TLS on 995 by default
//! user = "alice"
//! password_file = "~/.config/yubin/work.password"
//! maildir = "~/Maildir"           # or mbox, mda, to (a yubin user), smtp, lmtp
//! keep_days = 30                  # or keep = true; default: delete
//! ```
//!
//! Every key of an account can also be given at the top level, as the
//! default for all accounts. Unknown keys are errors, named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use yubin_duration::HumanDuration;

use crate::deliver::Endpoint;
use crate::tls::{Trust, parse_fingerprint};
use crate::{
    Account, AuthMethod, Oversize, PasswordSource, Policy, Retention, ServerOptions, TlsMode,
};

/// The settings of one account, as written (all optional until merged).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// The POP3 server's host name.
    pub server: Option<String>,
    /// Its port (default: 995, or 110 without implicit TLS).
    pub port: Option<u16>,
    /// `implicit`, `stls` or `none`.
    pub tls: Option<String>,
    /// Allow a password over an unencrypted connection.
    pub allow_plaintext: Option<bool>,
    /// Trust the server's certificate by its SHA-256 fingerprint.
    pub fingerprint: Option<String>,
    /// The login name.
    pub user: Option<String>,
    /// Read the password from this file.
    pub password_file: Option<String>,
    /// Read the password from this environment variable.
    pub password_env: Option<String>,
    /// Read the password from this command's output.
    pub password_command: Option<String>,
    /// The login method: `auto`, `user`, `apop`, or a SASL mechanism.
    pub auth: Option<String>,
    /// Deliver into this Maildir.
    pub maildir: Option<String>,
    /// Deliver into this mbox file.
    pub mbox: Option<String>,
    /// Deliver through this command.
    pub mda: Option<String>,
    /// Deliver to this user of the local yubin server.
    pub to: Option<String>,
    /// Deliver to this SMTP server.
    pub smtp: Option<String>,
    /// Deliver to this LMTP server.
    pub lmtp: Option<String>,
    /// The recipient for `smtp` and `lmtp`.
    pub recipient: Option<String>,
    /// Delete fetched mail from the server (the default).
    pub delete: Option<bool>,
    /// Leave fetched mail on the server.
    pub keep: Option<bool>,
    /// Leave fetched mail on the server this many days.
    pub keep_days: Option<u32>,
    /// Messages larger than this are handled as `oversize` says.
    pub max_size: Option<Size>,
    /// `skip` or `headers`, for messages over `max_size`.
    pub oversize: Option<String>,
    /// Fetch at most this many messages per run.
    pub limit: Option<usize>,
    /// How long to wait for the server.
    pub timeout: Option<HumanDuration>,
    /// How long to wait for a maildrop another session holds.
    pub in_use_wait: Option<HumanDuration>,
    /// Where the ledger lives.
    pub state_dir: Option<String>,
    /// The yubin server's configuration file, for `to`.
    pub yubin_config: Option<String>,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchFile {
    /// Top-level keys: the default for every account.
    #[serde(flatten)]
    pub defaults: AccountSettings,
    /// `[accounts.NAME]` tables.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountSettings>,
}

/// A size: octets, or with a K, M or G suffix (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// Parses `1048576`, `1024K`, `1M` or `1G`.
    pub fn parse(text: &str) -> Result<Size, String> {
        let text = text.trim();
        let (digits, shift) = match text.as_bytes().last() {
            Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
            Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
            Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
            _ => (text, 0),
        };
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size (examples: 500000, \"500K\", \"10M\")"))?;
        value
            .checked_mul(1 << shift)
            .map(Size)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(text) => Size::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl AccountSettings {
    /// `self`, with `defaults` filling the gaps.
    pub fn or(self, defaults: &AccountSettings) -> AccountSettings {
        let d = defaults.clone();
        AccountSettings {
            server: self.server.or(d.server),
            port: self.port.or(d.port),
            tls: self.tls.or(d.tls),
            allow_plaintext: self.allow_plaintext.or(d.allow_plaintext),
            fingerprint: self.fingerprint.or(d.fingerprint),
            user: self.user.or(d.user),
            password_file: self.password_file.or(d.password_file),
            password_env: self.password_env.or(d.password_env),
            password_command: self.password_command.or(d.password_command),
            auth: self.auth.or(d.auth),
            maildir: self.maildir.or(d.maildir),
            mbox: self.mbox.or(d.mbox),
            mda: self.mda.or(d.mda),
            to: self.to.or(d.to),
            smtp: self.smtp.or(d.smtp),
            lmtp: self.lmtp.or(d.lmtp),
            recipient: self.recipient.or(d.recipient),
            delete: self.delete.or(d.delete),
            keep: self.keep.or(d.keep),
            keep_days: self.keep_days.or(d.keep_days),
            max_size: self.max_size.or(d.max_size),
            oversize: self.oversize.or(d.oversize),
            limit: self.limit.or(d.limit),
            timeout: self.timeout.or(d.timeout),
            in_use_wait: self.in_use_wait.or(d.in_use_wait),
            state_dir: self.state_dir.or(d.state_dir),
            yubin_config: self.yubin_config.or(d.yubin_config),
        }
    }
}

/// Where an account's mail goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Maildir.
    Maildir(PathBuf),
    /// An mbox file.
    Mbox(PathBuf),
    /// A delivery command.
    Mda(String),
    /// A user of the local yubin server, and its configuration file.
    LocalUser(String, Option<PathBuf>),
    /// An SMTP or LMTP server, and the recipient.
    Smtp(Endpoint, bool, String),
}

/// An account ready to run, and its destination.
#[derive(Debug)]
pub struct Resolved {
    /// The account, ready for [`crate::fetch`].
    pub account: Account,
    /// Where its mail goes.
    pub target: Target,
}

/// Turns settings into an account. `prefix` names where they came from
/// (`accounts.work.` or `--`), so errors name the key as the user wrote it.
pub fn resolve(name: &str, s: AccountSettings, prefix: &str) -> Result<Resolved, String> {
    let key = |k: &str| {
        if prefix == "--" {
            format!("--{}", k.replace('_', "-"))
        } else {
            format!("{prefix}{k}")
        }
    };
    if !crate::account::valid_account_name(name) {
        return Err(format!(
            "account name {name:?}: use letters, digits, '.', '_', '-' and '@'"
        ));
    }
    let server = s
        .server
        .ok_or_else(|| format!("{} is required", key("server")))?;
    let tls = match s.tls.as_deref().unwrap_or("implicit") {
        "implicit" => TlsMode::Implicit,
        "stls" | "starttls" => TlsMode::Stls,
        "none" => TlsMode::None,
        other => {
            return Err(format!(
                "{}: {other:?} is not one of \"implicit\", \"stls\", \"none\"",
                key("tls")
            ));
        }
    };
    if tls == TlsMode::None && s.allow_plaintext != Some(true) {
        return Err(format!(
            "{} = \"none\" sends everything in clear; set {} = true to mean it",
            key("tls"),
            key("allow_plaintext")
        ));
    }
    let trust = match &s.fingerprint {
        None => Trust::System,
        Some(text) => Trust::Pinned(parse_fingerprint(text).ok_or_else(|| {
            format!(
                "{}: {text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)",
                key("fingerprint")
            )
        })?),
    };
    let user = s
        .user
        .ok_or_else(|| format!("{} is required", key("user")))?;
    let sources = [
        s.password_file
            .map(|p| PasswordSource::File(expand_home(&p))),
        s.password_env.map(PasswordSource::Env),
        s.password_command.map(PasswordSource::Command),
    ];
    let mut sources = sources.into_iter().flatten();
    let password = sources.next().ok_or_else(|| {
        format!(
            "a password source is required: {}, {} or {}",
            key("password_file"),
            key("password_env"),
            key("password_command")
        )
    })?;
    if sources.next().is_some() {
        return Err(format!(
            "give only one of {}, {} and {}",
            key("password_file"),
            key("password_env"),
            key("password_command")
        ));
    }
    let auth = match &s.auth {
        None => AuthMethod::Auto,
        Some(text) => AuthMethod::parse(text).ok_or_else(|| {
            format!(
                "{}: {text:?} is not one of auto, user, apop, plain, login, cram-md5, scram-sha-1, scram-sha-256",
                key("auth")
            )
        })?,
    };
    let recipient = || {
        s.recipient
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .ok_or_else(|| format!("{} is required with smtp or lmtp", key("recipient")))
    };
    let targets = [
        s.maildir.map(|p| Ok(Target::Maildir(expand_home(&p)))),
        s.mbox.map(|p| Ok(Target::Mbox(expand_home(&p)))),
        s.mda.map(|c| Ok(Target::Mda(c))),
        s.to.map(|user| {
            Ok(Target::LocalUser(
                user,
                s.yubin_config.as_deref().map(expand_home),
            ))
        }),
        s.smtp
            .as_deref()
            .map(|e| recipient().map(|r| Target::Smtp(Endpoint::parse(e, 25), false, r))),
        s.lmtp
            .as_deref()
            .map(|e| recipient().map(|r| Target::Smtp(Endpoint::parse(e, 24), true, r))),
    ];
    let mut targets = targets.into_iter().flatten();
    let target = targets
        .next()
        .unwrap_or_else(|| Ok(Target::Maildir(expand_home("~/Maildir"))))?;
    if targets.next().is_some() {
        return Err(format!(
            "give only one destination: {}, {}, {}, {}, {} or {}",
            key("maildir"),
            key("mbox"),
            key("mda"),
            key("to"),
            key("smtp"),
            key("lmtp")
        ));
    }
    // `delete = false` says `keep = true`; either may be written.
    if let (Some(delete), Some(keep)) = (s.delete, s.keep)
        && delete == keep
    {
        return Err(format!(
            "{} and {} contradict each other",
            key("delete"),
            key("keep")
        ));
    }
    let retention = match s.keep_days {
        Some(_) if s.keep == Some(true) || s.delete == Some(true) => {
            let other = if s.keep == Some(true) {
                "keep"
            } else {
                "delete"
            };
            return Err(format!(
                "{} and {} exclude each other",
                key(other),
                key("keep_days")
            ));
        }
        Some(0) => {
            return Err(format!(
                "{}: must be at least 1 (or leave mail: keep = true)",
                key("keep_days")
            ));
        }
        Some(days) => Retention::KeepDays(days),
        None if s.keep == Some(true) || s.delete == Some(false) => Retention::Keep,
        None => Retention::Delete,
    };
    let oversize = match s.oversize.as_deref().unwrap_or("skip") {
        "skip" => Oversize::Skip,
        "headers" => Oversize::Headers,
        other => {
            return Err(format!(
                "{}: {other:?} is not \"skip\" or \"headers\"",
                key("oversize")
            ));
        }
    };
    if s.limit == Some(0) {
        return Err(format!("{}: must be at least 1", key("limit")));
    }
    let mut options = ServerOptions::new(server);
    options.tls = tls;
    options.port = s
        .port
        .unwrap_or(if tls == TlsMode::Implicit { 995 } else { 110 });
    options.trust = trust;
    if let Some(timeout) = s.timeout {
        if timeout.0.is_zero() {
            return Err(format!("{}: must be more than 0", key("timeout")));
        }
        options.timeout = timeout.0;
    }
    let state_dir = match s.state_dir {
        Some(dir) => expand_home(&dir),
        None => default_state_dir(),
    };
    Ok(Resolved {
        account: Account {
            name: name.to_owned(),
            server: options,
            user,
            password,
            auth,
            policy: Policy {
                retention,
                max_size: s.max_size.map(|s| s.0),
                oversize,
                limit: s.limit,
            },
            state_dir,
            in_use_wait: s.in_use_wait.map_or(Duration::from_secs(10), |d| d.0),
        },
        target,
    })
}

/// Reads and resolves a configuration file; with `names`, only those
/// accounts (each must exist).
pub fn load(path: &Path, names: &[String]) -> Result<Vec<Resolved>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: FetchFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.accounts.is_empty() {
        return Err(format!("{}: no [accounts.NAME] table", path.display()));
    }
    for name in names {
        if !file.accounts.contains_key(name) {
            return Err(format!("{}: no account named {name:?}", path.display()));
        }
    }
    file.accounts
        .into_iter()
        .filter(|(name, _)| names.is_empty() || names.contains(name))
        .map(|(name, settings)| {
            let prefix = format!("accounts.{name}.");
            resolve(&name, settings.or(&file.defaults), &prefix)
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// `$XDG_STATE_HOME/yubin/fetch`, or `~/.local/state/yubin/fetch`.
fn default_state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("yubin/fetch"),
        None => expand_home("~/.local/state/yubin/fetch"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Resolved>, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("fetch.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        load(&path, &[])
    }

    #[test]
    fn a_full_account_and_defaults() {
        let accounts = parse(
            "keep_days = 7\nstate_dir = \"/tmp/st\"\n[accounts.work]\nserver = \"pop.example.org\"\nuser = \"alice\"\npassword_env = \"PW\"\nmbox = \"/tmp/mbox\"\nmax_size = \"10M\"\noversize = \"headers\"\n",
        )
        .unwrap();
        let work = &accounts[0];
        assert_eq!(work.account.server.port, 995);
        assert_eq!(work.account.policy.retention, Retention::KeepDays(7));
        assert_eq!(work.account.policy.max_size, Some(10 << 20));
        assert_eq!(work.account.policy.oversize, Oversize::Headers);
        assert_eq!(work.target, Target::Mbox("/tmp/mbox".into()));
        assert_eq!(work.account.state_dir, PathBuf::from("/tmp/st"));
    }

    #[test]
    fn delete_and_keep_say_the_same_thing_two_ways() {
        let base = "[accounts.w]\nserver = \"h\"\nuser = \"u\"\npassword_env = \"P\"\n";
        for (extra, retention) in [
            ("", Retention::Delete),
            ("delete = true\n", Retention::Delete),
            ("delete = false\n", Retention::Keep),
            ("keep = true\n", Retention::Keep),
            ("delete = false\nkeep_days = 9\n", Retention::KeepDays(9)),
        ] {
            let accounts = parse(&format!("{base}{extra}")).unwrap();
            assert_eq!(accounts[0].account.policy.retention, retention, "{extra:?}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let base = "[accounts.w]\nserver = \"h\"\nuser = \"u\"\npassword_env = \"P\"\n";
        for (extra, key) in [
            ("tls = \"none\"\n", "accounts.w.allow_plaintext"),
            ("tls = \"ssl\"\n", "accounts.w.tls"),
            ("fingerprint = \"zz\"\n", "accounts.w.fingerprint"),
            ("auth = \"ntlm\"\n", "accounts.w.auth"),
            ("keep = true\nkeep_days = 3\n", "accounts.w.keep_days"),
            ("delete = true\nkeep = true\n", "accounts.w.delete"),
            ("delete = true\nkeep_days = 3\n", "accounts.w.keep_days"),
            ("maildir = \"a\"\nmbox = \"b\"\n", "accounts.w.mbox"),
            ("password_file = \"f\"\n", "accounts.w.password_file"),
            ("max_size = \"10X\"\n", "max_size"),
            ("colour = \"red\"\n", "colour"),
        ] {
            let error = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(error.contains(key), "{extra:?}: {error}");
        }
        assert!(
            parse("[accounts.w]\nuser = \"u\"\n")
                .unwrap_err()
                .contains("accounts.w.server")
        );
    }
}
