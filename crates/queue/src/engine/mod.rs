//! The delivery engine: works through the queue, delivering each entry to
//! its recipients' servers, retrying on a schedule, and bouncing what
//! cannot be delivered.
//!
//! An entry leaves the queue only when every recipient is finished:
//! delivered (the remote `250` to the end of data) or bounced (the
//! notification itself durably delivered or queued). A crash between a
//! remote `250` and the record of it means that recipient gets the message
//! again at the next attempt: a duplicate, never a loss (RFC 5321 §6.1).
//!
//! Concurrency: at most `max_workers` entries are being delivered at once,
//! and at most `max_per_destination` connections go to one domain, so a
//! slow or dead destination holds up only its own mail. Recipients of one
//! entry in different domains are delivered in parallel.

mod arrivals;
pub mod dns;
mod dnssec;
pub mod dsn;
mod due;
mod record;
pub mod route;
pub mod sts;
mod tls_reports;
pub mod transport;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc, watch};
use yubin_line::WireSize;
use yubin_smtp_proto::client::{Message, RecipientResult, Response, Status};

pub use arrivals::Arrivals;
pub use dns::HickoryDns;
pub use route::{DaneHost, Dns, Hop, NoMx, RouteError, Routes, Target, TlsLevel, TlsSource};
pub use tls_reports::TlsReports;
pub use transport::{MessageSource, TlsOutcome, Transport};

use crate::mta_sts::Mode;
use crate::{Claim, EntryState, Envelope, QueueError, QueueStore, Schedule};
use due::Due;

/// Where notifications go: the server's own delivery path (a local
/// Maildir, or back into this queue for a remote sender).
pub trait Submit: Send + Sync + 'static {
    /// Delivers `message` from the null sender to `recipient`, durably,
    /// before returning. Blocking.
    fn submit(&self, recipient: &str, message: &[u8]) -> Result<(), String>;
}

/// The engine's settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This server's name (in notifications).
    pub hostname: String,
    /// Where mail goes.
    pub routes: Routes,
    /// Retries, expiry, delay warnings.
    pub schedule: Schedule,
    /// Entries delivered at once.
    pub max_workers: usize,
    /// Connections to one destination domain at once.
    pub max_per_destination: usize,
    /// How often the queue directory is read again even without news.
    pub rescan: Duration,
}

/// The delivery engine.
pub struct Engine<D: Dns> {
    queue: Arc<dyn QueueStore>,
    config: EngineConfig,
    transport: Transport,
    dns: D,
    submit: Arc<dyn Submit>,
    arrivals: Arc<Arrivals>,
    /// MTA-STS policies (none: not applied).
    sts: Option<Arc<sts::Sts>>,
    /// TLS reports (none: not kept or sent).
    tls_reports: Option<Arc<TlsReports>>,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// States that could not be written (disk full, read-only): kept here
    /// so a retry does not deliver again to recipients already done.
    unsaved: Arc<Mutex<HashMap<String, EntryState>>>,
}

/// The destination domain of an address, lower-case.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// How far an attempt got: the entry is gone, or is due again then.
type Outcome = (String, Option<u64>);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `tls = "verify"` for mail routed by MX: the MX names come from
/// unsigned DNS, so a certificate valid for the MX name proves nothing
/// unless that name is the domain's own. Only MX hosts that are the
/// domain or a name under it are kept (Postfix's `secure` level with
/// `match=nexthop:dot-nexthop` protects the same way).
fn verify_within(domain: &str, targets: Vec<Target>) -> Result<Vec<Target>, String> {
    if targets.iter().all(|t| t.tls != TlsLevel::Verify) {
        return Ok(targets);
    }
    let within = |host: &str| {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == domain || host.ends_with(&format!(".{domain}"))
    };
    // DANE hosts are vouched for by DNSSEC, wherever their names are.
    let kept: Vec<Target> = targets
        .into_iter()
        .filter(|t| t.tls_source == TlsSource::Dane || within(&t.host))
        .collect();
    if kept.is_empty() {
        return Err(format!(
            "4.7.5 no MX host of {domain} is within {domain}, which tls = \"verify\" requires"
        ));
    }
    Ok(kept)
}

/// Whether a header section carries `TLS-Required: No` (RFC 8689 §5).
fn tls_required_no(header: &[u8]) -> bool {
    let text = String::from_utf8_lossy(header);
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim_end().eq_ignore_ascii_case("TLS-Required") {
            continue;
        }
        // The value, with its continuation lines.
        let mut value = value.to_owned();
        while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
            value.push_str(next);
            lines.next();
        }
        return value.trim().eq_ignore_ascii_case("no");
    }
    false
}

/// What an attempt needs from disk, read under the entry's lock.
pub(crate) struct Prepared {
    claim: Box<dyn Claim>,
    envelope: Envelope,
    source: MessageSource,
    wire_size: u64,
    headers: Vec<u8>,
    state: EntryState,
}

impl<D: Dns + 'static> Engine<D> {
    /// An engine for `queue`; whoever queues mail announces it in
    /// `arrivals`, and the engine takes it up at once.
    pub fn new(
        queue: Arc<dyn QueueStore>,
        config: EngineConfig,
        transport: Transport,
        dns: D,
        submit: Arc<dyn Submit>,
        arrivals: Arc<Arrivals>,
    ) -> Engine<D> {
        Engine {
            queue,
            config,
            transport,
            dns,
            submit,
            arrivals,
            sts: None,
            tls_reports: None,
            destinations: Mutex::new(HashMap::new()),
            unsaved: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same engine, applying the MTA-STS policies of the domains it
    /// delivers to by MX (RFC 8461).
    pub fn with_sts(self, sts: Arc<sts::Sts>) -> Engine<D> {
        Engine {
            sts: Some(sts),
            ..self
        }
    }

    /// The same engine, keeping TLS sessions for reports and sending the
    /// reports (RFC 8460).
    pub fn with_tls_reports(self, reports: Arc<TlsReports>) -> Engine<D> {
        Engine {
            tls_reports: Some(reports),
            ..self
        }
    }

    /// Sends finished periods' TLS reports now and then, until shutdown.
    async fn send_tls_reports(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(reports) = self.tls_reports.clone() else {
            return;
        };
        loop {
            reports.send_due(&self.dns, &self.submit).await;
            tokio::select! {
                () = tokio::time::sleep(reports.tick()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Runs until `shutdown` turns true. Attempts in progress then are
    /// dropped; their entries stay queued and are tried again after the
    /// restart.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tokio::spawn(self.clone().send_tls_reports(shutdown.clone()));
        let workers = Arc::new(Semaphore::new(self.config.max_workers.max(1)));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
        // Entries waiting for their time, and those being attempted now.
        let mut due = Due::default();
        let mut busy: HashSet<String> = HashSet::new();

        let mut scan = true;
        let mut last_scan = tokio::time::Instant::now();
        loop {
            let arrived = self.arrivals.take();
            if scan || last_scan.elapsed() >= self.config.rescan {
                scan = false;
                last_scan = tokio::time::Instant::now();
                self.scan(&mut due, &busy).await;
            }
            for id in arrived {
                if !busy.contains(&id) && !due.contains(&id) {
                    due.set(id, 0);
                }
            }
            if self.queue.take_flush_request() {
                tracing::info!("queue flush requested: every entry is due now");
                due.all_now();
            }
            let now = unix_now();
            for id in due.take_ready(now) {
                busy.insert(id.clone());
                let engine = self.clone();
                let workers = workers.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let next = engine.attempt(&id, &workers).await;
                    let _ = done.send((id, next));
                });
            }
            // Wake at the next due entry, and at least every second to see
            // a flush request.
            let sleep = due.next().map_or(Duration::from_secs(1), |when| {
                Duration::from_secs(when.saturating_sub(now)).min(Duration::from_secs(1))
            });
            tokio::select! {
                // New entries come with their ids; the directory is read
                // again too, at most once a second, for what came otherwise.
                () = self.arrivals.wait() => {
                    scan = last_scan.elapsed() >= Duration::from_secs(1);
                }
                finished = done_rx.recv() => {
                    if let Some((id, next)) = finished {
                        busy.remove(&id);
                        if let Some(when) = next {
                            due.set(id, when);
                        }
                    }
                }
                () = tokio::time::sleep(sleep.max(Duration::from_millis(50))) => {}
                changed = shutdown.changed() => {
                    // A dropped sender means the server is gone too.
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// Reads the queue directory: entries not known yet become due at
    /// their recorded time; entries no longer there are forgotten.
    async fn scan(&self, due: &mut Due, busy: &HashSet<String>) {
        let queue = self.queue.clone();
        let found = tokio::task::spawn_blocking(move || queue.ids()).await;
        let found = match found {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => return tracing::error!(%error, "cannot read the queue"),
            Err(error) => return tracing::error!(%error, "queue scan failed"),
        };
        let present: HashSet<&str> = found.iter().map(String::as_str).collect();
        due.retain(|id| present.contains(id));
        let new: Vec<String> = found
            .iter()
            .filter(|id| !due.contains(id) && !busy.contains(*id))
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        let queue = self.queue.clone();
        let states = tokio::task::spawn_blocking(move || queue.next_attempts(new)).await;
        match states {
            Ok(states) => {
                for (id, when) in states {
                    due.set(id, when);
                }
            }
            Err(error) => tracing::error!(%error, "queue scan failed"),
        }
    }

    /// One attempt at one entry; returns when it is due again, or `None`
    /// if it left the queue.
    async fn attempt(&self, id: &str, workers: &Arc<Semaphore>) -> Option<u64> {
        // First a connection slot at every destination the entry still has
        // (holding nothing else while waiting: a slow destination's backlog
        // waits here, not in the workers), then a worker.
        let domains = match self.pending_domains(id).await {
            Ok(domains) => domains,
            Err(next) => {
                if next.is_none() {
                    // Gone (delivered, deleted): nothing to remember.
                    lock(&self.unsaved).remove(id);
                }
                return next;
            }
        };
        let mut slots = Vec::new();
        for domain in &domains {
            match self.destination(domain).acquire_owned().await {
                Ok(slot) => slots.push(slot),
                Err(_) => return Some(unix_now() + 60),
            }
        }
        let Ok(_worker) = workers.acquire().await else {
            return Some(unix_now() + 60);
        };
        let queue = self.queue.clone();
        let owned_id = id.to_owned();
        let unsaved = self.unsaved.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let mut prepared = prepare(&queue, &owned_id)?;
            if let Ok(prepared) = &mut prepared
                && let Some(state) = lock(&unsaved).get(&owned_id)
            {
                // Both hold: what the store says (another engine may have
                // recorded more meanwhile) and what this one could not
                // record.
                prepared.state.merge(state);
            }
            Ok::<_, QueueError>(prepared)
        })
        .await;
        let prepared = match prepared {
            Ok(Ok(Ok(prepared))) => prepared,
            Ok(Ok(Err(when))) => return Some(when),
            Ok(Err(QueueError::Damaged { path, reason })) => {
                tracing::error!(id, path = %path.display(), %reason, "damaged queue entry moved to corrupt/");
                return None;
            }
            Ok(Err(QueueError::Io { error, .. }))
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                return None;
            }
            Ok(Err(error)) => {
                tracing::error!(id, %error, "cannot read queue entry; trying again in a minute");
                return Some(unix_now() + 60);
            }
            Err(error) => {
                tracing::error!(id, %error, "queue entry preparation failed");
                return Some(unix_now() + 60);
            }
        };
        let lost = prepared.claim.lost();
        let results = if prepared.state.bounce_requested {
            returned_by_postmaster(&prepared)
        } else {
            tokio::select! {
                results = self.deliver_all(&prepared) => results,
                // Another engine may be taking the entry over: this attempt
                // stops here, before its final dot if it had not sent it.
                () = lost => {
                    tracing::warn!(id, "the claim on the entry lapsed (its store was out of reach); attempt abandoned, the entry stays queued");
                    return Some(unix_now() + 60);
                }
            }
        };
        drop(slots);
        let queue = self.queue.clone();
        let submit = self.submit.clone();
        let config = self.config.clone();
        let unsaved = self.unsaved.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let record = record::Record {
                queue: queue.as_ref(),
                config: &config,
                submit: submit.as_ref(),
                unsaved: &unsaved,
            };
            record.conclude(&id, prepared, results)
        })
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "recording a delivery attempt failed");
            Some(unix_now() + 60)
        })
    }

    /// Delivers the unfinished recipients, one parallel task per domain.
    async fn deliver_all(&self, prepared: &Prepared) -> Vec<(RecipientResult, Option<String>)> {
        let mut by_domain: Vec<(String, Vec<String>)> = Vec::new();
        for recipient in &prepared.envelope.recipients {
            if prepared.state.is_done(recipient) {
                continue;
            }
            let domain = domain_of(recipient);
            match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, list)) => list.push(recipient.clone()),
                None => by_domain.push((domain, vec![recipient.clone()])),
            }
        }
        let tls_optional = tls_required_no(&prepared.headers);
        let groups = by_domain.into_iter().map(|(domain, recipients)| {
            let message = Message {
                from: prepared.envelope.from.clone(),
                recipients,
                size: prepared.wire_size,
                eight_bit: prepared.envelope.body.eq_ignore_ascii_case("8BITMIME"),
                smtputf8: prepared.envelope.smtputf8,
            };
            self.deliver_group(domain, message, &prepared.source, tls_optional)
        });
        let mut all = Vec::new();
        for results in futures_join_all(groups).await {
            all.extend(results);
        }
        all
    }

    /// Delivers to one domain. `tls_optional`: the message says
    /// `TLS-Required: No` (RFC 8689): the domain's own policies (DANE,
    /// MTA-STS) are not applied, the configured one is, and its sessions
    /// are not reported (TLS reports themselves are sent so, RFC 8460 §3).
    async fn deliver_group(
        &self,
        domain: String,
        message: Message,
        source: &MessageSource,
        tls_optional: bool,
    ) -> Vec<(RecipientResult, Option<String>)> {
        let same = |status: Status, response: Response| -> Vec<(RecipientResult, Option<String>)> {
            message
                .recipients
                .iter()
                .map(|recipient| {
                    let result = RecipientResult {
                        recipient: recipient.clone(),
                        status,
                        response: response.clone(),
                    };
                    (result, None)
                })
                .collect()
        };
        let targets = match self.config.routes.resolve(&domain, &self.dns).await {
            Ok(targets) if !targets.is_empty() => targets,
            Ok(_) => return same(Status::Deferred, Response::local(451, "4.4.4 no route")),
            Err(RouteError::Permanent(text)) => {
                return same(Status::Failed, Response::local(550, text));
            }
            Err(RouteError::Temporary(text)) => {
                return same(Status::Deferred, Response::local(451, text));
            }
        };
        let mut report = Vec::new();
        let planned = if tls_optional {
            tracing::info!(%domain, "TLS-Required: No: the domain's DANE and MTA-STS policies are not applied");
            verify_within(&domain, targets).map(|targets| (targets, None))
        } else {
            self.domain_policy(&domain, targets, &mut report).await
        };
        let (results, remote) = match &planned {
            Ok((targets, sts)) => {
                let mut tls_log = Vec::new();
                let delivered = self
                    .transport
                    .deliver(targets, &message, source, &self.dns, &mut tls_log)
                    .await;
                if self.config.routes.by_mx(&domain) && !tls_optional {
                    report.extend(tls_reports::sessions_of(
                        &domain,
                        targets,
                        sts.as_ref(),
                        &tls_log,
                    ));
                }
                delivered
            }
            Err(text) => (
                same(Status::Deferred, Response::local(451, text.clone()))
                    .into_iter()
                    .map(|(r, _)| r)
                    .collect(),
                None,
            ),
        };
        if let Some(reports) = &self.tls_reports {
            reports.record(report).await;
        }
        results.into_iter().map(|r| (r, remote.clone())).collect()
    }

    /// The destination domain's own TLS policy, for mail routed by its MX
    /// records, in the order of docs/DESIGN.md: DANE for the hosts with
    /// validated TLSA records, then MTA-STS for the others. MTA-STS in
    /// `enforce` mode keeps only the MX hosts it lists and requires TLS
    /// with a certificate valid for each (`verify`); in `testing` mode
    /// what would fail is logged and delivery goes on as without a policy.
    /// Routes and the smarthost keep their own policy.
    ///
    /// Returns the targets and the MTA-STS policy that applied, if any;
    /// MX hosts DANE took out are added to `report`.
    async fn domain_policy(
        &self,
        domain: &str,
        targets: Vec<Target>,
        report: &mut Vec<crate::tls_rpt::Session>,
    ) -> Result<(Vec<Target>, Option<crate::mta_sts::Policy>), String> {
        if !self.config.routes.by_mx(domain) {
            return Ok((targets, None));
        }
        let targets = self.dane(domain, targets, report).await?;
        let lookup = match &self.sts {
            Some(sts) => sts.policy(domain, &self.dns).await,
            None => sts::Lookup::default(),
        };
        if let Some(failure) = lookup.failure {
            // The domain has a policy (its TXT record says so) that could
            // not be had: one failed attempt, in its TLS report.
            report.push(crate::tls_rpt::Session::failed(
                domain,
                crate::tls_rpt::policy::STS,
                failure,
                "",
                "",
            ));
        }
        let Some(policy) = lookup.policy.filter(|p| p.mode != Mode::None) else {
            return Ok((verify_within(domain, targets)?, None));
        };
        let governed = |t: &Target| t.tls_source != TlsSource::Dane;
        for target in targets
            .iter()
            .filter(|t| governed(t) && !policy.allows(&t.host))
        {
            tracing::info!(%domain, host = %target.host, mode = policy.mode.name(), "MX host not in the domain's MTA-STS policy");
            report.push(crate::tls_rpt::Session {
                policy: policy.lines(),
                mx: policy.mx.clone(),
                ..crate::tls_rpt::Session::failed(
                    domain,
                    crate::tls_rpt::policy::STS,
                    crate::tls_rpt::result::VALIDATION_FAILURE,
                    &target.host,
                    "the MX host is not in the MTA-STS policy",
                )
            });
        }
        match policy.mode {
            Mode::Enforce => {
                let allowed: Vec<Target> = targets
                    .into_iter()
                    .filter(|t| !governed(t) || policy.allows(&t.host))
                    .collect();
                if allowed.is_empty() {
                    return Err(format!(
                        "4.7.5 no MX host of {domain} is in its MTA-STS policy (mx: {})",
                        policy.mx.join(", ")
                    ));
                }
                tracing::info!(%domain, policy = "mta-sts enforce", "TLS with a verified certificate required");
                let targets = allowed
                    .into_iter()
                    .map(|t| {
                        if governed(&t) {
                            Target {
                                tls: TlsLevel::Verify,
                                tls_source: TlsSource::MtaSts,
                                ..t
                            }
                        } else {
                            t
                        }
                    })
                    .collect();
                Ok((targets, Some(policy)))
            }
            Mode::Testing | Mode::None => {
                // Delivered as without a policy; the certificate is
                // checked on the side, for the TLS report.
                let targets = verify_within(domain, targets)?
                    .into_iter()
                    .map(|t| Target {
                        observe: governed(&t),
                        ..t
                    })
                    .collect();
                Ok((targets, Some(policy)))
            }
        }
    }

    /// DANE (RFC 7672 §2.2): when the domain's MX answer is validated,
    /// each host with validated TLSA records must present a certificate
    /// they name (or, if none is usable, must at least speak TLS); a host
    /// whose TLSA lookup failed is not used at all, so a forged or broken
    /// answer never leads to plaintext. Hosts without TLSA records keep
    /// their place and go on to the next policy.
    async fn dane(
        &self,
        domain: &str,
        targets: Vec<Target>,
        report: &mut Vec<crate::tls_rpt::Session>,
    ) -> Result<Vec<Target>, String> {
        match self.dns.mx_validated(domain).await {
            Ok(true) => {}
            Ok(false) => return Ok(targets),
            Err(error) => {
                tracing::warn!(%domain, %error, policy = "dane", "DNSSEC status of the MX records unknown");
                return Err(format!(
                    "4.4.3 DANE: the validating resolver did not answer for {domain}'s MX records ({error})"
                ));
            }
        }
        let mut kept = Vec::with_capacity(targets.len());
        let mut failed = Vec::new();
        for target in targets {
            match self.dns.dane(&target.host, target.port).await {
                DaneHost::NotApplicable => kept.push(target),
                // Validated records that are all unusable ask for TLS
                // only; a configured `verify` asks more, and stays.
                DaneHost::Tlsa(records)
                    if target.tls.verifies() && !records.iter().any(|r| r.usable()) =>
                {
                    kept.push(target);
                }
                DaneHost::Tlsa(records) => {
                    let usable = records.iter().any(|r| r.usable());
                    tracing::info!(%domain, host = %target.host, usable, policy = "dane", "validated TLSA records: {}", if usable { "the certificate must match them" } else { "none usable, TLS required" });
                    kept.push(Target {
                        tls: if usable {
                            TlsLevel::Dane
                        } else {
                            TlsLevel::Required
                        },
                        tls_source: TlsSource::Dane,
                        tlsa: Some(records.into()),
                        ..target
                    });
                }
                DaneHost::Failed(reason) => {
                    tracing::warn!(%domain, host = %target.host, %reason, policy = "dane", "MX host skipped");
                    // DANE's policy domain is the MX host (RFC 8460 §4.4).
                    report.push(crate::tls_rpt::Session::failed(
                        &target.host.to_ascii_lowercase(),
                        crate::tls_rpt::policy::TLSA,
                        crate::tls_rpt::result::DNSSEC_INVALID,
                        &target.host,
                        &reason,
                    ));
                    failed.push(format!("{}: {reason}", target.host));
                }
            }
        }
        if kept.is_empty() {
            return Err(format!("4.7.5 DANE: {}", failed.join("; ")));
        }
        Ok(kept)
    }

    /// The destination domains an entry still has to reach, read without
    /// locking it. `Err` carries the scheduler's answer when the entry
    /// cannot be read (gone, damaged: see [`Engine::attempt`]).
    async fn pending_domains(&self, id: &str) -> Result<Vec<String>, Option<u64>> {
        let queue = self.queue.clone();
        let unsaved = self.unsaved.clone();
        let owned_id = id.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let (envelope, _) = queue.open(&owned_id)?;
            let mut state = queue.load_state(&owned_id)?;
            if let Some(unsaved) = lock(&unsaved).get(&owned_id) {
                state.merge(unsaved);
            }
            let mut domains: Vec<String> = envelope
                .recipients
                .iter()
                .filter(|r| !state.is_done(r))
                .map(|r| domain_of(r))
                .collect();
            // Always in the same order, so two entries never each hold
            // the slot the other waits for.
            domains.sort();
            domains.dedup();
            Ok::<_, QueueError>(domains)
        })
        .await;
        match read {
            Ok(Ok(domains)) => Ok(domains),
            Ok(Err(QueueError::Damaged { path, reason })) => {
                tracing::error!(id, path = %path.display(), %reason, "damaged queue entry moved to corrupt/");
                Err(None)
            }
            Ok(Err(QueueError::Io { error, .. }))
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(None)
            }
            Ok(Err(error)) => {
                tracing::error!(id, %error, "cannot read queue entry; trying again in a minute");
                Err(Some(unix_now() + 60))
            }
            Err(error) => {
                tracing::error!(id, %error, "queue entry preparation failed");
                Err(Some(unix_now() + 60))
            }
        }
    }

    fn destination(&self, domain: &str) -> Arc<Semaphore> {
        let mut map = lock(&self.destinations);
        map.retain(|_, s| Arc::strong_count(s) > 1);
        map.entry(domain.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_per_destination.max(1))))
            .clone()
    }
}

/// A mutex whose holder panicked still holds good data here.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `yubin queue bounce`: every unfinished recipient fails, undelivered.
fn returned_by_postmaster(prepared: &Prepared) -> Vec<(RecipientResult, Option<String>)> {
    prepared
        .envelope
        .recipients
        .iter()
        .filter(|r| !prepared.state.is_done(r))
        .map(|recipient| {
            let result = RecipientResult {
                recipient: recipient.clone(),
                status: Status::Failed,
                response: Response::local(550, "5.0.0 returned to the sender by the postmaster"),
            };
            (result, None)
        })
        .collect()
}

/// Awaits all futures, in order (the groups of one entry run in parallel).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Claims and reads an entry (blocking). `Err(when)`: not now (claimed
/// elsewhere, or another engine tried it meanwhile); look again then.
fn prepare(queue: &Arc<dyn QueueStore>, id: &str) -> Result<Result<Prepared, u64>, QueueError> {
    let now = unix_now();
    let Some(claim) = queue.claim(id, Some(now))? else {
        // An attempt elsewhere (or `yubin queue delete`) is a matter of
        // seconds; an entry tried meanwhile is due when that attempt said.
        let next = queue.load_state(id)?.next_attempt;
        return Ok(Err(next.max(now + 5)));
    };
    let (envelope, mut message) = queue.open(id)?;
    let io = |error| QueueError::Io {
        path: id.into(),
        error,
    };
    // The header section, for bounces (at most 64 KiB of it).
    let mut start = Vec::new();
    (&mut message)
        .take(64 * 1024)
        .read_to_end(&mut start)
        .map_err(io)?;
    let headers = dsn::header_section(&start, 64 * 1024).to_vec();
    // The wire size is in the envelope; only entries written without it
    // are read through to count it.
    let wire_size = match envelope.size {
        Some(size) => size,
        None => {
            let mut wire = WireSize::new();
            wire.update(&start);
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = message.read(&mut chunk).map_err(io)?;
                if n == 0 {
                    break wire.finish();
                }
                wire.update(&chunk[..n]);
            }
        }
    };
    let state = queue.load_state(id)?;
    Ok(Ok(Prepared {
        claim,
        source: MessageSource {
            store: queue.clone(),
            id: id.to_owned(),
        },
        envelope,
        wire_size,
        headers,
        state,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, tls: TlsLevel) -> Target {
        Target {
            host: host.into(),
            port: 25,
            tls,
            tls_source: TlsSource::Configured,
            credentials: None,
            tlsa: None,
            observe: false,
        }
    }

    #[test]
    fn tls_required_no_is_read_from_the_header_only() {
        assert!(tls_required_no(
            b"Subject: x\r\nTLS-Required: No\r\n\r\nbody"
        ));
        assert!(tls_required_no(b"tls-required:\r\n  no\r\n\r\n"));
        assert!(!tls_required_no(b"TLS-Required: Yes\r\n\r\n"));
        assert!(!tls_required_no(b"Subject: x\r\n\r\nTLS-Required: No\r\n"));
        assert!(!tls_required_no(b"X-TLS-Required: No\r\n\r\n"));
    }

    /// A spoofed MX outside the domain cannot pass `verify` with a
    /// certificate for its own name.
    #[test]
    fn verify_keeps_only_mx_hosts_within_the_domain() {
        let targets = vec![
            target("mx.attacker.example", TlsLevel::Verify),
            target("MX1.Bank.Example.", TlsLevel::Verify),
            target("notbank.example", TlsLevel::Verify),
        ];
        let kept = verify_within("bank.example", targets).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].host, "MX1.Bank.Example.");
        let none = verify_within(
            "bank.example",
            vec![target("mx.other.example", TlsLevel::Verify)],
        );
        assert!(
            none.unwrap_err()
                .contains("4.7.5 no MX host of bank.example")
        );
        let opportunistic = vec![target("mx.other.example", TlsLevel::Opportunistic)];
        assert_eq!(
            verify_within("bank.example", opportunistic.clone()).unwrap(),
            opportunistic
        );
    }
}
