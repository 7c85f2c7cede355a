//! The PostgreSQL backend (issue 16), against a private cluster made from
//! the machine's own PostgreSQL: `yubin db status` and `yubin db migrate`,
//! a node that refuses a database without the schema it knows, and two
//! nodes sharing users, maildrops, grants and maildrop locks.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use yubin_test_pg::TestPostgres;

use crate::harness::{
    Setup, TestServer, assert_config_refused, expected_wire, hex_list, unhex, yubin,
};

fn config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("yubin.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[server]\nallow_root = true\n[storage]\nbackend = \"postgres\"\n\
             [postgres]\nurl = \"{url}\"\npool_size = 4\n",
            dir.display()
        ),
    )
    .expect("write the configuration");
    path
}

#[test]
fn issue16_db_status_and_migrate_and_a_node_refuses_an_unknown_schema() {
    let pg = TestPostgres::start().expect("a PostgreSQL cluster");
    let dir = tempfile::tempdir().expect("a directory");
    let config = config(dir.path(), &pg.url());
    let path = config.to_str().expect("UTF-8");

    let status = yubin(&["db", "status", "--config", path], "", dir.path());
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(text.contains("schema version: 0"), "{text}");
    assert!(text.contains("pending"), "{text}");

    let migrated = yubin(&["db", "migrate", "--config", path], "", dir.path());
    let text = String::from_utf8_lossy(&migrated.stdout);
    assert!(migrated.status.success(), "{text}");
    assert!(text.contains("applied version 1"), "{text}");
    let again = yubin(&["db", "migrate", "--config", path], "", dir.path());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    let status = yubin(&["db", "status", "--config", path], "", dir.path());
    assert_eq!(status.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&status.stdout).contains("applied"));

    // A schema from a later yubin: the node refuses to start, saying so.
    pg.psql("INSERT INTO yubin_schema (version, name) VALUES (99, 'later')")
        .expect("psql");
    let serve = yubin(&["serve", "--config", path], "", dir.path());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert_eq!(serve.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("newer than this yubin knows"), "{stderr}");
}

#[test]
fn issue16_storage_settings_are_checked() {
    assert_config_refused("[storage]\nbackend = \"postgres\"\n", "postgres.url");
    assert_config_refused("[storage]\nbackend = \"sqlite\"\n", "backend");
    assert_config_refused(
        "[postgres]\nurl = \"postgresql://x@127.0.0.1/y\"\npool_size = 0\n",
        "postgres.pool_size",
    );
    assert_config_refused("[server]\nnode_name = \"a b\"\n", "server.node_name");
}

/// A node on the cluster at `url`, named `name`, with extra tables.
pub(crate) fn node(url: &str, name: &str, tables: &str) -> TestServer {
    node_with(url, name, tables, "")
}

/// [`node`], with settings for its `[pop3]` table.
fn node_with(url: &str, name: &str, tables: &str, pop3: &str) -> TestServer {
    TestServer::with(Setup {
        top: format!(
            "[storage]\nbackend = \"postgres\"\n[postgres]\nurl = \"{url}\"\npool_size = 4\n\
             [server]\nallow_root = true\nnode_name = \"{name}\"\n"
        ),
        tables: tables.into(),
        pop3: pop3.into(),
        ..Setup::default()
    })
}

/// A migrated cluster with the users of a Dovecot passwd-file imported
/// through `yubin user import`, and the administrator's configuration.
pub(crate) fn cluster(extra_users: &str) -> (TestPostgres, tempfile::TempDir) {
    let pg = TestPostgres::start().expect("a PostgreSQL cluster");
    let admin = tempfile::tempdir().expect("a directory");
    let config = config(admin.path(), &pg.url());
    let path = config.to_str().expect("UTF-8");
    let migrated = yubin(&["db", "migrate", "--config", path], "", admin.path());
    assert!(migrated.status.success(), "{migrated:?}");
    let passwd = admin.path().join("dovecot-users");
    std::fs::write(
        &passwd,
        format!(
            "# Dovecot's passwd-file, hashes as doveadm pw made them\n\
             alice:{{PLAIN}}alice-pw::::::userdb_junk=no\n\
             bob:{{SHA512-CRYPT}}$6$gUxx67c9oQ/CKtmm$NJ6jL1fZJFcXEX15LSCxVOqHEaKunNuRq6EsvlZ3nEZYNkutN0VWQE45fa0CILmHMxFG96CbkNwZ2Hib3m/z80\n\
             {extra_users}"
        ),
    )
    .expect("write the passwd-file");
    let imported = yubin(
        &[
            "user",
            "import",
            passwd.to_str().expect("UTF-8"),
            "--config",
            path,
        ],
        "",
        admin.path(),
    );
    assert!(imported.status.success(), "{imported:?}");
    (pg, admin)
}

/// The stored form of the `n`th message (from 0) in arrival order.
fn stored(pg: &TestPostgres, n: usize) -> Vec<u8> {
    let hex = pg
        .psql(&format!(
            "SELECT encode(string_agg(c.data, ''::bytea ORDER BY c.seq), 'hex') FROM body_chunks c \
             WHERE c.body_id = (SELECT body_id FROM messages ORDER BY id OFFSET {n} LIMIT 1)"
        ))
        .expect("psql");
    unhex(hex.trim())
}

#[test]
fn issue16_user_import_keeps_hashes_and_reports_what_it_left_out() {
    let (pg, admin) = cluster("");
    let config = admin.path().join("yubin.toml");
    let path = config.to_str().expect("UTF-8");
    let list = yubin(&["user", "list", "--config", path], "", admin.path());
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(text, "alice\tPLAIN\nbob\tSHA512-CRYPT\n", "{list:?}");
    let hash = pg
        .psql("SELECT password FROM users WHERE name = 'bob'")
        .expect("psql");
    assert!(
        hash.trim()
            .starts_with("{SHA512-CRYPT}$6$gUxx67c9oQ/CKtmm$"),
        "{hash}"
    );
    assert_eq!(
        pg.psql("SELECT extra FROM users WHERE name = 'alice'")
            .expect("psql")
            .trim(),
        "userdb_junk=no"
    );

    // Again, with a new user, one already there, and two lines no server
    // could use: those are named, and the status says so.
    let more = admin.path().join("more");
    std::fs::write(
        &more,
        "alice:{PLAIN}other\ncarol:{PLAIN}carol-pw\ndave:{NO-SUCH-SCHEME}x\nbad name:{PLAIN}x\n",
    )
    .expect("write");
    let again = yubin(
        &[
            "user",
            "import",
            more.to_str().expect("UTF-8"),
            "--config",
            path,
        ],
        "",
        admin.path(),
    );
    let (out, err) = (
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr),
    );
    assert_eq!(again.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("1 added, 0 replaced, 1 kept as they were, 2 not imported"),
        "{out}"
    );
    assert!(err.contains("dave") && err.contains("bad name"), "{err}");
    let replaced = yubin(
        &[
            "user",
            "import",
            more.to_str().expect("UTF-8"),
            "--config",
            path,
            "--replace",
        ],
        "",
        admin.path(),
    );
    let out = String::from_utf8_lossy(&replaced.stdout);
    assert!(out.contains("0 added, 2 replaced"), "{out}");
    assert_eq!(
        pg.psql("SELECT password, extra FROM users WHERE name = 'alice'")
            .expect("psql")
            .trim(),
        "{PLAIN}other|",
        "replaced whole, as the new line has it"
    );

    // Deleting a user whose maildrop holds mail needs --delete-mail.
    pg.psql(
        "WITH b AS (INSERT INTO bodies (size) VALUES (2) RETURNING id) \
         INSERT INTO messages (user_id, uidl, size, wire_size, body_id) \
         SELECT u.id, 'u1', 2, 3, b.id FROM users u, b WHERE u.name = 'carol'",
    )
    .expect("psql");
    let refused = yubin(
        &["user", "del", "carol", "--config", path],
        "",
        admin.path(),
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--delete-mail"));
    let deleted = yubin(
        &["user", "del", "carol", "--delete-mail", "--config", path],
        "",
        admin.path(),
    );
    assert!(deleted.status.success(), "{deleted:?}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM bodies").expect("psql").trim(),
        "0"
    );
}

#[test]
fn issue16_two_nodes_share_users_maildrops_grants_and_locks() {
    let users: String = (0..100).map(|i| format!("u{i}:{{PLAIN}}pw{i}\n")).collect();
    let (pg, admin) = cluster(&users);
    let pbs = "[pop_before_smtp]\nwindow = \"10m\"\n";
    let a = node(&pg.url(), "node-a", pbs);
    let b = node(&pg.socket_conninfo(), "node-b", pbs);

    // Mail arrives on A, raw 8-bit header and a dot line included...
    let sent = a.python(
        "import smtpclient as s\n\
         one = b'From: x@example.net\\r\\nSubject: caf\\xc3\\xa9\\r\\n\\r\\n.dot\\r\\nend\\r\\n'\n\
         two = b'Subject: two\\r\\n\\r\\n' + b'x' * 70 + b'\\r\\n'\n\
         s.emit([s.send_once('x@example.net', ['alice@test.example'], m) for m in (one, two)])",
        &[],
    );
    assert_eq!(sent[0]["error"], serde_json::Value::Null, "{sent}");
    assert_eq!(sent[1]["error"], serde_json::Value::Null, "{sent}");
    // The free-space check looks where a node writes (there is no queue
    // directory on PostgreSQL), without a warning per message.
    let log = a.log();
    assert!(!log.contains("cannot measure free space"), "{log}");

    // ...and is fetched on B, byte for byte as stored; bob logs in with the
    // password behind Dovecot's hash.
    let fetched = b.python(
        "import popclient as p\n\
         c = p.connect(); p.login(c); r = p.fetch_all(c); c.quit()\n\
         d = p.connect(); d.user('bob'); d.pass_('secret'); r['bob'] = d.stat(); d.quit()\n\
         p.emit(r)",
        &[("USER_NAME", "alice"), ("USER_PASS", "alice-pw")],
    );
    assert_eq!(fetched["stat"][0], 2, "{fetched}");
    assert_eq!(fetched["bob"][0], 0, "{fetched}");
    let messages = hex_list(&fetched["messages"]);
    for (n, got) in messages.iter().enumerate() {
        let want = expected_wire(&stored(&pg, n));
        assert!(got == &want, "message {n} differs from what was stored");
        assert_eq!(
            fetched["list"][n][1],
            want.len() as u64,
            "LIST is the wire size"
        );
    }
    assert!(messages[0].windows(6).any(|w| w == b"caf\xc3\xa9\r"));
    assert!(messages[0].windows(8).any(|w| w == b"\r\n.dot\r\n"));
    let uidls_on_a = a.python(
        "import popclient as p\nc = p.connect(); p.login(c)\n\
         p.emit([l.decode().split(' ', 1)[1] for l in c.uidl()[1]]); c.quit()",
        &[("USER_NAME", "alice"), ("USER_PASS", "alice-pw")],
    );
    assert_eq!(uidls_on_a, fetched["uidl"], "the same UIDLs on every node");

    // One session per maildrop across nodes: [IN-USE] on B while A holds
    // it, and B's UPDATE seen on A.
    let port_a = a.pop3.port().to_string();
    let locks = b.python(
        "import os, popclient as p\n\
         held = p.Raw(port=os.environ['PORT_A']); held.login('alice', 'alice-pw')\n\
         other = p.Raw(); other.cmd('USER alice'); busy = other.cmd('PASS alice-pw')\n\
         held.cmd('QUIT')\n\
         c = p.connect(); p.login(c); c.dele(1); c.quit()\n\
         d = p.Raw(port=os.environ['PORT_A']); d.login('alice', 'alice-pw'); stat = d.cmd('STAT'); d.cmd('QUIT')\n\
         p.emit([busy, stat])",
        &[("PORT_A", &port_a), ("USER_NAME", "alice"), ("USER_PASS", "alice-pw")],
    );
    assert!(
        locks[0]
            .as_str()
            .is_some_and(|r| r.starts_with("-ERR [IN-USE]")),
        "{locks}"
    );
    assert!(
        locks[1].as_str().is_some_and(|r| r.starts_with("+OK 1 ")),
        "{locks}"
    );

    // A login on A lets that address relay through B, and no other.
    let relay = b.python(
        "import os, smtpclient as s, popclient as p\n\
         r = p.Raw(port=os.environ['PORT_A'], source=('127.0.0.7', 0)); r.login('alice', 'alice-pw'); r.cmd('QUIT')\n\
         def rcpt(source):\n\
         \x20   c = s.Raw(source=source); c.cmd('EHLO client.example'); c.cmd('MAIL FROM:<alice@test.example>')\n\
         \x20   reply = c.cmd('RCPT TO:<carol@elsewhere.example>'); c.cmd('QUIT'); return reply\n\
         s.emit([rcpt('127.0.0.7'), rcpt('127.0.0.8')])",
        &[("PORT_A", &port_a)],
    );
    assert_eq!(relay[0], "250 2.1.5 Recipient OK", "{relay}");
    assert!(
        relay[1].as_str().is_some_and(|r| r.starts_with("554")),
        "{relay}"
    );
    // Users behind one address logging in within a second, on either
    // node: the address relays as the one who logged in last.
    let last = b.python(
        "import os, smtpclient as s, popclient as p\n\
         for port, user, pw in ((os.environ['PORT_A'], 'alice', 'alice-pw'), (None, 'u1', 'pw1'),\n\
         \x20                      (os.environ['PORT_A'], 'alice', 'alice-pw')):\n\
         \x20   r = p.Raw(port=port, source=('127.0.0.9', 0)); r.login(user, pw); r.cmd('QUIT')\n\
         c = s.Raw(source='127.0.0.9'); c.cmd('EHLO client.example'); sender = c.cmd('MAIL FROM:<alice@test.example>')\n\
         reply = c.cmd('RCPT TO:<carol@elsewhere.example>'); c.cmd('QUIT')\n\
         s.emit([sender, reply])",
        &[("PORT_A", &port_a)],
    );
    assert_eq!(last[1], "250 2.1.5 Recipient OK", "{last}");

    // A hundred sessions at once on a node with four connections: none
    // holds one while it waits for its client (were it to keep one, the
    // fifth login would wait for it in vain). The database sees at most
    // the node's four, named after it in pg_stat_activity.
    let dir = tempfile::tempdir().expect("a directory");
    let go = dir.path().join("go");
    let mut many = a.python_spawn(
        "import popclient as p, json, os, time\n\
         sessions = [p.Raw() for _ in range(100)]\n\
         replies = [r.login('u%d' % i, 'pw%d' % i) for i, r in enumerate(sessions)]\n\
         stats = [r.cmd('STAT') for r in sessions]\n\
         print('held', flush=True)\n\
         while not os.path.exists(os.environ['GO']): time.sleep(0.1)\n\
         [r.cmd('QUIT') for r in sessions]\n\
         print(json.dumps(stats), flush=True)",
        &[("GO", go.to_str().expect("UTF-8"))],
    );
    let mut said = BufReader::new(many.stdout.take().expect("stdout"));
    let mut line = String::new();
    said.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "held");
    let connections = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'yubin node-a'")
        .expect("psql");
    std::fs::write(&go, b"").expect("the word");
    line.clear();
    said.read_line(&mut line).expect("read");
    let _ = many.wait();
    let stats: serde_json::Value = serde_json::from_str(&line).expect("the STATs");
    let stats = stats.as_array().expect("a list");
    assert_eq!(stats.len(), 100);
    assert!(stats.iter().all(|s| s == "+OK 0 0"), "{line}");
    let connections: usize = connections.trim().parse().expect("a count");
    assert!(
        (1..=4).contains(&connections),
        "node-a has {connections} connections for 100 sessions"
    );

    // A user added on the command line logs in on both nodes without a
    // restart.
    let config = admin.path().join("yubin.toml");
    let added = yubin(
        &[
            "user",
            "add",
            "erin",
            "--password-stdin",
            "--scheme",
            "PLAIN",
            "--config",
            config.to_str().expect("UTF-8"),
        ],
        "erin-pw\n",
        admin.path(),
    );
    assert!(added.status.success(), "{added:?}");
    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = server.python(
                "import popclient as p\nr = p.Raw(); r.cmd('USER erin'); p.emit(r.cmd('PASS erin-pw'))",
                &[],
            );
            if reply.as_str().is_some_and(|r| r.starts_with("+OK")) {
                break;
            }
            assert!(Instant::now() < deadline, "erin never logged in: {reply}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let log = a.log();
    assert!(
        log.contains("users read from the database") && log.contains("node-a"),
        "{log}"
    );
}

#[test]
fn issue16_a_dead_nodes_maildrop_lock_lapses_and_the_next_login_succeeds() {
    let (pg, _admin) = cluster("");
    let mut a = node(&pg.url(), "node-a", "");
    let b = node(&pg.url(), "node-b", "");
    // A session on A holds alice's maildrop...
    let mut holder = a.python_spawn(
        "import popclient as p, time\n\
         r = p.Raw(); r.login('alice', 'alice-pw'); print('in', flush=True); time.sleep(120)",
        &[],
    );
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "in");
    // ...when A dies without a word.
    a.kill9();
    let killed = Instant::now();
    assert_taken_over_within_30_s(&b, killed);
    let _ = holder.kill();
    let _ = holder.wait();
}

/// Logs in to alice's maildrop on `node` every half second until it gets
/// in: held by another node's session at first, it must be free less than
/// 30 s after `since`, when that node died or was cut off.
fn assert_taken_over_within_30_s(node: &TestServer, since: Instant) {
    let tries = node.python(
        "import popclient as p, time\n\
         replies = []\n\
         start = time.monotonic()\n\
         while time.monotonic() - start < 45:\n\
         \x20   r = p.Raw(); r.cmd('USER alice'); reply = r.cmd('PASS alice-pw'); r.cmd('QUIT')\n\
         \x20   replies.append(reply)\n\
         \x20   if reply.startswith('+OK'): break\n\
         \x20   time.sleep(0.5)\n\
         p.emit(replies)",
        &[],
    );
    let waited = since.elapsed();
    let replies = tries.as_array().expect("a list");
    assert!(
        replies[0]
            .as_str()
            .is_some_and(|r| r.starts_with("-ERR [IN-USE]")),
        "held at first: {tries}"
    );
    assert!(
        replies
            .last()
            .and_then(|r| r.as_str())
            .is_some_and(|r| r.starts_with("+OK")),
        "{tries}"
    );
    assert!(
        waited < Duration::from_secs(30),
        "taken over after {waited:?}"
    );
}

/// LOGIN-DELAY (RFC 2449 §6.5) holds across nodes: a client behind a
/// load balancer that logs in again too soon is refused whichever node it
/// reaches, and let in once the delay has passed.
#[test]
fn issue16_login_delay_counts_logins_on_every_node() {
    let (pg, _admin) = cluster("");
    let a = node_with(&pg.url(), "node-a", "", "login_delay = \"3s\"\n");
    let b = node_with(&pg.url(), "node-b", "", "login_delay = \"3s\"\n");
    let port_b = b.pop3.port().to_string();
    let result = a.python(
        "import os, popclient as p, time\n\
         def login(port=None):\n\
         \x20   r = p.Raw(port=port); r.cmd('USER alice'); reply = r.cmd('PASS alice-pw'); r.cmd('QUIT')\n\
         \x20   return reply\n\
         first = login()\n\
         other = login(os.environ['PORT_B'])\n\
         same = login()\n\
         time.sleep(3.5)\n\
         later = login(os.environ['PORT_B'])\n\
         p.emit([first, other, same, later])",
        &[("PORT_B", &port_b)],
    );
    let reply = |i: usize| result[i].as_str().unwrap_or_default().to_owned();
    assert!(reply(0).starts_with("+OK"), "{result}");
    assert!(reply(1).starts_with("-ERR [LOGIN-DELAY]"), "on B: {result}");
    assert!(reply(2).starts_with("-ERR [LOGIN-DELAY]"), "on A: {result}");
    assert!(reply(3).starts_with("+OK"), "after the delay: {result}");
}

/// A node cut off from the database (a cut cable: silence, not a
/// refusal) cannot renew its locks: its maildrop lock lapses, and a login
/// on another node gets in within 30 s. The session still open on the
/// cut-off node cannot delete anything once the line is mended (its lock
/// is gone), and that node serves again by itself.
#[test]
fn issue16_a_node_cut_off_from_the_database_loses_its_locks_and_nothing_else() {
    let (pg, _admin) = cluster("");
    let (mut line, port) = crate::harness::python_server(
        "cutter.py",
        &["127.0.0.1".as_ref(), pg.port().to_string().as_ref()],
    );
    let a = node(
        &format!("postgresql://yubin@127.0.0.1:{port}/yubin"),
        "node-a",
        "",
    );
    let b = node(&pg.url(), "node-b", "");
    let sent = b.python(
        "import smtpclient as s\n\
         s.emit([s.send_once('x@example.net', ['alice@test.example'], b'Subject: %d\\r\\n\\r\\nbody\\r\\n' % n) \
         for n in (1, 2)])",
        &[],
    );
    assert!(
        sent.as_array()
            .is_some_and(|all| all.iter().all(|r| r["error"].is_null())),
        "{sent}"
    );
    // A session on A holds alice's maildrop and waits for the word to
    // delete a message and quit.
    let dir = tempfile::tempdir().expect("a directory");
    let go = dir.path().join("go");
    let mut holder = a.python_spawn(
        "import popclient as p, os, time\n\
         r = p.Raw(); r.login('alice', 'alice-pw'); print('in', flush=True)\n\
         while not os.path.exists(os.environ['GO']): time.sleep(0.1)\n\
         print(r.cmd('DELE 1'), flush=True); print(r.cmd('QUIT'), flush=True)",
        &[("GO", go.to_str().expect("UTF-8"))],
    );
    let mut said = BufReader::new(holder.stdout.take().expect("stdout"));
    let mut next_line = || {
        let mut text = String::new();
        said.read_line(&mut text).expect("read");
        text.trim().to_owned()
    };
    assert_eq!(next_line(), "in");

    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &line.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {name}");
    };
    signal("-USR1");
    let cut = Instant::now();
    assert_taken_over_within_30_s(&b, cut);

    // The line is mended; the old session's deletion finds its lock gone.
    signal("-USR2");
    std::fs::write(&go, b"").expect("the word");
    assert!(next_line().starts_with("+OK"), "DELE is only a mark");
    let quit = next_line();
    assert!(
        quit.starts_with("-ERR [SYS/TEMP]") && quit.contains("not removed"),
        "{quit}"
    );
    let _ = holder.wait();
    let kept = pg.psql("SELECT count(*) FROM messages").expect("psql");
    assert_eq!(kept.trim(), "2", "nothing deleted");
    // Node A serves again by itself, both messages.
    crate::outbound::eventually(30, "node A serving again", || {
        let again = a.python(
            "import popclient as p\n\
             r = p.Raw(); r.cmd('USER alice'); reply = r.cmd('PASS alice-pw'); stat = r.cmd('STAT')\n\
             r.cmd('QUIT'); p.emit([reply, stat])",
            &[],
        );
        again[0].as_str().is_some_and(|r| r.starts_with("+OK"))
            && again[1].as_str().is_some_and(|r| r.starts_with("+OK 2 "))
    });
    let _ = line.kill();
    let _ = line.wait();
}

#[test]
fn issue16_a_database_down_at_start_is_named_and_retried_until_it_answers() {
    let (pg, _admin) = cluster("");
    let url = pg.url();
    pg.stop().expect("the database stopped");
    // It comes back while the node is trying (after 1 s, then 2 s more).
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(4));
        pg.start_server().expect("the database started again");
        pg
    });
    let started = Instant::now();
    let a = node(&url, "node-a", "");
    let waited = started.elapsed();
    let _pg = back.join().expect("joined");
    assert!(
        waited >= Duration::from_secs(4),
        "listening after {waited:?}, before the database was back"
    );
    let log = a.log();
    let refusals = log
        .lines()
        .filter(|l| l.contains("the database cannot be reached"))
        .collect::<Vec<_>>();
    assert!(refusals.len() >= 2, "tried more than once:\n{log}");
    assert!(
        refusals
            .iter()
            .all(|l| l.contains("Connection refused") && l.contains("retry_in")),
        "each says why, and when it tries again:\n{log}"
    );
    // And it serves.
    let reply = a.python(
        "import popclient as p\n\
         r = p.Raw(); r.cmd('USER alice'); reply = r.cmd('PASS alice-pw'); r.cmd('QUIT')\n\
         p.emit(reply)",
        &[],
    );
    assert!(
        reply.as_str().is_some_and(|r| r.starts_with("+OK")),
        "{reply}"
    );
}

/// The administrator's configuration for `yubin migrate`: the Maildir
/// side is the data directory `dir` (passwd-file `dir/users`, Maildirs in
/// `dir/mail`), the database side `url`.
fn migrate_config(dir: &std::path::Path, admin: &std::path::Path, url: &str) -> String {
    let path = admin.join(format!(
        "migrate-{}.toml",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[server]\nallow_root = true\n[postgres]\nurl = \"{url}\"\n",
            dir.display()
        ),
    )
    .expect("write the configuration");
    path.to_str().expect("UTF-8").to_owned()
}

/// Mail for `b.test` goes to a port where nothing listens: it waits.
const DEAD_ROUTE: &str = "[queue]\nroutes = { \"b.test\" = \"127.0.0.1:1\" }\nfirst_retry = \"1s\"\nmax_retry = \"1s\"\n";

const FETCH_KEEP: &str = "import popclient as p\n\
     c = p.connect(); p.login(c); r = p.fetch_all(c); c.quit(); p.emit(r)";

#[test]
fn issue16_migrate_maildir_to_postgres_and_back_keeps_every_uidl_and_byte() {
    // A single node on Maildir, with mail from a program, from SMTP, and
    // one message already retrieved and left on the server; and a relayed
    // message waiting in its queue for a destination that refuses.
    let mut maildir_node = TestServer::with(Setup {
        tables: DEAD_ROUTE.into(),
        ..Setup::default()
    });
    maildir_node.put_message("alice", "1700000000.M1P1.old", b"Subject: first\n\nold\n");
    maildir_node.put_message("alice", "odd name with spaces", b"Subject: odd\n\nname\n");
    maildir_node.python(
        "import smtpclient as s\n\
         s.emit([s.send_once('x@example.net', ['alice@test.example'], b'Subject: n%d\\r\\n\\r\\n' % i + b'y' * (300000 * i) + b'\\r\\n') for i in range(1, 4)])",
        &[],
    );
    let login = [("USER_NAME", "alice"), ("USER_PASS", "alice-pw")];
    let before = maildir_node.python(FETCH_KEEP, &login);
    assert_eq!(before["stat"][0], 5, "{before}");
    let relayed = crate::outbound::send_via(
        &maildir_node,
        &["bob@b.test"],
        b"Subject: waiting\r\n\r\nin the queue\r\n",
    );
    assert_eq!(relayed["error"], serde_json::Value::Null, "{relayed}");
    let waiting = maildir_node.queued();
    assert_eq!(waiting.len(), 1);
    let state = maildir_node
        .dir
        .path()
        .join("queue/state")
        .join(&waiting[0]);
    crate::outbound::eventually(20, "a refused attempt on record", || {
        std::fs::read_to_string(&state).is_ok_and(|s| s.contains("attempts "))
    });
    maildir_node.stop();

    let (pg, admin) = cluster("");
    let config = migrate_config(maildir_node.dir.path(), admin.path(), &pg.url());
    let run = |args: &[&str]| {
        let mut all = vec!["migrate"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &config]);
        let out = yubin(&all, "", admin.path());
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&["--from", "maildir", "--to", "postgres", "--verify"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("5 messages copied"), "{text}");
    assert!(text.contains("verified"), "{text}");
    // The queue moved too, with its delivery record.
    assert!(text.contains("1 queued messages moved"), "{text}");
    assert!(maildir_node.queued().is_empty(), "moved, not copied");
    let moved = pg
        .psql("SELECT id || ' ' || sender || ' ' || array_to_string(recipients, ',') || ' ' || (attempts > 0) FROM queue")
        .expect("psql");
    assert_eq!(
        moved.trim(),
        format!("{} alice@test.example bob@b.test true", waiting[0])
    );

    // Cut short after the third message: running it again copies the rest.
    pg.psql("DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id DESC LIMIT 2)")
        .expect("psql");
    let (code, text) = run(&["--from", "maildir", "--to", "postgres", "--verify"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("2 messages copied") && text.contains("3 already there"),
        "{text}"
    );

    // --verify says what differs, and fails: a size changed by hand.
    let first = "(SELECT min(id) FROM messages)";
    pg.psql(&format!(
        "UPDATE messages SET wire_size = wire_size + 1 WHERE id = {first}"
    ))
    .expect("psql");
    let (code, text) = run(&["--from", "maildir", "--to", "postgres", "--verify"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("differs: ") && text.contains("octets in the Maildir"),
        "{text}"
    );
    pg.psql(&format!(
        "UPDATE messages SET wire_size = wire_size - 1 WHERE id = {first}"
    ))
    .expect("psql");

    // A node on the database lists and sends exactly what the Maildir did.
    let pg_node = node(&pg.url(), "a", DEAD_ROUTE);
    let after = pg_node.python(FETCH_KEEP, &login);
    assert_eq!(
        after["uidl"], before["uidl"],
        "the same UIDLs: nothing is fetched twice"
    );
    assert_eq!(after["list"], before["list"]);
    assert_eq!(after["messages"], before["messages"]);

    // ...and back, into a fresh data directory, after a DELE on the node.
    pg_node.python(
        "import popclient as p\nc = p.connect(); p.login(c); c.dele(2); c.quit()",
        &login,
    );
    let pg_listing = pg_node.python(FETCH_KEEP, &login);
    // Stopped, as the migration asks: a running engine may hold the entry.
    drop(pg_node);
    let fresh = tempfile::tempdir().expect("a directory");
    let back = migrate_config(fresh.path(), admin.path(), &pg.url());
    let out = yubin(
        &[
            "migrate", "--from", "postgres", "--to", "maildir", "--verify", "--config", &back,
        ],
        "",
        admin.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("4 messages copied") && text.contains("verified"),
        "{text}"
    );
    assert!(text.contains("1 queued messages moved"), "{text}");
    let entry = std::fs::read_to_string(fresh.path().join("queue/active").join(&waiting[0]))
        .expect("the queue entry, back in a directory");
    assert!(
        entry.contains("from <alice@test.example>\nrcpt <bob@b.test>\n")
            && entry.ends_with("Subject: waiting\n\nin the queue\n"),
        "{entry}"
    );
    let state = std::fs::read_to_string(fresh.path().join("queue/state").join(&waiting[0]))
        .expect("its record");
    assert!(state.contains("error "), "{state}");
    let passwd = std::fs::read_to_string(fresh.path().join("users")).expect("a passwd-file");
    assert!(
        passwd.contains("bob:{SHA512-CRYPT}$6$gUxx67c9oQ/CKtmm$"),
        "{passwd}"
    );
    let seen = std::fs::read_dir(fresh.path().join("mail/alice/cur"))
        .expect("cur/")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(":2,S"))
        .count();
    assert_eq!(seen, 4, "retrieved and kept: seen, as on the server");
    // A Maildir node on what came back.
    let mut returned = TestServer::start();
    returned.stop();
    let returned_dir = returned.dir.path().to_owned();
    std::fs::remove_dir_all(returned_dir.join("mail")).ok();
    copy_tree(&fresh.path().join("mail"), &returned_dir.join("mail"));
    returned.launch();
    let again = returned.python(FETCH_KEEP, &login);
    assert_eq!(again["uidl"], pg_listing["uidl"]);
    assert_eq!(again["messages"], pg_listing["messages"]);
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn issue16_a_database_restart_under_smtp_load_loses_and_doubles_nothing() {
    let (pg, _admin) = cluster("");
    let a = node(&pg.url(), "a", "");
    // Four senders, a new connection per message, numbered; each prints
    // the reply it got to its end of DATA.
    let load = a.python_spawn(
        "import smtplib, os, json, time, threading\n\
         results = []\n\
         stop = time.monotonic() + 9\n\
         def sender(k):\n\
         \x20   n = 0\n\
         \x20   while time.monotonic() < stop:\n\
         \x20       n += 1\n\
         \x20       tag = '%d-%d' % (k, n)\n\
         \x20       try:\n\
         \x20           c = smtplib.SMTP('127.0.0.1', int(os.environ['SMTP_PORT']), timeout=30)\n\
         \x20           try:\n\
         \x20               c.sendmail('x@example.net', ['alice@test.example'], 'Subject: %s\\r\\n\\r\\nload\\r\\n' % tag)\n\
         \x20               results.append([tag, 250])\n\
         \x20           except smtplib.SMTPResponseException as e:\n\
         \x20               results.append([tag, e.smtp_code])\n\
         \x20           c.quit()\n\
         \x20       except Exception as e:\n\
         \x20           results.append([tag, str(e)])\n\
         \x20       time.sleep(0.02)\n\
         threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]\n\
         [t.start() for t in threads]\n\
         [t.join() for t in threads]\n\
         print(json.dumps(results))",
        &[],
    );
    std::thread::sleep(Duration::from_secs(2));
    pg.stop().expect("the database stops");
    // While it is down: POP3 answers [SYS/TEMP], not a wrong password.
    std::thread::sleep(Duration::from_millis(500));
    let down = a.python(
        "import popclient as p\nr = p.Raw(); r.cmd('USER alice'); p.emit(r.cmd('PASS alice-pw'))",
        &[],
    );
    assert!(
        down.as_str()
            .is_some_and(|r| r.starts_with("-ERR [SYS/TEMP]")),
        "{down}"
    );
    std::thread::sleep(Duration::from_secs(2));
    pg.start_server().expect("the database starts again");

    let output = load.wait_with_output().expect("the senders finish");
    let text = String::from_utf8_lossy(&output.stdout);
    let results: Vec<(String, serde_json::Value)> =
        serde_json::from_str(text.lines().last().unwrap_or("[]")).expect("JSON");
    let accepted: Vec<&str> = results
        .iter()
        .filter(|(_, code)| code == 250)
        .map(|(tag, _)| tag.as_str())
        .collect();
    let deferred = results.iter().filter(|(_, code)| code == 451).count();
    assert!(deferred > 0, "the outage was seen as 451: {text}");
    assert!(
        results.iter().all(|(_, code)| code == 250 || code == 451),
        "every message got 250 or 451 4.3.0: {text}"
    );
    // yubin came back by itself: mail was accepted after the restart.
    let last_refused = results
        .iter()
        .rposition(|(_, code)| code == 451)
        .unwrap_or(0);
    assert!(
        results[last_refused..].iter().any(|(_, code)| code == 250),
        "accepted again after the restart: {text}"
    );

    // Every 250 the senders saw is in the maildrop exactly once.
    let subjects = pg
        .psql(
            "SELECT convert_from(substring(string_agg(c.data, ''::bytea ORDER BY c.seq) from 1 for 4000), 'UTF8') \
             FROM messages m JOIN body_chunks c ON c.body_id = m.body_id GROUP BY m.id",
        )
        .expect("psql");
    let mut stored: Vec<String> = subjects
        .split("Subject: ")
        .skip(1)
        .filter_map(|rest| rest.split(['\r', '\n']).next().map(str::to_owned))
        .collect();
    stored.sort();
    let mut unique = stored.clone();
    unique.dedup();
    for tag in &accepted {
        let copies = stored.iter().filter(|s| s.as_str() == *tag).count();
        assert_eq!(copies, 1, "{tag}: accepted with 250, stored {copies} times");
    }
    assert_eq!(unique.len(), stored.len(), "nothing stored twice");
    // POP3 serves again.
    let up = a.python(
        "import popclient as p\nr = p.Raw(); r.login('alice', 'alice-pw'); p.emit(r.cmd('STAT'))",
        &[],
    );
    assert_eq!(
        up.as_str().and_then(|r| r.split(' ').nth(1)),
        Some(stored.len().to_string().as_str()),
        "{up}"
    );
}

/// The README's "Several nodes" commands, as a newcomer types them (the
/// shell block of that section, on its default ports), except the release
/// build, which the test binary stands in for (the variable YUBIN), and
/// the directory, a temporary one instead of /tmp/yubin-cluster. Only when
/// a default port is taken (someone runs that cluster already) do the
/// commands get other ones, through the script's variables.
#[test]
fn issue16_the_readmes_two_node_cluster_starts_and_serves_one_maildrop() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Several nodes\n")
        .nth(1)
        .expect("the README's Several nodes section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a shell block in that section");
    assert!(block.contains("cargo build --release\n"), "{block}");
    let dir = tempfile::tempdir().expect("a directory");
    let cluster = dir.path().join("cluster");
    let cluster = cluster.to_str().expect("UTF-8");
    let mut commands = block
        .replace("cargo build --release\n", "")
        .replace("/tmp/yubin-cluster", cluster);
    let mut ports = vec![("YUBIN", crate::harness::BIN.to_owned())];
    if !free_base(11000) || !free_base(12000) || !free(5544) {
        let pg = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port")
            .port();
        let a = (13000..60000)
            .step_by(1000)
            .find(|&b| free_base(b))
            .expect("ports");
        let b = (a + 1000..60000)
            .step_by(1000)
            .find(|&b| free_base(b))
            .expect("ports");
        commands = commands
            .replace("127.0.0.1:11025", &format!("127.0.0.1:{}", a + 25))
            .replace("127.0.0.1:12110", &format!("127.0.0.1:{}", b + 110));
        ports.extend([
            ("PG_PORT", pg.to_string()),
            ("A_BASE", a.to_string()),
            ("B_BASE", b.to_string()),
        ]);
    }
    let ran = std::process::Command::new("sh")
        .args(["-ec", &commands])
        .current_dir(root)
        .envs(ports.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("sh");
    // Stopped whatever happened (a second stop does no harm).
    let _ = std::process::Command::new("sh")
        .arg(root.join("contrib/two-nodes.sh"))
        .args([cluster, "stop"])
        .envs(ports.iter().map(|(k, v)| (*k, v.as_str())))
        .output();
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{ran:?}");
    // What curl fetched from node b is what curl sent to node a.
    assert!(out.contains("Subject: hi\r\n\r\nFrom node a.\r\n"), "{out}");
}

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Whether a node's five ports (base + 110, 995, 25, 587, 465) are free.
fn free_base(base: u16) -> bool {
    [110, 995, 25, 587, 465].iter().all(|o| free(base + o))
}
