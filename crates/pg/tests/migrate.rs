//! Migrations against a private PostgreSQL cluster: applied once, again
//! a no-op, two at once apply each migration once, and a schema newer
//! than this yubin knows is refused; the pool opens what it should, and
//! commits synchronously whatever the server says.

use yubin_pg::Database;
use yubin_test_pg::TestPostgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_an_unknown_schema_is_refused() {
    let pg = TestPostgres::start().expect("a PostgreSQL cluster");
    let db = Database::connect(&pg.url(), 4).expect("a pool");
    assert!(
        db.check_schema().await.is_err(),
        "a fresh database has no schema"
    );
    // Two nodes migrating at once: each migration is applied once.
    let other = Database::connect(&pg.socket_conninfo(), 2).expect("a pool over the socket");
    let (a, b) = tokio::join!(db.migrate(), other.migrate());
    let mut applied = a.expect("migrated");
    applied.extend(b.expect("migrated"));
    applied.sort_unstable();
    let all: Vec<u32> = yubin_pg::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each once, between the two");
    db.check_schema()
        .await
        .expect("the schema this yubin knows");
    assert_eq!(db.migrate().await.expect("again"), Vec::<u32>::new());
    // A version from a later yubin.
    pg.psql(&format!(
        "INSERT INTO yubin_schema (version, name) VALUES ({}, 'from the future')",
        all.len() + 1
    ))
    .expect("psql");
    let refused = db.check_schema().await.expect_err("refused");
    assert!(
        refused.to_string().contains("newer than this yubin knows"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_up_opens_every_connection_of_the_pool_once() {
    let pg = TestPostgres::start().expect("a PostgreSQL cluster");
    let db = Database::connect(&pg.url(), 5).expect("a pool");
    db.migrate().await.expect("migrated");
    let backends = || -> usize {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = 'yubin' AND pid <> pg_backend_pid()",
        )
        .expect("psql")
        .trim()
        .parse()
        .expect("a count")
    };
    let before = backends();
    assert_eq!(db.warm_up().await, 5, "all five");
    assert_eq!(
        backends() - before,
        4,
        "the migration's connection and four more"
    );
    assert_eq!(db.warm_up().await, 5, "again");
    assert_eq!(backends() - before, 4, "none opened twice");

    // The connection given back last is the next one out.
    let backend = async || -> i32 {
        let client = db.client().await.expect("a connection");
        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("its process");
        row.get(0)
    };
    let first = backend().await;
    assert_eq!(backend().await, first, "the same backend again");
    assert_eq!(backend().await, first, "and again");

    // A database that cannot be reached: nothing opened, and no error.
    let nowhere = Database::connect("postgresql://yubin@127.0.0.1:1/yubin", 3).expect("a pool");
    assert_eq!(nowhere.warm_up().await, 0);
}

/// A 250 or the +OK after UPDATE promises that the change survives a crash
/// of the database server: a server whose own default is
/// `synchronous_commit = off` still commits yubin's transactions
/// synchronously, over TCP and over the socket, with options of the
/// URL's own kept. The connections carry the node's name, unless the URL
/// gives one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_synchronous_whatever_the_servers_default() {
    let pg = TestPostgres::start_with(&["synchronous_commit=off"]).expect("a PostgreSQL cluster");
    let setting = async |db: &Database, name: &str| -> String {
        let client = db.client().await.expect("a connection");
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .expect("SHOW");
        row.get(0)
    };
    let outside = pg.psql("SHOW synchronous_commit").expect("psql");
    assert_eq!(outside.trim(), "off", "the server's default");
    let over_tcp = Database::connect_as(&pg.url(), 2, "yubin a").expect("a pool");
    assert_eq!(setting(&over_tcp, "synchronous_commit").await, "on");
    assert_eq!(setting(&over_tcp, "application_name").await, "yubin a");
    let named = format!("{}?application_name=mine", pg.url());
    let named = Database::connect_as(&named, 1, "yubin a").expect("a pool");
    assert_eq!(setting(&named, "application_name").await, "mine");
    let with_options = format!(
        "{} options='-c statement_timeout=12345'",
        pg.socket_conninfo()
    );
    let over_socket = Database::connect(&with_options, 2).expect("a pool");
    assert_eq!(setting(&over_socket, "synchronous_commit").await, "on");
    assert_eq!(setting(&over_socket, "statement_timeout").await, "12345ms");
}
