//! A DNS server for tests, started in the test's own process on a loopback
//! port, so that tests of DNS-dependent features (MX routing today; SPF,
//! DKIM, DMARC, MTA-STS and DANE later) need no daemon on the machine.
//!
//! It answers authoritatively from a table the test owns, over UDP and TCP
//! on the same port, and the table may be changed while it runs:
//!
//! ```
//! use yubin_test_dns::TestDns;
//! let dns = TestDns::start().expect("loopback sockets");
//! dns.mx("example.test", 10, "mx.example.test");
//! dns.a("mx.example.test", "127.0.0.1".parse().unwrap());
//! dns.txt("example.test", "v=spf1 -all");
//! dns.refused("broken.test");
//! // point the resolver under test at dns.addr()
//! ```
//!
//! - A name with records answers those of the type asked for, or NOERROR
//!   with no answer (NODATA) when it has none of that type.
//! - A name set to a response code ([`TestDns::nxdomain`],
//!   [`TestDns::refused`], [`TestDns::servfail`]) answers it for every type;
//!   [`TestDns::silent`] never answers (for timeouts).
//! - A name with a CNAME record ([`TestDns::cname`]) answers every other
//!   type with the CNAME and its target's records of that type.
//! - Any other name is NXDOMAIN.
//! - A UDP answer longer than the client allows (512 octets, or its EDNS
//!   size) is sent truncated (TC set, no records), so the client asks again
//!   over TCP, as with a real server.
//!
//! - Names in a zone set with [`TestDns::validated`] answer with the AD
//!   bit when the question asks for it (AD or DO set), as a DNSSEC
//!   validating resolver does for a signed zone (RFC 6840 §5.7); a bogus
//!   signature is what [`TestDns::servfail`] stands for. (Signatures
//!   themselves are checked in the interop script, by unbound.)
//!
//! Every question is recorded ([`TestDns::queries`]), so a test can check
//! what was asked. Dropping the server stops its threads.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub use hickory_proto::op::ResponseCode;
use hickory_proto::op::{Edns, Message};
pub use hickory_proto::rr::RData;
pub use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, AAAA, MX, PTR, SRV, TLSA, TXT};
use hickory_proto::rr::{Name, Record};

/// How often the server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// The TTL of every record served.
const TTL: u32 = 60;
/// The EDNS payload size this server announces (RFC 9715's safe size).
const EDNS_PAYLOAD: u16 = 1232;

/// What one name answers.
#[derive(Clone, Debug)]
enum Entry {
    Records(Vec<RData>),
    Code(ResponseCode),
    Silent,
}

#[derive(Debug, Default)]
struct State {
    names: HashMap<String, Entry>,
    /// Zones whose answers carry AD, as from a validating resolver.
    validated: Vec<String>,
    queries: Vec<(String, RecordType)>,
}

/// A running test DNS server (see the crate documentation).
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Starts a server on a free port of 127.0.0.1, UDP and TCP.
    pub fn start() -> io::Result<TestDns> {
        // The UDP and TCP sockets must share a port; another program may
        // hold the TCP side of the port UDP got, so try a few.
        let mut last_error = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr) {
                Ok(tcp) => return Self::run(udp, tcp),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free port")))
    }

    /// Starts a server on `addr`, UDP and TCP (port 53 of a loopback
    /// address, say, for programs that read `/etc/resolv.conf`, which has
    /// no port).
    pub fn start_on(addr: SocketAddr) -> io::Result<TestDns> {
        let udp = UdpSocket::bind(addr)?;
        let tcp = TcpListener::bind(addr)?;
        Self::run(udp, tcp)
    }

    fn run(udp: UdpSocket, tcp: TcpListener) -> io::Result<TestDns> {
        let addr = udp.local_addr()?;
        udp.set_read_timeout(Some(POLL))?;
        tcp.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            {
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || serve_udp(&udp, &state, &stop))
            },
            {
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || serve_tcp(&tcp, &state, &stop))
            },
        ];
        Ok(TestDns {
            addr,
            state,
            stop,
            threads,
        })
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a record to `name` (which then answers no response code).
    pub fn add(&self, name: &str, rdata: RData) {
        let mut state = lock(&self.state);
        let entry = state
            .names
            .entry(key(name))
            .or_insert_with(|| Entry::Records(Vec::new()));
        match entry {
            Entry::Records(records) => records.push(rdata),
            other => *other = Entry::Records(vec![rdata]),
        }
    }

    /// Marks `zone` and every name under it as DNSSEC-validated.
    pub fn validated(&self, zone: &str) {
        lock(&self.state).validated.push(key(zone));
    }

    /// Makes `name` an alias of `target` (answered for every type).
    pub fn cname(&self, name: &str, target: &str) {
        self.add(
            name,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(parse_name(target))),
        );
    }

    /// Adds an MX record; `exchange` `"."` makes a null MX (RFC 7505).
    pub fn mx(&self, name: &str, preference: u16, exchange: &str) {
        self.add(name, RData::MX(MX::new(preference, parse_name(exchange))));
    }

    /// Adds an A record.
    pub fn a(&self, name: &str, address: Ipv4Addr) {
        self.add(name, RData::A(A::from(address)));
    }

    /// Adds an AAAA record.
    pub fn aaaa(&self, name: &str, address: Ipv6Addr) {
        self.add(name, RData::AAAA(AAAA::from(address)));
    }

    /// Adds a TXT record holding `text`, split into strings of at most 255
    /// octets as a zone file would (SPF, DKIM and DMARC join them again).
    pub fn txt(&self, name: &str, text: &str) {
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
        self.add(name, RData::TXT(TXT::from_bytes(pieces)));
    }

    /// Adds a PTR record for `address` (at its `in-addr.arpa` or
    /// `ip6.arpa` name) naming `name`.
    pub fn ptr(&self, address: std::net::IpAddr, name: &str) {
        let reverse = Name::from(address).to_ascii();
        self.add(&reverse, RData::PTR(PTR(parse_name(name))));
    }

    /// Adds an SRV record (RFC 2782).
    pub fn srv(&self, name: &str, priority: u16, weight: u16, port: u16, target: &str) {
        self.add(
            name,
            RData::SRV(SRV::new(priority, weight, port, parse_name(target))),
        );
    }

    /// Adds a TLSA record (RFC 6698): usage, selector and matching type as
    /// their numbers, and the association data.
    pub fn tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: Vec<u8>) {
        self.add(
            name,
            RData::TLSA(TLSA::new(
                CertUsage::from(usage),
                Selector::from(selector),
                Matching::from(matching),
                data,
            )),
        );
    }

    /// `name` answers NXDOMAIN for every type.
    pub fn nxdomain(&self, name: &str) {
        self.set(name, Entry::Code(ResponseCode::NXDomain));
    }

    /// `name` answers REFUSED for every type.
    pub fn refused(&self, name: &str) {
        self.set(name, Entry::Code(ResponseCode::Refused));
    }

    /// `name` answers SERVFAIL for every type.
    pub fn servfail(&self, name: &str) {
        self.set(name, Entry::Code(ResponseCode::ServFail));
    }

    /// Questions about `name` are never answered.
    pub fn silent(&self, name: &str) {
        self.set(name, Entry::Silent);
    }

    /// Forgets everything about `name` (it answers NXDOMAIN again).
    pub fn remove(&self, name: &str) {
        lock(&self.state).names.remove(&key(name));
    }

    /// Every question asked so far: the name (lower case, no final dot)
    /// and the type.
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        lock(&self.state).queries.clone()
    }

    fn set(&self, name: &str, entry: Entry) {
        lock(&self.state).names.insert(key(name), entry);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Names are compared without case and without the final dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A name as a test writes it; a test that writes an invalid one gets the
/// root, which no lookup under test will take for what it meant.
fn parse_name(name: &str) -> Name {
    if name == "." {
        return Name::root();
    }
    let mut fqdn = name.to_owned();
    if !fqdn.ends_with('.') {
        fqdn.push('.');
    }
    Name::from_ascii(&fqdn).unwrap_or_else(|_| Name::root())
}

/// The tables stay usable after a test thread panicked holding the lock.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer to one request, encoded for a transport that carries at most
/// `limit` octets; `None` for no answer at all.
fn respond(request: &[u8], state: &Mutex<State>, limit: Option<usize>) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let mut response = Message::response(request.id, request.op_code);
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.authoritative = true;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    response.add_query(query.clone());
    let name = key(&query.name().to_ascii());
    let wanted = query.query_type();
    let asks_dnssec = request.metadata.authentic_data
        || request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let entry = {
        let mut state = lock(state);
        state.queries.push((name.clone(), wanted));
        response.metadata.authentic_data = asks_dnssec
            && state
                .validated
                .iter()
                .any(|zone| name == *zone || name.ends_with(&format!(".{zone}")));
        state.names.get(&name).cloned()
    };
    match entry {
        None => {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        Some(Entry::Code(code)) => {
            response.metadata.response_code = code;
        }
        Some(Entry::Silent) => return None,
        Some(Entry::Records(records)) => {
            let full = response.clone();
            // An alias answers for every type: the CNAME, then what its
            // target has of the type asked (one link, as tests need).
            let alias = records.iter().find_map(|r| match r {
                RData::CNAME(target) if wanted != RecordType::CNAME => Some(target.0.clone()),
                _ => None,
            });
            let (owner, records) = match alias {
                Some(target) => {
                    response.add_answer(Record::from_rdata(
                        query.name().clone(),
                        TTL,
                        RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone())),
                    ));
                    let records = match lock(state).names.get(&key(&target.to_ascii())) {
                        Some(Entry::Records(records)) => records.clone(),
                        _ => Vec::new(),
                    };
                    (target, records)
                }
                None => (query.name().clone(), records),
            };
            response.add_answers(
                records
                    .into_iter()
                    .filter(|r| wanted == RecordType::ANY || r.record_type() == wanted)
                    .map(|r| Record::from_rdata(owner.clone(), TTL, r)),
            );
            let encoded = response.to_vec().ok()?;
            if limit.is_some_and(|limit| encoded.len() > limit) {
                let mut truncated = full;
                truncated.metadata.truncation = true;
                return truncated.to_vec().ok();
            }
            return Some(encoded);
        }
    }
    response.to_vec().ok()
}

fn serve_udp(socket: &UdpSocket, state: &Mutex<State>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        // RFC 1035 §4.2.1: 512 octets over UDP, more only as EDNS allows.
        let limit = Message::from_vec(&buf[..n])
            .map(|m| usize::from(m.max_payload()))
            .unwrap_or(512);
        if let Some(answer) = respond(&buf[..n], state, Some(limit)) {
            let _ = socket.send_to(&answer, from);
        }
    }
}

fn serve_tcp(listener: &TcpListener, state: &Arc<Mutex<State>>, stop: &Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = serve_tcp_connection(stream, &state, &stop);
                });
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// RFC 1035 §4.2.2: each message is preceded by its length in two octets.
fn serve_tcp_connection(
    mut stream: TcpStream,
    state: &Mutex<State>,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    while !stop.load(Ordering::Relaxed) {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length)?;
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut request)?;
        let Some(answer) = respond(&request, state, None) else {
            continue;
        };
        let length = u16::try_from(answer.len()).map_err(io::Error::other)?;
        stream.write_all(&length.to_be_bytes())?;
        stream.write_all(&answer)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should panic
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    /// One question over UDP or TCP; `None` if no answer came.
    fn try_ask(dns: &TestDns, name: &str, kind: RecordType, tcp: bool) -> Option<Message> {
        let mut request = Message::query();
        request.metadata.id = 7;
        request.add_query(Query::query(parse_name(name), kind));
        let bytes = request.to_vec().unwrap();
        let answer = if tcp {
            let mut stream = TcpStream::connect(dns.addr()).unwrap();
            stream
                .write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
                .unwrap();
            stream.write_all(&bytes).unwrap();
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).unwrap();
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut answer).unwrap();
            answer
        } else {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            socket.send_to(&bytes, dns.addr()).unwrap();
            let mut buf = [0u8; 4096];
            let n = socket.recv(&mut buf).ok()?;
            buf[..n].to_vec()
        };
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.id, 7);
        Some(answer)
    }

    fn ask(dns: &TestDns, name: &str, kind: RecordType, tcp: bool) -> Message {
        try_ask(dns, name, kind, tcp).expect("an answer")
    }

    #[test]
    fn answers_records_codes_and_nothing() {
        let dns = TestDns::start().unwrap();
        dns.mx("Example.TEST", 10, "mx.example.test");
        dns.mx("example.test", 20, "backup.example.test");
        dns.a("mx.example.test", Ipv4Addr::LOCALHOST);
        dns.refused("refused.test");
        dns.servfail("servfail.test");
        dns.silent("silent.test");

        let mx = ask(&dns, "example.test", RecordType::MX, false);
        assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
        assert_eq!(mx.answers.len(), 2);
        let nodata = ask(&dns, "example.test", RecordType::A, false);
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        for (name, code) in [
            ("refused.test", ResponseCode::Refused),
            ("servfail.test", ResponseCode::ServFail),
            ("unknown.test", ResponseCode::NXDomain),
        ] {
            assert_eq!(
                ask(&dns, name, RecordType::MX, false)
                    .metadata
                    .response_code,
                code
            );
        }
        assert!(try_ask(&dns, "silent.test", RecordType::A, false).is_none());
        assert!(
            dns.queries()
                .contains(&("example.test".to_owned(), RecordType::MX))
        );
    }

    #[test]
    fn long_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let dns = TestDns::start().unwrap();
        let key = "p=".to_owned() + &"A".repeat(900);
        dns.txt("sel._domainkey.example.test", &key);
        let udp = ask(&dns, "sel._domainkey.example.test", RecordType::TXT, false);
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let tcp = ask(&dns, "sel._domainkey.example.test", RecordType::TXT, true);
        assert!(!tcp.metadata.truncation);
        let RData::TXT(txt) = &tcp.answers[0].data else {
            panic!("not TXT");
        };
        let joined: Vec<u8> = txt
            .txt_data
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        assert_eq!(joined, key.as_bytes());
    }

    #[test]
    fn records_change_while_it_runs() {
        let dns = TestDns::start().unwrap();
        dns.a("host.test", Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(ask(&dns, "host.test", RecordType::A, true).answers.len(), 1);
        dns.nxdomain("host.test");
        assert_eq!(
            ask(&dns, "host.test", RecordType::A, false)
                .metadata
                .response_code,
            ResponseCode::NXDomain
        );
        dns.remove("host.test");
        dns.aaaa("host.test", Ipv6Addr::LOCALHOST);
        dns.tlsa("_25._tcp.host.test", 3, 1, 1, vec![0xab; 32]);
        assert_eq!(
            ask(&dns, "host.test", RecordType::AAAA, false)
                .answers
                .len(),
            1
        );
        assert_eq!(
            ask(&dns, "_25._tcp.host.test", RecordType::TLSA, false)
                .answers
                .len(),
            1
        );
    }
}
