//! POP-before-SMTP grants against a private PostgreSQL cluster: written,
//! one per client and user, looked up (the newest) until they expire, and
//! not written again while a grant to the same user stands fresh and
//! newest (logins would otherwise queue on its row).

use yubin_pg::Database;
use yubin_test_pg::TestPostgres;

/// The expiry of `client`'s grant to `user`, in microseconds since the
/// epoch.
fn expiry(pg: &TestPostgres, client: &str, user: &str) -> i64 {
    pg.psql(&format!(
        "SELECT (extract(epoch FROM expires) * 1000000)::bigint \
         FROM relay_grants WHERE client = '{client}' AND username = '{user}'"
    ))
    .expect("psql")
    .trim()
    .parse()
    .expect("a grant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_standing_fresh_is_not_written_again() {
    let pg = TestPostgres::start().expect("a PostgreSQL cluster");
    let db = Database::connect(&pg.url(), 2).expect("a pool");
    db.migrate().await.expect("migrated");
    let here = "192.0.2.1".to_owned();
    let there = "192.0.2.2".to_owned();
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // As if `client`'s grant to `user` had been written two seconds ago.
    let age = |client: &str, user: &str| {
        pg.psql(&format!(
            "UPDATE relay_grants SET expires = expires - interval '2 seconds' \
             WHERE client = '{client}' AND username = '{user}'"
        ))
        .expect("psql");
    };

    // Two logins from `here` in one batch: the last one's user wins.
    db.write_grants(
        &[here.clone(), there.clone(), here.clone()],
        &names(&["alice", "carol", "bob"]),
        600.0,
    )
    .await
    .expect("written");
    assert_eq!(
        db.relay_grant(&here).await.expect("read").as_deref(),
        Some("bob")
    );
    assert_eq!(
        db.relay_grant(&there).await.expect("read").as_deref(),
        Some("carol")
    );
    let first = expiry(&pg, &here, "bob");

    // Again at once: it stands, so it is left as it was.
    db.write_grants(&names(&[here.as_str()]), &names(&["bob"]), 600.0)
        .await
        .expect("written");
    assert_eq!(expiry(&pg, &here, "bob"), first, "left");

    // Another user from the same address: a grant of its own, and the
    // newest grant is the one the address relays as.
    db.write_grants(&names(&[here.as_str()]), &names(&["alice"]), 600.0)
        .await
        .expect("written");
    let second = expiry(&pg, &here, "alice");
    assert!(second > first, "a new expiry");
    assert_eq!(expiry(&pg, &here, "bob"), first, "bob's stays");
    assert_eq!(
        db.relay_grant(&here).await.expect("read").as_deref(),
        Some("alice")
    );

    // Written two seconds ago: renewed.
    age(&here, "alice");
    db.write_grants(&names(&[here.as_str()]), &names(&["alice"]), 600.0)
        .await
        .expect("written");
    let third = expiry(&pg, &here, "alice");
    assert!(
        third > second - 2_000_000,
        "renewed: {third} after {second}"
    );

    // Bob again, his grant aged: renewed, and now the newest.
    age(&here, "bob");
    db.write_grants(&names(&[here.as_str()]), &names(&["bob"]), 600.0)
        .await
        .expect("written");
    assert_eq!(
        db.relay_grant(&here).await.expect("read").as_deref(),
        Some("bob")
    );

    // Alice again at once, her grant fresh but no longer the newest:
    // written again, so the address relays as the user who logged in
    // last (alice, bob, alice within a second once left it relaying as
    // bob).
    db.write_grants(&names(&[here.as_str()]), &names(&["alice"]), 600.0)
        .await
        .expect("written");
    assert_eq!(
        db.relay_grant(&here).await.expect("read").as_deref(),
        Some("alice")
    );

    // Expired: not found, and a new login grants again.
    pg.psql(&format!(
        "UPDATE relay_grants SET expires = now() - interval '1 second' WHERE client = '{there}'"
    ))
    .expect("psql");
    assert_eq!(db.relay_grant(&there).await.expect("read"), None);
    db.write_grants(&names(&[there.as_str()]), &names(&["carol"]), 600.0)
        .await
        .expect("written");
    assert_eq!(
        db.relay_grant(&there).await.expect("read").as_deref(),
        Some("carol")
    );
}
