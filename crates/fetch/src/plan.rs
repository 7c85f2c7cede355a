//! What happens to each message, decided without I/O: a pure function of
//! the server's listing, the ledger and the account's settings. This is
//! the one place where a delete is decided; [`crate::run`] only carries
//! the decisions out, in the order that loses nothing.
//!
//! The rules (docs/fetch.md, "Never losing a message") in short: a message
//! is deleted only when it was delivered whole, is recorded under a
//! trustworthy unique-id with the same size, is due by the account's
//! retention, and the ledger is sound. Everything else is fetched, left,
//! skipped or deferred, never deleted on a guess.

use std::collections::{HashMap, HashSet};

use sha2::Digest;
use yubin_pop3_proto::MsgNum;
use yubin_pop3_proto::client::{ScanEntry, UidEntry};

use crate::account::{Oversize, Policy, Retention};
use crate::client::Listing;
use crate::ledger::{Entry, Kind, Ledger};

/// The most octets one message may take in memory, whatever LIST says: a
/// server announcing an endless message must not exhaust the machine.
pub const MAX_MESSAGE: u64 = 512 << 20;

/// One message as LIST and UIDL describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its number in this session.
    pub number: MsgNum,
    /// Its size in LIST.
    pub size: u64,
    /// The ledger key: the UIDL, or `hdr:` + digest for a message without
    /// a trustworthy one ([`header_key`]; `None` until it is known).
    pub key: Option<String>,
    /// The key is a real, unique UIDL: deletion may rest on it.
    pub trusted: bool,
}

/// What LIST and UIDL said, merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    /// Every message, by number.
    pub messages: Vec<Listed>,
    /// The server answered UIDL.
    pub has_uidl: bool,
    /// Both listings came without a rejected or repeated line: what they
    /// do not list, the server does not have.
    pub complete: bool,
    /// Lines of either listing the server got wrong (malformed, or a
    /// message number listed twice by LIST).
    pub rejected_lines: usize,
    /// Unique-ids that several messages share.
    pub shared_uids: usize,
}

/// Merges LIST and UIDL: each message's number, size and, when it has a
/// unique one, its UIDL. A UIDL shared by two messages, or a message
/// number UIDL lists twice, identifies nothing; a number LIST repeats is
/// a rejected line, and its first entry counts.
pub fn inventory(scan: Listing<ScanEntry>, uids: Option<&Listing<UidEntry>>) -> Inventory {
    let mut rejected_lines = scan.rejected;
    let mut complete = scan.rejected == 0 && uids.is_some_and(|u| u.rejected == 0);
    let mut by_number: HashMap<MsgNum, Option<&str>> = HashMap::new();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    if let Some(uids) = uids {
        rejected_lines += uids.rejected;
        for entry in &uids.entries {
            *uses.entry(entry.uid.as_str()).or_default() += 1;
            by_number
                .entry(entry.number)
                .and_modify(|uid| {
                    *uid = None;
                    complete = false;
                })
                .or_insert(Some(entry.uid.as_str()));
        }
    }
    let mut seen = HashSet::new();
    let mut messages = Vec::with_capacity(scan.entries.len());
    for entry in scan.entries {
        if !seen.insert(entry.number) {
            rejected_lines += 1;
            complete = false;
            continue;
        }
        let uid = by_number
            .get(&entry.number)
            .copied()
            .flatten()
            .filter(|uid| uses.get(uid) == Some(&1));
        messages.push(Listed {
            number: entry.number,
            size: entry.size,
            key: uid.map(str::to_owned),
            trusted: uid.is_some(),
        });
    }
    messages.sort_by_key(|m| m.number);
    Inventory {
        messages,
        has_uidl: uids.is_some(),
        complete,
        rejected_lines,
        shared_uids: uses.values().filter(|&&n| n > 1).count(),
    }
}

/// What the ledger recorded under a key.
pub trait Recorded {
    /// The entry under `key`, if any.
    fn recorded(&self, key: &str) -> Option<Entry>;
}

impl Recorded for Ledger {
    fn recorded(&self, key: &str) -> Option<Entry> {
        self.get(key)
    }
}

impl Recorded for HashMap<String, Entry> {
    fn recorded(&self, key: &str) -> Option<Entry> {
        self.get(key).copied()
    }
}

/// Everything besides the message and the ledger that a decision rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// The account's retention, size limit and per-run limit.
    pub policy: Policy,
    /// Deletion is allowed this run ([`deletion_suspended`] said nothing).
    pub may_delete: bool,
    /// Look and count only.
    pub dry_run: bool,
    /// The time of the run (Unix seconds), for `keep_days`.
    pub now: u64,
}

/// Why this run deletes nothing at all, if it does not: a damaged ledger
/// (what it forgot could be deleted unseen) or a dry run.
pub fn deletion_suspended(damage: Option<&str>, dry_run: bool) -> Option<String> {
    match damage {
        Some(damage) => Some(format!(
            "the ledger was damaged ({damage}); messages already fetched may be fetched again"
        )),
        None if dry_run => Some("dry run".into()),
        None => None,
    }
}

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delivered whole before and due: DELE it.
    Delete,
    /// Known, and staying on the server (kept, not due, or not deletable).
    /// `broke_earlier`: an earlier run could not retrieve it.
    Leave {
        /// The ledger marks it [`Kind::Skipped`].
        broke_earlier: bool,
    },
    /// Too large, left on the server unfetched.
    Skip {
        /// Over [`MAX_MESSAGE`], not just over `max_size`.
        over_hard_limit: bool,
    },
    /// Too large: deliver its headers (TOP n 0), record it as headers
    /// only, leave it on the server.
    HeadersOnly {
        /// Over [`MAX_MESSAGE`], not just over `max_size`.
        over_hard_limit: bool,
    },
    /// New, but this run's `limit` is reached.
    Defer,
    /// New; a dry run counts it.
    Count,
    /// New: RETR it (accepting at most `room` octets), deliver, record,
    /// then ask [`after_retrieval`].
    Fetch {
        /// The most octets the server may send for it.
        room: u64,
    },
}

/// Decides what to do with `message`, `fetched` new messages into the
/// run (for `limit`).
pub fn step(message: &Listed, ledger: &dyn Recorded, rules: &Rules, fetched: usize) -> Step {
    let fits = fits(message.size, &rules.policy);
    if let Some(entry) = same_message(message, ledger)
        // Headers only, and small enough now: fetched whole below.
        && !(entry.kind == Kind::HeadersOnly && fits)
    {
        let deletable = entry.kind == Kind::Whole && message.trusted && rules.may_delete;
        if deletable && due(&entry, rules) {
            return Step::Delete;
        }
        return Step::Leave {
            broke_earlier: entry.kind == Kind::Skipped,
        };
    }
    if !fits {
        let over_hard_limit = message.size > MAX_MESSAGE;
        // Headers need a key to be recorded under, or every run would
        // deliver them again.
        if message.key.is_none() || rules.policy.oversize == Oversize::Skip || rules.dry_run {
            return Step::Skip { over_hard_limit };
        }
        return Step::HeadersOnly { over_hard_limit };
    }
    if fetched >= rules.policy.limit.unwrap_or(usize::MAX) {
        return Step::Defer;
    }
    if rules.dry_run {
        return Step::Count;
    }
    Step::Fetch {
        room: room_for(message.size),
    }
}

/// How many messages, of how many octets (LIST sizes), the run is going to
/// fetch: the same decisions as [`step`], for a progress bar.
pub fn expected(messages: &[Listed], ledger: &dyn Recorded, rules: &Rules) -> (usize, u64) {
    let mut fetched = 0;
    let mut bytes = 0u64;
    for message in messages {
        if let Step::Fetch { .. } | Step::Count = step(message, ledger, rules, fetched) {
            fetched += 1;
            bytes = bytes.saturating_add(message.size);
        }
    }
    (fetched, bytes)
}

/// What a retrieved message is, once it came: recorded as [`Kind::Whole`],
/// or as [`Kind::Kept`] when it came shorter than LIST said (the server's
/// copy may be the only whole one); and whether to DELE it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retrieved {
    /// How to record it.
    pub kind: Kind,
    /// DELE it now.
    pub delete: bool,
}

/// Decides about `message` after `received` octets of it were delivered.
/// More octets than LIST said is harmless (Dovecot leaves the CRLF it adds
/// to an unterminated last line out of its count); fewer is not.
pub fn after_retrieval(message: &Listed, received: u64, rules: &Rules) -> Retrieved {
    let kind = if received < message.size {
        Kind::Kept
    } else {
        Kind::Whole
    };
    let delete = rules.policy.retention == Retention::Delete
        && rules.may_delete
        && message.trusted
        && kind == Kind::Whole;
    Retrieved { kind, delete }
}

/// Whether QUIT may be sent. A server announcing `EXPIRE 0` removes at
/// QUIT whatever was retrieved; if a message came short, its copy there
/// may be the only whole one, and a session ended without QUIT removes
/// nothing (RFC 1939 §6).
pub fn may_quit(server_expires: bool, retrieved_short: bool) -> bool {
    !(server_expires && retrieved_short)
}

/// Whether the ledger may forget what the server no longer lists: only
/// after a complete listing in which every message was identified.
/// Without UIDL nothing is forgotten (the listing is never complete).
pub fn may_forget_absent(inventory: &Inventory) -> bool {
    inventory.complete && inventory.messages.iter().all(|m| m.key.is_some())
}

/// The key of a message without a trustworthy UIDL: a digest of its
/// headers (as TOP n 0 returns them) and its size; the second message of a
/// listing with the same digest gets `#2`, and so on.
pub fn header_key(headers: &[u8], size: u64, seen: &mut HashMap<String, usize>) -> String {
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

/// The headers of a retrieved message: up to and including the blank line.
pub fn headers_of(content: &[u8]) -> &[u8] {
    let end = memchr::memmem::find(content, b"\r\n\r\n").map_or(content.len(), |i| i + 4);
    &content[..end]
}

/// The ledger's entry for this very message. An entry with another size
/// is another message under a reused id (a broken server), not this one.
fn same_message(message: &Listed, ledger: &dyn Recorded) -> Option<Entry> {
    let key = message.key.as_deref()?;
    ledger.recorded(key).filter(|e| e.size == message.size)
}

/// Small enough to fetch whole.
fn fits(size: u64, policy: &Policy) -> bool {
    size <= MAX_MESSAGE && policy.max_size.is_none_or(|max| size <= max)
}

/// Due for deletion by the retention.
fn due(entry: &Entry, rules: &Rules) -> bool {
    match rules.policy.retention {
        Retention::Delete => true,
        Retention::Keep => false,
        Retention::KeepDays(days) => {
            rules.now.saturating_sub(entry.first_fetched) >= u64::from(days) * 86_400
        }
    }
}

/// The most octets accepted for a message LIST says has `size`: room for
/// a server that counts loosely, not for one that streams forever.
fn room_for(size: u64) -> u64 {
    size.saturating_add(size / 8)
        .saturating_add(64 * 1024)
        .min(MAX_MESSAGE)
}

#[cfg(test)]
mod tests;
