//! `yubin deliver`: local delivery for another MTA, with sysexits codes.

use std::path::Path;

use clap::Args as ClapArgs;
use yubin_server::Config;
use yubin_server::lda::{self, DeliverError};

use super::Failure;

/// EX_NOUSER: the MTA bounces the message.
const EX_NOUSER: u8 = 67;
/// EX_TEMPFAIL: the MTA keeps the message and tries again later.
const EX_TEMPFAIL: u8 = 75;

/// `yubin deliver --user NAME [-f SENDER]`
#[derive(Debug, ClapArgs)]
pub struct DeliverArgs {
    /// The recipient, as named in the passwd-file.
    #[arg(long, short = 'd')]
    user: String,
    /// The envelope sender, for `Return-Path:`.
    #[arg(long = "from", short = 'f')]
    from: Option<String>,
    /// The configuration file.
    #[arg(long, short)]
    config: Option<std::path::PathBuf>,
}

/// Reads stdin and delivers it. A configuration error is a temporary
/// failure here, not status 2: the MTA would bounce on an unknown status,
/// and a broken configuration is fixed by the administrator, after which
/// the MTA's retry succeeds.
pub fn run(args: DeliverArgs) -> Result<(), Failure> {
    let config = match load(args.config.as_deref()) {
        Ok(config) => config,
        Err(message) => return Err(Failure::Exit(EX_TEMPFAIL, message)),
    };
    super::as_server_account(&config).map_err(|message| Failure::Exit(EX_TEMPFAIL, message))?;
    let mut stdin = std::io::stdin().lock();
    match lda::deliver(&config, &args.user, args.from.as_deref(), &mut stdin) {
        Ok(_) => Ok(()),
        Err(error @ DeliverError::UnknownUser(_)) => {
            Err(Failure::Exit(EX_NOUSER, error.to_string()))
        }
        Err(error @ DeliverError::Temporary(_)) => {
            Err(Failure::Exit(EX_TEMPFAIL, error.to_string()))
        }
    }
}

fn load(path: Option<&Path>) -> Result<Config, String> {
    let config = match path {
        Some(path) => Config::load(path).map_err(|e| format!("configuration error: {e}"))?,
        None => Config::default(),
    };
    config
        .validate()
        .map_err(|e| format!("configuration error: {e}"))?;
    Ok(config)
}
