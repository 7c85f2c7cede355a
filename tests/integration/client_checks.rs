//! The cheap checks before DATA on the MX listener (issue 15): FCrDNS,
//! HELO sanity, DNS blocklists (with their error answers taken as no
//! answer), scores, and greylisting, against records a DNS server on
//! loopback serves. Clients come from several loopback addresses
//! (127.0.0.2, …), each with its own reverse DNS.

use std::net::IpAddr;

use yubin_test_dns::TestDns;

use crate::harness::{Setup, TestServer};

/// This machine's address on its way out: the client address of these
/// tests (the resolver answers every loopback address with `localhost`
/// itself, RFC 6761, so loopback clients cannot have names of their own).
fn client_ip() -> std::net::Ipv4Addr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").expect("a socket");
    probe.connect("192.0.2.123:9").expect("a route");
    match probe.local_addr().expect("an address").ip() {
        IpAddr::V4(v4) if !v4.is_loopback() => v4,
        other => panic!("no non-loopback IPv4 address to test from: {other}"),
    }
}

/// A server on every address whose DNS is `dns`, with `inbound` keys.
fn server(dns: &TestDns, inbound: &str) -> TestServer {
    TestServer::with(Setup {
        tables: format!(
            "[dns]\nresolver = \"{}\"\n[inbound]\nauthentication = false\n{inbound}",
            dns.addr()
        ),
        any_address: true,
        ..Setup::default()
    })
}

/// One message from this machine's outside address saying `helo`, to
/// `rcpt`: the refusal as `[code, text]`, or null.
fn attempt(server: &TestServer, helo: &str, rcpt: &str) -> serde_json::Value {
    let ip = client_ip();
    server.python(
        &format!(
            "import smtplib, os, json\n\
             c = smtplib.SMTP('{ip}', int(os.environ['SMTP_PORT']), local_hostname={helo:?}, \
             source_address=('{ip}', 0), timeout=60)\n\
             try:\n\
             \x20   c.sendmail('s@example.net', [{rcpt:?}], b'Subject: hi\\r\\n\\r\\nhello\\r\\n')\n\
             \x20   r = None\n\
             except smtplib.SMTPRecipientsRefused as e:\n\
             \x20   code, text = list(e.recipients.values())[0]\n\
             \x20   r = [code, text.decode()]\n\
             except smtplib.SMTPResponseException as e:\n\
             \x20   r = [e.smtp_code, e.smtp_error.decode()]\n\
             c.quit()\n\
             print(json.dumps(r))"
        ),
        &[],
    )
}

/// The client's address has the name `name`, which points back to it.
fn named(dns: &TestDns, name: &str) {
    let ip = client_ip();
    dns.ptr(IpAddr::V4(ip), name);
    dns.a(name, ip);
}

/// `zone`'s query name for the client.
fn listed_name(zone: &str) -> String {
    let o = client_ip().octets();
    format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
}

fn refused_with(answer: &serde_json::Value, code: u64, text: &str) {
    assert_eq!(answer[0], code, "{answer}");
    assert!(
        answer[1].as_str().unwrap_or_default().contains(text),
        "{answer}"
    );
}

const CHECKS: &str = "fcrdns = \"reject\"\nhelo = \"reject\"\n\
                      dnsbl = [\"bl.test=127.0.0.[2..11]\", \"err.test\"]\n";
const ALICE: &str = "alice@test.example";

#[test]
fn issue15_a_named_unlisted_client_with_a_sane_helo_passes() {
    let dns = TestDns::start().expect("a DNS server");
    named(&dns, "good.example");
    // err.test refuses every query with Spamhaus's "public resolver"
    // code: no answer, logged, not a listing.
    dns.a(
        &listed_name("err.test"),
        "127.255.255.254".parse().expect("v4"),
    );
    let server = server(&dns, CHECKS);
    assert_eq!(
        attempt(&server, "good.example", ALICE),
        serde_json::Value::Null
    );
    refused_with(
        &attempt(&server, "localhost", ALICE),
        504,
        "5.5.2 Helo command rejected: need fully-qualified hostname",
    );
    refused_with(
        &attempt(&server, "test.example", ALICE),
        550,
        "You are not me",
    );
    refused_with(
        &attempt(&server, "[192.0.2.200]", ALICE),
        550,
        "the address literal is not your address",
    );
    assert_eq!(server.messages("alice").len(), 1);
    let log = server.log();
    assert!(log.contains("DNS blocklist refused the query"), "{log}");
    assert!(
        log.contains("smtp recipient refused by the client checks"),
        "{log}"
    );
}

#[test]
fn issue15_no_name_a_listing_or_dns_trouble_refuse_before_data() {
    let ip = client_ip();
    // No PTR: refused, but postmaster is always reachable.
    let dns = TestDns::start().expect("a DNS server");
    let server1 = server(&dns, CHECKS);
    refused_with(
        &attempt(&server1, "good.example", ALICE),
        550,
        &format!("5.7.25 Client host rejected: cannot find your hostname, [{ip}]"),
    );
    assert_eq!(
        attempt(&server1, "good.example", "postmaster"),
        serde_json::Value::Null
    );
    drop(server1);

    // Listed in bl.test with a code that counts.
    let dns = TestDns::start().expect("a DNS server");
    named(&dns, "listed.example");
    dns.a(&listed_name("bl.test"), "127.0.0.4".parse().expect("v4"));
    let server2 = server(&dns, CHECKS);
    refused_with(
        &attempt(&server2, "listed.example", ALICE),
        554,
        &format!("5.7.1 Service unavailable; client [{ip}] blocked using bl.test"),
    );
    drop(server2);

    // Listed with a code the filter leaves out: not refused.
    let dns = TestDns::start().expect("a DNS server");
    named(&dns, "other.example");
    dns.a(&listed_name("bl.test"), "127.0.0.12".parse().expect("v4"));
    let server3 = server(&dns, CHECKS);
    assert_eq!(
        attempt(&server3, "other.example", ALICE),
        serde_json::Value::Null
    );
    drop(server3);

    // The PTR lookup fails: try later, not a refusal.
    let dns = TestDns::start().expect("a DNS server");
    let reverse = {
        let o = ip.octets();
        format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
    };
    dns.servfail(&reverse);
    let server4 = server(&dns, CHECKS);
    refused_with(&attempt(&server4, "good.example", ALICE), 450, "4.7.25");
    assert!(server4.messages("alice").is_empty());
}

#[test]
fn issue15_scores_add_up_to_a_tag_and_greylisting_asks_for_a_retry() {
    // No name and a bad HELO: 3 + 3 points, tagged (5), not refused (10).
    let dns = TestDns::start().expect("a DNS server");
    let server = server(
        &dns,
        "fcrdns = 3\nhelo = 3\ntag_score = 5\nreject_score = 10\n\
         greylisting = true\ngreylist_delay = \"2s\"\n",
    );
    // Greylisted first, and again when it comes back too soon.
    refused_with(
        &attempt(&server, "localhost", ALICE),
        451,
        "4.7.1 Greylisted",
    );
    refused_with(
        &attempt(&server, "localhost", ALICE),
        451,
        "4.7.1 Greylisted",
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        attempt(&server, "localhost", ALICE),
        serde_json::Value::Null
    );
    // From now on the triplet passes at once; another recipient waits.
    assert_eq!(
        attempt(&server, "localhost", ALICE),
        serde_json::Value::Null
    );
    refused_with(
        &attempt(&server, "localhost", "bob@test.example"),
        451,
        "Greylisted",
    );
    let stored = server.messages("alice");
    assert_eq!(stored.len(), 2);
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(text.contains("X-Spam-Flag: YES"), "{text}");
    assert!(text.contains("Subject: [SPAM] hi"), "{text}");
    let log = server.log();
    assert!(
        log.contains("findings=helo=not-fqdn fcrdns=fail score=6.0"),
        "{log}"
    );
}

#[test]
fn issue15_client_check_settings_are_checked_at_start() {
    for (table, key) in [
        ("[inbound]\ndnsbl = [\"nodot\"]\n", "inbound.dnsbl[0]"),
        (
            "[inbound]\ndnsbl = [\"bl.test=127.0.0\"]\n",
            "inbound.dnsbl[0]",
        ),
        ("[inbound]\nfcrdns = -1\n", "inbound.fcrdns"),
        (
            "[inbound]\ngreylist_delay = \"0s\"\n",
            "inbound.greylist_delay",
        ),
        ("[inbound]\njunk_folder = \"../x\"\n", "inbound.junk_folder"),
    ] {
        crate::harness::assert_config_refused(table, key);
    }
}
