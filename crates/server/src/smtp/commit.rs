//! Making an accepted message durable: a copy in each local recipient's
//! maildrop and one queue entry for the remote recipients, all written and
//! made durable before any is made visible, so the `250` that follows is
//! true and a failure leaves nothing half-delivered.

use std::net::IpAddr;

use super::{SmtpService, hygiene};
use crate::backend::{Delivered as Visible, Delivery};
use crate::config::Config;
use crate::header_edit::{HeaderChanges, edit_header};
use crate::relay::{Route, Routing};
use crate::spool::Spool;
use crate::userstore::Snapshot;
use yubin_pop3_proto::WireSize;
use yubin_smtp_proto::{Body, Envelope, ForwardPath};

/// What the client and the session were like, for the Received header.
pub(super) struct Trace {
    pub(super) id: String,
    pub(super) helo: String,
    pub(super) ip: IpAddr,
    pub(super) tls: bool,
    pub(super) esmtp: bool,
    pub(super) authenticated: Option<String>,
    /// It came in on a submission port (587, 465).
    pub(super) submission_port: bool,
    /// Its From: addresses are its sender's own (a user's, checked), or it
    /// comes from a trusted network: it may carry our DKIM signature.
    pub(super) signable: bool,
    /// Mail checked on the MX listener: our Authentication-Results field
    /// (CRLF line ends are made LF), put above our Received line.
    pub(super) results: Option<String>,
    /// What the checks and content filters change in its header.
    pub(super) header: HeaderChanges,
    /// A filter quarantined it: every local copy goes to the Junk folder.
    pub(super) quarantine: bool,
}

/// The longest header section whose fields are still edited (forged
/// results removed, filters' edits, the spam tag).
const LONG_HEADER: usize = 1024 * 1024;

/// Whether the header section ends (a blank line) within `head`.
fn header_ends_within(head: &[u8]) -> bool {
    head.starts_with(b"\n")
        || head.starts_with(b"\r\n")
        || head.windows(2).any(|w| w == b"\n\n")
        || head.windows(3).any(|w| w == b"\n\r\n")
}

/// A client-supplied name made safe for a header: printable, no spaces, bounded.
fn header_safe(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_:[]".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

/// The Return-Path line, added only at final delivery (RFC 5321 §4.4: a
/// relaying server must not add one).
fn return_path(envelope: &Envelope<Routing>) -> String {
    let from = envelope
        .from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    format!("Return-Path: <{}>\n", from.replace(['\r', '\n'], ""))
}

/// The Received line every copy gets (RFC 5321 §4.4). `hide_client`
/// leaves out the client's name and address (`[smtp] hide_client`, for
/// submissions): the line then starts at `by`, as large providers' own
/// submission servers write it.
fn received(
    config: &Config,
    trace: &Trace,
    smtputf8: bool,
    for_rcpt: Option<&str>,
    hide_client: bool,
) -> String {
    // RFC 6531 §3.7.3: UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA.
    let mut protocol = String::from(match (smtputf8, trace.esmtp) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    });
    if trace.esmtp && trace.tls {
        protocol.push('S');
    }
    if trace.esmtp && trace.authenticated.is_some() {
        protocol.push('A'); // RFC 3848
    }
    let auth = match &trace.authenticated {
        Some(user) => format!(" (authenticated as {})", header_safe(user)),
        None => String::new(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let recipient = for_rcpt.map(|r| format!("\n\tfor <{}>", r.replace(['\r', '\n'], "")));
    let from = if hide_client {
        String::new()
    } else {
        format!(
            "from {} ({}){auth}\n\t",
            header_safe(&trace.helo),
            address_literal(trace.ip)
        )
    };
    format!(
        "Received: {from}by {} (yubin) with {protocol} id {}{};\n\t{}\n",
        config.hostname,
        trace.id,
        recipient.unwrap_or_default(),
        yubin_line::date::rfc5322(now),
    )
}

/// The client's address as an RFC 5321 §4.1.3 address literal.
fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    }
}

/// Why a message could not be made durable: the client gets
/// `452 4.3.1` when the disk is full, `452 4.2.2` over a quota, `451 4.3.0`
/// otherwise.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) reason: String,
    pub(super) storage_full: Option<Full>,
}

/// Which kind of full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Full {
    /// The filesystem (RFC 3463 X.3.1).
    Disk,
    /// A user's quota (X.2.2, mailbox full).
    Quota,
}

impl Failed {
    fn new(reason: String) -> Failed {
        Failed {
            reason,
            storage_full: None,
        }
    }

    /// From an error that may wrap an I/O error.
    fn from_error(error: &impl std::fmt::Display, io: Option<&std::io::Error>) -> Failed {
        Failed {
            reason: error.to_string(),
            storage_full: io.and_then(storage_full),
        }
    }

    /// The reply for the client.
    pub(super) fn reply(&self) -> yubin_smtp_proto::Reply {
        match self.storage_full {
            Some(Full::Disk) => yubin_smtp_proto::replies::INSUFFICIENT_STORAGE,
            Some(Full::Quota) => yubin_smtp_proto::replies::MAILBOX_FULL,
            None => yubin_smtp_proto::replies::LOCAL_ERROR,
        }
    }
}

/// A full disk or an exhausted quota: passing conditions.
fn storage_full(error: &std::io::Error) -> Option<Full> {
    match error.kind() {
        std::io::ErrorKind::StorageFull => Some(Full::Disk),
        std::io::ErrorKind::QuotaExceeded => Some(Full::Quota),
        _ => None,
    }
}

/// What was done.
pub(super) struct Delivered {
    pub(super) local: usize,
    pub(super) queued: usize,
    /// The DKIM signatures the queued copy carries (`domain/selector`).
    pub(super) signed: Vec<String>,
}

/// Stages every copy, then commits them all (blocking).
pub(super) fn deliver(
    service: &SmtpService,
    snapshot: &Snapshot,
    envelope: &Envelope<Routing>,
    trace: &Trace,
    spool: &mut Spool,
) -> Result<Delivered, Failed> {
    let config = service.config.as_ref();
    let mail = service.mail.as_ref();
    let queue = service.queue.as_ref();
    let keyring = service.dkim.as_ref();
    if let Some(error) = spool.failure() {
        return Err(Failed {
            reason: format!("spooling the message failed: {error}"),
            storage_full: storage_full(error),
        });
    }
    let mut locals: Vec<String> = Vec::new();
    let mut remotes: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for recipient in &envelope.recipients {
        let Routing { routes, reason } = &recipient.route;
        let relayed = routes.iter().any(|r| matches!(r, Route::Remote(_)));
        if relayed {
            let reason = reason.to_string();
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        for route in routes {
            match route {
                Route::Local(user) if !locals.contains(user) => locals.push(user.clone()),
                Route::Remote(address) if !remotes.contains(address) => {
                    remotes.push(address.clone())
                }
                _ => {}
            }
        }
    }
    let single = match envelope.recipients.as_slice() {
        [only] => Some(match &only.path {
            ForwardPath::Postmaster => "postmaster".to_owned(),
            ForwardPath::Mailbox(m) => m.to_string(),
        }),
        _ => None,
    };
    // A user's own mail: authenticated, on a submission port, or relayed
    // on the strength of a grant or a trusted network.
    let submission = trace.submission_port || trace.authenticated.is_some() || !reasons.is_empty();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut received = received(
        config,
        trace,
        envelope.params.smtputf8,
        single.as_deref(),
        submission && config.smtp.hide_client,
    );
    if submission {
        received.push_str(&hygiene::missing_fields(
            spool.head(),
            &yubin_line::date::rfc5322(now),
            &trace.id,
            &config.hostname,
        ));
    }
    // Our results go above our Received line (RFC 8601 §4: at the top).
    let whole = spool.size() <= spool.head().len() as u64;
    let mut edited = edit_header(spool.head(), &trace.header, whole);
    if edited.is_none() && !whole && !header_ends_within(spool.head()) {
        // A header section longer than the spool keeps at hand (padded,
        // perhaps, to push a forgery past it): read up to 1 MiB of it.
        let prefix = spool.prefix(LONG_HEADER).map_err(|e| {
            Failed::from_error(&format!("reading the header failed: {e}"), Some(&e))
        })?;
        let whole = spool.size() <= prefix.len() as u64;
        edited = edit_header(&prefix, &trace.header, whole);
    }
    if let Some((old, new)) = edited {
        spool.replace_header(old, &new).map_err(|e| {
            Failed::from_error(&format!("rewriting the header failed: {e}"), Some(&e))
        })?;
    }
    let results = trace
        .results
        .as_deref()
        .map(|field| field.replace("\r\n", "\n"))
        .unwrap_or_default();
    let received = format!("{results}{received}");
    let header = format!("{}{received}", return_path(envelope)).into_bytes();
    let size = header.len() as u64 + spool.size();
    let wire = WireSize::of(&header) + spool.wire_size();

    // Phase 1: everything written and fsynced, nothing visible.
    let mut staged: Vec<Box<dyn Delivery>> = Vec::new();
    for name in &locals {
        let user = snapshot
            .users
            .get(name)
            .ok_or_else(|| Failed::new(format!("user {name} vanished")))?;
        // Tagged mail for a user who wants it apart, and quarantined mail
        // for everyone: the Junk folder.
        let junk = trace.quarantine
            || (trace.header.tag.is_some() && user.junk.unwrap_or(config.inbound.junk));
        let folder = junk.then_some(config.inbound.junk_folder.as_str());
        let copy = mail
            .stage(user, folder, size, wire, &mut |out| {
                out.write_all(&header)?;
                spool.copy_to(out)
            })
            .map_err(|e| Failed::from_error(&e, e.io_error()))?;
        staged.push(copy);
    }
    // Signed: what leaves on a user's authority (AUTH, a grant) with a
    // From: that is the user's own, and what a trusted network sends.
    // Never mail that came in from outside and is forwarded by an alias:
    // its From: is whatever the sender wrote.
    let authorised = trace.authenticated.is_some()
        || envelope.recipients.iter().any(|r| r.route.reason.relays());
    let signed = if remotes.is_empty() || !authorised || !trace.signable {
        None
    } else {
        let head = spool.head().to_vec();
        super::dkim::sign(keyring, &head, &mut |out| {
            out.write_all(received.as_bytes())?;
            spool.copy_to(out)
        })
        .map_err(|e| {
            Failed::from_error(&format!("reading the message to sign it: {e}"), Some(&e))
        })?
    };
    let signature = signed.as_ref().map_or("", |s| s.fields.as_str());
    let queued = if remotes.is_empty() {
        None
    } else {
        let entry = yubin_queue::Envelope {
            id: trace.id.clone(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            from: envelope
                .from
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            recipients: remotes.clone(),
            client: trace.ip.to_string(),
            auth: reasons.join(", "),
            body: match envelope.params.body {
                Body::Unspecified => String::new(),
                Body::SevenBit => "7BIT".into(),
                Body::EightBitMime => "8BITMIME".into(),
            },
            smtputf8: envelope.params.smtputf8,
            // What the entry holds: our Received line, then the message.
            size: Some(
                WireSize::of(signature.as_bytes())
                    + WireSize::of(received.as_bytes())
                    + spool.wire_size(),
            ),
        };
        Some(
            queue
                .stage(&entry, &mut |out| {
                    out.write_all(signature.as_bytes())?;
                    out.write_all(received.as_bytes())?;
                    spool.copy_to(out)
                })
                .map_err(|e| Failed::from_error(&e, e.io_error()))?,
        )
    };

    // Phase 2: make them visible. A failure here removes what was already
    // made visible, so the client's retry does not duplicate it.
    let mut committed: Vec<Box<dyn Visible>> = Vec::new();
    let undo = |committed: Vec<Box<dyn Visible>>| committed.into_iter().for_each(|c| c.undo());
    for copy in staged {
        match copy.commit() {
            Ok(visible) => committed.push(visible),
            Err(error) => {
                undo(committed);
                return Err(Failed::from_error(&error, error.io_error()));
            }
        }
    }
    if let Some(entry) = queued
        && let Err(error) = entry.commit()
    {
        undo(committed);
        return Err(Failed::from_error(&error, error.io_error()));
    }
    Ok(Delivered {
        local: locals.len(),
        queued: remotes.len(),
        signed: signed.map(|s| s.by).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_made_safe_for_headers() {
        assert_eq!(header_safe("mail.example.org"), "mail.example.org");
        assert_eq!(
            header_safe("evil\r\nX-Injected: yes"),
            "evil??X-Injected:?yes"
        );
        assert_eq!(header_safe(""), "unknown");
    }

    #[test]
    fn client_addresses_are_written_as_rfc5321_literals() {
        let literal = |text: &str| address_literal(text.parse().expect("address"));
        assert_eq!(literal("192.0.2.7"), "[192.0.2.7]");
        assert_eq!(literal("2001:db8::1"), "[IPv6:2001:db8::1]");
        assert_eq!(literal("::ffff:192.0.2.7"), "[192.0.2.7]");
    }
}
