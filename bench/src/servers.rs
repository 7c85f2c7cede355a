//! Starting the servers under test: yubin, a private Dovecot in one of its
//! setups, a private Postfix (with OpenDKIM as its signing milter for the
//! signed relay scenario), and the trivial responder (the client's
//! ceiling).

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where the servers and their data live during a run.
pub struct Env {
    /// The working directory (temporary).
    pub work: PathBuf,
    /// The yubin binary.
    pub yubin: PathBuf,
    /// This binary (for the responder).
    pub bench: PathBuf,
    /// The passwd-file both servers read.
    pub users: PathBuf,
    /// The mail root: `<mail>/<user>` is a Maildir.
    pub mail: PathBuf,
    /// TLS certificate and key (PEM) both servers use.
    pub cert: PathBuf,
    /// The key.
    pub key: PathBuf,
}

/// Dovecot's three ways to run POP3 (the issue compares against the fastest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DovecotSetup {
    /// A new login process and a new mail process per connection (its default).
    Default,
    /// Login processes reused ("high-performance mode").
    ReuseLogin,
    /// Login and mail processes reused.
    ReuseAll,
}

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// yubin.
    Yubin,
    /// Dovecot.
    Dovecot(DovecotSetup),
    /// The trivial in-memory responder.
    Responder,
    /// A private Postfix (SMTP scenarios only).
    Postfix,
    /// yubin on a private PostgreSQL cluster (issue 16).
    YubinPg,
}

impl Kind {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Yubin => "yubin",
            Kind::Dovecot(DovecotSetup::Default) => "dovecot",
            Kind::Dovecot(DovecotSetup::ReuseLogin) => "dovecot-reuse-login",
            Kind::Dovecot(DovecotSetup::ReuseAll) => "dovecot-reuse-all",
            Kind::Responder => "responder",
            Kind::Postfix => "postfix",
            Kind::YubinPg => "yubin-pg",
        }
    }

    /// Whether this is yubin, on either backend.
    pub fn is_yubin(self) -> bool {
        matches!(self, Kind::Yubin | Kind::YubinPg)
    }
}

/// A running server.
pub struct Server {
    /// Plain POP3.
    pub pop3: SocketAddr,
    /// POP3S.
    pub pop3s: SocketAddr,
    /// SMTP (yubin's MX listener, Postfix's smtpd).
    pub smtp: SocketAddr,
    child: Option<Child>,
    /// Postfix's milters: OpenDKIM signing, or OpenDKIM and OpenDMARC
    /// verifying.
    milters: Vec<Child>,
    dovecot_config: Option<PathBuf>,
    postfix_config: Option<PathBuf>,
    pid: u32,
    /// yubin-pg's cluster (dropped after the node: fields drop after
    /// `Drop::drop`).
    pub pg: Option<yubin_test_pg::TestPostgres>,
}

/// The mode of `Server::start` in which mail from loopback is relayed to
/// `remote.example` (a closed port, so it stays queued) and signed with
/// [`dkim_key`]: yubin by itself, Postfix through OpenDKIM.
pub const SIGNED_RELAY: &str = "signed-relay";

/// The domain, selector and PEM key both servers sign with.
pub fn dkim_key(env: &Env) -> (&'static str, &'static str, PathBuf) {
    (
        "bench.example",
        "bench",
        env.work.join("dkim/bench.example/bench.key"),
    )
}

/// The mode of `Server::start` in which mail from outside is checked on
/// arrival (SPF, DKIM, DMARC): yubin by itself, Postfix through OpenDKIM
/// and OpenDMARC as milters, all asking the DNS server at [`BENCH_DNS`].
pub const INBOUND_AUTH: &str = "inbound-auth";

/// Where the DNS server of [`INBOUND_AUTH`] listens: port 53, since
/// OpenDMARC asks the resolver of `/etc/resolv.conf`, which has no port.
pub const BENCH_DNS: &str = "127.0.0.153:53";

/// The mode of `Server::start` (followed by the normal worker's
/// address) in which mail is filtered by one rspamd: yubin asks its normal
/// worker over HTTP, Postfix its proxy worker as a milter on the unix
/// socket [`rspamd_milter_socket`].
pub const RSPAMD_FILTER: &str = "rspamd=";

/// Where the bench's rspamd takes milter connections.
pub fn rspamd_milter_socket(env: &Env) -> PathBuf {
    env.work.join("rspamd/run/milter.sock")
}

/// Where relayed mail goes in [`SIGNED_RELAY`] mode: nothing listens.
const DEAD_END: &str = "127.0.0.1:9";

/// Distinct free ports: all bound at once, so none is handed out twice.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    for _ in 0..N {
        listeners.push(TcpListener::bind("127.0.0.1:0")?);
    }
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

fn wait_for_socket(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {}", path.display())
}

fn wait_for(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {addr}")
}

impl Server {
    /// Starts a server; `responder_mode` says what the responder serves,
    /// or, as [`SIGNED_RELAY`], how yubin and Postfix are set up.
    pub fn start(env: &Env, kind: Kind, responder_mode: &str) -> Result<Server> {
        let [pop3, pop3s, smtp, submission, submissions] = free_ports::<5>()?;
        let pop3: SocketAddr = format!("127.0.0.1:{pop3}").parse()?;
        let pop3s: SocketAddr = format!("127.0.0.1:{pop3s}").parse()?;
        let smtp: SocketAddr = format!("127.0.0.1:{smtp}").parse()?;
        let mut server = Server {
            pop3,
            pop3s,
            smtp,
            child: None,
            milters: Vec::new(),
            dovecot_config: None,
            postfix_config: None,
            pid: 0,
            pg: None,
        };
        match kind {
            Kind::Yubin | Kind::YubinPg => {
                let dir = env.work.join(kind.name());
                fs::create_dir_all(&dir)?;
                let storage = if kind == Kind::YubinPg {
                    let cluster = crate::pg::cluster(env, &dir)?;
                    // The node reaches the database on this machine over its
                    // Unix socket, as docs/scaling.md advises: over loopback
                    // TCP, PostgreSQL spent twice the CPU per RETR octet.
                    let url = cluster.socket_conninfo();
                    server.pg = Some(cluster);
                    format!(
                        "[storage]\nbackend = \"postgres\"\n[postgres]\nurl = \"{url}\"\npool_size = 32\n"
                    )
                } else {
                    String::new()
                };
                let config = dir.join("yubin.toml");
                fs::write(
                    &config,
                    format!(
                        "hostname = \"bench.example\"\ndata_dir = \"{dir}\"\n\
                         [server]\nallow_root = true\n\
                         [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
                         [users]\npasswd_file = \"{users}\"\nmail_location = \"{mail}/%u\"\n\
                         [pop3]\nlisten = [\"{pop3}\"]\nlisten_tls = [\"{pop3s}\"]\nmax_connections = 20000\n\
                         [smtp]\nlisten = [\"{smtp}\"]\nsubmission = [\"127.0.0.1:{sub}\"]\n\
                         submissions = [\"127.0.0.1:{subs}\"]\nmax_connections = 1000\n{signed}\
                         [inbound]\nauthentication = {checked}\n{dns}{filter}{storage}",
                        checked = responder_mode == INBOUND_AUTH,
                        filter = match responder_mode.strip_prefix(RSPAMD_FILTER) {
                            Some(normal) =>
                                format!("[[filter]]\nkind = \"rspamd\"\naddress = \"{normal}\"\n"),
                            None => String::new(),
                        },
                        dns = if responder_mode == INBOUND_AUTH {
                            format!("[dns]\nresolver = \"{BENCH_DNS}\"\n")
                        } else {
                            String::new()
                        },
                        signed = if responder_mode == SIGNED_RELAY {
                            let (domain, selector, key) = dkim_key(env);
                            format!(
                                "relay_networks = [\"127.0.0.0/8\"]\n\
                                 [queue]\nroutes = {{ \"remote.example\" = \"{DEAD_END}\" }}\nfirst_retry = \"1h\"\n\
                                 [dkim.domains.\"{domain}\"]\nselector = \"{selector}\"\nkey = \"{}\"\n",
                                key.display()
                            )
                        } else {
                            String::new()
                        },
                        sub = submission,
                        subs = submissions,
                        dir = dir.display(),
                        cert = env.cert.display(),
                        key = env.key.display(),
                        users = env.users.display(),
                        mail = env.mail.display(),
                    ),
                )?;
                let log = fs::File::create(dir.join("yubin.log"))?;
                let child = Command::new(&env.yubin)
                    .args(["serve", "--config"])
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .with_context(|| format!("start {}", env.yubin.display()))?;
                server.pid = child.id();
                server.child = Some(child);
            }
            Kind::Responder => {
                let child = Command::new(&env.bench)
                    .args([
                        "responder",
                        "--port",
                        &pop3.port().to_string(),
                        "--tls-port",
                        &pop3s.port().to_string(),
                    ])
                    .args(["--mode", responder_mode, "--cert"])
                    .arg(&env.cert)
                    .arg("--key")
                    .arg(&env.key)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start the responder")?;
                server.pid = child.id();
                server.child = Some(child);
            }
            Kind::Postfix => {
                let dir = env.work.join(format!("postfix-{}", smtp.port()));
                for sub in ["etc", "spool", "data"] {
                    fs::create_dir_all(dir.join(sub))?;
                }
                let postfix = nix::unistd::User::from_name("postfix")?
                    .context("no postfix user (apt-get install postfix)")?;
                nix::unistd::chown(&dir.join("data"), Some(postfix.uid), Some(postfix.gid))?;
                let mut main = postfix_main(env, &dir);
                if responder_mode == SIGNED_RELAY {
                    // A unix socket: over TCP on loopback each milter step
                    // waits for delayed ACKs, and Postfix is 9 times slower.
                    let socket = dir.join("opendkim.sock");
                    server.milters.push(start_opendkim(env, &dir, &socket)?);
                    wait_for_socket(&socket)?;
                    main.push_str(&format!(
                        "smtpd_milters = unix:{}\n\
                         milter_default_action = tempfail\n\
                         relayhost = [127.0.0.1]:9\n",
                        socket.display()
                    ));
                }
                if responder_mode.starts_with(RSPAMD_FILTER) {
                    main.push_str(&format!(
                        "smtpd_milters = unix:{}\n\
                         milter_default_action = tempfail\n\
                         milter_protocol = 6\n",
                        rspamd_milter_socket(env).display()
                    ));
                }
                if responder_mode == INBOUND_AUTH {
                    let dkim_socket = dir.join("opendkim.sock");
                    let dmarc_socket = dir.join("opendmarc.sock");
                    server
                        .milters
                        .push(start_verifying_opendkim(&dir, &dkim_socket)?);
                    server.milters.push(start_opendmarc(&dir, &dmarc_socket)?);
                    wait_for_socket(&dkim_socket)?;
                    wait_for_socket(&dmarc_socket)?;
                    main.push_str(&format!(
                        "smtpd_milters = unix:{}, unix:{}\n\
                         milter_default_action = tempfail\n",
                        dkim_socket.display(),
                        dmarc_socket.display()
                    ));
                }
                fs::write(dir.join("etc/main.cf"), main)?;
                fs::write(dir.join("etc/master.cf"), postfix_master(smtp))?;
                // Postfix forbids regexp substitution here: list the users.
                let map: String = (0..100)
                    .map(|n| format!("u{n}@bench.example u{n}/\n"))
                    .collect();
                fs::write(dir.join("etc/vmailbox"), map)?;
                let log = fs::File::create(dir.join("postfix.log"))?;
                let child = Command::new("/usr/sbin/postfix")
                    .arg("-c")
                    .arg(dir.join("etc"))
                    .arg("start-fg")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .context("start /usr/sbin/postfix (apt-get install postfix)")?;
                server.pid = child.id();
                server.child = Some(child);
                server.postfix_config = Some(dir.join("etc"));
                wait_for(smtp)?;
                return Ok(server);
            }
            Kind::Dovecot(setup) => {
                let dir = env.work.join(format!("dovecot-{}", pop3.port()));
                fs::create_dir_all(dir.join("state"))?;
                let config = dir.join("dovecot.conf");
                fs::write(&config, dovecot_config(env, &dir, pop3, pop3s, setup))?;
                let status = Command::new("/usr/sbin/dovecot")
                    .arg("-c")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .context("start /usr/sbin/dovecot (install dovecot-pop3d)")?;
                if !status.success() {
                    bail!(
                        "dovecot did not start; see {}",
                        dir.join("dovecot.log").display()
                    );
                }
                server.dovecot_config = Some(config);
                wait_for(pop3)?;
                // The master writes its pid file a moment after it listens.
                let pid_file = dir.join("run/master.pid");
                let deadline = Instant::now() + Duration::from_secs(10);
                server.pid = loop {
                    let pid = fs::read_to_string(&pid_file)
                        .ok()
                        .and_then(|p| p.trim().parse().ok());
                    match pid {
                        Some(pid) => break pid,
                        None if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        None => bail!("no pid in {}", pid_file.display()),
                    }
                };
            }
        }
        wait_for(pop3)?;
        wait_for(pop3s)?;
        if kind.is_yubin() {
            wait_for(smtp)?;
        }
        if let Some(cluster) = &server.pg {
            crate::pg::reset(cluster)?;
        }
        Ok(server)
    }

    /// The root of the server's process tree.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server and waits for it (also done when dropped, so an
    /// error in a scenario leaves no server behind).
    pub fn stop(self) {}

    /// On PostgreSQL: the statements the node ran since it started (or
    /// since the last call), each one round trip.
    pub fn db_statements(&self) -> Option<u64> {
        let cluster = self.pg.as_ref()?;
        let count = crate::pg::statements(cluster).ok()?;
        crate::pg::reset(cluster).ok()?;
        Some(count)
    }

    /// On PostgreSQL: the messages in the maildrops.
    pub fn db_messages(&self) -> Option<u64> {
        crate::pg::messages(self.pg.as_ref()?).ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for mut milter in self.milters.drain(..) {
            let _ = milter.kill();
            let _ = milter.wait();
        }
        if let Some(config) = self.postfix_config.take() {
            let _ = Command::new("/usr/sbin/postfix")
                .arg("-c")
                .arg(&config)
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(config) = self.dovecot_config.take() {
            let _ = Command::new("/usr/sbin/dovecot")
                .arg("-c")
                .arg(&config)
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// OpenDKIM signing for the domain of [`dkim_key`], relaxed/relaxed, for
/// mail from loopback, as Postfix's milter on the unix `socket`.
fn start_opendkim(env: &Env, dir: &Path, socket: &Path) -> Result<Child> {
    if !Path::new("/usr/sbin/opendkim").exists() {
        bail!("OpenDKIM is not installed: apt-get install opendkim (or --servers without postfix)");
    }
    let (domain, selector, key) = dkim_key(env);
    let config = dir.join("opendkim.conf");
    fs::write(
        &config,
        format!(
            "Mode s\nDomain {domain}\nSelector {selector}\nKeyFile {}\n\
             Socket local:{socket}\nUMask 000\nInternalHosts 127.0.0.0/8\n\
             Canonicalization relaxed/relaxed\nBackground no\nSyslog no\n\
             RequireSafeKeys no\n\
             PidFile {}\n",
            key.display(),
            dir.join("opendkim.pid").display(),
            socket = socket.display()
        ),
    )?;
    Command::new("/usr/sbin/opendkim")
        .arg("-f")
        .arg("-x")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start /usr/sbin/opendkim")
}

/// Runs `program` with `args` where `/etc/resolv.conf` names only
/// [`BENCH_DNS`]: in a mount namespace of its own, over which a private
/// resolv.conf is bind-mounted (the machine's file is not touched).
fn with_bench_resolver(dir: &Path, program: &str, args: &[&std::ffi::OsStr]) -> Result<Child> {
    let resolv = dir.join("resolv.conf");
    let host = BENCH_DNS.trim_end_matches(":53");
    fs::write(
        &resolv,
        format!("nameserver {host}\noptions attempts:1 timeout:2\n"),
    )?;
    // util-linux's, on every Debian system.
    let mut command = Command::new("/usr/bin/unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"",
            resolv.display()
        ))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
        .spawn()
        .with_context(|| format!("start {program} in its own mount namespace (unshare)"))
}

/// OpenDKIM verifying every signature of mail from anywhere (loopback
/// included), its results in an Authentication-Results field.
fn start_verifying_opendkim(dir: &Path, socket: &Path) -> Result<Child> {
    if !Path::new("/usr/sbin/opendkim").exists() {
        bail!("OpenDKIM is not installed: apt-get install opendkim (or --servers without postfix)");
    }
    let config = dir.join("opendkim-verify.conf");
    fs::write(
        &config,
        format!(
            "Mode v\nSocket local:{socket}\nUMask 000\nInternalHosts 192.0.2.1\n\
             AuthservID bench.example\nNameservers {dns}\nBackground no\nSyslog no\nPidFile {}\n",
            dir.join("opendkim-verify.pid").display(),
            dns = BENCH_DNS.trim_end_matches(":53"),
            socket = socket.display()
        ),
    )?;
    with_bench_resolver(
        dir,
        "/usr/sbin/opendkim",
        &["-f".as_ref(), "-x".as_ref(), config.as_os_str()],
    )
}

/// OpenDMARC checking SPF itself and DMARC on OpenDKIM's results, for
/// mail from anywhere, rejecting failures (as yubin's default does).
fn start_opendmarc(dir: &Path, socket: &Path) -> Result<Child> {
    if !Path::new("/usr/sbin/opendmarc").exists() {
        bail!(
            "OpenDMARC is not installed: apt-get install opendmarc (or --servers without postfix)"
        );
    }
    let ignore = dir.join("opendmarc-ignore");
    fs::write(&ignore, "192.0.2.1\n")?;
    let config = dir.join("opendmarc.conf");
    fs::write(
        &config,
        format!(
            "Socket local:{socket}\nUMask 000\nAuthservID bench.example\n\
             TrustedAuthservIDs bench.example\nIgnoreHosts {ignore}\n\
             SPFSelfValidate true\nRejectFailures true\nBackground false\nSyslog false\n\
             PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat\nPidFile {}\n",
            dir.join("opendmarc.pid").display(),
            socket = socket.display(),
            ignore = ignore.display(),
        ),
    )?;
    with_bench_resolver(
        dir,
        "/usr/sbin/opendmarc",
        &["-f".as_ref(), "-c".as_ref(), config.as_os_str()],
    )
}

/// A private Dovecot: own base_dir, own ports, the same passwd-file and
/// Maildirs as yubin, mail processes as `nobody` (Dovecot refuses root).
fn dovecot_config(
    env: &Env,
    dir: &Path,
    pop3: SocketAddr,
    pop3s: SocketAddr,
    setup: DovecotSetup,
) -> String {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (login, mail) = match setup {
        DovecotSetup::Default => (String::new(), String::new()),
        DovecotSetup::ReuseLogin => (
            format!("  service_count = 0\n  process_min_avail = {cores}\n"),
            String::new(),
        ),
        DovecotSetup::ReuseAll => (
            format!("  service_count = 0\n  process_min_avail = {cores}\n"),
            format!("  service_count = 1000\n  process_min_avail = {cores}\n"),
        ),
    };
    // The pop3 service has its own process_limit of 1024, which 2,000 idle
    // sessions (one process each) would hit.
    let mail = format!("service pop3 {{\n  process_limit = 5000\n{mail}}}\n");
    format!(
        "base_dir = {dir}/run\nstate_dir = {dir}/state\ninstance_name = bench-{port}\n\
         protocols = pop3\nlisten = 127.0.0.1\n\
         ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n\
         disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
         log_path = {dir}/dovecot.log\n\
         mail_location = maildir:{mail}/%u\n\
         default_process_limit = 5000\ndefault_client_limit = 20000\n\
         mail_max_userip_connections = 10000\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=CRYPT {users}\n}}\n\
         userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={dir}/home/%u\n}}\n\
         service pop3-login {{\n  chroot =\n{login}  inet_listener pop3 {{\n    port = {port}\n  }}\n  inet_listener pop3s {{\n    port = {tls_port}\n    ssl = yes\n  }}\n}}\n\
         {mail_service}\
         service anvil {{\n  chroot =\n}}\n",
        dir = dir.display(),
        port = pop3.port(),
        tls_port = pop3s.port(),
        cert = env.cert.display(),
        key = env.key.display(),
        mail = env.mail.display(),
        users = env.users.display(),
        mail_service = mail,
    )
}

/// A private Postfix taking mail for `u<N>@bench.example` into the same
/// Maildirs (virtual(8), as nobody). Its queue is fsynced before `250` as
/// always. `in_flow_delay = 0`: by default Postfix slows senders down when
/// delivery lags; the scenario counts until every message is in its Maildir,
/// so the backlog is paid for either way.
fn postfix_main(env: &Env, dir: &Path) -> String {
    format!(
        "compatibility_level = 3.6\n\
         queue_directory = {dir}/spool\n\
         data_directory = {dir}/data\n\
         mail_owner = postfix\n\
         setgid_group = postdrop\n\
         myhostname = postfix.bench.example\n\
         mydestination =\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         mynetworks = 127.0.0.0/8\n\
         maillog_file = /dev/stdout\n\
         virtual_mailbox_domains = bench.example\n\
         virtual_mailbox_base = {mail}\n\
         virtual_mailbox_maps = texthash:{dir}/etc/vmailbox\n\
         virtual_uid_maps = static:65534\n\
         virtual_gid_maps = static:65534\n\
         virtual_minimum_uid = 100\n\
         in_flow_delay = 0\n\
         alias_maps =\n\
         alias_database =\n\
         smtputf8_enable = no\n",
        dir = dir.display(),
        mail = env.mail.display(),
    )
}

/// Postfix's services, unchrooted, smtpd on our port.
fn postfix_master(smtp: SocketAddr) -> String {
    format!(
        "{smtp} inet n - n - - smtpd\n\
         pickup    unix  n - n 60 1 pickup\n\
         cleanup   unix  n - n -  0 cleanup\n\
         qmgr      unix  n - n 300 1 qmgr\n\
         rewrite   unix  - - n -  - trivial-rewrite\n\
         bounce    unix  - - n -  0 bounce\n\
         defer     unix  - - n -  0 bounce\n\
         trace     unix  - - n -  0 bounce\n\
         verify    unix  - - n -  1 verify\n\
         flush     unix  n - n 1000? 0 flush\n\
         proxymap  unix  - - n -  - proxymap\n\
         smtp      unix  - - n -  - smtp\n\
         relay     unix  - - n -  - smtp\n\
         showq     unix  n - n -  - showq\n\
         error     unix  - - n -  - error\n\
         retry     unix  - - n -  - error\n\
         discard   unix  - - n -  - discard\n\
         virtual   unix  - n n -  - virtual\n\
         anvil     unix  - - n -  1 anvil\n\
         scache    unix  - - n -  1 scache\n\
         postlog   unix-dgram n - n - 1 postlogd\n"
    )
}
