//! Nodes on PostgreSQL killed (kill -9) in the middle of a RETR, of an
//! incoming DATA and of UPDATE (issue 16): nothing is lost, nothing is
//! half-done, and the other node serves the maildrop as it was.

use std::io::{BufRead, BufReader};
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

    // Mid-UPDATE: A is killed as QUIT arrives after three DELEs. The
    // deletions commit together or not at all.
    a.launch();
    let mut quitter = a.python_spawn(
        "import popclient as p\n\
         r = p.Raw(); r.cmd('USER alice'); r.cmd('PASS alice-pw')\n\
         for n in (1, 2, 3): assert r.cmd('DELE %d' % n).startswith('+OK')\n\
         r.send(b'QUIT\\r\\n'); print('quit', flush=True)",
        &[],
    );
    wait_for_line(&mut quitter, "quit");
    a.kill9();
    stop(quitter);
    let left = alice_messages(&pg);
    assert!(left == "0" || left == "3", "all or nothing: {left} left");
    if left == "3" {
        eventually(45, "the maildrop free again", || {
            b.python(FETCH_WHEN_FREE, &ALICE) == before
        });
    }
}
