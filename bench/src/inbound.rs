//! Scenario 9, SMTP in with sender authentication: as scenario 7, but each
//! 4 KB message comes from `sender@signer.example`, DKIM-signed (RSA 2048,
//! relaxed/relaxed) with a key whose record, an SPF record that allows
//! the client and a `p=reject` DMARC record are served by one DNS server
//! on 127.0.0.153:53. yubin checks SPF (HELO and MAIL FROM), DKIM, ARC
//! and DMARC itself; Postfix through OpenDKIM (verifying) and OpenDMARC
//! (checking SPF itself and DMARC) as milters, both asking the same DNS
//! server. Every 50th stored message must say `dkim=pass` and
//! `dmarc=pass`.
//!
//! Scenario 10 sends the same mail through one rspamd on both sides.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use yubin_mailauth::dkim::{Algorithm, Key, Signing, generate};
use yubin_test_dns::TestDns;

use crate::data::{self, user};
use crate::procs;
use crate::rspamd::Rspamd;
use crate::scenarios::{Ctx, Measurement, measurement};
use crate::servers::{BENCH_DNS, INBOUND_AUTH, Kind, RSPAMD_FILTER, Server};
use crate::smtp::{send_until, smtp_data, wait_for_delivery};

const SIGNER: &str = "signer.example";
const SELECTOR: &str = "bench";

/// 9: `sessions` connections send signed mail from a domain with SPF,
/// DKIM and DMARC records to local users until the time is up.
pub fn smtp_checked(ctx: &Ctx, kinds: &[Kind]) -> Result<Vec<Measurement>> {
    let (_dns, key) = sender_domain(ctx)?;
    receive(
        ctx,
        kinds,
        &key,
        INBOUND_AUTH,
        "SPF+DKIM+DMARC checked",
        &["dkim=pass", "dmarc=pass"],
    )
}

/// 10: the same mail through one rspamd: yubin asks its normal worker
/// over HTTP (`[[filter]] kind = "rspamd"`), Postfix its proxy worker as a
/// milter on a unix socket. rspamd checks SPF, DKIM and DMARC itself
/// (same DNS server) and adds `X-Spamd-Result` for both.
pub fn smtp_rspamd(ctx: &Ctx, kinds: &[Kind]) -> Result<Vec<Measurement>> {
    let (_dns, key) = sender_domain(ctx)?;
    let dir = ctx.env.work.join("rspamd");
    std::fs::create_dir_all(dir.join("local.d"))?;
    std::fs::write(
        dir.join("local.d/milter_headers.conf"),
        "use = [\"x-spamd-result\"];\nskip_local = false;\nskip_authenticated = false;\n",
    )?;
    let rspamd = Rspamd::start(&dir)?;
    let mode = format!("{RSPAMD_FILTER}{}", rspamd.normal);
    receive(ctx, kinds, &key, &mode, "rspamd", &["X-Spamd-Result"])
}

/// The DNS server with the sender domain's records, and its key.
fn sender_domain(ctx: &Ctx) -> Result<(TestDns, Key)> {
    let dns = TestDns::start_on(BENCH_DNS.parse()?)
        .with_context(|| format!("a DNS server on {BENCH_DNS} (port 53 needs root)"))?;
    let key = signer_key(ctx)?;
    dns.txt(
        &yubin_mailauth::dkim::record_name(SELECTOR, SIGNER),
        &key.record(),
    );
    dns.txt(SIGNER, "v=spf1 ip4:127.0.0.1 -all");
    dns.txt(&format!("_dmarc.{SIGNER}"), "v=DMARC1; p=reject");
    Ok((dns, key))
}

/// Signed mail from the sender domain to local users, against each of
/// `kinds` started in `mode`; every 50th stored message must contain each
/// of `evidence`.
fn receive(
    ctx: &Ctx,
    kinds: &[Kind],
    key: &Key,
    mode: &str,
    variant: &str,
    evidence: &[&str],
) -> Result<Vec<Measurement>> {
    let sessions = if ctx.smoke { 2 } else { 10 };

    // One message, signed once: every copy carries the same signature,
    // and every copy is checked anew.
    let mut content = format!(
        "From: Sender <sender@{SIGNER}>\nTo: <reader@bench.example>\nSubject: checked bench message\n\
         Message-ID: <checked.bench@{SIGNER}>\nDate: Mon, 07 Dec 2026 12:00:00 +0000\n\n"
    )
    .into_bytes();
    let sample = data::message(0, 4096);
    let body_at = sample
        .windows(2)
        .position(|w| w == b"\n\n")
        .context("message without a body")?;
    content.extend_from_slice(&sample[body_at + 2..]);
    let fields = Signing::new(std::slice::from_ref(key))
        .sign(&mut |out: &mut dyn Write| out.write_all(&content))
        .context("signing the bench message")?;
    let mut stored = fields.into_bytes();
    stored.extend_from_slice(&content);
    let wire = std::sync::Arc::new(smtp_data(&stored));

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
        let server = Server::start(&ctx.env, kind, mode)?;
        let before = (procs::usage(server.pid()), procs::own_cpu());
        let deadline = Instant::now() + ctx.duration();
        let started = Instant::now();
        let accepted = ctx.runtime.block_on(send_until(
            server.smtp,
            sessions,
            deadline,
            wire.clone(),
            "sender@signer.example",
            |n| format!("{}@bench.example", user(n)),
        ));
        let accepted = accepted.with_context(|| format!("checked smtp against {}", kind.name()))?;
        let delivered = wait_for_delivery(ctx, sessions, accepted);
        let elapsed = started.elapsed().as_secs_f64();
        let after = (procs::usage(server.pid()), procs::own_cpu());
        server.stop();
        ensure!(
            delivered as u64 == accepted,
            "{}: {accepted} messages accepted, {delivered} in the Maildirs",
            kind.name()
        );
        // The checks ran and passed: every 50th message says so.
        let mut sampled = 0;
        for n in 0..sessions {
            let dir = ctx.env.mail.join(user(n)).join("new");
            for entry in std::fs::read_dir(&dir)?.step_by(50) {
                let file = std::fs::read(entry?.path())?;
                let text = String::from_utf8_lossy(&file).replace("\n\t", " ");
                ensure!(
                    evidence.iter().all(|e| text.contains(e)),
                    "{}: a message in {} was not checked, or failed: {}",
                    kind.name(),
                    dir.display(),
                    &text[..text.len().min(1200)]
                );
                sampled += 1;
            }
        }
        out.push(measurement(
            "smtp",
            &format!("c={sessions} 4KB {variant}"),
            kind,
            accepted as f64 / elapsed,
            "messages/s",
            true,
            serde_json::json!({
                "messages": accepted,
                "checked_in_sample": sampled,
                "server_cpu_s": after.0.cpu - before.0.cpu,
                "client_cpu_s": after.1 - before.1,
                "seconds": elapsed,
            }),
        ));
    }
    Ok(out)
}

/// The sender domain's key (RSA 2048), made once in the working directory.
fn signer_key(ctx: &Ctx) -> Result<Key> {
    let dir = ctx.env.work.join("signer-dkim");
    let path = dir.join(SIGNER).join(format!("{SELECTOR}.key"));
    if path.exists() {
        return Key::load(&path, SIGNER, SELECTOR).map_err(|e| anyhow::anyhow!("{e}"));
    }
    generate(&dir, SIGNER, SELECTOR, Algorithm::Rsa)
        .map(|g| g.key)
        .map_err(|e| anyhow::anyhow!("making the sender's key: {e}"))
}
