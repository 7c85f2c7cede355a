//! Delivery by SMTP or LMTP (RFC 2033) to a local mail system: the
//! message goes to the MTA on `localhost:25` as fetchmail does by default,
//! or to an LMTP server such as Dovecot's (`/run/dovecot/lmtp`). The
//! protocol is `yubin-smtp-proto`'s client; this file only moves bytes.
//! The server's `250` (per recipient in LMTP) means it has taken the
//! message, which is what "durable" means here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use yubin_pop3_proto::{Encoder, WireSize};
use yubin_smtp_proto::client::{Client, ClientConfig, Message, Poll, Status, Timeouts, TlsPolicy};

use super::{Deliver, DeliverError, return_path};

/// Where the SMTP or LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// A path (starting with `/`) is a Unix socket; anything else is
    /// `host:port`, with `default_port` when no port is given.
    pub fn parse(text: &str, default_port: u16) -> Endpoint {
        if text.starts_with('/') {
            Endpoint::Unix(PathBuf::from(text))
        } else if text
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            Endpoint::Tcp(text.to_owned())
        } else {
            Endpoint::Tcp(format!("{text}:{default_port}"))
        }
    }
}

/// An SMTP or LMTP server that takes the fetched mail for one recipient.
#[derive(Debug, Clone)]
pub struct SmtpDestination {
    endpoint: Endpoint,
    lmtp: bool,
    recipient: String,
    helo_name: String,
    timeout: Duration,
}

impl SmtpDestination {
    /// Delivers to `recipient` through `endpoint`, speaking LMTP if `lmtp`.
    pub fn new(
        endpoint: Endpoint,
        lmtp: bool,
        recipient: impl Into<String>,
        helo_name: impl Into<String>,
    ) -> Self {
        SmtpDestination {
            endpoint,
            lmtp,
            recipient: recipient.into(),
            helo_name: helo_name.into(),
            timeout: Duration::from_secs(300),
        }
    }

    fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        let stream: Box<dyn Stream> = match &self.endpoint {
            Endpoint::Tcp(address) => {
                let tcp = TcpStream::connect(address)?;
                tcp.set_read_timeout(Some(self.timeout))?;
                tcp.set_write_timeout(Some(self.timeout))?;
                Box::new(tcp)
            }
            Endpoint::Unix(path) => {
                let unix = UnixStream::connect(path)?;
                unix.set_read_timeout(Some(self.timeout))?;
                unix.set_write_timeout(Some(self.timeout))?;
                Box::new(unix)
            }
        };
        Ok(stream)
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl Deliver for SmtpDestination {
    fn deliver(&self, message: &[u8]) -> Result<(), DeliverError> {
        let shown = self.describe();
        let mut stream = self
            .connect()
            .map_err(|e| DeliverError::temporary(format!("{shown}: {e}")))?;
        let envelope = Message {
            from: return_path(message).unwrap_or_default(),
            recipients: vec![self.recipient.clone()],
            size: WireSize::of(message),
            eight_bit: message.iter().any(|&b| b >= 0x80),
            smtputf8: false,
        };
        let config = ClientConfig {
            helo_name: self.helo_name.clone(),
            tls: TlsPolicy::Never,
            credentials: None,
            timeouts: Timeouts::default(),
            lmtp: self.lmtp,
            // The local MTA or LMTP server shares our host name.
            loop_check: false,
        };
        let mut client = Client::new(config, envelope, false);
        let mut buf = vec![0u8; 8192];
        loop {
            match client.poll() {
                Poll::Done => break,
                Poll::Write => {
                    let written = stream.write_all(client.output());
                    client.clear_output();
                    if let Err(error) = written {
                        client.connection_lost(&format!("write failed ({error})"));
                    }
                }
                Poll::NeedInput => match stream.read(&mut buf) {
                    Ok(0) => client.connection_lost("the server closed the connection"),
                    Ok(n) => client.receive(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        client.timed_out();
                    }
                    Err(error) => client.connection_lost(&format!("read failed ({error})")),
                },
                // TlsPolicy::Never: no STARTTLS is ever asked for.
                Poll::StartTls => client.connection_lost("STARTTLS was not asked for"),
                Poll::SendContent => {
                    let mut content = Vec::with_capacity(message.len() + message.len() / 32 + 8);
                    Encoder::whole().encode_all(message, &mut content);
                    match stream.write_all(&content) {
                        Ok(()) => client.content_sent(),
                        Err(error) => {
                            client.connection_lost(&format!("sending the message failed ({error})"))
                        }
                    }
                }
            }
        }
        let result = client.results().into_iter().next();
        match result {
            Some(r) if r.status == Status::Delivered => Ok(()),
            Some(r) if r.status == Status::Failed => Err(DeliverError::permanent(format!(
                "{shown} refused it: {}",
                r.response
            ))),
            Some(r) => Err(DeliverError::temporary(format!("{shown}: {}", r.response))),
            None => Err(DeliverError::temporary(format!("{shown}: no result"))),
        }
    }

    fn describe(&self) -> String {
        let scheme = if self.lmtp { "lmtp" } else { "smtp" };
        match &self.endpoint {
            Endpoint::Tcp(address) => format!("{scheme}:{address} for {}", self.recipient),
            Endpoint::Unix(path) => format!("{scheme}:{} for {}", path.display(), self.recipient),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("/run/dovecot/lmtp", 24),
            Endpoint::Unix("/run/dovecot/lmtp".into())
        );
        assert_eq!(
            Endpoint::parse("localhost", 25),
            Endpoint::Tcp("localhost:25".into())
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:2525", 25),
            Endpoint::Tcp("127.0.0.1:2525".into())
        );
        assert_eq!(
            Endpoint::parse("[::1]:24", 25),
            Endpoint::Tcp("[::1]:24".into())
        );
    }
}
