//! Users and maildrops over PostgreSQL against a private cluster, two
//! pools standing for two nodes.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use yubin_auth::{User, UserEntry};
use yubin_pg::Database;
use yubin_store::LockError;
use yubin_test_pg::TestPostgres;

use super::*;
use crate::backend::{MailError, MailStore, RelayGrantStore, UserDirectory};

async fn cluster(pg: &TestPostgres) -> (Database, Database) {
    let a = Database::connect(&pg.url(), 4).expect("a pool");
    a.migrate().await.expect("migrated");
    let b = Database::connect(&pg.socket_conninfo(), 4).expect("another pool");
    (a, b)
}

/// A cluster with alice, and a mail store on each of two nodes.
struct TwoNodes {
    pg: TestPostgres,
    /// Node a's pool.
    a: Database,
    alice: User,
    on_a: Arc<PgMailStore>,
    on_b: Arc<PgMailStore>,
}

async fn alice_on_two_nodes() -> TwoNodes {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, b) = cluster(&pg).await;
    add(&a, "alice:{PLAIN}pw").await;
    let users = PgUsers::load(a.clone(), None).await.expect("loaded");
    let alice = user(&users, "alice").await;
    TwoNodes {
        on_a: Arc::new(PgMailStore::new(a.clone(), "a")),
        on_b: Arc::new(PgMailStore::new(b, "b")),
        pg,
        a,
        alice,
    }
}

async fn add(db: &Database, line: &str) {
    let entry = UserEntry::parse(line).expect("an entry");
    assert!(db.add_user(&entry).await.expect("added"));
}

/// Runs `work` where blocking is allowed, as the drivers run the store.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("joined")
}

fn deliver(store: &Arc<PgMailStore>, user: &User, message: &[u8]) -> String {
    let wire = yubin_line::WireSize::of(message);
    let staged = store
        .stage(user, None, message.len() as u64, wire, &mut |out| {
            // In pieces, as the spool hands it over.
            for piece in message.chunks(7000) {
                out.write_all(piece)?;
            }
            Ok(())
        })
        .expect("staged");
    staged.commit().expect("committed").name()
}

fn read_all(maildrop: &dyn crate::backend::Maildrop, i: usize) -> Vec<u8> {
    let mut body = Vec::new();
    maildrop
        .open(i)
        .expect("opened")
        .read_to_end(&mut body)
        .expect("read");
    body
}

async fn user(users: &PgUsers, name: &str) -> User {
    users
        .snapshot()
        .users
        .get(name)
        .cloned()
        .expect("a known user")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_read_once_and_again_only_when_they_change() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, b) = cluster(&pg).await;
    add(&a, "alice@example.org:{PLAIN}secret::::::userdb_junk=yes").await;
    let users = PgUsers::load(b.clone(), Some(b"k".to_vec()))
        .await
        .expect("loaded");
    let first = users.snapshot();
    assert_eq!(first.users.len(), 1);
    assert_eq!(first.first_user.as_deref(), Some("alice@example.org"));
    assert_eq!(user(&users, "ALICE@example.org").await.junk, Some(true));
    assert!(first.domains.contains("example.org"));

    users.refresh_now().await;
    assert!(
        Arc::ptr_eq(&first, &users.snapshot()),
        "nothing changed, nothing read"
    );

    add(&a, "bob:{PLAIN}pw").await;
    assert!(
        a.set_password("alice@example.org", "{PLAIN}new")
            .await
            .expect("set")
    );
    users.refresh_now().await;
    let second = users.snapshot();
    assert_eq!(second.users.len(), 2);
    assert!(second.generation > first.generation);
    assert!(
        second
            .users
            .authenticate_password("alice@example.org", b"new")
            .is_some()
    );

    // A row written by hand with a name the passwd-file would refuse is
    // left out, not served.
    pg.psql("INSERT INTO users (name, name_key, password) VALUES ('../x', '../x', '{PLAIN}p')")
        .expect("inserted");
    users.refresh_now().await;
    assert_eq!(users.snapshot().users.len(), 2);
    assert!(users.snapshot().users.get("../x").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildrop_keeps_order_uidls_sizes_and_bytes_and_streams_a_large_body() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, _) = cluster(&pg).await;
    add(&a, "alice:{PLAIN}pw").await;
    let users = PgUsers::load(a.clone(), None).await.expect("loaded");
    let alice = user(&users, "alice").await;
    let store = Arc::new(PgMailStore::new(a.clone(), "node-a"));

    let small = b"Subject: one\n\nhello\n.dot line\n".to_vec();
    // Past the one-statement limit and not a whole number of chunks.
    let large: Vec<u8> = (0..3_000_000u32)
        .map(|i| {
            if i % 77 == 76 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let third = b"Subject: three\n\n".to_vec();
    let (s, l, t, u) = (store.clone(), small.clone(), large.clone(), alice.clone());
    let names = blocking(move || {
        [
            deliver(&s, &u, &l),
            deliver(&s, &u, &t),
            deliver(&s, &u, &third),
        ]
    })
    .await;
    assert!(names.iter().all(|n| n.ends_with(".node-a")), "{names:?}");

    let s = store.clone();
    let opened = blocking(move || s.open(&alice).map_err(|e| e.to_string())).await;
    let maildrop = opened.expect("opened");
    assert_eq!(maildrop.len(), 3);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(maildrop.uid(i), name.as_str(), "arrival order");
    }
    assert_eq!(maildrop.size(0), yubin_line::WireSize::of(&small));
    assert_eq!(maildrop.size(1), yubin_line::WireSize::of(&large));
    let list = maildrop.message_list(&[]);
    assert_eq!(list.len(), 3);
    let m = maildrop.clone();
    let (got_small, got_large) = blocking(move || (read_all(&*m, 0), read_all(&*m, 1))).await;
    assert_eq!(got_small, small);
    assert!(got_large == large, "the large body comes back whole");

    // From async code: the large body as pieces, with more readers at
    // once than the pool (4) spares connections (2) for reading ahead.
    // A small body is one piece, read ahead with the ones after it.
    let mut one = maildrop.stream(0).expect("a small body streams");
    let piece = one.next_piece().await.expect("read").expect("a piece");
    assert_eq!((*piece).as_ref(), &small[..]);
    assert!(one.next_piece().await.expect("the end").is_none());
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let mut body = maildrop.stream(1).expect("a large body streams");
            tokio::spawn(async move {
                let mut whole = Vec::new();
                while let Some(piece) = body.next_piece().await.expect("a piece") {
                    whole.extend_from_slice((*piece).as_ref());
                }
                whole
            })
        })
        .collect();
    for stream in streams {
        let whole = stream.await.expect("joined");
        assert!(whole == large, "the large body streams whole");
    }

    // A body gone by the time it is read is told as such, before any
    // piece.
    let mut gone = maildrop.stream(1).expect("a large body streams");
    a.execute("DELETE FROM body_chunks", &[])
        .await
        .expect("deleted");
    assert!(matches!(
        gone.next_piece().await,
        Err(yubin_store::OpenError::Gone)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_per_maildrop_across_nodes_and_update_commits_under_its_own_lock() {
    let TwoNodes {
        pg,
        a: _,
        alice,
        on_a,
        on_b,
    } = alice_on_two_nodes().await;
    let (s, u) = (on_a.clone(), alice.clone());
    blocking(move || {
        for n in 0..3 {
            deliver(&s, &u, format!("Subject: {n}\n\nbody {n}\n").as_bytes());
        }
    })
    .await;

    let (s, u) = (on_a.clone(), alice.clone());
    let first = blocking(move || s.open(&u).map_err(|e| e.to_string()))
        .await
        .expect("opened on a");
    let (s, u) = (on_b.clone(), alice.clone());
    let second = blocking(move || s.open(&u)).await;
    assert!(
        matches!(second, Err(MailError::Lock(LockError::InUse))),
        "in use on the other node"
    );

    // UPDATE deletes message 1 and keeps 0 and 2, then lets the lock go.
    let f = first.clone();
    let report = blocking(move || f.commit(&[1], &[0])).await;
    assert_eq!((report.removed, report.not_removed), (1, 0));
    drop(first);
    let (s, u) = (on_b.clone(), alice.clone());
    let again = blocking(move || s.open(&u).map_err(|e| e.to_string()))
        .await
        .expect("free after UPDATE");
    assert_eq!(again.len(), 2);
    let bodies = pg.psql("SELECT count(*) FROM bodies").expect("counted");
    assert_eq!(
        bodies.trim(),
        "2",
        "the deleted message's body went with it"
    );

    // A session that ends without UPDATE lets its lock go at once.
    drop(again);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, u) = (on_a.clone(), alice.clone());
    let third = blocking(move || s.open(&u).map_err(|e| e.to_string())).await;
    assert!(third.is_ok(), "{:?}", third.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lock_is_taken_over_and_the_old_session_cannot_commit() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, b) = cluster(&pg).await;
    add(&a, "alice:{PLAIN}pw").await;
    let users = PgUsers::load(a.clone(), None).await.expect("loaded");
    let alice = user(&users, "alice").await;
    let lease = Duration::from_millis(600);
    let dead = Arc::new(PgMailStore::new(a.clone(), "dead").with_lease(lease));
    let alive = Arc::new(PgMailStore::new(b.clone(), "alive").with_lease(lease));
    let (s, u) = (dead.clone(), alice.clone());
    blocking(move || deliver(&s, &u, b"Subject: keep\n\nme\n")).await;

    let (s, u) = (dead.clone(), alice.clone());
    let stale = blocking(move || s.open(&u).map_err(|e| e.to_string()))
        .await
        .expect("opened");
    // The node that holds it renews nothing (it died, or lost the
    // database); the other node takes the maildrop once the lease ran out.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let (s, u) = (alive.clone(), alice.clone());
    let fresh = blocking(move || s.open(&u).map_err(|e| e.to_string()))
        .await
        .expect("taken over");
    let report = blocking(move || stale.commit(&[0], &[])).await;
    assert_eq!(report.removed, 0, "the old session deletes nothing");
    assert_eq!(report.not_removed, 1);
    assert_eq!(fresh.len(), 1);

    // Renewed leases hold.
    drop(fresh);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, u) = (alive.clone(), alice.clone());
    let held = blocking(move || s.open(&u).map_err(|e| e.to_string()))
        .await
        .expect("opened again");
    for _ in 0..4 {
        tokio::time::sleep(lease / 3).await;
        alive.renew_leases().await;
    }
    let (s, u) = (dead.clone(), alice.clone());
    let refused = blocking(move || s.open(&u)).await;
    assert!(matches!(refused, Err(MailError::Lock(LockError::InUse))));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undone_delivery_leaves_nothing_and_derived_sizes_are_computed_once() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, _) = cluster(&pg).await;
    add(&a, "alice:{PLAIN}pw").await;
    let users = PgUsers::load(a.clone(), None).await.expect("loaded");
    let alice = user(&users, "alice").await;
    let store = Arc::new(PgMailStore::new(a.clone(), "a"));
    let (s, u) = (store.clone(), alice.clone());
    blocking(move || {
        let message = b"Subject: gone\n\n";
        let staged = s
            .stage(&u, None, message.len() as u64, 17, &mut |out| {
                out.write_all(message)
            })
            .expect("staged");
        staged.commit().expect("committed").undo();
        deliver(&s, &u, b"Subject: stays\n\nx\n");
    })
    .await;
    assert_eq!(
        pg.psql("SELECT count(*) FROM bodies").expect("n").trim(),
        "1"
    );

    let (s, u) = (store.clone(), alice.clone());
    let maildrop = blocking(move || s.open(&u).map_err(|e| e.to_string()))
        .await
        .expect("opened");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..2 {
        let (m, c) = (maildrop.clone(), calls.clone());
        let sizes = blocking(move || {
            m.derived_sizes("test-rule", &|body, listed| {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut text = Vec::new();
                body.read_to_end(&mut text)?;
                Ok(Some(listed + text.len() as u64))
            })
        })
        .await;
        assert_eq!(sizes, vec![Some(21 + 18)]);
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_a_user_the_database_does_not_know_is_refused_and_writes_nothing() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, _) = cluster(&pg).await;
    add(&a, "alice:{PLAIN}pw").await;
    let users = PgUsers::load(a.clone(), None).await.expect("loaded");
    let alice = user(&users, "alice").await;
    assert_eq!(
        a.remove_user("alice", false).await.expect("removed"),
        yubin_pg::Removal::Removed(0)
    );
    let store = Arc::new(PgMailStore::new(a.clone(), "a"));
    let result = blocking(move || {
        let staged = store
            .stage(&alice, None, 3, 4, &mut |out| out.write_all(b"x\n\n"))
            .expect("staged in memory");
        staged.commit().map(|d| d.name())
    })
    .await;
    assert!(matches!(result, Err(MailError::NoMaildrop(_))));
    assert_eq!(
        pg.psql("SELECT count(*) FROM bodies").expect("n").trim(),
        "0"
    );
}

/// Opens `user`'s maildrop, waiting out a lock the last session's batched
/// release has not let go yet.
async fn open_when_free(
    store: &Arc<PgMailStore>,
    user: &User,
) -> Arc<dyn crate::backend::Maildrop> {
    for _ in 0..100 {
        let (s, u) = (store.clone(), user.clone());
        match blocking(move || s.open(&u)).await {
            Ok(maildrop) => return maildrop,
            Err(MailError::Lock(LockError::InUse)) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
    panic!("the maildrop stayed locked");
}

fn uids(maildrop: &dyn crate::backend::Maildrop) -> Vec<String> {
    (0..maildrop.len())
        .map(|i| maildrop.uid(i).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_listing_serves_while_the_maildrop_is_unchanged_and_never_after_a_change() {
    let TwoNodes {
        pg: _pg,
        a,
        alice,
        on_a,
        on_b,
    } = alice_on_two_nodes().await;
    // Enough messages for the listing to be kept.
    let (s, u) = (on_b.clone(), alice.clone());
    let mut names = blocking(move || {
        (0..300)
            .map(|n| deliver(&s, &u, format!("Subject: {n}\n\nbody {n}\n").as_bytes()))
            .collect::<Vec<_>>()
    })
    .await;

    let first = open_when_free(&on_a, &alice).await;
    assert_eq!(uids(&*first), names);
    drop(first);
    assert!(on_a.listings.key("ALICE").is_some(), "kept on a");
    let again = open_when_free(&on_a, &alice).await;
    assert_eq!(uids(&*again), names, "the kept listing");
    drop(again);

    // A delivery on b: a sees it at its next login.
    let (s, u) = (on_b.clone(), alice.clone());
    names.push(blocking(move || deliver(&s, &u, b"Subject: new\n\nnew\n")).await);
    let after_delivery = open_when_free(&on_a, &alice).await;
    assert_eq!(uids(&*after_delivery), names);
    drop(after_delivery);

    // UPDATE on b deletes one and marks another seen.
    let on_b_drop = open_when_free(&on_b, &alice).await;
    let d = on_b_drop.clone();
    let report = blocking(move || d.commit(&[300], &[5])).await;
    assert_eq!(report.removed, 1);
    drop(on_b_drop);
    names.pop();
    let after_update = open_when_free(&on_a, &alice).await;
    assert_eq!(uids(&*after_update), names);
    drop(after_update);

    // Seen flags alone are a change too.
    let on_b_seen = open_when_free(&on_b, &alice).await;
    let m = on_b_seen.clone();
    let report = blocking(move || m.commit(&[], &[7])).await;
    assert_eq!(report.not_removed, 0);
    drop(on_b_seen);
    let seen: i64 = a
        .query_one("SELECT count(*) FROM messages WHERE seen", &[])
        .await
        .expect("counted")
        .get(0);
    assert_eq!(seen, 2);
    let key_before = on_a.listings.key("alice");
    let after_seen = open_when_free(&on_a, &alice).await;
    assert_ne!(on_a.listings.key("alice"), key_before, "listed afresh");
    assert_eq!(uids(&*after_seen), names);
    drop(after_seen);

    // A delivery taken back after a listing that had it, with another
    // delivery after it: the count is what it was at that listing, and
    // only the version tells.
    let (s, u) = (on_b.clone(), alice.clone());
    let undone = blocking(move || {
        s.stage(&u, None, 4, 5, &mut |out| out.write_all(b"x\ny\n"))
            .expect("staged")
            .commit()
            .expect("committed")
    })
    .await;
    let with_it = open_when_free(&on_a, &alice).await;
    assert_eq!(with_it.len(), names.len() + 1);
    drop(with_it);
    let (s, u) = (on_b.clone(), alice.clone());
    names.push(blocking(move || deliver(&s, &u, b"Subject: kept\n\nkept\n")).await);
    blocking(move || undone.undo()).await;
    let after_undo = open_when_free(&on_a, &alice).await;
    assert_eq!(uids(&*after_undo), names);
}

/// QUIT without changes lets the lock go before its `+OK`: a client that
/// connects again at once, on any node, must find the maildrop free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_without_changes_lets_the_lock_go_before_it_returns() {
    let TwoNodes {
        pg: _pg,
        a,
        alice,
        on_a,
        on_b,
    } = alice_on_two_nodes().await;
    let maildrop = open_when_free(&on_a, &alice).await;
    let m = maildrop.clone();
    let report = blocking(move || m.commit(&[], &[])).await;
    assert_eq!(report.removed, 0);
    let locks: i64 = a
        .query_one("SELECT count(*) FROM maildrop_locks", &[])
        .await
        .expect("counted")
        .get(0);
    assert_eq!(locks, 0, "let go before UPDATE returned");
    // Still held by the session object: the other node gets in anyway.
    let (s, u) = (on_b.clone(), alice.clone());
    let next = blocking(move || s.open(&u).map(|_| ()).map_err(|e| e.to_string())).await;
    assert_eq!(next, Ok(()));
    drop(maildrop);
}

/// A login's grant goes with its listing: written when the lock is taken
/// (with a fresh listing and with a kept one), never when the maildrop is
/// in use, and seen by the grant store of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_grant_is_written_with_the_lock_and_only_when_it_is_taken() {
    let TwoNodes {
        pg,
        a,
        alice,
        on_a,
        on_b,
    } = alice_on_two_nodes().await;
    let b = Database::connect(&pg.socket_conninfo(), 2).expect("another pool");
    let grants_a = PgGrants::new(a, Duration::from_secs(600), 64);
    let grants_b = PgGrants::new(b, Duration::from_secs(600), 64);
    let here: std::net::IpAddr = "192.0.2.1".parse().expect("an address");
    let there: std::net::IpAddr = "192.0.2.2".parse().expect("an address");
    let (s, u) = (on_a.clone(), alice.clone());
    blocking(move || {
        for n in 0..300 {
            deliver(&s, &u, format!("Subject: {n}\n\nbody {n}\n").as_bytes());
        }
    })
    .await;

    let user = Arc::new(alice.clone());
    let grant = grants_a.with_lock(here);
    assert!(grant.is_some(), "the database's grants ride with the lock");
    let opened = on_a
        .clone()
        .open_async(user.clone(), grant)
        .await
        .expect("opened");
    assert!(opened.granted);
    assert_eq!(opened.maildrop.len(), 300);
    assert_eq!(grants_b.lookup(here).await.as_deref(), Some("alice"));

    // In use: refused, and no grant for the other address.
    let refused = on_b
        .clone()
        .open_async(user.clone(), grants_b.with_lock(there))
        .await;
    assert!(
        matches!(refused, Err(MailError::Lock(LockError::InUse))),
        "in use"
    );
    assert_eq!(grants_a.lookup(there).await, None, "no lock, no grant");

    // The lock let go, the same login on a again: the kept listing is
    // used, and the grant still goes with it.
    let committed = opened.maildrop.commit_async(Vec::new(), Vec::new()).await;
    assert!(committed.is_some());
    assert!(on_a.listings.key("alice").is_some(), "kept");
    let again = on_a
        .clone()
        .open_async(user, grants_a.with_lock(there))
        .await
        .expect("opened again");
    assert!(again.granted);
    assert_eq!(again.maildrop.len(), 300);
    assert_eq!(grants_b.lookup(there).await.as_deref(), Some("alice"));

    // The same login again at once: the grant stands, and is left as it
    // was (its row is not locked again); aged by two seconds, it is
    // renewed with the listing.
    let expiry = || {
        pg.psql(
            "SELECT extract(epoch FROM expires) FROM relay_grants WHERE client = 'v4:192.0.2.2'",
        )
        .expect("psql")
        .trim()
        .parse::<f64>()
        .expect("an expiry")
    };
    let written = expiry();
    let relogin = || async {
        let opened = on_a
            .clone()
            .open_async(Arc::new(alice.clone()), grants_a.with_lock(there))
            .await
            .expect("opened");
        assert!(opened.granted);
        assert!(
            opened
                .maildrop
                .commit_async(Vec::new(), Vec::new())
                .await
                .is_some()
        );
    };
    assert!(
        again
            .maildrop
            .commit_async(Vec::new(), Vec::new())
            .await
            .is_some()
    );
    relogin().await;
    assert_eq!(expiry(), written, "left as it was");
    pg.psql("UPDATE relay_grants SET expires = expires - interval '2 seconds'")
        .expect("psql");
    relogin().await;
    assert!(expiry() > written - 2.0, "renewed");

    // With grants off, nothing rides along.
    let off = PgGrants::new(
        Database::connect(&pg.url(), 1).expect("a pool"),
        Duration::ZERO,
        64,
    );
    assert!(off.with_lock(here).is_none());
}
