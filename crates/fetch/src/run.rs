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
use crate::ledger::{Ledger, OpenError, now_secs};

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

/// One message as the run sees it.
#[derive(Debug)]
struct Message {
    number: MsgNum,
    size: u64,
    /// The ledger key: the UIDL, or `hdr:` + digest for messages without
    /// a trustworthy one (filled in later).
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

    let mut messages = inventory(&mut pop, &mut report).await?;
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

    // Messages without a trustworthy UIDL are known by their headers.
    for message in messages.iter_mut().filter(|m| m.key.is_none()) {
        let mut headers = Vec::new();
        let limit = message.size.saturating_add(64 * 1024).min(1 << 20);
        let found = match pop.top(message.number, 0, limit, &mut headers).await {
            Ok(found) => found,
            Err(ClientError::Protocol(_)) if message.size > limit => {
                return Err(ClientError::Protocol(
                    yubin_pop3_proto::client::ProtocolError::ContentTooLong(limit),
                )
                .into());
            }
            Err(error) => return Err(error.into()),
        };
        if found {
            message.key = Some(header_key(&headers, message.size));
            report.without_uid += 1;
        }
    }

    let now = now_secs();
    // New messages that will be fetched whole: never seen, or seen only as
    // headers and small enough now.
    let fits = |m: &Message| account.policy.max_size.is_none_or(|max| m.size <= max);
    let planned: Vec<&Message> = messages
        .iter()
        .filter(|m| fits(m))
        .filter(|m| {
            m.key
                .as_ref()
                .is_some_and(|k| ledger.get(k).is_none_or(|e| e.headers_only))
        })
        .take(account.policy.limit.unwrap_or(usize::MAX))
        .collect();
    progress.begin(planned.len(), planned.iter().map(|m| m.size).sum());
    let planned: HashSet<MsgNum> = planned.iter().map(|m| m.number).collect();

    let mut marked = 0usize;
    let outcome = async {
        for message in &messages {
            let Some(key) = message.key.as_deref() else {
                // TOP failed for it: not identifiable, so not touched.
                report.warnings.push(format!(
                    "message {} has no usable unique-id and TOP failed; left alone",
                    message.number
                ));
                continue;
            };
            let fits = account.policy.max_size.is_none_or(|max| message.size <= max);
            if let Some(entry) = ledger.get(key).filter(|e| !(e.headers_only && fits)) {
                if entry.headers_only {
                    // Only its headers were delivered: it stays on the server.
                    continue;
                }
                let due = match account.policy.retention {
                    Retention::Delete => true,
                    Retention::Keep => false,
                    Retention::KeepDays(days) => {
                        now.saturating_sub(entry.first_fetched) >= u64::from(days) * 86_400
                    }
                };
                if due && may_delete && message.trusted {
                    pop.dele_pipelined(message.number).await?;
                    marked += 1;
                    failpoint::hit("after-dele");
                }
                continue;
            }
            if !fits {
                if account.policy.oversize == Oversize::Skip || options.dry_run {
                    report.skipped_oversize += 1;
                    continue;
                }
                let mut headers = Vec::new();
                if !pop.top(message.number, 0, 1 << 20, &mut headers).await? {
                    report.skipped_oversize += 1;
                    continue;
                }
                let mut flagged = format!(
                    "X-Yubin-Fetch-Truncated: headers only; the message has {} octets and stays on the server\r\n",
                    message.size
                )
                .into_bytes();
                flagged.extend_from_slice(&headers);
                deliver(destination, &to_lf(&flagged))?;
                ledger
                    .record_headers_only(key, now)
                    .map_err(FetchError::LedgerWrite)?;
                report.truncated += 1;
                continue;
            }
            if !planned.contains(&message.number) {
                report.deferred += 1;
                continue;
            }
            if options.dry_run {
                report.fetched += 1;
                report.fetched_bytes += message.size;
                progress.advance(message.size);
                continue;
            }
            // Room for a server that counts sizes loosely, not for one
            // that streams forever.
            let limit = message.size.saturating_add(message.size / 8).saturating_add(64 * 1024);
            let mut content = Vec::with_capacity(message.size.min(64 << 20) as usize);
            if !pop.retr(message.number, limit, &mut content).await? {
                report.warnings.push(format!(
                    "the server refused to send message {}; left for the next run",
                    message.number
                ));
                continue;
            }
            // Fewer octets than LIST promised may be a message cut short on
            // the server's side: deliver what came, but keep the original.
            // More is harmless (Dovecot, for one, leaves the CRLF it adds
            // to an unterminated last line out of its count).
            let short = (content.len() as u64) < message.size;
            if short {
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
            deliver(destination, &to_lf(&content))?;
            failpoint::hit("after-deliver");
            ledger.record_fetched(key, now).map_err(FetchError::LedgerWrite)?;
            failpoint::hit("after-record");
            report.fetched += 1;
            report.fetched_bytes += content.len() as u64;
            progress.advance(message.size);
            if account.policy.retention == Retention::Delete
                && may_delete
                && message.trusted
                && !short
            {
                pop.dele_pipelined(message.number).await?;
                marked += 1;
                failpoint::hit("after-dele");
            }
        }
        Ok::<(), FetchError>(())
    }
    .await;
    progress.end();
    // After a failure the connection is dropped without QUIT, so the server
    // removes nothing (RFC 1939 §6); what was delivered is in the ledger.
    outcome?;

    pop.send_quit().await?;
    failpoint::hit("after-quit-sent");
    match pop.finish_quit().await {
        Ok(()) => report.deleted = marked,
        Err(error) => {
            report.quit_uncertain = true;
            report.warnings.push(format!(
                "QUIT: {error}; the {marked} marked messages may still be on the server and will be deleted next run"
            ));
        }
    }
    if !options.dry_run {
        let on_server: HashSet<&str> = messages.iter().filter_map(|m| m.key.as_deref()).collect();
        // Forget what the server no longer has, but only from a listing
        // that is complete: a rejected line might have been one of ours.
        let complete = report.rejected_lines == 0 && messages.iter().all(|m| m.key.is_some());
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
            Err(error) => return Err(error.into()),
        }
    }
}

/// LIST and UIDL, merged: each message's number, size and, when it has a
/// unique one, its UIDL.
async fn inventory(pop: &mut Pop3Client, report: &mut Report) -> Result<Vec<Message>, FetchError> {
    let (scan, uids) = pop.list_and_uidl().await?;
    report.rejected_lines += scan.rejected;
    let mut by_number: HashMap<MsgNum, &str> = HashMap::new();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    if let Some(uids) = &uids {
        report.rejected_lines += uids.rejected;
        for entry in &uids.entries {
            if by_number.insert(entry.number, &entry.uid).is_none() {
                *uses.entry(entry.uid.as_str()).or_default() += 1;
            }
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
            continue;
        }
        let uid = by_number
            .get(&entry.number)
            .copied()
            .filter(|uid| uses[uid] == 1);
        messages.push(Message {
            number: entry.number,
            size: entry.size,
            key: uid.map(str::to_owned),
            trusted: uid.is_some(),
        });
    }
    messages.sort_by_key(|m| m.number);
    Ok(messages)
}

/// The key of a message without a trustworthy UIDL: a digest of its
/// headers (as TOP n 0 returns them) and its size.
fn header_key(headers: &[u8], size: u64) -> String {
    let digest = sha2::Sha256::new()
        .chain_update(size.to_be_bytes())
        .chain_update(headers)
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("hdr:{hex}")
}

fn deliver(destination: &dyn Deliver, message: &[u8]) -> Result<(), FetchError> {
    destination
        .deliver(message)
        .map_err(|error| FetchError::Deliver {
            destination: destination.describe(),
            error,
        })
}
