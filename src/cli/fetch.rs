//! `yubin fetch`: pull mail from POP3 accounts into local mailboxes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use yubin_duration::HumanDuration;
use yubin_fetch::deliver::{
    Deliver, MaildirDestination, MboxDestination, MdaDestination, SmtpDestination,
};
use yubin_fetch::{Progress, Report, RunOptions};
use yubin_server::Config;
use yubin_server::lda::DeliverError;

use super::Failure;
use yubin_fetch::config::{self as fetch_config, AccountSettings, Resolved, Size, Target};

/// `yubin fetch --config FILE [ACCOUNT…]`, or one account from flags.
#[derive(Debug, ClapArgs)]
pub struct FetchArgs {
    /// Accounts file (TOML, `[accounts.NAME]` tables).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Only these accounts of the file (default: all).
    accounts: Vec<String>,
    /// Server host name (one account from flags, instead of --config).
    #[arg(long)]
    server: Option<String>,
    /// Server port (default: 995 for implicit TLS, 110 otherwise).
    #[arg(long)]
    port: Option<u16>,
    /// TLS mode: implicit (default), stls, none (needs --allow-plaintext).
    #[arg(long)]
    tls: Option<String>,
    /// Allow --tls none.
    #[arg(long)]
    allow_plaintext: bool,
    /// Trust the server's certificate by its SHA-256 fingerprint instead of the system roots.
    #[arg(long)]
    fingerprint: Option<String>,
    /// Login name.
    #[arg(long)]
    user: Option<String>,
    /// Read the password from the first line of this file.
    #[arg(long)]
    password_file: Option<String>,
    /// Read the password from this environment variable.
    #[arg(long)]
    password_env: Option<String>,
    /// Read the password from the output of this shell command.
    #[arg(long)]
    password_command: Option<String>,
    /// auto, user, apop, plain, login, cram-md5, scram-sha-1, scram-sha-256.
    #[arg(long)]
    auth: Option<String>,
    /// Deliver into this Maildir (default: ~/Maildir).
    #[arg(long)]
    maildir: Option<String>,
    /// Deliver into this mbox file (mboxrd, locked).
    #[arg(long)]
    mbox: Option<String>,
    /// Deliver through this command (message on stdin; exit 0 delivered, 75 try later).
    #[arg(long)]
    mda: Option<String>,
    /// Deliver to this user of the local yubin server (for migrations, with --keep).
    #[arg(long)]
    to: Option<String>,
    /// Deliver by SMTP to this server (host[:port], default port 25).
    #[arg(long)]
    smtp: Option<String>,
    /// Deliver by LMTP to this server (host[:port] or a Unix socket path).
    #[arg(long)]
    lmtp: Option<String>,
    /// The recipient for --smtp and --lmtp (default: $USER).
    #[arg(long)]
    recipient: Option<String>,
    /// The local yubin server's configuration, for --to.
    #[arg(long)]
    yubin_config: Option<String>,
    /// Delete fetched mail from the server (the default: POP moves mail).
    #[arg(long, conflicts_with_all = ["keep", "keep_days"])]
    delete: bool,
    /// Leave mail on the server (fetch only what is new).
    #[arg(long)]
    keep: bool,
    /// Leave mail on the server and delete it N days after it was first fetched.
    #[arg(long)]
    keep_days: Option<u32>,
    /// Do not fetch messages larger than this (e.g. 10M).
    #[arg(long)]
    max_size: Option<String>,
    /// For messages over --max-size: skip (default) or headers.
    #[arg(long)]
    oversize: Option<String>,
    /// Fetch at most N new messages per run.
    #[arg(long)]
    limit: Option<usize>,
    /// Give up on a silent server after this long (default 60s).
    #[arg(long)]
    timeout: Option<String>,
    /// Where the ledgers live (default: ~/.local/state/yubin/fetch).
    #[arg(long)]
    state_dir: Option<String>,
    /// Run again every interval (e.g. 5m) until killed.
    #[arg(long)]
    every: Option<String>,
    /// Show what would be fetched; deliver, record and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object per account and run on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs the command. Exit status: 0 all accounts fetched; otherwise the
/// status of the first account that failed (75 try later, 77 login
/// refused, 76 protocol error, 69 TLS/login impossible, 74 local write
/// failed, 78 password source failed); 2 for bad arguments.
pub fn run(args: FetchArgs) -> Result<(), Failure> {
    let accounts = accounts(&args).map_err(Failure::Usage)?;
    let every = args
        .every
        .as_deref()
        .map(|text| HumanDuration::parse(text).map(|d| d.0))
        .transpose()
        .map_err(|e| Failure::Usage(format!("--every: {e}")))?;
    if every.is_some_and(|d| d.is_zero()) {
        return Err(Failure::Usage("--every: must be more than 0".into()));
    }
    let mut destinations = Vec::new();
    for resolved in &accounts {
        destinations.push(destination(&resolved.target).map_err(Failure::Usage)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    let options = RunOptions {
        dry_run: args.dry_run,
    };
    loop {
        let started = Instant::now();
        let mut status = 0u8;
        let mut wait = every.unwrap_or_default();
        for (resolved, destination) in accounts.iter().zip(&destinations) {
            let account = &resolved.account;
            let mut bar = Bar::new(std::io::stdout().is_terminal() && !args.json, &account.name);
            let result = runtime.block_on(yubin_fetch::fetch(
                account,
                destination.as_ref(),
                options,
                &mut bar,
            ));
            match &result {
                Ok(report) => {
                    if let Some(delay) = report.login_delay {
                        wait = wait.max(delay.min(MAX_LOGIN_DELAY));
                    }
                    if status == 0 {
                        status = report_status(report);
                    }
                }
                Err(error) => {
                    if status == 0 {
                        status = error.exit_code();
                    }
                    // Refused for logging in too soon: the next poll waits
                    // as long as the server asked.
                    if let yubin_fetch::FetchError::LoginDelay {
                        delay: Some(delay), ..
                    } = error
                    {
                        wait = wait.max((*delay).min(MAX_LOGIN_DELAY));
                    }
                }
            }
            print_result(
                &account.name,
                destination.as_ref(),
                &result,
                args.json,
                args.dry_run,
            );
        }
        let Some(_) = every else {
            return if status == 0 {
                Ok(())
            } else {
                Err(Failure::Exit(
                    status,
                    "some accounts could not be fetched".into(),
                ))
            };
        };
        std::thread::sleep(wait.saturating_sub(started.elapsed()));
    }
}

/// The longest a server's LOGIN-DELAY may hold `--every` back: a hostile
/// or mistaken value must not stop polling for good.
const MAX_LOGIN_DELAY: Duration = Duration::from_secs(24 * 3600);

/// The exit status of a run that completed: 74 if the destination refused
/// messages for good (they stay on the server), else 0.
fn report_status(report: &Report) -> u8 {
    if report.refused_deliveries > 0 { 74 } else { 0 }
}

fn accounts(args: &FetchArgs) -> Result<Vec<Resolved>, String> {
    let flags = AccountSettings {
        server: args.server.clone(),
        port: args.port,
        tls: args.tls.clone(),
        allow_plaintext: args.allow_plaintext.then_some(true),
        fingerprint: args.fingerprint.clone(),
        user: args.user.clone(),
        password_file: args.password_file.clone(),
        password_env: args.password_env.clone(),
        password_command: args.password_command.clone(),
        auth: args.auth.clone(),
        maildir: args.maildir.clone(),
        mbox: args.mbox.clone(),
        mda: args.mda.clone(),
        to: args.to.clone(),
        smtp: args.smtp.clone(),
        lmtp: args.lmtp.clone(),
        recipient: args.recipient.clone(),
        delete: args.delete.then_some(true),
        keep: args.keep.then_some(true),
        keep_days: args.keep_days,
        max_size: args
            .max_size
            .as_deref()
            .map(Size::parse)
            .transpose()
            .map_err(|e| format!("--max-size: {e}"))?,
        oversize: args.oversize.clone(),
        limit: args.limit,
        timeout: args
            .timeout
            .as_deref()
            .map(HumanDuration::parse)
            .transpose()
            .map_err(|e| format!("--timeout: {e}"))?,
        in_use_wait: None,
        state_dir: args.state_dir.clone(),
        yubin_config: args.yubin_config.clone(),
    };
    match &args.config {
        Some(path) => {
            if args.server.is_some() || args.user.is_some() {
                return Err("--config and --server/--user exclude each other".into());
            }
            fetch_config::load(path, &args.accounts)
        }
        None => {
            if !args.accounts.is_empty() {
                return Err(format!(
                    "account names ({}) need --config FILE",
                    args.accounts.join(", ")
                ));
            }
            let (Some(server), Some(user)) = (&args.server, &args.user) else {
                return Err("give --config FILE, or --server and --user".into());
            };
            let name = format!("{user}@{server}");
            fetch_config::resolve(&name, flags, "--").map(|r| vec![r])
        }
    }
}

fn destination(target: &Target) -> Result<Box<dyn Deliver>, String> {
    let hostname = yubin_server::config::system_hostname();
    Ok(match target {
        Target::Maildir(path) => Box::new(MaildirDestination::new(path, hostname)),
        Target::Mbox(path) => Box::new(MboxDestination::new(path)),
        Target::Mda(command) => Box::new(MdaDestination::new(command)),
        Target::LocalUser(user, config) => local_user(user, config.as_deref())?,
        Target::Smtp(endpoint, lmtp, recipient) => Box::new(SmtpDestination::new(
            endpoint.clone(),
            *lmtp,
            recipient,
            hostname,
        )),
    })
}

/// A user of the local yubin server: their Maildir as the server finds it.
fn local_user(user: &str, config: Option<&std::path::Path>) -> Result<Box<dyn Deliver>, String> {
    let config = match config {
        Some(path) => Config::load(path).map_err(|e| format!("--yubin-config: {e}"))?,
        None => Config::default(),
    };
    let maildir = yubin_server::lda::user_maildir(&config, user).map_err(|e| match e {
        DeliverError::UnknownUser(_) => {
            format!(
                "--to: no user {user:?} in {}",
                config.passwd_file().display()
            )
        }
        DeliverError::Temporary(reason) => format!("--to: {reason}"),
    })?;
    Ok(Box::new(MaildirDestination::new(
        maildir.root(),
        config.hostname,
    )))
}

fn print_result(
    name: &str,
    destination: &dyn Deliver,
    result: &Result<Report, yubin_fetch::FetchError>,
    json: bool,
    dry_run: bool,
) {
    if json {
        let value = match result {
            Ok(r) => serde_json::json!({
                "account": name,
                "ok": report_status(r) == 0,
                "exit_code": report_status(r),
                "dry_run": dry_run,
                "destination": destination.describe(),
                "on_server": r.on_server,
                "fetched": r.fetched,
                "fetched_bytes": r.fetched_bytes,
                "deleted": r.deleted,
                "skipped_oversize": r.skipped_oversize,
                "truncated": r.truncated,
                "deferred": r.deferred,
                "size_mismatches": r.size_mismatches,
                "without_uid": r.without_uid,
                "rejected_lines": r.rejected_lines,
                "deletion_suspended": r.deletion_suspended,
                "quit_uncertain": r.quit_uncertain,
                "refused_deliveries": r.refused_deliveries,
                "warnings": r.warnings,
            }),
            Err(error) => serde_json::json!({
                "account": name,
                "ok": false,
                "exit_code": error.exit_code(),
                "error": error.to_string(),
            }),
        };
        println!("{value}");
        return;
    }
    match result {
        Ok(report) => {
            for warning in &report.warnings {
                eprintln!("yubin fetch: {name}: warning: {warning}");
            }
            if let Some(reason) = &report.deletion_suspended {
                eprintln!("yubin fetch: {name}: nothing deleted: {reason}");
            }
            println!("{}", summary(name, destination, report, dry_run));
        }
        Err(error) => eprintln!("yubin fetch: {name}: {error}"),
    }
}

/// `work: 3 new messages (12.4 KiB) to maildir:…, 3 deleted, 10 on the server`
fn summary(name: &str, destination: &dyn Deliver, r: &Report, dry_run: bool) -> String {
    let verb = if dry_run { "would fetch" } else { "fetched" };
    let mut parts = vec![format!(
        "{name}: {verb} {} new message{} ({}) to {}",
        r.fetched,
        if r.fetched == 1 { "" } else { "s" },
        human_bytes(r.fetched_bytes),
        destination.describe()
    )];
    for (count, what) in [
        (r.deleted, "deleted from the server"),
        (r.skipped_oversize, "skipped as too large"),
        (r.truncated, "delivered as headers only"),
        (r.deferred, "left for the next run (limit)"),
        (r.size_mismatches, "with sizes unlike LIST (kept)"),
        (r.refused_deliveries, "refused by the destination (kept)"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    parts.push(format!("{} on the server", r.on_server));
    parts.join(", ")
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
    }
}

/// A one-line progress bar on a terminal; nothing otherwise.
struct Bar {
    shown: bool,
    name: String,
    total: (usize, u64),
    done: (usize, u64),
    last_draw: Option<Instant>,
}

impl Bar {
    fn new(shown: bool, name: &str) -> Bar {
        Bar {
            shown,
            name: name.to_owned(),
            total: (0, 0),
            done: (0, 0),
            last_draw: None,
        }
    }

    fn draw(&mut self, force: bool) {
        if !self.shown || self.total.0 == 0 {
            return;
        }
        // At most ten redraws a second: a terminal is slower than a fetch.
        if !force
            && self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        const WIDTH: u64 = 30;
        // In u128: LIST sizes come from the server and may be huge.
        let filled = (u128::from(self.done.1) * u128::from(WIDTH) / u128::from(self.total.1.max(1)))
            .min(u128::from(WIDTH)) as u64;
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "\r{} [{}{}] {}/{} messages, {}/{}",
            self.name,
            "#".repeat(filled as usize),
            " ".repeat((WIDTH - filled) as usize),
            self.done.0,
            self.total.0,
            human_bytes(self.done.1),
            human_bytes(self.total.1)
        );
        let _ = out.flush();
    }
}

impl Progress for Bar {
    fn begin(&mut self, messages: usize, bytes: u64) {
        self.total = (messages, bytes);
        self.draw(true);
    }

    fn advance(&mut self, bytes: u64) {
        self.done.0 += 1;
        self.done.1 = self.done.1.saturating_add(bytes);
        self.draw(false);
    }

    fn end(&mut self) {
        if self.shown && self.total.0 > 0 {
            self.draw(true);
            println!();
        }
    }
}
