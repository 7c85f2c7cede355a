//! Delivery status notifications (RFC 3464 inside RFC 6522's
//! multipart/report): the bounce a sender gets when a recipient failed
//! for good or the message expired, and the warning when it is delayed.
//! Sent from the null sender (RFC 5321 §4.5.5), so a bounce never bounces.

use yubin_smtp_proto::client::Response;

use yubin_line::date::rfc5322;

/// Failed for good, or still being tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Will not be delivered.
    Failed,
    /// Not delivered yet; retries continue.
    Delayed,
}

/// One recipient in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    /// The address.
    pub recipient: String,
    /// The reply that decided it (ours or the remote server's).
    pub response: Response,
    /// The server that answered, if one did.
    pub remote_mta: Option<String>,
}

/// What a report is about.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// This server's name.
    pub hostname: &'a str,
    /// The queue id of the message.
    pub queue_id: &'a str,
    /// The original sender (the report goes there).
    pub sender: &'a str,
    /// When the message arrived (Unix time).
    pub arrival: u64,
    /// Now (Unix time).
    pub now: u64,
    /// Failed or delayed.
    pub action: Action,
    /// The recipients concerned.
    pub recipients: &'a [Reported],
    /// For delayed reports: when retries end (Unix time).
    pub retry_until: Option<u64>,
}

/// The whole report message (LF line ends), given the original message's
/// header section (returned in a text/rfc822-headers part).
pub fn build(report: &Report<'_>, original_headers: &[u8]) -> Vec<u8> {
    let boundary = format!("{}/{}", report.queue_id, report.hostname);
    let (subject, summary) = match report.action {
        Action::Failed => (
            "Undelivered Mail Returned to Sender",
            "I'm sorry to have to inform you that your message could not\n\
             be delivered to one or more recipients. It's attached below.",
        ),
        Action::Delayed => (
            "Delayed Mail (still being retried)",
            "This is a warning only; you do not need to resend your message.\n\
             Delivery to the following recipients has been delayed; the mail\n\
             system will keep trying.",
        ),
    };
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\n\
         To: <{to}>\n\
         Subject: {subject}\n\
         Date: {date}\n\
         Message-ID: <{id}.{kind}.{now}.{unique}@{host}>\n\
         Auto-Submitted: auto-replied\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\
         \tboundary=\"{boundary}\"\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         This is a MIME-encapsulated message.\n\
         \n\
         --{boundary}\n\
         Content-Description: Notification\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         This is the mail system at host {host}.\n\
         \n\
         {summary}\n\
         \n",
        host = report.hostname,
        to = report.sender,
        date = rfc5322(report.now),
        id = report.queue_id,
        kind = if report.action == Action::Failed {
            "bounce"
        } else {
            "delay"
        },
        now = report.now,
        unique = unique(),
    ));
    for r in report.recipients {
        let via = r
            .remote_mta
            .as_ref()
            .map(|m| format!(" (host {m})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "<{}>: {}{via}\n",
            r.recipient,
            bounded(&r.response.to_string())
        ));
    }
    out.push_str(&format!(
        "\n--{boundary}\n\
         Content-Description: Delivery report\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; {host}\n\
         X-Yubin-Queue-ID: {id}\n\
         Arrival-Date: {arrival}\n",
        host = report.hostname,
        id = report.queue_id,
        arrival = rfc5322(report.arrival),
    ));
    for r in report.recipients {
        out.push_str(&format!(
            "\nFinal-Recipient: rfc822; {}\nAction: {}\nStatus: {}\n",
            r.recipient,
            match report.action {
                Action::Failed => "failed",
                Action::Delayed => "delayed",
            },
            status_of(&r.response),
        ));
        let diagnostic = field_text(&r.response.to_string());
        if let Some(mta) = &r.remote_mta {
            // "host[192.0.2.1]" in logs; a DNS name here (RFC 3464 §2.3.5).
            let host = mta.split('[').next().unwrap_or(mta);
            out.push_str(&format!("Remote-MTA: dns; {}\n", field_text(host)));
            out.push_str(&format!("Diagnostic-Code: smtp; {diagnostic}\n"));
        } else {
            out.push_str(&format!("Diagnostic-Code: X-Yubin; {diagnostic}\n"));
        }
        out.push_str(&format!("Last-Attempt-Date: {}\n", rfc5322(report.now)));
        if let Some(until) = report.retry_until {
            out.push_str(&format!("Will-Retry-Until: {}\n", rfc5322(until)));
        }
    }
    out.push_str(&format!(
        "\n--{boundary}\n\
         Content-Description: Undelivered Message Headers\n\
         Content-Type: text/rfc822-headers\n\
         \n"
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(original_headers);
    if !original_headers.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    bytes
}

/// The header section of a stored message (up to the first empty line),
/// at most `limit` octets, cut at a line end.
pub fn header_section(message: &[u8], limit: usize) -> &[u8] {
    let end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(message.len(), |p| p + 1);
    let end = end.min(limit);
    match message[..end].iter().rposition(|&b| b == b'\n') {
        Some(last) if end < message.len() => &message[..=last],
        _ => &message[..end],
    }
}

/// A server's reply in the human-readable part: any characters, but no
/// line longer than RFC 5322 allows.
fn bounded(text: &str) -> String {
    const MAX: usize = 900;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX).collect();
    out.push_str("...");
    out
}

/// Text for a message/delivery-status field: ASCII (RFC 3464 §2.1; the
/// server's reply may carry anything), one line, and short enough for
/// RFC 5322's line limit.
fn field_text(text: &str) -> String {
    const MAX: usize = 900;
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(MAX)
        .collect();
    if text.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

/// A few random hex digits, so two reports in one second differ.
fn unique() -> String {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The RFC 3463 status: the server's enhanced code, or one from the class.
fn status_of(response: &Response) -> String {
    response
        .enhanced_status()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}.0.0", response.code / 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(recipient: &str, code: u16, text: &str) -> Reported {
        Reported {
            recipient: recipient.into(),
            response: Response::local(code, text),
            remote_mta: Some("mx.remote.test".into()),
        }
    }

    #[test]
    fn a_bounce_is_a_multipart_report_with_the_original_headers() {
        let recipients = [
            reported("bob@remote.test", 550, "5.1.1 no such user"),
            reported("carol@remote.test", 554, "transaction failed"),
        ];
        let report = Report {
            hostname: "mx.yubin.test",
            queue_id: "abc-1",
            sender: "alice@yubin.test",
            arrival: 1_795_722_405,
            now: 1_795_722_465,
            action: Action::Failed,
            recipients: &recipients,
            retry_until: None,
        };
        let text =
            String::from_utf8(build(&report, b"Subject: hello\nFrom: alice@yubin.test\n")).unwrap();
        assert!(text.starts_with(
            "From: Mail Delivery System <MAILER-DAEMON@mx.yubin.test>\nTo: <alice@yubin.test>\n"
        ));
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"abc-1/mx.yubin.test\"\n"));
        assert!(text.contains("Auto-Submitted: auto-replied\n"));
        assert!(text.contains("\nFinal-Recipient: rfc822; bob@remote.test\nAction: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.remote.test\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n"));
        assert!(
            text.contains("Status: 5.0.0\n"),
            "from the class when the server gave none"
        );
        assert!(text.contains("Content-Type: text/rfc822-headers\n\nSubject: hello\nFrom: alice@yubin.test\n\n--abc-1/mx.yubin.test--\n"));
        assert!(text.contains("Arrival-Date: Thu, 26 Nov 2026 19:46:45 +0000\n"));
    }

    #[test]
    fn a_delay_warning_says_until_when() {
        let recipients = [reported("bob@remote.test", 451, "4.3.0 try later")];
        let report = Report {
            hostname: "mx.yubin.test",
            queue_id: "abc-2",
            sender: "alice@yubin.test",
            arrival: 0,
            now: 4 * 3600,
            action: Action::Delayed,
            recipients: &recipients,
            retry_until: Some(5 * 86_400),
        };
        let text = String::from_utf8(build(&report, b"Subject: x\n")).unwrap();
        assert!(text.contains("Subject: Delayed Mail (still being retried)\n"));
        assert!(text.contains("Action: delayed\nStatus: 4.3.0\n"));
        assert!(text.contains("Will-Retry-Until: Tue, 06 Jan 1970 00:00:00 +0000\n"));
    }

    #[test]
    fn fields_stay_ascii_short_and_name_hosts() {
        let long = "x".repeat(5000);
        let recipients = [Reported {
            recipient: "bob@remote.test".into(),
            response: Response::local(550, format!("5.7.1 refusé {long}")),
            remote_mta: Some("mx.remote.test[192.0.2.1]".into()),
        }];
        let report = Report {
            hostname: "mx.yubin.test",
            queue_id: "abc-3",
            sender: "alice@yubin.test",
            arrival: 0,
            now: 0,
            action: Action::Failed,
            recipients: &recipients,
            retry_until: None,
        };
        let text = String::from_utf8(build(&report, b"Subject: x\n")).unwrap();
        let status_part = text.split("message/delivery-status").nth(1).unwrap();
        let status_part = status_part.split("text/rfc822-headers").next().unwrap();
        assert!(status_part.is_ascii());
        assert!(status_part.lines().all(|l| l.len() < 998));
        assert!(status_part.contains("Remote-MTA: dns; mx.remote.test\n"));
        assert!(status_part.contains("Diagnostic-Code: smtp; 550 5.7.1 refus? x"));
    }

    #[test]
    fn header_sections_stop_at_the_body_and_the_limit() {
        assert_eq!(
            header_section(b"A: 1\nB: 2\n\nbody\n", 1000),
            b"A: 1\nB: 2\n"
        );
        assert_eq!(header_section(b"A: 1\nB: 2\n\nbody\n", 7), b"A: 1\n");
        assert_eq!(header_section(b"A: 1\nB: 2", 1000), b"A: 1\nB: 2");
    }
}
