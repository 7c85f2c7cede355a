//! `yubin dns check DOMAIN`: asks the DNS for every record the domain's
//! mail needs with this server (the judgement is `yubin_mailauth::records`)
//! and prints what is right, what is missing or wrong, and the records to
//! publish; `--json` for scripts. Exit status 0 when nothing needs doing,
//! 1 when something does.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use clap::Subcommand;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};
use yubin_mailauth::records::{self, Answer, Check, Found, SERVICES, Setup, Status};
use yubin_queue::engine::dns::{resolver, resolver_config};
use yubin_server::Config;

use super::Failure;

/// `yubin dns …`
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Check the DNS records DOMAIN's mail needs with this server (MX, the
    /// server's address and reverse DNS, SPF, DKIM, DMARC, MTA-STS,
    /// TLS-RPT, the mail client SRV records) and print the ones to publish.
    Check {
        /// The mail domain.
        domain: String,
        /// The address mail leaves from (default: the one the system would
        /// use to reach the Internet).
        #[arg(long)]
        address: Option<IpAddr>,
        /// The server's host name (default: `hostname` from the configuration).
        #[arg(long)]
        hostname: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `dns` subcommand.
pub fn run(command: DnsCommand, config: &Config) -> Result<(), Failure> {
    let DnsCommand::Check {
        domain,
        address,
        hostname,
        json,
    } = command;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !yubin_smtp_proto::address::is_domain(&domain) || !domain.contains('.') {
        return Err(Failure::Usage(format!(
            "DOMAIN: {domain:?} is not a domain name"
        )));
    }
    let hostname = hostname.unwrap_or_else(|| config.hostname.clone());
    let (address, other) = match address {
        Some(address) => (address, None),
        None => {
            let found = outbound_addresses();
            match found.as_slice() {
                [] => {
                    return Err(Failure::Usage(
                        "--address: cannot tell which public address mail leaves from (no route to the Internet, or behind NAT); give it".into(),
                    ));
                }
                [one] => (*one, None),
                [first, second, ..] => (*first, Some(*second)),
            }
        }
    };
    let server = config
        .dns_resolver()
        .map_err(|e| Failure::Usage(format!("configuration error: {e}")))?;
    let keyring = config
        .dkim_keyring()
        .map_err(|e| Failure::Usage(format!("dkim: {e}")))?;
    let keys = keyring.for_domain(&domain).to_vec();
    // The ports of the listeners each SRV record names (the first of
    // each kind), in the order of `records::SERVICES`.
    let first = |listeners: Result<Vec<SocketAddr>, _>| -> Option<u16> {
        listeners.ok().and_then(|l| l.first().map(SocketAddr::port))
    };
    let ports = [
        first(config.smtp_submissions()),
        first(config.smtp_submission()),
        first(config.pop3_listen_tls()),
        first(config.pop3_listen()),
    ];
    let setup = Setup {
        domain,
        hostname,
        address,
        keys: &keys,
        ports,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    let found = runtime
        .block_on(gather(&setup, server))
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("the DNS resolver: {e}")))?;
    let checks = records::evaluate(&setup, &found);
    let problems = checks.iter().filter(|c| c.is_problem()).count();
    if json {
        let out = serde_json::json!({
            "domain": setup.domain,
            "hostname": setup.hostname,
            "address": setup.address.to_string(),
            "ok": problems == 0,
            "checks": checks,
        });
        println!("{out:#}");
    } else {
        print_text(&setup, &checks, problems);
        if let Some(other) = other {
            println!(
                "Mail may also leave from {other}: run `yubin dns check {} --address {other}` too.",
                setup.domain
            );
        }
    }
    if problems == 0 {
        Ok(())
    } else {
        Err(Failure::Exit(
            1,
            format!("{problems} DNS record(s) to fix for {}", setup.domain),
        ))
    }
}

fn print_text(setup: &Setup<'_>, checks: &[Check], problems: usize) {
    println!(
        "DNS check for {} (host {}, outbound address {})\n",
        setup.domain, setup.hostname, setup.address
    );
    for check in checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Wrong => "WRONG",
            Status::Optional => "optional",
            Status::Error => "ERROR",
        };
        println!(
            "{status:<9}{:<9}{}: {}",
            check.kind, check.name, check.detail
        );
        if check.status == Status::Wrong {
            for found in &check.found {
                println!("{:<18}found:   {found}", "");
            }
        }
        if let Some(record) = &check.publish {
            println!("{:<18}publish: {record}", "");
        }
    }
    println!();
    if problems == 0 {
        println!("Everything needed is published.");
    } else {
        println!(
            "{problems} to fix: publish the records above, wait for the DNS to carry them, and run this again."
        );
    }
}

/// The public source addresses of routes to the Internet, IPv4 first (a
/// UDP "connection" sends nothing). A private address (behind NAT) is not
/// what receivers see, so it is left out.
fn outbound_addresses() -> Vec<IpAddr> {
    let probe = |bind: &str, to: &str| -> Option<IpAddr> {
        let socket = UdpSocket::bind(bind).ok()?;
        socket.connect(to).ok()?;
        socket.local_addr().ok().map(|a| a.ip())
    };
    [
        probe("0.0.0.0:0", "192.0.2.1:25"),
        probe("[::]:0", "[2001:db8::1]:25"),
    ]
    .into_iter()
    .flatten()
    .filter(|ip| is_public(*ip))
    .collect()
}

/// Not loopback, private, link-local, shared (CGNAT) or documentation.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [x, y, ..] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_documentation()
                || (x == 100 && (64..128).contains(&y)))
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && a.segments()[1] == 0x0db8)
        }
    }
}

/// Every answer the judgement needs.
async fn gather(
    setup: &Setup<'_>,
    server: Option<SocketAddr>,
) -> Result<Found, mail_auth::hickory_resolver::net::NetError> {
    let dns = resolver(server)?;
    let (config, options) = resolver_config(server)?;
    let spf = MessageAuthenticator::new(config, options)?;
    let fq = |name: &str| format!("{}.", name.trim_end_matches('.'));
    let txt = |name: String| {
        let dns = &dns;
        async move { answer(dns.txt_lookup(name).await, txt_strings) }
    };
    let mx = answer(dns.mx_lookup(fq(&setup.domain)).await, |data| match data {
        mail_auth::hickory_resolver::proto::rr::RData::MX(mx) => Some(format!(
            "{} {}",
            mx.preference,
            mx.exchange.to_utf8().trim_end_matches('.')
        )),
        _ => None,
    });
    let host = addresses(&dns, &fq(&setup.hostname)).await;
    let ptr = answer(dns.reverse_lookup(setup.address).await, |data| match data {
        mail_auth::hickory_resolver::proto::rr::RData::PTR(name) => {
            Some(name.0.to_utf8().trim_end_matches('.').to_owned())
        }
        _ => None,
    });
    let mut ptr_forward = Vec::new();
    if let Answer::Records(names) = &ptr {
        for name in names {
            ptr_forward.push((name.clone(), addresses(&dns, &fq(name)).await));
        }
    }
    let sender = format!("postmaster@{}", setup.domain);
    let spf_result = spf
        .verify_spf(SpfParameters::verify_mail_from(
            setup.address,
            &setup.hostname,
            &setup.hostname,
            &sender,
        ))
        .await
        .result();
    let spf_result = match spf_result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
    .to_owned();
    let mut dkim = Vec::new();
    for key in setup.keys {
        dkim.push(
            txt(fq(&yubin_mailauth::dkim::record_name(
                &key.selector,
                &key.domain,
            )))
            .await,
        );
    }
    let mut srv = Vec::new();
    for (service, _, _) in SERVICES {
        srv.push(answer(
            dns.srv_lookup(fq(&format!("{service}.{}", setup.domain)))
                .await,
            |data| match data {
                mail_auth::hickory_resolver::proto::rr::RData::SRV(srv) => Some(format!(
                    "{} {} {} {}",
                    srv.priority,
                    srv.weight,
                    srv.port,
                    srv.target.to_utf8()
                )),
                _ => None,
            },
        ));
    }
    Ok(Found {
        mx,
        host,
        ptr,
        ptr_forward,
        txt: txt(fq(&setup.domain)).await,
        spf_result,
        dkim,
        dmarc: txt(fq(&format!("_dmarc.{}", setup.domain))).await,
        mta_sts: txt(fq(&format!("_mta-sts.{}", setup.domain))).await,
        tls_rpt: txt(fq(&format!("_smtp._tls.{}", setup.domain))).await,
        srv,
    })
}

type Lookup =
    Result<mail_auth::hickory_resolver::lookup::Lookup, mail_auth::hickory_resolver::net::NetError>;

/// A lookup's records as text; "no such records" apart from failures.
fn answer(
    lookup: Lookup,
    text: impl Fn(&mail_auth::hickory_resolver::proto::rr::RData) -> Option<String>,
) -> Answer {
    use mail_auth::hickory_resolver::net::{DnsError, NetError};
    match lookup {
        Ok(found) => {
            let records: Vec<String> = found
                .answers()
                .iter()
                .filter_map(|r| text(&r.data))
                .collect();
            if records.is_empty() {
                Answer::None
            } else {
                Answer::Records(records)
            }
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Answer::None,
        Err(error) => Answer::Failed(error.to_string()),
    }
}

/// A TXT record's strings, joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
fn txt_strings(data: &mail_auth::hickory_resolver::proto::rr::RData) -> Option<String> {
    match data {
        mail_auth::hickory_resolver::proto::rr::RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// A and AAAA of `name`.
async fn addresses(dns: &mail_auth::hickory_resolver::TokioResolver, name: &str) -> Answer {
    use mail_auth::hickory_resolver::proto::rr::RData;
    let v4 = answer(dns.ipv4_lookup(name.to_owned()).await, |d| match d {
        RData::A(a) => Some(a.0.to_string()),
        _ => None,
    });
    let v6 = answer(dns.ipv6_lookup(name.to_owned()).await, |d| match d {
        RData::AAAA(a) => Some(a.0.to_string()),
        _ => None,
    });
    match (v4, v6) {
        (Answer::Failed(e), _) | (_, Answer::Failed(e)) => Answer::Failed(e),
        (a, b) => {
            let all: Vec<String> = a.records().iter().chain(b.records()).cloned().collect();
            if all.is_empty() {
                Answer::None
            } else {
                Answer::Records(all)
            }
        }
    }
}
