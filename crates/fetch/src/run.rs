//! One run of one account: log in, see what is new, and for each new
//! message, in this order:
//!
//! 1. RETR it and deliver it locally; the destination fsyncs;
//! 2. record its UIDL in the ledger; the journal is fsynced;
//! 3. only then, if the account deletes, DELE it;
//!
//! and QUIT at the end, which is when the server removes what was marked.
//! A crash anywhere loses nothing: before 2, the message is fetched again
//! next time (the one duplicate the design allows); after 2, it is known,
//! and DELE is simply sent again next time if the server still has it.
//!
//! Deletion is refused whenever it would rest on a guess: not while the
//! ledger is damaged, not for messages without a trustworthy unique-id
//! (no UIDL, or a UIDL shared by two messages), not for a message whose
//! size differed from what LIST said, and never for one fetched only in
//! part (`oversize = "headers"`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sha2::Digest;
use yubin_pop3_proto::MsgNum;

use crate::account::{Account, Oversize, Retention};
use crate::client::{ClientError, Pop3Client};
use crate::deliver::{Deliver, DeliverError, to_lf};
use crate::failpoint;
use crate::ledger::{Kind, Ledger, OpenError, now_secs};
use yubin_pop3_proto::client::ProtocolError;

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages on the server at login.
    pub on_server: usize,
    /// New messages delivered (in a dry run: that would be).
    pub fetched: usize,
    /// Their size in octets as the server sent them.
    pub fetched_bytes: u64,
    /// DELE sent and committed by QUIT.
    pub deleted: usize,
    /// Over `max_size` and left on the server.
    pub skipped_oversize: usize,
    /// Over `max_size`, delivered as headers only.
    pub truncated: usize,
    /// New messages left for the next run by `limit`.
    pub deferred: usize,
    /// Messages shorter than LIST said (delivered, kept on the server).
    pub size_mismatches: usize,
    /// Messages identified by a digest of their headers, never deleted.
    pub without_uid: usize,
    /// Listing lines the server got wrong.
    pub rejected_lines: usize,
    /// Why nothing was deleted this run, if deletion was suspended.
    pub deletion_suspended: Option<String>,
    /// The server's `LOGIN-DELAY`, if it announced one.
    pub login_delay: Option<Duration>,
    /// The QUIT reply was an error or never came: marked messages may or
    /// may not be gone (they are known to the ledger either way).
    pub quit_uncertain: bool,
    /// Messages the destination refused for good (left on the server,
    /// tried again next run).
    pub refused_deliveries: usize,
    /// Warnings worth showing the user.
    pub warnings: Vec<String>,
}

/// Why a run failed. Everything delivered before the failure is in the
/// ledger; nothing undelivered was deleted.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The ledger could not be opened or written.
    #[error("ledger: {0}")]
    Ledger(#[from] OpenError),
    /// A ledger record could not be written.
    #[error("ledger: {0}")]
    LedgerWrite(std::io::Error),
    /// The password could not be read.
    #[error("password: {0}")]
    Password(String),
    /// Talking to the server failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The server refused UIDL although earlier runs had unique-ids.
    #[error("the server refused UIDL, which it answered before; not treating every message as new")]
    UidlLost,
    /// The server wants more time between logins (`[LOGIN-DELAY]`).
    #[error("login refused for now: {status}; the server allows one login every {}", delay.map_or("while".to_owned(), |d| format!("{} s", d.as_secs())))]
    LoginDelay {
        /// The server's reply.
        status: yubin_pop3_proto::client::Status,
        /// The delay its CAPA announced, if it did.
        delay: Option<Duration>,
    },
    /// The local destination refused a message.
    #[error("delivery to {destination} failed: {error}")]
    Deliver {
        /// The destination.
        destination: String,
        /// What went wrong.
        error: DeliverError,
    },
}

impl FetchError {
    /// An exit status in the sysexits tradition, for cron and scripts:
    /// 75 try again later, 77 login refused, 76 the server broke the
    /// protocol, 69 TLS or login impossible as configured, 74 a local
    /// write failed, 78 a password source failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            FetchError::Ledger(OpenError::Busy(_)) => 75,
            FetchError::Ledger(OpenError::Io(..)) | FetchError::LedgerWrite(_) => 74,
            FetchError::Password(_) => 78,
            FetchError::LoginDelay { .. } | FetchError::UidlLost => 75,
            FetchError::Deliver { error, .. } => {
                if error.temporary {
                    75
                } else {
                    74
                }
            }
            FetchError::Client(error) => match error {
                ClientError::Auth(status)
                    if status.in_use() || status.login_delay() || status.temporary() =>
                {
                    75
                }
                ClientError::Auth(_) | ClientError::Scram(_) => 77,
                ClientError::Protocol(_) => 76,
                ClientError::Tls(_) | ClientError::NoStls(_) | ClientError::NoAuthMethod(_) => 69,
                ClientError::Greeting(_)
                | ClientError::Connect(..)
                | ClientError::Timeout(..)
                | ClientError::Io(_)
                | ClientError::Closed
                | ClientError::Refused(..)
                | ClientError::Request(_) => 75,
            },
        }
    }
}

/// Run-wide switches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Look, count and report; deliver, record and delete nothing.
    pub dry_run: bool,
}

/// Told about progress, for a progress bar.
pub trait Progress {
    /// The run will fetch `messages` messages of `bytes` octets (LIST sizes).
    fn begin(&mut self, messages: usize, bytes: u64);
    /// One more message of `bytes` octets is done.
    fn advance(&mut self, bytes: u64);
    /// The run is over.
    fn end(&mut self);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _: usize, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn end(&mut self) {}
}

/// The most octets one message may take in memory, whatever LIST says: a
/// server announcing an endless message must not exhaust the machine.
pub const MAX_MESSAGE: u64 = 512 << 20;

/// One message as the run sees it.
#[derive(Debug)]
struct Message {
    number: MsgNum,
    size: u64,
    /// The ledger key: the UIDL, or `hdr:` + digest for messages without
    /// a trustworthy one (filled in later; `None` until then).
    key: Option<String>,
    /// The key is a real, unique UIDL (deletion may rest on it).
    trusted: bool,
}

/// Fetches `account` into `destination`.
pub async fn fetch(
    account: &Account,
    destination: &dyn Deliver,
    options: RunOptions,
    progress: &mut dyn Progress,
) -> Result<Report, FetchError> {
    let mut ledger = Ledger::open(&account.state_dir, &account.name)?;
    let password = account.password.resolve().map_err(FetchError::Password)?;
    let mut report = Report::default();
    let mut pop = login(account, &password, &mut report).await?;
    drop(password);

    let inventory = inventory(&mut pop, &mut report).await?;
    let mut messages = inventory.messages;
    if !inventory.has_uidl && !messages.is_empty() && ledger.has_unique_ids() {
        // Earlier runs had unique-ids: a server that now refuses UIDL is
        // in trouble, and every message would look new.
        return Err(FetchError::UidlLost);
    }
    report.on_server = messages.len();
    if let Some(damage) = ledger.damage() {
        report.deletion_suspended = Some(format!(
            "the ledger was damaged ({}); messages already fetched may be fetched again",
            damage.0
        ));
    } else if options.dry_run {
        report.deletion_suspended = Some("dry run".into());
    }
    let may_delete = report.deletion_suspended.is_none();
    // RFC 2449 §6.7: EXPIRE 0 servers remove whatever was retrieved, at QUIT.
    let server_expires = pop.capabilities().expire_days == Some(0);
    if server_expires && account.policy.retention != Retention::Delete {
        report.warnings.push(
            "the server removes retrieved mail itself (EXPIRE 0): keep and keep_days cannot be honoured"
                .into(),
        );
    }

    // Messages without a trustworthy UIDL are known by their headers (TOP
    // n 0; servers without TOP get RETR below). Equal digests within one
    // listing are told apart by their order.
    let mut digests: HashMap<String, usize> = HashMap::new();
    for message in messages.iter_mut().filter(|m| m.key.is_none()) {
        let mut headers = Vec::new();
        if pop
            .top(message.number, 0, MAX_MESSAGE, &mut headers)
            .await?
        {
            message.key = Some(header_key(&headers, message.size, &mut digests));
            report.without_uid += 1;
        }
    }

    let now = now_secs();
    let fits = |m: &Message| {
        m.size <= MAX_MESSAGE && account.policy.max_size.is_none_or(|max| m.size <= max)
    };
    // New messages that will be fetched whole: never seen, or seen only as
    // headers and small enough now, or not identifiable without RETR.
    let is_new = |m: &Message| known(&ledger, m).is_none_or(|e| e.kind == Kind::HeadersOnly);
    let limit = account.policy.limit.unwrap_or(usize::MAX);
    let (planned, planned_bytes) = messages
        .iter()
        .filter(|m| fits(m) && is_new(m))
        .take(limit)
        .fold((0, 0u64), |(n, bytes), m| {
            (n + 1, bytes.saturating_add(m.size))
        });
    progress.begin(planned, planned_bytes);

    // DELEs sent this session: the keys are forgotten once QUIT confirms.
    let mut deleted: Vec<(MsgNum, String)> = Vec::new();
    // Retrieved but to stay on the server (shorter than LIST said).
    let mut kept_retrieved = false;
    let outcome = async {
        for message in &messages {
            if let Some(key) = message.key.as_deref()
                && let Some(entry) = known(&ledger, message)
                && !(entry.kind == Kind::HeadersOnly && fits(message))
            {
                if entry.kind == Kind::Skipped {
                    report.warnings.push(format!(
                        "message {} ({key}) broke an earlier run and is left on the server",
                        message.number
                    ));
                }
                let due = match account.policy.retention {
                    Retention::Delete => true,
                    Retention::Keep => false,
                    Retention::KeepDays(days) => {
                        now.saturating_sub(entry.first_fetched) >= u64::from(days) * 86_400
                    }
                };
                if due && may_delete && message.trusted && entry.kind == Kind::Whole {
                    pop.dele_pipelined(message.number).await?;
                    deleted.push((message.number, key.to_owned()));
                }
                continue;
            }
            if !fits(message) {
                if message.size > MAX_MESSAGE {
                    report.warnings.push(format!(
                        "message {} is {} octets, over the {MAX_MESSAGE}-octet limit; left on the server",
                        message.number, message.size
                    ));
                }
                let Some(key) = message.key.as_deref() else {
                    report.skipped_oversize += 1;
                    continue;
                };
                if account.policy.oversize == Oversize::Skip || options.dry_run {
                    report.skipped_oversize += 1;
                    continue;
                }
                let mut headers = Vec::new();
                if !pop.top(message.number, 0, MAX_MESSAGE, &mut headers).await? {
                    report.skipped_oversize += 1;
                    continue;
                }
                let mut flagged = format!(
                    "X-Yubin-Fetch-Truncated: headers only; the message has {} octets and stays on the server\r\n",
                    message.size
                )
                .into_bytes();
                flagged.extend_from_slice(&headers);
                if !deliver(destination, &to_lf(&flagged), message.number, &mut report)? {
                    continue;
                }
                ledger
                    .record(key, Kind::HeadersOnly, message.size, now)
                    .map_err(FetchError::LedgerWrite)?;
                report.truncated += 1;
                continue;
            }
            if report.fetched >= limit {
                report.deferred += 1;
                continue;
            }
            if options.dry_run {
                report.fetched += 1;
                report.fetched_bytes = report.fetched_bytes.saturating_add(message.size);
                progress.advance(message.size);
                continue;
            }
            // Room for a server that counts sizes loosely, not for one
            // that streams forever.
            let room = message
                .size
                .saturating_add(message.size / 8)
                .saturating_add(64 * 1024)
                .min(MAX_MESSAGE);
            let mut content = Vec::with_capacity(message.size.min(64 << 20) as usize);
            match pop.retr(message.number, room, &mut content).await {
                Ok(true) => {}
                Ok(false) => {
                    report.warnings.push(format!(
                        "the server refused to send message {}; left for the next run",
                        message.number
                    ));
                    continue;
                }
                Err(ClientError::Protocol(ProtocolError::ContentTooLong(_))) => {
                    // The session is lost; remember the message so that it
                    // does not stop every later run at the same place.
                    if let Some(key) = &message.key {
                        ledger
                            .record(key, Kind::Skipped, message.size, now)
                            .map_err(FetchError::LedgerWrite)?;
                    }
                    return Err(ClientError::Protocol(ProtocolError::ContentTooLong(room)).into());
                }
                Err(error) => return Err(error.into()),
            }
            let key = match &message.key {
                Some(key) => key.clone(),
                // No UIDL and no TOP: the digest comes from the message.
                None => {
                    let end = memchr::memmem::find(&content, b"\r\n\r\n")
                        .map_or(content.len(), |i| i + 4);
                    report.without_uid += 1;
                    let key = header_key(&content[..end], message.size, &mut digests);
                    if ledger.get(&key).is_some() {
                        continue;
                    }
                    key
                }
            };
            // Fewer octets than LIST promised may be a message cut short on
            // the server's side: deliver what came, but keep the original.
            // More is harmless (Dovecot, for one, leaves the CRLF it adds
            // to an unterminated last line out of its count).
            let short = (content.len() as u64) < message.size;
            if short {
                kept_retrieved = true;
                report.size_mismatches += 1;
                report.warnings.push(format!(
                    "message {} has {} octets but LIST said {}; delivered and kept on the server",
                    message.number,
                    content.len(),
                    message.size
                ));
            } else if content.len() as u64 != message.size {
                tracing::debug!(
                    number = %message.number,
                    received = content.len(),
                    listed = message.size,
                    "message larger than LIST said"
                );
            }
            if !deliver(destination, &to_lf(&content), message.number, &mut report)? {
                continue;
            }
            failpoint::hit("after-deliver");
            let kind = if short { Kind::Kept } else { Kind::Whole };
            ledger
                .record(&key, kind, message.size, now)
                .map_err(FetchError::LedgerWrite)?;
            failpoint::hit("after-record");
            report.fetched += 1;
            report.fetched_bytes = report.fetched_bytes.saturating_add(content.len() as u64);
            progress.advance(message.size);
            if account.policy.retention == Retention::Delete
                && may_delete
                && message.trusted
                && kind == Kind::Whole
            {
                pop.dele_pipelined(message.number).await?;
                deleted.push((message.number, key));
            }
        }
        // Read the answers to the last DELEs before anything is decided.
        pop.settle().await?;
        Ok::<(), FetchError>(())
    }
    .await;
    progress.end();
    // After a failure the connection is dropped without QUIT, so the server
    // removes nothing (RFC 1939 §6); what was delivered is in the ledger.
    outcome?;

    for (number, status) in pop.refused_deles() {
        report.warnings.push(format!(
            "DELE {number} refused: {status}; it stays on the server"
        ));
    }
    let refused: HashSet<MsgNum> = pop.refused_deles().iter().map(|(n, _)| *n).collect();
    deleted.retain(|(n, _)| !refused.contains(n));
    if server_expires && kept_retrieved {
        // QUIT would let the server remove the one whole copy of a message
        // that came short; without QUIT it removes nothing (RFC 1939 §6).
        report.warnings.push(
            "not sending QUIT: the server would remove a message that arrived short (EXPIRE 0); nothing is deleted this run"
                .into(),
        );
        deleted.clear();
    } else {
        pop.send_quit().await?;
        failpoint::hit("after-quit-sent");
        match pop.finish_quit().await {
            Ok(()) => {
                report.deleted = deleted.len();
                for (_, key) in &deleted {
                    ledger.forget(key);
                }
            }
            Err(error) => {
                report.quit_uncertain = true;
                report.warnings.push(format!(
                    "QUIT: {error}; the {} marked messages may still be on the server and will be deleted next run",
                    deleted.len()
                ));
            }
        }
    }
    if !options.dry_run {
        let on_server: HashSet<&str> = messages.iter().filter_map(|m| m.key.as_deref()).collect();
        // Forget what the server no longer has, but only from listings
        // that are complete: LIST and UIDL without a rejected or repeated
        // line, every message identified. Without UIDL, nothing is forgotten.
        let complete = inventory.complete && messages.iter().all(|m| m.key.is_some());
        let present = |key: &str| on_server.contains(key);
        ledger
            .compact(complete.then_some(&present as &dyn Fn(&str) -> bool))
            .map_err(FetchError::LedgerWrite)?;
    }
    Ok(report)
}

/// Connects and logs in, waiting and trying again (twice) while the
/// maildrop is in use by another session.
async fn login(
    account: &Account,
    password: &str,
    report: &mut Report,
) -> Result<Pop3Client, FetchError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut pop = Pop3Client::connect(&account.server).await?;
        report.login_delay = pop.capabilities().login_delay;
        match pop.login(&account.user, password, account.auth).await {
            Ok(()) => return Ok(pop),
            Err(ClientError::Auth(status)) if status.in_use() && attempt < 3 => {
                let wait = account.in_use_wait * attempt;
                report.warnings.push(format!(
                    "maildrop in use ({status}); trying again in {wait:?}"
                ));
                tokio::time::sleep(wait).await;
            }
            Err(ClientError::Auth(status)) if status.login_delay() => {
                return Err(FetchError::LoginDelay {
                    status,
                    delay: pop.capabilities().login_delay,
                });
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// What LIST and UIDL said.
struct Inventory {
    /// Every message, by number.
    messages: Vec<Message>,
    /// The server answered UIDL.
    has_uidl: bool,
    /// Both listings came without a rejected or repeated line: what they
    /// do not list, the server does not have.
    complete: bool,
}

/// LIST and UIDL, merged: each message's number, size and, when it has a
/// unique one, its UIDL.
async fn inventory(pop: &mut Pop3Client, report: &mut Report) -> Result<Inventory, FetchError> {
    let (scan, uids) = pop.list_and_uidl().await?;
    report.rejected_lines += scan.rejected;
    let mut complete = scan.rejected == 0 && uids.as_ref().is_some_and(|u| u.rejected == 0);
    let mut by_number: HashMap<MsgNum, Option<&str>> = HashMap::new();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    if let Some(uids) = &uids {
        report.rejected_lines += uids.rejected;
        for entry in &uids.entries {
            *uses.entry(entry.uid.as_str()).or_default() += 1;
            // A number listed twice has no trustworthy id at all.
            by_number
                .entry(entry.number)
                .and_modify(|uid| {
                    *uid = None;
                    complete = false;
                })
                .or_insert(Some(entry.uid.as_str()));
        }
    } else {
        report.warnings.push(
            "the server has no UIDL; messages are known by their headers and never deleted".into(),
        );
    }
    let duplicates = uses.values().filter(|&&n| n > 1).count();
    if duplicates > 0 {
        report.warnings.push(format!(
            "{duplicates} unique-ids are shared by several messages; those are fetched by number and never deleted"
        ));
    }
    let mut seen = HashSet::new();
    let mut messages = Vec::with_capacity(scan.entries.len());
    for entry in scan.entries {
        if !seen.insert(entry.number) {
            report.rejected_lines += 1;
            complete = false;
            continue;
        }
        let uid = by_number
            .get(&entry.number)
            .copied()
            .flatten()
            .filter(|uid| uses[uid] == 1);
        messages.push(Message {
            number: entry.number,
            size: entry.size,
            key: uid.map(str::to_owned),
            trusted: uid.is_some(),
        });
    }
    messages.sort_by_key(|m| m.number);
    Ok(Inventory {
        messages,
        has_uidl: uids.is_some(),
        complete,
    })
}

/// What the ledger knows of a message. An entry with another size is
/// another message under a reused id (a broken server), not this one.
fn known(ledger: &Ledger, message: &Message) -> Option<crate::ledger::Entry> {
    let key = message.key.as_deref()?;
    ledger.get(key).filter(|e| e.size == message.size)
}

/// The key of a message without a trustworthy UIDL: a digest of its
/// headers (as TOP n 0 returns them) and its size; the second message of a
/// listing with the same digest gets `#2`, and so on.
fn header_key(headers: &[u8], size: u64, seen: &mut HashMap<String, usize>) -> String {
    let digest = sha2::Sha256::new()
        .chain_update(size.to_be_bytes())
        .chain_update(headers)
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("hdr:{hex}");
    let count = seen.entry(key.clone()).or_default();
    *count += 1;
    if *count == 1 {
        key
    } else {
        format!("{key}#{count}")
    }
}

/// Delivers message `number`. `Ok(false)`: the destination refused it for
/// good; it is noted in `report`, and the message is neither recorded nor
/// deleted but tried again next run, while the messages after it go on. A
/// temporary failure (a full disk, a busy lock) stops the run, since the
/// next message would fare no better.
fn deliver(
    destination: &dyn Deliver,
    message: &[u8],
    number: MsgNum,
    report: &mut Report,
) -> Result<bool, FetchError> {
    match destination.deliver(message) {
        Ok(()) => Ok(true),
        Err(error) if !error.temporary => {
            report.refused_deliveries += 1;
            report.warnings.push(format!(
                "message {number}: {} refused it: {}",
                destination.describe(),
                error.reason
            ));
            Ok(false)
        }
        Err(error) => Err(FetchError::Deliver {
            destination: destination.describe(),
            error,
        }),
    }
}
