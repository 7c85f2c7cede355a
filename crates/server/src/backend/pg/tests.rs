//! The PostgreSQL seams against a private cluster, each used from two
//! pools as two nodes would.

use std::net::IpAddr;
use std::time::Duration;

use yubin_pg::Database;
use yubin_test_pg::TestPostgres;

use super::*;
use crate::backend::{
    GreylistStore, GreylistTimes, Greylisted, PenaltyStore, RelayGrantStore, Triplet,
};

async fn two_nodes(pg: &TestPostgres) -> (Database, Database) {
    let a = Database::connect(&pg.url(), 2).expect("a pool");
    a.migrate().await.expect("migrated");
    let b = Database::connect(&pg.socket_conninfo(), 2).expect("another pool");
    (a, b)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_on_one_node_is_seen_on_another_until_it_expires() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, b) = two_nodes(&pg).await;
    let off = PgGrants::new(a.clone(), Duration::ZERO, 64);
    assert!(!off.enabled());
    let on_a = PgGrants::new(a, Duration::from_secs(1), 64);
    let on_b = PgGrants::new(b, Duration::from_secs(1), 64);
    on_a.grant(ip("192.0.2.7"), "alice").await;
    assert_eq!(on_b.lookup(ip("192.0.2.7")).await.as_deref(), Some("alice"));
    assert_eq!(on_b.lookup(ip("192.0.2.8")).await, None);
    // IPv6 by /64, as in memory.
    on_a.grant(ip("2001:db8::1"), "bob").await;
    assert_eq!(
        on_b.lookup(ip("2001:db8::ffff")).await.as_deref(),
        Some("bob")
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(on_b.lookup(ip("192.0.2.7")).await, None, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_add_up_across_nodes_and_the_same_attempt_counts_once() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, b) = two_nodes(&pg).await;
    let (on_a, on_b) = (PgPenalties::new(a), PgPenalties::new(b));
    let client = ip("192.0.2.9");
    assert_eq!(
        on_a.wait(client, Duration::from_millis(100), Duration::from_secs(1))
            .await,
        Duration::ZERO
    );
    assert_eq!(on_a.failure(client, 1).await, 1);
    assert_eq!(on_b.failure(client, 2).await, 2);
    assert_eq!(on_a.failure(client, 2).await, 2, "the same attempt again");
    assert_eq!(on_b.failure(client, 3).await, 3);
    // Node a knows of b's third failure once it reads the table again (it
    // does every second).
    on_a.refresh().await;
    // Three failures: 100 ms doubled twice, less the moment since.
    let wait = on_a
        .wait(client, Duration::from_millis(100), Duration::from_secs(1))
        .await;
    assert!(
        wait > Duration::from_millis(200) && wait <= Duration::from_millis(400),
        "{wait:?}"
    );
    assert_eq!(
        on_b.wait(
            ip("192.0.2.10"),
            Duration::from_millis(100),
            Duration::from_secs(1)
        )
        .await,
        Duration::ZERO
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_node_after_the_delay_passes() {
    let pg = TestPostgres::start().expect("a cluster");
    let (a, b) = two_nodes(&pg).await;
    let times = GreylistTimes {
        delay: Duration::from_secs(1),
        retry_window: Duration::from_secs(3600),
        keep: Duration::from_secs(86_400),
    };
    let (on_a, on_b) = (PgGreylist::new(a, times), PgGreylist::new(b, times));
    let triplet = Triplet {
        network: "192.0.2.0/24".into(),
        sender: "s@example.net".into(),
        recipient: "alice@ours.test".into(),
    };
    assert_eq!(
        on_a.attempt(&triplet).await,
        Greylisted::Wait(Duration::from_secs(1))
    );
    assert!(
        matches!(on_b.attempt(&triplet).await, Greylisted::Wait(left) if left < Duration::from_secs(1))
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(on_b.attempt(&triplet).await, Greylisted::Pass);
    assert_eq!(
        on_a.attempt(&triplet).await,
        Greylisted::Pass,
        "from now on, on every node"
    );
}
