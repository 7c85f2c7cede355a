//! Where each user's mail lives: the Maildir a user name maps to (the
//! passwd-file's `userdb_mail`, `users.mail_location`, or the default
//! layout), and the check that no two users map to one.

use yubin_auth::{User, Users};
use yubin_store::Maildir;
use yubin_store::location::{self, LocationError};

use crate::config::Config;

/// Where a user's Maildir is: the user's `userdb_mail`, else
/// `users.mail_location`, else the default layout under `{data_dir}/mail`.
pub fn maildir_for(config: &Config, user: &User) -> Result<Maildir, LocationError> {
    let home = user.home.as_deref();
    let path = match (&user.mail, &config.users.mail_location) {
        (Some(template), _) | (None, Some(template)) => {
            location::expand(template, &user.name, home)?
        }
        (None, None) => location::default_location(&config.mail_root(), &user.name),
    };
    Ok(Maildir::new(path))
}

/// Two users whose Maildir would be one directory (issue 12, finding 3):
/// a `mail_location` such as `/var/mail/%n` with `bob@a.example` and
/// `bob@b.example`, or `userdb_mail` fields naming one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedMaildir {
    /// The later user in the file: the one left out.
    pub user: String,
    /// The earlier user, whose Maildir it is.
    pub owner: String,
    /// The directory.
    pub path: std::path::PathBuf,
}

/// Every user (in `names`' order, the file's) whose Maildir is an earlier
/// user's. Paths are compared after lexical normalisation (`.`, `..`,
/// repeated and trailing slashes), so `mail/./bob` is `mail/bob`.
pub fn shared_maildirs<'a>(
    config: &Config,
    users: &Users,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<SharedMaildir> {
    let mut owners: std::collections::HashMap<std::path::PathBuf, String> =
        std::collections::HashMap::new();
    let mut shared = Vec::new();
    for name in names {
        let Some(user) = users.get(name) else {
            continue;
        };
        let Ok(maildir) = maildir_for(config, user) else {
            continue;
        };
        let path = normalise(maildir.root());
        match owners.get(&path) {
            Some(owner) if !owner.eq_ignore_ascii_case(&user.name) => shared.push(SharedMaildir {
                user: user.name.clone(),
                owner: owner.clone(),
                path,
            }),
            Some(_) => {}
            None => {
                owners.insert(path, user.name.clone());
            }
        }
    }
    shared
}

fn normalise(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
