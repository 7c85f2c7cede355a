//! Content filters on received mail: milters and rspamd, in the order
//! `[[filter]]` lists them, each bounded by its timeout. A refusal ends
//! the run; header edits and spam marks add up; a filter that cannot be
//! asked gets its `on_failure`.

mod connect;
mod milter;
mod rspamd;
mod rspamd_reply;

use std::net::IpAddr;

use yubin_smtp_proto::Reply;

use crate::filter_config::{FilterConfig, FilterKind, FilterListener, OnFailure};
pub(crate) use crate::header_edit::Edit;

/// A received message as filters are told of it.
#[derive(Clone, Copy)]
pub(crate) struct Message<'a> {
    /// Our host name.
    pub(crate) our_name: &'a str,
    /// The client's address and port.
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    /// Its forward-confirmed host name, when one was looked up.
    pub(crate) client_name: Option<&'a str>,
    /// Its HELO name.
    pub(crate) helo: &'a str,
    /// MAIL FROM, without brackets.
    pub(crate) mail_from: &'a str,
    /// RCPT TO addresses, without brackets.
    pub(crate) recipients: &'a [String],
    /// Our queue id.
    pub(crate) queue_id: &'a str,
    /// The user who authenticated, if any.
    pub(crate) user: Option<&'a str>,
    /// The message as sent, CRLF line ends.
    pub(crate) content: &'a [u8],
}

/// One filter's judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Go on (to the next filter, then delivery).
    Continue,
    /// Refuse the message with this reply.
    Refuse(Reply),
    /// Take it (250) and throw it away.
    Discard,
}

/// One filter's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) judgement: Judgement,
    pub(crate) edits: Vec<Edit>,
    /// The filter judged it spam (quarantine, rspamd's add header or
    /// rewrite subject).
    pub(crate) spam: bool,
    /// The filter wrote a new Subject itself.
    pub(crate) subject_rewritten: bool,
    /// The filter wants the message held out of the maildrop
    /// (quarantine): it goes to each recipient's Junk folder.
    pub(crate) quarantine: bool,
    /// For the log line: the filter and what it said.
    pub(crate) note: String,
}

/// Every filter's answers, together.
#[derive(Debug)]
pub(crate) struct Filtered {
    /// `Continue`: deliver.
    pub(crate) judgement: Judgement,
    pub(crate) edits: Vec<Edit>,
    pub(crate) spam: bool,
    pub(crate) subject_rewritten: bool,
    pub(crate) quarantine: bool,
    /// One note per filter asked, for the delivery log line.
    pub(crate) notes: Vec<String>,
}

/// The reply for a filter that cannot be asked, under `tempfail`.
const FILTER_DOWN: Reply = Reply::new(451, "4.7.1", "Content filter unavailable; try again later");

/// Runs the `filters` that apply to `listener` over `message`. Each
/// filter sees the message as the ones before it left it (OpenDMARC
/// reads OpenDKIM's results).
pub(crate) async fn run(
    filters: &[FilterConfig],
    listener: FilterListener,
    message: &Message<'_>,
) -> Filtered {
    let mut all = Filtered {
        judgement: Judgement::Continue,
        edits: Vec::new(),
        spam: false,
        subject_rewritten: false,
        quarantine: false,
        notes: Vec::new(),
    };
    // The message as the next filter is to see it, once one has changed it.
    let mut edited: Option<Vec<u8>> = None;
    for filter in filters.iter().filter(|f| f.listeners.contains(&listener)) {
        let seen = Message {
            content: edited.as_deref().unwrap_or(message.content),
            ..*message
        };
        let answer = ask(filter, &seen).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                tracing::warn!(
                    id = message.queue_id,
                    filter = %filter.address,
                    error = %reason,
                    on_failure = ?filter.on_failure,
                    "content filter failed"
                );
                let kind = match filter.kind {
                    FilterKind::Milter => "milter",
                    FilterKind::Rspamd => "rspamd",
                };
                all.notes.push(format!("{kind} {} failed", filter.address));
                if filter.on_failure == OnFailure::Tempfail {
                    all.judgement = Judgement::Refuse(FILTER_DOWN);
                    return all;
                }
                continue;
            }
        };
        all.notes.push(answer.note);
        if !answer.edits.is_empty() {
            edited = Some(crate::header_edit::apply_to_wire(
                edited.as_deref().unwrap_or(message.content),
                &answer.edits,
            ));
        }
        all.edits.extend(answer.edits);
        all.spam |= answer.spam;
        all.subject_rewritten |= answer.subject_rewritten;
        all.quarantine |= answer.quarantine;
        if answer.judgement != Judgement::Continue {
            all.judgement = answer.judgement;
            return all;
        }
    }
    all
}

/// One filter's answer within its timeout.
async fn ask(filter: &FilterConfig, message: &Message<'_>) -> Result<Answer, String> {
    let address = filter.endpoint()?;
    let work = async {
        match filter.kind {
            FilterKind::Milter => milter::ask(&address, message).await,
            FilterKind::Rspamd => rspamd::ask(&address, message).await,
        }
    };
    tokio::time::timeout(filter.timeout.0, work)
        .await
        .map_err(|_| format!("no answer within {:?}", filter.timeout.0))?
}
