//! Runs the real `yubin` binary in a temporary directory and talks to it
//! with clients nobody here wrote (Python's poplib, curl).

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_yubin");

/// A yubin server running in its own temporary data directory.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub pop3: SocketAddr,
    pub pop3s: SocketAddr,
    /// The MX listener.
    pub smtp: SocketAddr,
    /// Submission with STARTTLS.
    pub submission: SocketAddr,
    /// Submission with implicit TLS.
    pub submissions: SocketAddr,
    /// The Postfix policy service, when configured.
    pub policy: Option<SocketAddr>,
    child: Option<Child>,
    config_extra: String,
    env: Vec<(String, String)>,
    /// The DNS server the process asks when the test names none: it knows
    /// no name, so SPF, DKIM and DMARC checks on the MX listener answer
    /// at once (`none`) instead of waiting on a resolver the test machine
    /// may not reach.
    _dns: Option<yubin_test_dns::TestDns>,
}

/// Relayed mail goes nowhere (port 9 is closed) and is retried hourly.
const HOLD_QUEUE: &str = "[queue]\nroutes = { \"*\" = \"127.0.0.1:9\" }\nfirst_retry = \"1h\"\n";

/// How to build a server: extra TOML per section, and users.
pub struct Setup {
    /// Extra lines appended to the `[pop3]` table.
    pub pop3: String,
    /// Extra top-level lines.
    pub top: String,
    /// Extra lines appended to the `[smtp]` table.
    pub smtp: String,
    /// Extra tables appended at the end (e.g. `[pop_before_smtp]`).
    /// Without a `[queue]` table among them, relayed mail is held: routed
    /// to a closed port and retried hourly, so tests can look at the queue
    /// without the delivery engine emptying it.
    pub tables: String,
    /// `(name, password field)` lines of the passwd-file.
    pub users: Vec<(String, String)>,
    /// Listen on all addresses (for non-loopback tests).
    pub any_address: bool,
    /// `[users] login_penalty_max`: `"0"` (the default here) keeps every
    /// failure at `auth_failure_delay`, so tests that fail many logins on
    /// purpose are not slowed by the growing penalty.
    pub login_penalty_max: String,
    /// More `[users]` keys (`mail_location = ...`), each line ending in `\n`.
    pub users_table: String,
    /// The server's host name.
    pub hostname: String,
    /// The MX listener's port (0: any free one).
    pub smtp_port: u16,
    /// Environment variables for the server process (`SSL_CERT_FILE`).
    pub env: Vec<(String, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            pop3: "auth_failure_delay = \"100ms\"\n".into(),
            top: String::new(),
            smtp: "auth_failure_delay = \"100ms\"\n".into(),
            tables: String::new(),
            users: vec![
                ("alice".into(), "{PLAIN}alice-pw".into()),
                // Dovecot's `doveadm pw -s SHA512-CRYPT -p secret`.
                ("bob".into(), "{SHA512-CRYPT}$6$gUxx67c9oQ/CKtmm$NJ6jL1fZJFcXEX15LSCxVOqHEaKunNuRq6EsvlZ3nEZYNkutN0VWQE45fa0CILmHMxFG96CbkNwZ2Hib3m/z80".into()),
            ],
            any_address: false,
            login_penalty_max: "0".into(),
            users_table: String::new(),
            hostname: "test.example".into(),
            smtp_port: 0,
            env: Vec::new(),
        }
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with(Setup::default())
    }

    pub fn with(setup: Setup) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut passwd = String::new();
        for (name, password) in &setup.users {
            passwd.push_str(&format!("{name}:{password}\n"));
        }
        fs::write(dir.path().join("users"), passwd).expect("write users");
        let host = if setup.any_address {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        // Started as root, the server would become `nobody`, which cannot
        // enter a private temporary directory: tests stay root unless they
        // configure `[server]` themselves (then the directory is opened up,
        // as an ordinary checkout is).
        let server_table = if setup.top.contains("[server]") {
            fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("open up the directory");
            ""
        } else {
            "[server]\nallow_root = true\n"
        };
        let names_dns = setup.tables.contains("[dns]") || setup.tables.contains("\ndns = ");
        let dns = (!names_dns).then(|| yubin_test_dns::TestDns::start().expect("a DNS server"));
        let dns_table = dns
            .as_ref()
            .map(|dns| format!("[dns]\nresolver = \"{}\"\n", dns.addr()))
            .unwrap_or_default();
        let config_extra = format!(
            "hostname = \"{}\"\ndata_dir = \"{}\"\n{}\n{}[users]\nlogin_penalty_max = \"{}\"\n{}[pop3]\nlisten = [\"{host}:0\"]\nlisten_tls = [\"{host}:0\"]\n{}\n[smtp]\nlisten = [\"{host}:{}\"]\nsubmission = [\"{host}:0\"]\nsubmissions = [\"{host}:0\"]\n{}\n{}",
            setup.hostname,
            dir.path().display(),
            setup.top,
            server_table,
            setup.login_penalty_max,
            setup.users_table,
            setup.pop3,
            setup.smtp_port,
            setup.smtp,
            if setup.tables.contains("[queue]") {
                format!("{}\n{dns_table}", setup.tables)
            } else {
                format!("{}\n{HOLD_QUEUE}{dns_table}", setup.tables)
            },
        );
        let mut server = TestServer {
            dir,
            pop3: "127.0.0.1:0".parse().expect("address"),
            pop3s: "127.0.0.1:0".parse().expect("address"),
            smtp: "127.0.0.1:0".parse().expect("address"),
            submission: "127.0.0.1:0".parse().expect("address"),
            submissions: "127.0.0.1:0".parse().expect("address"),
            policy: None,
            child: None,
            config_extra,
            env: setup.env.clone(),
            _dns: dns,
        };
        server.launch();
        server
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("yubin.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts (or restarts) the process and waits for its listening lines.
    pub fn launch(&mut self) {
        fs::write(self.config_path(), &self.config_extra).expect("write config");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let start_len = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn yubin");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(self.log_path()).unwrap_or_default();
            let text = &text[start_len as usize..];
            let found = [
                "pop3 listening on ",
                "pop3s listening on ",
                "smtp listening on ",
                "submission listening on ",
                "submissions listening on ",
            ]
            .map(|marker| find_address(text, marker));
            let policy = find_address(text, "policy service listening on ");
            let want_policy = self.config_extra.contains("policy_listen");
            if let [Some(pop3), Some(pop3s), Some(smtp), Some(sub), Some(subs)] = found
                && (policy.is_some() || !want_policy)
            {
                self.policy = policy;
                let port = |a: SocketAddr| SocketAddr::from(([127, 0, 0, 1], a.port()));
                self.pop3 = port(pop3);
                self.pop3s = port(pop3s);
                self.smtp = port(smtp);
                self.submission = port(sub);
                self.submissions = port(subs);
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("yubin exited with {status} before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "yubin did not start listening:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("yubin did not stop within 15 s of SIGTERM");
        }
    }

    /// Kills the process with SIGKILL (a crash), without waiting for sessions.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("server is running")
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (log lines are written after the reply).
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "log never contained {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Maildir of a user without a domain (default layout).
    pub fn maildir(&self, user: &str) -> PathBuf {
        let root = self.dir.path().join("mail").join(user);
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(root.join(sub)).expect("create maildir");
        }
        root
    }

    /// Puts a message into a user's `new/` as another program would (no size tags).
    pub fn put_message(&self, user: &str, name: &str, content: &[u8]) {
        let path = self.maildir(user).join("new").join(name);
        fs::write(path, content).expect("write message");
    }

    /// The ids of the messages in the outbound queue.
    pub fn queued(&self) -> Vec<String> {
        let active = self.dir.path().join("queue").join("active");
        let mut ids: Vec<String> = fs::read_dir(active)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The file of queue entry `id`: its envelope, a blank line, then the
    /// message.
    pub fn queued_entry(&self, id: &str) -> String {
        fs::read_to_string(self.dir.path().join("queue/active").join(id)).expect("a queue entry")
    }

    /// The contents of every message in a user's new/ and cur/, in name
    /// order. A file removed between the listing and the read (the server
    /// may be committing a QUIT meanwhile) is not there any more, and left out.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let root = self.maildir(user);
        self.message_files(user)
            .iter()
            .filter_map(|name| match fs::read(root.join(name)) {
                Ok(data) => Some(data),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => panic!("read message {name}: {e}"),
            })
            .collect()
    }

    /// Every file in a user's new/ and cur/.
    pub fn message_files(&self, user: &str) -> Vec<String> {
        let root = self.maildir(user);
        let mut names = Vec::new();
        for sub in ["new", "cur"] {
            for entry in fs::read_dir(root.join(sub))
                .expect("read maildir")
                .flatten()
            {
                names.push(format!("{sub}/{}", entry.file_name().to_string_lossy()));
            }
        }
        names.sort();
        names
    }

    /// Runs a Python script with `HOST`, `PORT`, `PORT_TLS`, `SMTP_PORT`,
    /// `SUBMISSION_PORT` and `SUBMISSIONS_PORT` set, and parses
    /// its last stdout line as JSON.
    pub fn python(&self, script: &str, env: &[(&str, &str)]) -> serde_json::Value {
        let output = self.python_raw(script, env);
        assert!(
            output.status.success(),
            "python failed: {}\nstdout: {}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
            self.log()
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or("null");
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("bad JSON from python ({e}): {stdout}"))
    }

    pub fn python_raw(&self, script: &str, env: &[(&str, &str)]) -> Output {
        self.python_command(script, env)
            .output()
            .expect("run python3")
    }

    /// Starts a Python script in the background, its stdout piped.
    pub fn python_spawn(&self, script: &str, env: &[(&str, &str)]) -> Child {
        self.python_command(script, env)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3")
    }

    fn python_command(&self, script: &str, env: &[(&str, &str)]) -> Command {
        let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/py");
        let mut command = Command::new("python3");
        command
            .arg("-c")
            .arg(script)
            .env("PYTHONPATH", helper)
            .env("HOST", "127.0.0.1")
            .env("PORT", self.pop3.port().to_string())
            .env("PORT_TLS", self.pop3s.port().to_string())
            .env("SMTP_PORT", self.smtp.port().to_string())
            .env("SUBMISSION_PORT", self.submission.port().to_string())
            .env("SUBMISSIONS_PORT", self.submissions.port().to_string());
        for (k, v) in env {
            command.env(k, v);
        }
        command
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn find_address(log: &str, marker: &str) -> Option<SocketAddr> {
    let at = log.find(marker)? + marker.len();
    log[at..].split_whitespace().next()?.parse().ok()
}

/// What a client must receive for a stored message (RFC 1939 §3, §11):
/// every line ending (LF, CRLF, or a lone CR, which yubin treats as a line
/// end) becomes CRLF, and a last line without one gets one. Written
/// independently of the server's encoder.
pub fn expected_wire(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + stored.len() / 20 + 2);
    let mut i = 0;
    while i < stored.len() {
        match stored[i] {
            b'\r' if stored.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Runs a program and returns its output.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs `yubin` with arguments and stdin.
pub fn yubin(args: &[&str], stdin: &str, cwd: &Path) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn yubin");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("wait for yubin")
}

/// Decodes the hex strings of a JSON array.
pub fn hex_list(value: &serde_json::Value) -> Vec<Vec<u8>> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| unhex(v.as_str().expect("string")))
        .collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A field of /proc/PID/status (`Uid`, `CapEff`, ...), without its name.
pub fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map_or("", str::trim)
}

/// Whether the tests run as root (the project's machines do).
pub fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status_field(&status, "Uid").split_whitespace().nth(1) == Some("0")
}

/// Starts `tests/integration/py/SCRIPT` with `args`; the script binds a
/// free port itself (so no other test can take it in between) and prints
/// `ready PORT` once it listens. Returns the process and the port.
pub fn python_server(script: &str, args: &[&std::ffi::OsStr]) -> (Child, u16) {
    use std::io::BufRead;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/py")
        .join(script);
    let mut child = Command::new("python3")
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let port = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} did not start: {line:?}"));
    (child, port)
}

/// `yubin check-config` refuses the configuration `table` with status 2
/// and an error naming `key`.
pub fn assert_config_refused(table: &str, key: &str) {
    let dir = tempfile::tempdir().expect("a directory");
    let config = dir.path().join("yubin.toml");
    fs::write(&config, table).expect("write the configuration");
    let out = yubin(
        &["check-config", "--config", config.to_str().expect("UTF-8")],
        "",
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{table}: {stderr}");
    assert!(stderr.contains(key), "{table}: {stderr}");
}
