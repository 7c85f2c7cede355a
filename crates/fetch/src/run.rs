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
//! What to do with each message, deletion above all, is decided in
//! [`crate::plan`], without I/O; this module only carries it out, in the
//! order above.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use yubin_pop3_proto::MsgNum;

use crate::account::{Account, Retention};
use crate::client::{ClientError, Pop3Client};
use crate::deliver::{Deliver, DeliverError, to_lf};
use crate::failpoint;
use crate::ledger::{Kind, Ledger, OpenError, now_secs};
use crate::plan::{self, Step};
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

pub use crate::plan::MAX_MESSAGE;

/// Fetches `account` into `destination`. What happens to each message is
/// decided by [`crate::plan`]; this carries it out.
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

    let (scan, uids) = pop.list_and_uidl().await?;
    let mut inventory = plan::inventory(scan, uids.as_ref());
    report.rejected_lines = inventory.rejected_lines;
    if !inventory.has_uidl {
        report.warnings.push(
            "the server has no UIDL; messages are known by their headers and never deleted".into(),
        );
    }
    if inventory.shared_uids > 0 {
        report.warnings.push(format!(
            "{} unique-ids are shared by several messages; those are fetched by number and never deleted",
            inventory.shared_uids
        ));
    }
    if !inventory.has_uidl && !inventory.messages.is_empty() && ledger.has_unique_ids() {
        // Earlier runs had unique-ids: a server that now refuses UIDL is
        // in trouble, and every message would look new.
        return Err(FetchError::UidlLost);
    }
    report.on_server = inventory.messages.len();
    report.deletion_suspended =
        plan::deletion_suspended(ledger.damage().map(|d| d.0.as_str()), options.dry_run);
    let rules = plan::Rules {
        policy: account.policy,
        may_delete: report.deletion_suspended.is_none(),
        dry_run: options.dry_run,
        now: now_secs(),
    };
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
    for message in inventory.messages.iter_mut().filter(|m| m.key.is_none()) {
        let mut headers = Vec::new();
        if pop
            .top(message.number, 0, MAX_MESSAGE, &mut headers)
            .await?
        {
            message.key = Some(plan::header_key(&headers, message.size, &mut digests));
            report.without_uid += 1;
        }
    }

    let (planned, planned_bytes) = plan::expected(&inventory.messages, &ledger, &rules);
    progress.begin(planned, planned_bytes);

    // DELEs sent this session: the keys are forgotten once QUIT confirms.
    let mut deleted: Vec<(MsgNum, String)> = Vec::new();
    // Retrieved but to stay on the server (shorter than LIST said).
    let mut retrieved_short = false;
    let outcome = async {
        for message in &inventory.messages {
            let room = match plan::step(message, &ledger, &rules, report.fetched) {
                Step::Delete => {
                    if let Some(key) = &message.key {
                        pop.dele_pipelined(message.number).await?;
                        deleted.push((message.number, key.clone()));
                    }
                    continue;
                }
                Step::Leave { broke_earlier } => {
                    if broke_earlier {
                        report.warnings.push(format!(
                            "message {} ({}) broke an earlier run and is left on the server",
                            message.number,
                            message.key.as_deref().unwrap_or("?")
                        ));
                    }
                    continue;
                }
                Step::Skip { over_hard_limit } => {
                    warn_over_hard_limit(message, over_hard_limit, &mut report);
                    report.skipped_oversize += 1;
                    continue;
                }
                Step::HeadersOnly { over_hard_limit } => {
                    warn_over_hard_limit(message, over_hard_limit, &mut report);
                    let Some(key) = message.key.as_deref() else {
                        continue;
                    };
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
                        .record(key, Kind::HeadersOnly, message.size, rules.now)
                        .map_err(FetchError::LedgerWrite)?;
                    report.truncated += 1;
                    continue;
                }
                Step::Defer => {
                    report.deferred += 1;
                    continue;
                }
                Step::Count => {
                    report.fetched += 1;
                    report.fetched_bytes = report.fetched_bytes.saturating_add(message.size);
                    progress.advance(message.size);
                    continue;
                }
                Step::Fetch { room } => room,
            };
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
                            .record(key, Kind::Skipped, message.size, rules.now)
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
                    report.without_uid += 1;
                    let key =
                        plan::header_key(plan::headers_of(&content), message.size, &mut digests);
                    if ledger.get(&key).is_some() {
                        continue;
                    }
                    key
                }
            };
            let retrieved = plan::after_retrieval(message, content.len() as u64, &rules);
            if retrieved.kind == Kind::Kept {
                retrieved_short = true;
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
            ledger
                .record(&key, retrieved.kind, message.size, rules.now)
                .map_err(FetchError::LedgerWrite)?;
            failpoint::hit("after-record");
            report.fetched += 1;
            report.fetched_bytes = report.fetched_bytes.saturating_add(content.len() as u64);
            progress.advance(message.size);
            if retrieved.delete {
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
    if !plan::may_quit(server_expires, retrieved_short) {
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
        let on_server: HashSet<&str> = inventory
            .messages
            .iter()
            .filter_map(|m| m.key.as_deref())
            .collect();
        let present = |key: &str| on_server.contains(key);
        ledger
            .compact(
                plan::may_forget_absent(&inventory).then_some(&present as &dyn Fn(&str) -> bool),
            )
            .map_err(FetchError::LedgerWrite)?;
    }
    Ok(report)
}

/// Warns about a message over [`MAX_MESSAGE`], which no run fetches whole.
fn warn_over_hard_limit(message: &plan::Listed, over: bool, report: &mut Report) {
    if over {
        report.warnings.push(format!(
            "message {} is {} octets, over the {MAX_MESSAGE}-octet limit; left on the server",
            message.number, message.size
        ));
    }
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
