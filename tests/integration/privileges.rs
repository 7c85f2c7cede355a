//! Running unprivileged (issue 12): started as root, the server serves as
//! the configured account, and mail still arrives and is served.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::harness::{Setup, TestServer, running_as_root, status_field, yubin};

/// Started as root with `[server] user = "nobody"`: once serving, the
/// process has nobody's uid and gid (real, effective, saved, filesystem),
/// nobody's groups and no others (root's are gone), no capabilities, and
/// `no_new_privs`. A message sent by SMTP lands in a Maildir owned by
/// nobody and comes back whole over POP3; `yubin user add`, run as root
/// afterwards, leaves a passwd-file the server can still read, and the new
/// user logs in.
#[test]
fn started_as_root_it_serves_as_the_configured_account() {
    if !running_as_root() {
        // Without root, no account can be taken: a clear error, status 2.
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("c.toml");
        fs::write(&config, "[server]\nuser = \"nobody\"\n").expect("config");
        let out = yubin(
            &["serve", "--config", config.to_str().expect("utf-8")],
            "",
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("server.user"));
        return;
    }
    let server = TestServer::with(Setup {
        top: "[server]\nuser = \"nobody\"\n".into(),
        ..Setup::default()
    });
    server.wait_for_log("dropped root");
    let status = fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    let all = "65534\t65534\t65534\t65534";
    assert_eq!(status_field(&status, "Uid"), all, "{status}");
    assert_eq!(status_field(&status, "Gid"), all, "{status}");
    assert_eq!(status_field(&status, "Groups"), "65534", "{status}");
    for caps in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(status_field(&status, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{status}");

    let result = server.python(
        "import popclient as p, smtpclient as s\n\
         sent = s.send_once('carol@example.org', ['alice@test.example'], b'Subject: as nobody\\r\\n\\r\\nhello\\r\\n')\n\
         c = p.connect(); p.login(c); got = p.fetch_all(c); c.quit()\n\
         p.emit({'sent': sent, 'got': got})",
        &[("USER_NAME", "alice"), ("USER_PASS", "alice-pw")],
    );
    assert_eq!(result["sent"]["error"], serde_json::Value::Null, "{result}");
    let message = crate::harness::hex_list(&result["got"]["messages"]);
    assert_eq!(message.len(), 1, "{result}");
    assert!(
        String::from_utf8_lossy(&message[0]).ends_with("Subject: as nobody\r\n\r\nhello\r\n"),
        "{result}"
    );
    let files = server.message_files("alice");
    assert_eq!(files.len(), 1);
    let owner = fs::metadata(server.maildir("alice").join(&files[0]))
        .expect("message file")
        .uid();
    assert_eq!(owner, 65534, "the message file belongs to {owner}");

    let config = server.config_path();
    let out = yubin(
        &[
            "user",
            "add",
            "dave",
            "--password-stdin",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        "dave-pw\n",
        server.dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let users = fs::metadata(server.dir.path().join("users")).expect("users");
    assert_eq!(users.uid(), 65534, "user add left the passwd-file to root");
    let result = server.python(
        "import popclient as p, time\n\
         for _ in range(50):\n\
         \x20   try:\n\
         \x20       c = p.connect(); p.login(c); c.quit(); break\n\
         \x20   except Exception as e:\n\
         \x20       time.sleep(0.1)\n\
         else:\n\
         \x20   raise SystemExit('dave never got in')\n\
         p.emit('ok')",
        &[("USER_NAME", "dave"), ("USER_PASS", "dave-pw")],
    );
    assert_eq!(result, "ok");
}
