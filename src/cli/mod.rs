//! Subcommands and their arguments.

mod db;
mod deliver;
mod dkim;
mod dns;
mod fetch;
mod migrate;
mod migrate_queue;
mod password;
mod pw;
mod queue;
mod serve;
mod user;
mod user_db;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use yubin_server::Config;

/// yubin (郵便): a POP3 mail server.
#[derive(Debug, Parser)]
#[command(name = "yubin", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (with no --config: the embedded defaults, data in ./yubin-data).
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration and print it with every default filled in.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage users in the passwd-file.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
        /// The configuration file (for the passwd-file's location).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Hash a password for a passwd-file, like `doveadm pw`.
    Pw(pw::PwArgs),
    /// Deliver a message from stdin to a user's Maildir (for Postfix's
    /// mailbox_command or a pipe transport). Exit status: 0 delivered,
    /// 67 unknown user, 75 temporary failure (the MTA retries).
    Deliver(deliver::DeliverArgs),
    /// Fetch mail from POP3 accounts into local mailboxes. Exit status: 0
    /// fetched; 75 try again later; 77 login refused; 76 protocol error;
    /// 69 TLS or login impossible as configured; 74 a local write failed;
    /// 78 a password source failed; 2 bad arguments.
    Fetch(Box<fetch::FetchArgs>),
    /// Inspect the outbound queue.
    Queue {
        #[command(subcommand)]
        command: queue::QueueCommand,
        /// The configuration file (for the queue's location).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Check the DNS records a mail domain needs with this server.
    Dns {
        #[command(subcommand)]
        command: dns::DnsCommand,
        /// The configuration file (host name, DKIM keys, `dns.resolver`).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// The PostgreSQL schema (`storage.backend = "postgres"`): migrate it,
    /// or show where it stands.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
        /// The configuration file (for `postgres.url`).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Move users and mail between Maildir and PostgreSQL, UIDLs, order
    /// and seen flags kept; run again to resume. Exit status 1 when
    /// something could not be copied or --verify found a difference.
    Migrate {
        #[command(flatten)]
        args: migrate::MigrateArgs,
        /// The configuration file (the passwd-file, Maildirs, `postgres.url`).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// DKIM signing keys: make one (with the DNS record to publish), list them.
    Dkim {
        #[command(subcommand)]
        command: dkim::DkimCommand,
        /// The configuration file (for the data directory and dkim keys).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

/// How a command failed.
pub enum Failure {
    /// Bad arguments or configuration: exit status 2.
    Usage(String),
    /// Something else went wrong: exit status 1.
    Runtime(anyhow::Error),
    /// A specific exit status (sysexits for `deliver`) and its message.
    Exit(u8, String),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Runtime(error)
    }
}

/// Runs a command.
pub fn run(args: Args) -> Result<(), Failure> {
    match args.command {
        Command::Serve { config } => serve::serve(load_config(config.as_deref())?),
        Command::CheckConfig { config } => serve::check_config(load_config(config.as_deref())?),
        Command::User { command, config } => {
            let config = load_config(config.as_deref())?;
            as_server_account(&config).map_err(Failure::Usage)?;
            user::run(command, &config)
        }
        Command::Pw(args) => pw::run(args),
        Command::Deliver(args) => deliver::run(args),
        Command::Fetch(args) => fetch::run(*args),
        Command::Queue { command, config } => {
            let config = load_config(config.as_deref())?;
            as_server_account(&config).map_err(Failure::Usage)?;
            queue::run(command, &config)
        }
        Command::Dns { command, config } => {
            let config = load_config(config.as_deref())?;
            dns::run(command, &config)
        }
        Command::Db { command, config } => {
            let config = load_config(config.as_deref())?;
            db::run(command, &config)
        }
        Command::Migrate { args, config } => {
            let config = load_config(config.as_deref())?;
            as_server_account(&config).map_err(Failure::Usage)?;
            migrate::run(&args, &config)
        }
        Command::Dkim { command, config } => {
            let config = load_config(config.as_deref())?;
            as_server_account(&config).map_err(Failure::Usage)?;
            dkim::run(command, &config)
        }
    }
}

/// Run as root, the commands that write into the data directory (users,
/// queue, deliver) first become the server's account, as `serve` does, so
/// that what they create is the server's to read and change: a passwd-file
/// rewritten by root would be unreadable to a server running as `nobody`.
/// Not root: nothing changes.
pub(crate) fn as_server_account(config: &Config) -> Result<(), String> {
    use yubin_server::privileges;
    if !privileges::running_as_root() {
        return Ok(());
    }
    let Some(run_as) = privileges::plan(&config.server).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    privileges::forbid_new_privileges().map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    privileges::hand_over(&config.data_dir, &run_as).map_err(|e| e.to_string())?;
    privileges::become_user(&run_as).map_err(|e| e.to_string())?;
    privileges::check_access(config, &run_as).map_err(|e| e.to_string())
}

/// Loads the configuration file, or the defaults without one.
fn load_config(path: Option<&std::path::Path>) -> Result<Config, Failure> {
    match path {
        Some(path) => {
            Config::load(path).map_err(|e| Failure::Usage(format!("configuration error: {e}")))
        }
        None => Ok(Config::default()),
    }
}
