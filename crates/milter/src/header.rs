//! The header section of a message as milters are sent it: one field at a
//! time, name and value apart.

/// One header field of the message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Field<'m> {
    /// Its name, as written.
    pub name: &'m [u8],
    /// Everything after the colon up to the field's last line end, folds
    /// (CRLF or LF followed by white space) included.
    pub value: &'m [u8],
}

/// The fields of `message` (wire form) and where its body starts (after
/// the blank line; the message's length when there is none). A line
/// that is neither a field nor a continuation (no colon, or a name with
/// white space or controls in it) is passed over: a filter is sent only
/// what it can parse, and the message itself is stored unchanged.
pub(crate) fn split<'m>(message: &'m [u8]) -> (Vec<Field<'m>>, usize) {
    let mut fields: Vec<Field<'m>> = Vec::new();
    // Where the field being read starts, and its colon.
    let mut open: Option<(usize, usize)> = None;
    let mut at = 0;
    let close = |open: Option<(usize, usize)>, end: usize, fields: &mut Vec<Field<'m>>| {
        if let Some((start, colon)) = open {
            let mut value = &message[colon + 1..end];
            value = value.strip_suffix(b"\n").unwrap_or(value);
            value = value.strip_suffix(b"\r").unwrap_or(value);
            fields.push(Field {
                name: &message[start..colon],
                value,
            });
        }
    };
    while at < message.len() {
        let line_end = memchr(b'\n', &message[at..]).map_or(message.len(), |i| at + i + 1);
        let line = &message[at..line_end];
        if line == b"\r\n" || line == b"\n" {
            close(open, at, &mut fields);
            return (fields, line_end);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // A continuation: part of the open field (or of none).
            at = line_end;
            continue;
        }
        close(open.take(), at, &mut fields);
        open = line.iter().position(|&b| b == b':').and_then(|colon| {
            let name = &line[..colon];
            let valid = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
            valid.then_some((at, at + colon))
        });
        at = line_end;
    }
    close(open, message.len(), &mut fields);
    (fields, message.len())
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_folds_and_the_body_start() {
        let m = b"From: a@example.com\r\nSubject: one\r\n two\r\nbogus line\r\nX:\r\n\r\nbody\r\n";
        let (fields, body) = split(m);
        assert_eq!(
            fields,
            vec![
                Field {
                    name: b"From",
                    value: b" a@example.com"
                },
                Field {
                    name: b"Subject",
                    value: b" one\r\n two"
                },
                Field {
                    name: b"X",
                    value: b""
                },
            ]
        );
        assert_eq!(&m[body..], b"body\r\n");
    }

    #[test]
    fn a_message_without_a_blank_line_is_all_header() {
        let m = b"Subject: x\r\nTo: y";
        let (fields, body) = split(m);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].value, b" y");
        assert_eq!(body, m.len());
        let (fields, body) = split(b"");
        assert!(fields.is_empty());
        assert_eq!(body, 0);
    }
}
