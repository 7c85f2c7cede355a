//! rspamd's answer to `POST /checkv2` (its JSON protocol), read into what
//! it asks of the message: its action, the header changes in its
//! `milter` block, and the reply text it wants the client to see.

use serde::Deserialize;
use serde_json::Value;
use yubin_milter::HeaderEdit;
use yubin_smtp_proto::Reply;

use super::{Answer, Edit, Judgement};

/// The parts of the answer we use.
#[derive(Debug, Deserialize)]
struct Raw {
    action: String,
    #[serde(default)]
    score: f64,
    #[serde(default)]
    required_score: f64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    symbols: serde_json::Map<String, Value>,
    #[serde(default)]
    milter: Option<Milter>,
    #[serde(default)]
    messages: Option<Messages>,
}

#[derive(Debug, Default, Deserialize)]
struct Milter {
    #[serde(default)]
    add_headers: serde_json::Map<String, Value>,
    #[serde(default)]
    remove_headers: serde_json::Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Messages {
    #[serde(default)]
    smtp_message: Option<String>,
}

/// The longest reply text passed on to the client.
const MAX_TEXT: usize = 400;

/// What rspamd's JSON `body` asks for; an error names what is wrong.
pub(super) fn interpret(body: &[u8]) -> Result<Answer, String> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("its answer: {e}"))?;
    let text = |default: &str| {
        raw.messages
            .as_ref()
            .and_then(|m| m.smtp_message.as_deref())
            .map(clean)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let mut edits = Vec::new();
    // Fields that arrive under rspamd's names are not rspamd's.
    edits.push(Edit::RemoveAll("X-Spamd-Result".into()));
    edits.push(Edit::RemoveAll("X-Spam".into()));
    let milter = raw.milter.unwrap_or_default();
    for (name, order) in &milter.remove_headers {
        if !valid_name(name) {
            continue;
        }
        // 0: every occurrence; n: the n-th; rspamd's negative orders
        // (from the end) are taken as "every".
        match order.as_i64() {
            Some(n) if n > 0 => edits.push(Edit::Filter(HeaderEdit::Change {
                index: u32::try_from(n).unwrap_or(u32::MAX),
                name: name.clone(),
                value: String::new(),
            })),
            _ => edits.push(Edit::RemoveAll(name.clone())),
        }
    }
    let mut spamd_result = false;
    for (name, value) in &milter.add_headers {
        if !valid_name(name) {
            continue;
        }
        spamd_result |= name.eq_ignore_ascii_case("X-Spamd-Result");
        // A string, {"value": …, "order": …}, or a list of either.
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in values {
            let (text, order) = match item {
                Value::String(s) => (s.as_str(), None),
                Value::Object(o) => (
                    o.get("value").and_then(Value::as_str).unwrap_or_default(),
                    o.get("order").and_then(Value::as_u64),
                ),
                _ => continue,
            };
            let value = folded_value(text);
            edits.push(Edit::Filter(match order {
                Some(index) if index > 0 => HeaderEdit::Insert {
                    index: u32::try_from(index - 1).unwrap_or(u32::MAX),
                    name: name.clone(),
                    value,
                },
                Some(_) => HeaderEdit::Insert {
                    index: 0,
                    name: name.clone(),
                    value,
                },
                None => HeaderEdit::Add {
                    name: name.clone(),
                    value,
                },
            }));
        }
    }
    let spam_word = if raw.score >= raw.required_score && raw.required_score > 0.0 {
        "True"
    } else {
        "False"
    };
    if !spamd_result {
        // rspamd's own summary field, as its milter_headers module writes
        // it, when its configuration does not add one.
        let mut summary = format!(
            "default: {spam_word} [{:.2} / {:.2}]",
            raw.score, raw.required_score
        );
        let mut symbols: Vec<(&String, f64)> = raw
            .symbols
            .iter()
            .map(|(name, s)| (name, s.get("score").and_then(Value::as_f64).unwrap_or(0.0)))
            .filter(|(name, _)| valid_name(name))
            .collect();
        symbols.sort_by(|a, b| a.0.cmp(b.0));
        for (name, score) in symbols.iter().take(100) {
            summary.push_str(&format!(";\n\t{name}({score:.2})"));
        }
        edits.push(Edit::Filter(HeaderEdit::Add {
            name: "X-Spamd-Result".into(),
            value: format!(" {summary}"),
        }));
    }
    let note = format!(
        "rspamd {} {:.2}/{:.2}",
        raw.action, raw.score, raw.required_score
    );
    let judgement = match raw.action.as_str() {
        "reject" => Judgement::Refuse(reply(554, "5.7.1", text("Spam message rejected"))),
        "soft reject" => Judgement::Refuse(reply(451, "4.7.1", text("Try again later"))),
        "discard" => Judgement::Discard,
        "add header" => {
            edits.push(Edit::Filter(HeaderEdit::Add {
                name: "X-Spam".into(),
                value: " Yes".into(),
            }));
            return Ok(Answer {
                judgement: Judgement::Continue,
                edits,
                spam: true,
                subject_rewritten: false,
                quarantine: false,
                note,
            });
        }
        // Held out of the maildrop: the recipients' Junk folders.
        "quarantine" => {
            return Ok(Answer {
                judgement: Judgement::Continue,
                edits,
                spam: true,
                subject_rewritten: false,
                quarantine: true,
                note,
            });
        }
        "rewrite subject" => {
            let subject = raw.subject.as_deref().map(clean).filter(|s| !s.is_empty());
            let rewritten = subject.is_some();
            if let Some(subject) = subject {
                edits.push(Edit::Filter(HeaderEdit::Change {
                    index: 1,
                    name: "Subject".into(),
                    value: format!(" {subject}"),
                }));
            }
            return Ok(Answer {
                judgement: Judgement::Continue,
                edits,
                spam: true,
                subject_rewritten: rewritten,
                quarantine: false,
                note,
            });
        }
        // "no action"; "greylist", which rspamd's greylist module turns
        // into "soft reject" when it means it (its own milter delivers
        // the message); and actions we do not know (a custom one): the
        // message goes on, its score in the header.
        _ => Judgement::Continue,
    };
    Ok(Answer {
        judgement,
        edits,
        spam: false,
        subject_rewritten: false,
        quarantine: false,
        note,
    })
}

fn reply(code: u16, status: &'static str, text: String) -> Reply {
    Reply::with_text(code, status, text)
}

/// Text for a reply or a header: no controls, bounded.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A header value from rspamd: its folds kept as LF (continuation lines
/// start with white space), no other controls.
fn folded_value(text: &str) -> String {
    let mut out = String::from(" ");
    for (i, line) in text.split('\n').enumerate() {
        let line: String = line.chars().filter(|c| !c.is_control()).collect();
        if i > 0 {
            out.push('\n');
            if !line.starts_with([' ', '\t']) {
                out.push('\t');
            }
        }
        out.push_str(if i == 0 { line.trim_start() } else { &line });
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

#[cfg(test)]
mod tests;
