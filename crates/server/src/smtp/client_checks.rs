//! The checks of a client before its mail, at its first RCPT for a local
//! user (MX listener; never a user's own mail): HELO sanity, FCrDNS and
//! DNS blocklists, each off, a tag, a refusal or a score; then
//! greylisting per recipient. Cheap, and before DATA: a refused client
//! never sends its message.

use std::collections::HashSet;
use std::net::IpAddr;

use yubin_mailauth::client::Fcrdns;
use yubin_mailauth::dnsbl::Answer;
use yubin_smtp_proto::Reply;

use super::SmtpService;
use super::helo_check::helo_problem;
use crate::backend::{Greylisted, Triplet};
use crate::inbound_config::{CheckAction, CheckWord};

/// What the checks found about a client.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct ClientVerdict {
    /// Refuse its recipients with this.
    pub(super) refusal: Option<Reply>,
    /// Tag its messages as spam.
    pub(super) tag: bool,
    /// Its forward-confirmed name, when asked and found.
    pub(super) name: Option<String>,
    /// Whether the name was asked for (found or not).
    pub(super) name_asked: bool,
    /// What failed, for the log (`helo=not-fqdn fcrdns=fail dnsbl=zone`).
    pub(super) findings: Vec<String>,
}

/// Adds up what the failed checks ask for.
#[derive(Default)]
struct Tally {
    refusal: Option<Reply>,
    tag: bool,
    score: f64,
}

impl Tally {
    fn failed(&mut self, action: CheckAction, reply: Reply) {
        match action {
            CheckAction::Named(CheckWord::Off) => {}
            CheckAction::Named(CheckWord::Tag) => self.tag = true,
            CheckAction::Named(CheckWord::Reject) => self.refuse(reply),
            CheckAction::Score(score) => self.score += score,
        }
    }

    /// Keeps the first refusal, but a permanent one over a temporary one:
    /// a listed client with a lame reverse zone must not retry for days.
    fn refuse(&mut self, reply: Reply) {
        match &self.refusal {
            Some(kept) if kept.code >= 500 || reply.code < 500 => {}
            _ => self.refusal = Some(reply),
        }
    }
}

/// Checks the client at `ip` that said `helo`; `ours`: this server's
/// names.
pub(super) async fn check_client(
    service: &SmtpService,
    ip: IpAddr,
    helo: &str,
    ours: &HashSet<String>,
) -> ClientVerdict {
    let config = &service.config.inbound;
    let mut tally = Tally::default();
    let mut verdict = ClientVerdict::default();
    if config.helo.is_on()
        && let Some(problem) = helo_problem(helo, ip, ours)
    {
        verdict.findings.push(format!("helo={}", problem.name()));
        tally.failed(config.helo, problem.reply());
    }
    // Loopback has no DNS of its own (the resolver answers `localhost`
    // itself, RFC 6761), and no blocklist lists private addresses.
    let checks = service.client_checks.as_ref().filter(|_| !ip.is_loopback());
    if let Some(checks) = checks {
        let fcrdns = async {
            if config.fcrdns.is_on() {
                Some(checks.fcrdns(ip).await)
            } else {
                None
            }
        };
        let lists = ask_blocklists(checks, &service.dnsbl_zones, ip);
        let (fcrdns, lists) = tokio::join!(fcrdns, lists);
        verdict.name_asked = fcrdns.is_some();
        match fcrdns {
            Some(Fcrdns::Pass(name)) => verdict.name = Some(name),
            Some(Fcrdns::Fail) => {
                verdict.findings.push("fcrdns=fail".into());
                tally.failed(
                    config.fcrdns,
                    Reply::with_text(
                        550,
                        "5.7.25",
                        format!("Client host rejected: cannot find your hostname, [{ip}]"),
                    ),
                );
            }
            Some(Fcrdns::TempError) => {
                verdict.findings.push("fcrdns=temperror".into());
                // No name yet is no evidence: only a refusal waits.
                if config.fcrdns == CheckAction::Named(CheckWord::Reject) {
                    tally.refuse(Reply::with_text(
                        450,
                        "4.7.25",
                        format!("Client host rejected: cannot find your hostname, [{ip}]"),
                    ));
                }
            }
            None => {}
        }
        for (zone, answer) in lists {
            match answer {
                Ok(Answer::Listed(code)) => {
                    verdict.findings.push(format!("dnsbl={zone}={code}"));
                    tally.failed(
                        config.dnsbl_action,
                        Reply::with_text(
                            554,
                            "5.7.1",
                            format!("Service unavailable; client [{ip}] blocked using {zone}"),
                        ),
                    );
                }
                Ok(Answer::NotListed) => {}
                Ok(Answer::Refused(code)) => {
                    tracing::warn!(zone = %zone, code = %code, "DNS blocklist refused the query (taken as no answer)");
                }
                Err(error) => {
                    tracing::warn!(%error, "DNS blocklist did not answer (taken as no answer)")
                }
            }
        }
    }
    if tally.refusal.is_none() && tally.score > 0.0 {
        verdict.findings.push(format!("score={:.1}", tally.score));
        if tally.score >= config.reject_score {
            tally.refusal = Some(Reply::with_text(
                550,
                "5.7.1",
                format!(
                    "Client host rejected: too many signs of spam ({})",
                    verdict.findings.join(" ")
                ),
            ));
        } else if tally.score >= config.tag_score {
            tally.tag = true;
        }
    }
    verdict.refusal = tally.refusal;
    verdict.tag = tally.tag;
    verdict
}

/// Every configured blocklist asked about `ip` at once.
async fn ask_blocklists(
    checks: &std::sync::Arc<yubin_mailauth::client::ClientChecks>,
    zones: &[yubin_mailauth::dnsbl::Zone],
    ip: IpAddr,
) -> Vec<(String, Result<Answer, String>)> {
    if !publicly_routed(ip) {
        return Vec::new();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for zone in zones.iter().cloned() {
        let checks = checks.clone();
        tasks.spawn(async move {
            let answer = checks.dnsbl(ip, &zone).await;
            (zone.name, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(answer) = done {
            answers.push(answer);
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    answers
}

/// Whether `ip` can be on a public blocklist: not loopback, private,
/// link-local or unspecified.
fn publicly_routed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// A sender as greylisting compares it: lower case, a BATV tag
/// (`prvs=TAG=local`) taken off, an SRS address as `srs`, and digits as
/// `#`, so that VERP and per-message bounce addresses of one sender make
/// one triplet (as postgrey does).
fn greylist_sender(sender: &str) -> String {
    let lower = sender.to_ascii_lowercase();
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return lower;
    };
    let local = ["prvs=", "msprvs1=", "btv1=="]
        .iter()
        .find_map(|tag| local.strip_prefix(tag))
        .map_or(local, |rest| rest.split_once('=').map_or(rest, |(_, l)| l));
    let local = if local.starts_with("srs0=") || local.starts_with("srs1=") {
        "srs".to_owned()
    } else {
        local
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect()
    };
    format!("{local}@{domain}")
}

/// Greylisting for one recipient: `None` when it may pass, else the
/// reply.
pub(super) async fn greylist(
    service: &SmtpService,
    ip: IpAddr,
    sender: &str,
    recipient: &str,
) -> Option<Reply> {
    let network = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    let triplet = Triplet {
        network,
        sender: greylist_sender(sender),
        recipient: recipient.to_ascii_lowercase(),
    };
    match service.greylist.attempt(&triplet).await {
        Greylisted::Pass => None,
        Greylisted::Wait(left) => Some(Reply::with_text(
            451,
            "4.7.1",
            format!(
                "Greylisted: please try again in {} seconds",
                left.as_secs().max(1)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_that_change_per_message_make_one_triplet() {
        for (sender, want) in [
            ("Alice@Example.COM", "alice@example.com"),
            (
                "prvs=1234abcd=bounces@lists.example",
                "bounces@lists.example",
            ),
            (
                "SRS0=HHH=TT=orig.example=user@fwd.example",
                "srs@fwd.example",
            ),
            (
                "bounce-12345-678@mailer.example",
                "bounce-#####-###@mailer.example",
            ),
            ("", ""),
        ] {
            assert_eq!(greylist_sender(sender), want, "{sender}");
        }
    }

    #[test]
    fn private_and_loopback_addresses_are_on_no_public_list() {
        for (ip, public) in [
            ("192.0.2.1", true),
            ("8.8.8.8", true),
            ("10.1.2.3", false),
            ("192.168.1.1", false),
            ("127.0.0.2", false),
            ("2001:db8::1", true),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::1", false),
        ] {
            assert_eq!(
                publicly_routed(ip.parse().expect("an address")),
                public,
                "{ip}"
            );
        }
    }
}
