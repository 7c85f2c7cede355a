//! Which DNS answers are DNSSEC-validated, for DANE (RFC 7672).
//!
//! yubin does not validate signatures itself. Like Postfix and Exim, it
//! asks a validating resolver and believes its AD bit (RFC 6840 §5.7; RFC
//! 7672 §1.3 and Postfix's `smtp_dns_support_level = dnssec`). That bit
//! crosses the network unprotected, so it is believed only from a
//! resolver on this host (a loopback address, such as unbound on
//! 127.0.0.1 or systemd-resolved on 127.0.0.53); with any other resolver
//! nothing counts as validated and DANE is not used. A validating
//! resolver answers SERVFAIL for a bogus signature, so a forged answer is
//! a failed lookup here, never an insecure one.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one question may take, all servers and retries included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// One UDP try before the next server (or the next try).
const UDP_WAIT: Duration = Duration::from_secs(2);
/// The EDNS payload size asked for (RFC 9715's safe size).
const EDNS_PAYLOAD: u16 = 1232;

/// An answer and whether the resolver validated it.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The resolver set AD: the answer, or the denial, is DNSSEC-secure.
    pub secure: bool,
    /// The records of the type asked for.
    pub records: Vec<RData>,
}

/// Asks the resolvers on this host, and reports the AD bit.
#[derive(Clone, Debug)]
pub struct Validator {
    servers: Vec<SocketAddr>,
}

impl Validator {
    /// A validator for these resolvers, if every one is on this host:
    /// an AD bit from elsewhere could have been set by anyone on the path.
    pub fn local(servers: Vec<SocketAddr>) -> Option<Validator> {
        let local = !servers.is_empty() && servers.iter().all(|s| s.ip().is_loopback());
        local.then_some(Validator { servers })
    }

    /// The `kind` records of `name`, and whether they are validated.
    /// `Err` for SERVFAIL (which a validating resolver answers for bogus
    /// signatures), other error codes, and no answer in time.
    pub async fn ask(&self, name: &str, kind: RecordType) -> Result<Answer, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let name = Name::from_ascii(&fqdn).map_err(|e| format!("{fqdn}: {e}"))?;
        match tokio::time::timeout(TIMEOUT, self.ask_servers(&name, kind)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer for {fqdn} {kind} in time")),
        }
    }

    async fn ask_servers(&self, name: &Name, kind: RecordType) -> Result<Answer, String> {
        let mut last = String::from("no resolver");
        for server in &self.servers {
            match ask_one(*server, name, kind).await {
                Ok(message) => {
                    let code = message.metadata.response_code;
                    if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
                        last = format!("{name} {kind}: {code} from {server}");
                        // SERVFAIL (bogus) is the answer: asking another
                        // resolver cannot make a forgery genuine.
                        return Err(last);
                    }
                    let owner = cname_target(&message, name);
                    return Ok(Answer {
                        secure: message.metadata.authentic_data,
                        records: message
                            .answers
                            .iter()
                            .filter(|r| r.record_type() == kind && r.name == owner)
                            .map(|r| r.data.clone())
                            .collect(),
                    });
                }
                Err(error) => last = format!("{name} {kind}: {error} ({server})"),
            }
        }
        Err(last)
    }
}

/// One question to one server: UDP, then TCP when the answer is truncated.
async fn ask_one(server: SocketAddr, name: &Name, kind: RecordType) -> std::io::Result<Message> {
    let mut request = Message::query();
    let mut id = [0u8; 2];
    getrandom::fill(&mut id).map_err(std::io::Error::other)?;
    request.metadata.id = u16::from_be_bytes(id);
    request.metadata.recursion_desired = true;
    // RFC 6840 §5.7: AD in a query asks for AD in the answer, without
    // the signatures DO would bring.
    request.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    request.set_edns(edns);
    request.add_query(Query::query(name.clone(), kind));
    let bytes = request.to_vec().map_err(std::io::Error::other)?;
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    let mut buf = vec![0u8; 65535];
    for _ in 0..2 {
        socket.send(&bytes).await?;
        let deadline = tokio::time::Instant::now() + UDP_WAIT;
        // Skip stray datagrams (a late answer to the previous try, or a
        // forged one with the wrong id or question).
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            let Ok(message) = Message::from_vec(&buf[..received?]) else {
                continue;
            };
            if !answers(&message, &request) {
                continue;
            }
            if message.metadata.truncation {
                return ask_tcp(server, &bytes, &request).await;
            }
            return Ok(message);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer",
    ))
}

/// RFC 1035 §4.2.2: the question again over TCP, length-prefixed.
async fn ask_tcp(server: SocketAddr, bytes: &[u8], request: &Message) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let length = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    stream.write_all(&length.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await?;
    let message = Message::from_vec(&answer).map_err(std::io::Error::other)?;
    if !answers(&message, request) {
        return Err(std::io::Error::other("an answer to another question"));
    }
    Ok(message)
}

/// Whether `message` is the answer to `request`: a response, with the
/// same id and the same question.
fn answers(message: &Message, request: &Message) -> bool {
    message.metadata.message_type == MessageType::Response
        && message.metadata.op_code == OpCode::Query
        && message.metadata.id == request.metadata.id
        && message.queries == request.queries
}

/// Where `name`'s CNAME chain in the answer ends (RFC 7671 §7: TLSA
/// records, like any, may be reached through aliases; the AD bit covers
/// the whole answer). At most 8 links, against loops.
fn cname_target(message: &Message, name: &Name) -> Name {
    let mut owner = name.clone();
    for _ in 0..8 {
        let next = message.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == owner => Some(target.0.clone()),
            _ => None,
        });
        match next {
            Some(target) => owner = target,
            None => break,
        }
    }
    owner
}
