//! Nodes on PostgreSQL killed (kill -9) in the middle of a RETR, of an
//! incoming DATA and half-way through UPDATE (issue 16): nothing is lost,
//! nothing is half-done, and the other node serves the maildrop as it was.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;

use crate::outbound::eventually;
use crate::postgres::{cluster, node};

const ALICE: [(&str, &str); 2] = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];

/// Logs in (waiting out a lock a dead node left, up to 45 s), lists and
/// retrieves everything, leaves it there.
const FETCH_WHEN_FREE: &str = "import popclient as p, poplib, time\n\
     start = time.monotonic()\n\
     while True:\n\
     \x20   c = p.connect()\n\
     \x20   try:\n\
     \x20       p.login(c); break\n\
     \x20   except poplib.error_proto:\n\
     \x20       c.quit()\n\
     \x20       if time.monotonic() - start > 45: raise\n\
     \x20       time.sleep(0.5)\n\
     r = p.fetch_all(c); c.quit(); p.emit(r)";

/// Waits for the spawned script's first line, which says it is where the
/// test wants it.
fn wait_for_line(child: &mut Child, expected: &str) {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), expected);
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn alice_messages(pg: &yubin_test_pg::TestPostgres) -> String {
    pg.psql("SELECT count(*) FROM messages")
        .expect("psql")
        .trim()
        .to_owned()
}

#[test]
fn issue16_nodes_killed_mid_retr_mid_data_and_mid_update_lose_nothing() {
    let (pg, _admin) = cluster("");
    let mut a = node(&pg.url(), "node-a", "");
    let b = node(&pg.url(), "node-b", "");
    // Three messages for alice, the middle one 3 MB (many body chunks).
    let sent = a.python(
        "import smtpclient as s\n\
         big = b'Subject: big\\r\\n\\r\\n' + b''.join(b'line %07d of a long message\\r\\n' % i for i in range(100000))\n\
         s.emit([s.send_once('x@example.net', ['alice@test.example'], m) for m in \
         (b'Subject: one\\r\\n\\r\\nfirst\\r\\n', big, b'Subject: three\\r\\n\\r\\nthird\\r\\n')])",
        &[],
    );
    assert!(
        sent.as_array()
            .is_some_and(|all| all.iter().all(|r| r["error"].is_null())),
        "{sent}"
    );
    let before = b.python(FETCH_WHEN_FREE, &ALICE);
    assert_eq!(before["stat"][0], 3, "{before}");
    // TOP of the big one stops after its lines, streamed from the
    // database as RETR is.
    let top = b.python(
        "import popclient as p\n\
         c = p.connect(); p.login(c); lines = c.top(2, 2)[1]; c.quit()\n\
         p.emit([l.decode() for l in lines[lines.index(b'Subject: big'):]])",
        &ALICE,
    );
    assert_eq!(
        top,
        serde_json::json!([
            "Subject: big",
            "",
            "line 0000000 of a long message",
            "line 0000001 of a long message"
        ])
    );

    // Mid-RETR: a client on A has read part of the big message.
    let mut reader = a.python_spawn(
        "import popclient as p, time\n\
         r = p.Raw(); r.cmd('USER alice'); r.cmd('PASS alice-pw'); r.send(b'RETR 2\\r\\n')\n\
         got = 0\n\
         while got < 200000: got += len(r.sock.recv(65536))\n\
         print('reading', flush=True); time.sleep(120)",
        &[],
    );
    wait_for_line(&mut reader, "reading");
    a.kill9();
    stop(reader);
    let after_retr = b.python(FETCH_WHEN_FREE, &ALICE);
    assert_eq!(after_retr, before, "the maildrop as it was, every byte");

    // Mid-DATA: a sender is halfway through a message to A.
    a.launch();
    let mut sender = a.python_spawn(
        "import smtpclient as s, time\n\
         c = s.connect(); c.ehlo(); c.mail('x@example.net'); c.rcpt('alice@test.example')\n\
         code, _ = c.docmd('DATA'); assert code == 354\n\
         c.sock.sendall(b'Subject: cut\\r\\n\\r\\n' + b'half of it\\r\\n' * 100000)\n\
         print('sending', flush=True); time.sleep(120)",
        &[],
    );
    wait_for_line(&mut sender, "sending");
    a.kill9();
    stop(sender);
    assert_eq!(alice_messages(&pg), "3", "no 250, no message");
    let after_data = b.python(FETCH_WHEN_FREE, &ALICE);
    assert_eq!(after_data, before);

    // Mid-UPDATE. UPDATE is one statement: the lock, the three messages
    // and their bodies go together. Another session holds the bodies'
    // rows, so the statement stops half-way, the lock and the messages
    // already removed inside its transaction, the bodies waiting. A is
    // killed there, and its connection is cut, as the database does when
    // it finds a node gone: nothing of it is committed.
    a.launch();
    let mut holder = pg.psql_session().expect("a psql session");
    send_sql(
        &mut holder,
        "BEGIN;\nSELECT id FROM bodies FOR UPDATE;\nSELECT 'held';\n",
    );
    read_until(&mut holder, "held");
    let mut quitter = a.python_spawn(
        "import popclient as p\n\
         r = p.Raw(); r.cmd('USER alice'); r.cmd('PASS alice-pw')\n\
         for n in (1, 2, 3): assert r.cmd('DELE %d' % n).startswith('+OK')\n\
         r.send(b'QUIT\\r\\n'); print('quit', flush=True)",
        &[],
    );
    wait_for_line(&mut quitter, "quit");
    eventually(20, "the UPDATE waiting for the bodies", || {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE 'WITH l AS%'",
        )
        .is_ok_and(|n| n.trim() == "1")
    });
    assert_eq!(alice_messages(&pg), "3", "nothing committed half-way");
    a.kill9();
    stop(quitter);
    pg.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'WITH l AS%' AND pid <> pg_backend_pid()",
    )
    .expect("cut the dead node's connection");
    send_sql(&mut holder, "COMMIT;\n");
    drop(holder.stdin.take());
    assert!(holder.wait().expect("psql").success());
    assert_eq!(alice_messages(&pg), "3", "all or nothing");
    // The dead node's lock is taken over; B serves every byte.
    let after_update = b.python(FETCH_WHEN_FREE, &ALICE);
    assert_eq!(after_update, before);
}

fn send_sql(session: &mut Child, sql: &str) {
    session
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write to psql");
}

/// Reads the session's output until the line `expected`.
fn read_until(session: &mut Child, expected: &str) {
    let mut out = BufReader::new(session.stdout.as_mut().expect("stdout"));
    let mut line = String::new();
    while line.trim() != expected {
        line.clear();
        let read = out.read_line(&mut line).expect("read from psql");
        assert!(read > 0, "psql ended before {expected:?}");
    }
}
