//! `yubin queue list`: what waits in the outbound queue.

use anyhow::Context;
use clap::Subcommand;
use yubin_queue::Queue;
use yubin_server::Config;

use super::Failure;

/// `yubin queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages: id, age, sender, client and recipients.
    List,
}

/// Runs a `queue` subcommand.
pub fn run(command: QueueCommand, config: &Config) -> Result<(), Failure> {
    match command {
        QueueCommand::List => list(config),
    }
}

fn list(config: &Config) -> Result<(), Failure> {
    let queue = Queue::new(config.queue_dir());
    let (entries, damaged) = queue
        .list()
        .with_context(|| format!("cannot read the queue in {}", config.queue_dir().display()))?;
    for problem in &damaged {
        eprintln!("yubin: warning: {problem} (moved to corrupt/)");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for entry in &entries {
        println!(
            "{}  {}  from <{}>  client {} ({})",
            entry.id,
            age(now.saturating_sub(entry.created)),
            entry.from,
            entry.client,
            entry.auth,
        );
        for rcpt in &entry.recipients {
            println!("    to <{rcpt}>");
        }
    }
    let count = entries.len();
    println!(
        "{count} message{} queued",
        if count == 1 { "" } else { "s" }
    );
    Ok(())
}

/// A short human age: `42s`, `7m`, `3h`, `2d`.
fn age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
