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
        Arc::new(TlsReports {
            dir,
            reporter,
            period: period.as_secs().max(1),
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
        let current = unix_now() / self.period;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut finished: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|&n| n < current)
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
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let sessions: Vec<Session> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let domains: BTreeSet<&str> = sessions.iter().map(|s| s.domain.as_str()).collect();
        let (start, end) = (number * self.period, (number + 1) * self.period - 1);
        let mut unsent = BTreeSet::new();
        for domain in domains {
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
                    tls_rpt::report(&self.reporter, &report_id, domain, start, end, &sessions);
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
                        let count = sessions.iter().filter(|s| s.domain == domain).count();
                        tracing::info!(%domain, to = %address, report_id, sessions = count, "TLS report sent");
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
            for session in sessions
                .iter()
                .filter(|s| unsent.contains(s.domain.as_str()))
            {
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
            Session {
                domain: domain.to_owned(),
                policy_type: policy_type.to_owned(),
                policy,
                mx,
                failure: outcome.failure.map(str::to_owned),
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
                .flat_map(|records| records.iter().map(|r| format!("{r:?}")))
                .collect(),
            Vec::new(),
        ),
        (Some(t), Some(policy)) if t.tls_source == TlsSource::MtaSts || t.observe => {
            (tls_rpt::policy::STS, policy.lines(), policy.mx.clone())
        }
        _ => (tls_rpt::policy::NONE, Vec::new(), Vec::new()),
    }
}
