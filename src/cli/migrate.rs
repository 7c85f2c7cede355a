//! `yubin migrate --from maildir --to postgres` (and back): users with
//! their hashes, and every maildrop and folder with each message's UIDL,
//! arrival order, size and seen flag, so that no POP3 client downloads
//! anything twice. A message already at the destination (same user,
//! folder and UIDL) is skipped, so an interrupted run is resumed by
//! running it again. `--verify` then compares both sides: counts, sizes
//! and UIDLs, in order.
//!
//! The outbound queue moves too, entry by entry, with each entry's
//! delivery record (`migrate_queue`).

use std::collections::{HashMap, HashSet};
use std::io::Read;

use anyhow::Context;
use clap::{Args, ValueEnum};
use yubin_auth::{PasswdFile, User, Users};
use yubin_pg::{CHUNK, Database, Listed, NewMessage};
use yubin_queue::QueueStore;
use yubin_server::Config;
use yubin_server::backend::pg::PgQueue;
use yubin_store::{Listing, Maildir, MaildropLock, name};

use super::Failure;
use super::db::{open, schema_failure};

/// Where mail is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Maildirs and the passwd-file.
    Maildir,
    /// The database `[postgres] url` names.
    Postgres,
}

/// `yubin migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Where the users and mail are now.
    #[arg(long)]
    from: Backend,
    /// Where they go.
    #[arg(long)]
    to: Backend,
    /// After copying, compare both sides (counts, sizes, UIDLs, order);
    /// exit status 1 when they differ.
    #[arg(long)]
    verify: bool,
}

/// What a run did.
#[derive(Debug, Default)]
struct Tally {
    users: usize,
    copied: usize,
    octets: u64,
    already: usize,
    differences: Vec<String>,
    left_out: Vec<String>,
}

/// Runs `yubin migrate`.
pub fn run(args: &MigrateArgs, config: &Config) -> Result<(), Failure> {
    if args.from == args.to {
        return Err(Failure::Usage("--to: must differ from --from".into()));
    }
    let (runtime, db) = open(config)?;
    let (tally, queue) = runtime.block_on(async {
        db.check_schema().await.map_err(schema_failure)?;
        let tally = match args.to {
            Backend::Postgres => to_postgres(config, &db, args.verify).await,
            Backend::Maildir => to_maildir(config, &db, args.verify).await,
        }?;
        let queue = move_queue(config, db, args.to).await?;
        Ok::<_, Failure>((tally, queue))
    })?;
    for problem in tally.left_out.iter().chain(&queue.left) {
        eprintln!("yubin: not copied: {problem}");
    }
    println!(
        "{} users; {} messages copied ({} octets), {} already there; {} queued messages moved",
        tally.users, tally.copied, tally.octets, tally.already, queue.moved
    );
    if args.verify {
        for difference in &tally.differences {
            println!("differs: {difference}");
        }
        if tally.differences.is_empty() {
            println!(
                "verified: every maildrop has the same messages, sizes and UIDLs in the same order"
            );
        }
    }
    if !tally.differences.is_empty() || !tally.left_out.is_empty() || !queue.left.is_empty() {
        return Err(Failure::Exit(
            1,
            format!(
                "{} differences, {} messages not copied, {} queued messages not moved",
                tally.differences.len(),
                tally.left_out.len(),
                queue.left.len()
            ),
        ));
    }
    Ok(())
}

/// Moves the outbound queue to the backend `to` (see `migrate_queue`).
async fn move_queue(
    config: &Config,
    db: Database,
    to: Backend,
) -> Result<super::migrate_queue::QueueTally, Failure> {
    let directory = yubin_queue::Queue::new(config.queue_dir());
    let database = PgQueue::new(db, config.node_name());
    tokio::task::spawn_blocking(move || {
        let (from, to): (&dyn QueueStore, &dyn QueueStore) = match to {
            Backend::Postgres => (&directory, &database),
            Backend::Maildir => (&database, &directory),
        };
        super::migrate_queue::move_queue(from, to)
    })
    .await
    .map_err(runtime_error)?
    .map_err(runtime_error)
}

fn runtime_error(error: impl Into<anyhow::Error>) -> Failure {
    Failure::Runtime(error.into())
}

/// The passwd-file's users, read as the server reads them.
fn passwd_users(config: &Config) -> Result<(PasswdFile, Users), Failure> {
    let path = config.passwd_file();
    let (file, problems) =
        PasswdFile::load(&path).with_context(|| format!("cannot read {}", path.display()))?;
    for problem in &problems {
        eprintln!("yubin: warning: {}: {problem}", path.display());
    }
    let (users, _) = Users::from_file(&file);
    Ok((file, users))
}

/// The user's Maildir, locked against a server that still serves it.
fn locked_maildir(config: &Config, user: &User) -> Result<(Maildir, MaildropLock), Failure> {
    let maildir = yubin_server::mailbox::maildir_for(config, user)
        .map_err(|e| runtime_error(anyhow::anyhow!("{e}")))?;
    maildir.create().map_err(runtime_error)?;
    let lock = MaildropLock::try_acquire(maildir.root()).map_err(|e| {
        runtime_error(anyhow::anyhow!(
            "{}: {e} (stop the server before migrating)",
            maildir.root().display()
        ))
    })?;
    Ok((maildir, lock))
}

/// The Maildir++ folders of a Maildir (`.Junk` → `Junk`), with `""` for
/// the maildrop itself first.
fn maildir_folders(maildir: &Maildir) -> Vec<String> {
    let mut folders = vec![String::new()];
    if let Ok(entries) = std::fs::read_dir(maildir.root()) {
        let mut found: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("maildirfolder").is_file())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix('.').map(str::to_owned))
            .collect();
        found.sort();
        folders.extend(found);
    }
    folders
}

fn folder_of(maildir: &Maildir, folder: &str) -> Maildir {
    if folder.is_empty() {
        maildir.clone()
    } else {
        maildir.folder(folder)
    }
}

/// Compares one maildrop on both sides, in order.
fn compare(what: &str, listing: &Listing, rows: &[Listed], differences: &mut Vec<String>) {
    if listing.len() != rows.len() {
        differences.push(format!(
            "{what}: {} messages in the Maildir, {} in the database",
            listing.len(),
            rows.len()
        ));
        return;
    }
    for (i, row) in rows.iter().enumerate() {
        let uid = listing.uid(i);
        if uid != row.uidl.as_str() {
            differences.push(format!(
                "{what}: message {} is {uid} in the Maildir, {} in the database",
                i + 1,
                row.uidl
            ));
        } else if listing.size(i) != row.wire_size {
            differences.push(format!(
                "{what}: message {uid} is {} octets in the Maildir, {} in the database",
                listing.size(i),
                row.wire_size
            ));
        }
    }
}

async fn to_postgres(config: &Config, db: &Database, verify: bool) -> Result<Tally, Failure> {
    let (file, users) = passwd_users(config)?;
    let entries: Vec<_> = file.users().cloned().collect();
    db.import_users(&entries, false)
        .await
        .map_err(runtime_error)?;
    let mut tally = Tally::default();
    for entry in &entries {
        let Some(user) = users.get(&entry.name) else {
            continue;
        };
        tally.users += 1;
        let user_id = db
            .user_id(&user.name)
            .await
            .map_err(runtime_error)?
            .ok_or_else(|| {
                runtime_error(anyhow::anyhow!("{} vanished from the database", user.name))
            })?;
        let maildir = yubin_server::mailbox::maildir_for(config, user)
            .map_err(|e| runtime_error(anyhow::anyhow!("{e}")))?;
        if !maildir.root().is_dir() {
            // No mail yet: nothing to move, and no Maildir to make.
            continue;
        }
        let (maildir, _lock) = locked_maildir(config, user)?;
        // A UIDL is unique per user across folders in the database; the
        // same file name in two Maildir folders can be copied once.
        let mut elsewhere: HashMap<String, String> = HashMap::new();
        for folder in db.folders(user_id).await.map_err(runtime_error)? {
            for message in db
                .list_maildrop(user_id, &folder)
                .await
                .map_err(runtime_error)?
            {
                elsewhere.insert(message.uidl, folder.clone());
            }
        }
        for folder in maildir_folders(&maildir) {
            let source = folder_of(&maildir, &folder);
            let listing = source.scan().map_err(runtime_error)?;
            let mut batch = Batch {
                user: &user.name,
                folder: &folder,
                node: config.node_name(),
                messages: Vec::new(),
                octets: 0,
            };
            for i in 0..listing.len() {
                let uid = listing.uid(i);
                match elsewhere.get(uid.as_ref()) {
                    Some(there) if *there == folder => {
                        tally.already += 1;
                        continue;
                    }
                    Some(there) => {
                        tally.left_out.push(format!(
                            "{}: UIDL {uid} is in {} already",
                            describe(&user.name, &folder),
                            describe(&user.name, there)
                        ));
                        continue;
                    }
                    None => {
                        elsewhere.insert(uid.to_string(), folder.clone());
                    }
                }
                let mut body = Vec::new();
                source
                    .open(&listing, i)
                    .map_err(runtime_error)?
                    .read_to_end(&mut body)
                    .map_err(runtime_error)?;
                let flags = name::flags(listing.file_name(i).as_encoded_bytes());
                let (seconds, _) = name::delivery_time(listing.base(i));
                tally.copied += 1;
                tally.octets += body.len() as u64;
                batch
                    .add(
                        db,
                        Incoming {
                            uidl: uid.into_owned(),
                            wire_size: listing.size(i),
                            seen: flags.contains(&b'S'),
                            delivered: i64::try_from(seconds).ok().filter(|&s| s > 0),
                            body,
                        },
                    )
                    .await
                    .map_err(runtime_error)?;
            }
            batch.flush(db).await.map_err(runtime_error)?;
            if verify {
                let rows = db
                    .list_maildrop(user_id, &folder)
                    .await
                    .map_err(runtime_error)?;
                let listing = source.scan().map_err(runtime_error)?;
                compare(
                    &describe(&user.name, &folder),
                    &listing,
                    &rows,
                    &mut tally.differences,
                );
            }
        }
    }
    Ok(tally)
}

fn describe(user: &str, folder: &str) -> String {
    if folder.is_empty() {
        user.to_owned()
    } else {
        format!("{user} ({folder})")
    }
}

/// A message from a Maildir on its way into the database.
struct Incoming {
    uidl: String,
    wire_size: u64,
    seen: bool,
    delivered: Option<i64>,
    body: Vec<u8>,
}

/// Messages of one maildrop copied together: small ones in one
/// transaction per batch, a large one by itself, chunk by chunk, in order.
struct Batch<'a> {
    user: &'a str,
    folder: &'a str,
    node: &'a str,
    messages: Vec<Incoming>,
    octets: usize,
}

/// Messages per transaction, and octets.
const BATCH_MESSAGES: usize = 500;
const BATCH_OCTETS: usize = 16 << 20;

/// A body of more chunks than this is written chunk by chunk.
const LARGE_CHUNKS: usize = 4;

impl Batch<'_> {
    async fn add(&mut self, db: &Database, message: Incoming) -> Result<(), yubin_pg::DbError> {
        if message.body.len() > LARGE_CHUNKS * CHUNK {
            self.flush(db).await?;
            return self.copy_large(db, &message).await;
        }
        self.octets += message.body.len();
        self.messages.push(message);
        if self.messages.len() >= BATCH_MESSAGES || self.octets >= BATCH_OCTETS {
            self.flush(db).await?;
        }
        Ok(())
    }

    fn row<'m>(
        &'m self,
        message: &'m Incoming,
        started: Option<(i64, i32)>,
        chunks: Vec<&'m [u8]>,
    ) -> NewMessage<'m> {
        NewMessage {
            user: self.user,
            folder: self.folder,
            uidl: Some(&message.uidl),
            node: self.node,
            size: message.body.len() as u64,
            wire_size: message.wire_size,
            body: started.map(|(id, _)| id),
            first_seq: started.map_or(0, |(_, seq)| seq),
            chunks,
            seen: message.seen,
            delivered: message.delivered,
        }
    }

    async fn flush(&mut self, db: &Database) -> Result<(), yubin_pg::DbError> {
        if self.messages.is_empty() {
            return Ok(());
        }
        let rows: Vec<NewMessage<'_>> = self
            .messages
            .iter()
            .map(|m| self.row(m, None, m.body.chunks(CHUNK).collect()))
            .collect();
        db.deliver_batch(&rows).await?;
        self.messages.clear();
        self.octets = 0;
        Ok(())
    }

    /// Writes all chunks but the last first, then the last with the
    /// maildrop row.
    async fn copy_large(&self, db: &Database, message: &Incoming) -> Result<(), yubin_pg::DbError> {
        let chunks: Vec<&[u8]> = message.body.chunks(CHUNK).collect();
        let id = db.start_body(message.body.len() as u64).await?;
        let (rest, last) = chunks.split_at(chunks.len() - 1);
        for (seq, chunk) in rest.iter().enumerate() {
            db.write_chunk(id, i32::try_from(seq).unwrap_or(i32::MAX), chunk)
                .await?;
        }
        let first_seq = i32::try_from(rest.len()).unwrap_or(i32::MAX);
        db.deliver(&self.row(message, Some((id, first_seq)), last.to_vec()))
            .await?;
        Ok(())
    }
}

/// Whether `uidl` can be a Maildir file's base name that gives back the
/// same UIDL.
fn usable_as_name(uidl: &str) -> bool {
    !uidl.starts_with('.') && !uidl.contains(['/', ':']) && name::uid_cow(uidl.as_bytes()) == uidl
}

async fn to_maildir(config: &Config, db: &Database, verify: bool) -> Result<Tally, Failure> {
    let (_, entries) = db.user_entries().await.map_err(runtime_error)?;
    let path = config.passwd_file();
    let (mut file, _) = passwd_users(config)?;
    for entry in &entries {
        file.add(entry.clone());
    }
    file.save(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let (users, _) = Users::from_file(&file);
    let mut tally = Tally::default();
    for entry in &entries {
        let Some(user) = users.get(&entry.name) else {
            continue;
        };
        tally.users += 1;
        let Some(user_id) = db.user_id(&user.name).await.map_err(runtime_error)? else {
            continue;
        };
        let (maildir, _lock) = locked_maildir(config, user)?;
        for folder in db.folders(user_id).await.map_err(runtime_error)? {
            let target = folder_of(&maildir, &folder);
            if !folder.is_empty() {
                target.create_folder().map_err(runtime_error)?;
            }
            let listing = target.scan().map_err(runtime_error)?;
            let have: HashSet<String> = (0..listing.len())
                .map(|i| listing.uid(i).into_owned())
                .collect();
            let rows = db
                .list_maildrop(user_id, &folder)
                .await
                .map_err(runtime_error)?;
            for row in &rows {
                if have.contains(&row.uidl) {
                    tally.already += 1;
                    continue;
                }
                if !usable_as_name(&row.uidl) {
                    tally.left_out.push(format!(
                        "{}: UIDL {:?} cannot be a Maildir file name",
                        describe(&user.name, &folder),
                        row.uidl
                    ));
                    continue;
                }
                let body = read_body(db, row).await.map_err(runtime_error)?;
                write_message(&target, row, &body).map_err(runtime_error)?;
                tally.copied += 1;
                tally.octets += body.len() as u64;
            }
            if verify {
                let listing = target.scan().map_err(runtime_error)?;
                compare(
                    &describe(&user.name, &folder),
                    &listing,
                    &rows,
                    &mut tally.differences,
                );
            }
        }
    }
    Ok(tally)
}

/// A body, whole, checked against the size written at delivery.
async fn read_body(db: &Database, row: &Listed) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(usize::try_from(row.size).unwrap_or(0));
    let mut seq = 0;
    loop {
        let chunks = db.read_chunks(row.body, seq, 16).await?;
        if chunks.is_empty() {
            break;
        }
        seq += i32::try_from(chunks.len())?;
        for chunk in chunks {
            body.extend_from_slice(chunk.bytes());
        }
    }
    anyhow::ensure!(
        body.len() as u64 == row.size,
        "message {} has {} octets of {}",
        row.uidl,
        body.len(),
        row.size
    );
    Ok(body)
}

/// Writes a message into `new/` (or `cur/` with the S flag when it was
/// seen) under its UIDL: written and fsynced in `tmp/`, then linked, with
/// the directory fsynced.
fn write_message(maildir: &Maildir, row: &Listed, body: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = maildir
        .root()
        .join("tmp")
        .join(format!("{}.migrating", row.uidl));
    let _ = std::fs::remove_file(&tmp);
    let staged = yubin_durable::Staged::write(tmp, 0o600, |file| file.write_all(body))?;
    let target = if row.seen {
        maildir.root().join("cur").join(format!("{}:2,S", row.uidl))
    } else {
        maildir.root().join("new").join(&row.uidl)
    };
    staged.link_as(&target)?;
    Ok(())
}
