//! Running unprivileged (issue 12). Started as root (to open ports 25,
//! 110, 465, 587 and 995 and to read key files), yubin hands its data
//! directory to an unprivileged account and becomes it, supplementary
//! groups included, before it serves anyone: every parser, TLS session and
//! SASL exchange then runs without root. Root stays only if the
//! configuration says so (`[server] allow_root`).
//!
//! The order is [`plan`] (whom to become, checked before anything is
//! opened), [`hand_over`] (the data directory's root-owned entries become
//! the account's), [`become_user`], then [`check_access`], which names
//! what the account cannot reach. `no_new_privs` is set first of all
//! ([`forbid_new_privileges`]), so nothing the process ever runs can gain
//! privileges again.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::config::{Config, ServerConfig};

/// The account taken when started as root without `[server] user`: it
/// exists on every Unix-like system and owns nothing else of importance.
pub const DEFAULT_USER: &str = "nobody";

/// Whom to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The account's name (for initgroups and messages).
    pub name: String,
    /// Its user id.
    pub uid: Uid,
    /// The group to run as.
    pub gid: Gid,
}

/// Why the server cannot run as configured; each names its key or path.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// `server.user` names no account.
    #[error("server.user: no account named {0:?}")]
    NoSuchUser(String),
    /// `server.group` names no group.
    #[error("server.group: no group named {0:?}")]
    NoSuchGroup(String),
    /// The account is root itself.
    #[error(
        "server.user: {0:?} is root; name an unprivileged account, or set server.allow_root = true"
    )]
    UserIsRoot(String),
    /// The group is root's.
    #[error(
        "server.group: {0:?} is root's group (gid 0); name an unprivileged group, or set server.allow_root = true"
    )]
    GroupIsRoot(String),
    /// Started without root, so the configured account cannot be taken.
    #[error(
        "server.user: cannot become {user:?}: started as uid {uid}, which cannot change users (start as root, or as {user:?})"
    )]
    CannotSwitch {
        /// The configured account.
        user: String,
        /// Who we are.
        uid: u32,
    },
    /// Looking up an account or group failed.
    #[error("cannot look up {what}: {error}")]
    Lookup {
        /// What was looked up.
        what: String,
        /// Why it failed.
        error: nix::Error,
    },
    /// A system call on the way down failed.
    #[error("cannot drop privileges ({step}): {error}")]
    Drop {
        /// Which step.
        step: &'static str,
        /// Why.
        error: nix::Error,
    },
    /// Root could be regained after dropping it.
    #[error("privileges were not dropped: a root id or a capability is left")]
    NotDropped,
    /// The data directory could not be handed over.
    #[error("cannot hand {path} to {user}: {error}")]
    HandOver {
        /// The entry.
        path: PathBuf,
        /// The account.
        user: String,
        /// Why.
        error: io::Error,
    },
    /// After dropping, the account cannot use a path it needs.
    #[error(
        "{key}: {path} is not {access} by {user} (uid {uid}): {error}{hint}; fix the owner or mode, set server.user to an account that can, or server.allow_root = true"
    )]
    Access {
        /// The directory on the way that shuts the account out, if one does.
        hint: String,
        /// The configuration key the path comes from.
        key: &'static str,
        /// The path.
        path: PathBuf,
        /// "readable" or "writable".
        access: &'static str,
        /// The account.
        user: String,
        /// Its uid.
        uid: u32,
        /// Why.
        error: io::Error,
    },
}

impl PrivilegeError {
    /// Whether the configuration (or the directories it names) is what
    /// must change: exit status 2. Otherwise a system call failed.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            PrivilegeError::NoSuchUser(_)
                | PrivilegeError::NoSuchGroup(_)
                | PrivilegeError::UserIsRoot(_)
                | PrivilegeError::GroupIsRoot(_)
                | PrivilegeError::CannotSwitch { .. }
                | PrivilegeError::Access { .. }
        )
    }
}

/// Sets `no_new_privs`: from now on neither this process nor anything it
/// runs can gain privileges (setuid binaries, file capabilities). Call it
/// before any thread starts: the flag is per thread and inherited.
pub fn forbid_new_privileges() -> io::Result<()> {
    rustix::thread::set_no_new_privs(true).map_err(io::Error::from)
}

/// Whether the process runs as root (effective uid 0).
pub fn running_as_root() -> bool {
    Uid::effective().is_root()
}

/// Decides whom to become: `None` to stay as we are (not root; or root
/// with `allow_root` and no `user`), else the account. Errors name the
/// configuration key.
pub fn plan(config: &ServerConfig) -> Result<Option<RunAs>, PrivilegeError> {
    let me = Uid::effective();
    if !me.is_root() {
        if let Some(name) = &config.user {
            let user = lookup_user(name)?;
            if user.uid != me {
                return Err(PrivilegeError::CannotSwitch {
                    user: name.clone(),
                    uid: me.as_raw(),
                });
            }
        }
        return Ok(None);
    }
    let name = match &config.user {
        Some(name) => name.clone(),
        None if config.allow_root => return Ok(None),
        None => DEFAULT_USER.to_owned(),
    };
    let user = lookup_user(&name)?;
    if user.uid.is_root() {
        if config.allow_root {
            return Ok(None);
        }
        return Err(PrivilegeError::UserIsRoot(name));
    }
    let gid = match &config.group {
        Some(group) => {
            Group::from_name(group)
                .map_err(|error| PrivilegeError::Lookup {
                    what: format!("group {group:?}"),
                    error,
                })?
                .ok_or_else(|| PrivilegeError::NoSuchGroup(group.clone()))?
                .gid
        }
        None => user.gid,
    };
    if gid.as_raw() == 0 && !config.allow_root {
        return Err(PrivilegeError::GroupIsRoot(
            config
                .group
                .clone()
                .unwrap_or_else(|| format!("{name}'s group")),
        ));
    }
    Ok(Some(RunAs {
        name,
        uid: user.uid,
        gid,
    }))
}

fn lookup_user(name: &str) -> Result<User, PrivilegeError> {
    User::from_name(name)
        .map_err(|error| PrivilegeError::Lookup {
            what: format!("user {name:?}"),
            error,
        })?
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_owned()))
}

/// Creates the data directory if needed and gives the account what root
/// made in it: every root-owned directory that only root may write, and
/// every root-owned file with a single link in one. The walk goes by file
/// descriptor, never follows a symbolic link, does not enter a directory
/// of another owner or one others may write, and gives a directory away
/// only after its contents, so nothing in it can change under the walk and
/// nothing the account could have planted (a link to /etc/shadow) is
/// handed over. If a directory above the data directory could be changed
/// by someone other than root, nothing is walked. Returns how many entries
/// changed owner.
pub fn hand_over(data_dir: &Path, run: &RunAs) -> Result<usize, PrivilegeError> {
    let fail = |path: PathBuf| {
        let user = run.name.clone();
        move |error| PrivilegeError::HandOver { path, user, error }
    };
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(data_dir)
        .map_err(fail(data_dir.to_owned()))?;
    let absolute = std::path::absolute(data_dir).map_err(fail(data_dir.to_owned()))?;
    if let Some(why) = unsafe_ancestor(&absolute) {
        tracing::warn!(data_dir = %absolute.display(), %why, "not handing the data directory over");
        return Ok(0);
    }
    let dir = rustix::fs::openat(rustix::fs::CWD, &absolute, DIRECTORY_FLAGS, Mode::empty())
        .map_err(|e| fail(absolute.clone())(e.into()))?;
    let owner = (
        Some(rustix::fs::Uid::from_raw(run.uid.as_raw())),
        Some(rustix::fs::Gid::from_raw(run.gid.as_raw())),
    );
    let mut changed = 0;
    give_directory(dir, &absolute, owner, 0, &mut changed)
        .map_err(|(path, error)| fail(path)(error))?;
    Ok(changed)
}

/// How directories are opened on the walk: never through a link.
const DIRECTORY_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Deeper than any Maildir layout: a walk that goes further stops.
const MAX_DEPTH: usize = 32;

type Owner = (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>);

/// Gives the root-owned contents of the open directory `dir` (at `path`,
/// for messages), then `dir` itself, to `owner`.
fn give_directory(
    dir: OwnedFd,
    path: &Path,
    owner: Owner,
    depth: usize,
    changed: &mut usize,
) -> Result<(), (PathBuf, io::Error)> {
    let at = |error: rustix::io::Errno| (path.to_owned(), io::Error::from(error));
    let stat = rustix::fs::fstat(&dir).map_err(at)?;
    if stat.st_uid != 0 || stat.st_mode & 0o022 != 0 || depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in rustix::fs::Dir::read_from(&dir).map_err(at)? {
        let entry = entry.map_err(at)?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let at = |error: rustix::io::Errno| (child.clone(), io::Error::from(error));
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(at)?;
        if stat.st_uid != 0 {
            continue;
        }
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let sub =
                    rustix::fs::openat(&dir, name, DIRECTORY_FLAGS, Mode::empty()).map_err(at)?;
                give_directory(sub, &child, owner, depth + 1, changed)?;
            }
            FileType::RegularFile if stat.st_nlink == 1 => {
                rustix::fs::chownat(&dir, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(at)?;
                *changed += 1;
            }
            _ => {}
        }
    }
    rustix::fs::fchown(&dir, owner.0, owner.1).map_err(at)?;
    *changed += 1;
    Ok(())
}

/// Why a directory above `path` is not safe to walk from: one that is not
/// root's, or that others may write without the sticky bit (they could
/// swap the data directory for a link while root walks it).
fn unsafe_ancestor(path: &Path) -> Option<String> {
    for ancestor in path.ancestors().skip(1) {
        let meta = match fs::metadata(ancestor) {
            Ok(meta) => meta,
            Err(error) => return Some(format!("{}: {error}", ancestor.display())),
        };
        if meta.uid() != 0 {
            return Some(format!("{} is not root's", ancestor.display()));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return Some(format!("others may write {}", ancestor.display()));
        }
    }
    None
}

/// Becomes the account: its supplementary groups, its group, its user.
/// glibc applies each change to every thread of the process. Afterwards
/// root must be out of reach, or this fails.
pub fn become_user(run: &RunAs) -> Result<(), PrivilegeError> {
    let drop_error = |step| move |error| PrivilegeError::Drop { step, error };
    let name = CString::new(run.name.as_str()).map_err(|_| PrivilegeError::Drop {
        step: "initgroups",
        error: nix::Error::EINVAL,
    })?;
    nix::unistd::initgroups(&name, run.gid).map_err(drop_error("initgroups"))?;
    nix::unistd::setgid(run.gid).map_err(drop_error("setgid"))?;
    nix::unistd::setuid(run.uid).map_err(drop_error("setuid"))?;
    // Root must be out of reach: no uid or group of root's, no capability
    // left (a parent's SECBIT_KEEP_CAPS would have kept the permitted set).
    let groups = nix::unistd::getgroups().map_err(drop_error("getgroups"))?;
    let capabilities = rustix::thread::capabilities(None).map_err(|e| PrivilegeError::Drop {
        step: "capget",
        error: nix::Error::from_raw(e.raw_os_error()),
    })?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
        || Uid::effective().is_root()
        || Gid::effective().as_raw() == 0
        || groups.iter().any(|g| g.as_raw() == 0)
        || !capabilities.effective.is_empty()
        || !capabilities.permitted.is_empty()
    {
        return Err(PrivilegeError::NotDropped);
    }
    Ok(())
}

/// Checks, as the account, that it can read and write what the server
/// needs, and names the first path it cannot.
pub fn check_access(config: &Config, run: &RunAs) -> Result<(), PrivilegeError> {
    let fail = |key, path: &Path, access, error| PrivilegeError::Access {
        hint: shut_out_by(path)
            .map(|dir| format!(" ({} does not let it in)", dir.display()))
            .unwrap_or_default(),
        key,
        path: path.to_owned(),
        access,
        user: run.name.clone(),
        uid: run.uid.as_raw(),
        error,
    };
    for (key, dir) in [
        ("data_dir", config.data_dir.clone()),
        ("smtp.queue_dir", config.queue_dir()),
        ("users.mail_root", config.mail_root()),
    ] {
        if let Err(error) = writable(&dir) {
            return Err(fail(key, &dir, "writable", error));
        }
    }
    let passwd = config.passwd_file();
    match fs::File::open(&passwd) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(fail("users.passwd_file", &passwd, "readable", error))
        }
        _ => Ok(()),
    }
}

/// The first directory on the way to `path` that the current user may not
/// search (a checkout under /root, a private temporary directory).
fn shut_out_by(path: &Path) -> Option<PathBuf> {
    let path = std::path::absolute(path).ok()?;
    let mut reached = PathBuf::new();
    for part in path.components() {
        let next = reached.join(part);
        match fs::symlink_metadata(&next) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Some(reached),
            Err(_) => return None,
            Ok(_) => reached = next,
        }
    }
    None
}

/// Creates `dir` if missing, then a file in it, and removes the file.
fn writable(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".yubin-access-{}", std::process::id()));
    fs::write(&probe, b"")?;
    fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not root: nothing to drop, and a configured account must be us.
    /// (The root paths are tested end to end, see tests/integration.)
    #[test]
    fn plan_decides_whom_to_become() {
        if Uid::effective().is_root() {
            let config = ServerConfig {
                user: Some("no-such-account-here".into()),
                ..ServerConfig::default()
            };
            assert!(matches!(plan(&config), Err(PrivilegeError::NoSuchUser(_))));
            let config = ServerConfig {
                user: Some("root".into()),
                ..ServerConfig::default()
            };
            assert!(matches!(plan(&config), Err(PrivilegeError::UserIsRoot(_))));
            let config = ServerConfig {
                allow_root: true,
                ..ServerConfig::default()
            };
            assert_eq!(plan(&config).ok(), Some(None));
            let default = plan(&ServerConfig::default()).ok().flatten();
            assert_eq!(default.map(|r| r.name), Some(DEFAULT_USER.to_owned()));
        } else {
            assert_eq!(plan(&ServerConfig::default()).ok(), Some(None));
        }
    }
}
