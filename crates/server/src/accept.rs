//! The accept loop POP3 and SMTP share: back off when accept fails (EMFILE
//! and friends), turn away connections over the limits with the protocol's
//! "try again later", and hand the rest to the protocol's driver, each in a
//! task of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::per_ip::PerIpLimit;

/// What a listener lets through, and what it says to those it turns away.
pub(crate) struct Gate {
    /// For logs: `pop3`, `smtp`.
    pub(crate) protocol: &'static str,
    /// Connections over all listeners of the protocol.
    pub(crate) connections: Arc<Semaphore>,
    /// Connections per client address.
    pub(crate) per_ip: Arc<PerIpLimit>,
    /// The answers to "too many connections" and "too many from your
    /// address", CRLF included; `None` on an implicit-TLS port, where
    /// nothing can be said before the handshake.
    pub(crate) refusals: Option<(Vec<u8>, Vec<u8>)>,
}

/// Accepts connections until `shutdown` changes.
pub(crate) async fn serve<F, Fut>(
    gate: Gate,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let protocol = gate.protocol;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "{protocol} accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = gate.connections.clone().try_acquire_owned() else {
            tracing::warn!(rip = %peer.ip(), "{protocol} connection refused: too many connections");
            refuse(&tcp, gate.refusals.as_ref().map(|(all, _)| all));
            continue;
        };
        let Some(slot) = gate.per_ip.try_take(peer.ip()) else {
            tracing::warn!(rip = %peer.ip(), "{protocol} connection refused: too many connections from the address");
            refuse(&tcp, gate.refusals.as_ref().map(|(_, one)| one));
            continue;
        };
        let connection = handle(tcp, peer);
        tokio::spawn(async move {
            connection.await;
            drop(slot);
            drop(permit);
        });
    }
}

/// Tells a refused client to come back later (a passing condition, not a
/// network fault). The send buffer of a fresh socket is empty, so this
/// never waits.
fn refuse(tcp: &TcpStream, reply: Option<&Vec<u8>>) {
    if let Some(reply) = reply {
        let _ = tcp.try_write(reply);
    }
}
