//! `yubin pw`: make or test a password hash, like `doveadm pw`.

use clap::Args;
use yubin_auth::scheme::{self, GENERATABLE, Scheme, StoredPassword};

use super::{Failure, password};

/// Arguments of `yubin pw`.
#[derive(Debug, Args)]
pub struct PwArgs {
    /// The scheme (Dovecot's names: SHA512-CRYPT, BLF-CRYPT, ARGON2ID, CRAM-MD5, PLAIN, …).
    #[arg(short = 's', long, default_value = "SHA512-CRYPT")]
    scheme: String,
    /// Rounds, cost or iterations, where the scheme has them.
    #[arg(short = 'r', long)]
    rounds: Option<u32>,
    /// Instead of hashing, test the password against this hash.
    #[arg(short = 't', long, value_name = "HASH")]
    test: Option<String>,
    /// List the schemes.
    #[arg(short = 'l', long)]
    list: bool,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

/// Runs `yubin pw`.
pub fn run(args: PwArgs) -> Result<(), Failure> {
    if args.list {
        let names: Vec<&str> = GENERATABLE.iter().map(|s| s.name()).collect();
        println!("{}", names.join(" "));
        return Ok(());
    }
    let scheme = Scheme::from_name(&args.scheme)
        .filter(|s| GENERATABLE.contains(s))
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--scheme: unknown scheme {:?} (see yubin pw -l)",
                args.scheme
            ))
        })?;
    if let Some(hash) = args.test {
        let stored = StoredPassword::parse(&hash, scheme)
            .map_err(|e| Failure::Usage(format!("--test: {e}")))?;
        let password = password::read_new(args.password_stdin)?;
        return if stored.verify(password.as_bytes()) {
            println!("{hash} (verified)");
            Ok(())
        } else {
            Err(Failure::Runtime(anyhow::anyhow!("password does not match")))
        };
    }
    let password = password::read_new(args.password_stdin)?;
    let hashed = scheme::hash(scheme, password.as_bytes(), args.rounds)
        .map_err(|e| Failure::Usage(format!("--rounds: {e}")))?;
    println!("{hashed}");
    Ok(())
}
