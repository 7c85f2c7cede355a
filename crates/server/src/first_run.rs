//! The embedded default: on a fresh machine `yubin serve` creates a demo user
//! with a random password and puts a welcome message in its maildrop.

use std::time::{SystemTime, UNIX_EPOCH};

use yubin_auth::{PasswdFile, Scheme, UserEntry, Users};

use crate::config::Config;

/// The demo account made on first start.
#[derive(Debug)]
pub struct DemoUser {
    /// Its name.
    pub name: String,
    /// Its password (shown once).
    pub password: String,
}

/// Errors of the first start.
#[derive(Debug, thiserror::Error)]
pub enum FirstRunError {
    /// Reading or writing the passwd-file failed.
    #[error("{path}: {error}")]
    Passwd {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Hashing failed.
    #[error("cannot hash the demo password: {0}")]
    Hash(#[from] yubin_auth::SchemeError),
    /// Delivering the welcome message failed.
    #[error("cannot deliver the welcome message: {0}")]
    Deliver(String),
}

/// If the passwd-file has no users, creates `demo` with a random password
/// and a welcome message. Returns the new account, or `None` if there were
/// users already.
pub fn ensure_demo_user(config: &Config) -> Result<Option<DemoUser>, FirstRunError> {
    let path = config.passwd_file();
    let passwd_error = |error| FirstRunError::Passwd {
        path: path.clone(),
        error,
    };
    let (mut file, _) = PasswdFile::load(&path).map_err(passwd_error)?;
    if file.users().next().is_some() {
        return Ok(None);
    }
    let name = "demo".to_owned();
    let password = yubin_auth::random::alphanumeric(16);
    let hashed = yubin_auth::scheme::hash(Scheme::Sha512Crypt, password.as_bytes(), None)?;
    file.add(UserEntry::new(&name, hashed));

    let (users, _) = Users::from_file(&file);
    let user = users
        .get(&name)
        .ok_or_else(|| FirstRunError::Deliver("the demo user did not parse".into()))?;
    let maildir = crate::mailbox::maildir_for(config, user)
        .map_err(|e| FirstRunError::Deliver(e.to_string()))?;
    maildir
        .deliver(welcome(config, &name).as_bytes(), &config.hostname)
        .map_err(|e| FirstRunError::Deliver(e.to_string()))?;
    file.save(&path).map_err(passwd_error)?;
    Ok(Some(DemoUser { name, password }))
}

fn welcome(config: &Config, user: &str) -> String {
    let host = &config.hostname;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "Return-Path: <postmaster@{host}>\n\
         From: yubin <postmaster@{host}>\n\
         To: {user}@{host}\n\
         Subject: Welcome to yubin\n\
         Date: {date}\n\
         Message-ID: <welcome.{now}.{id}@{host}>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n\
         Hello {user},\n\
         \n\
         this message was delivered by yubin when it started for the first time.\n\
         You fetched it over POP3, so the server works.\n\
         \n\
         Next steps: add real users with `yubin user add NAME`, then delete this\n\
         demo account with `yubin user del {user}`. docs/configuration.md lists\n\
         every setting.\n",
        date = rfc5322_date(now),
        id = yubin_auth::random::alphanumeric(8),
    )
}

use yubin_line::date::rfc5322 as rfc5322_date;
