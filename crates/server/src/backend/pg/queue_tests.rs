//! The outbound queue over PostgreSQL against a private cluster, two
//! pools standing for two nodes: one attempt at a time per entry, writes
//! only under a standing claim, takeover when a lease lapses.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use yubin_pg::Database;
use yubin_queue::{EntryState, Envelope, QueueStore};
use yubin_test_pg::TestPostgres;

use super::*;

async fn two_nodes(pg: &TestPostgres) -> (Database, Arc<PgQueue>, Arc<PgQueue>) {
    let a = Database::connect(&pg.url(), 4).expect("a pool");
    a.migrate().await.expect("migrated");
    let b = Database::connect(&pg.socket_conninfo(), 4).expect("another pool");
    let queue_a = Arc::new(PgQueue::new(a.clone(), "a"));
    let queue_b = Arc::new(PgQueue::new(b, "b"));
    (a, queue_a, queue_b)
}

/// Runs `work` where blocking is allowed, as the engine runs the store.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("joined")
}

fn envelope(id: &str) -> Envelope {
    Envelope {
        id: id.into(),
        created: 1_795_727_974,
        from: "alice@example.org".into(),
        recipients: vec!["x@remote.example".into(), "y@other.example".into()],
        client: "192.0.2.7".into(),
        auth: "pop-before-smtp alice@example.org".into(),
        body: "8BITMIME".into(),
        smtputf8: true,
        size: Some(123),
    }
}

fn enqueue(queue: &PgQueue, id: &str, message: &[u8]) {
    let staged = queue
        .stage(&envelope(id), &mut |out| {
            for piece in message.chunks(7000) {
                out.write_all(piece)?;
            }
            Ok(())
        })
        .expect("staged");
    staged.commit().expect("committed");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn bodies(db: &Database) -> i64 {
    db.query_one("SELECT count(*) FROM bodies", &[])
        .await
        .expect("counted")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_is_claimed_by_one_node_at_a_time_and_changed_only_under_its_claim() {
    let pg = TestPostgres::start().expect("a cluster");
    let (db, a, b) = two_nodes(&pg).await;
    // Over a chunk, so that it streams in; not a multiple of one.
    let message: Vec<u8> = (0..700_000u32)
        .map(|i| b"abcdefghij\n"[i as usize % 11])
        .collect();
    let sent = message.clone();
    let (a2, b2) = (a.clone(), b.clone());
    blocking(move || {
        enqueue(&a2, "e1", &sent);
        assert_eq!(b2.ids().expect("ids"), ["e1"]);
        let (read, mut body) = b2.open("e1").expect("opened on the other node");
        assert_eq!(read, envelope("e1"));
        let mut got = Vec::new();
        body.read_to_end(&mut got).expect("read");
        assert!(got == sent, "the message comes back byte for byte");
        assert_eq!(b2.load_state("e1").expect("state"), EntryState::default());

        let claim = a2
            .claim("e1", Some(now()))
            .expect("asked")
            .expect("claimed");
        assert!(
            b2.claim("e1", Some(now())).expect("asked").is_none(),
            "claimed twice"
        );
        assert!(
            b2.claim("e1", None).expect("asked").is_none(),
            "claimed twice"
        );
        // Without the claim, the other node changes nothing.
        let deferred = EntryState {
            attempts: 1,
            next_attempt: now() + 600,
            last_error: "451 4.3.0 later".into(),
            done: vec!["y@other.example".into()],
            ..EntryState::default()
        };
        assert!(b2.save_state("e1", &deferred).is_err());
        assert!(b2.remove("e1").is_err());
        a2.save_state("e1", &deferred)
            .expect("saved under the claim");
        assert_eq!(b2.load_state("e1").expect("state"), deferred);
        claim.release();
        // Not due for another ten minutes: no claim for an attempt now
        // (another node tried it meanwhile), one for a change.
        assert!(b2.claim("e1", Some(now())).expect("asked").is_none());
        assert_eq!(
            b2.next_attempts(vec!["e1".into()]),
            [("e1".to_owned(), deferred.next_attempt)]
        );
        let claim = b2
            .claim("e1", Some(now() + 601))
            .expect("asked")
            .expect("due then");
        b2.remove("e1").expect("removed under the claim");
        drop(claim);
        assert!(a2.ids().expect("ids").is_empty());
        assert!(a2.open("e1").is_err());
    })
    .await;
    assert_eq!(bodies(&db).await, 0, "the body went with the entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_claim_is_taken_over_and_its_old_holder_stops_and_changes_nothing() {
    let pg = TestPostgres::start().expect("a cluster");
    let (_db, a, b) = two_nodes(&pg).await;
    let a = Arc::new(
        Arc::try_unwrap(a)
            .unwrap_or_else(|_| panic!("one handle"))
            .with_lease(Duration::from_secs(1)),
    );
    let a2 = a.clone();
    let claim = blocking(move || {
        enqueue(&a2, "e2", b"Subject: x\n\nbody\n");
        a2.claim("e2", Some(now()))
            .expect("asked")
            .expect("claimed")
    })
    .await;
    let lost = claim.lost();
    // Node a is cut off: its lease runs out unrenewed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b2 = b.clone();
    let taken = blocking(move || b2.claim("e2", Some(now())).expect("asked"))
        .await
        .expect("taken over");
    // a's next renewal finds its claim gone: the attempt under it stops.
    a.renew_claims().await;
    tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("the loss is told");
    let (a2, b2) = (a.clone(), b.clone());
    blocking(move || {
        assert!(a2.save_state("e2", &EntryState::default()).is_err());
        assert!(a2.remove("e2").is_err(), "fenced: the claim is b's now");
        b2.remove("e2").expect("removed by the new holder");
        drop(taken);
        drop(claim);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_on_one_node_reaches_the_others_and_undo_takes_an_entry_back() {
    let pg = TestPostgres::start().expect("a cluster");
    let (db, a, b) = two_nodes(&pg).await;
    b.watch_flushes().await;
    assert!(!b.take_flush_request());
    let a2 = a.clone();
    blocking(move || {
        enqueue(&a2, "e3", b"Subject: y\n\nbody\n");
        let claim = a2.claim("e3", None).expect("asked").expect("claimed");
        let later = EntryState {
            next_attempt: now() + 3600,
            ..EntryState::default()
        };
        a2.save_state("e3", &later).expect("saved");
        claim.release();
        a2.request_flush().expect("flush requested");
        assert_eq!(a2.load_state("e3").expect("state").next_attempt, 0);
    })
    .await;
    b.watch_flushes().await;
    assert!(b.take_flush_request(), "seen on the other node");
    assert!(!b.take_flush_request(), "once");

    let a2 = a.clone();
    blocking(move || {
        let queued = a2
            .stage(&envelope("e4"), &mut |out| out.write_all(b"x\n"))
            .expect("staged")
            .commit()
            .expect("committed");
        queued.undo();
        assert_eq!(a2.ids().expect("ids"), ["e3"]);
    })
    .await;
    assert_eq!(bodies(&db).await, 1, "the undone entry's body is gone");
}
