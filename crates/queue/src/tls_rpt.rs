//! SMTP TLS Reporting (RFC 8460), the part without I/O: what a domain's
//! `_smtp._tls` record asks for, one TLS session's result as the engine
//! records it, the daily JSON report (§4) and the mail that carries it
//! (§5.3).

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The result types of RFC 8460 §4.3 that yubin reports.
pub mod result {
    /// The server did not offer STARTTLS, or refused it.
    pub const STARTTLS_NOT_SUPPORTED: &str = "starttls-not-supported";
    /// The certificate does not name the host.
    pub const CERTIFICATE_HOST_MISMATCH: &str = "certificate-host-mismatch";
    /// The certificate has expired (or is not valid yet).
    pub const CERTIFICATE_EXPIRED: &str = "certificate-expired";
    /// The certificate does not chain to a trusted root.
    pub const CERTIFICATE_NOT_TRUSTED: &str = "certificate-not-trusted";
    /// Any other failure of the negotiation or of the check.
    pub const VALIDATION_FAILURE: &str = "validation-failure";
    /// The TLSA records could not be read (DNSSEC: bogus, or no answer).
    pub const DNSSEC_INVALID: &str = "dnssec-invalid";
    /// The MTA-STS policy could not be fetched.
    pub const STS_POLICY_FETCH_ERROR: &str = "sts-policy-fetch-error";
    /// The MTA-STS policy did not parse.
    pub const STS_POLICY_INVALID: &str = "sts-policy-invalid";
    /// The MTA-STS policy host's certificate was refused.
    pub const STS_WEBPKI_INVALID: &str = "sts-webpki-invalid";
    /// No validated TLSA record names the server's certificate.
    pub const TLSA_INVALID: &str = "tlsa-invalid";
}

/// The policy types of RFC 8460 §4.4.
pub mod policy {
    /// An MTA-STS policy.
    pub const STS: &str = "sts";
    /// DANE's TLSA records.
    pub const TLSA: &str = "tlsa";
    /// Neither.
    pub const NONE: &str = "no-policy-found";
}

/// The `mailto:` addresses a domain's `_smtp._tls` TXT records ask
/// reports to go to (RFC 8460 §3): exactly one record must start with
/// `v=TLSRPTv1;` (more than one, or none: the domain takes no reports).
/// `https:` destinations are not used (yubin sends by mail only).
pub fn rua(records: &[String]) -> Vec<String> {
    let versioned: Vec<&String> = records
        .iter()
        .filter(|r| {
            r.split(';')
                .next()
                .is_some_and(|v| v.trim() == "v=TLSRPTv1")
        })
        .collect();
    let [record] = versioned.as_slice() else {
        return Vec::new();
    };
    let Some(list) = record.split(';').skip(1).find_map(|field| {
        let (key, value) = field.split_once('=')?;
        (key.trim() == "rua").then_some(value)
    }) else {
        return Vec::new();
    };
    list.split(',')
        .filter_map(|uri| {
            let uri = uri.trim();
            let address = uri
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
                .map(|_| &uri[7..])?;
            // A mailto: URI may carry ?headers; the address is before.
            let address = address.split('?').next().unwrap_or_default();
            let address = percent_decode(address)?;
            let (local, domain) = address.rsplit_once('@')?;
            let plain = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b))
            };
            (plain(local) && plain(domain)).then_some(address)
        })
        .collect()
}

/// `%XX` escapes of a URI (RFC 3986 §2.1); `None` if one is broken.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One TLS session to a destination's MX host, and the policy it was held
/// to: one line of the engine's daily record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The policy domain: the recipient domain.
    #[serde(rename = "d")]
    pub domain: String,
    /// [`policy::STS`], [`policy::TLSA`] or [`policy::NONE`].
    #[serde(rename = "t")]
    pub policy_type: String,
    /// The policy's text: the MTA-STS policy's lines, or the TLSA records.
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<String>,
    /// The MX patterns of an MTA-STS policy.
    #[serde(rename = "m", default, skip_serializing_if = "Vec::is_empty")]
    pub mx: Vec<String>,
    /// The result type of a failure ([`result`]); `None`: success.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// A short text on the failure (the report's `failure-reason-code`).
    #[serde(rename = "c", default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The MX host.
    #[serde(rename = "h")]
    pub host: String,
    /// Its address.
    #[serde(rename = "ip", default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Our address in the session.
    #[serde(rename = "s", default, skip_serializing_if = "String::is_empty")]
    pub sender_ip: String,
}

impl Session {
    /// A failure met before any connection (a policy that could not be
    /// had, a host taken out): no policy text, no addresses.
    pub fn failed(
        domain: &str,
        policy_type: &str,
        failure: &str,
        host: &str,
        reason: &str,
    ) -> Session {
        Session {
            domain: domain.to_owned(),
            policy_type: policy_type.to_owned(),
            policy: Vec::new(),
            mx: Vec::new(),
            failure: Some(failure.to_owned()),
            reason: reason.to_owned(),
            host: host.to_owned(),
            ip: String::new(),
            sender_ip: String::new(),
        }
    }
}

/// Who reports: RFC 8460 §4.4's `organization-name` and `contact-info`,
/// and the submitter's domain (our host name).
#[derive(Clone, Debug)]
pub struct Reporter {
    /// `organization-name`.
    pub organization: String,
    /// `contact-info`: an address for questions about the report.
    pub contact: String,
    /// The submitter: this server's host name.
    pub submitter: String,
}

/// One report: `domain`'s sessions over `start..=end` (Unix seconds).
pub fn report(
    reporter: &Reporter,
    report_id: &str,
    domain: &str,
    start: u64,
    end: u64,
    sessions: &[Session],
) -> Value {
    // One entry per policy the sessions were held to.
    type Key<'a> = (&'a str, &'a [String], &'a [String]);
    let mut policies: BTreeMap<Key<'_>, Vec<&Session>> = BTreeMap::new();
    for session in sessions.iter().filter(|s| s.domain == domain) {
        policies
            .entry((&session.policy_type, &session.policy, &session.mx))
            .or_default()
            .push(session);
    }
    let policies: Vec<Value> = policies
        .into_iter()
        .map(|((kind, text, mx), sessions)| {
            let failed: Vec<&&Session> = sessions.iter().filter(|s| s.failure.is_some()).collect();
            type Detail<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);
            let mut details: BTreeMap<Detail<'_>, u64> = BTreeMap::new();
            for session in &failed {
                let result = session.failure.as_deref().unwrap_or_default();
                *details
                    .entry((result, &session.sender_ip, &session.host, &session.ip, &session.reason))
                    .or_default() += 1;
            }
            let mut policy = json!({ "policy-type": kind, "policy-domain": domain });
            if kind != policy::NONE {
                policy["policy-string"] = json!(text);
                policy["mx-host"] = json!(if kind == policy::STS {
                    mx.to_vec()
                } else {
                    let mut hosts: Vec<&str> = sessions.iter().map(|s| s.host.as_str()).collect();
                    hosts.sort_unstable();
                    hosts.dedup();
                    hosts.into_iter().map(str::to_owned).collect()
                });
            }
            json!({
                "policy": policy,
                "summary": {
                    "total-successful-session-count": sessions.len() - failed.len(),
                    "total-failure-session-count": failed.len(),
                },
                "failure-details": details.into_iter().map(|((result, ours, host, theirs, reason), count)| {
                    let mut detail = json!({
                        "result-type": result,
                        "failed-session-count": count,
                    });
                    if !host.is_empty() {
                        detail["receiving-mx-hostname"] = json!(host);
                    }
                    if !ours.is_empty() {
                        detail["sending-mta-ip"] = json!(ours);
                    }
                    if !theirs.is_empty() {
                        detail["receiving-ip"] = json!(theirs);
                    }
                    if !reason.is_empty() {
                        detail["failure-reason-code"] = json!(reason);
                    }
                    detail
                }).collect::<Vec<Value>>(),
            })
        })
        .collect();
    json!({
        "organization-name": reporter.organization,
        "date-range": {
            "start-datetime": yubin_line::date::rfc3339(start),
            "end-datetime": yubin_line::date::rfc3339(end),
        },
        "contact-info": reporter.contact,
        "report-id": report_id,
        "policies": policies,
    })
}

/// The mail that carries `report` to `to` (RFC 8460 §5.3): a
/// `multipart/report; report-type="tlsrpt"` with a short text and the
/// gzip-compressed JSON as `application/tlsrpt+gzip`.
pub fn message(
    reporter: &Reporter,
    report_id: &str,
    domain: &str,
    (start, end): (u64, u64),
    report: &Value,
    to: &str,
    now: u64,
) -> std::io::Result<Vec<u8>> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(report.to_string().as_bytes())?;
    let compressed = gzip.finish()?;
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(compressed)
    };
    let submitter = &reporter.submitter;
    let boundary = format!("tlsrpt-{}", report_id.replace(['@', '.'], "-"));
    let filename = format!("{submitter}!{domain}!{start}!{end}.json.gz");
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push_str("\r\n");
    };
    line(&format!("From: TLS reporting <{}>", reporter.contact));
    line(&format!("To: <{to}>"));
    line(&format!("Date: {}", yubin_line::date::rfc5322(now)));
    line(&format!("Message-ID: <{report_id}>"));
    line(&format!(
        "Subject: Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>"
    ));
    line(&format!("TLS-Report-Domain: {domain}"));
    line(&format!("TLS-Report-Submitter: {submitter}"));
    line("Auto-Submitted: auto-generated");
    // RFC 8460 §3: a report goes even where TLS fails (RFC 8689), and its
    // delivery is not in the next report.
    line("TLS-Required: No");
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\""
    ));
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: text/plain; charset=us-ascii");
    line("");
    line(&format!(
        "This is an aggregate TLS report (RFC 8460) from {submitter} for {domain},"
    ));
    line(&format!(
        "covering {} to {}.",
        yubin_line::date::rfc3339(start),
        yubin_line::date::rfc3339(end)
    ));
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: application/tlsrpt+gzip");
    line("Content-Transfer-Encoding: base64");
    line(&format!(
        "Content-Disposition: attachment; filename=\"{filename}\""
    ));
    line("");
    for chunk in encoded.as_bytes().chunks(76) {
        line(std::str::from_utf8(chunk).unwrap_or_default());
    }
    line("");
    line(&format!("--{boundary}--"));
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests;
