//! Every mode against yubin's own POP3 server: delete, keep, keep_days
//! (time moved in the ledger), max_size, limit, dry run, destinations,
//! TLS modes, each login method, and migration with --to.

use std::fs;

use super::{Client, awkward_messages, put_all, report};
use crate::harness::{Setup, TestServer, expected_wire};

/// What the client must have for a stored message: the wire form (CRLF,
/// a final line end added) back in the stored form (LF).
fn as_delivered(stored: &[u8]) -> Vec<u8> {
    let wire = expected_wire(stored);
    let mut out = Vec::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        if wire[i] == b'\r' && wire.get(i + 1) == Some(&b'\n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(wire[i]);
            i += 1;
        }
    }
    out
}

/// `args` without these flags and their values.
fn without(args: &[String], flags: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
        } else if flags.contains(&arg.as_str()) {
            skip = true;
        } else {
            out.push(arg.clone());
        }
    }
    out
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn delete_moves_every_byte_off_the_server_and_a_second_run_finds_nothing() {
    let server = TestServer::start();
    let messages = awkward_messages();
    put_all(&server, &messages);
    let client = Client::new();
    let args = client.args(&server);

    let first = report(&client.run(&args, &[]), 0);
    assert_eq!(first["fetched"], 3);
    assert_eq!(first["deleted"], 3);
    assert_eq!(first["on_server"], 3);
    assert!(
        server.messages("alice").is_empty(),
        "the server still has mail"
    );
    let expected = sorted(messages.iter().map(|m| as_delivered(m)).collect());
    assert_eq!(client.delivered(), expected);

    let second = report(&client.run(&args, &[]), 0);
    assert_eq!(second["fetched"], 0);
    assert_eq!(second["on_server"], 0);
    assert_eq!(client.delivered().len(), 3);
}

#[test]
fn keep_leaves_mail_and_fetches_only_what_is_new() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let args = client.args(&server);

    let first = report(&client.run(&args, &["--keep"]), 0);
    assert_eq!(
        (first["fetched"].as_u64(), first["deleted"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(server.messages("alice").len(), 3);
    let second = report(&client.run(&args, &["--keep"]), 0);
    assert_eq!(second["fetched"], 0);

    server.put_message("alice", "2000.M1P1.test", b"Subject: four\n\nnew one\n");
    let third = report(&client.run(&args, &["--keep"]), 0);
    assert_eq!(third["fetched"], 1);
    assert_eq!(client.delivered().len(), 4);
    assert_eq!(server.messages("alice").len(), 4);
}

#[test]
fn keep_days_deletes_only_after_the_days_have_passed() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let args = client.args(&server);

    let first = report(&client.run(&args, &["--keep-days", "3"]), 0);
    assert_eq!(
        (first["fetched"].as_u64(), first["deleted"].as_u64()),
        (Some(3), Some(0))
    );
    let again = report(&client.run(&args, &["--keep-days", "3"]), 0);
    assert_eq!(
        (again["fetched"].as_u64(), again["deleted"].as_u64()),
        (Some(0), Some(0))
    );

    // Move time: the ledger says the first message was fetched 4 days
    // ago, the second 2 days ago.
    let ledger_path = fs::read_dir(client.state())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ledger"))
        .expect("a ledger file");
    let text = fs::read_to_string(&ledger_path).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut moved = String::new();
    let mut entry = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            moved.push_str(line);
        } else {
            let (_, kind_and_key) = line.split_once(' ').unwrap();
            let age = [4 * 86_400, 2 * 86_400, 0][entry];
            moved.push_str(&format!("{} {kind_and_key}", now - age));
            entry += 1;
        }
        moved.push('\n');
    }
    assert_eq!(entry, 3, "{text}");
    fs::write(&ledger_path, moved).unwrap();

    let later = report(&client.run(&args, &["--keep-days", "3"]), 0);
    assert_eq!(
        (later["fetched"].as_u64(), later["deleted"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(server.messages("alice").len(), 2);
    assert_eq!(client.delivered().len(), 3);
}

#[test]
fn max_size_skips_or_delivers_headers_and_never_deletes_them() {
    let server = TestServer::start();
    let mut big = b"From: big@example.org\nSubject: big\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'y', 20_000));
    big.push(b'\n');
    put_all(
        &server,
        &[b"Subject: small\n\nsmall\n".to_vec(), big.clone()],
    );
    let client = Client::new();
    let args = client.args(&server);

    let skip = report(&client.run(&args, &["--max-size", "10K"]), 0);
    assert_eq!(skip["fetched"], 1);
    assert_eq!(skip["skipped_oversize"], 1);
    assert_eq!(server.messages("alice"), vec![big.clone()]);

    let headers = report(
        &client.run(&args, &["--max-size", "10K", "--oversize", "headers"]),
        0,
    );
    assert_eq!(headers["truncated"], 1);
    assert_eq!(headers["deleted"], 0);
    assert_eq!(server.messages("alice"), vec![big.clone()]);
    let delivered = client.delivered();
    let stub = delivered
        .iter()
        .find(|m| m.starts_with(b"X-Yubin-Fetch-Truncated:"))
        .expect("a headers-only delivery");
    let text = String::from_utf8_lossy(stub);
    assert!(
        text.contains("Subject: big\n") && !text.contains("yyyy"),
        "{text}"
    );

    // Known now: a later run neither delivers it again nor deletes it.
    let later = report(
        &client.run(&args, &["--max-size", "10K", "--oversize", "headers"]),
        0,
    );
    assert_eq!(
        (later["truncated"].as_u64(), later["deleted"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(server.messages("alice").len(), 1);
}

#[test]
fn limit_and_dry_run() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let args = client.args(&server);

    let dry = report(&client.run(&args, &["--dry-run"]), 0);
    assert_eq!(dry["fetched"], 3);
    assert!(client.delivered().is_empty());
    assert_eq!(server.messages("alice").len(), 3);

    let limited = report(&client.run(&args, &["--limit", "2"]), 0);
    assert_eq!(
        (limited["fetched"].as_u64(), limited["deferred"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(server.messages("alice").len(), 1);
    let rest = report(&client.run(&args, &["--limit", "2"]), 0);
    assert_eq!(rest["fetched"], 1);
    assert!(server.messages("alice").is_empty());
}

#[test]
fn mbox_and_mda_destinations() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let mbox = client.dir.path().join("inbox.mbox");
    let args = without(&client.args(&server), &["--maildir", "--state-dir"]);
    let state1 = client.dir.path().join("state1").display().to_string();
    let out = report(
        &client.run(
            &args,
            &[
                "--keep",
                "--mbox",
                &mbox.display().to_string(),
                "--state-dir",
                &state1,
            ],
        ),
        0,
    );
    assert_eq!(out["fetched"], 3);
    let text = String::from_utf8_lossy(&fs::read(&mbox).unwrap()).into_owned();
    assert_eq!(
        text.matches("\nFrom MAILER-DAEMON ").count() + usize::from(text.starts_with("From ")),
        3
    );
    assert!(
        text.contains("\n>From the start\n"),
        "mboxrd quoting: {text}"
    );

    // A second account (another state dir) through an MDA.
    let spool = client.dir.path().join("mda-out");
    fs::create_dir(&spool).unwrap();
    let mda = format!("cat > \"{}/$(date +%s%N)\"", spool.display());
    let state2 = client.dir.path().join("state2").display().to_string();
    let out = report(
        &client.run(&args, &["--keep", "--mda", &mda, "--state-dir", &state2]),
        0,
    );
    assert_eq!(out["fetched"], 3);
    assert_eq!(fs::read_dir(&spool).unwrap().count(), 3);

    // An MDA that fails: nothing recorded, nothing deleted, exit 75.
    let state3 = client.dir.path().join("state3").display().to_string();
    let failed = client.run(
        &args,
        &["--mda", "cat >/dev/null; exit 75", "--state-dir", &state3],
    );
    let failed = report(&failed, 75);
    assert_eq!(failed["ok"], false);
    assert_eq!(server.messages("alice").len(), 3);
}

#[test]
fn every_login_method_against_yubin() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    for method in [
        "user",
        "apop",
        "plain",
        "login",
        "cram-md5",
        "scram-sha-1",
        "scram-sha-256",
        "auto",
    ] {
        let client = Client::new();
        let out = report(
            &client.run(&client.args(&server), &["--keep", "--auth", method]),
            0,
        );
        assert_eq!(out["fetched"], 3, "{method}");
    }
    let client = Client::new();
    fs::write(client.dir.path().join("password"), "wrong\n").unwrap();
    let refused = report(&client.run(&client.args(&server), &["--keep"]), 77);
    assert!(
        refused["error"].as_str().unwrap().contains("login refused"),
        "{refused}"
    );
}

#[test]
fn tls_modes_and_certificate_checks() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let args = client.args(&server);
    let without_pin = |args: &[String]| -> Vec<String> {
        let at = args.iter().position(|a| a == "--fingerprint").unwrap();
        let mut a = args.to_vec();
        a.drain(at..at + 2);
        a
    };

    // Self-signed and not pinned: refused, and the error shows the pin.
    let refused = report(&client.run(&without_pin(&args), &["--keep"]), 69);
    let error = refused["error"].as_str().unwrap().to_owned();
    let pin = super::fingerprint(&server.dir.path().join("tls/cert.pem")).to_uppercase();
    assert!(error.replace(':', "").contains(&pin), "{error}");

    // A wrong pin is refused too.
    let mut wrong = args.clone();
    let at = wrong.iter().position(|a| a == "--fingerprint").unwrap();
    wrong[at + 1] = "00".repeat(32);
    report(&client.run(&wrong, &["--keep"]), 69);

    // STLS on the plain port, pinned.
    let mut stls = args.clone();
    let at = stls.iter().position(|a| a == "--port").unwrap();
    stls[at + 1] = server.pop3.port().to_string();
    let out = report(&client.run(&stls, &["--keep", "--tls", "stls"]), 0);
    assert_eq!(out["fetched"], 3);

    // No TLS needs the explicit flag (a usage error, status 2, naming it).
    let plain = client.run(&stls, &["--keep", "--tls", "none"]);
    assert_eq!(plain.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("--allow-plaintext"));
}

#[test]
fn migration_to_a_local_user_keeps_every_message_on_the_old_server() {
    let old = TestServer::start();
    let messages = awkward_messages();
    put_all(&old, &messages);
    let new = TestServer::with(Setup {
        users: vec![("carol".into(), "{PLAIN}carol-pw".into())],
        ..Setup::default()
    });
    let client = Client::new();
    let args = without(&client.args(&old), &["--maildir"]);
    let config = new.config_path().display().to_string();
    let out = report(
        &client.run(
            &args,
            &["--keep", "--to", "carol", "--yubin-config", &config],
        ),
        0,
    );
    assert_eq!(out["fetched"], 3);
    assert_eq!(old.messages("alice").len(), 3);
    let moved = sorted(new.messages("carol"));
    assert_eq!(
        moved,
        sorted(messages.iter().map(|m| as_delivered(m)).collect())
    );

    let unknown = client.run(
        &args,
        &["--keep", "--to", "nobody", "--yubin-config", &config],
    );
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn smtp_destination_hands_mail_to_another_server() {
    let old = TestServer::start();
    let messages = awkward_messages();
    put_all(&old, &messages);
    // The receiving server has this machine's name, as the local MTA
    // would: that is not a mail loop.
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let mx = TestServer::with(Setup {
        users: vec![("carol".into(), "{PLAIN}carol-pw".into())],
        hostname: hostname.clone(),
        ..Setup::default()
    });
    let carol = format!("carol@{hostname}");
    let nobody = format!("nobody@{hostname}");
    let client = Client::new();
    let args = without(&client.args(&old), &["--maildir"]);
    let smtp = format!("127.0.0.1:{}", mx.smtp.port());

    // An unknown recipient is a permanent refusal: every message is tried,
    // none is recorded or deleted, and the exit status is 74.
    let refused = report(
        &client.run(&args, &["--smtp", &smtp, "--recipient", &nobody]),
        74,
    );
    assert_eq!(refused["refused_deliveries"], 3, "{refused}");
    assert!(
        refused["warnings"][0].as_str().unwrap().contains("550"),
        "{refused}"
    );
    assert_eq!(old.messages("alice").len(), 3);

    let out = report(
        &client.run(&args, &["--smtp", &smtp, "--recipient", &carol]),
        0,
    );
    assert_eq!(
        (out["fetched"].as_u64(), out["deleted"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(old.messages("alice").is_empty());
    // The receiving server adds its trace headers; the message follows intact.
    let received = mx.messages("carol");
    assert_eq!(received.len(), 3);
    for m in &messages {
        let body = as_delivered(m);
        assert!(
            received.iter().any(|r| r.ends_with(&body)),
            "missing {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn every_polls_again_and_prints_one_summary_line_per_run() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let mut args = client.args(&server);
    args.retain(|a| a != "--json");
    let mut child = client
        .command(&args, &["--every", "1s"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while client.delivered().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run delivered nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.put_message("alice", "3000.M1P1.test", b"Subject: later\n\nlater\n");
    while client.delivered().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the next poll did not come"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Let the second run finish its summary line, then stop the daemon.
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "{stdout}");
    assert!(
        lines[0].starts_with("alice@127.0.0.1: fetched 3 new messages (")
            && lines[0].contains(", 3 deleted from the server, 3 on the server"),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.contains("fetched 1 new message (")),
        "{stdout}"
    );
    assert!(server.messages("alice").is_empty());
}

#[test]
fn a_headers_only_message_is_fetched_whole_once_max_size_allows() {
    let server = TestServer::start();
    let mut big = b"Subject: big\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'z', 20_000));
    big.push(b'\n');
    put_all(&server, &[big.clone()]);
    let client = Client::new();
    let args = client.args(&server);
    let stub = report(
        &client.run(&args, &["--max-size", "10K", "--oversize", "headers"]),
        0,
    );
    assert_eq!(
        (stub["truncated"].as_u64(), stub["deleted"].as_u64()),
        (Some(1), Some(0))
    );
    let whole = report(&client.run(&args, &[]), 0);
    assert_eq!(
        (whole["fetched"].as_u64(), whole["deleted"].as_u64()),
        (Some(1), Some(1))
    );
    let delivered = client.delivered();
    assert_eq!(delivered.len(), 2);
    assert!(delivered.contains(&big));
    assert!(server.messages("alice").is_empty());
}

#[test]
fn a_terminal_gets_a_progress_bar_and_a_pipe_does_not() {
    let server = TestServer::start();
    put_all(&server, &awkward_messages());
    let client = Client::new();
    let mut args = client.args(&server);
    args.retain(|a| a != "--json");
    args.push("--keep".into());
    // util-linux's script(1) gives the command a pseudo-terminal.
    let line = std::iter::once(crate::harness::BIN.to_owned())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let output = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("HOME", client.dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains(&format!("[{}] 3/3 messages", "#".repeat(30))),
        "{shown:?}"
    );

    // The same three messages again (a fresh ledger), into a pipe.
    let state = client.dir.path().join("state-piped").display().to_string();
    let piped = report_text(&client.run(&args, &["--state-dir", &state]));
    assert!(piped.contains("fetched 3 new messages"), "{piped:?}");
    assert!(
        !piped.contains('\r') && !piped.contains("messages, "),
        "{piped:?}"
    );
    assert_eq!(piped.lines().count(), 1, "{piped:?}");
}

fn report_text(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// RFC 6856: a strict server (yubin with `utf8_headers = "refuse"`) serves
/// a message with UTF-8 headers only in UTF-8 mode, so the client enables
/// the mode when the server offers it, and the message arrives as it is.
#[test]
fn messages_with_utf8_headers_are_fetched_in_utf8_mode() {
    let server = TestServer::with(Setup {
        pop3: "utf8_headers = \"refuse\"\n".into(),
        ..Setup::default()
    });
    let message = "From: Zoë <zoe@example.org>\nSubject: café ☕\n\nbody\n"
        .as_bytes()
        .to_vec();
    put_all(&server, std::slice::from_ref(&message));
    let client = Client::new();
    let out = report(&client.run(&client.args(&server), &[]), 0);
    assert_eq!(
        (out["fetched"].as_u64(), out["deleted"].as_u64()),
        (Some(1), Some(1)),
        "{out}"
    );
    assert_eq!(client.delivered(), vec![message]);
}
