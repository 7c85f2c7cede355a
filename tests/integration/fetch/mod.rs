//! `yubin fetch` against yubin's own POP3 server, a hostile fake server
//! (py/fakepop3.py), and kill -9 at each step of a run.

mod certificates;
mod crash;
mod hostile;
mod modes;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::{BIN, TestServer};

/// A client-side home for `yubin fetch`: password file, Maildir, ledgers.
pub struct Client {
    pub dir: tempfile::TempDir,
}

impl Client {
    pub fn new() -> Client {
        let dir = tempfile::tempdir().expect("temporary directory");
        fs::write(dir.path().join("password"), "alice-pw\n").expect("password file");
        Client { dir }
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Messages delivered to the client's Maildir, sorted by content.
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = fs::read_dir(self.maildir().join(sub)) {
                for entry in entries.flatten() {
                    all.push(fs::read(entry.path()).expect("read delivered"));
                }
            }
        }
        all.sort();
        all
    }

    /// The arguments every run against `server`'s POP3S listener uses,
    /// trusting its generated certificate by its fingerprint.
    pub fn args(&self, server: &TestServer) -> Vec<String> {
        let mut args = self.unpinned_args(server);
        args.push("--fingerprint".into());
        args.push(fingerprint(&server.dir.path().join("tls/cert.pem")));
        args
    }

    /// The same without a pinned certificate.
    pub fn unpinned_args(&self, server: &TestServer) -> Vec<String> {
        vec![
            "fetch".into(),
            "--server".into(),
            "127.0.0.1".into(),
            "--port".into(),
            server.pop3s.port().to_string(),
            "--user".into(),
            "alice".into(),
            "--password-file".into(),
            self.dir.path().join("password").display().to_string(),
            "--maildir".into(),
            self.maildir().display().to_string(),
            "--state-dir".into(),
            self.state().display().to_string(),
            "--json".into(),
        ]
    }

    /// Runs `yubin` with `args` plus `extra`.
    pub fn run(&self, args: &[String], extra: &[&str]) -> Output {
        self.command(args, extra, &[])
            .output()
            .expect("run yubin fetch")
    }

    pub fn command(&self, args: &[String], extra: &[&str], env: &[(&str, &str)]) -> Command {
        // A flag in `extra` replaces the same flag (and its value) in `args`.
        let mut base = Vec::new();
        let mut skip = false;
        for (i, arg) in args.iter().enumerate() {
            if skip {
                skip = false;
            } else if extra.contains(&arg.as_str()) {
                skip = args.get(i + 1).is_some_and(|v| !v.starts_with("--"));
            } else {
                base.push(arg.clone());
            }
        }
        let mut command = Command::new(BIN);
        command
            .args(base)
            .args(extra)
            .env("HOME", self.dir.path())
            .env_remove("YUBIN_FETCH_FAILPOINT")
            .stdin(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        command
    }
}

/// Puts `messages` into alice's maildrop on `server`, in this order.
pub fn put_all(server: &TestServer, messages: &[Vec<u8>]) {
    for (i, m) in messages.iter().enumerate() {
        server.put_message("alice", &format!("100{i}.M1P1.test"), m);
    }
}

/// The JSON report of a run (its last stdout line), asserting the exit status.
pub fn report(output: &Output, status: i32) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(status),
        "exit status\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or("null");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

/// The SHA-256 fingerprint of a PEM certificate, computed by Python's ssl
/// module (not by the code under test).
pub fn fingerprint(pem: &Path) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg("import ssl,hashlib,sys; print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())).hexdigest())")
        .arg(pem)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Stored messages with the awkward parts: dot lines, a `From ` line, a
/// long line, 8-bit bytes, no final newline.
pub fn awkward_messages() -> Vec<Vec<u8>> {
    vec![
        b"From: a@example.org\nSubject: one\n\nplain body\n".to_vec(),
        b"From: b@example.org\nSubject: two\n\n.\n..\n.dot start\nFrom the start\n".to_vec(),
        {
            let mut m = b"From: c@example.org\nSubject: three\n\n".to_vec();
            m.extend(std::iter::repeat_n(b'x', 5000));
            m.extend_from_slice(b"\n\xe9t\xe9 8-bit\nno final newline");
            m
        },
    ]
}
