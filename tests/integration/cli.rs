//! The command line: check-config, user management, pw, and the embedded default.

use std::fs;
use std::time::{Duration, Instant};

use crate::harness::{Setup, TestServer, run, yubin};

#[test]
fn check_config_names_the_bad_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[pop3]\nlisten = [\"nowhere\"]\n", "pop3.listen[0]"),
        ("[pop3]\nidle_timeout = \"soon\"\n", "idle_timeout"),
        ("[pop3]\nlisen = []\n", "lisen"),
    ] {
        let path = dir.path().join("bad.toml");
        fs::write(&path, text).unwrap();
        let out = yubin(
            &["check-config", "--config", path.to_str().unwrap()],
            "",
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{text:?}: {stderr}");
        // `serve` refuses the same file the same way.
        let out = yubin(
            &["serve", "--config", path.to_str().unwrap()],
            "",
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2));
    }
    let out = yubin(
        &["check-config", "--config", "/nonexistent.toml"],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let out = yubin(&["frobnicate"], "", dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    fs::write(
        &path,
        "hostname = \"mail.example.org\"\n[pop3]\nlisten = [\"0.0.0.0:110\"]\n",
    )
    .unwrap();
    let out = yubin(
        &["check-config", "--config", path.to_str().unwrap()],
        "",
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for part in [
        "hostname = \"mail.example.org\"",
        "listen = [\"0.0.0.0:110\"]",
        "listen_tls = [\"127.0.0.1:1995\"]",
        "plaintext_auth = \"tls\"",
        "auth_failure_delay = \"2s\"",
    ] {
        assert!(text.contains(part), "{part} missing from:\n{text}");
    }
}

#[test]
fn user_add_takes_effect_without_a_restart_and_never_takes_passwords_from_argv() {
    let server = TestServer::with(Setup {
        users: vec![],
        ..Setup::default()
    });
    let config = server.config_path();
    let config = config.to_str().unwrap();
    let out = yubin(
        &[
            "user",
            "add",
            "carol@example.org",
            "--password-stdin",
            "--config",
            config,
        ],
        "carol-pw\n",
        server.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = yubin(
        &[
            "user",
            "add",
            "carol@example.org",
            "--password-stdin",
            "--config",
            config,
        ],
        "x\n",
        server.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "adding twice is refused");
    let out = yubin(
        &[
            "user",
            "add",
            "../etc",
            "--password-stdin",
            "--config",
            config,
        ],
        "x\n",
        server.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let passwd = fs::read_to_string(server.dir.path().join("users")).unwrap();
    // serve made the demo user first (the file had no users); carol comes after.
    assert!(
        passwd.contains("\ncarol@example.org:{SHA512-CRYPT}$6$"),
        "{passwd}"
    );
    assert!(!passwd.contains("carol-pw"));

    let login = |password: &str| {
        server.python(
            &format!("import popclient as p\nc = p.connect(); c.user('carol@example.org')\ntry:\n    r = c.pass_('{password}').decode()\nexcept Exception as e:\n    r = str(e)\np.emit(r)"),
            &[],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !login("carol-pw").as_str().unwrap().starts_with("+OK") {
        assert!(Instant::now() < deadline, "the new user never became valid");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = yubin(
        &[
            "user",
            "passwd",
            "carol@example.org",
            "--password-stdin",
            "--config",
            config,
        ],
        "new-pw\n",
        server.dir.path(),
    );
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(login("new-pw").as_str().unwrap().starts_with("+OK"));
    let out = yubin(&["user", "list", "--config", config], "", server.dir.path());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "demo\tSHA512-CRYPT\ncarol@example.org\tSHA512-CRYPT\n"
    );
    let out = yubin(
        &["user", "del", "carol@example.org", "--config", config],
        "",
        server.dir.path(),
    );
    assert!(out.status.success());
    let out = yubin(
        &["user", "del", "carol@example.org", "--config", config],
        "",
        server.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    // Mail of the user is created under the default layout for user@domain.
    assert!(
        server
            .dir
            .path()
            .join("mail/example.org/carol/new")
            .is_dir()
    );
}

#[test]
fn pw_makes_and_checks_dovecot_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let out = yubin(
        &["pw", "-s", "SHA512-CRYPT", "--password-stdin"],
        "secret\n",
        dir.path(),
    );
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{hash}");
    let out = yubin(
        &["pw", "-t", hash.trim(), "--password-stdin"],
        "secret\n",
        dir.path(),
    );
    assert!(out.status.success());
    // A hash made by Dovecot's doveadm verifies.
    let dovecot = "{SSHA256}GDWTYoeWCiUGL8ZeQaIAfw6ztMv6zA9e0614OPPWaoGMiq0K";
    let out = yubin(
        &["pw", "-t", dovecot, "--password-stdin"],
        "secret\n",
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = yubin(
        &["pw", "-t", dovecot, "--password-stdin"],
        "wrong\n",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let out = yubin(&["pw", "-s", "NOPE", "--password-stdin"], "x\n", dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = yubin(&["pw", "-l"], "", dir.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ARGON2ID"));
}

/// The README's quick start: `yubin serve` with no configuration creates a
/// demo user, prints its password and a curl command, and the command works.
/// Started as root (as on this project's machines), it serves as `nobody`
/// (issue 12), from an ordinary directory (the test's is made 0755, as a
/// checkout is).
#[test]
fn the_embedded_default_works_with_the_printed_curl_command() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut child = std::process::Command::new(crate::harness::BIN)
        .arg("serve")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let command = loop {
        let line = lines
            .next()
            .expect("yubin printed no curl command")
            .unwrap();
        if line.trim_start().starts_with("curl --user") {
            break line;
        }
    };
    let smtp_command = loop {
        let line = lines
            .next()
            .expect("yubin printed no SMTP command")
            .unwrap();
        if line.trim_start().starts_with("printf") {
            break line;
        }
    };
    let args: Vec<String> = command
        .split_whitespace()
        .skip(1)
        .map(|a| a.trim_matches('\'').to_owned())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("curl", &[&["-s"], &args[..]].concat());
    assert!(out.status.success(), "{command}: {out:?}");
    let message = String::from_utf8_lossy(&out.stdout);
    assert!(message.contains("Subject: Welcome to yubin"), "{message}");
    let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let uid = crate::harness::status_field(&status, "Uid");
    if crate::harness::running_as_root() {
        assert_eq!(uid, "65534\t65534\t65534\t65534", "not nobody:\n{status}");
    }
    // The printed SMTP command delivers a second message, fetched the same way.
    let sent = run("sh", &["-c", &format!("{} --silent", smtp_command.trim())]);
    assert!(sent.status.success(), "{smtp_command}: {sent:?}");
    let second: Vec<&str> = args
        .iter()
        .map(|a| {
            if a.ends_with("/1") {
                a.trim_end_matches('1')
            } else {
                a
            }
        })
        .collect();
    let url = format!("{}2", second[second.len() - 1]);
    let out = run(
        "curl",
        &[&["-s"], &second[..second.len() - 1], &[url.as_str()]].concat(),
    );
    let _ = child.kill();
    let _ = child.wait();
    let message = String::from_utf8_lossy(&out.stdout);
    assert!(message.contains("Hello, demo."), "{message}");
    assert!(
        message.starts_with("Return-Path: <you@example.org>"),
        "{message}"
    );
    assert!(dir.path().join("yubin-data/users").exists());
}

/// Issue 12, finding 3 (and a finding 9 item): names whose domain is not a
/// domain (`bob@.` would share bob's Maildir, `x@.hidden` hide in a dot
/// directory) and names the passwd-file reader would take for a comment
/// are refused by `user add` with status 2, naming the argument; written
/// into the file by hand, they are skipped at load and cannot log in.
#[test]
fn issue12_user_names_with_invalid_domains_are_refused() {
    let server = TestServer::with(Setup {
        users: vec![("bob".into(), "{PLAIN}bob-pw".into())],
        ..Setup::default()
    });
    let config = server.config_path();
    let config = config.to_str().unwrap();
    for bad in ["bob@.", "x@.hidden", "x@-", "x@.example.org", "#comment"] {
        let out = yubin(
            &["user", "add", bad, "--password-stdin", "--config", config],
            "pw\n",
            server.dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("NAME") && stderr.contains("not a valid user name"),
            "{bad}: {stderr}"
        );
    }
    // Written by hand: skipped, with a warning, and no login as bob's twin.
    let users = server.dir.path().join("users");
    let mut text = fs::read_to_string(&users).unwrap();
    text.push_str("bob@.:{PLAIN}twin-pw\n");
    fs::write(&users, text).unwrap();
    server.wait_for_log("invalid user name \"bob@.\"");
    let result = server.python(
        "import popclient as p, poplib\n\
         c = p.connect()\n\
         try:\n\
         \x20   c.user('bob@.'); c.pass_('twin-pw'); p.emit('logged in')\n\
         except poplib.error_proto as e:\n\
         \x20   p.emit(e.args[0].decode())",
        &[],
    );
    assert_eq!(result, "-ERR [AUTH] Authentication failed.");
}

/// Issue 12, finding 3, the rest: two user names must never map to one
/// Maildir through a `mail_location` template. With `%n` alone,
/// `bob@b.example` would read `bob@a.example`'s mail: `user add` refuses it
/// with status 2, naming both; written into the file by hand, it is left
/// out at load (logged) and cannot log in, while the first owner can.
#[test]
fn issue12_no_two_users_share_a_maildir_through_a_template() {
    let probe = tempfile::tempdir().unwrap();
    let mail = probe.path().join("mail");
    let server = TestServer::with(Setup {
        users: vec![("bob@a.example".into(), "{PLAIN}a-pw".into())],
        users_table: format!("mail_location = \"{}/%n\"\n", mail.display()),
        ..Setup::default()
    });
    let config = server.config_path();
    let config = config.to_str().unwrap();
    let out = yubin(
        &[
            "user",
            "add",
            "bob@b.example",
            "--password-stdin",
            "--config",
            config,
        ],
        "b-pw\n",
        server.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NAME") && stderr.contains("bob@a.example"),
        "{stderr}"
    );
    let out = yubin(
        &[
            "user",
            "add",
            "carol@b.example",
            "--password-stdin",
            "--config",
            config,
        ],
        "c-pw\n",
        server.dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    // Written by hand, the twin is left out at load.
    let users = server.dir.path().join("users");
    let mut text = fs::read_to_string(&users).unwrap();
    text.push_str("bob@b.example:{PLAIN}b-pw\n");
    fs::write(&users, text).unwrap();
    server.wait_for_log("its Maildir is another user's");
    let result = server.python(
        "import popclient as p, poplib\n\
         def login(user, pw):\n\
         \x20   c = p.connect()\n\
         \x20   try:\n\
         \x20       c.user(user); c.pass_(pw); c.quit(); return 'in'\n\
         \x20   except poplib.error_proto as e:\n\
         \x20       return e.args[0].decode()\n\
         p.emit([login('bob@b.example', 'b-pw'), login('bob@a.example', 'a-pw')])",
        &[],
    );
    assert!(
        result[0].as_str().unwrap_or_default().starts_with("-ERR"),
        "{result}"
    );
    assert_eq!(result[1], "in", "{result}");
}
