//! A private rspamd for the benchmark: its stock configuration, its DNS
//! pointed at the bench DNS server, its normal worker (HTTP) on a free
//! loopback port and its proxy worker (milter) on a unix socket, so that
//! yubin and Postfix are filtered by the same rspamd.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::servers::BENCH_DNS;

/// A running rspamd.
pub struct Rspamd {
    /// Its normal worker: `POST /checkv2`.
    pub normal: SocketAddr,
    /// Its proxy worker in milter mode (a unix socket: over TCP on
    /// loopback Postfix's milter steps wait for delayed ACKs).
    pub milter_socket: PathBuf,
    child: Child,
}

impl Rspamd {
    /// Starts rspamd with its files under `dir`, and waits until it
    /// answers.
    pub fn start(dir: &Path) -> Result<Rspamd> {
        if !Path::new("/usr/bin/rspamd").exists() {
            bail!(
                "rspamd is not installed: apt-get install rspamd (or --scenarios without rspamd)"
            );
        }
        let local = dir.join("local.d");
        for sub in [&local, &dir.join("run"), &dir.join("db")] {
            fs::create_dir_all(sub)?;
        }
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        let normal = probe.local_addr()?;
        let controller = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        drop(probe);
        let milter_socket = dir.join("run/milter.sock");
        for (name, text) in [
            (
                "options.inc",
                format!("dns {{ nameserver = [\"{BENCH_DNS}\"]; }}\n"),
            ),
            (
                "worker-normal.inc",
                format!("bind_socket = \"{normal}\";\n"),
            ),
            (
                "worker-controller.inc",
                format!("bind_socket = \"{controller}\";\n"),
            ),
            (
                "worker-proxy.inc",
                format!(
                    "bind_socket = \"{} mode=0666\";\nmilter = yes;\n\
                     upstream \"local\" {{ default = yes; hosts = \"{normal}\"; }}\n",
                    milter_socket.display()
                ),
            ),
            (
                "logging.inc",
                format!(
                    "type = \"file\"; filename = \"{}\"; level = \"error\";\n",
                    dir.join("rspamd.log").display()
                ),
            ),
        ] {
            fs::write(local.join(name), text)?;
        }
        let chown = Command::new("chown")
            .args(["-R", "_rspamd:_rspamd"])
            .arg(dir)
            .status()
            .context("chown the rspamd directory")?;
        if !chown.success() {
            bail!("chown _rspamd {}: failed", dir.display());
        }
        let var = |name: &str, path: &Path| format!("--var={name}={}", path.display());
        let child = Command::new("/usr/bin/rspamd")
            .args(["-f", "-u", "_rspamd", "-g", "_rspamd"])
            .arg(var("LOCAL_CONFDIR", dir))
            .arg(var("RUNDIR", &dir.join("run")))
            .arg(var("DBDIR", &dir.join("db")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start rspamd")?;
        let rspamd = Rspamd {
            normal,
            milter_socket,
            child,
        };
        rspamd.wait()?;
        Ok(rspamd)
    }

    /// Until the normal worker says `pong` and the milter socket takes a
    /// connection.
    fn wait(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let pong = TcpStream::connect_timeout(&self.normal, Duration::from_millis(500))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(b"GET /ping HTTP/1.0\r\n\r\n")?;
                    let mut answer = String::new();
                    s.read_to_string(&mut answer)?;
                    Ok(answer.contains("pong"))
                })
                .unwrap_or(false);
            if pong && std::os::unix::net::UnixStream::connect(&self.milter_socket).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!("rspamd did not answer within two minutes")
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        // SIGTERM: the main process stops its workers before it exits.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
