//! `yubin-bench`: yubin against Dovecot on the same machine, scenario by
//! scenario, with ratios. See docs/benchmarks.md.
#![forbid(unsafe_code)]

mod client;
mod data;
mod inbound;
mod pg;
mod procs;
mod report;
mod responder;
mod rspamd;
mod scenarios;
mod servers;
mod smtp;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use scenarios::{Ctx, Measurement};
use servers::{DovecotSetup, Env, Kind};

#[derive(Parser)]
#[command(
    name = "yubin-bench",
    about = "yubin against Dovecot and Postfix, side by side"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scenarios and print the table.
    Run {
        /// Scenarios to run (login, retrieval, big, large, idle, tls, smtp, dkim, inbound, rspamd); default all.
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Servers to run against (yubin, yubin-pg, dovecot, responder, postfix); default all.
        #[arg(long, value_delimiter = ',')]
        servers: Vec<String>,
        /// Runs of each scenario; the table shows medians.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Small data and short runs: checks correctness, measures nothing useful.
        #[arg(long)]
        smoke: bool,
        /// Password scheme of the benchmark users (PLAIN or SHA512-CRYPT).
        #[arg(long, default_value = "PLAIN")]
        scheme: String,
        /// The yubin binary (default: next to this one).
        #[arg(long)]
        yubin: Option<PathBuf>,
        /// Where to write results.json and chart.png.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rebuild the table, the rows of the results.json and the chart from
    /// its measurements.
    Report {
        /// The results.json of an earlier run.
        input: PathBuf,
        /// Where to write chart.png (default: next to the input).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The trivial responder (started by `run`).
    Responder {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        tls_port: u16,
        #[arg(long)]
        mode: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

/// The chart's font (Debian's fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Responder {
            port,
            tls_port,
            mode,
            cert,
            key,
        } => responder::run(port, tls_port, &mode, &cert, &key),
        Command::Report { input, out } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("read {}", input.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)?;
            let measurements: Vec<Measurement> =
                serde_json::from_value(value["measurements"].clone())?;
            let rows = report::rows(&measurements);
            println!("{}", report::markdown(&rows));
            // Refresh the rows kept in the file (measurements may have been merged in).
            report::write_json(&input, &measurements, &rows, &value["machine"])?;
            let dir = out.unwrap_or_else(|| input.parent().map(PathBuf::from).unwrap_or_default());
            report::chart(&dir.join("chart.png"), &rows, std::path::Path::new(FONT))
        }
        Command::Run {
            scenarios,
            servers,
            runs,
            smoke,
            scheme,
            yubin,
            out,
        } => run(scenarios, servers, runs, smoke, &scheme, yubin, out),
    }
}

fn run(
    scenarios: Vec<String>,
    servers: Vec<String>,
    runs: usize,
    smoke: bool,
    scheme: &str,
    yubin: Option<PathBuf>,
    out: Option<PathBuf>,
) -> Result<()> {
    raise_fd_limit();
    let bench = std::env::current_exe()?;
    let yubin = yubin.unwrap_or_else(|| bench.with_file_name("yubin"));
    if !yubin.exists() {
        bail!(
            "no yubin binary at {} (cargo build --release first, or --yubin)",
            yubin.display()
        );
    }
    let wants = |list: &[String], name: &str| list.is_empty() || list.iter().any(|s| s == name);
    let with_dovecot = wants(&servers, "dovecot");
    if with_dovecot && !std::path::Path::new("/usr/sbin/dovecot").exists() {
        bail!(
            "Dovecot is not installed: apt-get install dovecot-pop3d (or --servers yubin,responder)"
        );
    }
    let with_postfix = wants(&servers, "postfix");
    if with_postfix && !std::path::Path::new("/usr/sbin/postfix").exists() {
        bail!("Postfix is not installed: apt-get install postfix (or --servers without postfix)");
    }
    let postfix: Vec<Kind> = if with_postfix {
        vec![Kind::Postfix]
    } else {
        vec![]
    };
    let mut base = Vec::new();
    if wants(&servers, "yubin") {
        base.push(Kind::Yubin);
    }
    // Issue 16: the PostgreSQL backend, side by side, where it has targets.
    let on_postgres: Vec<Kind> = if wants(&servers, "yubin-pg") {
        vec![Kind::YubinPg]
    } else {
        vec![]
    };
    let dovecots = [
        DovecotSetup::ReuseAll,
        DovecotSetup::ReuseLogin,
        DovecotSetup::Default,
    ];
    let fastest_dovecot: Vec<Kind> = if with_dovecot {
        vec![Kind::Dovecot(DovecotSetup::ReuseAll)]
    } else {
        vec![]
    };
    let all_dovecots: Vec<Kind> = if with_dovecot {
        dovecots.iter().map(|&s| Kind::Dovecot(s)).collect()
    } else {
        vec![]
    };
    let responder: Vec<Kind> = if wants(&servers, "responder") {
        vec![Kind::Responder]
    } else {
        vec![]
    };
    let with = |extra: &[&[Kind]]| -> Vec<Kind> {
        let mut kinds = base.clone();
        for e in extra {
            kinds.extend_from_slice(e);
        }
        kinds
    };

    let work = std::env::temp_dir().join(format!("yubin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (cert, key) = (work.join("cert.pem"), work.join("key.pem"));
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    let users = work.join("users");
    data::write_passwd(&users, if smoke { 100 } else { 2000 }, scheme)?;
    let ctx = Ctx {
        env: Env {
            mail: work.join("mail"),
            work: work.clone(),
            yubin,
            bench,
            users,
            cert,
            key,
        },
        runtime: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        tls: client::tls_connector(),
        smoke,
    };

    let mut measurements: Vec<Measurement> = Vec::new();
    let mut step = |name: &str, result: Result<Vec<Measurement>>| -> Result<()> {
        let found = result.with_context(|| format!("scenario {name}"))?;
        for m in &found {
            eprintln!(
                "  {:<10} {:<28} {:<20} {:>12.2} {}",
                m.scenario, m.variant, m.server, m.value, m.unit
            );
        }
        measurements.extend(found);
        Ok(())
    };
    for run in 1..=runs {
        eprintln!("run {run} of {runs}");
        if wants(&scenarios, "login") {
            for clients in [10, 50] {
                step(
                    "login",
                    scenarios::login(
                        &ctx,
                        &with(&[&on_postgres, &all_dovecots, &responder]),
                        clients,
                        false,
                    ),
                )?;
            }
        }
        if wants(&scenarios, "retrieval") {
            step(
                "retrieval",
                scenarios::retrieval(&ctx, &with(&[&on_postgres, &fastest_dovecot, &responder])),
            )?;
        }
        if wants(&scenarios, "big") {
            step(
                "big",
                scenarios::big(
                    &ctx,
                    &with(&[&on_postgres, &fastest_dovecot, &responder]),
                    false,
                ),
            )?;
        }
        if wants(&scenarios, "large") {
            for tagged in [false, true] {
                step(
                    "large",
                    scenarios::large(&ctx, &with(&[&on_postgres, &fastest_dovecot]), tagged),
                )?;
            }
        }
        if wants(&scenarios, "idle") {
            step(
                "idle",
                scenarios::idle(&ctx, &with(&[&fastest_dovecot]), false),
            )?;
            step(
                "idle",
                scenarios::idle(&ctx, &with(&[&fastest_dovecot]), true),
            )?;
        }
        if wants(&scenarios, "smtp") {
            step(
                "smtp",
                smtp::smtp_in(&ctx, &with(&[&on_postgres, &postfix])),
            )?;
        }
        if wants(&scenarios, "dkim") {
            step("dkim", smtp::smtp_signed(&ctx, &with(&[&postfix])))?;
        }
        if wants(&scenarios, "inbound") {
            step("inbound", inbound::smtp_checked(&ctx, &with(&[&postfix])))?;
        }
        if wants(&scenarios, "rspamd") {
            step("rspamd", inbound::smtp_rspamd(&ctx, &with(&[&postfix])))?;
        }
        if wants(&scenarios, "tls") {
            step(
                "login",
                scenarios::login(&ctx, &with(&[&all_dovecots, &responder]), 10, true),
            )?;
            step(
                "big",
                scenarios::big(&ctx, &with(&[&fastest_dovecot, &responder]), true),
            )?;
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    let mut rows = report::rows(&measurements);
    if smoke {
        // Tiny data on a debug build: the figures say nothing about targets.
        for row in &mut rows {
            row.target = None;
            row.met = None;
        }
        println!(
            "Smoke run: every scenario ran and every answer was checked; the figures are not measurements.\n"
        );
    }
    println!("{}", report::markdown(&rows));
    let machine = serde_json::json!({
        "date": chrono_free_date(),
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "scheme": scheme,
        "runs": runs,
        "smoke": smoke,
    });
    if let Some(out) = out {
        std::fs::create_dir_all(&out)?;
        report::write_json(&out.join("results.json"), &measurements, &rows, &machine)?;
        report::chart(&out.join("chart.png"), &rows, std::path::Path::new(FONT))?;
        eprintln!(
            "wrote {} and {}",
            out.join("results.json").display(),
            out.join("chart.png").display()
        );
    }
    Ok(())
}

/// Lifts the open-file limit to its maximum: 2,000 sessions need 4,000+.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Today's date from `date`, without a date crate.
fn chrono_free_date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
