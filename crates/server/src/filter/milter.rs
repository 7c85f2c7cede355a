//! A milter asked about one message: `yubin-milter`'s conversation over
//! a fresh connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yubin_milter::{Conversation, Decoder, Next, Outcome, Transaction, Verdict};
use yubin_smtp_proto::Reply;

use super::connect::connect;
use super::{Answer, Edit, Judgement, Message};
use crate::filter_config::FilterAddress;

/// The milter at `address`'s answer about `message`.
pub(super) async fn ask(address: &FilterAddress, message: &Message<'_>) -> Result<Answer, String> {
    let mut stream = connect(address).await?;
    // Postfix's conventions: the connect step names the verified host or
    // the address in brackets; `{client_name}` says `unknown`.
    let client_name = message
        .client_name
        .map_or_else(|| format!("[{}]", message.ip), str::to_owned);
    let mut conversation = Conversation::new(Transaction {
        our_name: message.our_name,
        client_name: &client_name,
        client_ip: Some(message.ip),
        client_port: message.port,
        helo: message.helo,
        mail_from: message.mail_from,
        recipients: message.recipients,
        queue_id: message.queue_id,
        user: message.user,
        message: message.content,
    });
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let io = |e: std::io::Error| format!("talking to {address}: {e}");
    let outcome = loop {
        match conversation.next_step() {
            Next::Send(bytes) => stream.write_all(&bytes).await.map_err(io)?,
            Next::Receive => loop {
                if let Some(packet) = decoder.next_packet().map_err(|e| e.to_string())? {
                    conversation.receive(packet).map_err(|e| e.to_string())?;
                    break;
                }
                let n = stream.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Err(format!("{address} closed the connection"));
                }
                decoder.feed(&buf[..n]);
            },
            Next::Done(outcome) => break outcome,
        }
    };
    let _ = stream.shutdown().await;
    Ok(answer(address, outcome))
}

/// What a milter's outcome asks of the message.
fn answer(address: &FilterAddress, outcome: Outcome) -> Answer {
    let (judgement, word) = match outcome.verdict {
        Verdict::Continue => (Judgement::Continue, "continue".to_owned()),
        Verdict::Accept => (Judgement::Continue, "accept".to_owned()),
        Verdict::Discard => (Judgement::Discard, "discard".to_owned()),
        Verdict::Reject(reply) => {
            let reply = smtp_reply(reply, 550, "5.7.1", "Command rejected");
            let word = format!("reject {reply}");
            (Judgement::Refuse(reply), word)
        }
        Verdict::Tempfail(reply) => {
            let reply = smtp_reply(reply, 451, "4.7.1", "Service unavailable - try again later");
            let word = format!("tempfail {reply}");
            (Judgement::Refuse(reply), word)
        }
    };
    let quarantined = outcome.quarantine.is_some();
    let mut note = format!("milter {address} {word}");
    if let Some(reason) = &outcome.quarantine {
        note.push_str(&format!(" quarantine {reason:?}"));
    }
    if !outcome.ignored.is_empty() {
        // Changing the body, the sender or the recipients: not done.
        let ignored: String = outcome.ignored.iter().collect();
        note.push_str(&format!(" ignored {ignored:?}"));
    }
    Answer {
        judgement,
        edits: outcome.edits.into_iter().map(Edit::Filter).collect(),
        spam: quarantined,
        subject_rewritten: false,
        quarantine: quarantined,
        note,
    }
}

/// The milter's reply as ours: its enhanced code kept when it has one of
/// the right class, the defaults (Postfix's) when it gave none.
fn smtp_reply(
    reply: Option<yubin_milter::Reply>,
    default_code: u16,
    default_status: &'static str,
    default_text: &'static str,
) -> Reply {
    let Some(reply) = reply else {
        return Reply::new(default_code, default_status, default_text);
    };
    let class = char::from(b'0' + (reply.code / 100) as u8);
    let has_status = reply.text.split(' ').next().is_some_and(|word| {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3
            && parts[0].len() == 1
            && parts[0].starts_with(class)
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    let text: String = reply.text.chars().take(400).collect();
    if has_status {
        Reply::with_text(reply.code, "", text)
    } else if text.is_empty() {
        Reply::new(
            reply.code,
            default_status_for(reply.code, default_status),
            default_text,
        )
    } else {
        Reply::with_text(
            reply.code,
            default_status_for(reply.code, default_status),
            text,
        )
    }
}

/// The default status of the reply's class (a filter may answer 4xx to a
/// reject, or 5xx to a tempfail).
fn default_status_for(code: u16, default: &'static str) -> &'static str {
    match (code / 100, default) {
        (5, s) if s.starts_with('5') => s,
        (4, s) if s.starts_with('4') => s,
        (5, _) => "5.7.1",
        _ => "4.7.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_milters_reply_keeps_its_status_only_when_it_fits() {
        let r = |code, text: &str| {
            Some(yubin_milter::Reply {
                code,
                text: text.into(),
            })
        };
        assert_eq!(
            smtp_reply(r(554, "5.7.1 Virus found"), 550, "5.7.1", "x").to_string(),
            "554 5.7.1 Virus found"
        );
        assert_eq!(
            smtp_reply(r(554, "4.7.1 wrong class"), 550, "5.7.1", "x").to_string(),
            "554 5.7.1 4.7.1 wrong class"
        );
        assert_eq!(
            smtp_reply(r(450, "busy"), 550, "5.7.1", "x").to_string(),
            "450 4.7.1 busy"
        );
        assert_eq!(
            smtp_reply(None, 550, "5.7.1", "Command rejected").to_string(),
            "550 5.7.1 Command rejected"
        );
    }
}
