//! Rewriting the header section of a received message before it is
//! stored: `Authentication-Results` fields that arrive under our
//! authserv-id removed (only we write under it, RFC 8601 §5), the edits
//! content filters asked for, and the spam tag (Subject prefix and
//! `X-Spam-Flag: YES`).

use yubin_milter::HeaderEdit;

/// A change to the header section a content filter asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    /// One of the milter protocol's edits.
    Filter(HeaderEdit),
    /// Remove every field of this name (rspamd's order 0).
    RemoveAll(String),
}

/// The spam tag: `X-Spam-Flag: YES`, and the Subject prefixed with
/// `subject_prefix` when there is one (none when a filter has rewritten
/// the Subject itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tag {
    pub(crate) subject_prefix: Option<String>,
}

/// Every change to make to a received message's header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderChanges {
    /// Remove `Authentication-Results` fields under this authserv-id.
    pub(crate) authserv_id: Option<String>,
    /// Content filters' edits, in order.
    pub(crate) edits: Vec<Edit>,
    /// Tag the message as spam.
    pub(crate) tag: Option<Tag>,
}

/// One field, with its continuation lines; `arrived`: it came with the
/// message (a filter's fields are not taken for forgeries).
struct Field<'h> {
    bytes: std::borrow::Cow<'h, [u8]>,
    arrived: bool,
}

/// The header section of `head` rewritten under `changes`. `whole`:
/// `head` is the whole message, so a message without a blank line is all
/// header. Lines of continuation before the first field are dropped
/// (they would join the field we add above them). Returns the length of
/// the old header section (up to and including its blank line) and the
/// new one; `None` when nothing changes, or when the header does not end
/// within `head` (then it is left as it is: our Authentication-Results,
/// above it, is still the one a reader meets first).
pub(crate) fn edit_header(
    head: &[u8],
    changes: &HeaderChanges,
    whole: bool,
) -> Option<(usize, Vec<u8>)> {
    let mut fields: Vec<Field<'_>> = Vec::new();
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
                let start = at - last.bytes.len();
                last.bytes = head[start..at + line_end].into();
            }
            (None, Some(b' ' | b'\t')) => stray = true,
            _ => fields.push(Field {
                bytes: line.into(),
                arrived: true,
            }),
        }
        at += line_end;
    };
    let forged = |field: &Field<'_>| {
        field.arrived
            && changes
                .authserv_id
                .as_deref()
                .is_some_and(|id| is_results_under(&field.bytes, id))
    };
    if !stray && changes.edits.is_empty() && changes.tag.is_none() && !fields.iter().any(&forged) {
        return None;
    }
    // Forgeries first: filters were shown the message without them, and
    // their edits count fields as they saw them.
    fields.retain(|f| !forged(f));
    for edit in &changes.edits {
        apply(&mut fields, edit);
    }
    if let Some(tag) = &changes.tag {
        fields.retain(|f| !name_is(&f.bytes, "X-Spam-Flag"));
        if let Some(prefix) = &tag.subject_prefix {
            match fields.iter_mut().find(|f| name_is(&f.bytes, "Subject")) {
                Some(subject) => {
                    let colon = subject.bytes.iter().position(|&b| b == b':').unwrap_or(0);
                    let mut tagged = subject.bytes[..=colon].to_vec();
                    tagged.push(b' ');
                    tagged.extend_from_slice(prefix.as_bytes());
                    tagged.extend_from_slice(&subject.bytes[colon + 1..]);
                    subject.bytes = tagged.into();
                }
                None => fields.push(added("Subject", &format!(" {prefix}"))),
            }
        }
        fields.push(added("X-Spam-Flag", " YES"));
    }
    let mut out = Vec::with_capacity(end + 64);
    for field in &fields {
        out.extend_from_slice(&field.bytes);
        if !field.bytes.ends_with(b"\n") {
            // The last field of a message that is all header.
            out.push(b'\n');
        }
    }
    out.extend_from_slice(&head[at..end]);
    Some((end, out))
}

/// `message` (wire form, CRLF) with `edits` made to its header, in wire
/// form again: what the next content filter is shown.
pub(crate) fn apply_to_wire(message: &[u8], edits: &[Edit]) -> Vec<u8> {
    let changes = HeaderChanges {
        edits: edits.to_vec(),
        ..HeaderChanges::default()
    };
    match edit_header(message, &changes, true) {
        Some((old, new)) => {
            let mut out = Vec::with_capacity(message.len() + new.len());
            let mut lines = yubin_line::CrlfLines::new();
            lines.convert(&new, &mut out);
            lines.finish(&mut out);
            out.extend_from_slice(&message[old..]);
            out
        }
        None => message.to_vec(),
    }
}

/// `message` (wire form) without the `Authentication-Results` fields
/// that claim `authserv_id`: what content filters are shown, so that
/// none of them (OpenDMARC trusts results under our name) believes a
/// forgery.
pub(crate) fn without_forgeries(message: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let changes = HeaderChanges {
        authserv_id: Some(authserv_id.to_owned()),
        ..HeaderChanges::default()
    };
    let (old, new) = edit_header(message, &changes, true)?;
    let mut out = Vec::with_capacity(message.len());
    out.extend_from_slice(&new);
    out.extend_from_slice(&message[old..]);
    Some(out)
}

/// A field we add: `Name:value` and LF.
fn added(name: &str, value: &str) -> Field<'static> {
    Field {
        bytes: format!("{name}:{value}\n").into_bytes().into(),
        arrived: false,
    }
}

/// A filter's edit made on `fields` (libmilter's semantics: an insert
/// index past the end appends; a change of an occurrence that does not
/// exist adds the field; an empty value deletes).
fn apply(fields: &mut Vec<Field<'_>>, edit: &Edit) {
    let edit = match edit {
        Edit::Filter(edit) => edit,
        Edit::RemoveAll(name) => {
            fields.retain(|f| !name_is(&f.bytes, name));
            return;
        }
    };
    match edit {
        HeaderEdit::Add { name, value } => fields.push(added(name, value)),
        HeaderEdit::Insert { index, name, value } => {
            let at = (*index as usize).min(fields.len());
            fields.insert(at, added(name, value));
        }
        HeaderEdit::Change { index, name, value } => {
            let nth = (*index).max(1) as usize;
            let found = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| name_is(&f.bytes, name))
                .nth(nth - 1)
                .map(|(i, _)| i);
            match (found, value.is_empty()) {
                (Some(i), true) => {
                    fields.remove(i);
                }
                (Some(i), false) => fields[i] = added(name, value),
                (None, false) => fields.push(added(name, value)),
                (None, true) => {}
            }
        }
    }
}

/// Whether `field` is called `name` (case-insensitive, white space
/// before the colon allowed).
fn name_is(field: &[u8], name: &str) -> bool {
    field.len() > name.len()
        && field[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && field[name.len()..]
            .iter()
            .find(|b| !b" \t".contains(b))
            .is_some_and(|&b| b == b':')
}

/// Whether `field` is an Authentication-Results field under
/// `authserv_id`.
fn is_results_under(field: &[u8], authserv_id: &str) -> bool {
    if !name_is(field, "Authentication-Results") {
        return false;
    }
    let value = field
        .iter()
        .position(|&b| b == b':')
        .map_or(&field[..0], |colon| &field[colon + 1..]);
    authserv_id_of(&String::from_utf8_lossy(value)).eq_ignore_ascii_case(authserv_id)
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
mod tests;
