//! The header rewrite: forged results, filters' edits, the spam tag.

use super::*;

fn ours() -> HeaderChanges {
    HeaderChanges {
        authserv_id: Some("mx.ours.test".into()),
        ..HeaderChanges::default()
    }
}

fn tagged(prefix: Option<&str>) -> HeaderChanges {
    HeaderChanges {
        tag: Some(Tag {
            subject_prefix: prefix.map(str::to_owned),
        }),
        ..ours()
    }
}

fn text(edited: Option<(usize, Vec<u8>)>) -> String {
    String::from_utf8(edited.expect("an edit").1).expect("UTF-8")
}

#[test]
fn forged_results_under_our_id_go_and_others_stay() {
    let head = b"Received: x\nAuthentication-Results: mx.ours.test;\n\tdkim=pass header.d=bank.example\nAuthentication-Results: MX.OURS.TEST; spf=pass\nAuthentication-Results: other.example; spf=fail\nSubject: hi\n\nbody\nAuthentication-Results: mx.ours.test; in the body\n";
    let (end, new) = edit_header(head, &ours(), false).expect("an edit");
    assert_eq!(
        &head[end..],
        b"body\nAuthentication-Results: mx.ours.test; in the body\n"
    );
    assert_eq!(
        String::from_utf8(new).expect("UTF-8"),
        "Received: x\nAuthentication-Results: other.example; spf=fail\nSubject: hi\n\n"
    );
    // Nothing ours: nothing to do.
    assert_eq!(
        edit_header(
            b"Subject: x\nAuthentication-Results: mx.ours.test.evil; a\n\nb",
            &ours(),
            false
        ),
        None
    );
    // A header that does not end in what was read is left alone.
    assert_eq!(
        edit_header(
            b"Authentication-Results: mx.ours.test; x\nSubj",
            &ours(),
            false
        ),
        None
    );
    // The whole message, all header: the forgery still goes.
    let all_header = b"Subject: x\nAuthentication-Results: mx.ours.test; dmarc=pass";
    let (end, new) = edit_header(all_header, &ours(), true).expect("an edit");
    assert_eq!(end, all_header.len());
    assert_eq!(new, b"Subject: x\n");
    // Written another valid way (a comment, quotes): still ours.
    for forged in [
        "Authentication-Results: (hi (there)) mx.ours.test; dkim=pass\n\n",
        "Authentication-Results: \"mx.ours.test\"; dkim=pass\n\n",
        "Authentication-Results:mx.ours.test(c); dkim=pass\n\n",
    ] {
        let (_, new) =
            edit_header(forged.as_bytes(), &ours(), false).unwrap_or_else(|| panic!("{forged}"));
        assert_eq!(new, b"\n", "{forged}");
    }
    // A message that starts with a continuation line loses it: it would
    // join the field we add above.
    let (_, new) = edit_header(
        b" ; dkim=pass header.d=bank.test\nSubject: x\n\nbody",
        &HeaderChanges::default(),
        false,
    )
    .expect("an edit");
    assert_eq!(new, b"Subject: x\n\n");
}

#[test]
fn the_spam_tag_marks_subject_and_flag() {
    let head = b"From: a@example.com\nSubject: hello\n  world\nX-Spam-Flag: NO\n\nbody";
    let (end, new) = edit_header(head, &tagged(Some("[SPAM]")), false).expect("an edit");
    assert_eq!(&head[end..], b"body");
    assert_eq!(
        String::from_utf8(new).expect("UTF-8"),
        "From: a@example.com\nSubject: [SPAM] hello\n  world\nX-Spam-Flag: YES\n\n"
    );
    assert_eq!(
        text(edit_header(
            b"From: a@b\r\n\r\n",
            &tagged(Some("[SPAM]")),
            false
        )),
        "From: a@b\r\nSubject: [SPAM]\nX-Spam-Flag: YES\n\r\n"
    );
    // A filter rewrote the Subject: only the flag.
    assert_eq!(
        text(edit_header(b"Subject: hi\n\n", &tagged(None), false)),
        "Subject: hi\nX-Spam-Flag: YES\n\n"
    );
}

#[test]
fn filter_edits_follow_libmilter_and_are_not_taken_for_forgeries() {
    let head = b"Received: a\nX-Gone: 1\nSubject: one\nX-Old: 1\nX-Old: 2\nX-GONE: 2\n\nbody";
    let changes = HeaderChanges {
        edits: vec![
            Edit::RemoveAll("x-gone".into()),
            Edit::Filter(HeaderEdit::Add {
                name: "Authentication-Results".into(),
                value: " mx.ours.test; dkim=pass (from OpenDKIM)".into(),
            }),
            Edit::Filter(HeaderEdit::Insert {
                index: 0,
                name: "X-Top".into(),
                value: " t".into(),
            }),
            Edit::Filter(HeaderEdit::Insert {
                index: 99,
                name: "X-End".into(),
                value: " e".into(),
            }),
            Edit::Filter(HeaderEdit::Change {
                index: 2,
                name: "x-old".into(),
                value: String::new(),
            }),
            Edit::Filter(HeaderEdit::Change {
                index: 1,
                name: "Subject".into(),
                value: " two".into(),
            }),
            Edit::Filter(HeaderEdit::Change {
                index: 1,
                name: "X-Missing".into(),
                value: " added".into(),
            }),
            Edit::Filter(HeaderEdit::Change {
                index: 1,
                name: "X-Absent".into(),
                value: String::new(),
            }),
        ],
        ..ours()
    };
    assert_eq!(
        text(edit_header(head, &changes, false)),
        "X-Top: t\nReceived: a\nSubject: two\nX-Old: 1\n\
         Authentication-Results: mx.ours.test; dkim=pass (from OpenDKIM)\n\
         X-End: e\nX-Missing: added\n\n"
    );
}
