//! `yubin dkim`: make a signing key and print the DNS record that
//! publishes it; list the keys the server signs with.

use clap::{Subcommand, ValueEnum};
use yubin_mailauth::dkim::{self, Algorithm, KeygenError};
use yubin_server::Config;

use super::Failure;

/// `yubin dkim …`
#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Make a key for DOMAIN in {data_dir}/dkim/DOMAIN/SELECTOR.key and
    /// print the TXT record to publish.
    Keygen {
        /// The domain that signs (the From: domain of its mail).
        domain: String,
        /// The selector (default: this year and month, as y2026m12).
        #[arg(long, short)]
        selector: Option<String>,
        /// The key type.
        #[arg(long, short, value_enum, default_value_t = KeyType::Rsa)]
        algorithm: KeyType,
    },
    /// List the keys the server signs with and their TXT records.
    List,
}

/// `--algorithm`
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyType {
    /// RSA, 2048 bits (rsa-sha256): every verifier checks it.
    Rsa,
    /// Ed25519 (ed25519-sha256, RFC 8463): publish it next to an RSA key.
    Ed25519,
}

/// Runs a `yubin dkim` command.
pub fn run(command: DkimCommand, config: &Config) -> Result<(), Failure> {
    match command {
        DkimCommand::Keygen {
            domain,
            selector,
            algorithm,
        } => keygen(config, &domain, selector, algorithm),
        DkimCommand::List => list(config),
    }
}

fn keygen(
    config: &Config,
    domain: &str,
    selector: Option<String>,
    algorithm: KeyType,
) -> Result<(), Failure> {
    let selector = selector.unwrap_or_else(default_selector);
    let algorithm = match algorithm {
        KeyType::Rsa => Algorithm::Rsa,
        KeyType::Ed25519 => Algorithm::Ed25519,
    };
    let made =
        dkim::generate(&config.dkim_dir(), domain, &selector, algorithm).map_err(|e| match e {
            KeygenError::Name { what, .. } => Failure::Usage(format!(
                "{}: {e}",
                if what == "domain" {
                    "DOMAIN"
                } else {
                    "--selector"
                }
            )),
            KeygenError::Exists(_) => Failure::Usage(format!("--selector: {e}")),
            KeygenError::Failed(reason) => Failure::Runtime(anyhow::anyhow!(reason)),
        })?;
    println!("wrote {} ({})", made.path.display(), made.key.algorithm());
    println!();
    println!("Publish this TXT record:");
    println!("  name:  {}", made.record_name());
    println!("  value: {}", made.key.record());
    println!();
    println!("In a zone file:");
    println!("{}", made.zone_line());
    println!();
    if config.dkim.domains.contains_key(&made.key.domain) {
        println!(
            "Note: dkim.domains.{:?} names another key for this domain; that one signs.",
            made.key.domain
        );
    } else if !config.dkim.sign {
        println!("Note: dkim.sign is off; nothing is signed until it is on.");
    } else {
        println!(
            "Restart yubin to sign mail from {} with it.",
            made.key.domain
        );
    }
    Ok(())
}

fn list(config: &Config) -> Result<(), Failure> {
    let keyring = dkim::Keyring::load(&config.dkim_dir(), &config.dkim_overrides())
        .map_err(|e| Failure::Usage(format!("dkim: {e}")))?;
    if keyring.is_empty() {
        println!(
            "no DKIM keys (make one with: yubin dkim keygen DOMAIN); looked in {}",
            config.dkim_dir().display()
        );
        return Ok(());
    }
    for key in keyring.keys() {
        println!(
            "{} {} ({}) {}",
            key.domain,
            key.selector,
            key.algorithm(),
            key.path.display()
        );
        println!("  {}", key.zone_line());
    }
    if !config.dkim.sign {
        println!("dkim.sign is off: these keys sign nothing");
    }
    Ok(())
}

/// `y2026m12`: the month a key was made, so that the next rotation gets a
/// new name.
fn default_selector() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month) = yubin_line::date::year_month(now);
    format!("y{year}m{month:02}")
}
