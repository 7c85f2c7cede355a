//! TLS reports (RFC 8460) for the delivery engine. Each TLS session to a
//! destination's MX host becomes one JSON line in `{queue}/tls-rpt/N`,
//! where N numbers the report period (a day) since 1970. The lines are not
//! fsynced: a report is a best-effort summary, and losing the last lines
//! in a crash costs a count, never mail. Once a period is over, every
//! destination domain that asks for reports in its `_smtp._tls` record
//! gets one, by mail through our own queue (so it is DKIM-signed and
//! retried like any other mail), and the period's file goes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Submit;
use super::route::{Dns, RouteError};
use super::unix_now;
use crate::tls_rpt::{self, Reporter, Session};

/// A period's file stops growing here (64 MiB, some 300,000 sessions):
/// the disk is bounded whatever the traffic. Later sessions go uncounted.
const FILE_LIMIT: u64 = 64 << 20;

/// A period whose report could not be sent for this many periods (its
/// domains' DNS failing) is dropped.
const GIVE_UP_AFTER: u64 = 3;

/// The sessions on record, and the reports they become.
pub struct TlsReports {
    dir: PathBuf,
    reporter: Reporter,
    period: u64,
    /// How long after a period's end its reports go: random, so that
    /// every sender in the world does not report at 00:00 UTC (RFC 8460
    /// §5.1 suggests up to four hours).
    delay: u64,
    /// A full file was logged about (once per run).
    full_logged: AtomicBool,
}

impl std::fmt::Debug for TlsReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReports")
            .field("dir", &self.dir)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl TlsReports {
    /// Reports kept in `dir`, each covering `period` (a day; shorter only
    /// in tests), signed as `reporter`.
    pub fn new(dir: PathBuf, reporter: Reporter, period: Duration) -> Arc<TlsReports> {
        let period = period.as_secs().max(1);
        let spread = (period / 6).min(4 * 3600);
        let delay = if spread == 0 {
            0
        } else {
            u64::from(getrandom::u32().unwrap_or(0)) % spread
        };
        Arc::new(TlsReports {
            dir,
            reporter,
            period,
            delay,
            full_logged: AtomicBool::new(false),
        })
    }

    /// How often finished periods are looked for.
    pub fn tick(&self) -> Duration {
        Duration::from_secs((self.period / 4).clamp(1, 3600))
    }

    /// Adds `sessions` to the current period's record.
    pub async fn record(self: &Arc<Self>, sessions: Vec<Session>) {
        if sessions.is_empty() {
            return;
        }
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || this.append(&sessions)).await;
        if let Ok(Err(error)) = written {
            tracing::warn!(dir = %self.dir.display(), %error, "TLS report sessions not recorded");
        }
    }

    fn append(&self, sessions: &[Session]) -> std::io::Result<()> {
        let mut lines = Vec::new();
        for session in sessions {
            serde_json::to_writer(&mut lines, session)?;
            lines.push(b'\n');
        }
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join((unix_now() / self.period).to_string());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        if file.metadata()?.len() + lines.len() as u64 > FILE_LIMIT {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %path.display(), "TLS report record full; later sessions of this period are not counted");
            }
            return Ok(());
        }
        // One write: lines of concurrent attempts do not interleave.
        file.write_all(&lines)
    }

    /// Sends the reports of every period that is over.
    pub async fn send_due(&self, dns: &impl Dns, submit: &Arc<dyn Submit>) {
        let now = unix_now();
        let current = now / self.period;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut finished: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|&n: &u64| {
                n.saturating_add(1)
                    .saturating_mul(self.period)
                    .saturating_add(self.delay)
                    <= now
            })
            .collect();
        finished.sort_unstable();
        for number in finished {
            self.send_period(number, current, dns, submit).await;
        }
    }

    async fn send_period(
        &self,
        number: u64,
        current: u64,
        dns: &impl Dns,
        submit: &Arc<dyn Submit>,
    ) {
        let path = self.dir.join(number.to_string());
        // Up to 64 MiB to read and sort: not on the engine's threads.
        let read = tokio::task::spawn_blocking({
            let path = path.clone();
            move || by_domain(&path)
        })
        .await;
        let Ok(Ok(by_domain)) = read else {
            tracing::warn!(path = %path.display(), "TLS report record unreadable; removed");
            let _ = std::fs::remove_file(&path);
            return;
        };
        let (start, end) = (number * self.period, (number + 1) * self.period - 1);
        let mut unsent = BTreeSet::new();
        for (domain, sessions) in &by_domain {
            let domain = domain.as_str();
            let addresses = match dns.txt(&format!("_smtp._tls.{domain}")).await {
                Ok(records) => tls_rpt::rua(&records),
                Err(RouteError::Temporary(error) | RouteError::Permanent(error)) => {
                    tracing::info!(%domain, %error, "TLS report destination lookup failed; trying later");
                    unsent.insert(domain);
                    continue;
                }
            };
            for address in addresses {
                let mut random = [0u8; 6];
                let _ = getrandom::fill(&mut random);
                let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
                let report_id = format!("{number}.{random}@{}", self.reporter.submitter);
                let report =
                    tls_rpt::report(&self.reporter, &report_id, domain, start, end, sessions);
                let message = match tls_rpt::message(
                    &self.reporter,
                    &report_id,
                    domain,
                    (start, end),
                    &report,
                    &address,
                    unix_now(),
                ) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%domain, %error, "TLS report not made");
                        continue;
                    }
                };
                let submit = submit.clone();
                let to = address.clone();
                let sent = tokio::task::spawn_blocking(move || submit.submit(&to, &message)).await;
                match sent {
                    Ok(Ok(())) => {
                        tracing::info!(%domain, to = %address, report_id, sessions = sessions.len(), "TLS report sent");
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%domain, to = %address, %error, "TLS report not queued")
                    }
                    Err(error) => {
                        tracing::warn!(%domain, to = %address, %error, "TLS report not queued")
                    }
                }
            }
        }
        let keep = !unsent.is_empty() && current - number < GIVE_UP_AFTER;
        let result = if keep {
            // Only the domains still to report on stay.
            let mut rest = Vec::new();
            for session in unsent.iter().flat_map(|d| &by_domain[*d]) {
                if serde_json::to_writer(&mut rest, session).is_ok() {
                    rest.push(b'\n');
                }
            }
            yubin_durable::replace_unsynced(&path, &rest, 0o600)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "TLS report record not updated");
        }
    }
}

/// A period's record, by policy domain; lines that do not parse (cut
/// off in a crash) are skipped.
fn by_domain(path: &std::path::Path) -> std::io::Result<BTreeMap<String, Vec<Session>>> {
    let bytes = std::fs::read(path)?;
    let mut by_domain: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&bytes).lines() {
        if let Ok(session) = serde_json::from_str::<Session>(line) {
            by_domain
                .entry(session.domain.clone())
                .or_default()
                .push(session);
        }
    }
    Ok(by_domain)
}

/// The report lines for what `tls_log` says about a domain's sessions,
/// each under the policy its target was held to.
pub(crate) fn sessions_of(
    domain: &str,
    targets: &[super::Target],
    sts: Option<&crate::mta_sts::Policy>,
    tls_log: &[super::transport::TlsOutcome],
) -> Vec<Session> {
    let by_host: BTreeMap<&str, &super::Target> =
        targets.iter().map(|t| (t.host.as_str(), t)).collect();
    tls_log
        .iter()
        .map(|outcome| {
            let target = by_host.get(outcome.host.as_str());
            let (policy_type, policy, mx) = policy_of(target.copied(), sts);
            // DANE's policy domain is the MX host, whose TLSA records
            // they are (RFC 8460 §4.4); the others', the recipient domain.
            let policy_domain = if policy_type == tls_rpt::policy::TLSA {
                outcome.host.to_ascii_lowercase()
            } else {
                domain.to_owned()
            };
            Session {
                domain: policy_domain,
                policy_type: policy_type.to_owned(),
                policy,
                mx,
                failure: outcome.failure.as_ref().map(|(kind, _)| (*kind).to_owned()),
                reason: outcome
                    .failure
                    .as_ref()
                    .map(|(_, reason)| reason.clone())
                    .unwrap_or_default(),
                host: outcome.host.clone(),
                ip: outcome.ip.to_string(),
                sender_ip: outcome
                    .local_ip
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The report's policy for a target: DANE's records, the MTA-STS policy
/// it was held to (or observed under, in `testing` mode), or none.
pub(crate) fn policy_of(
    target: Option<&super::Target>,
    sts: Option<&crate::mta_sts::Policy>,
) -> (&'static str, Vec<String>, Vec<String>) {
    use super::route::TlsSource;
    match (target, sts) {
        (Some(t), _) if t.tls_source == TlsSource::Dane => (
            tls_rpt::policy::TLSA,
            t.tlsa
                .iter()
                .flat_map(|records| records.iter().map(ToString::to_string))
                .collect(),
            Vec::new(),
        ),
        (Some(t), Some(policy)) if t.tls_source == TlsSource::MtaSts || t.observe => {
            (tls_rpt::policy::STS, policy.lines(), policy.mx.clone())
        }
        _ => (tls_rpt::policy::NONE, Vec::new(), Vec::new()),
    }
}
