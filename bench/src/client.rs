//! A small async POP3 client for load generation: just enough protocol,
//! strict about replies, cheap per byte.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The client's connection: plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One POP3 conversation.
pub struct Client {
    stream: BufReader<Box<dyn Io>>,
    line: Vec<u8>,
}

/// Accepts any certificate: the benchmark talks to its own local servers.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client settings shared by all connections.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        });
    match config {
        Ok(config) => tokio_rustls::TlsConnector::from(Arc::new(config)),
        Err(e) => panic!("ring provider has no default protocol versions: {e}"),
    }
}

impl Client {
    /// Connects (with TLS when a connector is given) and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Client> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from("localhost")?;
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .context("TLS handshake")?,
                )
            }
            None => Box::new(tcp),
        };
        let mut client = Client {
            stream: BufReader::with_capacity(64 * 1024, io),
            line: Vec::with_capacity(512),
        };
        client.expect_ok().await.context("greeting")?;
        Ok(client)
    }

    /// Reads one line (without CRLF) into the client's buffer.
    async fn read_line(&mut self) -> Result<&[u8]> {
        self.line.clear();
        let n = self.stream.read_until(b'\n', &mut self.line).await?;
        if n == 0 {
            bail!("connection closed");
        }
        if !self.line.ends_with(b"\r\n") {
            bail!(
                "line without CRLF: {:?}",
                String::from_utf8_lossy(&self.line)
            );
        }
        self.line.truncate(self.line.len() - 2);
        Ok(&self.line)
    }

    /// Reads a status line and fails unless it is +OK; returns its text.
    async fn expect_ok(&mut self) -> Result<String> {
        let line = self.read_line().await?;
        if !line.starts_with(b"+OK") {
            bail!("server said {:?}", String::from_utf8_lossy(line));
        }
        Ok(String::from_utf8_lossy(line).into_owned())
    }

    /// Sends a command line (CRLF added).
    pub async fn send(&mut self, command: &str) -> Result<()> {
        let stream = self.stream.get_mut();
        stream.write_all(command.as_bytes()).await?;
        stream.write_all(b"\r\n").await?;
        stream.flush().await?;
        Ok(())
    }

    /// Sends a command and expects +OK.
    pub async fn command(&mut self, command: &str) -> Result<String> {
        self.send(command).await?;
        self.expect_ok()
            .await
            .with_context(|| command.split(' ').next().unwrap_or("").to_owned())
    }

    /// USER and PASS.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.command(&format!("USER {user}")).await?;
        self.command(&format!("PASS {password}")).await?;
        Ok(())
    }

    /// STAT → (count, size).
    pub async fn stat(&mut self) -> Result<(u64, u64)> {
        let reply = self.command("STAT").await?;
        let mut parts = reply.split_whitespace().skip(1);
        let count = parts.next().and_then(|p| p.parse().ok());
        let size = parts.next().and_then(|p| p.parse().ok());
        match (count, size) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => bail!("bad STAT reply {reply:?}"),
        }
    }

    /// UIDL → unique-ids in message order.
    pub async fn uidl(&mut self) -> Result<Vec<String>> {
        self.command("UIDL").await?;
        let mut uids = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line == b"." {
                return Ok(uids);
            }
            let text = String::from_utf8_lossy(line);
            match text.split_once(' ') {
                Some((_, uid)) => uids.push(uid.to_owned()),
                None => bail!("bad UIDL line {text:?}"),
            }
        }
    }

    /// LIST → sizes in message order.
    pub async fn list(&mut self) -> Result<Vec<u64>> {
        self.command("LIST").await?;
        let mut sizes = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line == b"." {
                return Ok(sizes);
            }
            let text = String::from_utf8_lossy(line);
            match text.split_once(' ').and_then(|(_, s)| s.parse().ok()) {
                Some(size) => sizes.push(size),
                None => bail!("bad LIST line {text:?}"),
            }
        }
    }

    /// RETR n → the message as the client sees it: CRLF lines, un-stuffed.
    /// The bytes are appended to `body` (cleared first).
    ///
    /// The response is read in bulk up to its terminator, then un-stuffed in
    /// one pass: the load generator must not be what limits a fast server.
    /// A stuffed line (`..x`) can never look like the terminator (`CRLF . CRLF`),
    /// so the first terminator found is the end.
    pub async fn retr(&mut self, n: usize, body: &mut Vec<u8>) -> Result<()> {
        self.command(&format!("RETR {n}")).await?;
        body.clear();
        // An empty message is just the terminator line.
        // What the reader already buffered, then straight from the socket
        // into `body`, in large reads.
        body.extend_from_slice(self.stream.buffer());
        let buffered = self.stream.buffer().len();
        self.stream.consume(buffered);
        let mut searched_from = 0;
        let end = loop {
            if body.starts_with(b".\r\n") {
                break Some(0);
            }
            if let Some(at) = memchr::memmem::find(&body[searched_from..], b"\r\n.\r\n") {
                break Some(searched_from + at + 2);
            }
            if body.len() > (1 << 31) {
                break None;
            }
            searched_from = body.len().saturating_sub(4);
            body.reserve(256 * 1024);
            let read = self.stream.get_mut().read_buf(body).await?;
            if read == 0 {
                bail!("connection closed in RETR");
            }
        };
        let Some(end) = end else {
            bail!("RETR response without end");
        };
        // Anything after the terminator belongs to the next reply.
        let rest = body.split_off(end + 3);
        if !rest.is_empty() {
            bail!("server sent {} octets after the end of RETR", rest.len());
        }
        body.truncate(end);
        unstuff(body);
        Ok(())
    }

    /// DELE n.
    pub async fn dele(&mut self, n: usize) -> Result<()> {
        self.command(&format!("DELE {n}")).await.map(|_| ())
    }

    /// QUIT, and wait for the server to close.
    pub async fn quit(mut self) -> Result<()> {
        self.command("QUIT").await?;
        Ok(())
    }
}

/// Removes the stuffing dot from every line that starts with `..`
/// (RFC 1939 §3), in place.
fn unstuff(body: &mut Vec<u8>) {
    let mut write = 0;
    let mut read = 0;
    let len = body.len();
    // The first line may itself be stuffed.
    if body.first() == Some(&b'.') {
        read = 1;
    }
    let finder = memchr::memmem::Finder::new(b"\r\n.");
    while read < len {
        let next = finder.find(&body[read..]).map_or(len, |at| read + at + 2);
        body.copy_within(read..next, write);
        write += next - read;
        // Skip the stuffed dot.
        read = if next < len { next + 1 } else { len };
    }
    body.truncate(write);
}

#[cfg(test)]
mod tests {
    use super::unstuff;

    #[test]
    fn unstuffs_every_dot_line() {
        let mut body = b"..a\r\nb\r\n...\r\n..\r\nc\r\n".to_vec();
        unstuff(&mut body);
        assert_eq!(body, b".a\r\nb\r\n..\r\n.\r\nc\r\n");
        let mut plain = b"x\r\ny\r\n".to_vec();
        unstuff(&mut plain);
        assert_eq!(plain, b"x\r\ny\r\n");
    }
}
