//! `yubin user add|passwd|del|list|import`: the passwd-file, rewritten
//! atomically, or the database's users table with `storage.backend =
//! "postgres"` ([`super::user_db`]).

use anyhow::Context;
use clap::Subcommand;
use yubin_auth::scheme::{self, GENERATABLE, Scheme};
use yubin_auth::{PasswdFile, UserEntry, check_user_name};
use yubin_server::Config;

use super::{Failure, password};

/// `yubin user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (password from a prompt, or --password-stdin).
    Add {
        /// `name` or `name@domain`.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Password scheme. PLAIN allows APOP and CRAM-MD5; SCRAM-SHA-256 allows SCRAM.
        #[arg(long, short, default_value = "SHA512-CRYPT")]
        scheme: String,
    },
    /// Change a user's password.
    Passwd {
        /// The user.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Password scheme.
        #[arg(long, short, default_value = "SHA512-CRYPT")]
        scheme: String,
    },
    /// Delete a user (with Maildir their mail stays on disk).
    Del {
        /// The user.
        name: String,
        /// With storage.backend = "postgres", the maildrop goes with the
        /// user: required when it holds mail.
        #[arg(long)]
        delete_mail: bool,
    },
    /// List the users and their password schemes.
    List,
    /// Add the users of a Dovecot passwd-file, their password hashes
    /// unchanged. Exit status 1 when some line could not be used.
    Import {
        /// The passwd-file to read.
        file: std::path::PathBuf,
        /// Replace users that exist already (default: keep them).
        #[arg(long)]
        replace: bool,
    },
}

/// The users of a passwd-file to import, and what was wrong with the
/// lines left out: each must have a valid name and a password yubin can
/// check.
pub(super) fn read_import(
    path: &std::path::Path,
) -> Result<(Vec<UserEntry>, Vec<String>), Failure> {
    let (file, problems) = PasswdFile::load(path)
        .map_err(|e| Failure::Usage(format!("FILE: cannot read {}: {e}", path.display())))?;
    let mut skipped: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let mut entries = Vec::new();
    for entry in file.users() {
        match yubin_auth::StoredPassword::parse(&entry.password, Scheme::Crypt) {
            Ok(_) => entries.push(entry.clone()),
            Err(e) => skipped.push(format!("user {:?}: {e}", entry.name)),
        }
    }
    Ok((entries, skipped))
}

/// Prints what an import did; exit status 1 when lines were left out.
pub(super) fn import_result(
    added: usize,
    replaced: usize,
    kept: usize,
    skipped: &[String],
) -> Result<(), Failure> {
    for problem in skipped {
        eprintln!("yubin: not imported: {problem}");
    }
    println!(
        "imported: {added} added, {replaced} replaced, {kept} kept as they were, {} not imported",
        skipped.len()
    );
    if skipped.is_empty() {
        Ok(())
    } else {
        Err(Failure::Exit(
            1,
            format!("{} lines could not be imported", skipped.len()),
        ))
    }
}

/// Two names must never share a Maildir (`mail_location = "/var/mail/%n"`
/// with bob@a.example and bob@b.example; issue 12): the server would leave
/// the newer one out, so `user add` refuses it first.
fn check_own_maildir(config: &Config, file: &PasswdFile, name: &str) -> Result<(), Failure> {
    let mut probe = file.clone();
    probe.add(UserEntry::new(name, "{PLAIN}-".into()));
    let (users, _) = yubin_auth::Users::from_file(&probe);
    let names = probe.users().map(|u| u.name.as_str());
    let shared = yubin_server::mailbox::shared_maildirs(config, &users, names);
    match shared.iter().find(|s| s.user.eq_ignore_ascii_case(name)) {
        Some(shared) => Err(Failure::Usage(format!(
            "NAME: {name:?} would share the Maildir {} with {:?}; change users.mail_location (%u, or %d and %n) or give it a userdb_mail",
            shared.path.display(),
            shared.owner
        ))),
        None => Ok(()),
    }
}

/// Runs a `user` subcommand.
pub fn run(command: UserCommand, config: &Config) -> Result<(), Failure> {
    if config.storage.backend == yubin_server::config::Backend::Postgres {
        return super::user_db::run(command, config);
    }
    let path = config.passwd_file();
    let (mut file, problems) =
        PasswdFile::load(&path).with_context(|| format!("cannot read {}", path.display()))?;
    for problem in &problems {
        eprintln!("yubin: warning: {}: {problem}", path.display());
    }
    match command {
        UserCommand::List => {
            print_users(file.users());
            return Ok(());
        }
        UserCommand::Add {
            name,
            password_stdin,
            scheme,
        } => {
            valid_name(&name)?;
            if file.get_mut(&name).is_some() {
                return Err(Failure::Usage(format!(
                    "NAME: user {name:?} already exists"
                )));
            }
            let scheme = parse_scheme(&scheme)?;
            check_own_maildir(config, &file, &name)?;
            let hashed = hash(scheme, &password::read_new(password_stdin)?)?;
            file.add(UserEntry::new(&name, hashed));
            save(&file, &path)?;
            println!("added user {name}");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            scheme,
        } => {
            let scheme = parse_scheme(&scheme)?;
            if file.get_mut(&name).is_none() {
                return Err(Failure::Usage(format!("NAME: no user {name:?}")));
            }
            let hashed = hash(scheme, &password::read_new(password_stdin)?)?;
            if let Some(entry) = file.get_mut(&name) {
                entry.password = hashed;
            }
            save(&file, &path)?;
            println!("changed the password of {name}");
        }
        UserCommand::Del { name, delete_mail } => {
            if delete_mail {
                return Err(Failure::Usage(
                    "--delete-mail: only with storage.backend = \"postgres\" (a Maildir is left on disk)".into(),
                ));
            }
            if !file.remove(&name) {
                return Err(Failure::Usage(format!("NAME: no user {name:?}")));
            }
            save(&file, &path)?;
            println!("deleted user {name} (their mail is left on disk)");
        }
        UserCommand::Import {
            file: source,
            replace,
        } => {
            let (entries, mut skipped) = read_import(&source)?;
            let (mut added, mut replaced, mut kept) = (0, 0, 0);
            for entry in entries {
                match file.get_mut(&entry.name) {
                    Some(existing) if replace => {
                        *existing = entry;
                        replaced += 1;
                    }
                    Some(_) => kept += 1,
                    None => {
                        if let Err(Failure::Usage(why)) =
                            check_own_maildir(config, &file, &entry.name)
                        {
                            skipped.push(why);
                            continue;
                        }
                        file.add(entry);
                        added += 1;
                    }
                }
            }
            save(&file, &path)?;
            return import_result(added, replaced, kept, &skipped);
        }
    }
    Ok(())
}

/// `yubin user list`: each user and the scheme of their password.
pub(super) fn print_users<'a>(users: impl Iterator<Item = &'a UserEntry>) {
    for user in users {
        let scheme = yubin_auth::StoredPassword::parse(&user.password, Scheme::Crypt)
            .map_or("?", |p| p.scheme().name());
        println!("{}\t{scheme}", user.name);
    }
}

/// A new user's name, checked as the passwd-file checks it.
pub(super) fn valid_name(name: &str) -> Result<(), Failure> {
    check_user_name(name)
        .map_err(|why| Failure::Usage(format!("NAME: {name:?} is not a valid user name: {why}")))
}

pub(super) fn parse_scheme(name: &str) -> Result<Scheme, Failure> {
    Scheme::from_name(name)
        .filter(|s| GENERATABLE.contains(s))
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--scheme: unknown scheme {name:?} (see yubin pw -l)"
            ))
        })
}

pub(super) fn hash(scheme: Scheme, password: &str) -> Result<String, Failure> {
    scheme::hash(scheme, password.as_bytes(), None).map_err(|e| Failure::Runtime(e.into()))
}

fn save(file: &PasswdFile, path: &std::path::Path) -> Result<(), Failure> {
    file.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
        .map_err(Failure::Runtime)
}
