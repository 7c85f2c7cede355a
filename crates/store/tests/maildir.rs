//! Maildir behaviour on a real file system (temporary directories).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::Path;

use yubin_pop3_proto::WireSize;
use yubin_store::{LockError, Maildir, MaildropLock, OpenError};

fn maildir() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::new(dir.path().join("Maildir"));
    md.create().unwrap();
    (dir, md)
}

fn put(md: &Maildir, sub: &str, name: &str, content: &[u8]) {
    fs::write(md.root().join(sub).join(name), content).unwrap();
}

fn read(md: &Maildir, m: &yubin_store::StoredMessage) -> Vec<u8> {
    let mut out = Vec::new();
    md.open(m).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn scan_lists_new_and_cur_in_delivery_order_with_wire_sizes() {
    let (_d, md) = maildir();
    put(&md, "cur", "1700000002.b.host:2,S", b"a\nb\n");
    put(&md, "new", "1700000001.a.host", b"no newline");
    put(&md, "new", "1700000003.c.host,S=3,W=999", b"x\n\n");
    put(&md, "new", ".hidden", b"ignored");
    put(&md, "tmp", "1700000000.t.host", b"in delivery");
    let messages = md.scan().unwrap();
    let uids: Vec<&str> = messages.iter().map(|m| m.uid.as_str()).collect();
    assert_eq!(
        uids,
        [
            "1700000001.a.host",
            "1700000002.b.host",
            "1700000003.c.host,S=3,W=999"
        ]
    );
    // "no newline" gets its CRLF; "a\nb\n" is 6; ,W= is trusted as written.
    let sizes: Vec<u64> = messages.iter().map(|m| m.size).collect();
    assert_eq!(sizes, [12, 6, 999]);
}

#[test]
fn sizes_are_computed_once_then_cached() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"one\ntwo\n");
    assert_eq!(md.scan().unwrap()[0].size, 10);
    assert!(md.root().join("yubin-sizes").exists());
    // Messages never change; if the second scan read the file it would see 3.
    put(&md, "new", "1700000001.a.host", b"x\n");
    assert_eq!(md.scan().unwrap()[0].size, 10);
    // A message moved to cur/ keeps its cached size and its unique-id.
    fs::rename(
        md.root().join("new/1700000001.a.host"),
        md.root().join("cur/1700000001.a.host:2,S"),
    )
    .unwrap();
    let m = &md.scan().unwrap()[0];
    assert_eq!((m.size, m.uid.as_str()), (10, "1700000001.a.host"));
}

#[test]
fn a_damaged_cache_is_rebuilt() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"one\n");
    fs::write(md.root().join("yubin-sizes"), b"garbage\n1 2 3").unwrap();
    assert_eq!(md.scan().unwrap()[0].size, 5);
    assert!(
        fs::read_to_string(md.root().join("yubin-sizes"))
            .unwrap()
            .starts_with("yubin-sizes 1\n")
    );
}

#[test]
fn a_message_in_new_and_cur_at_once_is_listed_once() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"x\n");
    put(&md, "cur", "1700000001.a.host:2,S", b"x\n");
    let messages = md.scan().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(read(&md, &messages[0]), b"x\n");
}

#[test]
fn symbolic_links_are_not_followed() {
    let (dir, md) = maildir();
    let secret = dir.path().join("secret");
    fs::write(&secret, b"root:x:0:0\n").unwrap();
    std::os::unix::fs::symlink(&secret, md.root().join("new/1700000001.evil.host")).unwrap();
    assert!(md.scan().unwrap().is_empty());

    let other = tempfile::tempdir().unwrap();
    let victim = Maildir::new(other.path().join("victim"));
    victim.create().unwrap();
    fs::remove_dir_all(md.root().join("new")).unwrap();
    std::os::unix::fs::symlink(victim.root().join("new"), md.root().join("new")).unwrap();
    assert!(md.scan().is_err());
}

#[test]
fn open_finds_a_message_renamed_by_another_program() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"hello\n");
    let messages = md.scan().unwrap();
    fs::rename(
        md.root().join("new/1700000001.a.host"),
        md.root().join("cur/1700000001.a.host:2,F"),
    )
    .unwrap();
    assert_eq!(read(&md, &messages[0]), b"hello\n");
    fs::remove_file(md.root().join("cur/1700000001.a.host:2,F")).unwrap();
    assert!(matches!(md.open(&messages[0]), Err(OpenError::Gone)));
}

#[test]
fn commit_removes_only_the_marked_and_flags_the_retrieved_seen() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"1\n");
    put(&md, "new", "1700000002.b.host", b"2\n");
    put(&md, "cur", "1700000003.c.host:2,F", b"3\n");
    put(&md, "new", "1700000004.d.host", b"4\n");
    let m = md.scan().unwrap();
    let report = md.commit(&[&m[0]], &[&m[1], &m[2]]);
    assert_eq!(
        (report.removed, report.not_removed, report.seen_failed),
        (1, 0, 0)
    );
    let after = md.scan().unwrap();
    let names: Vec<String> = after
        .iter()
        .map(|m| m.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "1700000002.b.host:2,S",
            "1700000003.c.host:2,FS",
            "1700000004.d.host"
        ]
    );
    let uids: Vec<&str> = after.iter().map(|m| m.uid.as_str()).collect();
    assert_eq!(
        uids,
        [
            "1700000002.b.host",
            "1700000003.c.host",
            "1700000004.d.host"
        ]
    );
}

#[test]
fn commit_of_an_already_removed_message_counts_as_removed() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"1\n");
    let m = md.scan().unwrap();
    fs::remove_file(md.root().join("new/1700000001.a.host")).unwrap();
    assert_eq!(md.commit(&[&m[0]], &[]).removed, 1);
}

#[test]
fn delivery_writes_a_complete_file_with_size_fields() {
    let (_d, md) = maildir();
    let body = b"Subject: hi\n\n.dot\nend";
    let name = md.deliver(body, "mail.example:org/x").unwrap();
    let name = name.to_string_lossy().into_owned();
    assert!(name.contains(".mail.example\\072org\\057x,"), "{name}");
    assert!(
        name.ends_with(&format!(",S={},W={}", body.len(), WireSize::of(body))),
        "{name}"
    );
    assert_eq!(fs::read(md.root().join("new").join(&name)).unwrap(), body);
    assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
    let second = md.deliver(body, "h").unwrap();
    assert_ne!(second.to_string_lossy(), name);
    assert_eq!(md.scan().unwrap().len(), 2);
}

#[test]
fn one_lock_per_maildrop_released_on_drop() {
    let (_d, md) = maildir();
    let first = MaildropLock::try_acquire(md.root()).unwrap();
    assert!(matches!(
        MaildropLock::try_acquire(md.root()),
        Err(LockError::InUse)
    ));
    drop(first);
    MaildropLock::try_acquire(md.root()).unwrap();
}

#[test]
fn scan_of_a_missing_maildir_is_an_error_not_a_panic() {
    let md = Maildir::new(Path::new("/nonexistent/maildir"));
    assert!(md.scan().is_err());
}
