//! Maildir behaviour on a real file system (temporary directories).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::Path;

use yubin_line::WireSize;
use yubin_store::{Listing, LockError, Maildir, MaildropLock, OpenError};

fn maildir() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::new(dir.path().join("Maildir"));
    md.create().unwrap();
    (dir, md)
}

fn put(md: &Maildir, sub: &str, name: &str, content: &[u8]) {
    fs::write(md.root().join(sub).join(name), content).unwrap();
}

fn read(md: &Maildir, listing: &Listing, i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    md.open(listing, i).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn uids(listing: &Listing) -> Vec<String> {
    (0..listing.len())
        .map(|i| listing.uid(i).into_owned())
        .collect()
}

fn sizes(listing: &Listing) -> Vec<u64> {
    (0..listing.len()).map(|i| listing.size(i)).collect()
}

fn names(listing: &Listing) -> Vec<String> {
    (0..listing.len())
        .map(|i| listing.file_name(i).to_string_lossy().into_owned())
        .collect()
}

/// Makes a later scan read the directories again, as a new delivery would
/// (the listing cache trusts unchanged directory times only).
fn touch(md: &Maildir) {
    put(md, "tmp", "touch", b"");
    fs::rename(md.root().join("tmp/touch"), md.root().join("new/.touch")).unwrap();
    fs::remove_file(md.root().join("new/.touch")).unwrap();
}

#[test]
fn scan_lists_new_and_cur_in_delivery_order_with_wire_sizes() {
    let (_d, md) = maildir();
    put(&md, "cur", "1700000002.b.host:2,S", b"a\nb\n");
    put(&md, "new", "1700000001.a.host", b"no newline");
    put(&md, "new", "1700000003.c.host,S=3,W=999", b"x\n\n");
    put(&md, "new", ".hidden", b"ignored");
    put(&md, "tmp", "1700000000.t.host", b"in delivery");
    let listing = md.scan().unwrap();
    assert_eq!(
        uids(&listing),
        [
            "1700000001.a.host",
            "1700000002.b.host",
            "1700000003.c.host,S=3,W=999"
        ]
    );
    // "no newline" gets its CRLF; "a\nb\n" is 6; ,W= is trusted as written.
    assert_eq!(sizes(&listing), [12, 6, 999]);
}

#[test]
fn sizes_are_computed_once_then_cached() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"one\ntwo\n");
    assert_eq!(sizes(&md.scan().unwrap()), [10]);
    assert!(md.root().join("yubin-listing").exists());
    // Messages never change; if a later scan read the file it would see 3.
    put(&md, "new", "1700000001.a.host", b"x\n");
    touch(&md);
    assert_eq!(sizes(&md.scan().unwrap()), [10]);
    // A message moved to cur/ keeps its cached size and its unique-id.
    fs::rename(
        md.root().join("new/1700000001.a.host"),
        md.root().join("cur/1700000001.a.host:2,S"),
    )
    .unwrap();
    let listing = md.scan().unwrap();
    assert_eq!(
        (listing.size(0), listing.uid(0).as_ref()),
        (10, "1700000001.a.host")
    );
}

#[test]
fn the_cache_follows_deliveries_and_removals() {
    let (_d, md) = maildir();
    for i in [3, 1, 2] {
        put(
            &md,
            "new",
            &format!("170000000{i}.m.host"),
            "x\n".repeat(i).as_bytes(),
        );
    }
    assert_eq!(sizes(&md.scan().unwrap()), [3, 6, 9]);
    fs::remove_file(md.root().join("new/1700000002.m.host")).unwrap();
    put(&md, "new", "1700000000.m.host", b"a\nb\nc\nd\n");
    put(&md, "new", "1700000004.m.host,S=1,W=77", b"z");
    assert_eq!(sizes(&md.scan().unwrap()), [12, 3, 9, 77]);
    // The cache is used: change a file's content, the listed size stays.
    put(&md, "new", "1700000003.m.host", b"changed\n");
    touch(&md);
    assert_eq!(sizes(&md.scan().unwrap()), [12, 3, 9, 77]);
}

#[test]
fn an_unchanged_maildir_is_listed_from_the_cache() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"one\n");
    put(&md, "cur", "1700000002.b.host:2,S", b"two\n");
    // Let the directories' times age past the stability margin.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let first = md.scan().unwrap();
    let cache = fs::read_to_string(md.root().join("yubin-listing")).unwrap();
    assert!(
        cache.lines().next().unwrap().ends_with(" 1"),
        "stable: {cache}"
    );
    // Replace the cache's body with something a directory read would not
    // find: a trusted cache is used as it is.
    let header = cache.lines().next().unwrap();
    fs::write(
        md.root().join("yubin-listing"),
        format!("{header}\n42 n 1700000009.z.host\n"),
    )
    .unwrap();
    assert_eq!(uids(&md.scan().unwrap()), ["1700000009.z.host"]);
    // Any change to new/ or cur/ makes the next scan read the directories.
    touch(&md);
    let again = md.scan().unwrap();
    assert_eq!(uids(&again), uids(&first));
    assert_eq!(sizes(&again), [5, 5]);
}

#[test]
fn a_damaged_cache_is_ignored_and_rebuilt() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"one\n");
    fs::write(md.root().join("yubin-listing"), b"garbage\n1 2 3").unwrap();
    assert_eq!(sizes(&md.scan().unwrap()), [5]);
    assert!(
        fs::read_to_string(md.root().join("yubin-listing"))
            .unwrap()
            .starts_with("yubin-listing 1 ")
    );
}

#[test]
fn a_message_in_new_and_cur_at_once_is_listed_once() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"x\n");
    put(&md, "cur", "1700000001.a.host:2,S", b"x\n");
    let listing = md.scan().unwrap();
    assert_eq!(names(&listing), ["1700000001.a.host:2,S"]);
    assert_eq!(read(&md, &listing, 0), b"x\n");
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
    let listing = md.scan().unwrap();
    fs::rename(
        md.root().join("new/1700000001.a.host"),
        md.root().join("cur/1700000001.a.host:2,F"),
    )
    .unwrap();
    assert_eq!(read(&md, &listing, 0), b"hello\n");
    fs::remove_file(md.root().join("cur/1700000001.a.host:2,F")).unwrap();
    assert!(matches!(md.open(&listing, 0), Err(OpenError::Gone)));
}

#[test]
fn commit_removes_only_the_marked_and_flags_the_retrieved_seen() {
    let (_d, md) = maildir();
    put(&md, "new", "1700000001.a.host", b"1\n");
    put(&md, "new", "1700000002.b.host", b"2\n");
    put(&md, "cur", "1700000003.c.host:2,F", b"3\n");
    put(&md, "new", "1700000004.d.host", b"4\n");
    let listing = md.scan().unwrap();
    let report = md.commit(&listing, &[0], &[1, 2]);
    assert_eq!(
        (report.removed, report.not_removed, report.seen_failed),
        (1, 0, 0)
    );
    let after = md.scan().unwrap();
    assert_eq!(
        names(&after),
        [
            "1700000002.b.host:2,S",
            "1700000003.c.host:2,FS",
            "1700000004.d.host"
        ]
    );
    assert_eq!(
        uids(&after),
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
    let listing = md.scan().unwrap();
    fs::remove_file(md.root().join("new/1700000001.a.host")).unwrap();
    assert_eq!(md.commit(&listing, &[0], &[]).removed, 1);
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

/// MD-01: what a crash leaves in `tmp/` is never listed, and is removed
/// once it is older than the given age; fresh files (a delivery in
/// progress) are left alone.
#[test]
fn md01_interrupted_deliveries_in_tmp_are_never_listed_and_reaped_when_old() {
    let (_d, md) = maildir();
    put(&md, "tmp", "1700000000.old.host", b"half a message");
    put(&md, "tmp", "1700000001.fresh.host", b"being written");
    let old = fs::File::options()
        .write(true)
        .open(md.root().join("tmp/1700000000.old.host"))
        .unwrap();
    old.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(37 * 3600))
        .unwrap();
    assert!(md.scan().unwrap().is_empty());
    assert_eq!(md.clean_tmp(std::time::Duration::from_secs(36 * 3600)), 1);
    let left: Vec<_> = fs::read_dir(md.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["1700000001.fresh.host"]);
}

/// MD-02: a name already taken in `new/` is never overwritten: link(2)
/// fails with EEXIST and the delivery takes a new name; both messages stay.
#[test]
fn md02_a_name_collision_never_overwrites() {
    let (_d, md) = maildir();
    let staged = md
        .stage(4, 5, "host", |f| std::io::Write::write_all(f, b"new\n"))
        .unwrap();
    let taken = fs::read_dir(md.root().join("tmp"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    fs::write(md.root().join("new").join(&taken), b"first\n").unwrap();
    let name = staged.commit().unwrap();
    assert_ne!(name, taken);
    assert_eq!(
        fs::read(md.root().join("new").join(&taken)).unwrap(),
        b"first\n"
    );
    assert_eq!(
        fs::read(md.root().join("new").join(&name)).unwrap(),
        b"new\n"
    );
    assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
}

/// MD-03: uniqueness does not rest on the clock. A thousand deliveries
/// within the same second (what a clock stepping back produces: seconds
/// repeat) get distinct names and distinct UIDLs.
#[test]
fn md03_names_and_uidls_stay_unique_when_seconds_repeat() {
    let (_d, md) = maildir();
    let mut names = std::collections::HashSet::new();
    for i in 0..1000 {
        let name = md.deliver(format!("n {i}\n").as_bytes(), "host").unwrap();
        assert!(names.insert(name), "name reused at delivery {i}");
    }
    let listing = md.scan().unwrap();
    let unique: std::collections::HashSet<_> = uids(&listing).into_iter().collect();
    assert_eq!(unique.len(), 1000);
}

/// MD-05: a Maildir whose `new/` (or `tmp/`) was replaced by a symbolic
/// link is refused for delivery, and the link's target is untouched.
#[test]
fn md05_delivery_refuses_symlinked_maildir_directories() {
    for sub in ["new", "tmp"] {
        let (dir, md) = maildir();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("precious"), b"keep\n").unwrap();
        fs::remove_dir(md.root().join(sub)).unwrap();
        std::os::unix::fs::symlink(&target, md.root().join(sub)).unwrap();
        let refused = md.deliver(b"mail\n", "host");
        assert!(
            matches!(refused, Err(yubin_store::StoreError::NotADirectory(_))),
            "{sub}: {refused:?}"
        );
        let inside: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(inside, ["precious"], "{sub}");
    }
}

#[test]
fn deliveries_within_one_second_are_listed_by_their_microseconds() {
    let (_dir, md) = maildir();
    // Written by yubin and Dovecot as `secs.M<usecs>…`, not zero-padded:
    // as text, M100001 would come before M99999.
    put(
        &md,
        "new",
        "1700000000.M100001P1.host",
        b"Subject: later\n\n",
    );
    put(
        &md,
        "new",
        "1700000000.M99999P1.host",
        b"Subject: earlier\n\n",
    );
    put(
        &md,
        "new",
        "1699999999.M999999P1.host",
        b"Subject: first\n\n",
    );
    let listing = md.scan().unwrap();
    assert_eq!(
        uids(&listing),
        [
            "1699999999.M999999P1.host",
            "1700000000.M99999P1.host",
            "1700000000.M100001P1.host"
        ]
    );
    // Listed again from the cache, in the same order.
    assert_eq!(uids(&md.scan().unwrap()), uids(&listing));
}
