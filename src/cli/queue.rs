//! `yubin queue …`: look at the outbound queue and act on it, with or
//! without a server running (entries being delivered are locked; a running
//! server notices a flush within a second).

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use yubin_queue::{Claim, EntryState, Envelope, Queue, QueueError, QueueStore};
use yubin_server::Config;
use yubin_server::backend::pg::PgQueue;
use yubin_server::config::Backend;

use super::Failure;

/// `yubin queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages: id, age, sender, attempts, next attempt, last
    /// error, and the recipients still to do.
    List,
    /// Show one message: its envelope, delivery state and header.
    Show {
        /// The queue id (from `yubin queue list`).
        id: String,
    },
    /// Try every queued message now (a running server does it within a
    /// second).
    Flush,
    /// Remove a message from the queue without delivering or bouncing it.
    Delete {
        /// The queue id.
        id: String,
    },
    /// Return a message to its sender now, with a bounce, instead of
    /// trying further.
    Bounce {
        /// The queue id.
        id: String,
    },
}

/// Runs a `queue` subcommand, against the queue of the configured
/// backend: the queue directory, or the shared database.
pub fn run(command: QueueCommand, config: &Config) -> Result<(), Failure> {
    let config = config.clone();
    with_store(&config.clone(), move |queue| match command {
        QueueCommand::List => list(queue),
        QueueCommand::Show { id } => show(queue, &id, &config),
        QueueCommand::Flush => {
            queue
                .request_flush()
                .context("cannot write the flush request")?;
            println!(
                "flush requested: a running server tries every queued message within a second"
            );
            Ok(())
        }
        QueueCommand::Delete { id } => {
            let claim = claim(queue, &id)?;
            let removed = queue.remove(&id);
            claim.release();
            removed.with_context(|| format!("cannot remove {id}"))?;
            println!("deleted {id}");
            Ok(())
        }
        QueueCommand::Bounce { id } => {
            let claim = claim(queue, &id)?;
            let saved = queue.load_state(&id).and_then(|mut state| {
                state.bounce_requested = true;
                state.next_attempt = 0;
                queue.save_state(&id, &state)
            });
            claim.release();
            saved.context("cannot record the bounce request")?;
            queue.wake().context("cannot tell the running servers")?;
            println!(
                "{id} will be returned to its sender (a running server does it within a second)"
            );
            Ok(())
        }
    })
}

/// Runs `work` on the configured backend's queue: the directory at once;
/// the database's from a blocking thread of a runtime that talks to it.
fn with_store(
    config: &Config,
    work: impl FnOnce(&dyn QueueStore) -> Result<(), Failure> + Send + 'static,
) -> Result<(), Failure> {
    match config.storage.backend {
        Backend::Maildir => work(&Queue::new(config.queue_dir())),
        Backend::Postgres => {
            let (runtime, db) = super::db::open(config)?;
            let node = config.node_name().to_owned();
            runtime.block_on(async move {
                db.check_schema().await.map_err(super::db::schema_failure)?;
                let queue = PgQueue::new(db, &node);
                tokio::task::spawn_blocking(move || work(&queue))
                    .await
                    .map_err(|e| Failure::Runtime(e.into()))?
            })
        }
    }
}

/// Claims an entry for a change; a missing id is a usage error (status 2).
fn claim(queue: &dyn QueueStore, id: &str) -> Result<Box<dyn Claim>, Failure> {
    match queue.claim(id, None) {
        Ok(Some(claim)) => Ok(claim),
        Ok(None) => Err(Failure::Runtime(anyhow::anyhow!(
            "{id} is being delivered right now; try again in a moment"
        ))),
        Err(QueueError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(not_found(id))
        }
        Err(QueueError::Damaged { .. }) => Err(not_found(id)),
        Err(error) => Err(Failure::Runtime(error.into())),
    }
}

fn not_found(id: &str) -> Failure {
    Failure::Usage(format!(
        "id: no queued message {id:?} (see yubin queue list)"
    ))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn list(queue: &dyn QueueStore) -> Result<(), Failure> {
    let (entries, unreadable) = queue.list().context("cannot read the queue")?;
    for error in &unreadable {
        match error {
            QueueError::Damaged { .. } => eprintln!("yubin: warning: {error} (moved to corrupt/)"),
            _ => eprintln!("yubin: warning: {error}"),
        }
    }
    let now = now();
    for entry in &entries {
        let state = queue.load_state(&entry.id).unwrap_or_default();
        println!(
            "{}  {}  from <{}>  client {} ({})",
            entry.id,
            age(now.saturating_sub(entry.created)),
            entry.from,
            entry.client,
            entry.auth,
        );
        println!("    {}", progress(&state, now));
        for rcpt in &entry.recipients {
            let done = if state.is_done(rcpt) { "  (done)" } else { "" };
            println!("    to <{rcpt}>{done}");
        }
    }
    let count = entries.len();
    println!(
        "{count} message{} queued",
        if count == 1 { "" } else { "s" }
    );
    Ok(())
}

/// `3 attempts, next in 20m, last error: …`
fn progress(state: &EntryState, now: u64) -> String {
    let mut text = match state.attempts {
        0 => "not tried yet".to_owned(),
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    if state.bounce_requested {
        text.push_str(", bounce requested");
    } else if state.next_attempt > now {
        text.push_str(&format!(", next in {}", age(state.next_attempt - now)));
    } else {
        text.push_str(", due now");
    }
    if !state.last_error.is_empty() {
        text.push_str(&format!(", last error: {}", state.last_error));
    }
    text
}

fn show(queue: &dyn QueueStore, id: &str, config: &Config) -> Result<(), Failure> {
    let read = queue.open(id).and_then(|(envelope, mut reader)| {
        let mut message = Vec::new();
        reader
            .read_to_end(&mut message)
            .map_err(|error| QueueError::Io {
                path: id.into(),
                error,
            })?;
        Ok((envelope, message))
    });
    let (envelope, message): (Envelope, Vec<u8>) = match read {
        Ok(read) => read,
        Err(QueueError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(id));
        }
        Err(QueueError::Damaged { .. }) => return Err(not_found(id)),
        Err(error) => return Err(Failure::Runtime(error.into())),
    };
    let state = queue.load_state(id).unwrap_or_default();
    let now = now();
    println!("id:        {}", envelope.id);
    println!(
        "queued:    {} ({} ago)",
        yubin_line::date::rfc5322(envelope.created),
        age(now.saturating_sub(envelope.created))
    );
    println!("from:      <{}>", envelope.from);
    for rcpt in &envelope.recipients {
        let done = if state.is_done(rcpt) { "  (done)" } else { "" };
        println!("to:        <{rcpt}>{done}");
    }
    println!("client:    {} ({})", envelope.client, envelope.auth);
    if !envelope.body.is_empty() {
        println!("body:      {}", envelope.body);
    }
    println!("state:     {}", progress(&state, now));
    let mut domains: Vec<String> = envelope
        .recipients
        .iter()
        .filter(|r| !state.is_done(r))
        .filter_map(|r| r.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .collect();
    domains.sort();
    domains.dedup();
    for domain in domains {
        println!("tls:       {domain}: {}", tls_policy(config, &domain, now));
    }
    println!("size:      {} octets", message.len());
    println!();
    let header = yubin_queue::engine::dsn::header_section(&message, 64 * 1024);
    print!("{}", String::from_utf8_lossy(header));
    Ok(())
}

/// Which TLS policy the next attempt for `domain` meets: the domain's
/// cached MTA-STS policy (for mail routed by MX), or the configuration's.
fn tls_policy(config: &Config, domain: &str, now: u64) -> String {
    let Ok(routes) = config.queue.routes() else {
        return "unknown (the [queue] configuration does not load)".into();
    };
    let (level, source) = routes.configured_tls(domain);
    let configured = format!("{} ({source})", level.name());
    if !routes.by_mx(domain) {
        return configured;
    }
    // DANE is decided at each attempt, from live DNS.
    let dane = match config.dns_resolver() {
        Ok(resolver)
            if config.queue.dane && yubin_queue::engine::dns::validating_resolver(resolver) =>
        {
            "DANE first for MX hosts with validated TLSA records; "
        }
        _ => "",
    };
    if !config.queue.mta_sts {
        return format!("{dane}{configured}");
    }
    let cached = std::fs::read_to_string(config.queue_dir().join("mta-sts").join(domain))
        .ok()
        .and_then(|text| yubin_queue::mta_sts::Policy::from_record(&text))
        .filter(|p| p.is_fresh(now));
    match cached {
        Some(policy) if policy.mode == yubin_queue::mta_sts::Mode::Enforce => format!(
            "{dane}verify (MTA-STS enforce, mx {}, until {})",
            policy.mx.join(" "),
            yubin_line::date::rfc5322(policy.fetched.saturating_add(policy.max_age))
        ),
        Some(policy) => format!(
            "{dane}{configured}; MTA-STS {} (reported, not enforced)",
            policy.mode.name()
        ),
        None => format!("{dane}{configured}; no MTA-STS policy seen"),
    }
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
