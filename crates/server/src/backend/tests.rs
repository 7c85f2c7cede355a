//! Today's implementations, through the traits the drivers use.

use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use yubin_auth::{PasswdFile, Users};
use yubin_store::LockError;

use super::*;
use crate::config::Config;

fn store(dir: &std::path::Path) -> (MaildirStore, yubin_auth::User) {
    let config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    let (file, _) = PasswdFile::parse("alice:{PLAIN}secret\n");
    let (users, _) = Users::from_file(&file);
    let alice = users.get("alice").cloned().unwrap();
    (MaildirStore::new(Arc::new(config)), alice)
}

fn read(maildrop: &dyn Maildrop, i: usize) -> Vec<u8> {
    let mut text = Vec::new();
    maildrop.open(i).unwrap().read_to_end(&mut text).unwrap();
    text
}

#[test]
fn a_delivery_is_invisible_until_committed_and_can_be_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, alice) = store(dir.path());
    let staged = store
        .stage(&alice, None, 6, 7, &mut |out| out.write_all(b"hello\n"))
        .unwrap();
    assert!(
        store.open(&alice).unwrap().is_empty(),
        "visible before commit"
    );
    let visible = staged.commit().unwrap();
    let maildrop = store.open(&alice).unwrap();
    assert_eq!(maildrop.len(), 1);
    assert_eq!(read(maildrop.as_ref(), 0), b"hello\n");
    assert_eq!(maildrop.size(0), 7, "the size POP3 reports (CRLF)");
    drop(maildrop);
    visible.undo();
    assert!(store.open(&alice).unwrap().is_empty(), "undo left it there");

    // A delivery dropped before its commit leaves nothing.
    drop(
        store
            .stage(&alice, None, 1, 2, &mut |out| out.write_all(b"x\n"))
            .unwrap(),
    );
    let name = store.deliver(&alice, b"Subject: s\n\nbody\n").unwrap();
    let maildrop = store.open(&alice).unwrap();
    assert_eq!(maildrop.len(), 1);
    assert!(maildrop.uid(0).len() <= 70 && name.starts_with(maildrop.uid(0).as_ref()));
}

#[test]
fn a_maildrop_is_locked_until_the_session_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let (store, alice) = store(dir.path());
    let first = store.open(&alice).unwrap();
    let second = store.open(&alice).err();
    assert!(
        matches!(second, Some(MailError::Lock(LockError::InUse))),
        "{second:?}"
    );
    drop(first);
    assert!(store.open(&alice).is_ok());
}

#[test]
fn update_removes_what_was_marked_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (store, alice) = store(dir.path());
    for text in ["one\n", "two\n", "three\n"] {
        store.deliver(&alice, text.as_bytes()).unwrap();
    }
    let maildrop = store.open(&alice).unwrap();
    let doomed = read(maildrop.as_ref(), 1);
    let report = maildrop.commit(&[1], &[0, 1]);
    assert_eq!((report.removed, report.not_removed), (1, 0));
    drop(maildrop);
    let maildrop = store.open(&alice).unwrap();
    let left: Vec<Vec<u8>> = (0..maildrop.len())
        .map(|i| read(maildrop.as_ref(), i))
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&doomed));
}

#[test]
fn derived_sizes_come_from_the_rule_once_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let (store, alice) = store(dir.path());
    store.deliver(&alice, b"short\n").unwrap();
    store.deliver(&alice, b"a longer one\n").unwrap();
    let maildrop = store.open(&alice).unwrap();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let rule = |message: &mut dyn Read, listed: u64| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut text = Vec::new();
        message.read_to_end(&mut text)?;
        Ok((text.len() > 6).then_some(listed + 100))
    };
    let first = maildrop.derived_sizes("test-rule", &rule);
    let again = maildrop.derived_sizes("test-rule", &rule);
    let mut sizes = first.clone();
    sizes.sort();
    assert_eq!(sizes, [None, Some(114)]);
    assert_eq!(again, first);
    assert_eq!(calls.into_inner(), 2, "the second call read the cache");
}

#[test]
fn a_maildrop_with_no_valid_place_is_a_permanent_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut alice) = store(dir.path());
    alice.mail = Some("mbox:/var/mail/%u".into());
    let error = store.open(&alice).err().unwrap();
    assert!(error.is_permanent(), "{error}");
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn grants_last_the_window_and_cover_the_ipv6_prefix() {
    let grants = MemoryGrants::new(Duration::from_millis(300), 64, 10);
    assert!(grants.enabled());
    grants.grant(ip("2001:db8::1"), "alice").await;
    assert_eq!(
        grants.lookup(ip("2001:db8::ffff")).await.as_deref(),
        Some("alice")
    );
    assert_eq!(grants.lookup(ip("2001:db8:0:1::1")).await, None);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(grants.lookup(ip("2001:db8::1")).await, None, "expired");
    let off = MemoryGrants::new(Duration::ZERO, 64, 10);
    off.grant(ip("192.0.2.1"), "alice").await;
    assert!(!off.enabled());
    assert_eq!(off.lookup(ip("192.0.2.1")).await, None);
}

#[tokio::test]
async fn penalties_count_new_attempts_and_space_the_next_check() {
    let penalties = MemoryPenalties::new(10);
    let base = Duration::from_secs(1);
    let cap = Duration::from_secs(8);
    let client = ip("192.0.2.7");
    assert_eq!(penalties.wait(client, base, cap).await, Duration::ZERO);
    assert_eq!(penalties.failure(client, 1).await, 1);
    assert_eq!(
        penalties.failure(client, 1).await,
        1,
        "the same attempt again"
    );
    assert_eq!(penalties.failure(client, 2).await, 2);
    let wait = penalties.wait(client, base, cap).await;
    assert!(
        wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    assert_eq!(
        penalties.wait(ip("192.0.2.8"), base, cap).await,
        Duration::ZERO
    );
}
