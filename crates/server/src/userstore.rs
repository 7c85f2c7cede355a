//! The users the server authenticates against, reloaded when the
//! passwd-file changes (so `yubin user add` takes effect without a restart).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use yubin_auth::passwd::LineError;
use yubin_auth::{PasswdFile, Users, sasl, scram};

use crate::config::Config;

/// One loaded version of the passwd-file.
#[derive(Debug)]
pub struct Snapshot {
    /// The users.
    pub users: Users,
    /// SASL mechanisms some user can use, in the order offered.
    pub mechanisms: Vec<String>,
    /// Whether some user can use APOP.
    pub apop: bool,
    /// The domains of the users' names (`name@domain`), lower case.
    pub domains: std::collections::HashSet<String>,
    /// The first user in the file (postmaster's mail goes there when there
    /// is no postmaster user or alias).
    pub first_user: Option<String>,
    /// Increases with every reload.
    pub generation: u64,
}

/// What identifies a version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    size: u64,
    mtime_ns: i128,
}

/// The live user table.
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    /// What SCRAM salts that are not stored derive from.
    secret: Option<Vec<u8>>,
    /// Where Maildirs are, to leave out a user whose Maildir is another's.
    config: Option<Arc<Config>>,
    current: RwLock<(Option<Stamp>, Arc<Snapshot>)>,
}

impl UserStore {
    /// Loads the passwd-file (a missing file means no users yet).
    pub fn open(path: &Path) -> std::io::Result<UserStore> {
        Self::open_with_secret(path, None)
    }

    /// Loads the passwd-file, with the server secret that SCRAM salts not
    /// stored in it derive from (without one, they change with every load).
    pub fn open_with_secret(path: &Path, secret: Option<Vec<u8>>) -> std::io::Result<UserStore> {
        Self::open_for(path, secret, None)
    }

    /// As [`UserStore::open_with_secret`]; with `config`, a user whose
    /// Maildir would be an earlier user's is left out, and logged, at every
    /// load (issue 12, finding 3).
    pub fn open_for(
        path: &Path,
        secret: Option<Vec<u8>>,
        config: Option<Arc<Config>>,
    ) -> std::io::Result<UserStore> {
        let stamp = stamp(path);
        let snapshot = load(path, 0, secret.as_deref(), config.as_deref())?;
        Ok(UserStore {
            path: path.to_owned(),
            secret,
            config,
            current: RwLock::new((stamp, Arc::new(snapshot))),
        })
    }

    /// The current users.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => guard.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// Reloads the file if it changed; blocking. Keeps the old users if the
    /// new file cannot be read.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        let (old_stamp, generation) = {
            let guard = match self.current.read() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            (guard.0, guard.1.generation)
        };
        if now == old_stamp {
            return;
        }
        match load(
            &self.path,
            generation + 1,
            self.secret.as_deref(),
            self.config.as_deref(),
        ) {
            Ok(snapshot) => {
                tracing::info!(users = snapshot.users.len(), file = %self.path.display(), "users reloaded");
                let mut guard = match self.current.write() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *guard = (now, Arc::new(snapshot));
            }
            Err(error) => {
                tracing::error!(file = %self.path.display(), %error, "cannot reload users; keeping the previous ones");
            }
        }
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

fn load(
    path: &Path,
    generation: u64,
    secret: Option<&[u8]>,
    config: Option<&Config>,
) -> std::io::Result<Snapshot> {
    let (file, problems) = PasswdFile::load(path)?;
    let source = path.display().to_string();
    Ok(Snapshot::build(
        &file, problems, generation, secret, config, &source,
    ))
}

impl Snapshot {
    /// The snapshot of `file`'s users, from wherever they were read
    /// (`source` names it in the log). `problems` are the entries already
    /// found unusable; with `config`, a user whose Maildir would be an
    /// earlier user's is left out.
    pub fn build(
        file: &PasswdFile,
        mut problems: Vec<LineError>,
        generation: u64,
        secret: Option<&[u8]>,
        config: Option<&Config>,
        source: &str,
    ) -> Snapshot {
        let (mut users, more) = Users::from_file(file);
        if let Some(secret) = secret {
            users.set_secret(secret);
        }
        problems.extend(more);
        for problem in &problems {
            tracing::warn!(file = %source, "skipping passwd-file entry: {problem}");
        }
        if let Some(config) = config {
            let names = file.users().map(|u| u.name.as_str());
            for shared in crate::mailbox::shared_maildirs(config, &users, names) {
                tracing::warn!(
                    file = %source,
                    user = %shared.user,
                    owner = %shared.owner,
                    maildir = %shared.path.display(),
                    "skipping passwd-file entry: its Maildir is another user's"
                );
                users.remove(&shared.user);
            }
        }
        let mechanisms = sasl::MECHANISMS
            .iter()
            .filter(|&&m| match m {
                "CRAM-MD5" => users.any_cram_md5(),
                "SCRAM-SHA-1" => users.any_scram(scram::Hash::Sha1),
                "SCRAM-SHA-256" => users.any_scram(scram::Hash::Sha256),
                _ => true,
            })
            .map(|m| (*m).to_owned())
            .collect();
        let apop = users.any_apop();
        let domains = file
            .users()
            .filter_map(|u| u.name.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
            .collect();
        let first_user = file.users().next().map(|u| u.name.clone());
        Snapshot {
            users,
            mechanisms,
            apop,
            domains,
            first_user,
            generation,
        }
    }
}
