//! PC-10: kill -9 the client at each step of a run, then run it again.
//! Nothing is ever lost; the only duplicate is the message delivered but
//! not yet recorded when the client died (step a), as documented.

use std::os::unix::process::ExitStatusExt;

use super::{Client, awkward_messages, put_all, report};
use crate::harness::TestServer;

/// Runs once with the client dying at `point`, then once normally; returns
/// how many messages the server still had after the crash and how many the
/// client's Maildir ends with, and checks that every message left the
/// server in the end and none was lost.
fn crash_and_rerun(point: &str) -> (usize, usize) {
    let server = TestServer::start();
    let messages = awkward_messages();
    put_all(&server, &messages);
    let client = Client::new();
    let args = client.args(&server);
    let crashed = client
        .command(&args, &[], &[("YUBIN_FETCH_FAILPOINT", point)])
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "{point}: expected death by SIGKILL; stderr: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    let after_crash = server.messages("alice").len();
    let rerun = report(&client.run(&args, &[]), 0);
    assert!(server.messages("alice").is_empty(), "{point}: {rerun}");
    let delivered = client.delivered();
    for m in &messages {
        let subject = &m[..m.iter().position(|&b| b == b'\n').unwrap()];
        assert!(
            delivered.iter().any(|d| d.starts_with(subject)),
            "{point}: lost {:?}",
            String::from_utf8_lossy(subject)
        );
    }
    (after_crash, delivered.len())
}

#[test]
fn killed_after_local_delivery_before_the_ledger_one_duplicate() {
    // No QUIT was sent: the server removed nothing.
    assert_eq!(crash_and_rerun("after-deliver:2"), (3, 4));
}

#[test]
fn killed_after_the_ledger_before_dele_no_duplicate() {
    assert_eq!(crash_and_rerun("after-record:2"), (3, 3));
}

#[test]
fn killed_after_dele_before_quit_no_duplicate_and_nothing_removed_early() {
    assert_eq!(crash_and_rerun("after-dele:2"), (3, 3));
}

#[test]
fn killed_after_quit_sent_before_its_reply_no_duplicate() {
    // Whether the server saw the QUIT or not, the rerun finds each
    // message either gone or in the ledger: no duplicate either way.
    assert_eq!(crash_and_rerun("after-quit-sent").1, 3);
}

/// PC-12: a damaged ledger deletes nothing that run, fetches what it
/// cannot account for, and is rebuilt; the run after that deletes again.
#[test]
fn a_damaged_ledger_suspends_deletion_for_one_run() {
    let server = TestServer::start();
    let messages = awkward_messages();
    put_all(&server, &messages);
    let client = Client::new();
    let args = client.args(&server);
    report(&client.run(&args, &["--keep"]), 0);
    let ledger = std::fs::read_dir(client.state())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ledger"))
        .unwrap();
    let text = std::fs::read_to_string(&ledger).unwrap();
    // Cut off the end line and the last entry: a torn snapshot.
    let cut = text.trim_end().rsplitn(3, '\n').last().unwrap().to_owned() + "\n";
    std::fs::write(&ledger, cut).unwrap();

    let damaged = report(&client.run(&args, &[]), 0);
    assert!(
        damaged["deletion_suspended"]
            .as_str()
            .unwrap()
            .contains("damaged"),
        "{damaged}"
    );
    assert_eq!(damaged["deleted"], 0);
    assert_eq!(
        damaged["fetched"], 1,
        "the entry lost with the cut: {damaged}"
    );
    assert_eq!(server.messages("alice").len(), 3);
    assert_eq!(client.delivered().len(), 4);

    let repaired = report(&client.run(&args, &[]), 0);
    assert_eq!(
        (repaired["fetched"].as_u64(), repaired["deleted"].as_u64()),
        (Some(0), Some(3))
    );
    assert!(server.messages("alice").is_empty());
}
