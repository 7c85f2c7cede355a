//! Scenario 9, SMTP in with sender authentication: as scenario 7, but each
//! 4 KB message comes from `sender@signer.example`, DKIM-signed (RSA 2048,
//! relaxed/relaxed) with a key whose record, an SPF record that allows
//! the client and a `p=reject` DMARC record are served by one DNS server
//! on 127.0.0.153:53. yubin checks SPF (HELO and MAIL FROM), DKIM, ARC
//! and DMARC itself; Postfix through OpenDKIM (verifying) and OpenDMARC
//! (checking SPF itself and DMARC) as milters, both asking the same DNS
//! server. Every 50th stored message must say `dkim=pass` and
//! `dmarc=pass`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use yubin_mailauth::dkim::{Algorithm, Key, Signing, generate};
use yubin_test_dns::TestDns;

use crate::data::{self, user};
use crate::procs;
use crate::scenarios::{Ctx, Measurement, measurement};
use crate::servers::{BENCH_DNS, INBOUND_AUTH, Kind, Server};
use crate::smtp::{maildir_count, send_until, smtp_data};

const SIGNER: &str = "signer.example";
const SELECTOR: &str = "bench";

/// 9: `sessions` connections send signed mail from a domain with SPF,
/// DKIM and DMARC records to local users until the time is up.
pub fn smtp_checked(ctx: &Ctx, kinds: &[Kind]) -> Result<Vec<Measurement>> {
    let sessions = if ctx.smoke { 2 } else { 10 };
    let dns = TestDns::start_on(BENCH_DNS.parse()?)
        .with_context(|| format!("a DNS server on {BENCH_DNS} (port 53 needs root)"))?;
    let key = signer_key(ctx)?;
    dns.txt(
        &yubin_mailauth::dkim::record_name(SELECTOR, SIGNER),
        &key.record(),
    );
    dns.txt(SIGNER, "v=spf1 ip4:127.0.0.1 -all");
    dns.txt(&format!("_dmarc.{SIGNER}"), "v=DMARC1; p=reject");

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
    let fields = Signing::new(std::slice::from_ref(&key))
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
        let server = Server::start(&ctx.env, kind, INBOUND_AUTH)?;
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
        let wait_until = Instant::now() + Duration::from_secs(120);
        let delivered = loop {
            let delivered: usize = (0..sessions)
                .map(|n| maildir_count(&ctx.env.mail.join(user(n))))
                .sum();
            if delivered as u64 >= accepted || Instant::now() > wait_until {
                break delivered;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
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
                    text.contains("dkim=pass") && text.contains("dmarc=pass"),
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
            &format!("c={sessions} 4KB SPF+DKIM+DMARC checked"),
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
