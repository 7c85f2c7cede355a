//! rspamd answers as rspamd 3.4 writes them.

use super::*;

fn answer(json: &str) -> Answer {
    interpret(json.as_bytes()).expect("a valid answer")
}

#[test]
fn actions_become_verdicts() {
    let gtube = answer(
        r#"{"is_skipped":false,"score":0.0,"required_score":15.0,"action":"reject",
            "symbols":{"GTUBE":{"name":"GTUBE","score":0.0}},
            "messages":{"smtp_message":"Gtube pattern"}}"#,
    );
    assert_eq!(
        gtube.judgement,
        Judgement::Refuse(Reply::with_text(554, "5.7.1", "Gtube pattern".into()))
    );
    let soft = answer(r#"{"score":9,"required_score":15,"action":"soft reject"}"#);
    assert_eq!(
        soft.judgement,
        Judgement::Refuse(Reply::with_text(451, "4.7.1", "Try again later".into()))
    );
    // rspamd's own milter delivers "greylist" (its greylist module says
    // "soft reject" when it greylists).
    let grey = answer(r#"{"score":5,"required_score":15,"action":"greylist"}"#);
    assert_eq!(grey.judgement, Judgement::Continue);
    let held = answer(r#"{"score":12,"required_score":15,"action":"quarantine"}"#);
    assert!(held.quarantine && held.spam);
    assert_eq!(held.judgement, Judgement::Continue);
    let clean = answer(r#"{"score":0.5,"required_score":15,"action":"no action"}"#);
    assert_eq!(clean.judgement, Judgement::Continue);
    assert!(!clean.spam);
    assert_eq!(clean.note, "rspamd no action 0.50/15.00");
}

#[test]
fn add_header_and_rewrite_subject_mark_spam() {
    let tagged = answer(r#"{"score":7,"required_score":15,"action":"add header"}"#);
    assert_eq!(tagged.judgement, Judgement::Continue);
    assert!(tagged.spam && !tagged.subject_rewritten);
    assert!(tagged.edits.contains(&Edit::Filter(HeaderEdit::Add {
        name: "X-Spam".into(),
        value: " Yes".into()
    })));
    let rewritten = answer(
        r#"{"score":8,"required_score":15,"action":"rewrite subject","subject":"*** SPAM *** hello\r\nX-Evil: 1"}"#,
    );
    assert!(rewritten.spam && rewritten.subject_rewritten);
    assert!(rewritten.edits.contains(&Edit::Filter(HeaderEdit::Change {
        index: 1,
        name: "Subject".into(),
        value: " *** SPAM *** helloX-Evil: 1".into()
    })));
}

#[test]
fn the_milter_block_and_our_summary() {
    let a = answer(
        r#"{"score":1.5,"required_score":15,"action":"no action",
            "symbols":{"R_SPF_ALLOW":{"score":-0.2},"ARC_NA":{"score":0}},
            "milter":{"add_headers":{"X-Rspamd-Server":"mx1",
                                     "X-Multi":[{"value":"a","order":0},"b"],
                                     "Bad Name":"x"},
                      "remove_headers":{"X-Spam-Level":0,"X-Old":2}}}"#,
    );
    let names: Vec<String> = a
        .edits
        .iter()
        .map(|e| match e {
            Edit::RemoveAll(n) => format!("-{n}"),
            Edit::Filter(HeaderEdit::Add { name, value }) => format!("+{name}:{value}"),
            Edit::Filter(HeaderEdit::Insert { index, name, value }) => {
                format!("^{index}{name}:{value}")
            }
            Edit::Filter(HeaderEdit::Change { index, name, value }) => {
                format!("~{index}{name}:{value}")
            }
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "-X-Spamd-Result",
            "-X-Spam",
            "~2X-Old:",
            "-X-Spam-Level",
            "^0X-Multi: a",
            "+X-Multi: b",
            "+X-Rspamd-Server: mx1",
            "+X-Spamd-Result: default: False [1.50 / 15.00];\n\tARC_NA(0.00);\n\tR_SPF_ALLOW(-0.20)",
        ]
    );
}

#[test]
fn what_is_not_rspamd_json_is_an_error() {
    for body in ["", "<html>", "{}", r#"{"action":5}"#, "[1,2]"] {
        assert!(interpret(body.as_bytes()).is_err(), "{body}");
    }
}
