//! A client's connection, before and after it starts TLS (SMTP's STARTTLS,
//! POP3's STLS), as one stream type: callers read and write it the same
//! either way, and upgrade it in one place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A connection to a server: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain TCP (before STARTTLS/STLS, or without TLS).
    Plain(TcpStream),
    /// TLS over TCP (implicit TLS, or after the upgrade).
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why a connection could not start TLS.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// It already speaks TLS.
    #[error("TLS is already active")]
    AlreadyTls,
    /// The handshake did not finish in time.
    #[error("the TLS handshake timed out")]
    Timeout,
    /// The handshake failed (a refused certificate, a protocol error).
    #[error("{0}")]
    Handshake(io::Error),
}

impl ClientStream {
    /// Whether the connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// The certificates the server presented (end entity first), once TLS
    /// is up.
    pub fn peer_certificates(&self) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        match self {
            ClientStream::Plain(_) => None,
            ClientStream::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect()),
        }
    }

    /// Starts TLS over a plain connection, within `timeout`, checking the
    /// server as `connector` says, for `name`.
    pub async fn upgrade(
        self,
        connector: &TlsConnector,
        name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<ClientStream, UpgradeError> {
        let ClientStream::Plain(tcp) = self else {
            return Err(UpgradeError::AlreadyTls);
        };
        match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Err(_) => Err(UpgradeError::Timeout),
            Ok(Err(error)) => Err(UpgradeError::Handshake(error)),
            Ok(Ok(tls)) => Ok(ClientStream::Tls(Box::new(tls))),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
