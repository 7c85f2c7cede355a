//! Scenario 7, SMTP in: sessions deliver 4 KB messages to local users over
//! one connection each (MAIL, RCPT and DATA pipelined, RFC 2920), and the
//! clock runs until every accepted message is in its Maildir. yubin says
//! `250` only after the Maildir copy is fsynced; Postfix after its queue
//! file is fsynced, then delivers (the scenario waits for that too).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::data::{self, user};
use crate::procs;
use crate::scenarios::{Ctx, Measurement, measurement};
use crate::servers::{Kind, SIGNED_RELAY, Server};

/// A minimal SMTP client: strict about reply codes.
struct SmtpClient {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl SmtpClient {
    async fn connect(addr: SocketAddr) -> Result<SmtpClient> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let mut client = SmtpClient {
            stream: BufReader::with_capacity(16 * 1024, tcp),
            line: Vec::with_capacity(512),
        };
        client.expect(220).await.context("greeting")?;
        client.send(b"EHLO bench.client\r\n").await?;
        client.expect(250).await.context("EHLO")?;
        Ok(client)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Reads a whole (possibly multi-line) reply and checks its code.
    async fn expect(&mut self, code: u16) -> Result<()> {
        loop {
            self.line.clear();
            if self.stream.read_until(b'\n', &mut self.line).await? == 0 {
                bail!("connection closed");
            }
            let text = String::from_utf8_lossy(&self.line);
            ensure!(
                text.len() >= 4 && text[..3] == code.to_string(),
                "expected {code}, server said {:?}",
                text.trim_end()
            );
            if text.as_bytes()[3] != b'-' {
                return Ok(());
            }
        }
    }

    /// One transaction from `from`; `data` is already dot-stuffed and ends
    /// with CRLF.
    async fn deliver_from(&mut self, from: &str, rcpt: &str, data: &[u8]) -> Result<()> {
        let envelope = format!("MAIL FROM:<{from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
        self.send(envelope.as_bytes()).await?;
        self.expect(250).await.context("MAIL")?;
        self.expect(250).await.context("RCPT")?;
        self.expect(354).await.context("DATA")?;
        self.send(data).await?;
        self.send(b".\r\n").await?;
        self.expect(250).await.context("end of data")
    }

    async fn quit(mut self) -> Result<()> {
        self.send(b"QUIT\r\n").await?;
        self.expect(221).await
    }
}

/// `sessions` connections, each sending `wire` from `from` to its own
/// recipient (`rcpt(n)`) until `deadline`; the number of messages the
/// server accepted.
pub(crate) async fn send_until(
    addr: SocketAddr,
    sessions: usize,
    deadline: Instant,
    wire: std::sync::Arc<Vec<u8>>,
    from: &'static str,
    rcpt: impl Fn(usize) -> String,
) -> Result<u64> {
    let mut tasks = Vec::new();
    for n in 0..sessions {
        let wire = wire.clone();
        let rcpt = rcpt(n);
        tasks.push(tokio::spawn(async move {
            let mut client = SmtpClient::connect(addr).await?;
            let mut sent = 0u64;
            while Instant::now() < deadline {
                client.deliver_from(from, &rcpt, &wire).await?;
                sent += 1;
            }
            client.quit().await?;
            Ok::<_, anyhow::Error>(sent)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total)
}

/// SMTP's DATA form of a stored message: CRLF line ends, leading dots doubled.
pub(crate) fn smtp_data(stored: &[u8]) -> Vec<u8> {
    let wire = data::wire(stored);
    let mut out = Vec::with_capacity(wire.len() + 64);
    for line in wire.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}

fn maildir_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("new")).map_or(0, |d| d.count())
}

/// Waits (two minutes at most) until the `accepted` messages are in the
/// Maildirs of the first `sessions` users; how many are.
pub(crate) fn wait_for_delivery(ctx: &Ctx, sessions: usize, accepted: u64) -> usize {
    let wait_until = Instant::now() + Duration::from_secs(120);
    loop {
        let stored: usize = (0..sessions)
            .map(|n| maildir_count(&ctx.env.mail.join(user(n))))
            .sum();
        if stored as u64 >= accepted || Instant::now() > wait_until {
            return stored;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 7: `sessions` connections, each sending 4 KB messages to its own user
/// until the time is up.
pub fn smtp_in(ctx: &Ctx, kinds: &[Kind]) -> Result<Vec<Measurement>> {
    let sessions = if ctx.smoke { 2 } else { 10 };
    let content = data::message(0, 4096);
    let body_at = content
        .windows(2)
        .position(|w| w == b"\n\n")
        .context("message without a body")?;
    let body = content[body_at..].to_vec();
    let wire = std::sync::Arc::new(smtp_data(&content));
    let mut out = Vec::new();
    for &kind in kinds {
        ctx.seed(kind, &|mail| {
            for n in 0..sessions {
                for sub in ["tmp", "new", "cur"] {
                    std::fs::create_dir_all(mail.join(user(n)).join(sub))?;
                }
            }
            Ok(())
        })?;
        let server = Server::start(&ctx.env, kind, "smtp")?;
        let addr = server.smtp;
        let before = (procs::usage(server.pid()), procs::own_cpu());
        let deadline = Instant::now() + ctx.duration();
        let started = Instant::now();
        let accepted = ctx.runtime.block_on(send_until(
            addr,
            sessions,
            deadline,
            wire.clone(),
            "sender@remote.example",
            |n| format!("{}@bench.example", user(n)),
        ));
        let accepted_after = started.elapsed().as_secs_f64();
        let accepted = accepted.with_context(|| format!("smtp against {}", kind.name()))?;
        // On PostgreSQL a 250 follows the commit: everything is there.
        let stored = match server.db_messages() {
            Some(stored) => usize::try_from(stored).unwrap_or(usize::MAX),
            None => wait_for_delivery(ctx, sessions, accepted),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let after = (procs::usage(server.pid()), procs::own_cpu());
        let statements = server.db_statements();
        let on_postgres = server.pg.is_some();
        server.stop();
        ensure!(
            stored as u64 == accepted,
            "{}: {accepted} messages accepted, {stored} in the maildrops",
            kind.name()
        );
        // Every 50th message of each user: the body arrived intact.
        for n in (0..sessions).filter(|_| !on_postgres) {
            let dir = ctx.env.mail.join(user(n)).join("new");
            for entry in std::fs::read_dir(&dir)?.step_by(50) {
                let file = std::fs::read(entry?.path())?;
                ensure!(
                    file.ends_with(&body),
                    "{}: a message in {} lost its body",
                    kind.name(),
                    dir.display()
                );
            }
        }
        out.push(measurement(
            "smtp",
            &format!("c={sessions} 4KB"),
            kind,
            accepted as f64 / elapsed,
            "messages/s",
            true,
            serde_json::json!({
                "messages": accepted,
                "accepted_per_s": accepted as f64 / accepted_after,
                "server_cpu_s": after.0.cpu - before.0.cpu,
                "client_cpu_s": after.1 - before.1,
                "seconds": elapsed,
                "db_round_trips": crate::scenarios::per(
                    statements,
                    usize::try_from(accepted).unwrap_or(usize::MAX)
                ),
            }),
        ));
    }
    Ok(out)
}

/// 8, signed relay: `sessions` connections from a trusted network submit
/// 4 KB messages from `sender@bench.example` for a remote domain; each is
/// queued and signed with a 2048-bit RSA key (rsa-sha256, relaxed/relaxed)
/// before `250`: yubin itself, Postfix through OpenDKIM as its milter. The
/// figure is messages accepted per second; the queues are then checked for
/// the signatures.
pub fn smtp_signed(ctx: &Ctx, kinds: &[Kind]) -> Result<Vec<Measurement>> {
    let sessions = if ctx.smoke { 2 } else { 10 };
    let wire = std::sync::Arc::new(smtp_data(&data::message(0, 4096)));
    make_key(ctx)?;
    let mut out = Vec::new();
    for &kind in kinds {
        ctx.seed(kind, &|_| Ok(()))?;
        let server = Server::start(&ctx.env, kind, SIGNED_RELAY)?;
        let addr = server.smtp;
        let before = (procs::usage(server.pid()), procs::own_cpu());
        let deadline = Instant::now() + ctx.duration();
        let started = Instant::now();
        let accepted = ctx.runtime.block_on(send_until(
            addr,
            sessions,
            deadline,
            wire.clone(),
            "sender@bench.example",
            |n| format!("reader{n}@remote.example"),
        ));
        let elapsed = started.elapsed().as_secs_f64();
        let after = (procs::usage(server.pid()), procs::own_cpu());
        let accepted = accepted.with_context(|| format!("signed relay against {}", kind.name()))?;
        let signed = signed_in_queue(ctx, kind)?;
        server.stop();
        ensure!(
            signed > 0,
            "{}: no DKIM-Signature by s=bench in its queue",
            kind.name()
        );
        out.push(measurement(
            "smtp",
            &format!("c={sessions} 4KB relay DKIM-signed"),
            kind,
            accepted as f64 / elapsed,
            "messages/s",
            true,
            serde_json::json!({
                "messages": accepted,
                "signed_in_sample": signed,
                "server_cpu_s": after.0.cpu - before.0.cpu,
                "client_cpu_s": after.1 - before.1,
                "seconds": elapsed,
            }),
        ));
    }
    Ok(out)
}

/// The RSA key both servers sign with, made by `yubin dkim keygen` (once).
fn make_key(ctx: &Ctx) -> Result<()> {
    let (domain, selector, key) = crate::servers::dkim_key(&ctx.env);
    if key.exists() {
        return Ok(());
    }
    let config = ctx.env.work.join("dkim.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[server]\nallow_root = true\n",
            ctx.env.work.display()
        ),
    )?;
    let made = std::process::Command::new(&ctx.env.yubin)
        .args(["dkim", "keygen", domain, "--selector", selector, "--config"])
        .arg(&config)
        .output()
        .context("yubin dkim keygen")?;
    ensure!(
        made.status.success(),
        "yubin dkim keygen: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    Ok(())
}

/// How many of (up to) 20 queued messages carry the signature: yubin's
/// queue entries, Postfix's queue files (the header is stored as text).
fn signed_in_queue(ctx: &Ctx, kind: Kind) -> Result<usize> {
    let roots: Vec<std::path::PathBuf> = match kind {
        Kind::Yubin => vec![ctx.env.work.join("yubin/queue/active")],
        _ => std::fs::read_dir(&ctx.env.work)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("postfix-"))
            })
            .flat_map(|p| ["incoming", "active", "deferred"].map(|q| p.join("spool").join(q)))
            .collect(),
    };
    let mut files = Vec::new();
    let mut dirs = roots;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if files.len() < 20 {
                files.push(path);
            }
        }
    }
    let needle = b"DKIM-Signature: v=1; a=rsa-sha256";
    Ok(files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .filter(|bytes| {
            bytes.windows(needle.len()).any(|w| w == needle)
                && bytes.windows(7).any(|w| w == b"s=bench")
        })
        .count())
}
