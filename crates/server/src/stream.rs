//! A client connection that starts in plaintext and may switch to TLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Plain TCP, or TLS over TCP.
pub enum Stream {
    /// Not (yet) encrypted.
    Plain(TcpStream),
    /// Encrypted (implicit TLS, or after STLS).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Most octets a client may send ahead while the server waits (pipelined
/// commands); past that, nothing more is read until the wait is over.
const EARLY_INPUT: usize = 16 * 1024;

/// Sleeps for `duration`; returns at once (without a trip through the timer)
/// if it is zero.
pub(crate) async fn pause(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// Pauses for `duration` (the answer to a failed login) unless the client
/// hangs up first (`None`); otherwise what the client sent meanwhile, for
/// its session (see [`wait_unless_gone`]).
pub(crate) async fn pause_unless_gone(stream: &mut Stream, duration: Duration) -> Option<Vec<u8>> {
    wait_unless_gone(stream, pause(duration))
        .await
        .map(|((), early)| early)
}

/// Waits for `until` (a login's turn, the delay before a failure is
/// answered), unless the client hangs up first: then `None`, and `until` is
/// dropped, so that the connection and its slot are released at once
/// instead of when the wait would have ended (issue 12). Otherwise what
/// `until` gave and what the client sent meanwhile, which the caller hands
/// to its session; nothing is lost if the wait is cut short.
pub(crate) async fn wait_unless_gone<T>(
    stream: &mut Stream,
    until: impl Future<Output = T>,
) -> Option<(T, Vec<u8>)> {
    let mut early = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::pin!(until);
    loop {
        let room = early.len() < EARLY_INPUT;
        tokio::select! {
            // Something ready at once (no wait) is taken without a read.
            biased;
            done = &mut until => return Some((done, early)),
            read = stream.read(&mut buf), if room => match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => early.extend_from_slice(&buf[..n]),
            },
        }
    }
}

/// Writes and flushes `bytes`; a client that does not take them within
/// `timeout` (it stopped reading) is an error that ends the connection.
pub(crate) async fn write_all(
    stream: &mut Stream,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading",
        )),
    }
}
