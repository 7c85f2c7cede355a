//! `yubin user add|passwd|del|list`: the passwd-file, rewritten atomically.

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
    /// Delete a user (their mail stays on disk).
    Del {
        /// The user.
        name: String,
    },
    /// List the users and their password schemes.
    List,
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
    let path = config.passwd_file();
    let (mut file, problems) =
        PasswdFile::load(&path).with_context(|| format!("cannot read {}", path.display()))?;
    for problem in &problems {
        eprintln!("yubin: warning: {}: {problem}", path.display());
    }
    match command {
        UserCommand::List => {
            for user in file.users() {
                let scheme = yubin_auth::StoredPassword::parse(&user.password, Scheme::Crypt)
                    .map_or("?", |p| p.scheme().name());
                println!("{}\t{scheme}", user.name);
            }
            return Ok(());
        }
        UserCommand::Add {
            name,
            password_stdin,
            scheme,
        } => {
            check_user_name(&name).map_err(|why| {
                Failure::Usage(format!("NAME: {name:?} is not a valid user name: {why}"))
            })?;
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
        UserCommand::Del { name } => {
            if !file.remove(&name) {
                return Err(Failure::Usage(format!("NAME: no user {name:?}")));
            }
            save(&file, &path)?;
            println!("deleted user {name} (their mail is left on disk)");
        }
    }
    Ok(())
}

fn parse_scheme(name: &str) -> Result<Scheme, Failure> {
    Scheme::from_name(name)
        .filter(|s| GENERATABLE.contains(s))
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--scheme: unknown scheme {name:?} (see yubin pw -l)"
            ))
        })
}

fn hash(scheme: Scheme, password: &str) -> Result<String, Failure> {
    scheme::hash(scheme, password.as_bytes(), None).map_err(|e| Failure::Runtime(e.into()))
}

fn save(file: &PasswdFile, path: &std::path::Path) -> Result<(), Failure> {
    file.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
        .map_err(Failure::Runtime)
}
