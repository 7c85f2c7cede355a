//! Sender authentication on the MX listener, around `yubin-mailauth`'s
//! checks: what a result gets (refused, tagged, delivered), and the edits
//! to the stored header: our Authentication-Results field on top, those
//! that arrive carrying our authserv-id removed (only we write under it,
//! RFC 8601 §5), and the quarantine tag.

use yubin_mailauth::dmarc::{Outcome, Policy};
use yubin_mailauth::inbound::Checked;
use yubin_smtp_proto::Reply;

use crate::inbound_config::{DmarcReject, InboundConfig, SpfFail};

/// What a checked message gets.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Refused at the end of DATA: never stored.
    Refuse(Reply),
    /// Delivered; `tag`: marked as suspicious (Subject tag, X-Spam-Flag).
    Deliver { tag: bool },
}

/// The decision for `checked` under `config` (RFC 7489 §6.6.4, RFC 7208
/// §8.4).
pub(super) fn decide(checked: &Checked, config: &InboundConfig) -> Decision {
    let dmarc = &checked.dmarc;
    // A failure the domain wants acted on, while a check that could have
    // passed did not finish: the sender may try again (a slow DNS server,
    // or an attacker stalling the lookups, must not decide either way).
    if dmarc.outcome == Outcome::Fail && dmarc.apply != Policy::None && checked.unsure {
        return Decision::Refuse(Reply::new(
            451,
            "4.7.0",
            "Sender authentication could not be completed; try again later",
        ));
    }
    if dmarc.outcome == Outcome::Fail && dmarc.apply == Policy::Reject {
        return match config.dmarc_reject {
            DmarcReject::Reject => Decision::Refuse(Reply::with_text(
                550,
                "5.7.1",
                format!(
                    "Message rejected: the DMARC policy of {} asks to refuse mail it did not authenticate",
                    checked.from_domain
                ),
            )),
            DmarcReject::Tag => Decision::Deliver { tag: true },
        };
    }
    // An SPF fail decides only where DMARC does not (forwarded mail that
    // DKIM vouches for passes).
    if checked.spf == yubin_mailauth::inbound::SpfResult::Fail
        && config.spf_fail == SpfFail::Reject
        && dmarc.outcome != Outcome::Pass
    {
        return Decision::Refuse(Reply::new(
            550,
            "5.7.23",
            "Message rejected: the sender's SPF record does not allow this client",
        ));
    }
    Decision::Deliver {
        tag: dmarc.outcome == Outcome::Fail && dmarc.apply == Policy::Quarantine,
    }
}

/// The header section of a stored message rewritten, when it must be:
/// `Authentication-Results` fields under `authserv_id` removed, lines of
/// continuation before the first field dropped (they would join the field
/// we add above them) and, with `tag`, the Subject prefixed and
/// `X-Spam-Flag: YES` set. `whole`: `head` is the whole message, so a
/// message without a blank line is all header. Returns the length of the
/// old header section (up to and including its blank line) and the new
/// one; `None` when nothing changes, or when the header does not end
/// within `head` (then it is left as it is: our field, above it, is still
/// the one a reader meets first).
pub(super) fn edit_header(
    head: &[u8],
    authserv_id: &str,
    tag: Option<&str>,
    whole: bool,
) -> Option<(usize, Vec<u8>)> {
    // Fields, each with its continuation lines, up to the blank line.
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut stray = false;
    let mut at = 0;
    let end = loop {
        let rest = &head[at..];
        if rest.is_empty() && whole {
            break at;
        }
        let line_end = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if whole => rest.len(),
            None => return None,
        };
        let line = &rest[..line_end];
        if line == b"\n" || line == b"\r\n" {
            break at + line_end;
        }
        match (fields.last_mut(), line.first()) {
            (Some(last), Some(b' ' | b'\t')) => {
                let start = at - last.len();
                *last = &head[start..at + line_end];
            }
            (None, Some(b' ' | b'\t')) => stray = true,
            _ => fields.push(line),
        }
        at += line_end;
    };
    let name_is = |field: &[u8], name: &str| {
        field.len() > name.len()
            && field[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && field[name.len()..]
                .iter()
                .find(|b| !b" \t".contains(b))
                .is_some_and(|&b| b == b':')
    };
    let ours = |field: &[u8]| {
        if !name_is(field, "Authentication-Results") {
            return false;
        }
        let value = field
            .iter()
            .position(|&b| b == b':')
            .map_or(&field[..0], |colon| &field[colon + 1..]);
        authserv_id_of(&String::from_utf8_lossy(value)).eq_ignore_ascii_case(authserv_id)
    };
    let forged = fields.iter().any(|f| ours(f));
    if !forged && !stray && tag.is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(end + 64);
    let mut tagged_subject = false;
    for field in &fields {
        if ours(field) || (tag.is_some() && name_is(field, "X-Spam-Flag")) {
            continue;
        }
        match tag {
            Some(tag) if name_is(field, "Subject") && !tagged_subject => {
                let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
                out.extend_from_slice(&field[..=colon]);
                out.push(b' ');
                out.extend_from_slice(tag.as_bytes());
                out.extend_from_slice(&field[colon + 1..]);
                tagged_subject = true;
            }
            _ => out.extend_from_slice(field),
        }
    }
    if let Some(tag) = tag {
        if !tagged_subject {
            out.extend_from_slice(format!("Subject: {tag}\n").as_bytes());
        }
        out.extend_from_slice(b"X-Spam-Flag: YES\n");
    }
    out.extend_from_slice(&head[at..end]);
    Some((end, out))
}

/// The authserv-id an Authentication-Results value starts with (RFC 8601
/// §2.2), comments skipped and quotes taken off, so that `(x) "id"` is
/// the same `id`.
fn authserv_id_of(value: &str) -> String {
    let mut rest = value.trim_start();
    // Leading comments, nested ones included.
    while rest.starts_with('(') {
        let mut depth = 0;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = rest[end..].trim_start();
    }
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next().unwrap_or_default().to_owned();
    }
    rest.split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_under_our_id_go_and_others_stay() {
        let head = b"Received: x\nAuthentication-Results: mx.ours.test;\n\tdkim=pass header.d=bank.example\nAuthentication-Results: MX.OURS.TEST; spf=pass\nAuthentication-Results: other.example; spf=fail\nSubject: hi\n\nbody\nAuthentication-Results: mx.ours.test; in the body\n";
        let (end, new) = edit_header(head, "mx.ours.test", None, false).unwrap();
        assert_eq!(
            &head[end..],
            b"body\nAuthentication-Results: mx.ours.test; in the body\n"
        );
        let new = String::from_utf8(new).unwrap();
        assert_eq!(
            new,
            "Received: x\nAuthentication-Results: other.example; spf=fail\nSubject: hi\n\n"
        );
        // Nothing ours: nothing to do.
        assert_eq!(
            edit_header(
                b"Subject: x\nAuthentication-Results: mx.ours.test.evil; a\n\nb",
                "mx.ours.test",
                None,
                false
            ),
            None
        );
        // A header that does not end in what was read is left alone.
        assert_eq!(
            edit_header(
                b"Authentication-Results: mx.ours.test; x\nSubj",
                "mx.ours.test",
                None,
                false
            ),
            None
        );
        // The whole message, all header: the forgery still goes.
        let all_header = b"Subject: x\nAuthentication-Results: mx.ours.test; dmarc=pass";
        let (end, new) = edit_header(all_header, "mx.ours.test", None, true).unwrap();
        assert_eq!(end, all_header.len());
        assert_eq!(new, b"Subject: x\n");
        // Written another valid way (a comment, quotes): still ours.
        for forged in [
            "Authentication-Results: (hi (there)) mx.ours.test; dkim=pass\n\n",
            "Authentication-Results: \"mx.ours.test\"; dkim=pass\n\n",
            "Authentication-Results:mx.ours.test(c); dkim=pass\n\n",
        ] {
            let (_, new) = edit_header(forged.as_bytes(), "mx.ours.test", None, false)
                .unwrap_or_else(|| panic!("{forged}"));
            assert_eq!(new, b"\n", "{forged}");
        }
        // A message that starts with a continuation line loses it: it
        // would join the field we add above.
        let (_, new) = edit_header(
            b" ; dkim=pass header.d=bank.test\nSubject: x\n\nbody",
            "mx.ours.test",
            None,
            false,
        )
        .unwrap();
        assert_eq!(new, b"Subject: x\n\n");
    }

    #[test]
    fn the_quarantine_tag_marks_subject_and_flag() {
        let head = b"From: a@example.com\nSubject: hello\n  world\nX-Spam-Flag: NO\n\nbody";
        let (end, new) = edit_header(head, "mx.ours.test", Some("[SPAM]"), false).unwrap();
        assert_eq!(&head[end..], b"body");
        assert_eq!(
            String::from_utf8(new).unwrap(),
            "From: a@example.com\nSubject: [SPAM] hello\n  world\nX-Spam-Flag: YES\n\n"
        );
        let (_, new) = edit_header(b"From: a@b\r\n\r\n", "x", Some("[SPAM]"), false).unwrap();
        assert_eq!(
            String::from_utf8(new).unwrap(),
            "From: a@b\r\nSubject: [SPAM]\nX-Spam-Flag: YES\n\r\n"
        );
    }
}
