//! A stream to a filter: TCP (Nagle off: each step is one small write
//! that waits for an answer) or a unix socket.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::filter_config::FilterAddress;

/// A connection to a filter.
pub(super) enum FilterStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Connects to `address`.
pub(super) async fn connect(address: &FilterAddress) -> Result<FilterStream, String> {
    match address {
        FilterAddress::Tcp { host, port } => {
            let stream = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("connecting to {address}: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("connecting to {address}: {e}"))?;
            Ok(FilterStream::Tcp(stream))
        }
        FilterAddress::Unix(path) => UnixStream::connect(path)
            .await
            .map(FilterStream::Unix)
            .map_err(|e| format!("connecting to {address}: {e}")),
    }
}

impl AsyncRead for FilterStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FilterStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            FilterStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for FilterStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            FilterStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            FilterStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FilterStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            FilterStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FilterStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            FilterStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
