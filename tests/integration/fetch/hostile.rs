//! `yubin fetch` against a server that misbehaves on purpose
//! (py/fakepop3.py), one case of reliability.md §3.10 per test: PC-01
//! hostile listings, PC-02/03/04 STLS stripped, injected or stalled,
//! PC-06 bad APOP challenges, PC-07 huge hostile errors, PC-08 bad SASL
//! challenges, PC-09 broken message transfers.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Client, report};

/// The fake server, killed when dropped.
struct Fake {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fake {
    fn start(mode: &str, messages: &[&str]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let messages_path = dir.path().join("messages.json");
        fs::write(&messages_path, serde_json::to_string(messages).unwrap()).unwrap();
        let log = dir.path().join("log");
        fs::write(&log, "").unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/integration/py/fakepop3.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(mode)
            .arg(&messages_path)
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        Fake {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Every command line the server received.
    fn lines(&self) -> Vec<String> {
        self.events()
            .filter_map(|e| e["line"].as_str().map(str::to_owned))
            .collect()
    }

    /// The deletions committed at each QUIT.
    fn committed(&self) -> Vec<Vec<u64>> {
        self.events()
            .filter_map(|e| {
                e["committed"]
                    .as_array()
                    .map(|a| a.iter().map(|n| n.as_u64().unwrap()).collect())
            })
            .collect()
    }

    fn events(&self) -> impl Iterator<Item = serde_json::Value> {
        fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// No credentials of any kind crossed the connection.
    fn assert_no_credentials(&self) {
        for line in self.lines() {
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            assert!(
                !["USER", "PASS", "APOP", "AUTH"].contains(&verb.as_str())
                    && !line.contains("alice-pw"),
                "credentials sent: {line:?}"
            );
        }
    }

    fn args(&self, client: &Client, tls: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "fetch",
            "--server",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--tls",
            tls,
            "--user",
            "alice",
            "--password-file",
            &client.dir.path().join("password").display().to_string(),
            "--maildir",
            &client.maildir().display().to_string(),
            "--state-dir",
            &client.state().display().to_string(),
            "--timeout",
            "5s",
            "--json",
        ]
        .map(String::from)
        .to_vec();
        if tls == "none" {
            args.extend(["--allow-plaintext", "--auth", "user"].map(String::from));
        }
        args
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const THREE: [&str; 3] = [
    "Subject: one\n\nfirst\n",
    "Subject: two\n\nsecond\n.dotted\n",
    "Subject: three\n\nthird\n",
];

#[test]
fn stls_stripped_refused_or_capa_failing_sends_no_credentials() {
    for mode in ["no-stls", "stls-refused", "capa-fails"] {
        let fake = Fake::start(mode, &THREE);
        let client = Client::new();
        let out = report(&client.run(&fake.args(&client, "stls"), &[]), 69);
        assert!(
            out["error"].as_str().unwrap().contains("STLS"),
            "{mode}: {out}"
        );
        fake.assert_no_credentials();
    }
}

#[test]
fn replies_injected_before_the_tls_handshake_abort_the_session() {
    let fake = Fake::start("stls-inject", &THREE);
    let client = Client::new();
    let out = report(&client.run(&fake.args(&client, "stls"), &[]), 76);
    assert!(
        out["error"].as_str().unwrap().contains("injection"),
        "{out}"
    );
    fake.assert_no_credentials();
}

#[test]
fn a_server_that_stalls_after_stls_times_out() {
    let fake = Fake::start("stls-stall", &THREE);
    let client = Client::new();
    let started = Instant::now();
    let out = report(
        &client.run(&fake.args(&client, "stls"), &["--timeout", "1s"]),
        75,
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        out["error"].as_str().unwrap().contains("timed out"),
        "{out}"
    );
    fake.assert_no_credentials();
}

#[test]
fn hostile_uidls_are_fetched_by_number_and_never_deleted() {
    let messages: Vec<String> = (1..=8)
        .map(|i| format!("Subject: m{i}\n\nbody {i}\n"))
        .collect();
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    let fake = Fake::start("hostile-uidl", &messages);
    let client = Client::new();
    let args = fake.args(&client, "none");
    let out = report(&client.run(&args, &[]), 0);
    assert_eq!(out["fetched"], 8, "{out}");
    assert_eq!(client.delivered().len(), 8);
    // Only 1 has a good, unique id; 8 is listed twice with two ids. The
    // rest stay on the server.
    assert_eq!(fake.committed(), vec![vec![1]]);
    assert_eq!(out["without_uid"], 7);

    // A second run finds the seven left, knows them by their headers, and
    // neither fetches nor deletes any of them.
    let again = report(&client.run(&args, &[]), 0);
    assert_eq!(
        (again["fetched"].as_u64(), again["on_server"].as_u64()),
        (Some(0), Some(7)),
        "{again}"
    );
    assert_eq!(client.delivered().len(), 8);
    assert_eq!(fake.committed()[1], Vec::<u64>::new());
}

#[test]
fn an_endless_listing_fails_cleanly() {
    let fake = Fake::start("endless-list", &THREE);
    let client = Client::new();
    let out = report(
        &client.run(&fake.args(&client, "none"), &["--timeout", "30s"]),
        76,
    );
    assert!(
        out["error"].as_str().unwrap().contains("more than 1000000"),
        "{out}"
    );
    assert!(client.delivered().is_empty());
    assert!(fake.committed().is_empty());
}

#[test]
fn broken_transfers_deliver_nothing_partial_and_delete_nothing() {
    for (mode, status) in [
        ("drop-mid-retr", 75),
        ("no-terminator", 75),
        ("long-retr", 76),
    ] {
        let fake = Fake::start(mode, &THREE);
        let client = Client::new();
        let out = report(&client.run(&fake.args(&client, "none"), &[]), status);
        assert_eq!(out["ok"], false, "{mode}");
        // Message 1 arrived whole; message 2 broke; nothing was committed,
        // since there was no QUIT.
        assert_eq!(
            client.delivered(),
            vec![THREE[0].as_bytes().to_vec()],
            "{mode}"
        );
        assert!(fake.committed().is_empty(), "{mode}");
        assert!(fake.lines().iter().all(|l| l != "QUIT"), "{mode}");
        if mode == "long-retr" {
            // The endless message is passed over from now on: the next run
            // fetches the third, and deletes the first and the third.
            let again = report(&client.run(&fake.args(&client, "none"), &[]), 0);
            assert_eq!(again["fetched"], 1, "{again}");
            assert!(
                again["warnings"][0]
                    .as_str()
                    .unwrap()
                    .contains("broke an earlier run"),
                "{again}"
            );
            assert_eq!(fake.committed(), vec![vec![1, 3]]);
        }
    }
}

#[test]
fn a_message_shorter_than_listed_is_delivered_but_kept() {
    let fake = Fake::start("short-retr", &THREE);
    let client = Client::new();
    let args = fake.args(&client, "none");
    let out = report(&client.run(&args, &[]), 0);
    assert_eq!(out["fetched"], 3);
    assert_eq!(out["size_mismatches"], 1);
    assert_eq!(fake.committed(), vec![vec![2, 3]]);
    // Kept for good: a later run neither fetches it again nor deletes it.
    let again = report(&client.run(&args, &[]), 0);
    assert_eq!(
        (again["fetched"].as_u64(), again["deleted"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(fake.committed()[1], Vec::<u64>::new());
    assert_eq!(client.delivered().len(), 3);
}

#[test]
fn a_reused_unique_id_is_another_message() {
    let fake = Fake::start("uid-reuse", &THREE);
    let client = Client::new();
    let args = fake.args(&client, "none");
    let first = report(&client.run(&args, &["--limit", "1"]), 0);
    assert_eq!(
        (first["fetched"].as_u64(), first["deleted"].as_u64()),
        (Some(1), Some(1))
    );
    // Message two now has message one's old id, with another size: it is
    // fetched, not taken for the one already fetched, and none is lost.
    let second = report(&client.run(&args, &[]), 0);
    assert_eq!(second["fetched"], 2, "{second}");
    let mut expected: Vec<Vec<u8>> = THREE.iter().map(|m| m.as_bytes().to_vec()).collect();
    expected.sort();
    assert_eq!(client.delivered(), expected);
}

#[test]
fn a_temporary_uidl_failure_is_not_taken_for_a_server_without_uidl() {
    let fake = Fake::start("uidl-temp", &THREE);
    let client = Client::new();
    let out = report(&client.run(&fake.args(&client, "none"), &[]), 75);
    assert!(out["error"].as_str().unwrap().contains("SYS/TEMP"), "{out}");
    assert!(client.delivered().is_empty());
}

#[test]
fn without_uidl_and_top_messages_are_fetched_once_and_kept() {
    let fake = Fake::start("no-uidl-no-top", &THREE);
    let client = Client::new();
    let args = fake.args(&client, "none");
    let out = report(&client.run(&args, &[]), 0);
    assert_eq!(out["fetched"], 3, "{out}");
    assert_eq!(fake.committed(), vec![Vec::<u64>::new()]);
    let again = report(&client.run(&args, &[]), 0);
    assert_eq!(again["fetched"], 0, "{again}");
    assert_eq!(client.delivered().len(), 3);
}

#[test]
fn servers_without_uidl_are_never_deleted_from() {
    // The fourth message has the first's headers and size: two messages,
    // not one seen twice.
    let four = [THREE[0], THREE[1], THREE[2], THREE[0]];
    let fake = Fake::start("no-uidl", &four);
    let client = Client::new();
    let args = fake.args(&client, "none");
    let out = report(&client.run(&args, &[]), 0);
    assert_eq!(out["fetched"], 4);
    assert_eq!(fake.committed(), vec![Vec::<u64>::new()]);
    let again = report(&client.run(&args, &[]), 0);
    assert_eq!(again["fetched"], 0, "known by their headers: {again}");
    assert_eq!(client.delivered().len(), 4);
}

#[test]
fn bad_apop_challenges_and_sasl_challenges_are_refused() {
    let fake = Fake::start("apop-bad-challenge", &THREE);
    let client = Client::new();
    let out = report(
        &client.run(&fake.args(&client, "none"), &["--auth", "apop"]),
        69,
    );
    assert!(
        out["error"].as_str().unwrap().contains("<local@host>"),
        "{out}"
    );
    fake.assert_no_credentials();

    // A good challenge, but no TLS: APOP's digest is not sent in clear.
    let fake = Fake::start("normal", &THREE);
    let client = Client::new();
    let out = report(
        &client.run(&fake.args(&client, "none"), &["--auth", "apop"]),
        69,
    );
    assert!(
        out["error"].as_str().unwrap().contains("without TLS"),
        "{out}"
    );
    fake.assert_no_credentials();

    let fake = Fake::start("sasl-bad-base64", &THREE);
    let client = Client::new();
    let out = report(
        &client.run(&fake.args(&client, "none"), &["--auth", "cram-md5"]),
        76,
    );
    assert!(out["error"].as_str().unwrap().contains("base64"), "{out}");

    let fake = Fake::start("sasl-err-challenge", &THREE);
    let client = Client::new();
    report(
        &client.run(&fake.args(&client, "none"), &["--auth", "cram-md5"]),
        77,
    );
}

#[test]
fn a_ten_megabyte_error_is_truncated_and_escaped() {
    let fake = Fake::start("huge-err", &THREE);
    let client = Client::new();
    let mut args = fake.args(&client, "none");
    args.retain(|a| a != "--json");
    let out = client.run(&args, &[]);
    assert_eq!(out.status.code(), Some(77));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.len() < 8 * 1024, "{} bytes on stderr", stderr.len());
    assert!(
        stderr.contains("\\x1b[31m%n%n") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
}

#[test]
fn in_use_is_waited_for_and_login_delay_reported() {
    let fake = Fake::start("in-use", &THREE);
    let client = Client::new();
    let config = client.dir.path().join("fetch.toml");
    fs::write(
        &config,
        format!(
            "[accounts.fake]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nallow_plaintext = true\nauth = \"user\"\nuser = \"alice\"\npassword_file = \"{}\"\nmaildir = \"{}\"\nstate_dir = \"{}\"\nin_use_wait = \"200ms\"\n",
            fake.port,
            client.dir.path().join("password").display(),
            client.maildir().display(),
            client.state().display()
        ),
    )
    .unwrap();
    let args: Vec<String> = ["fetch", "--json", "--config", &config.display().to_string()]
        .map(String::from)
        .to_vec();
    let out = report(&client.run(&args, &[]), 0);
    assert_eq!(out["fetched"], 3);
    assert!(
        out["warnings"][0].as_str().unwrap().contains("in use"),
        "{out}"
    );

    let fake = Fake::start("login-delay", &THREE);
    let client = Client::new();
    let out = report(&client.run(&fake.args(&client, "none"), &[]), 75);
    assert!(
        out["error"].as_str().unwrap().contains("LOGIN-DELAY"),
        "{out}"
    );
}

/// PC-04: a stalled server fails its account after the timeout, and the
/// next account in the file is fetched all the same; the exit status is
/// the failed account's.
#[test]
fn a_stalled_account_does_not_hold_up_the_next() {
    let stalled = Fake::start("stls-stall", &THREE);
    let good = Fake::start("normal", &THREE);
    let client = Client::new();
    let config = client.dir.path().join("fetch.toml");
    let account = |name: &str, port: u16, tls: &str, extra: &str| {
        format!(
            "[accounts.{name}]\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nuser = \"alice\"\n{extra}state_dir = \"{}\"\nmaildir = \"{}\"\n",
            client.state().display(),
            client.maildir().display()
        )
    };
    fs::write(
        &config,
        format!(
            "password_file = \"{}\"\ntimeout = \"1s\"\n{}{}",
            client.dir.path().join("password").display(),
            account("a-stalled", stalled.port, "stls", ""),
            account(
                "b-good",
                good.port,
                "none",
                "allow_plaintext = true\nauth = \"user\"\n"
            ),
        ),
    )
    .unwrap();
    let args: Vec<String> = ["fetch", "--json", "--config", &config.display().to_string()]
        .map(String::from)
        .to_vec();
    let output = client.run(&args, &[]);
    assert_eq!(output.status.code(), Some(75));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "{stdout}");
    assert_eq!(
        (reports[0]["account"].as_str(), reports[0]["ok"].as_bool()),
        (Some("a-stalled"), Some(false))
    );
    assert_eq!(
        (
            reports[1]["account"].as_str(),
            reports[1]["fetched"].as_u64()
        ),
        (Some("b-good"), Some(3))
    );
    assert_eq!(client.delivered().len(), 3);
}

/// RFC 2449 §6.7: a server with `EXPIRE 0` removes what was retrieved at
/// QUIT. A run that retrieved a message shorter than LIST said (whose
/// server copy must survive) ends without QUIT; `keep` gets a warning.
#[test]
fn expire_zero_servers_get_no_quit_after_a_short_message() {
    let fake = Fake::start("expire-short", &THREE);
    let client = Client::new();
    let out = report(&client.run(&fake.args(&client, "none"), &["--keep"]), 0);
    assert_eq!(out["fetched"], 3);
    let warnings = out["warnings"].to_string();
    assert!(
        warnings.contains("EXPIRE 0") && warnings.contains("not sending QUIT"),
        "{out}"
    );
    assert!(fake.lines().iter().all(|l| l != "QUIT"));
    assert!(fake.committed().is_empty());
}

/// A DELE the server refuses leaves that message alone; the run goes on,
/// and later runs neither fail on it nor fetch it again.
#[test]
fn a_refused_dele_does_not_stop_the_run() {
    let fake = Fake::start("dele-refused", &THREE);
    let client = Client::new();
    let args = fake.args(&client, "none");
    let out = report(&client.run(&args, &[]), 0);
    assert_eq!(
        (out["fetched"].as_u64(), out["deleted"].as_u64()),
        (Some(3), Some(0)),
        "{out}"
    );
    assert!(out["warnings"].to_string().contains("read-only"), "{out}");
    let again = report(&client.run(&args, &[]), 0);
    assert_eq!(
        (again["fetched"].as_u64(), again["deleted"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    assert_eq!(client.delivered().len(), 3);
}

/// A server without CAPA's UIDL that answered UIDL before and now says
/// `-ERR`: not a server without UIDL (every message would look new), but
/// one in trouble; the run fails (75) and nothing is fetched twice.
#[test]
fn a_server_that_stops_answering_uidl_fails_the_run() {
    let fake = Fake::start("uidl-vanishes", &THREE);
    let client = Client::new();
    let args = fake.args(&client, "none");
    let first = report(&client.run(&args, &["--keep"]), 0);
    assert_eq!(first["fetched"], 3);
    let second = report(&client.run(&args, &["--keep"]), 75);
    assert!(
        second["error"].as_str().unwrap().contains("UIDL"),
        "{second}"
    );
    assert_eq!(client.delivered().len(), 3);
}

/// Issue 11: a server that sends a stored lone CR as `CR CRLF` (Dovecot
/// does, for a last line that is only a CR) gets it stored so that it
/// reads back the same: the CR is kept, not taken for half of a line end.
#[test]
fn issue11_a_line_ending_in_cr_is_stored_as_sent() {
    let fake = Fake::start("normal", &["Subject: cr\n\nmiddle\r\nend\n\r"]);
    let client = Client::new();
    let out = report(&client.run(&fake.args(&client, "none"), &[]), 0);
    assert_eq!(out["fetched"], 1, "{out}");
    // On the wire: "middle CR CRLF end CRLF CR CRLF".
    assert_eq!(
        client.delivered(),
        vec![b"Subject: cr\n\nmiddle\r\r\nend\n\r\r\n".to_vec()]
    );
}
