//! What a received message goes through between the end of DATA and
//! `commit`: sender authentication (mail from outside on the MX
//! listener) and the content filters of its listener. The message is
//! read from the spool once, with CRLF line ends, for both.

use std::net::SocketAddr;

use tokio::sync::OwnedSemaphorePermit;
use yubin_smtp_proto::{Envelope, ForwardPath, Reply, replies};

use super::{Listener, SmtpService};
use crate::filter::{self, Judgement};
use crate::filter_config::FilterListener;
use crate::header_edit::{HeaderChanges, Tag};
use crate::logtext::Escaped;
use crate::relay::Routing;
use crate::spool::Spool;

/// The session facts the checks need.
pub(super) struct Context<'a> {
    pub(super) service: &'a SmtpService,
    pub(super) session_id: u64,
    pub(super) listener: Listener,
    pub(super) peer: SocketAddr,
    pub(super) helo: &'a str,
    pub(super) authenticated: Option<&'a str>,
    /// A trusted network or a POP-before-SMTP grant holder.
    pub(super) trusted: bool,
    /// The id the message will be stored under.
    pub(super) queue_id: &'a str,
    /// The client checks before DATA tagged the client's mail.
    pub(super) client_tag: bool,
    /// The client's forward-confirmed name, when it was looked up.
    pub(super) client_name: Option<&'a str>,
    /// The checks before DATA looked it up already (found or not).
    pub(super) client_name_asked: bool,
}

/// What the checks decided.
pub(super) enum Screened {
    /// Store it, with our Authentication-Results field and these header
    /// changes (in the Junk folder with `quarantine`); `notes`: the
    /// filters' answers, for the log line.
    Deliver {
        results: Option<String>,
        header: HeaderChanges,
        quarantine: bool,
        notes: String,
    },
    /// Refuse it with this reply.
    Refuse(Reply),
    /// Take it and throw it away (a filter said discard).
    Discard { notes: String },
}

/// Runs the checks that apply to the message in `spool`; gives the spool
/// back (`None` when it was lost with a task that failed: the message is
/// refused).
pub(super) async fn screen(
    cx: &Context<'_>,
    envelope: &Envelope<Routing>,
    spool: Spool,
) -> (Option<Spool>, Screened) {
    let service = cx.service;
    let from_outside = cx.listener == Listener::Mx && cx.authenticated.is_none() && !cx.trusted;
    let inbound = service.inbound.clone().filter(|_| from_outside);
    let listener = match cx.listener {
        Listener::Mx => FilterListener::Mx,
        Listener::Submission => FilterListener::Submission,
        Listener::Submissions => FilterListener::Submissions,
    };
    let config = &service.config;
    let filtered = config
        .filter
        .iter()
        .any(|f| f.listeners.contains(&listener));
    let mut header = HeaderChanges::default();
    // Results under our name that arrive from outside are forgeries,
    // whether or not we add our own.
    if from_outside {
        header.authserv_id = Some(
            config
                .inbound
                .authserv_id
                .clone()
                .unwrap_or_else(|| config.hostname.clone()),
        );
    }
    if inbound.is_none() && !filtered {
        let screened = delivered(
            config,
            header,
            cx.client_tag && from_outside,
            false,
            None,
            false,
            String::new(),
        );
        return (Some(spool), screened);
    }
    let (spool, content, _turn) = match read_whole(service, spool).await {
        Ok(read) => read,
        Err(spool) => return (spool, Screened::Refuse(replies::LOCAL_ERROR)),
    };
    let mail_from = envelope
        .from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let ip = crate::peer::display_ip(cx.peer);

    // Sender authentication.
    let mut results = None;
    let mut tag = cx.client_tag && from_outside;
    if let Some(inbound) = inbound {
        let checked = inbound
            .check(
                &content,
                yubin_mailauth::inbound::Envelope {
                    ip,
                    helo: cx.helo,
                    mail_from: &mail_from,
                },
            )
            .await;
        let domains: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| match &r.path {
                ForwardPath::Postmaster => config.hostname.clone(),
                ForwardPath::Mailbox(m) => {
                    m.domain_name().unwrap_or_else(|| config.hostname.clone())
                }
            })
            .collect();
        let (dmarc_reject, spf_fail) = config
            .inbound
            .policy_for(domains.iter().map(String::as_str));
        match super::inbound::decide(&checked, dmarc_reject, spf_fail) {
            super::inbound::Decision::Refuse(reply) => {
                tracing::info!(
                    session = cx.session_id,
                    rip = %ip,
                    from = %Escaped(mail_from.as_bytes()),
                    header_from = %checked.from_domain,
                    spf = ?checked.spf,
                    dmarc = checked.dmarc.outcome.name(),
                    reply = %reply,
                    "smtp message refused by sender authentication"
                );
                return (Some(spool), Screened::Refuse(reply));
            }
            super::inbound::Decision::Deliver { tag: tagged } => {
                tracing::info!(
                    session = cx.session_id,
                    spf = ?checked.spf,
                    dmarc = checked.dmarc.outcome.name(),
                    tagged,
                    "smtp sender authentication"
                );
                tag |= tagged;
                results = Some(checked.field);
            }
        }
    }

    // Content filters.
    let mut notes = String::new();
    let mut subject_rewritten = false;
    let mut quarantine = false;
    if filtered {
        // Filters see no forgery under our name (OpenDMARC trusts results
        // under it), and the client's name, looked up now if the checks
        // before DATA did not (rspamd scores a client without one).
        let content = match &header.authserv_id {
            Some(id) => crate::header_edit::without_forgeries(&content, id).unwrap_or(content),
            None => content,
        };
        let looked_up = match (cx.client_name_asked, &service.client_checks) {
            (false, Some(checks)) if !ip.is_loopback() => match checks.fcrdns(ip).await {
                yubin_mailauth::client::Fcrdns::Pass(name) => Some(name),
                _ => None,
            },
            _ => None,
        };
        let client_name = cx.client_name.or(looked_up.as_deref());
        let recipients: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| match &r.path {
                ForwardPath::Postmaster => "postmaster".to_owned(),
                ForwardPath::Mailbox(m) => m.to_string(),
            })
            .collect();
        let message = filter::Message {
            our_name: &config.hostname,
            ip,
            port: cx.peer.port(),
            client_name,
            helo: cx.helo,
            mail_from: &mail_from,
            recipients: &recipients,
            queue_id: cx.queue_id,
            user: cx.authenticated,
            content: &content,
        };
        let answers = filter::run(&config.filter, listener, &message).await;
        notes = answers.notes.join("; ");
        match answers.judgement {
            Judgement::Refuse(reply) => {
                tracing::info!(
                    session = cx.session_id,
                    id = cx.queue_id,
                    rip = %ip,
                    from = %Escaped(mail_from.as_bytes()),
                    filters = ?notes,
                    reply = %reply,
                    "smtp message refused by a content filter"
                );
                return (Some(spool), Screened::Refuse(reply));
            }
            Judgement::Discard => return (Some(spool), Screened::Discard { notes }),
            Judgement::Continue => {}
        }
        header.edits = answers.edits;
        tag |= answers.spam;
        subject_rewritten = answers.subject_rewritten;
        quarantine = answers.quarantine;
    }
    let screened = delivered(
        config,
        header,
        tag,
        subject_rewritten,
        results,
        quarantine,
        notes,
    );
    (Some(spool), screened)
}

/// A message to store: `header` with the spam tag when `tag` (the
/// Subject prefixed unless a filter rewrote it).
fn delivered(
    config: &crate::config::Config,
    mut header: HeaderChanges,
    tag: bool,
    subject_rewritten: bool,
    results: Option<String>,
    quarantine: bool,
    notes: String,
) -> Screened {
    if tag {
        header.tag = Some(Tag {
            subject_prefix: (!subject_rewritten).then(|| config.inbound.subject_tag.clone()),
        });
    }
    Screened::Deliver {
        results,
        header,
        quarantine,
        notes,
    }
}

/// The spooled message, whole, with CRLF line ends (as it was sent:
/// simple canonicalisation hashes the line ends, and filters expect
/// them); a large one waits for one of a few turns, so that memory stays
/// bounded however many sessions send 50 MB at once. The turn is held
/// until the checks are done.
async fn read_whole(
    service: &SmtpService,
    spool: Spool,
) -> Result<(Spool, Vec<u8>, Option<OwnedSemaphorePermit>), Option<Spool>> {
    let turn = if spool.size() > super::INBOUND_LARGE {
        service.inbound_large.clone().acquire_owned().await.ok()
    } else {
        None
    };
    let read = tokio::task::spawn_blocking(move || {
        let mut spool = spool;
        let mut content = Vec::new();
        let read = spool.copy_to(&mut content);
        (spool, read.map(|()| content))
    })
    .await;
    match read {
        Ok((spool, Ok(content))) => {
            let mut wire = Vec::with_capacity(content.len() + content.len() / 32);
            let mut lines = yubin_line::CrlfLines::new();
            lines.convert(&content, &mut wire);
            lines.finish(&mut wire);
            Ok((spool, wire, turn))
        }
        Ok((spool, Err(_))) => Err(Some(spool)),
        // The blocking task panicked with the spool: nothing to give back.
        Err(_) => Err(None),
    }
}
