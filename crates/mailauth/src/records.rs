//! The DNS records a mail domain needs when this server sends and receives
//! its mail, and what is wrong with those the DNS holds: MX; the server's
//! address records and forward-confirmed reverse DNS; SPF; DKIM for each
//! key; DMARC; MTA-STS and TLS-RPT; the service records of RFC 6186 and
//! RFC 8314 that let mail clients find the server. `yubin dns check` asks
//! the DNS and hands the answers over ([`Found`]); the judgement is here,
//! pure, and gives for each record the line to publish.

use std::net::IpAddr;

use serde::Serialize;

use crate::dkim::Key;

/// What the domain's mail setup is.
#[derive(Clone, Debug)]
pub struct Setup<'a> {
    /// The mail domain.
    pub domain: String,
    /// This server's host name (MX target, HELO name, PTR name).
    pub hostname: String,
    /// The address mail leaves from.
    pub address: IpAddr,
    /// The DKIM keys that sign the domain's mail.
    pub keys: &'a [Key],
    /// The port each of [`SERVICES`] is offered on, in order; `None`: not
    /// offered (its SRV record then says so with target `.`).
    pub ports: [Option<u16>; 4],
}

/// One DNS question's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The records, as text (TXT strings joined; MX as `preference host`;
    /// SRV as `priority weight port target`).
    Records(Vec<String>),
    /// The name has no such records, or does not exist.
    None,
    /// The question could not be answered (SERVFAIL, timeout…).
    Failed(String),
}

impl Answer {
    /// The records; none for `None` and `Failed`.
    pub fn records(&self) -> &[String] {
        match self {
            Answer::Records(r) => r,
            _ => &[],
        }
    }
}

/// The answers `yubin dns check` gathered.
#[derive(Clone, Debug)]
pub struct Found {
    /// MX of the domain.
    pub mx: Answer,
    /// A and AAAA of the host name.
    pub host: Answer,
    /// PTR of the address.
    pub ptr: Answer,
    /// A and AAAA of each PTR name.
    pub ptr_forward: Vec<(String, Answer)>,
    /// TXT of the domain.
    pub txt: Answer,
    /// The SPF verdict for the address sending as `postmaster@domain`
    /// (`pass`, `fail`, `softfail`…), from an SPF evaluator.
    pub spf_result: String,
    /// TXT of each key's `SELECTOR._domainkey.DOMAIN`, in key order.
    pub dkim: Vec<Answer>,
    /// TXT of `_dmarc.DOMAIN`.
    pub dmarc: Answer,
    /// TXT of `_mta-sts.DOMAIN`.
    pub mta_sts: Answer,
    /// TXT of `_smtp._tls.DOMAIN`.
    pub tls_rpt: Answer,
    /// SRV of each of [`SERVICES`], in order.
    pub srv: Vec<Answer>,
}

/// The service records of RFC 6186 (and RFC 8314 for implicit TLS) for a
/// POP3 server with submission: name, port, and the priority to publish
/// (implicit TLS first, RFC 8314 §5.1).
pub const SERVICES: [(&str, u16, u16); 4] = [
    ("_submissions._tcp", 465, 0),
    ("_submission._tcp", 587, 10),
    ("_pop3s._tcp", 995, 0),
    ("_pop3._tcp", 110, 10),
];

/// How one record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Not there and needed.
    Missing,
    /// There, but not as it should be.
    Wrong,
    /// Not there; recommended, not needed.
    Optional,
    /// The DNS did not answer: try again.
    Error,
}

/// The verdict on one record.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What it is: `MX`, `A`, `PTR`, `SPF`, `DKIM`, `DMARC`, `MTA-STS`,
    /// `TLS-RPT`, `SRV`.
    pub kind: &'static str,
    /// The DNS name it lives at.
    pub name: String,
    /// How it stands.
    pub status: Status,
    /// What the DNS holds there.
    pub found: Vec<String>,
    /// Why, in a sentence.
    pub detail: String,
    /// The record to publish (zone-file form), when something is to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
}

impl Check {
    /// Whether this needs the administrator (missing, wrong, or unknown).
    pub fn is_problem(&self) -> bool {
        matches!(self.status, Status::Missing | Status::Wrong | Status::Error)
    }
}

/// Every record's verdict, in the order an administrator would publish them.
pub fn evaluate(setup: &Setup<'_>, found: &Found) -> Vec<Check> {
    let mut checks = vec![
        mx(setup, found),
        host(setup, found),
        ptr(setup, found),
        spf(setup, found),
    ];
    checks.extend(dkim(setup, found));
    checks.push(dmarc(setup, found));
    checks.push(tagged(
        "MTA-STS",
        format!("_mta-sts.{}", setup.domain),
        &found.mta_sts,
        "v=STSv1",
        "v=STSv1; id=1".to_owned(),
        "recommended with a policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt: senders then refuse to deliver without verified TLS",
    ));
    checks.push(tagged(
        "TLS-RPT",
        format!("_smtp._tls.{}", setup.domain),
        &found.tls_rpt,
        "v=TLSRPTv1",
        format!("v=TLSRPTv1; rua=mailto:tlsrpt@{}", setup.domain),
        "recommended: senders report TLS failures to this address",
    ));
    for (i, (service, _, priority)) in SERVICES.iter().enumerate() {
        let answer = found.srv.get(i).cloned().unwrap_or(Answer::None);
        checks.push(srv(setup, service, setup.ports[i], *priority, &answer));
    }
    checks
}

/// A TXT value as zone-file strings: quoted, at most 255 octets each
/// (RFC 1035 §3.3.14), in parentheses when there are several.
pub fn txt_strings(value: &str) -> String {
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
        .collect();
    match strings.as_slice() {
        [one] => one.clone(),
        _ => format!("( {} )", strings.join(" ")),
    }
}

/// The name a PTR record for `address` lives at.
pub fn reverse_name(address: IpAddr) -> String {
    match address {
        IpAddr::V4(a) => {
            let [w, x, y, z] = a.octets();
            format!("{z}.{y}.{x}.{w}.in-addr.arpa")
        }
        IpAddr::V6(a) => {
            let nibbles: Vec<String> = a
                .octets()
                .iter()
                .rev()
                .flat_map(|b| [b & 0x0f, b >> 4])
                .map(|n| format!("{n:x}"))
                .collect();
            format!("{}.ip6.arpa", nibbles.join("."))
        }
    }
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn failed(kind: &'static str, name: String, error: &str) -> Check {
    Check {
        kind,
        name,
        status: Status::Error,
        found: Vec::new(),
        detail: format!("the DNS did not answer ({error}); run the check again"),
        publish: None,
    }
}

fn mx(setup: &Setup<'_>, found: &Found) -> Check {
    let name = setup.domain.clone();
    let publish = Some(format!(
        "{} IN MX 10 {}",
        fqdn(&name),
        fqdn(&setup.hostname)
    ));
    if let Answer::Failed(e) = &found.mx {
        return failed("MX", name, e);
    }
    let records = found.mx.records().to_vec();
    let ours = records.iter().any(|r| {
        r.split_whitespace()
            .nth(1)
            .is_some_and(|host| same_name(host, &setup.hostname))
    });
    let (status, detail, publish) = if records.is_empty() {
        (
            Status::Missing,
            "no MX record: other servers cannot find where to deliver".to_owned(),
            publish,
        )
    } else if ours {
        (
            Status::Ok,
            format!("mail for {name} comes to {}", setup.hostname),
            None,
        )
    } else {
        (
            Status::Wrong,
            format!("the MX hosts are not {}", setup.hostname),
            publish,
        )
    };
    Check {
        kind: "MX",
        name,
        status,
        found: records,
        detail,
        publish,
    }
}

fn address_type(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "A" } else { "AAAA" }
}

fn host(setup: &Setup<'_>, found: &Found) -> Check {
    let name = setup.hostname.clone();
    if let Answer::Failed(e) = &found.host {
        return failed("A", name, e);
    }
    let records = found.host.records().to_vec();
    let address = setup.address.to_string();
    let publish = Some(format!(
        "{} IN {} {address}",
        fqdn(&name),
        address_type(setup.address)
    ));
    let (status, detail, publish) = if records.contains(&address) {
        (
            Status::Ok,
            format!("{name} has the address {address}"),
            None,
        )
    } else if records.is_empty() {
        (
            Status::Missing,
            format!("{name} has no address record"),
            publish,
        )
    } else {
        (
            Status::Wrong,
            format!("{name} does not have the outbound address {address}"),
            publish,
        )
    };
    Check {
        kind: address_type(setup.address),
        name,
        status,
        found: records,
        detail,
        publish,
    }
}

fn ptr(setup: &Setup<'_>, found: &Found) -> Check {
    let address = setup.address.to_string();
    if let Answer::Failed(e) = &found.ptr {
        return failed("PTR", address, e);
    }
    let names = found.ptr.records().to_vec();
    let ask = Some(format!(
        "{}. IN PTR {} ; set where the address comes from (your provider's control panel)",
        reverse_name(setup.address),
        fqdn(&setup.hostname)
    ));
    let confirmed: Vec<&String> = names
        .iter()
        .filter(|n| {
            found
                .ptr_forward
                .iter()
                .any(|(name, answer)| same_name(name, n) && answer.records().contains(&address))
        })
        .collect();
    let (status, detail, publish) = if names.is_empty() {
        (
            Status::Missing,
            "no reverse DNS: Gmail and others refuse mail from addresses without it".to_owned(),
            ask,
        )
    } else if confirmed.is_empty() {
        (
            Status::Wrong,
            "the reverse name does not lead back to the address (not forward-confirmed)".to_owned(),
            ask,
        )
    } else if confirmed.iter().any(|n| same_name(n, &setup.hostname)) {
        (
            Status::Ok,
            format!(
                "{address} is {} and back (forward-confirmed)",
                setup.hostname
            ),
            None,
        )
    } else {
        (
            Status::Ok,
            format!(
                "forward-confirmed as {}; making it {} would match the HELO name",
                confirmed[0], setup.hostname
            ),
            None,
        )
    };
    Check {
        kind: "PTR",
        name: address,
        status,
        found: names,
        detail,
        publish,
    }
}

fn spf(setup: &Setup<'_>, found: &Found) -> Check {
    let name = setup.domain.clone();
    if let Answer::Failed(e) = &found.txt {
        return failed("SPF", name, e);
    }
    let records: Vec<String> = found
        .txt
        .records()
        .iter()
        .filter(|r| {
            r.split_whitespace()
                .next()
                .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
        })
        .cloned()
        .collect();
    let mechanism = match setup.address {
        IpAddr::V4(a) => format!("ip4:{a}"),
        IpAddr::V6(a) => format!("ip6:{a}"),
    };
    let suggested = format!("v=spf1 mx {mechanism} -all");
    let publish = |value: &str| Some(format!("{} IN TXT {}", fqdn(&name), txt_strings(value)));
    let (status, detail, publish) = match records.as_slice() {
        [] => (
            Status::Missing,
            "no SPF record: receivers cannot tell the server may send for the domain".to_owned(),
            publish(&suggested),
        ),
        [_] if found.spf_result == "pass" => (
            Status::Ok,
            format!("{} may send for {name} (SPF pass)", setup.address),
            None,
        ),
        [_] if found.spf_result == "temperror" => (
            Status::Error,
            "the SPF record could not be evaluated (a DNS lookup it needs failed); run the check again".to_owned(),
            None,
        ),
        [one] => {
            // Our address goes in front of the "all" term (a mechanism
            // after it is never looked at, RFC 7208 §5.1); modifiers stay.
            let mut terms: Vec<&str> = one.split_whitespace().collect();
            let all = terms.iter().rposition(|t| {
                let t = t.trim_start_matches(['+', '-', '~', '?']);
                t.eq_ignore_ascii_case("all")
            });
            match all {
                Some(at) => terms.insert(at, &mechanism),
                None => terms.push(&mechanism),
            }
            let why = if found.spf_result == "permerror" {
                "the SPF record is broken (permerror: its syntax, or more than 10 lookups); fix it"
                    .to_owned()
            } else {
                format!(
                    "the SPF record does not let {} send (SPF {})",
                    setup.address, found.spf_result
                )
            };
            (Status::Wrong, why, publish(&terms.join(" ")))
        }
        _ => (
            Status::Wrong,
            "more than one SPF record (a permanent error for every receiver): merge them into one".to_owned(),
            publish(&suggested),
        ),
    };
    Check {
        kind: "SPF",
        name,
        status,
        found: records,
        detail,
        publish,
    }
}

/// The tags of a `tag=value; tag=value` record, whitespace removed inside
/// values (RFC 6376 §3.2), names in lower case.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|tag| {
            let (k, v) = tag.split_once('=')?;
            let value: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            Some((k.trim().to_ascii_lowercase(), value))
        })
        .collect()
}

fn tag<'t>(tags: &'t [(String, String)], name: &str) -> Option<&'t str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn dkim(setup: &Setup<'_>, found: &Found) -> Vec<Check> {
    if setup.keys.is_empty() {
        let name = format!("SELECTOR._domainkey.{}", setup.domain);
        return vec![Check {
            kind: "DKIM",
            name,
            status: Status::Missing,
            found: Vec::new(),
            detail: format!(
                "no DKIM key signs mail from {}: make one with `yubin dkim keygen {}`, then run this again",
                setup.domain, setup.domain
            ),
            publish: None,
        }];
    }
    setup
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let name = crate::dkim::record_name(&key.selector, &key.domain);
            let answer = found.dkim.get(i).cloned().unwrap_or(Answer::None);
            if let Answer::Failed(e) = &answer {
                return failed("DKIM", name, e);
            }
            let ours = tags(&key.record());
            let records = answer.records().to_vec();
            let matches = records.iter().any(|r| {
                let theirs = tags(r);
                tag(&theirs, "p") == tag(&ours, "p")
                    && tag(&theirs, "k").unwrap_or("rsa") == tag(&ours, "k").unwrap_or("rsa")
            });
            let publish = Some(key.zone_line());
            let (status, detail, publish) = if matches {
                (
                    Status::Ok,
                    format!(
                        "selector {} publishes the {} key",
                        key.selector,
                        key.algorithm()
                    ),
                    None,
                )
            } else if records.is_empty() {
                (
                    Status::Missing,
                    format!(
                        "selector {} is not published: receivers cannot check the signatures",
                        key.selector
                    ),
                    publish,
                )
            } else {
                (
                    Status::Wrong,
                    format!(
                        "selector {} publishes another key than {}",
                        key.selector,
                        key.path.display()
                    ),
                    publish,
                )
            };
            Check {
                kind: "DKIM",
                name,
                status,
                found: records,
                detail,
                publish,
            }
        })
        .collect()
}

fn dmarc(setup: &Setup<'_>, found: &Found) -> Check {
    let name = format!("_dmarc.{}", setup.domain);
    if let Answer::Failed(e) = &found.dmarc {
        return failed("DMARC", name, e);
    }
    let records: Vec<String> = found
        .dmarc
        .records()
        .iter()
        .filter(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        .cloned()
        .collect();
    let publish = Some(format!(
        "{} IN TXT {}",
        fqdn(&name),
        txt_strings(&format!(
            "v=DMARC1; p=none; rua=mailto:postmaster@{}",
            setup.domain
        ))
    ));
    let (status, detail, publish) = match records.as_slice() {
        [] => (
            Status::Missing,
            "no DMARC record: Gmail and Yahoo require one from bulk senders; start with p=none and tighten to quarantine".to_owned(),
            publish,
        ),
        [one] => match tag(&tags(one), "p") {
            Some(p @ ("none" | "quarantine" | "reject")) => {
                (Status::Ok, format!("policy p={p}"), None)
            }
            _ => (
                Status::Wrong,
                "the DMARC record has no valid p= (none, quarantine or reject)".to_owned(),
                publish,
            ),
        },
        _ => (
            Status::Wrong,
            "more than one DMARC record: receivers ignore them all; keep one".to_owned(),
            publish,
        ),
    };
    Check {
        kind: "DMARC",
        name,
        status,
        found: records,
        detail,
        publish,
    }
}

/// An optional `v=...` TXT record (MTA-STS, TLS-RPT).
fn tagged(
    kind: &'static str,
    name: String,
    answer: &Answer,
    version: &str,
    suggested: String,
    why: &str,
) -> Check {
    if let Answer::Failed(e) = answer {
        return failed(kind, name, e);
    }
    let records: Vec<String> = answer
        .records()
        .iter()
        .filter(|r| r.trim_start().starts_with(version))
        .cloned()
        .collect();
    let publish = Some(format!(
        "{} IN TXT {}",
        fqdn(&name),
        txt_strings(&suggested)
    ));
    let (status, detail, publish) = match records.len() {
        0 => (Status::Optional, format!("not published; {why}"), publish),
        1 => (Status::Ok, "published".to_owned(), None),
        _ => (
            Status::Wrong,
            format!("more than one {version} record; keep one"),
            publish,
        ),
    };
    Check {
        kind,
        name,
        status,
        found: records,
        detail,
        publish,
    }
}

/// RFC 6186 §3: a service's SRV record names the host and port; one not
/// offered has target `.` (§4), so clients do not guess.
fn srv(
    setup: &Setup<'_>,
    service: &str,
    port: Option<u16>,
    priority: u16,
    answer: &Answer,
) -> Check {
    let name = format!("{service}.{}", setup.domain);
    if let Answer::Failed(e) = answer {
        return failed("SRV", name, e);
    }
    let records = answer.records().to_vec();
    let fields = |r: &String| r.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let ours = records.iter().any(|r| {
        let f = fields(r);
        f.len() == 4
            && match port {
                Some(port) => f[2] == port.to_string() && same_name(&f[3], &setup.hostname),
                None => f[3] == ".",
            }
    });
    let publish = Some(match port {
        Some(port) => format!(
            "{} IN SRV {priority} 1 {port} {}",
            fqdn(&name),
            fqdn(&setup.hostname)
        ),
        None => format!("{} IN SRV 0 0 0 .", fqdn(&name)),
    });
    let (status, detail, publish) = match (ours, port) {
        (true, Some(port)) => (Status::Ok, format!("mail clients find port {port}"), None),
        (true, None) => (Status::Ok, "not offered, and says so".to_owned(), None),
        (false, _) if records.is_empty() => (
            Status::Optional,
            match port {
                Some(_) => {
                    "not published; mail clients that look (RFC 6186) would find the server by it"
                        .to_owned()
                }
                None => {
                    "not offered here; the record says so to mail clients that look (RFC 6186 §4)"
                        .to_owned()
                }
            },
            publish,
        ),
        (false, Some(port)) => (
            Status::Wrong,
            format!("does not name {} port {port}", setup.hostname),
            publish,
        ),
        (false, None) => (
            Status::Wrong,
            "names a server, but this one does not offer the service".to_owned(),
            publish,
        ),
    };
    Check {
        kind: "SRV",
        name,
        status,
        found: records,
        detail,
        publish,
    }
}

#[cfg(test)]
mod tests;
