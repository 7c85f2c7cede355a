//! The scenarios. Each seeds fresh data for every server, measures, and
//! verifies what the client received, so a fast wrong server cannot win.

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::client::Client;
use crate::data::{self, PASSWORD, user};
use crate::procs;
use crate::servers::{Env, Kind, Server};

/// One figure for one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// Scenario name (`login`, `retrieval`, …).
    pub scenario: String,
    /// Variant (`c=10`, `tls`, `untagged cold`, …).
    pub variant: String,
    /// Which server.
    pub server: String,
    /// The figure.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// Whether more is better (sessions/s) or less (seconds, KiB).
    pub higher_is_better: bool,
    /// Other figures (latencies, CPU of the server and of the load generator).
    pub details: serde_json::Value,
}

/// What every scenario needs.
pub struct Ctx {
    /// Servers and data.
    pub env: Env,
    /// The load generator's runtime.
    pub runtime: tokio::runtime::Runtime,
    /// TLS client settings.
    pub tls: tokio_rustls::TlsConnector,
    /// Shorter runs and smaller data (CI: correctness only).
    pub smoke: bool,
}

impl Ctx {
    pub(crate) fn duration(&self) -> Duration {
        if self.smoke {
            Duration::from_millis(700)
        } else {
            Duration::from_secs(5)
        }
    }

    /// Replaces the mail tree with fresh data written by `seed`.
    pub(crate) fn seed(
        &self,
        kind: Kind,
        seed: &dyn Fn(&std::path::Path) -> Result<()>,
    ) -> Result<()> {
        if self.env.mail.exists() {
            fs::remove_dir_all(&self.env.mail)?;
        }
        fs::create_dir_all(&self.env.mail)?;
        seed(&self.env.mail)?;
        if matches!(kind, Kind::Dovecot(_) | Kind::Postfix) {
            data::chown_nobody(&self.env.mail)?;
        }
        Ok(())
    }
}

pub(crate) fn measurement(
    scenario: &str,
    variant: &str,
    kind: Kind,
    value: f64,
    unit: &str,
    higher: bool,
    details: serde_json::Value,
) -> Measurement {
    Measurement {
        scenario: scenario.into(),
        variant: variant.into(),
        server: kind.name().into(),
        value,
        unit: unit.into(),
        higher_is_better: higher,
        details,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// 1 (and 6): C clients loop connect, USER/PASS, STAT, QUIT.
pub fn login(ctx: &Ctx, kinds: &[Kind], clients: usize, tls: bool) -> Result<Vec<Measurement>> {
    let variant = format!("{}c={clients}", if tls { "tls " } else { "" });
    let mut out = Vec::new();
    for &kind in kinds {
        ctx.seed(kind, &|mail| {
            for n in 0..clients {
                data::write_maildir(
                    &mail.join(user(n)),
                    (0..10).map(|i| (i, data::message(i, 1000))),
                    true,
                )?;
            }
            Ok(())
        })?;
        let server = Server::start(&ctx.env, kind, "login")?;
        let addr = if tls { server.pop3s } else { server.pop3 };
        let before = (procs::usage(server.pid()), procs::own_cpu());
        let deadline = Instant::now() + ctx.duration();
        let started = Instant::now();
        let latencies = ctx.runtime.block_on(async {
            let mut tasks = Vec::new();
            for n in 0..clients {
                let connector = ctx.tls.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let mut client = Client::connect(addr, tls.then_some(&connector)).await?;
                        client.login(&user(n), PASSWORD).await?;
                        let (count, _) = client.stat().await?;
                        ensure!(
                            count == 10 || kind == Kind::Responder,
                            "STAT says {count} messages, not 10"
                        );
                        client.quit().await?;
                        latencies.push(t.elapsed());
                    }
                    Ok::<_, anyhow::Error>(latencies)
                }));
            }
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await??);
            }
            Ok::<_, anyhow::Error>(all)
        });
        let elapsed = started.elapsed().as_secs_f64();
        let after = (procs::usage(server.pid()), procs::own_cpu());
        let statements = server.db_statements();
        server.stop();
        let mut latencies = latencies.with_context(|| format!("login against {}", kind.name()))?;
        latencies.sort();
        let rate = latencies.len() as f64 / elapsed;
        let trips = per(statements, latencies.len());
        out.push(measurement(
            "login",
            &variant,
            kind,
            rate,
            "sessions/s",
            true,
            serde_json::json!({
                "sessions": latencies.len(),
                "p50_ms": percentile(&latencies, 0.5),
                "p99_ms": percentile(&latencies, 0.99),
                "server_cpu_s": after.0.cpu - before.0.cpu,
                "client_cpu_s": after.1 - before.1,
                "seconds": elapsed,
                "db_round_trips": trips,
            }),
        ));
    }
    Ok(out)
}

/// Database statements per operation, where counted.
pub(crate) fn per(statements: Option<u64>, operations: usize) -> Option<f64> {
    statements.map(|n| n as f64 / operations.max(1) as f64)
}

/// 2: 20 mailboxes × 500 messages of ~10 KB; 10 clients take a mailbox each:
/// UIDL, RETR all (checked), DELE all, QUIT.
pub fn retrieval(ctx: &Ctx, kinds: &[Kind]) -> Result<Vec<Measurement>> {
    let (mailboxes, per_box, clients) = if ctx.smoke { (4, 50, 2) } else { (20, 500, 10) };
    // The responder always serves 500 messages; expect up to that many.
    let expected: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..per_box.max(500))
            .map(|n| data::wire(&data::message(n, 10_000)))
            .collect(),
    );
    let mut out = Vec::new();
    for &kind in kinds {
        ctx.seed(kind, &|mail| {
            for b in 0..mailboxes {
                data::write_maildir(
                    &mail.join(user(b)),
                    (0..per_box).map(|n| (n, data::message(n, 10_000))),
                    true,
                )?;
            }
            Ok(())
        })?;
        let server = Server::start(&ctx.env, kind, "retrieval")?;
        let addr = server.pop3;
        let queue = Arc::new(Mutex::new((0..mailboxes).collect::<Vec<_>>()));
        let before = (procs::usage(server.pid()), procs::own_cpu());
        let started = Instant::now();
        let result = ctx.runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let queue = queue.clone();
                let expected = expected.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut messages, mut bytes) = (0u64, 0u64);
                    let mut body = Vec::with_capacity(16 * 1024);
                    loop {
                        let Some(mailbox) = queue.lock().await.pop() else {
                            return Ok::<_, anyhow::Error>((messages, bytes));
                        };
                        let mut client = Client::connect(addr, None).await?;
                        client.login(&user(mailbox), PASSWORD).await?;
                        let uids = client.uidl().await?;
                        ensure!(
                            uids.len() == per_box || kind == Kind::Responder,
                            "UIDL listed {} messages",
                            uids.len()
                        );
                        let sizes = client.list().await?;
                        ensure!(sizes.len() == uids.len(), "LIST and UIDL disagree");
                        for n in 1..=uids.len() {
                            client.retr(n, &mut body).await?;
                            let number = data::message_number(&body)
                                .context("message without its number")?;
                            ensure!(
                                expected.get(number) == Some(&body),
                                "message {n} of {} differs",
                                user(mailbox)
                            );
                            ensure!(
                                sizes[n - 1] == body.len() as u64,
                                "LIST size of message {n} is not what RETR sent"
                            );
                            messages += 1;
                            bytes += body.len() as u64;
                        }
                        if kind != Kind::Responder {
                            for n in 1..=uids.len() {
                                client.dele(n).await?;
                            }
                        }
                        client.quit().await?;
                    }
                }));
            }
            let (mut messages, mut bytes) = (0, 0);
            for task in tasks {
                let (m, b) = task.await??;
                messages += m;
                bytes += b;
            }
            Ok::<_, anyhow::Error>((messages, bytes))
        });
        let elapsed = started.elapsed().as_secs_f64();
        let after = (procs::usage(server.pid()), procs::own_cpu());
        let statements = server.db_statements();
        let left_in_db = server.db_messages();
        server.stop();
        let (messages, bytes) =
            result.with_context(|| format!("retrieval against {}", kind.name()))?;
        if let Some(left) = left_in_db {
            ensure!(
                left == 0,
                "{}: {left} messages left after DELE all + QUIT",
                kind.name()
            );
        } else if kind != Kind::Responder {
            // DELE + QUIT really removed everything.
            for b in 0..mailboxes {
                let root = ctx.env.mail.join(user(b));
                let left = fs::read_dir(root.join("new"))?.count()
                    + fs::read_dir(root.join("cur"))?.count();
                ensure!(
                    left == 0,
                    "{}: {left} messages left after DELE all + QUIT",
                    kind.name()
                );
            }
        }
        out.push(measurement(
            "retrieval",
            &format!("{mailboxes}x{per_box}x10KB c={clients}"),
            kind,
            messages as f64 / elapsed,
            "messages/s",
            true,
            serde_json::json!({
                "messages": messages,
                "mb_per_s": bytes as f64 / elapsed / 1e6,
                "server_cpu_s": after.0.cpu - before.0.cpu,
                "client_cpu_s": after.1 - before.1,
                "seconds": elapsed,
                "db_round_trips": per(statements, usize::try_from(messages).unwrap_or(usize::MAX)),
                "db_round_trips_per_session": per(statements, mailboxes),
            }),
        ));
    }
    Ok(out)
}

/// 3 (and 6): RETR of one 50 MB message, three times.
pub fn big(ctx: &Ctx, kinds: &[Kind], tls: bool) -> Result<Vec<Measurement>> {
    let size = if ctx.smoke { 2 << 20 } else { 50 << 20 };
    let repeats = 3;
    let stored = data::message(0, size);
    let expected = Arc::new(data::wire(&stored));
    let mut out = Vec::new();
    for &kind in kinds {
        if kind == Kind::Responder && ctx.smoke {
            continue; // the responder always serves 50 MB
        }
        ctx.seed(kind, &|mail| {
            data::write_maildir(
                &mail.join(user(0)),
                std::iter::once((0, stored.clone())),
                true,
            )?;
            Ok(())
        })?;
        let server = Server::start(&ctx.env, kind, "big")?;
        let addr = if tls { server.pop3s } else { server.pop3 };
        let before = (procs::usage(server.pid()), procs::own_cpu());
        let expected = expected.clone();
        let connector = ctx.tls.clone();
        let result = ctx.runtime.block_on(async move {
            let mut retr_time = Duration::ZERO;
            let mut body = Vec::with_capacity(expected.len() + 4096);
            for _ in 0..repeats {
                let mut client = Client::connect(addr, tls.then_some(&connector)).await?;
                client.login(&user(0), PASSWORD).await?;
                let t = Instant::now();
                client.retr(1, &mut body).await?;
                retr_time += t.elapsed();
                ensure!(
                    body.len() == expected.len() && body == *expected,
                    "the big message differs"
                );
                client.quit().await?;
            }
            Ok::<_, anyhow::Error>(retr_time)
        });
        let after = (procs::usage(server.pid()), procs::own_cpu());
        let statements = server.db_statements();
        server.stop();
        let retr_time = result.with_context(|| format!("big RETR against {}", kind.name()))?;
        let mb = (data::wire(&stored).len() * repeats) as f64 / 1e6;
        out.push(measurement(
            "big",
            if tls { "50MB RETR tls" } else { "50MB RETR" },
            kind,
            mb / retr_time.as_secs_f64(),
            "MB/s",
            true,
            serde_json::json!({
                "seconds": retr_time.as_secs_f64(),
                "server_cpu_s": after.0.cpu - before.0.cpu,
                "client_cpu_s": after.1 - before.1,
                "db_round_trips": per(statements, repeats),
            }),
        ));
    }
    Ok(out)
}

/// 4: a 100,000-message maildrop: login+STAT and UIDL, first session after
/// the files were written (cold) and the next one (warm).
pub fn large(ctx: &Ctx, kinds: &[Kind], tagged: bool) -> Result<Vec<Measurement>> {
    let count = if ctx.smoke { 2000 } else { 100_000 };
    let label = if tagged { "tagged" } else { "untagged" };
    let expected_size: u64 = (0..count)
        .map(|n| data::wire(&data::message(n, 1500 + (n % 7) * 300)).len() as u64)
        .sum();
    let mut out = Vec::new();
    for &kind in kinds {
        ctx.seed(kind, &|mail| {
            data::write_maildir(
                &mail.join(user(0)),
                (0..count).map(|n| (n, data::message(n, 1500 + (n % 7) * 300))),
                tagged,
            )?;
            Ok(())
        })?;
        let server = Server::start(&ctx.env, kind, "login")?;
        let addr = server.pop3;
        for round in ["cold", "warm"] {
            let before = procs::usage(server.pid());
            let result = ctx.runtime.block_on(async {
                let t = Instant::now();
                let mut client = Client::connect(addr, None).await?;
                client.login(&user(0), PASSWORD).await?;
                let (n, size) = client.stat().await?;
                let stat = t.elapsed();
                let t = Instant::now();
                let uids = client.uidl().await?;
                let uidl = t.elapsed();
                client.quit().await?;
                ensure!(
                    n == count as u64 && uids.len() == count,
                    "STAT says {n} messages, UIDL {}",
                    uids.len()
                );
                ensure!(
                    size == expected_size,
                    "STAT size {size}, expected {expected_size}"
                );
                Ok::<_, anyhow::Error>((stat, uidl))
            });
            let after = procs::usage(server.pid());
            let statements = server.db_statements();
            let (stat, uidl) =
                result.with_context(|| format!("large maildrop against {}", kind.name()))?;
            let details = serde_json::json!({
                "server_cpu_s": after.cpu - before.cpu,
                "db_round_trips": per(statements, 1),
            });
            out.push(measurement(
                "large",
                &format!("{label} {round} login+STAT"),
                kind,
                stat.as_secs_f64() * 1000.0,
                "ms",
                false,
                details.clone(),
            ));
            out.push(measurement(
                "large",
                &format!("{label} {round} UIDL"),
                kind,
                uidl.as_secs_f64() * 1000.0,
                "ms",
                false,
                details,
            ));
        }
        server.stop();
    }
    Ok(out)
}

/// 5: N authenticated sessions held open; server memory per connection.
pub fn idle(ctx: &Ctx, kinds: &[Kind], tls: bool) -> Result<Vec<Measurement>> {
    let sessions = if ctx.smoke { 50 } else { 2000 };
    let mut out = Vec::new();
    for &kind in kinds {
        ctx.seed(kind, &|mail| {
            for n in 0..sessions {
                data::write_maildir(
                    &mail.join(user(n)),
                    (0..2).map(|i| (i, data::message(i, 1000))),
                    true,
                )?;
            }
            Ok(())
        })?;
        let server = Server::start(&ctx.env, kind, "login")?;
        let addr = if tls { server.pop3s } else { server.pop3 };
        std::thread::sleep(Duration::from_millis(300));
        let before = procs::usage(server.pid());
        let connector = ctx.tls.clone();
        let clients = ctx.runtime.block_on(async {
            let mut clients = Vec::with_capacity(sessions);
            // A few at a time, as users arrive; not a connection storm.
            for chunk in (0..sessions).collect::<Vec<_>>().chunks(50) {
                let mut tasks = Vec::new();
                for &n in chunk {
                    let connector = connector.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut client = Client::connect(addr, tls.then_some(&connector)).await?;
                        client.login(&user(n), PASSWORD).await?;
                        let (count, _) = client.stat().await?;
                        ensure!(count == 2, "STAT says {count}");
                        Ok::<_, anyhow::Error>(client)
                    }));
                }
                for task in tasks {
                    clients.push(task.await??);
                }
            }
            Ok::<_, anyhow::Error>(clients)
        });
        let clients = match clients {
            Ok(clients) => clients,
            Err(e) => {
                server.stop();
                return Err(e.context(format!("idle sessions against {}", kind.name())));
            }
        };
        std::thread::sleep(Duration::from_millis(500));
        let held = procs::usage(server.pid());
        let per_pss = (held.pss_kib.saturating_sub(before.pss_kib)) as f64 / sessions as f64;
        let per_rss = (held.rss_kib.saturating_sub(before.rss_kib)) as f64 / sessions as f64;
        let quit = ctx.runtime.block_on(async {
            for client in clients {
                client.quit().await?;
            }
            Ok::<_, anyhow::Error>(())
        });
        server.stop();
        quit?;
        out.push(measurement(
            "idle",
            &format!("{}{sessions} sessions", if tls { "tls " } else { "" }),
            kind,
            per_pss,
            "KiB PSS/session",
            false,
            serde_json::json!({
                "rss_kib_per_session": per_rss,
                "pss_kib_total": held.pss_kib,
                "rss_kib_total": held.rss_kib,
                "processes": held.processes,
            }),
        ));
    }
    if out.is_empty() {
        bail!("no server measured");
    }
    Ok(out)
}
