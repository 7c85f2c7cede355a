//! The outbound queue over PostgreSQL (issue 16): two nodes' delivery
//! engines share one queue, deliver each entry once, and a node killed in
//! the middle of an attempt has its entry taken over by the other when
//! the claim's lease runs out.

use std::time::{Duration, Instant};

use crate::harness::TestServer;
use crate::outbound::{DeadPort, FakeSmtp, eventually, exercise_queue_commands, send_via};
use crate::postgres::{cluster, node};

/// A node relaying `b.test` to `port`, retrying fast, in plain text.
fn relaying_node(url: &str, name: &str, port: u16) -> TestServer {
    node(
        url,
        name,
        &format!(
            "[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{port}\" }}\nfirst_retry = \"1s\"\n\
             max_retry = \"1s\"\ntls = \"none\"\n"
        ),
    )
}

/// The subjects the fake server received, one per message it took.
fn subjects(fake: &FakeSmtp) -> Vec<String> {
    fake.events("message")
        .iter()
        .filter_map(|m| {
            let content = m["content"].as_str()?;
            let line = content.lines().find(|l| l.starts_with("Subject: "))?;
            Some(line.trim_start_matches("Subject: ").to_owned())
        })
        .collect()
}

fn queued(pg: &yubin_test_pg::TestPostgres) -> usize {
    pg.psql("SELECT count(*) FROM queue")
        .expect("psql")
        .trim()
        .parse()
        .expect("a count")
}

#[test]
fn issue16_two_engines_deliver_every_entry_exactly_once() {
    let (pg, _admin) = cluster("");
    let fake = FakeSmtp::start("normal");
    let a = relaying_node(&pg.url(), "node-a", fake.port);
    let b = relaying_node(&pg.url(), "node-b", fake.port);
    let mut sent = Vec::new();
    for i in 0..12 {
        let via = if i % 2 == 0 { &a } else { &b };
        let subject = format!("q{i}");
        let reply = send_via(
            via,
            &["bob@b.test", "carol@b.test"],
            format!("Subject: {subject}\r\n\r\nbody {i}\r\n").as_bytes(),
        );
        assert_eq!(reply["error"], serde_json::Value::Null, "{reply}");
        sent.push(subject);
    }
    eventually(60, "every message at the next hop", || {
        subjects(&fake).len() >= sent.len()
    });
    eventually(30, "the shared queue to empty", || queued(&pg) == 0);
    // No late second attempt from the other engine.
    std::thread::sleep(Duration::from_secs(2));
    let mut got = subjects(&fake);
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "each entry delivered once, to both recipients");
    for message in fake.events("message") {
        assert_eq!(message["to"].as_array().map(Vec::len), Some(2), "{message}");
    }
}

#[test]
fn issue16_a_node_killed_mid_data_has_its_entry_taken_over_and_delivered_once() {
    let (pg, _admin) = cluster("");
    // The first connection takes a line of the message and then stalls:
    // the sending node is stuck in the middle of DATA.
    let fake = FakeSmtp::start("stall-data-once");
    let mut a = relaying_node(&pg.url(), "node-a", fake.port);
    let mut b = relaying_node(&pg.url(), "node-b", fake.port);
    // Larger than the socket buffers, so that the sender is blocked
    // writing it, and over a body chunk, so that it is read in pieces.
    let mut message = b"Subject: takeover\r\n\r\n".to_vec();
    for i in 0..40_000 {
        message.extend_from_slice(format!("line {i:06} of the message going over\r\n").as_bytes());
    }
    // Too large for a command line: the client reads it from a file.
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), &message).expect("written");
    let reply = a.python(
        "import os, popclient as p, smtpclient as s\n\
         c = p.connect(); p.login(c); c.quit()\n\
         s.emit(s.send_once('alice@test.example', ['bob@b.test'], open(os.environ['MESSAGE'], 'rb').read()))",
        &[
            ("USER_NAME", "alice"),
            ("USER_PASS", "alice-pw"),
            ("MESSAGE", file.path().to_str().expect("UTF-8")),
        ],
    );
    assert_eq!(reply["error"], serde_json::Value::Null, "{reply}");
    eventually(30, "an attempt stuck mid-DATA", || {
        !fake.events("stalled").is_empty()
    });
    let holder = pg
        .psql("SELECT claim_node FROM queue WHERE claim_token IS NOT NULL")
        .expect("psql")
        .trim()
        .to_owned();
    let survivor = match holder.as_str() {
        "node-a" => {
            a.kill9();
            &b
        }
        "node-b" => {
            b.kill9();
            &a
        }
        other => panic!("the claim is held by {other:?}"),
    };
    let killed = Instant::now();
    eventually(90, "the other node's delivery", || {
        !fake.events("message").is_empty()
    });
    let waited = killed.elapsed();
    eventually(30, "the shared queue to empty", || queued(&pg) == 0);
    std::thread::sleep(Duration::from_secs(2));
    let delivered = fake.events("message");
    assert_eq!(delivered.len(), 1, "delivered once: {}", delivered.len());
    let content = delivered[0]["content"].as_str().expect("content");
    let start = content.find("Subject: takeover").expect("the message");
    assert!(
        content.as_bytes()[start..] == message[..],
        "the whole message, once"
    );
    // Taken over when the claim's lease (30 s) ran out, and the survivor's
    // engine looked again (every 30 s at most).
    assert!(waited < Duration::from_secs(75), "after {waited:?}");
    assert!(
        survivor.log().contains("removed from the queue"),
        "{}",
        survivor.log()
    );
}

#[test]
fn issue16_queue_commands_work_on_the_shared_queue() {
    let (pg, _admin) = cluster("");
    let dead = DeadPort::new();
    let port = dead.port;
    // Slow retries: only a flush makes the next attempt happen soon.
    let a = node(
        &pg.url(),
        "node-a",
        &format!(
            "[queue]\nroutes = {{ \"b.test\" = \"127.0.0.1:{port}\" }}\nfirst_retry = \"1h\"\n"
        ),
    );
    let other = node(&pg.url(), "node-b", "");
    // Commands given with the other node's configuration: the queue is
    // the cluster's, not a node's.
    let config = other.config_path();
    let config = config.to_str().expect("UTF-8");
    let queue = |args: &[&str]| {
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", config]);
        crate::harness::yubin(&all, "", other.dir.path())
    };
    let login = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];
    let fetch = "import popclient as p\n\
         c = p.connect(); p.login(c); r = p.fetch_all(c); c.quit(); p.emit(r)";
    exercise_queue_commands(
        &a,
        dead,
        &queue,
        &|| crate::harness::hex_list(&a.python(fetch, &login)["messages"]),
        &|| queued(&pg) == 0,
    );
}
